/// Failures of the agent itself (start-up, model loading, training rounds).
public struct AgentError: Error, Sendable, Hashable, CustomStringConvertible {
    private enum Code: Sendable, Hashable {
        case startup
        case model
        case training
        case budget
    }

    private let code: Code
    /// What went wrong, for logs and operators.
    public let message: String

    private init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// The agent cannot start (state directory, database, kernel, ledger).
    public static func startup(_ message: String) -> AgentError { AgentError(.startup, message) }
    /// A model file cannot be used.
    public static func model(_ message: String) -> AgentError { AgentError(.model, message) }
    /// A training round failed.
    public static func training(_ message: String) -> AgentError { AgentError(.training, message) }
    /// The privacy budget refuses the round.
    public static func budget(_ message: String) -> AgentError { AgentError(.budget, message) }

    public var description: String { message }

    public static func == (lhs: AgentError, rhs: AgentError) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}
