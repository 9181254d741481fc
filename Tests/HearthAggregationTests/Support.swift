import HearthCore
@testable import HearthPrivacy
@testable import HearthAggregation

/// Shared fixtures: a small model (3 items × 2 + 3 biases = 9 parameters) and plans for it.
enum Fixture {
    static let items = 3
    static let width = 2
    static var dimension: Int { items * width + items }

    static func plan(mode: UpdateMode = .central, unit: PrivacyUnit = .device, bitWidth: Int = 12,
                     noiseMultiplier: Double = 1, version: UInt64 = 10) -> FederationPlan {
        FederationPlan(modelVersion: version, samplingRate: 0.01, clipNorm: 1, noiseMultiplier: noiseMultiplier,
                       mode: mode, unit: unit, maxSessionsPerUpdate: 3, bitWidth: bitWidth, headroom: 4, maxStaleness: 2)
    }

    static func parameters(items: Int = Fixture.items, width: Int = Fixture.width, seed: UInt64 = 1) -> GlobalParameters {
        var rng = SeededGenerator(seed: seed)
        return GlobalParameters(itemCount: items, dimension: width, using: &rng)
    }

    static func key(_ seed: UInt64) -> IdempotencyKey {
        var rng = SeededGenerator(seed: seed &+ 1000)
        return IdempotencyKey(using: &rng)
    }

    /// An envelope with explicit grid values on the plan's grid (fields as a compliant device sets them).
    static func envelope(_ values: [Int64], plan: FederationPlan, modelVersion: UInt64? = nil, seed: UInt64 = 1,
                         deviceNoiseMultiplier: Double? = nil, contributions: Int = 1) throws -> UpdateEnvelope {
        let z = deviceNoiseMultiplier ?? plan.noiseMultiplier
        let grid = try plan.grid(dimension: values.count, deviceNoiseMultiplier: plan.mode == .local ? z : 0)
        return UpdateEnvelope(modelVersion: modelVersion ?? plan.modelVersion, mode: plan.mode, unit: plan.unit,
                              contributions: contributions, noiseMultiplier: z, samplingRate: plan.samplingRate,
                              clipNorm: plan.clipNorm, bitWidth: plan.bitWidth, scale: grid.scale, values: values,
                              idempotencyKey: key(seed))
    }

    /// A real privatized upload of a random update made by `UpdatePrivatizer` under the plan.
    static func privatizedBytes(plan: FederationPlan, dimension: Int = Fixture.dimension, seed: UInt64,
                                modelVersion: UInt64? = nil) throws -> [UInt8] {
        var rng = SeededGenerator(seed: seed)
        let privatizer = try UpdatePrivatizer(configuration: plan.privacyConfiguration, dimension: dimension)
        let update = (0 ..< dimension).map { _ in Double.random(in: -0.5 ... 0.5, using: &rng) }
        let privatized = try privatizer.privatize(update: update, using: &rng)
        let envelope = UpdateEnvelope(update: privatized, configuration: plan.privacyConfiguration,
                                      modelVersion: modelVersion ?? plan.modelVersion,
                                      samplingRate: plan.samplingRate, idempotencyKey: key(seed))
        return try envelope.encode()
    }

    /// Replaces the CRC so a deliberately bad field gets past the checksum.
    static func resealed(_ bytes: [UInt8]) -> [UInt8] {
        var out = bytes
        let offset = out.count - 4
        let crc = UpdateEnvelope.crc32(out, count: offset)
        for i in 0 ..< 4 { out[offset + i] = UInt8(truncatingIfNeeded: crc >> UInt32(8 * i)) }
        return out
    }

    /// Overwrites an f64 header field and reseals.
    static func withDouble(_ bytes: [UInt8], at offset: Int, _ value: Double) -> [UInt8] {
        var out = bytes
        for i in 0 ..< 8 { out[offset + i] = UInt8(truncatingIfNeeded: value.bitPattern >> UInt64(8 * i)) }
        return resealed(out)
    }

    /// The reason `validate` throws, or nil if it accepts.
    static func reason(_ bytes: [UInt8], plan: FederationPlan, currentVersion: UInt64? = nil,
                       dimension: Int = Fixture.dimension) -> String? {
        do throws(AggregationError) {
            _ = try UpdateValidator.validate(bytes, plan: plan, currentVersion: currentVersion ?? plan.modelVersion,
                                             dimension: dimension)
            return nil
        } catch {
            return error.reason
        }
    }

    static func reason(_ body: () throws(AggregationError) -> Void) -> String? {
        do throws(AggregationError) {
            try body()
            return nil
        } catch {
            return error.reason
        }
    }
}
