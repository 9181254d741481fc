/// Errors of the simulator.
public struct SimulationError: Error, Hashable, Sendable, CustomStringConvertible {
    private enum Code: Hashable, Sendable {
        case invalidArgument
        case privacy
        case aggregation
        case transport
    }

    private let code: Code
    /// What went wrong.
    public let message: String

    private init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// An option or input is out of range.
    public static func invalidArgument(_ message: String) -> SimulationError { SimulationError(.invalidArgument, message) }
    /// The privacy engine refused (calibration, privatization, encoding).
    public static func privacy(_ message: String) -> SimulationError { SimulationError(.privacy, message) }
    /// The aggregator core refused (validation, folding, publication).
    public static func aggregation(_ message: String) -> SimulationError { SimulationError(.aggregation, message) }
    /// Over HTTP: the aggregator process, a request or a local file failed.
    public static func transport(_ message: String) -> SimulationError { SimulationError(.transport, message) }

    public var description: String { message }
    public static func == (lhs: SimulationError, rhs: SimulationError) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}
