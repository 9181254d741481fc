import HearthCore
@testable import HearthPrivacy
import Testing
@testable import HearthAggregation
import HearthTestSupport

/// `UpdateValidator.validate`: accepts what a compliant device sends, refuses every bad case with its reason.
@Suite(.computeLane) struct ValidatorTests {
    /// A bad upload and the reason it must be refused with.
    enum Bad: String, CaseIterable, Sendable {
        case truncated, oneByteLonger, headerOnly, badMagic, flippedChecksum, flippedValueByte, wrongFormatVersion
        case reservedByte, unknownModeCode, secureAggregationMode, futureModelVersion, staleModelVersion
        case wrongDimension, wrongMode, wrongUnit, wrongBitWidth, wrongClipNorm, wrongScale, samplingRateAbovePlan
        case mostNegativeValue, paddingBits, normAboveBound, nanClipNorm, nanNoiseMultiplier, infiniteScale
        case infiniteSamplingRate, centralNegativeNoise, deviceUnitTwoContributions

        var expectedReason: String {
            switch self {
            case .truncated, .oneByteLonger, .headerOnly, .badMagic, .reservedByte, .unknownModeCode, .paddingBits:
                return "malformed_update"
            case .flippedChecksum, .flippedValueByte: return "checksum_mismatch"
            case .wrongFormatVersion: return "unsupported_format_version"
            case .futureModelVersion: return "unknown_model_version"
            case .staleModelVersion: return "stale_model_version"
            case .wrongDimension: return "dimension_mismatch"
            case .secureAggregationMode, .wrongMode, .wrongUnit, .wrongBitWidth, .wrongClipNorm, .wrongScale,
                 .samplingRateAbovePlan, .centralNegativeNoise, .deviceUnitTwoContributions:
                return "plan_mismatch"
            case .mostNegativeValue: return "value_out_of_range"
            case .normAboveBound: return "norm_bound_exceeded"
            case .nanClipNorm, .nanNoiseMultiplier, .infiniteScale, .infiniteSamplingRate: return "non_finite"
            }
        }
    }

    static let plan = Fixture.plan()
    static let small: [Int64] = [3, -2, 0, 1, 5, -4, 0, 2, -1]

    static func bytes(_ bad: Bad) throws -> [UInt8] {
        let plan = Self.plan
        let good = try Fixture.envelope(Self.small, plan: plan).encode()
        var b = good
        switch bad {
        case .truncated: return Array(good.dropLast())
        case .oneByteLonger: return good + [0]
        case .headerOnly: return Array(good.prefix(84))
        case .badMagic: b[0] = 0x47; return Fixture.resealed(b)
        case .flippedChecksum: b[b.count - 2] ^= 0x10; return b
        case .flippedValueByte: b[81] ^= 0x01; return b
        case .wrongFormatVersion: b[8] = 2; return Fixture.resealed(b)
        case .reservedByte: b[13] = 1; return Fixture.resealed(b)
        case .unknownModeCode: b[10] = 9; return Fixture.resealed(b)
        case .secureAggregationMode: b[10] = 3; return Fixture.resealed(b)
        case .futureModelVersion: return try Fixture.envelope(Self.small, plan: plan, modelVersion: 11).encode()
        case .staleModelVersion: return try Fixture.envelope(Self.small, plan: plan, modelVersion: 7).encode()
        case .wrongDimension: return try Fixture.envelope(Self.small + [0], plan: plan).encode()
        case .wrongMode: return try Fixture.envelope(Self.small, plan: Fixture.plan(mode: .local)).encode()
        case .wrongUnit: return try Fixture.envelope(Self.small, plan: Fixture.plan(unit: .session)).encode()
        case .wrongBitWidth: return try Fixture.envelope(Self.small, plan: Fixture.plan(bitWidth: 13)).encode()
        case .wrongClipNorm:
            var e = try Fixture.envelope(Self.small, plan: plan)
            e.clipNorm = 1.5
            return try e.encode()
        case .wrongScale:
            var e = try Fixture.envelope(Self.small, plan: plan)
            e.scale *= 1.001
            return try e.encode()
        case .samplingRateAbovePlan:
            var e = try Fixture.envelope(Self.small, plan: plan)
            e.samplingRate = 0.02
            return try e.encode()
        case .mostNegativeValue:
            // Value 0 occupies the low 12 bits of bytes 80...81: 0x800 is -2^11.
            var e = try Fixture.envelope(Self.small, plan: plan)
            e.values[0] = 0
            b = try e.encode()
            b[80] = 0x00
            b[81] = (b[81] & 0xF0) | 0x08
            return Fixture.resealed(b)
        case .paddingBits:
            b[b.count - 5] |= 0x80  // 9 × 12 = 108 bits: the top 4 bits of the last value byte are padding
            return Fixture.resealed(b)
        case .normAboveBound:
            let limit = (Int64(1) << 11) - 1
            return try Fixture.envelope([limit, limit, 0, 0, 0, 0, 0, 0, 0], plan: plan).encode()
        case .nanClipNorm: return Fixture.withDouble(good, at: 48, .nan)
        case .nanNoiseMultiplier: return Fixture.withDouble(good, at: 32, .nan)
        case .infiniteScale: return Fixture.withDouble(good, at: 56, .infinity)
        case .infiniteSamplingRate: return Fixture.withDouble(good, at: 40, .infinity)
        case .centralNegativeNoise: return Fixture.withDouble(good, at: 32, -1)
        case .deviceUnitTwoContributions: b[28] = 2; return Fixture.resealed(b)
        }
    }

    @Test("every bad upload is refused with its reason", arguments: Bad.allCases)
    func refuses(_ bad: Bad) throws {
        let bytes = try Self.bytes(bad)
        #expect(Fixture.reason(bytes, plan: Self.plan) == bad.expectedReason)
    }

    @Test("the well-formed base of the bad cases is accepted, so each case fails for its own defect")
    func baseIsAccepted() throws {
        let bytes = try Fixture.envelope(Self.small, plan: Self.plan).encode()
        let update = try UpdateValidator.validate(bytes, plan: Self.plan, currentVersion: 10, dimension: Fixture.dimension)
        #expect(update.modelVersion == 10 && update.staleness == 0 && update.contributions == 1)
        #expect(update.dimension == Fixture.dimension && update.mode == .central && update.unit == .device)
        #expect(update.squaredNorm == Double(Self.small.reduce(0) { $0 + $1 * $1 }))
        #expect(update.idempotencyKey == Fixture.key(1))
        #expect(update.checksum == UpdateEnvelope.crc32(bytes, count: bytes.count - 4))
    }

    @Test("staleness is current − trained-from, up to maxStaleness inclusive", arguments: [(10, 0), (9, 1), (8, 2)])
    func staleness(trainedFrom: Int, expected: Int) throws {
        let bytes = try Fixture.envelope(Self.small, plan: Self.plan, modelVersion: UInt64(trainedFrom)).encode()
        let update = try UpdateValidator.validate(bytes, plan: Self.plan, currentVersion: 10, dimension: Fixture.dimension)
        #expect(update.staleness == expected)
    }

    @Test("real privatized uploads pass in both modes and both units", arguments: [
        (UpdateMode.central, PrivacyUnit.device), (.central, .session), (.local, .device), (.local, .session),
    ])
    func privatizedUploadsPass(mode: UpdateMode, unit: PrivacyUnit) throws {
        let plan = Fixture.plan(mode: mode, unit: unit, bitWidth: 16)
        for seed in UInt64(1) ... 20 {
            let bytes = try Fixture.privatizedBytes(plan: plan, dimension: 200, seed: seed)
            let update = try UpdateValidator.validate(bytes, plan: plan, currentVersion: 10, dimension: 200)
            let decoded = try UpdateEnvelope.decode(bytes)
            #expect(update.squaredNorm == Double(decoded.values.reduce(0) { $0 + $1 * $1 }))
            #expect(update.squaredNorm <= update.normBound * update.normBound)
        }
    }

    @Test("central norm bound is exact: k·⌊Δ²⌋ passes at the boundary, one more grid step fails")
    func centralBoundIsExact() throws {
        let plan = Fixture.plan()
        let grid = try plan.grid(dimension: Fixture.dimension)
        let floorDelta2 = Int64(IntegerGrid.sensitivitySquared(scale: grid.scale, clipNorm: 1, dimension: Fixture.dimension,
                                                               beta: grid.roundingBeta).rounded(.down))
        // The largest vector a·e₀ + b·e₁ with a² + b² ≤ ⌊Δ²⌋, then one step more.
        var a = Int64(Double(floorDelta2).squareRoot())
        while a * a > floorDelta2 { a -= 1 }
        var b: Int64 = 0
        while a * a + (b + 1) * (b + 1) <= floorDelta2 { b += 1 }
        let inside = try Fixture.envelope([a, b, 0, 0, 0, 0, 0, 0, 0], plan: plan).encode()
        let outside = try Fixture.envelope([a, b + 1, 0, 0, 0, 0, 0, 0, 0], plan: plan).encode()
        #expect(Fixture.reason(inside, plan: plan) == nil)
        #expect(Fixture.reason(outside, plan: plan) == "norm_bound_exceeded")
    }

    @Test("local mode: device z below the plan's refused, above it accepted on the device's own grid")
    func localNoiseMultiplier() throws {
        let plan = Fixture.plan(mode: .local)
        let below = try Fixture.envelope(Self.small, plan: plan, deviceNoiseMultiplier: 0.9).encode()
        #expect(Fixture.reason(below, plan: plan) == "plan_mismatch")
        let above = try Fixture.envelope(Self.small, plan: plan, deviceNoiseMultiplier: 2).encode()
        #expect(Fixture.reason(above, plan: plan) == nil)
    }

    @Test("local norm bound k·Δ + σ(√d + √(2t)) refuses an all-saturated update")
    func localNormBound() throws {
        let plan = Fixture.plan(mode: .local)
        let limit = (Int64(1) << 11) - 1
        let bytes = try Fixture.envelope([Int64](repeating: limit, count: 9), plan: plan).encode()
        #expect(Fixture.reason(bytes, plan: plan) == "norm_bound_exceeded")
        let grid = try plan.grid(dimension: 9)
        let bound = try UpdateValidator.localNormBound(grid: grid, contributions: 1, noiseMultiplier: 1)
        #expect(bound > grid.sensitivity * (1 + 3))  // k·Δ + σ·√9 at least
        #expect(bound < grid.sensitivity * (1 + 1.001 * (3 + 80.0.squareRoot())))
    }

    @Test("session unit: up to maxSessionsPerUpdate contributions, norm bound scales with k")
    func sessionContributions() throws {
        let plan = Fixture.plan(unit: .session)
        let grid = try plan.grid(dimension: 9)
        let v = Int64(grid.sensitivity * 2.5)  // above Δ, below 3Δ
        let three = try Fixture.envelope([v, 0, 0, 0, 0, 0, 0, 0, 0], plan: plan, contributions: 3).encode()
        #expect(Fixture.reason(three, plan: plan) == nil)
        let two = try Fixture.envelope([v, 0, 0, 0, 0, 0, 0, 0, 0], plan: plan, contributions: 2).encode()
        #expect(Fixture.reason(two, plan: plan) == "norm_bound_exceeded")
        let four = try Fixture.envelope([1, 0, 0, 0, 0, 0, 0, 0, 0], plan: plan, contributions: 4).encode()
        #expect(Fixture.reason(four, plan: plan) == "plan_mismatch")
    }

    @Test("an invalid plan is refused before the bytes are looked at")
    func invalidPlan() throws {
        let bytes = try Fixture.envelope(Self.small, plan: Self.plan).encode()
        var plan = Self.plan
        plan.clipNorm = .nan
        #expect(Fixture.reason(bytes, plan: plan) == "invalid_plan")
    }

    @Test("every reason the tests expect is in AggregationError.reasons")
    func reasonsAreListed() {
        for bad in Bad.allCases { #expect(AggregationError.reasons.contains(bad.expectedReason)) }
        #expect(Set(AggregationError.reasons).count == AggregationError.reasons.count)
    }
}
