/// Which accountant answers an ε query.
public enum AccountantKind: Sendable, Hashable {
    /// Rényi DP over the default orders with the tight conversion (fast, slightly loose).
    case rdp
    /// Privacy loss distributions, pessimistic discretisation, FFT composition (tighter).
    case pld

    /// A stable lowercase name.
    public var name: String {
        switch self {
        case .rdp: return "rdp"
        case .pld: return "pld"
        }
    }
}

/// One entry point for ε and for calibrating the noise multiplier.
public enum PrivacyAccounting {
    /// ε at δ for T rounds of the Poisson-subsampled Gaussian (z, q) with the chosen accountant.
    public static func epsilon(noiseMultiplier: Double, samplingRate: Double, steps: Int, delta: Double,
                               accountant: AccountantKind = .rdp) throws(PrivacyError) -> Double {
        guard noiseMultiplier.isFinite, noiseMultiplier > 0 else { throw .invalidNoiseMultiplier }
        guard samplingRate.isFinite, samplingRate > 0, samplingRate <= 1 else { throw .invalidSamplingRate }
        guard steps >= 1 else { throw .invalidSteps }
        guard delta.isFinite, delta > 0, delta < 1 else { throw .invalidDelta }
        switch accountant {
        case .rdp:
            return try RDPAccountant.epsilon(noiseMultiplier: noiseMultiplier, samplingRate: samplingRate,
                                             steps: steps, delta: delta)
        case .pld:
            return try PLDAccountant.epsilon(noiseMultiplier: noiseMultiplier, samplingRate: samplingRate,
                                             steps: steps, delta: delta)
        }
    }

    /// The smallest noise multiplier (to relative precision `tolerance`) whose ε at δ over T
    /// rounds at rate q is at most `epsilon`, by bisection on log z (ε is decreasing in z).
    ///
    /// The returned z always meets the target (it is the upper end of the final bracket).
    /// Fails with `calibrationFailed` if no z in [1e-3, 1e4] meets it.
    public static func noiseMultiplier(epsilon target: Double, delta: Double, samplingRate: Double, steps: Int,
                                       accountant: AccountantKind = .rdp,
                                       tolerance: Double = 1e-4) throws(PrivacyError) -> Double {
        guard target.isFinite, target > 0 else { throw .invalidEpsilon }
        guard delta.isFinite, delta > 0, delta < 1 else { throw .invalidDelta }
        guard samplingRate.isFinite, samplingRate > 0, samplingRate <= 1 else { throw .invalidSamplingRate }
        guard steps >= 1 else { throw .invalidSteps }
        func meets(_ z: Double) throws(PrivacyError) -> Bool {
            try epsilon(noiseMultiplier: z, samplingRate: samplingRate, steps: steps, delta: delta,
                        accountant: accountant) <= target
        }
        var low = 0.25
        var high = 1.0
        while try !meets(high) {
            low = high
            high *= 2
            if high > 1e4 { throw .calibrationFailed }
        }
        if high == 1.0 {
            while try meets(low) {
                high = low
                low /= 2
                if low < 1e-3 { return high }
            }
        }
        while high / low > 1 + tolerance {
            let mid = hearthSqrt(low * high)
            if try meets(mid) { high = mid } else { low = mid }
        }
        return high
    }
}
