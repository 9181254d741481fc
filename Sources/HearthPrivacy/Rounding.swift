/// Unbiased stochastic rounding onto an integer grid with a norm bound (the sensitivity).
///
/// A clipped vector x (‖x‖₂ ≤ C) is scaled by `scale` s into grid units (‖s·x‖₂ ≤ c = C·s) and
/// each coordinate is rounded down or up at random, up with probability equal to its fractional
/// part, so E[round(y)] = y. Rounding moves every coordinate by less than one grid step, so
/// deterministically ‖round(y)‖₂ ≤ c + √d. Following Kairouz, Liu, Steinke 2021 ("The
/// Distributed Discrete Gaussian Mechanism for Federated Learning with Secure Aggregation",
/// ICML 2021, Sec. 4.1, conditional randomized rounding) we resample until
///
///     ‖round(y)‖₂² ≤ Δ² = min( c² + d/4 + √(2 ln(1/β))·(c + √d/2),  (c + √d)² )
///
/// which happens with probability ≥ 1 - β per attempt (β = e^{-1/2} by default, as in that
/// paper). The check is exact integer arithmetic against ⌊Δ²⌋, so **the L2 sensitivity of one
/// contribution on the integer grid is Δ**, deterministically; noise is calibrated to that Δ
/// (σ_grid = z·Δ for noise multiplier z). Conditioning on the norm introduces a tiny bias
/// (at most β-weighted), which does not affect privacy.
///
/// The coin for each coordinate is integer: the fractional part φ ∈ [0, 1) (exact in double for
/// |y| < 2^52) is turned into the 64-bit threshold ⌊φ·2^64⌋ (exact scaling by a power of two)
/// and the coordinate rounds up iff a uniform 64-bit word is below it. The rounding bias is
/// therefore below 2^-64 grid steps per coordinate. The floating-point work (x·s, floor) is a
/// deterministic function of the data, and privacy rests only on the exact norm check above.
public struct IntegerGrid: Sendable, Hashable {
    /// Grid steps per unit of parameter value (s).
    public let scale: Double
    /// Bit width of one uploaded coordinate (two's complement).
    public let bitWidth: Int
    /// The L2 clip norm C in parameter units.
    public let clipNorm: Double
    /// The number of coordinates d.
    public let dimension: Int
    /// The rounding failure probability β per attempt.
    public let roundingBeta: Double
    /// Δ, the L2 norm bound of one rounded contribution in grid units (its sensitivity).
    public let sensitivity: Double
    /// ⌊Δ²⌋, the exact integer bound checked after rounding.
    let sensitivitySquaredBound: Word128

    /// The largest representable coordinate, 2^(b-1) - 1.
    public var maxMagnitude: Int64 { (Int64(1) << Int64(bitWidth - 1)) - 1 }

    /// A grid with an explicit scale.
    ///
    /// Fails for a non-positive clip norm or scale, an empty dimension, a bit width outside 4...32,
    /// or when Δ does not fit in the bit width.
    public init(scale: Double, clipNorm: Double, dimension: Int, bitWidth: Int,
                roundingBeta: Double = 0.6065306597126334) throws(PrivacyError) {
        guard clipNorm.isFinite, clipNorm > 0 else { throw .invalidClipNorm }
        guard dimension > 0 else { throw .emptyUpdate }
        guard bitWidth >= 4, bitWidth <= 32 else { throw .invalidBitWidth }
        guard scale.isFinite, scale > 0, roundingBeta > 0, roundingBeta < 1 else { throw .bitWidthTooSmall }
        let delta2 = IntegerGrid.sensitivitySquared(scale: scale, clipNorm: clipNorm, dimension: dimension, beta: roundingBeta)
        let maxMag = Double((Int64(1) << Int64(bitWidth - 1)) - 1)
        guard hearthSqrt(delta2) <= maxMag else { throw .bitWidthTooSmall }
        self.scale = scale
        self.bitWidth = bitWidth
        self.clipNorm = clipNorm
        self.dimension = dimension
        self.roundingBeta = roundingBeta
        self.sensitivity = hearthSqrt(delta2)
        self.sensitivitySquaredBound = Word128(UInt64(delta2.rounded(.down)))
    }

    /// The grid whose scale is the largest that keeps `contributions` rounded contributions (k
    /// sessions summed; 1 for the device unit) plus `headroom` standard deviations of device-side
    /// noise inside `bitWidth` bits.
    ///
    /// Every coordinate of a rounded contribution is at most Δ in magnitude; with local noise of
    /// standard deviation z·Δ the uploaded coordinate stays within 2^(b-1) - 1 unless the noise
    /// exceeds `headroom` standard deviations, so the scale solves Δ(s)·(k + headroom·z) = 2^(b-1) - 1
    /// (z = `deviceNoiseMultiplier`, 0 in central mode where the device adds no noise). Rare
    /// overshoots are saturated (post-processing, no privacy cost). This is a worst-case choice
    /// (all of the norm in one coordinate); secure aggregation (later) will add a random rotation
    /// and modular wrap-around instead.
    public init(clipNorm: Double, dimension: Int, bitWidth: Int, deviceNoiseMultiplier: Double,
                headroom: Double = 4, contributions: Int = 1,
                roundingBeta: Double = 0.6065306597126334) throws(PrivacyError) {
        guard clipNorm.isFinite, clipNorm > 0 else { throw .invalidClipNorm }
        guard dimension > 0 else { throw .emptyUpdate }
        guard bitWidth >= 4, bitWidth <= 32 else { throw .invalidBitWidth }
        guard deviceNoiseMultiplier.isFinite, deviceNoiseMultiplier >= 0 else { throw .invalidNoiseMultiplier }
        guard headroom.isFinite, headroom >= 0 else { throw .bitWidthTooSmall }
        guard contributions >= 1 else { throw .tooManySessions }
        let limit = Double((Int64(1) << Int64(bitWidth - 1)) - 1) / (Double(contributions) + headroom * deviceNoiseMultiplier)
        func fits(_ s: Double) -> Bool {
            hearthSqrt(IntegerGrid.sensitivitySquared(scale: s, clipNorm: clipNorm, dimension: dimension, beta: roundingBeta)) <= limit
        }
        // Smallest useful scale: the clip norm spans at least one grid step.
        var low = 1.0 / clipNorm
        guard fits(low) else { throw .bitWidthTooSmall }
        var high = limit / clipNorm + 1
        while fits(high) { high *= 2 }
        for _ in 0..<100 {
            let mid = 0.5 * (low + high)
            if fits(mid) { low = mid } else { high = mid }
        }
        try self.init(scale: low, clipNorm: clipNorm, dimension: dimension, bitWidth: bitWidth, roundingBeta: roundingBeta)
    }

    /// The 64-bit coin threshold ⌊φ·2^64⌋ of a fractional part φ = y − ⌊y⌋ computed in double.
    ///
    /// For a tiny negative y (−2^-54 < y < 0, e.g. a denormal training delta) the subtraction
    /// y − (−1) rounds φ to exactly 1, and 2^64 does not fit a UInt64: the conversion trapped
    /// and took the agent down in a training round. φ = 1 gives the largest threshold instead
    /// (the coordinate rounds up, to 0, with probability 1 − 2^-64).
    @inline(__always)
    static func threshold(fraction: Double) -> UInt64 {
        if fraction <= 0 { return 0 }
        if fraction >= 1 { return UInt64.max }
        return UInt64(fraction * 0x1p64)
    }

    /// Δ² for scale s: min(c² + d/4 + √(2 ln(1/β))(c + √d/2), (c + √d)²) with c = C·s.
    public static func sensitivitySquared(scale: Double, clipNorm: Double, dimension: Int, beta: Double) -> Double {
        let c = clipNorm * scale
        let d = Double(dimension)
        let sd = hearthSqrt(d)
        let conditional = c * c + d / 4 + hearthSqrt(2 * logDouble(1 / beta)) * (c + sd / 2)
        let deterministic = (c + sd) * (c + sd)
        return conditional < deterministic ? conditional : deterministic
    }

    /// Stochastically rounds one clipped contribution onto the grid, resampling until the exact
    /// integer norm check ‖k‖₂² ≤ ⌊Δ²⌋ passes.
    ///
    /// The input must already be clipped to `clipNorm`. Throws `dimensionMismatch`,
    /// `nonFiniteUpdate`, or `roundingFailed` after `maxAttempts` failed attempts (probability
    /// at most β^maxAttempts).
    public func round<R: RandomNumberGenerator>(_ clipped: [Double], maxAttempts: Int = 1000,
                                                 using rng: inout R) throws(PrivacyError) -> [Int64] {
        guard clipped.count == dimension else { throw .dimensionMismatch }
        var floors = [Int64](repeating: 0, count: dimension)
        var thresholds = [UInt64](repeating: 0, count: dimension)
        let limit = Double(Int64(1) << 40)
        for i in 0..<dimension {
            let y = clipped[i] * scale
            guard y.isFinite, y.magnitude < limit else { throw .nonFiniteUpdate }
            let f = y.rounded(.down)
            let fraction = y - f  // exact for |y| < 2^52
            floors[i] = Int64(f)
            thresholds[i] = IntegerGrid.threshold(fraction: fraction)
        }
        var out = [Int64](repeating: 0, count: dimension)
        for _ in 0..<maxAttempts {
            var normSquared = Word128(0)
            for i in 0..<dimension {
                let up: Int64 = rng.next() < thresholds[i] ? 1 : 0
                let k = floors[i] + up
                out[i] = k
                let m = k.magnitude
                normSquared = normSquared.adding(Word128.product(m, m)) ?? Word128(high: UInt64.max, low: UInt64.max)
            }
            if normSquared <= sensitivitySquaredBound {
                return out
            }
        }
        throw .roundingFailed
    }
}
