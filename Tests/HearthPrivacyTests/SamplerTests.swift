import Testing
@testable import HearthPrivacy
import HearthTestSupport

/// Chi-square critical value at upper-tail probability 0.001 for `df` degrees of freedom
/// (Wilson–Hilferty approximation; accurate to a few percent for df ≥ 3).
func chiSquareCritical001(df: Int) -> Double {
    let k = Double(df)
    let z = 3.090232306167813  // Φ^{-1}(0.999)
    let t = 1 - 2 / (9 * k) + z * (2 / (9 * k)).squareRoot()
    return k * t * t * t
}

/// Pearson chi-square of samples against a pmf on ℤ, pooling bins with expectation < 5 into two tails.
func chiSquare(samples: [Int64], pmf: (Int64) -> Double) -> (statistic: Double, df: Int) {
    let n = Double(samples.count)
    var counts = [Int64: Int]()
    for s in samples { counts[s, default: 0] += 1 }
    // Central bins with expected count ≥ 5, found by walking out from 0.
    var low: Int64 = 0, high: Int64 = 0
    while n * pmf(low - 1) >= 5 { low -= 1 }
    while n * pmf(high + 1) >= 5 { high += 1 }
    var stat = 0.0
    var bins = 0
    var centralMass = 0.0
    for x in low...high {
        let e = n * pmf(x)
        centralMass += pmf(x)
        let o = Double(counts[x] ?? 0)
        stat += (o - e) * (o - e) / e
        bins += 1
    }
    // Tails pooled (symmetric pmf: each tail has half the remaining mass).
    let tailExpected = n * (1 - centralMass) / 2
    if tailExpected > 0 {
        var lowTail = 0, highTail = 0
        for (x, c) in counts {
            if x < low { lowTail += c } else if x > high { highTail += c }
        }
        if tailExpected >= 1 {
            for o in [Double(lowTail), Double(highTail)] {
                stat += (o - tailExpected) * (o - tailExpected) / tailExpected
                bins += 1
            }
        }
    }
    return (stat, bins - 1)
}

@Suite("Discrete samplers (Canonne, Kamath, Steinke 2020)", .computeLane)
struct SamplerTests {
    static let sigmas: [Double] = [0.5, 1, 3, 50]

    @Test("discrete Gaussian pmf matches empirical frequencies (chi-square, fixed seed)", arguments: sigmas)
    func discreteGaussianChiSquare(sigma: Double) throws {
        let dg = try DiscreteGaussian(varianceAtLeast: sigma * sigma)
        var rng = SeededGenerator(seed: 0xC0FFEE + UInt64(sigma * 10))
        let samples = dg.samples(count: 20_000, using: &rng)
        let (stat, df) = chiSquare(samples: samples) { dg.probability($0) }
        #expect(df >= 1)
        #expect(stat < chiSquareCritical001(df: df), "chi-square \(stat) with \(df) df")
    }

    @Test("the chi-square test rejects a sampler with the wrong sigma (negative control)", arguments: [1.0, 3.0, 50.0])
    func chiSquareCanFail(sigma: Double) throws {
        let dg = try DiscreteGaussian(varianceAtLeast: sigma * sigma)
        let wrong = try DiscreteGaussian(varianceAtLeast: 1.2 * 1.2 * sigma * sigma)
        var rng = SeededGenerator(seed: 7)
        let samples = dg.samples(count: 20_000, using: &rng)
        let (stat, df) = chiSquare(samples: samples) { wrong.probability($0) }
        #expect(stat > chiSquareCritical001(df: df))
    }

    @Test("discrete Gaussian mean, variance and symmetry", arguments: sigmas)
    func discreteGaussianMoments(sigma: Double) throws {
        let dg = try DiscreteGaussian(varianceAtLeast: sigma * sigma)
        var rng = SeededGenerator(seed: 42)
        let n = 20_000
        let samples = dg.samples(count: n, using: &rng)
        var sum = 0.0, sumSq = 0.0
        var positive = 0, negative = 0
        for s in samples {
            let x = Double(s)
            sum += x
            sumSq += x * x
            if s > 0 { positive += 1 } else if s < 0 { negative += 1 }
        }
        // Exact variance of the discrete Gaussian (slightly below σ² for small σ).
        var exactVariance = 0.0
        let bound = Int64(sigma * 12) + 2
        for x in -bound...bound { exactVariance += Double(x * x) * dg.probability(x) }
        let mean = sum / Double(n)
        let variance = sumSq / Double(n) - mean * mean
        #expect(abs(mean) < 5 * exactVariance.squareRoot() / Double(n).squareRoot())
        // sd of the sample variance ≈ σ²·√(2/n) ≈ 1% here; allow 5 sd.
        #expect(abs(variance / exactVariance - 1) < 5 * (2.0 / Double(n)).squareRoot() + 0.01)
        // Symmetry: positives vs negatives is Binomial(m, 1/2).
        let m = Double(positive + negative)
        #expect(abs(Double(positive - negative)) < 5 * m.squareRoot())
        // The pmf itself is symmetric.
        for x in Int64(1)...Int64(5) { #expect(dg.probability(x) == dg.probability(-x)) }
    }

    @Test("Bernoulli(exp(-gamma)) has the right frequency", arguments: [(UInt64(0), UInt64(1)), (1, 2), (1, 1), (5, 2), (7, 3), (123_456_789, 100_000_000)])
    func bernoulliExp(numerator: UInt64, denominator: UInt64) {
        var rng = SeededGenerator(seed: numerator &* 31 &+ denominator)
        let n = 40_000
        var hits = 0
        for _ in 0..<n where ExactBernoulli.sampleExpMinus(numerator: numerator, denominator: denominator, using: &rng) {
            hits += 1
        }
        let p = Double(numerator) / Double(denominator)
        let expected = (-p).exponentialBase
        let sd = (expected * (1 - expected) / Double(n)).squareRoot()
        #expect(abs(Double(hits) / Double(n) - expected) <= 5 * sd + 1e-12)
    }

    @Test("exp(-1) and rational Bernoulli")
    func bernoulliBasics() {
        var rng = SeededGenerator(seed: 3)
        var hits = 0
        let n = 40_000
        for _ in 0..<n where ExactBernoulli.sampleExpMinusOne(using: &rng) { hits += 1 }
        let e1 = 0.36787944117144233
        #expect(abs(Double(hits) / Double(n) - e1) < 5 * (e1 * (1 - e1) / Double(n)).squareRoot())
        var ones = 0
        for _ in 0..<n where ExactBernoulli.sample(numerator: 1, denominator: 3, using: &rng) { ones += 1 }
        #expect(abs(Double(ones) / Double(n) - 1.0 / 3) < 0.012)
    }

    @Test("discrete Laplace pmf (chi-square)", arguments: [UInt64(1), 4, 20])
    func discreteLaplace(scale: UInt64) throws {
        let lap = try DiscreteLaplace(scale: scale)
        var rng = SeededGenerator(seed: 99 + scale)
        var samples = [Int64]()
        for _ in 0..<20_000 { samples.append(lap.sample(using: &rng)) }
        let (stat, df) = chiSquare(samples: samples) { lap.probability($0) }
        #expect(stat < chiSquareCritical001(df: df))
        #expect(throws: PrivacyError.invalidVariance) { try DiscreteLaplace(scale: 0) }
    }

    @Test("variance is rounded up to a rational and ranges are checked")
    func varianceRepresentation() throws {
        for v in [0.25, 1.0, 2.0 / 3.0, 9.0, 2500.0, 1e6, 1e12] {
            let dg = try DiscreteGaussian(varianceAtLeast: v)
            #expect(dg.variance >= v)
            #expect(dg.variance <= v * (1 + 1e-9) + 1e-9)
        }
        let exact = try DiscreteGaussian(varianceNumerator: 1, varianceDenominator: 4)
        #expect(exact.laplaceScale == 1)
        let nine = try DiscreteGaussian(varianceNumerator: 9, varianceDenominator: 1)
        #expect(nine.laplaceScale == 4)  // ⌊3⌋ + 1
        #expect(DiscreteGaussian.floorSqrt(numerator: 99, denominator: 1) == 9)
        #expect(DiscreteGaussian.floorSqrt(numerator: 100, denominator: 1) == 10)
        #expect(throws: PrivacyError.invalidVariance) { try DiscreteGaussian(varianceNumerator: 0, varianceDenominator: 1) }
        #expect(throws: PrivacyError.varianceOutOfRange) { try DiscreteGaussian(varianceNumerator: 1 << 62, varianceDenominator: 1) }
        #expect(throws: PrivacyError.invalidVariance) { try DiscreteGaussian(varianceAtLeast: .nan) }
    }

    @Test("128-bit helper arithmetic")
    func word128() {
        let a = Word128.product(UInt64.max, UInt64.max)
        #expect(a.high == UInt64.max - 1 && a.low == 1)
        #expect(Word128(5).multiplied(by: 3) == Word128(15))
        #expect(Word128(high: 1, low: 0).multiplied(by: UInt64.max) == Word128(high: UInt64.max, low: 0))
        #expect(Word128(high: 1, low: 0).multiplied(by: 0) == Word128(0))
        #expect(Word128(high: UInt64.max, low: 0).multiplied(by: 2) == nil)
        #expect(Word128(high: 1, low: 0).subtracting(Word128(1)) == Word128(high: 0, low: UInt64.max))
        #expect(Word128(3).distance(to: Word128(10)) == Word128(7))
        #expect(Word128(high: 0, low: UInt64.max).adding(Word128(1)) == Word128(high: 1, low: 0))
        var rng = SeededGenerator(seed: 1)
        let bound = Word128(high: 3, low: 17)
        for _ in 0..<1000 { #expect(Word128.uniformBelow(bound, using: &rng) < bound) }
        for _ in 0..<1000 { #expect(uniformBelow(7, using: &rng) < 7) }
    }
}

extension Double {
    /// e^self via the module's libm bridge.
    var exponentialBase: Double { expDouble(self) }
}
