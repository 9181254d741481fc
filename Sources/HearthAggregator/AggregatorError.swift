/// Errors of the aggregator service (configuration, store, start-up, signing).
///
/// One struct over a private code enum, like the other modules' errors: callers match a kind
/// (`error == .store("")`), people read `message`. Upload rejections are not errors of this
/// kind: they are `HearthAggregation.AggregationError`s with a stable `reason`.
public struct AggregatorError: Error, Sendable, Hashable, CustomStringConvertible {
    private enum Code: Sendable, Hashable {
        case configuration
        case store
        case notInitialized
        case alreadyInitialized
        case notFound
        case internalFailure
    }

    private let code: Code
    /// What went wrong, for people.
    public let message: String

    private init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// A setting or a file named by the configuration is unusable.
    public static func configuration(_ message: String) -> AggregatorError { AggregatorError(.configuration, message) }
    /// The SQLite store failed (the message carries SQLite's reason).
    public static func store(_ message: String) -> AggregatorError { AggregatorError(.store, message) }
    /// `serve` or a command needing a model ran before `init`.
    public static func notInitialized(_ message: String) -> AggregatorError { AggregatorError(.notInitialized, message) }
    /// `init` ran on a state directory that already has a model.
    public static func alreadyInitialized(_ message: String) -> AggregatorError { AggregatorError(.alreadyInitialized, message) }
    /// A named device or version does not exist.
    public static func notFound(_ message: String) -> AggregatorError { AggregatorError(.notFound, message) }
    /// An invariant broke (a stored model that no longer decodes, signing failure).
    public static func internalFailure(_ message: String) -> AggregatorError { AggregatorError(.internalFailure, message) }

    public var description: String { message }
    public static func == (lhs: AggregatorError, rhs: AggregatorError) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}
