/// The exact (ε, δ) curve of the Gaussian mechanism and its T-fold composition.
///
/// T rounds of the Gaussian mechanism with noise multiplier z (no subsampling) compose to exactly
/// one Gaussian mechanism with μ = √T / z (a μ-GDP mechanism; Dong, Roth, Su 2019), and by
/// Balle & Wang 2018 ("Improving the Gaussian Mechanism for Differential Privacy", Thm. 8):
///
///     δ(ε) = Φ(-ε/μ + μ/2) - e^ε Φ(-ε/μ - μ/2).
///
/// This is the ground truth the RDP and PLD accountants are tested against for q = 1.
public enum ExactGaussian {
    /// δ(ε) for a μ-GDP mechanism.
    public static func delta(epsilon: Double, mu: Double) -> Double {
        if mu <= 0 { return 0 }
        let a = normalCDF(-epsilon / mu + mu / 2)
        let b = expDouble(epsilon + logNormalCDF(-epsilon / mu - mu / 2))
        let d = a - b
        return d > 0 ? d : 0
    }

    /// The smallest ε ≥ 0 with δ(ε) ≤ `delta` for a μ-GDP mechanism, by bisection (δ(ε) is decreasing).
    public static func epsilon(delta: Double, mu: Double) throws(PrivacyError) -> Double {
        guard delta.isFinite, delta > 0, delta < 1 else { throw .invalidDelta }
        guard mu.isFinite, mu > 0 else { throw .invalidNoiseMultiplier }
        if ExactGaussian.delta(epsilon: 0, mu: mu) <= delta { return 0 }
        var low = 0.0
        var high = 1.0
        while ExactGaussian.delta(epsilon: high, mu: mu) > delta {
            low = high
            high *= 2
            if high > 1e7 { return .infinity }
        }
        for _ in 0..<200 {
            let mid = 0.5 * (low + high)
            if ExactGaussian.delta(epsilon: mid, mu: mu) > delta { low = mid } else { high = mid }
            if high - low <= 1e-12 * high { break }
        }
        return high
    }

    /// Exact ε of T-fold composition of the Gaussian mechanism with noise multiplier z (q = 1).
    public static func epsilon(noiseMultiplier z: Double, steps: Int, delta: Double) throws(PrivacyError) -> Double {
        guard z.isFinite, z > 0 else { throw .invalidNoiseMultiplier }
        guard steps >= 1 else { throw .invalidSteps }
        return try epsilon(delta: delta, mu: hearthSqrt(Double(steps)) / z)
    }
}
