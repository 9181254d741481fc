/// Why the aggregation core refused an upload, a configuration or an operation.
///
/// `reason` is a stable snake_case token: the server sends it as the `X-Hearth-Reason` header
/// and uses it as the metrics label (`AggregationError.reasons` lists every token, so counters
/// can be registered up front). `message` is a sentence for people naming the field and values.
/// Compare errors by `reason`; messages may change.
public struct AggregationError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The reason tokens. Private so that new ones can be added without breaking clients.
    private enum Code: String, CaseIterable {
        case malformedUpdate = "malformed_update"
        case checksumMismatch = "checksum_mismatch"
        case unsupportedFormatVersion = "unsupported_format_version"
        case staleModelVersion = "stale_model_version"
        case unknownModelVersion = "unknown_model_version"
        case dimensionMismatch = "dimension_mismatch"
        case planMismatch = "plan_mismatch"
        case valueOutOfRange = "value_out_of_range"
        case normBoundExceeded = "norm_bound_exceeded"
        case nonFinite = "non_finite"
        case budgetExhausted = "budget_exhausted"
        case bufferEmpty = "buffer_empty"
        case bufferFull = "buffer_full"
        case invalidPlan = "invalid_plan"
        case invalidConfiguration = "invalid_configuration"
        case updateMismatch = "update_mismatch"
    }

    /// Stable snake_case token, e.g. `checksum_mismatch`.
    public var reason: String
    /// Human sentence naming the field and values.
    public var message: String

    private init(_ code: Code, _ message: String) {
        self.reason = code.rawValue
        self.message = message
    }

    /// `reason: message`.
    public var description: String { reason + ": " + message }

    /// Every reason token this module can produce.
    public static let reasons: [String] = Code.allCases.map { $0.rawValue }

    /// The body is not a well-formed update envelope (length, magic, reserved bytes, codes, padding).
    static func malformedUpdate(_ message: String) -> AggregationError { .init(.malformedUpdate, message) }
    /// The stored CRC-32 does not match the bytes.
    static func checksumMismatch(_ message: String) -> AggregationError { .init(.checksumMismatch, message) }
    /// The envelope's format version is not one this build reads.
    static func unsupportedFormatVersion(_ message: String) -> AggregationError { .init(.unsupportedFormatVersion, message) }
    /// The update was trained from a model version older than the plan accepts.
    static func staleModelVersion(_ message: String) -> AggregationError { .init(.staleModelVersion, message) }
    /// The update claims a model version newer than the current one.
    static func unknownModelVersion(_ message: String) -> AggregationError { .init(.unknownModelVersion, message) }
    /// The update's (or the state's) dimension is not the model's.
    static func dimensionMismatch(_ message: String) -> AggregationError { .init(.dimensionMismatch, message) }
    /// Mode, unit, bit width, clip norm, noise, scale or contributions disagree with the plan.
    static func planMismatch(_ message: String) -> AggregationError { .init(.planMismatch, message) }
    /// A value is −2^(b−1), outside the grid's saturation limit.
    static func valueOutOfRange(_ message: String) -> AggregationError { .init(.valueOutOfRange, message) }
    /// The update's L2 norm exceeds the bound its mode allows.
    static func normBoundExceeded(_ message: String) -> AggregationError { .init(.normBoundExceeded, message) }
    /// A floating-point header field is NaN or infinite.
    static func nonFinite(_ message: String) -> AggregationError { .init(.nonFinite, message) }
    /// Publishing another version would exceed the privacy budget.
    static func budgetExhausted(_ message: String) -> AggregationError { .init(.budgetExhausted, message) }
    /// Nothing is buffered to publish.
    static func bufferEmpty(_ message: String) -> AggregationError { .init(.bufferEmpty, message) }
    /// K updates are already buffered; publish before folding more.
    static func bufferFull(_ message: String) -> AggregationError { .init(.bufferFull, message) }
    /// The federation plan itself is invalid (server configuration).
    static func invalidPlan(_ message: String) -> AggregationError { .init(.invalidPlan, message) }
    /// The FedBuff configuration or optimiser state is invalid (server configuration).
    static func invalidConfiguration(_ message: String) -> AggregationError { .init(.invalidConfiguration, message) }
    /// `fold` was given bytes that are not the ones its `ValidatedUpdate` describes.
    static func updateMismatch(_ message: String) -> AggregationError { .init(.updateMismatch, message) }
}
