/// Exact samplers of Canonne, Kamath and Steinke 2020, "The Discrete Gaussian for Differential
/// Privacy" (NeurIPS 2020, arXiv:2004.00010): Bernoulli(exp(-γ)) for rational γ (Algorithm 1),
/// the discrete Laplace (Algorithm 2) and the discrete Gaussian (Algorithm 3).
///
/// Integer arithmetic only: every random decision compares a uniform integer with an exact
/// integer threshold, so the output distribution is exactly the stated one (up to the one
/// documented rejection in `DiscreteGaussian.sample`, whose probability is below e^-512).
public enum ExactBernoulli {
    /// Bernoulli(numerator / denominator), exactly; requires `numerator <= denominator`, `denominator > 0`.
    ///
    /// True iff a uniform integer below `denominator` is below `numerator`.
    @inlinable
    public static func sample<R: RandomNumberGenerator>(
        numerator: UInt64, denominator: UInt64, using rng: inout R
    ) -> Bool {
        uniformBelow(denominator, using: &rng) < numerator
    }

    /// Bernoulli(exp(-1)), exactly.
    @inlinable
    public static func sampleExpMinusOne<R: RandomNumberGenerator>(using rng: inout R) -> Bool {
        // Algorithm 1 of Canonne et al. with γ = 1: K <- 1; while Bernoulli(1/K) { K += 1 }; K odd.
        var k: UInt64 = 1
        while uniformBelow(k, using: &rng) == 0 {
            k += 1
        }
        return k & 1 == 1
    }

    /// Bernoulli(exp(-numerator/denominator)) for a nonnegative rational, exactly.
    ///
    /// For γ = n/d > 1 this draws ⌊γ⌋ Bernoulli(exp(-1)) trials (stopping at the first failure)
    /// and then Bernoulli(exp(-(γ - ⌊γ⌋))); for γ in [0, 1] it runs Algorithm 1 of Canonne et al.:
    /// K <- 1, while Bernoulli(γ/K) succeeds K <- K + 1, and returns whether K is odd.
    @inlinable
    public static func sampleExpMinus<R: RandomNumberGenerator>(
        numerator: UInt64, denominator: UInt64, using rng: inout R
    ) -> Bool {
        sampleExpMinus(numerator: Word128(numerator), denominator: Word128(denominator), using: &rng)
    }

    @inlinable
    static func sampleExpMinus<R: RandomNumberGenerator>(
        numerator: Word128, denominator: Word128, using rng: inout R
    ) -> Bool {
        var remainder = numerator
        // Each pass succeeds with probability 1/e, so the loop ends after < 1.6 passes on average,
        // without ever dividing the 128-bit numerator.
        while remainder >= denominator {
            remainder = remainder.subtracting(denominator)
            if !sampleExpMinusOne(using: &rng) { return false }
        }
        if remainder.isZero { return true }
        // γ = remainder/denominator in (0, 1). Bernoulli(γ/K) = [U_K = 0 and U_D < remainder] with
        // independent U_K uniform below K and U_D uniform below the denominator: the pair indexes
        // K·denominator equally likely cells of which exactly `remainder` succeed.
        var k: UInt64 = 1
        while true {
            let first = uniformBelow(k, using: &rng) == 0
            if !first { break }
            if !(Word128.uniformBelow(denominator, using: &rng) < remainder) { break }
            k += 1
        }
        return k & 1 == 1
    }
}

/// The discrete Laplace distribution on ℤ with integer scale t: P(x) ∝ exp(-|x|/t).
///
/// Algorithm 2 of Canonne, Kamath, Steinke 2020, with the scale restricted to a positive integer.
public struct DiscreteLaplace: Sendable, Hashable {
    /// The scale t ≥ 1.
    public let scale: UInt64

    /// A discrete Laplace with integer scale `scale`; fails for a zero scale.
    public init(scale: UInt64) throws(PrivacyError) {
        guard scale >= 1, scale <= (UInt64(1) << 40) else { throw .invalidVariance }
        self.scale = scale
    }

    /// One exact sample.
    @inlinable
    public func sample<R: RandomNumberGenerator>(using rng: inout R) -> Int64 {
        DiscreteLaplaceSampler(scale: scale).sample(using: &rng)
    }

    /// The exact probability mass at `x`: (1 - e^{-1/t}) / (1 + e^{-1/t}) · e^{-|x|/t} (for tests).
    public func probability(_ x: Int64) -> Double {
        let a = 1.0 / Double(scale)
        let r = expDouble(-a)
        let mag = x < 0 ? Double(-x) : Double(x)
        return (1 - r) / (1 + r) * expDouble(-mag * a)
    }
}

/// The discrete Gaussian on ℤ with rational variance parameter σ² = numerator / denominator:
/// P(x) ∝ exp(-x² / (2σ²)).
///
/// Sampled by Algorithm 3 of Canonne, Kamath, Steinke 2020: draw Y from the discrete Laplace
/// with scale t = ⌊σ⌋ + 1 and accept with probability exp(-(|Y| - σ²/t)² / (2σ²)). With
/// σ² = n/d the acceptance exponent is the exact rational (|Y|·d·t - n)² / (2·n·d·t²), evaluated
/// in 128-bit integers. Range: n ≤ 2^62 and d·t² ≤ 2^56 (σ up to ~2^28 with d = 1; a
/// denominator of 2^16 still allows σ up to 2^20). If |Y|·d·t - n ≥ 2^64 the candidate is
/// rejected outright: its acceptance probability is below exp(-2^128 / 2^119) = e^-512, so the
/// output distribution differs from the discrete Gaussian by less than e^-512 in total variation.
/// Note that σ² is the *parameter*; the variance of the discrete Gaussian is slightly below σ².
public struct DiscreteGaussian: Sendable, Hashable {
    /// Numerator n of σ² = n/d.
    public let varianceNumerator: UInt64
    /// Denominator d of σ² = n/d.
    public let varianceDenominator: UInt64
    /// The discrete Laplace scale t = ⌊σ⌋ + 1.
    public let laplaceScale: UInt64

    /// A discrete Gaussian with σ² = numerator / denominator.
    ///
    /// Fails with `invalidVariance` for a zero numerator or denominator and with
    /// `varianceOutOfRange` when the exact arithmetic would not fit in 128 bits.
    public init(varianceNumerator: UInt64, varianceDenominator: UInt64) throws(PrivacyError) {
        guard varianceNumerator > 0, varianceDenominator > 0 else { throw .invalidVariance }
        guard varianceNumerator <= (UInt64(1) << 62) else { throw .varianceOutOfRange }
        let floorSigma = DiscreteGaussian.floorSqrt(numerator: varianceNumerator, denominator: varianceDenominator)
        let t = floorSigma + 1
        guard let dt2 = Word128.product(t, t).multiplied(by: varianceDenominator),
              dt2 <= Word128(UInt64(1) << 56)
        else { throw .varianceOutOfRange }
        self.varianceNumerator = varianceNumerator
        self.varianceDenominator = varianceDenominator
        self.laplaceScale = t
    }

    /// A discrete Gaussian whose σ² is the smallest rational k / 2^m ≥ `variance` representable
    /// in range, i.e. `variance` rounded *up* (more noise, never less).
    ///
    /// Floating point is used here only on the public parameter σ², never on data or randomness.
    public init(varianceAtLeast variance: Double) throws(PrivacyError) {
        guard variance.isFinite, variance > 0 else { throw .invalidVariance }
        guard variance < 0x1p54 else { throw .varianceOutOfRange }
        // Choose d = 2^m as large as the range constraints allow (d·(σ+2)² ≤ 2^56, n ≤ 2^62).
        let tBound = hearthSqrt(variance) + 2
        var m = 0
        while m < 40 {
            let d = Double(UInt64(1) << UInt64(m + 1))
            if d * tBound * tBound > 0x1p56 || variance * d > 0x1p61 { break }
            m += 1
        }
        let d = UInt64(1) << UInt64(m)
        // ceil(variance·d) + 1 guards against any rounding in the double product.
        let scaled = (variance * Double(d)).rounded(.up)
        let n = UInt64(scaled) + 1
        try self.init(varianceNumerator: n, varianceDenominator: d)
    }

    /// σ² as a double (for reporting and accounting, not for sampling).
    public var variance: Double {
        Double(varianceNumerator) / Double(varianceDenominator)
    }

    /// ⌊√(n/d)⌋ exactly: the largest m with m²·d ≤ n.
    static func floorSqrt(numerator n: UInt64, denominator d: UInt64) -> UInt64 {
        var m = UInt64(hearthSqrt(Double(n) / Double(d)))
        func fits(_ m: UInt64) -> Bool {
            guard let p = Word128.product(m, m).multiplied(by: d) else { return false }
            return p <= Word128(n)
        }
        while m > 0 && !fits(m) { m -= 1 }
        while fits(m + 1) { m += 1 }
        return m
    }

    /// One exact sample.
    @inlinable
    public func sample<R: RandomNumberGenerator>(using rng: inout R) -> Int64 {
        let n = varianceNumerator
        let d = varianceDenominator
        let t = laplaceScale
        let laplace = DiscreteLaplaceSampler(scale: t)
        // Denominator 2·n·d·t² (< 2^119 by the init's range checks).
        let dt = d &* t  // d·t ≤ d·t² ≤ 2^56
        let twoN = Word128.product(n, 2)
        let denominator = twoN.multiplied(by: dt).flatMap { $0.multiplied(by: t) } ?? Word128(high: UInt64.max, low: UInt64.max)
        while true {
            let y = laplace.sample(using: &rng)
            let magnitude = y.magnitude
            // |Y|·d·t - n, exactly.
            let ydt = Word128.product(magnitude, dt)
            let diff = ydt.distance(to: Word128(n))
            if diff.high != 0 { continue }  // acceptance probability < e^-512: see the type's documentation
            let numerator = Word128.product(diff.low, diff.low)
            if ExactBernoulli.sampleExpMinus(numerator: numerator, denominator: denominator, using: &rng) {
                return y
            }
        }
    }

    /// Fills `count` independent samples.
    public func samples<R: RandomNumberGenerator>(count: Int, using rng: inout R) -> [Int64] {
        var out = [Int64]()
        out.reserveCapacity(count)
        for _ in 0..<count {
            out.append(sample(using: &rng))
        }
        return out
    }

    /// The exact probability mass at `x` (normalised numerically; for tests and documentation).
    public func probability(_ x: Int64) -> Double {
        let s2 = variance
        var z = 1.0
        var k = 1.0
        while true {
            let term = expDouble(-k * k / (2 * s2))
            z += 2 * term
            if term < 1e-300 || k > 1e7 { break }
            k += 1
        }
        let xd = Double(x)
        return expDouble(-xd * xd / (2 * s2)) / z
    }
}

/// The discrete Laplace sampler without validation (the discrete Gaussian's scale is valid by construction).
@usableFromInline
struct DiscreteLaplaceSampler {
    @usableFromInline let scale: UInt64

    @inlinable
    init(scale: UInt64) { self.scale = scale }

    @inlinable
    func sample<R: RandomNumberGenerator>(using rng: inout R) -> Int64 {
        let t = scale
        while true {
            let u = uniformBelow(t, using: &rng)
            if !ExactBernoulli.sampleExpMinus(numerator: u, denominator: t, using: &rng) { continue }
            var v: UInt64 = 0
            while ExactBernoulli.sampleExpMinusOne(using: &rng) {
                v += 1
            }
            let (tv, o1) = t.multipliedReportingOverflow(by: v)
            let (x, o2) = tv.addingReportingOverflow(u)
            if o1 || o2 || x > UInt64(Int64.max) { continue }
            let negative = rng.next() & 1 == 1
            if negative && x == 0 { continue }
            return negative ? -Int64(x) : Int64(x)
        }
    }
}
