import HearthConfig
import HearthLocalAPI

/// The aggregator's plan for the current model version (`GET /v1/plan`, `docs/aggregator.md`).
///
/// Outside bytes: this file imports only HearthConfig and HearthLocalAPI, so that the `plan`
/// fuzz target (`scripts/fuzz.sh`) compiles it as it is.
public struct ServerPlan: Sendable, Equatable {
    public var modelVersion: UInt64
    /// False once the server's privacy budget is spent.
    public var accepting: Bool
    public var samplingRate: Double
    public var clipNorm: Double
    public var noiseMultiplier: Double
    public var mode: String
    public var unit: String
    public var bitWidth: Int
    /// The server's pace steering: this device's offset in its retry window.
    public var retryAfterSeconds: Int

    /// Parses the plan document; nil when a field is missing or out of range.
    public init?(json: JSONValue) {
        guard let o = json.objectValue,
              let version = ServerPlan.integer(o["model_version"]), version >= 0,
              case .bool(let accepting)? = o["accepting"],
              let q = ServerPlan.number(o["sampling_rate"]), q > 0, q <= 1,
              let clip = ServerPlan.number(o["clip_norm"]), clip > 0, clip.isFinite,
              let z = ServerPlan.number(o["noise_multiplier"]), z >= 0, z.isFinite,
              let mode = o["mode"]?.stringValue, let unit = o["unit"]?.stringValue,
              let bits = ServerPlan.integer(o["bit_width"]), (4 ... 32).contains(bits) else { return nil }
        modelVersion = UInt64(version)
        self.accepting = accepting
        samplingRate = q
        clipNorm = clip
        noiseMultiplier = z
        self.mode = mode
        self.unit = unit
        bitWidth = Int(bits)
        retryAfterSeconds = Int(max(0, min(86_400, ServerPlan.integer(o["retry_after_seconds"]) ?? 0)))
    }

    /// Why this device's configuration cannot serve the plan (the server would refuse its
    /// upload as `plan_mismatch`), or nil when it can. The device never lowers its own noise
    /// or raises its clip norm to follow a server: a plan asking for less privacy than the
    /// device's configuration is not followed.
    public func mismatch(with configuration: AgentConfiguration) -> String? {
        if mode != configuration.privacyMode { return "the plan's privacy mode is \(mode), this device's \(configuration.privacyMode)" }
        if unit != configuration.privacyUnit { return "the plan's privacy unit is \(unit), this device's \(configuration.privacyUnit)" }
        if clipNorm != configuration.clipNorm { return "the plan's clip norm is \(clipNorm), this device's \(configuration.clipNorm)" }
        if bitWidth != configuration.bitWidth { return "the plan's bit width is \(bitWidth), this device's \(configuration.bitWidth)" }
        if mode == "local" && configuration.noiseMultiplier < noiseMultiplier {
            return "the plan asks for noise multiplier \(noiseMultiplier), above this device's \(configuration.noiseMultiplier)"
        }
        if mode == "central" && noiseMultiplier < configuration.noiseMultiplier {
            return "the plan's central noise multiplier \(noiseMultiplier) is below this device's floor \(configuration.noiseMultiplier)"
        }
        return nil
    }

    private static func integer(_ value: JSONValue?) -> Int64? {
        switch value {
        case .integer(let i)?: return i
        case .double(let d)? where d.rounded() == d && abs(d) < 9e15: return Int64(d)
        default: return nil
        }
    }

    private static func number(_ value: JSONValue?) -> Double? {
        switch value {
        case .integer(let i)?: return Double(i)
        case .double(let d)?: return d
        default: return nil
        }
    }
}
