/// Errors of starting and talking to child processes.
public struct ProcessError: Error, Hashable, Sendable, CustomStringConvertible {
    private enum Code: Hashable, Sendable {
        case spawnFailed
        case failed
        case timedOut
        case io
    }

    private let code: Code
    /// What went wrong, with where to look (the log, and its last lines when there are any).
    public let message: String

    private init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// posix_spawn refused (no such executable, no permission).
    public static func spawnFailed(_ message: String) -> ProcessError { ProcessError(.spawnFailed, message) }
    /// The process exited with a failure status, or exited while it should be running.
    public static func failed(_ message: String) -> ProcessError { ProcessError(.failed, message) }
    /// The process did not get where it should within the time allowed.
    public static func timedOut(_ message: String) -> ProcessError { ProcessError(.timedOut, message) }
    /// A file or directory could not be made, read or written.
    public static func io(_ message: String) -> ProcessError { ProcessError(.io, message) }

    public var description: String { message }
    public static func == (lhs: ProcessError, rhs: ProcessError) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}
