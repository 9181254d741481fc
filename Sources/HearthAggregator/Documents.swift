import HearthAggregation
import HearthConfig
import HearthLocalAPI
import HearthPrivacy

/// The body of `GET /v1/plan`: everything a device needs to take part in the current version.
public struct PlanDocument: Sendable, Equatable {
    public var plan: FederationPlan
    /// False once the privacy budget is spent: devices should not train for upload.
    public var accepting: Bool
    /// When the current round closes even if the buffer is not full (ms since the epoch).
    public var deadlineMilliseconds: Int64
    /// Pace steering: this device's offset in the retry window, in seconds.
    public var retryAfterSeconds: Int
    public var bufferSize: Int
    public var buffered: Int

    /// The JSON object (snake_case keys).
    public var json: JSONValue {
        .object([
            "model_version": .integer(Int64(plan.modelVersion)),
            "accepting": .bool(accepting),
            "sampling_rate": .double(plan.samplingRate),
            "clip_norm": .double(plan.clipNorm),
            "noise_multiplier": .double(plan.noiseMultiplier),
            "mode": .string(plan.mode.name),
            "unit": .string(plan.unit.name),
            "max_sessions_per_update": .int(plan.maxSessionsPerUpdate),
            "bit_width": .int(plan.bitWidth),
            "headroom": .double(plan.headroom),
            "max_staleness": .int(plan.maxStaleness),
            "deadline_ms": .integer(deadlineMilliseconds),
            "retry_after_seconds": .int(retryAfterSeconds),
            "buffer_size": .int(bufferSize),
            "buffered": .int(buffered),
        ])
    }
}

/// The central privacy ledger: ε of the released model after each version.
public struct PrivacyReport: Sendable {
    public var mode: String
    public var delta: Double
    public var epsilonBudget: Double
    public var samplingRate: Double
    public var noiseMultiplier: Double
    public var currentVersion: UInt64
    /// Versions that used device data (what ε composes over).
    public var dataVersions: Int
    public var accepting: Bool
    public var versions: [VersionRecord]

    /// ε spent so far (0 before any data was used).
    public var epsilonSpent: Double { versions.last(where: { $0.dataVersions == dataVersions })?.epsilon ?? 0 }

    init(configuration: AggregatorConfiguration, plan: FederationPlan, versions: [VersionRecord], currentVersion: UInt64,
         dataVersions: Int, accepting: Bool) {
        mode = plan.mode.name
        delta = configuration.delta
        epsilonBudget = configuration.epsilonBudget
        samplingRate = plan.samplingRate
        noiseMultiplier = plan.noiseMultiplier
        self.currentVersion = currentVersion
        self.dataVersions = dataVersions
        self.accepting = accepting
        self.versions = versions
    }

    /// The JSON object (snake_case keys).
    public var json: JSONValue {
        .object([
            "mode": .string(mode),
            "delta": .double(delta),
            "epsilon_budget": .double(epsilonBudget),
            "epsilon_spent": .double(epsilonSpent),
            "sampling_rate": .double(samplingRate),
            "noise_multiplier": .double(noiseMultiplier),
            "current_version": .integer(Int64(currentVersion)),
            "data_versions": .int(dataVersions),
            "accepting": .bool(accepting),
            "versions": .array(versions.map { v in
                .object([
                    "version": .integer(Int64(v.version)),
                    "parent": v.parent.map { .integer(Int64($0)) } ?? .null,
                    "created_ms": .integer(v.createdMilliseconds),
                    "updates": .int(v.updates),
                    "noise_sd": .double(v.noiseStandardDeviation),
                    "epsilon": .double(v.epsilon),
                    "data_versions": .int(v.dataVersions),
                    "origin": .string(v.origin),
                ])
            }),
        ])
    }
}

/// The optimiser state as stored with each version: little-endian
/// `steps u64 | has_m u8 | has_v u8 | count u64 | m f32[count]? | v f32[count]?`.
enum OptimizerStateCoding {
    static func encode(_ state: OptimizerState) -> [UInt8] {
        let count = state.firstMoment?.count ?? state.secondMoment?.count ?? 0
        var out: [UInt8] = []
        out.reserveCapacity(18 + 4 * count * 2)
        put(&out, UInt64(state.steps))
        out.append(state.firstMoment == nil ? 0 : 1)
        out.append(state.secondMoment == nil ? 0 : 1)
        put(&out, UInt64(count))
        for array in [state.firstMoment, state.secondMoment] {
            guard let array else { continue }
            for x in array {
                let bits = x.bitPattern
                for j in 0 ..< 4 { out.append(UInt8(truncatingIfNeeded: bits >> UInt32(8 * j))) }
            }
        }
        return out
    }

    static func decode(_ bytes: [UInt8]) throws(AggregatorError) -> OptimizerState {
        guard bytes.count >= 18 else { throw .internalFailure("stored optimiser state is truncated") }
        let steps = get(bytes, 0)
        let hasM = bytes[8] == 1, hasV = bytes[9] == 1
        let count = get(bytes, 10)
        let arrays = (hasM ? 1 : 0) + (hasV ? 1 : 0)
        guard count <= UInt64(bytes.count), bytes.count == 18 + 4 * Int(count) * arrays, steps <= UInt64(Int.max) else {
            throw .internalFailure("stored optimiser state has the wrong length")
        }
        var offset = 18
        func floats() -> [Float] {
            var out = [Float](repeating: 0, count: Int(count))
            for i in 0 ..< Int(count) {
                var bits: UInt32 = 0
                for j in 0 ..< 4 { bits |= UInt32(bytes[offset + 4 * i + j]) << UInt32(8 * j) }
                out[i] = Float(bitPattern: bits)
            }
            offset += 4 * Int(count)
            return out
        }
        var state = OptimizerState()
        state.steps = Int(steps)
        if hasM { state.firstMoment = floats() }
        if hasV { state.secondMoment = floats() }
        return state
    }

    private static func put(_ out: inout [UInt8], _ v: UInt64) {
        for j in 0 ..< 8 { out.append(UInt8(truncatingIfNeeded: v >> UInt64(8 * j))) }
    }

    private static func get(_ bytes: [UInt8], _ offset: Int) -> UInt64 {
        var v: UInt64 = 0
        for j in (0 ..< 8).reversed() { v = v << 8 | UInt64(bytes[offset + j]) }
        return v
    }
}
