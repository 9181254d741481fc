/// Who adds the noise, reported in every update.
public enum UpdateMode: Sendable, Hashable {
    /// The device adds discrete Gaussian noise (multiplier z) itself: each upload alone is DP
    /// against anyone who sees it, the aggregator included.
    case local
    /// The device clips and rounds; the (trusted) aggregator adds the noise to the sum.
    case central
    /// Reserved: secure aggregation with distributed discrete Gaussian noise (a later issue).
    /// Privatizing in this mode currently throws `modeNotSupported`.
    case secureAggregation

    /// A stable lowercase name for logs, the ledger and the wire.
    public var name: String {
        switch self {
        case .local: return "local"
        case .central: return "central"
        case .secureAggregation: return "secureAggregation"
        }
    }
}

/// The unit whose presence or absence the guarantee hides (add/remove neighbouring relation).
public enum PrivacyUnit: Sendable, Hashable {
    /// All of a device's events (default for a single-user board). The whole update is clipped to C.
    case device
    /// One shopper session on a shared kiosk. Each session's contribution is clipped to C and
    /// rounded separately, then summed, so the sensitivity is per session (as DP-SGD clips per
    /// example). A shopper who returns in k sessions is protected only at group privacy k.
    case session

    /// A stable lowercase name.
    public var name: String {
        switch self {
        case .device: return "device"
        case .session: return "session"
        }
    }
}

/// The noise distribution a ledger entry or accountant query refers to.
public enum NoiseMechanism: Sendable, Hashable {
    /// The discrete Gaussian on the integer grid (what Hearth ships).
    case discreteGaussian
    /// The continuous Gaussian (reference; also what DP-SGD libraries account).
    case gaussian

    /// A stable lowercase name.
    public var name: String {
        switch self {
        case .discreteGaussian: return "discreteGaussian"
        case .gaussian: return "gaussian"
        }
    }
}

/// The privacy configuration of a device's updates.
public struct PrivacyConfiguration: Sendable, Hashable {
    /// L2 clip norm C per unit (device update or session contribution), in parameter units.
    public var clipNorm: Double
    /// Noise multiplier z: noise standard deviation over sensitivity.
    public var noiseMultiplier: Double
    /// Bits per uploaded coordinate.
    public var bitWidth: Int
    /// Who adds the noise.
    public var mode: UpdateMode
    /// What the guarantee protects.
    public var unit: PrivacyUnit
    /// Standard deviations of device noise the grid leaves room for before saturating.
    public var headroom: Double
    /// With the session unit, the most sessions one update may carry (the grid leaves room for
    /// their sum; more are refused with `tooManySessions`). Ignored for the device unit.
    public var maxSessionsPerUpdate: Int

    /// A configuration; validated when a privatizer is built from it.
    public init(clipNorm: Double, noiseMultiplier: Double, bitWidth: Int = 20,
                mode: UpdateMode = .local, unit: PrivacyUnit = .device, headroom: Double = 4,
                maxSessionsPerUpdate: Int = 1) {
        self.clipNorm = clipNorm
        self.noiseMultiplier = noiseMultiplier
        self.bitWidth = bitWidth
        self.mode = mode
        self.unit = unit
        self.headroom = headroom
        self.maxSessionsPerUpdate = maxSessionsPerUpdate
    }
}

/// A privatized update as it leaves the device: integers on the grid, plus what was done to them.
public struct PrivatizedUpdate: Sendable, Hashable {
    /// Grid values (saturated to the bit width), one per global parameter (dense).
    public var values: [Int64]
    /// Grid steps per parameter unit; divide by it to return to parameter units.
    public var scale: Double
    /// The mode the update was made in.
    public var mode: UpdateMode
    /// The unit of privacy.
    public var unit: PrivacyUnit
    /// Number of clipped contributions summed (1 for the device unit).
    public var contributions: Int
    /// Sensitivity Δ in grid units (of one unit's contribution).
    public var sensitivity: Double
    /// σ² = numerator/denominator of the discrete Gaussian added on the device (nil in central mode).
    public var deviceNoiseVariance: (numerator: UInt64, denominator: UInt64)?
    /// Coordinates that hit the bit-width limit and were saturated.
    public var saturatedCoordinates: Int

    /// The update back in parameter units (values / scale).
    public func dequantized() -> [Double] {
        values.map { Double($0) / scale }
    }

    public static func == (a: PrivatizedUpdate, b: PrivatizedUpdate) -> Bool {
        a.values == b.values && a.scale == b.scale && a.mode == b.mode && a.unit == b.unit
            && a.contributions == b.contributions && a.sensitivity == b.sensitivity
            && a.deviceNoiseVariance?.numerator == b.deviceNoiseVariance?.numerator
            && a.deviceNoiseVariance?.denominator == b.deviceNoiseVariance?.denominator
            && a.saturatedCoordinates == b.saturatedCoordinates
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(values)
        hasher.combine(scale)
        hasher.combine(contributions)
    }
}

/// Clip → round → (in local mode) discrete Gaussian noise: the device side of the privacy path.
public struct UpdatePrivatizer: Sendable {
    /// The configuration.
    public let configuration: PrivacyConfiguration
    /// The integer grid.
    public let grid: IntegerGrid
    /// The discrete Gaussian with σ_grid² ≥ (z·Δ)², rounded up to a rational.
    public let noise: DiscreteGaussian
    /// Test-only sabotage: skip the noise (so the audit can be shown to fail). Not public API.
    package var sabotageDisableNoise = false

    /// Builds the grid and the noise for `dimension` global parameters.
    ///
    /// Throws on an invalid clip norm, noise multiplier, bit width, or a bit width too small
    /// for the clip norm, dimension and headroom.
    public init(configuration: PrivacyConfiguration, dimension: Int) throws(PrivacyError) {
        guard configuration.noiseMultiplier.isFinite, configuration.noiseMultiplier > 0 else {
            throw .invalidNoiseMultiplier
        }
        let deviceZ = configuration.mode == .local ? configuration.noiseMultiplier : 0
        let grid = try IntegerGrid(clipNorm: configuration.clipNorm, dimension: dimension,
                                   bitWidth: configuration.bitWidth, deviceNoiseMultiplier: deviceZ,
                                   headroom: configuration.headroom,
                                   contributions: configuration.unit == .session ? configuration.maxSessionsPerUpdate : 1)
        let sigma = configuration.noiseMultiplier * grid.sensitivity
        self.configuration = configuration
        self.grid = grid
        self.noise = try DiscreteGaussian(varianceAtLeast: sigma * sigma)
    }

    /// Privatizes a whole-device update (one contribution).
    public func privatize<F: BinaryFloatingPoint, R: RandomNumberGenerator>(
        update: [F], using rng: inout R
    ) throws(PrivacyError) -> PrivatizedUpdate {
        try privatize(sessions: [update], using: &rng)
    }

    /// Privatizes a device's update given as per-session contributions.
    ///
    /// With the `.session` unit each session is clipped to C and rounded separately and the
    /// integer vectors are summed (sensitivity Δ per session). With the `.device` unit the
    /// sessions are summed first and the total is clipped and rounded once.
    public func privatize<F: BinaryFloatingPoint, R: RandomNumberGenerator>(
        sessions: [[F]], using rng: inout R
    ) throws(PrivacyError) -> PrivatizedUpdate {
        if configuration.mode == .secureAggregation { throw .modeNotSupported }
        guard !sessions.isEmpty else { throw .emptyUpdate }
        if configuration.unit == .session && sessions.count > configuration.maxSessionsPerUpdate {
            throw .tooManySessions
        }
        let d = grid.dimension
        for s in sessions where s.count != d { throw .dimensionMismatch }
        var total = [Int64](repeating: 0, count: d)
        let contributions: [[Double]]
        switch configuration.unit {
        case .device:
            var sum = [Double](repeating: 0, count: d)
            for s in sessions {
                for i in 0..<d {
                    let v = Double(s[i])
                    guard v.isFinite else { throw .nonFiniteUpdate }
                    sum[i] += v
                }
            }
            contributions = [sum]
        case .session:
            contributions = sessions.map { $0.map { Double($0) } }
        }
        for c in contributions {
            let clipped = try Clipping.clip(c, to: grid.clipNorm)
            let rounded = try grid.round(clipped, using: &rng)
            for i in 0..<d { total[i] += rounded[i] }
        }
        var variance: (numerator: UInt64, denominator: UInt64)? = nil
        if configuration.mode == .local {
            variance = (noise.varianceNumerator, noise.varianceDenominator)
            if !sabotageDisableNoise {
                for i in 0..<d { total[i] += noise.sample(using: &rng) }
            }
        }
        let limit = grid.maxMagnitude
        var saturated = 0
        for i in 0..<d {
            if total[i] > limit { total[i] = limit; saturated += 1 }
            else if total[i] < -limit { total[i] = -limit; saturated += 1 }
        }
        return PrivatizedUpdate(values: total, scale: grid.scale, mode: configuration.mode,
                                unit: configuration.unit, contributions: contributions.count,
                                sensitivity: grid.sensitivity, deviceNoiseVariance: variance,
                                saturatedCoordinates: saturated)
    }

    /// Central mode, aggregator side: adds the discrete Gaussian (σ_grid = z·Δ) once to the
    /// integer sum of the participating devices' clipped and rounded updates.
    public func addCentralNoise<R: RandomNumberGenerator>(to sum: [Int64], using rng: inout R) -> [Int64] {
        if sabotageDisableNoise { return sum }
        return sum.map { $0 + noise.sample(using: &rng) }
    }
}

/// The device's own Poisson-sampling coin: participate in a model version with probability q.
///
/// The aggregator's plan gives q; the device flips this coin itself from the secure source for
/// each model version, so the aggregator cannot choose who participates and amplification by
/// sampling is honest (against observers of the released model — the aggregator still sees who
/// uploaded). The coin is integer: participate iff a uniform 64-bit word is below ⌊q·2^64⌋, so
/// the realised probability is at most q (never more), which keeps the accountant's q conservative.
public struct ParticipationCoin: Sendable, Hashable {
    /// The requested sampling rate q.
    public let samplingRate: Double
    /// Participate iff next() < threshold (q = 1 always participates).
    let threshold: UInt64

    /// A coin for sampling rate q in (0, 1].
    public init(samplingRate: Double) throws(PrivacyError) {
        guard samplingRate.isFinite, samplingRate > 0, samplingRate <= 1 else { throw .invalidSamplingRate }
        self.samplingRate = samplingRate
        self.threshold = samplingRate >= 1 ? UInt64.max : UInt64(samplingRate * 0x1p64)
    }

    /// One flip.
    public func flip<R: RandomNumberGenerator>(using rng: inout R) -> Bool {
        if samplingRate >= 1 { return true }
        return rng.next() < threshold
    }
}
