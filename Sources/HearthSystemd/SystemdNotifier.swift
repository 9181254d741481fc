#if canImport(Glibc)
import Glibc
#endif

/// The service side of systemd's notify protocol (`sd_notify(3)`), without libsystemd.
///
/// `Type=notify` services send `READY=1` once they serve, `WATCHDOG=1` at least every half of
/// `WatchdogSec`, `STATUS=...` lines and `STOPPING=1` on shutdown, as datagrams to the socket in
/// `NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace). Outside systemd (no
/// `NOTIFY_SOCKET`) every call is a no-op, so the agent runs the same in tests and by hand.
public struct SystemdNotifier: Sendable {
    /// Where notifications go, or nil when not running under systemd.
    public let socketPath: String?
    /// The watchdog interval systemd expects pings within, if it enabled one for this process.
    public let watchdogMicroseconds: UInt64?

    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` from `environment`.
    ///
    /// The watchdog applies only when `WATCHDOG_PID` is absent or names this process, as
    /// `sd_watchdog_enabled(3)` specifies.
    public init(environment: [String: String], processID: Int32 = getpid()) {
        let path = environment["NOTIFY_SOCKET"].flatMap { $0.isEmpty ? nil : $0 }
        socketPath = path
        var watchdog: UInt64?
        if let usec = environment["WATCHDOG_USEC"].flatMap({ UInt64($0) }), usec > 0 {
            if let pid = environment["WATCHDOG_PID"] {
                watchdog = Int32(pid) == processID ? usec : nil
            } else {
                watchdog = usec
            }
        }
        watchdogMicroseconds = watchdog
    }

    /// The process environment as a dictionary.
    public static func processEnvironment() -> [String: String] {
        var result: [String: String] = [:]
        var pointer = environ
        while let entry = pointer.pointee {
            let text = String(cString: entry)
            if let equals = text.firstIndex(of: "=") {
                result[String(text[..<equals])] = String(text[text.index(after: equals)...])
            }
            pointer += 1
        }
        return result
    }

    /// How often to ping: half the watchdog interval (nil when no watchdog is enabled).
    public var pingIntervalMicroseconds: UInt64? { watchdogMicroseconds.map { $0 / 2 } }

    /// Tells systemd the service is ready (and optionally why).
    public func ready(status: String? = nil) throws(SystemdError) {
        try send(status.map { "READY=1\nSTATUS=\($0)" } ?? "READY=1")
    }

    /// Pings the watchdog.
    public func watchdog() throws(SystemdError) { try send("WATCHDOG=1") }

    /// Tells systemd the service is shutting down.
    public func stopping() throws(SystemdError) { try send("STOPPING=1") }

    /// A one-line status shown by `systemctl status`.
    public func status(_ text: String) throws(SystemdError) {
        try send("STATUS=" + text.split(separator: "\n").joined(separator: " "))
    }

    /// Sends one raw notification (newline-separated `KEY=VALUE` lines).
    public func send(_ message: String) throws(SystemdError) {
        guard let socketPath else { return }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var pathBytes = Array(socketPath.utf8)
        if pathBytes.first == UInt8(ascii: "@") { pathBytes[0] = 0 }  // abstract namespace
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard !pathBytes.isEmpty, pathBytes.count < capacity else {
            throw .invalidSocket("NOTIFY_SOCKET '\(socketPath)' is empty or longer than \(capacity - 1) bytes")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in pathBytes.enumerated() { raw[i] = byte }
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + pathBytes.count + (pathBytes[0] == 0 ? 0 : 1))
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .sendFailed("socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let bytes = Array(message.utf8)
        let sent = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                bytes.withUnsafeBytes { body in
                    sendto(fd, body.baseAddress, body.count, Int32(MSG_NOSIGNAL), socketAddress, length)
                }
            }
        }
        guard sent == bytes.count else {
            throw .sendFailed("sendto \(socketPath): \(String(cString: strerror(errno)))")
        }
    }
}

/// Errors talking to systemd.
public struct SystemdError: Error, Hashable, Sendable, CustomStringConvertible {
    private enum Code: Hashable, Sendable {
        case invalidSocket
        case sendFailed
    }

    private let code: Code
    /// What went wrong.
    public let message: String

    private init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// `NOTIFY_SOCKET` cannot be used as an address.
    public static func invalidSocket(_ message: String) -> SystemdError { SystemdError(.invalidSocket, message) }
    /// The datagram could not be sent.
    public static func sendFailed(_ message: String) -> SystemdError { SystemdError(.sendFailed, message) }

    public var description: String { message }
    public static func == (lhs: SystemdError, rhs: SystemdError) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}
