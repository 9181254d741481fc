/// The one error type of the privacy engine.
///
/// Modelled on swift-service-lifecycle's `ServiceGroupError`: a struct over a private code enum,
/// so that new cases can be added without breaking clients. Compare with `==` against the static
/// members (`error == .nonFiniteUpdate`); `message` is a human-readable explanation.
public struct PrivacyError: Error, Hashable, Sendable {
    private enum Code: Hashable, Sendable {
        case nonFiniteUpdate
        case emptyUpdate
        case dimensionMismatch
        case invalidClipNorm
        case invalidNoiseMultiplier
        case invalidSamplingRate
        case invalidSteps
        case invalidDelta
        case invalidEpsilon
        case invalidVariance
        case varianceOutOfRange
        case bitWidthTooSmall
        case invalidBitWidth
        case roundingFailed
        case modeNotSupported
        case calibrationFailed
        case budgetExceeded
        case invalidDiscretization
        case invalidAuditConfiguration
        case tooManySessions
        case truncatedEnvelope
        case malformedEnvelope
        case unsupportedEnvelopeVersion
        case envelopeChecksumMismatch
        case valueOutOfRange
        case invalidIdempotencyKey
    }

    private let code: Code

    private init(_ code: Code) {
        self.code = code
    }

    /// An update contained NaN or ±∞; it is rejected rather than clipped.
    public static let nonFiniteUpdate = PrivacyError(.nonFiniteUpdate)
    /// An update (or a session list) was empty.
    public static let emptyUpdate = PrivacyError(.emptyUpdate)
    /// Vectors that must have the same length do not.
    public static let dimensionMismatch = PrivacyError(.dimensionMismatch)
    /// The clipping norm is not finite and positive.
    public static let invalidClipNorm = PrivacyError(.invalidClipNorm)
    /// The noise multiplier is not finite and positive (or is negative where zero is allowed).
    public static let invalidNoiseMultiplier = PrivacyError(.invalidNoiseMultiplier)
    /// The sampling rate is not in (0, 1].
    public static let invalidSamplingRate = PrivacyError(.invalidSamplingRate)
    /// The number of steps is not positive.
    public static let invalidSteps = PrivacyError(.invalidSteps)
    /// δ is not in (0, 1).
    public static let invalidDelta = PrivacyError(.invalidDelta)
    /// ε is not finite and positive.
    public static let invalidEpsilon = PrivacyError(.invalidEpsilon)
    /// A rational variance has a zero numerator or denominator.
    public static let invalidVariance = PrivacyError(.invalidVariance)
    /// A rational variance is too large for the sampler's 128-bit exact arithmetic.
    public static let varianceOutOfRange = PrivacyError(.varianceOutOfRange)
    /// The bit width leaves no room for the clipped values plus noise headroom.
    public static let bitWidthTooSmall = PrivacyError(.bitWidthTooSmall)
    /// The bit width is outside 4...32.
    public static let invalidBitWidth = PrivacyError(.invalidBitWidth)
    /// Conditional stochastic rounding did not meet its norm bound within the retry limit.
    public static let roundingFailed = PrivacyError(.roundingFailed)
    /// The update mode is reserved and not implemented yet (secure aggregation).
    public static let modeNotSupported = PrivacyError(.modeNotSupported)
    /// Calibration could not bracket a noise multiplier for the target.
    public static let calibrationFailed = PrivacyError(.calibrationFailed)
    /// The device ledger refuses: the next upload would exceed the privacy budget.
    public static let budgetExceeded = PrivacyError(.budgetExceeded)
    /// The PLD discretisation interval or tail bound is invalid.
    public static let invalidDiscretization = PrivacyError(.invalidDiscretization)
    /// The audit configuration is invalid (too few trials, bad confidence level, ...).
    public static let invalidAuditConfiguration = PrivacyError(.invalidAuditConfiguration)

    /// More sessions than the configured maximum per update (or a maximum below 1).
    public static let tooManySessions = PrivacyError(.tooManySessions)

    /// An update envelope is shorter or longer than its header declares.
    public static let truncatedEnvelope = PrivacyError(.truncatedEnvelope)
    /// An update envelope has a bad magic, reserved bits set, or a field outside its range.
    public static let malformedEnvelope = PrivacyError(.malformedEnvelope)
    /// An update envelope has a format version this build cannot read.
    public static let unsupportedEnvelopeVersion = PrivacyError(.unsupportedEnvelopeVersion)
    /// An update envelope fails its CRC-32.
    public static let envelopeChecksumMismatch = PrivacyError(.envelopeChecksumMismatch)
    /// A grid value is outside ±(2^(bitWidth−1) − 1).
    public static let valueOutOfRange = PrivacyError(.valueOutOfRange)
    /// An idempotency key is not exactly 16 bytes (or 32 hex digits).
    public static let invalidIdempotencyKey = PrivacyError(.invalidIdempotencyKey)

    /// A human-readable explanation of the error.
    public var message: String {
        switch code {
        case .nonFiniteUpdate:
            return "update contains NaN or infinity; refusing to clip, round or upload it"
        case .emptyUpdate:
            return "update is empty"
        case .dimensionMismatch:
            return "vectors have different lengths"
        case .invalidClipNorm:
            return "clip norm must be finite and > 0"
        case .invalidNoiseMultiplier:
            return "noise multiplier must be finite and > 0"
        case .invalidSamplingRate:
            return "sampling rate must be in (0, 1]"
        case .invalidSteps:
            return "number of steps must be >= 1"
        case .invalidDelta:
            return "delta must be in (0, 1)"
        case .invalidEpsilon:
            return "epsilon must be finite and > 0"
        case .invalidVariance:
            return "variance must be a positive rational numerator/denominator"
        case .varianceOutOfRange:
            return "variance too large for exact 128-bit sampling (need denominator*(floor(sigma)+1)^2 <= 2^56 and numerator <= 2^62)"
        case .bitWidthTooSmall:
            return "bit width too small for the clip norm, dimension and noise headroom"
        case .invalidBitWidth:
            return "bit width must be in 4...32"
        case .roundingFailed:
            return "conditional stochastic rounding exceeded its retry limit"
        case .modeNotSupported:
            return "update mode not supported yet (secure aggregation lands in a later issue)"
        case .calibrationFailed:
            return "could not find a noise multiplier meeting the target epsilon"
        case .budgetExceeded:
            return "privacy budget exhausted: the next upload would exceed epsilon_max"
        case .invalidDiscretization:
            return "PLD discretisation interval and tail bound must be finite and > 0"
        case .invalidAuditConfiguration:
            return "invalid audit configuration"
        case .tooManySessions:
            return "more sessions in one update than maxSessionsPerUpdate (the grid has no room for them)"
        case .truncatedEnvelope:
            return "update envelope length does not match its header (truncated or trailing bytes)"
        case .malformedEnvelope:
            return "update envelope is malformed (magic, reserved bytes, mode, unit, bit width, dimension or a float field out of range)"
        case .unsupportedEnvelopeVersion:
            return "update envelope format version not supported by this build"
        case .envelopeChecksumMismatch:
            return "update envelope CRC-32 mismatch"
        case .valueOutOfRange:
            return "update value outside the range of its declared bit width"
        case .invalidIdempotencyKey:
            return "idempotency key must be exactly 16 bytes (32 hex digits)"
        }
    }
}
