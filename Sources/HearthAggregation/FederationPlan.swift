import HearthPrivacy

/// The server's rules for uploads against a model version; also the body of `GET /v1/plan`.
///
/// A device that follows the plan builds its `PrivacyConfiguration` from it (clip norm, noise
/// multiplier, bit width, mode, unit, headroom, session cap), flips its participation coin at
/// `samplingRate`, and so produces uploads on exactly the grid `grid(dimension:)` describes.
public struct FederationPlan: Sendable, Hashable {
    /// The current model version (what devices should train from).
    public var modelVersion: UInt64
    /// Poisson sampling rate q: each device takes part in a version with this probability.
    public var samplingRate: Double
    /// L2 clip norm C per unit, in parameter units.
    public var clipNorm: Double
    /// Noise multiplier z: the least a device adds in local mode, what the aggregator adds in central mode.
    public var noiseMultiplier: Double
    /// Who adds the noise (`.local` or `.central`; secure aggregation is not supported).
    public var mode: UpdateMode
    /// What the guarantee protects.
    public var unit: PrivacyUnit
    /// With the session unit, the most sessions one update may carry.
    public var maxSessionsPerUpdate: Int
    /// Bits per uploaded coordinate, 4...32.
    public var bitWidth: Int
    /// Standard deviations of device noise the grid leaves room for (see `IntegerGrid`).
    public var headroom: Double
    /// Versions behind the current one still accepted (0: only updates from the current version).
    public var maxStaleness: Int

    /// A plan from its fields; `validate()` checks them.
    public init(modelVersion: UInt64, samplingRate: Double, clipNorm: Double, noiseMultiplier: Double,
                mode: UpdateMode = .central, unit: PrivacyUnit = .device, maxSessionsPerUpdate: Int = 1,
                bitWidth: Int = 20, headroom: Double = 4, maxStaleness: Int = 4) {
        self.modelVersion = modelVersion
        self.samplingRate = samplingRate
        self.clipNorm = clipNorm
        self.noiseMultiplier = noiseMultiplier
        self.mode = mode
        self.unit = unit
        self.maxSessionsPerUpdate = maxSessionsPerUpdate
        self.bitWidth = bitWidth
        self.headroom = headroom
        self.maxStaleness = maxStaleness
    }

    /// The most contributions one update may carry: 1 for the device unit, the session cap otherwise.
    public var maxContributions: Int { unit == .session ? maxSessionsPerUpdate : 1 }

    /// The device's privacy configuration under this plan (what a compliant agent uses).
    public var privacyConfiguration: PrivacyConfiguration {
        PrivacyConfiguration(clipNorm: clipNorm, noiseMultiplier: noiseMultiplier, bitWidth: bitWidth, mode: mode,
                             unit: unit, headroom: headroom, maxSessionsPerUpdate: maxSessionsPerUpdate)
    }

    /// Checks every field: q in (0, 1], C finite and > 0, z finite and > 0 (a zero multiplier
    /// would release un-noised sums in central mode and has ε = ∞; it is refused in both modes),
    /// mode local or central, session cap ≥ 1, bit width 4...32, headroom finite and ≥ 0,
    /// staleness ≥ 0. Throws `invalid_plan`.
    public func validate() throws(AggregationError) {
        guard samplingRate.isFinite, samplingRate > 0, samplingRate <= 1 else {
            throw .invalidPlan("sampling rate must be in (0, 1], got \(samplingRate)")
        }
        guard clipNorm.isFinite, clipNorm > 0 else { throw .invalidPlan("clip norm must be finite and > 0, got \(clipNorm)") }
        guard noiseMultiplier.isFinite, noiseMultiplier > 0 else {
            throw .invalidPlan("noise multiplier must be finite and > 0, got \(noiseMultiplier)")
        }
        guard mode == .local || mode == .central else { throw .invalidPlan("mode \(mode.name) is not supported") }
        guard maxSessionsPerUpdate >= 1 else {
            throw .invalidPlan("maxSessionsPerUpdate must be >= 1, got \(maxSessionsPerUpdate)")
        }
        guard bitWidth >= 4, bitWidth <= 32 else { throw .invalidPlan("bit width must be in 4...32, got \(bitWidth)") }
        guard headroom.isFinite, headroom >= 0 else { throw .invalidPlan("headroom must be finite and >= 0, got \(headroom)") }
        guard maxStaleness >= 0 else { throw .invalidPlan("maxStaleness must be >= 0, got \(maxStaleness)") }
    }

    /// The integer grid a compliant device uses for `dimension` parameters with device-side
    /// noise multiplier `deviceNoiseMultiplier` (nil: the plan's z in local mode, 0 in central
    /// mode, where the device adds none). Exactly `UpdatePrivatizer`'s grid for this plan.
    public func grid(dimension: Int, deviceNoiseMultiplier: Double? = nil) throws(AggregationError) -> IntegerGrid {
        try validate()
        let z = deviceNoiseMultiplier ?? (mode == .local ? noiseMultiplier : 0)
        do {
            return try IntegerGrid(clipNorm: clipNorm, dimension: dimension, bitWidth: bitWidth,
                                   deviceNoiseMultiplier: z, headroom: headroom, contributions: maxContributions)
        } catch {
            throw .invalidPlan("no integer grid for d = \(dimension), b = \(bitWidth), C = \(clipNorm), z = \(z): \(error.message)")
        }
    }
}
