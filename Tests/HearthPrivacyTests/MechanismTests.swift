import Testing
@testable import HearthPrivacy
import HearthTestSupport

/// Exact-ish L2 norm for test oracles.
func norm(_ v: [Double]) -> Double {
    var s = 0.0
    for x in v { s += x * x }
    return s.squareRoot()
}

func uniform(_ rng: inout SeededGenerator) -> Double {
    Double(rng.next() >> 11) * 0x1p-53
}

@Suite("Clipping", .computeLane)
struct ClippingTests {
    @Test("clipped norms are at most C for random inputs", arguments: [0.1, 1.0, 37.5])
    func randomInputs(clipNorm: Double) throws {
        var rng = SeededGenerator(seed: 11)
        for trial in 0..<200 {
            let d = 1 + trial % 97
            let magnitude = [1e-6, 1e-2, 1, 1e3, 1e8][trial % 5]
            let v = (0..<d).map { _ in Float((uniform(&rng) * 2 - 1) * magnitude) }
            let clipped = try Clipping.clip(v, to: clipNorm)
            #expect(norm(clipped) <= clipNorm)
            let original = try Clipping.l2Norm(v)
            if original <= clipNorm {
                #expect(clipped == v.map { Double($0) })  // within the ball: untouched
            } else {
                // Direction is preserved.
                let ratio = clipped[0] / Double(v[0])
                if v[0] != 0 { #expect(abs(ratio - clipNorm / original) <= 1e-9 * ratio) }
            }
        }
    }

    @Test("adversarial magnitudes never overflow the norm")
    func adversarial() throws {
        let huge = [Float](repeating: .greatestFiniteMagnitude, count: 1000)
        #expect(norm(try Clipping.clip(huge, to: 1)) <= 1)
        let mixed: [Float] = [.greatestFiniteMagnitude, -.greatestFiniteMagnitude, .leastNonzeroMagnitude, 0, 1]
        #expect(norm(try Clipping.clip(mixed, to: 2)) <= 2)
        let doubles: [Double] = [1e300, -1e300, 1e300, 5]
        let n = try Clipping.l2Norm(doubles)
        #expect(n.isFinite && abs(n / (1e300 * 3.0.squareRoot()) - 1) < 1e-12)
        #expect(norm(try Clipping.clip(doubles, to: 0.5)) <= 0.5)
        let spike = [Float](repeating: 0, count: 4096) + [1e30]
        let c = try Clipping.clip(spike, to: 1)
        #expect(norm(c) <= 1 && c[4096] > 0.999)
        let zeros = [Float](repeating: 0, count: 8)
        #expect(try Clipping.clip(zeros, to: 1) == [Double](repeating: 0, count: 8))
    }

    @Test("NaN and infinities are rejected with a clear error", arguments: [Float.nan, .infinity, -.infinity, .signalingNaN])
    func nonFinite(bad: Float) {
        let v: [Float] = [1, 2, bad, 4]
        #expect(throws: PrivacyError.nonFiniteUpdate) { try Clipping.clip(v, to: 1) }
        #expect(PrivacyError.nonFiniteUpdate.message.contains("NaN"))
        let privatizer = try? UpdatePrivatizer(configuration: PrivacyConfiguration(clipNorm: 1, noiseMultiplier: 1), dimension: 4)
        var rng = SeededGenerator(seed: 1)
        #expect(throws: PrivacyError.nonFiniteUpdate) { try privatizer?.privatize(update: v, using: &rng) }
    }

    @Test("invalid clip norms and empty updates are rejected")
    func invalidArguments() {
        #expect(throws: PrivacyError.invalidClipNorm) { try Clipping.clip([Float(1)], to: 0) }
        #expect(throws: PrivacyError.invalidClipNorm) { try Clipping.clip([Float(1)], to: .infinity) }
        #expect(throws: PrivacyError.emptyUpdate) { try Clipping.clip([Float](), to: 1) }
    }
}

@Suite("Integer grid and stochastic rounding", .computeLane)
struct RoundingTests {
    @Test("stochastic rounding is unbiased")
    func unbiased() throws {
        let grid = try IntegerGrid(scale: 1, clipNorm: 100, dimension: 6, bitWidth: 16)
        let x: [Double] = [0.25, -0.25, 0.5, 3.999, -7.1, 0.0001]
        var rng = SeededGenerator(seed: 5)
        var sums = [Double](repeating: 0, count: 6)
        let n = 20_000
        for _ in 0..<n {
            let r = try grid.round(x, using: &rng)
            for i in 0..<6 {
                #expect(r[i] == Int64(x[i].rounded(.down)) || r[i] == Int64(x[i].rounded(.down)) + 1)
                sums[i] += Double(r[i])
            }
        }
        for i in 0..<6 {
            let f = x[i] - x[i].rounded(.down)
            let sd = (f * (1 - f) / Double(n)).squareRoot()
            #expect(abs(sums[i] / Double(n) - x[i]) <= 5 * sd + 1e-9)
        }
    }

    @Test("rounded contributions never exceed the sensitivity bound", arguments: [1, 7, 64, 1000])
    func normBound(dimension: Int) throws {
        let grid = try IntegerGrid(clipNorm: 1, dimension: dimension, bitWidth: 16, deviceNoiseMultiplier: 1)
        var rng = SeededGenerator(seed: UInt64(dimension))
        for _ in 0..<50 {
            let v = (0..<dimension).map { _ in uniform(&rng) * 2 - 1 }
            let clipped = try Clipping.clip(v, to: 1)
            let r = try grid.round(clipped, using: &rng)
            #expect(norm(r.map { Double($0) }) <= grid.sensitivity)
        }
        // Δ lies between c and c + √d.
        let c = grid.clipNorm * grid.scale
        #expect(grid.sensitivity >= c && grid.sensitivity <= c + Double(dimension).squareRoot())
    }

    @Test("the scale keeps a contribution plus headroom inside the bit width", arguments: [8, 12, 16, 24, 32])
    func scaleFitsBits(bits: Int) throws {
        let z = 1.5
        let grid = try IntegerGrid(clipNorm: 2, dimension: 32, bitWidth: bits, deviceNoiseMultiplier: z)
        #expect(grid.sensitivity * (1 + 4 * z) <= Double(grid.maxMagnitude) * (1 + 1e-9))
        #expect(grid.sensitivity * (1 + 4 * z) >= Double(grid.maxMagnitude) * 0.99)
    }

    @Test("too few bits for the dimension is an error")
    func tooFewBits() {
        #expect(throws: PrivacyError.bitWidthTooSmall) {
            try IntegerGrid(clipNorm: 1, dimension: 1_000_000, bitWidth: 8, deviceNoiseMultiplier: 1)
        }
        #expect(throws: PrivacyError.invalidBitWidth) {
            try IntegerGrid(clipNorm: 1, dimension: 4, bitWidth: 63, deviceNoiseMultiplier: 1)
        }
    }
}

@Suite("Privatizer: modes, units, participation", .computeLane)
struct PrivatizerTests {
    @Test("central mode: no device noise, dequantised update is the clipped update up to rounding")
    func centralMode() throws {
        let config = PrivacyConfiguration(clipNorm: 1, noiseMultiplier: 1, bitWidth: 20, mode: .central)
        let p = try UpdatePrivatizer(configuration: config, dimension: 8)
        var rng = SeededGenerator(seed: 8)
        let update: [Float] = [3, 4, 0, 0, 0, 0, 0, 0]  // norm 5 → clipped to 1
        let out = try p.privatize(update: update, using: &rng)
        #expect(out.mode == .central && out.deviceNoiseVariance == nil)
        let back = out.dequantized()
        #expect(abs(back[0] - 0.6) <= 1 / out.scale + 1e-9)
        #expect(abs(back[1] - 0.8) <= 1 / out.scale + 1e-9)
        #expect(back[2...].allSatisfy { $0 == 0 })
    }

    @Test("local mode adds discrete Gaussian noise of variance (z·Δ)²")
    func localNoise() throws {
        let z = 0.7
        let config = PrivacyConfiguration(clipNorm: 1, noiseMultiplier: z, bitWidth: 20, mode: .local)
        let p = try UpdatePrivatizer(configuration: config, dimension: 256)
        var rng = SeededGenerator(seed: 9)
        let zero = [Float](repeating: 0, count: 256)
        var sumSq = 0.0
        var count = 0
        for _ in 0..<20 {
            let out = try p.privatize(update: zero, using: &rng)
            #expect(out.deviceNoiseVariance != nil)
            for v in out.values {
                sumSq += Double(v) * Double(v)
                count += 1
            }
        }
        let sigma = z * p.grid.sensitivity
        #expect(p.noise.variance >= sigma * sigma)
        #expect(abs(sumSq / Double(count) / (sigma * sigma) - 1) < 0.06)
    }

    @Test("session unit clips each session separately; device unit clips the sum")
    func sessionUnit() throws {
        var rng = SeededGenerator(seed: 10)
        let sessions: [[Float]] = [[10, 0, 0, 0], [10, 0, 0, 0], [0, 10, 0, 0]]
        let perSession = try UpdatePrivatizer(configuration: PrivacyConfiguration(clipNorm: 1, noiseMultiplier: 1, mode: .central, unit: .session, maxSessionsPerUpdate: 3), dimension: 4)
        let s = try perSession.privatize(sessions: sessions, using: &rng)
        #expect(s.saturatedCoordinates == 0)
        #expect(throws: PrivacyError.tooManySessions) {
            try perSession.privatize(sessions: sessions + sessions, using: &rng)
        }
        #expect(s.contributions == 3)
        let back = s.dequantized()
        #expect(abs(back[0] - 2) < 3 / s.scale + 1e-6 && abs(back[1] - 1) < 3 / s.scale + 1e-6)
        let perDevice = try UpdatePrivatizer(configuration: PrivacyConfiguration(clipNorm: 1, noiseMultiplier: 1, mode: .central, unit: .device), dimension: 4)
        let d = try perDevice.privatize(sessions: sessions, using: &rng)
        #expect(d.contributions == 1)
        #expect(norm(d.dequantized()) <= perDevice.grid.sensitivity / perDevice.grid.scale)
        #expect(abs(d.dequantized()[0] - 20 / 500.0.squareRoot()) < 2 / d.scale)
    }

    @Test("secure aggregation is reserved and refused")
    func secureAggregationReserved() throws {
        let p = try UpdatePrivatizer(configuration: PrivacyConfiguration(clipNorm: 1, noiseMultiplier: 1, mode: .secureAggregation), dimension: 2)
        var rng = SeededGenerator(seed: 1)
        #expect(throws: PrivacyError.modeNotSupported) { try p.privatize(update: [Float(1), 2], using: &rng) }
        #expect(throws: PrivacyError.dimensionMismatch) {
            try UpdatePrivatizer(configuration: PrivacyConfiguration(clipNorm: 1, noiseMultiplier: 1), dimension: 3)
                .privatize(update: [Float(1), 2], using: &rng)
        }
        #expect(throws: PrivacyError.invalidNoiseMultiplier) {
            try UpdatePrivatizer(configuration: PrivacyConfiguration(clipNorm: 1, noiseMultiplier: 0), dimension: 3)
        }
    }

    @Test("the device's participation coin has rate q", arguments: [0.01, 0.3, 1.0])
    func participationCoin(q: Double) throws {
        let coin = try ParticipationCoin(samplingRate: q)
        var rng = SeededGenerator(seed: 12)
        let n = 50_000
        var hits = 0
        for _ in 0..<n where coin.flip(using: &rng) { hits += 1 }
        let sd = (q * (1 - q) / Double(n)).squareRoot()
        #expect(abs(Double(hits) / Double(n) - q) <= 5 * sd + 1e-12)
        #expect(throws: PrivacyError.invalidSamplingRate) { try ParticipationCoin(samplingRate: 0) }
        #expect(throws: PrivacyError.invalidSamplingRate) { try ParticipationCoin(samplingRate: 1.5) }
    }
}
