/// Why the aggregation core refused an upload or an operation.
///
/// `reason` is a stable snake_case token (the `X-Hearth-Reason` header and the metrics label);
/// `message` is a sentence for people, naming the field and the values involved.
public struct AggregationError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Stable snake_case token, e.g. `checksum_mismatch`.
    public var reason: String
    /// Human sentence naming the field and values.
    public var message: String

    /// An error from its reason token and message.
    public init(reason: String, message: String) {
        self.reason = reason
        self.message = message
    }

    /// `reason: message`.
    public var description: String { reason + ": " + message }
}
