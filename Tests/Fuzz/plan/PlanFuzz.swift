import HearthConfig
import HearthLocalAPI

/// The aggregator's plan document as the agent reads it (`GET /v1/plan`): `JSONParser`, then
/// `ServerPlan(json:)` (compiled here from `Sources/HearthAgent/ServerPlan.swift`), then
/// `mismatch(with:)` against the default agent configuration and a local-mode one.
///
/// Properties, beyond not crashing: every accepted plan's fields are in the ranges the agent
/// relies on (q in (0, 1], a finite positive clip norm, a finite non-negative noise multiplier,
/// 4 to 32 bits, a retry offset within a day); the plan re-serialised and parsed again gives the
/// same plan.
enum FuzzTarget {
    static let configurations: [AgentConfiguration] = [
        try? AgentConfiguration(toml: ""),
        try? AgentConfiguration(toml: "[privacy]\nmode = \"local\"\nnoise_multiplier = 2.5\n"),
    ].compactMap { $0 }

    static func run(_ bytes: [UInt8]) {
        guard let json = try? JSONParser().parse(bytes), let plan = ServerPlan(json: json) else { return }
        require(plan.samplingRate > 0 && plan.samplingRate <= 1, "accepted sampling rate \(plan.samplingRate)")
        require(plan.clipNorm > 0 && plan.clipNorm.isFinite, "accepted clip norm \(plan.clipNorm)")
        require(plan.noiseMultiplier >= 0 && plan.noiseMultiplier.isFinite, "accepted noise multiplier \(plan.noiseMultiplier)")
        require((4 ... 32).contains(plan.bitWidth), "accepted bit width \(plan.bitWidth)")
        require((0 ... 86_400).contains(plan.retryAfterSeconds), "accepted retry offset \(plan.retryAfterSeconds)")
        for configuration in configurations { _ = plan.mismatch(with: configuration) }
        let again = JSONValue.object([
            "model_version": .integer(Int64(plan.modelVersion)), "accepting": .bool(plan.accepting),
            "sampling_rate": .double(plan.samplingRate), "clip_norm": .double(plan.clipNorm),
            "noise_multiplier": .double(plan.noiseMultiplier), "mode": .string(plan.mode), "unit": .string(plan.unit),
            "bit_width": .integer(Int64(plan.bitWidth)), "retry_after_seconds": .integer(Int64(plan.retryAfterSeconds)),
        ])
        let reparsed = (try? JSONParser().parse(again.serializedBytes())).flatMap { ServerPlan(json: $0) }
        require(reparsed == plan, "the plan does not survive serialisation: \(plan) -> \(String(describing: reparsed))")
    }

    /// Plans as the aggregator writes them (docs/aggregator.md), and edge values.
    static func seeds() -> [(String, [UInt8])] {
        let documents: [(String, String)] = [
            ("central", #"{"model_version":7,"accepting":true,"sampling_rate":0.25,"clip_norm":1.0,"noise_multiplier":1.1,"mode":"central","unit":"device","bit_width":16,"retry_after_seconds":120}"#),
            ("local-session", #"{"model_version":0,"accepting":false,"sampling_rate":1,"clip_norm":0.5,"noise_multiplier":2.5,"mode":"local","unit":"session","bit_width":32}"#),
            ("edges", #"{"model_version":9007199254740991,"accepting":true,"sampling_rate":1e-9,"clip_norm":1e300,"noise_multiplier":0,"mode":"","unit":"x","bit_width":4,"retry_after_seconds":-5}"#),
            ("out-of-range", #"{"model_version":-1,"accepting":true,"sampling_rate":1.5,"clip_norm":0,"noise_multiplier":-1,"mode":"central","unit":"device","bit_width":33}"#),
            ("extra-fields", #"{"model_version":3.0,"accepting":true,"sampling_rate":0.5,"clip_norm":2,"noise_multiplier":1e-3,"mode":"central","unit":"device","bit_width":12,"extra":{"a":[1,2,{"b":null}]}}"#),
        ]
        return documents.map { ($0.0, Array($0.1.utf8)) }
    }
}
