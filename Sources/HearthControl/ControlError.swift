/// A `hearthctl` failure: a one-line message for the operator and the process exit code.
///
/// - `unreachable` (exit 3): the agent's socket is missing or refuses connections.
/// - `http` (exit 1): the agent answered with an error status; the message carries its
///   `error` (and `field`).
/// - everything else (exit 1): bad input (CSV, arguments), an unexpected answer, or a missing
///   confirmation.
public struct ControlError: Error, Sendable, Hashable, CustomStringConvertible {
    private enum Code: Sendable, Hashable {
        case unreachable
        case http
        case invalidResponse
        case invalidInput
        case confirmationRequired
        case fileSystem
    }

    private let code: Code
    /// What went wrong, one line.
    public let message: String
    /// The HTTP status the agent answered with (`http` errors only).
    public let status: Int?
    /// The field or parameter the agent named (`http` errors only, when it named one).
    public let field: String?

    private init(_ code: Code, _ message: String, status: Int? = nil, field: String? = nil) {
        self.code = code
        self.message = message
        self.status = status
        self.field = field
    }

    /// The agent could not be reached at `socketPath`.
    public static func unreachable(socketPath: String, reason: String) -> ControlError {
        ControlError(.unreachable, "cannot reach the agent at \(socketPath): \(reason)")
    }

    /// The agent answered `status` with `error` (and `field`).
    public static func http(status: Int, error: String, field: String?) -> ControlError {
        let named = field.map { " (field \($0))" } ?? ""
        return ControlError(.http, "the agent answered \(status): \(error)\(named)", status: status, field: field)
    }

    /// The agent's answer could not be understood.
    public static func invalidResponse(_ message: String) -> ControlError { ControlError(.invalidResponse, message) }
    /// The operator's input (a CSV row, an argument) is not valid.
    public static func invalidInput(_ message: String) -> ControlError { ControlError(.invalidInput, message) }
    /// A destructive command was run without `--yes`.
    public static func confirmationRequired(_ message: String) -> ControlError { ControlError(.confirmationRequired, message) }
    /// Reading a local file failed.
    public static func fileSystem(_ message: String) -> ControlError { ControlError(.fileSystem, message) }

    /// True when the agent could not be reached (exit code 3).
    public var isUnreachable: Bool { code == .unreachable }
    /// True when the agent answered with an HTTP error status.
    public var isHTTPError: Bool { code == .http }
    /// True when a destructive command lacked its confirmation.
    public var isConfirmationRequired: Bool { code == .confirmationRequired }

    /// The process exit code: 3 when the agent is unreachable, otherwise 1.
    public var exitCode: Int32 { code == .unreachable ? 3 : 1 }

    public var description: String { message }

    /// The same error with `prefix` and `suffix` added to the message.
    func annotated(prefix: String = "", suffix: String = "") -> ControlError {
        ControlError(code, prefix + message + suffix, status: status, field: field)
    }
}
