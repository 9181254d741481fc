/// The regularized incomplete beta function, its inverse, and Clopper–Pearson bounds.
public enum BinomialConfidence {
    /// I_x(a, b), the regularized incomplete beta function, by the continued fraction of
    /// Numerical Recipes (Lentz's method) with the symmetry I_x(a,b) = 1 - I_{1-x}(b,a).
    public static func regularizedIncompleteBeta(_ x: Double, a: Double, b: Double) -> Double {
        if x <= 0 { return 0 }
        if x >= 1 { return 1 }
        let logFront = lgammaDouble(a + b) - lgammaDouble(a) - lgammaDouble(b) + a * logDouble(x) + b * log1pDouble(-x)
        let front = expDouble(logFront)
        if x < (a + 1) / (a + b + 2) {
            return front * continuedFraction(x, a: a, b: b) / a
        }
        return 1 - front * continuedFraction(1 - x, a: b, b: a) / b
    }

    static func continuedFraction(_ x: Double, a: Double, b: Double) -> Double {
        let tiny = 1e-300
        let qab = a + b, qap = a + 1, qam = a - 1
        var c = 1.0
        var d = 1 - qab * x / qap
        if d.magnitude < tiny { d = tiny }
        d = 1 / d
        var h = d
        var m = 1.0
        while m < 10_000 {
            let m2 = 2 * m
            var aa = m * (b - m) * x / ((qam + m2) * (a + m2))
            d = 1 + aa * d
            if d.magnitude < tiny { d = tiny }
            c = 1 + aa / c
            if c.magnitude < tiny { c = tiny }
            d = 1 / d
            h *= d * c
            aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
            d = 1 + aa * d
            if d.magnitude < tiny { d = tiny }
            c = 1 + aa / c
            if c.magnitude < tiny { c = tiny }
            d = 1 / d
            let del = d * c
            h *= del
            if (del - 1).magnitude < 1e-15 { break }
            m += 1
        }
        return h
    }

    /// The x with I_x(a, b) = p, by bisection (I_x is increasing in x).
    public static func inverseRegularizedIncompleteBeta(_ p: Double, a: Double, b: Double) -> Double {
        if p <= 0 { return 0 }
        if p >= 1 { return 1 }
        var low = 0.0
        var high = 1.0
        for _ in 0..<200 {
            let mid = 0.5 * (low + high)
            if regularizedIncompleteBeta(mid, a: a, b: b) < p { low = mid } else { high = mid }
            if high - low < 1e-15 { break }
        }
        return 0.5 * (low + high)
    }

    /// One-sided Clopper–Pearson upper bound on a binomial proportion: with probability at least
    /// `confidence`, p ≤ the returned value, given `successes` out of `trials`.
    public static func clopperPearsonUpper(successes k: Int, trials n: Int, confidence: Double) -> Double {
        if k >= n { return 1 }
        return inverseRegularizedIncompleteBeta(confidence, a: Double(k + 1), b: Double(n - k))
    }

    /// One-sided Clopper–Pearson lower bound.
    public static func clopperPearsonLower(successes k: Int, trials n: Int, confidence: Double) -> Double {
        if k <= 0 { return 0 }
        return inverseRegularizedIncompleteBeta(1 - confidence, a: Double(k), b: Double(n - k + 1))
    }
}

/// A small seeded generator (xoshiro256**, seeded by SplitMix64) for tests, audits and
/// simulations that must be reproducible. Not a secure source: production noise uses
/// `SystemRandomNumberGenerator` (getrandom on Linux).
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    private var s0: UInt64, s1: UInt64, s2: UInt64, s3: UInt64

    /// A generator from a 64-bit seed.
    public init(seed: UInt64) {
        var x = seed
        func splitmix() -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s0 = splitmix(); s1 = splitmix(); s2 = splitmix(); s3 = splitmix()
    }

    /// The next 64 random bits.
    public mutating func next() -> UInt64 {
        let result = ((s1 &* 5) << 7 | (s1 &* 5) >> 57) &* 9
        let t = s1 << 17
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = s3 << 45 | s3 >> 19
        return result
    }
}
