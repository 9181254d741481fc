#if canImport(Glibc)
import Glibc
#endif
import HearthCore
@testable import HearthLocalAPI
import HearthTestSupport
import Logging
import NIOPosix
import Synchronization

/// Blocking socket work runs here, never on the (two-thread) cooperative pool the server's
/// backend calls need.
let clientThreads: NIOThreadPool = {
    let pool = NIOThreadPool(numberOfThreads: 8)
    pool.start()
    return pool
}()

struct ClientError: Error, CustomStringConvertible {
    let description: String
}

/// A parsed HTTP response.
struct RawResponse: Sendable {
    var status: Int
    var headers: [(String, String)]
    var body: [UInt8]

    func header(_ name: String) -> String? {
        headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }

    var json: JSONValue? { try? JSONParser(maxDepth: 64).parse(body) }
    var object: [String: JSONValue] { json?.objectValue ?? [:] }
    var errorField: String? { object["field"]?.stringValue }
}

/// A raw Unix-socket client: plain socket/connect/send/recv so tests can send any bytes.
final class RawClient: @unchecked Sendable {
    let fd: CInt
    private var pending: [UInt8] = []

    /// Connects to `path`; reads time out after `timeoutSeconds`.
    ///
    /// `fd` is set only once connected: a class whose initializer throws after every stored
    /// property is set still runs `deinit`, so closing a failed socket here as well would close
    /// it twice (the second time, possibly a descriptor another test just opened).
    init(path: String, timeoutSeconds: Int = 5) throws {
        fd = try Self.connect(path: path, timeoutSeconds: timeoutSeconds)
    }

    private static func connect(path: String, timeoutSeconds: Int) throws -> CInt {
        let fd = socket(AF_UNIX, CInt(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ClientError(description: "socket failed") }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in bytes.enumerated() where i < raw.count - 1 { raw[i] = byte }
        }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard result == 0 else {
            let message = String(cString: strerror(errno))
            close(fd)
            throw ClientError(description: "connect to \(path) failed: \(message)")
        }
        return fd
    }

    deinit { close(fd) }

    /// Sends everything it can; returns false if the peer closed (EPIPE/ECONNRESET).
    @discardableResult
    func send(_ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes { raw in
                Glibc.send(fd, raw.baseAddress, raw.count, CInt(MSG_NOSIGNAL))
            }
            if sent <= 0 { return false }
            offset += sent
        }
        return true
    }

    @discardableResult
    func send(_ text: String) -> Bool { send(Array(text.utf8)) }

    /// Reads more bytes: nil at EOF or reset, throws on timeout.
    private func readMore() throws -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: 65536)
        let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if count > 0 { return Array(buffer[0 ..< count]) }
        if count == 0 { return nil }
        if errno == EAGAIN || errno == EWOULDBLOCK { throw ClientError(description: "read timed out") }
        return nil  // ECONNRESET and friends: treat as closed
    }

    /// Reads one response (Content-Length framed).
    func readResponse() throws -> RawResponse {
        var headerEnd: Int?
        while headerEnd == nil {
            if let index = Self.find([13, 10, 13, 10], in: pending) {
                headerEnd = index
                break
            }
            guard let more = try readMore() else { throw ClientError(description: "connection closed before a response") }
            pending += more
        }
        guard let headerEnd else { throw ClientError(description: "unreachable") }
        let headText = String(decoding: pending[0 ..< headerEnd], as: UTF8.self)
        var lines = headText.split(separator: "\r\n", omittingEmptySubsequences: false).map(String.init)
        let statusLine = lines.removeFirst().split(separator: " ")
        guard statusLine.count >= 2, let status = Int(statusLine[1]) else { throw ClientError(description: "bad status line") }
        let headers = lines.compactMap { line -> (String, String)? in
            guard let colon = line.firstIndex(of: ":") else { return nil }
            return (String(line[..<colon]), line[line.index(after: colon)...].trimmingPrefix(" ").description)
        }
        pending.removeFirst(headerEnd + 4)
        let length = headers.first { $0.0.lowercased() == "content-length" }.flatMap { Int($0.1) } ?? 0
        while pending.count < length {
            guard let more = try readMore() else { throw ClientError(description: "connection closed mid-body") }
            pending += more
        }
        let body = Array(pending[0 ..< length])
        pending.removeFirst(length)
        return RawResponse(status: status, headers: headers, body: body)
    }

    /// True if the server closes the connection (EOF or reset) before the read timeout.
    func waitForClose() -> Bool {
        while true {
            do {
                guard try readMore() != nil else { return true }
            } catch {
                return false
            }
        }
    }

    static func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        for i in 0 ... (haystack.count - needle.count) where haystack[i ..< i + needle.count].elementsEqual(needle) {
            return i
        }
        return nil
    }
}

/// Runs blocking client code on the client threads.
func offload<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await clientThreads.runIfActive(body)
}

/// One request on a fresh connection.
func request(_ path: String, _ method: String, _ target: String, body: [UInt8]? = nil, extraHeaders: String = "") async throws -> RawResponse {
    try await offload {
        let client = try RawClient(path: path)
        var head = "\(method) \(target) HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\(extraHeaders)"
        if let body { head += "Content-Length: \(body.count)\r\nContent-Type: application/json\r\n" }
        client.send(Array((head + "\r\n").utf8) + (body ?? []))
        return try client.readResponse()
    }
}

func request(_ path: String, _ method: String, _ target: String, json: String) async throws -> RawResponse {
    try await request(path, method, target, body: Array(json.utf8))
}

/// A fresh short temporary directory (async variant of `withTemporaryDirectory`).
func withTemporaryDirectoryAsync<T>(_ body: (String) async throws -> T) async throws -> T {
    var template = Array("/tmp/hla-XXXXXX".utf8CString)
    let created = template.withUnsafeMutableBufferPointer { buffer -> Bool in
        guard let base = buffer.baseAddress else { return false }
        return mkdtemp(base) != nil
    }
    guard created else { throw ClientError(description: "mkdtemp failed") }
    let path = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    defer { removeTree(path) }
    return try await body(path)
}

let quietLogger = Logger(label: "hearth.agent.api.test") { _ in SwiftLogNoOpLogHandler() }

/// Starts a server on a socket in a temporary directory, runs `body`, then cancels the server
/// and waits for it to stop.
func withServer(
    limits: LocalAPILimits = LocalAPILimits(), backend: FakeBackend = FakeBackend(),
    _ body: (_ socketPath: String, _ backend: FakeBackend, _ server: LocalAPIServer) async throws -> Void
) async throws {
    try await withTemporaryDirectoryAsync { directory in
        let path = directory + "/api.sock"
        let server = LocalAPIServer(
            configuration: LocalAPIConfiguration(listener: .unixSocket(path: path), limits: limits),
            backend: backend, logger: quietLogger
        )
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await server.run() }
            do {
                try await server.waitUntilListening()
                try await body(path, backend, server)
            } catch {
                group.cancelAll()
                throw error
            }
            group.cancelAll()
            try await group.waitForAll()
        }
    }
}

func event(item: String = "sku-1", kind: String = "view", session: String = "s-1", quantity: String? = nil, timestamp: String = "1700000000000") -> String {
    var fields = [#""item": "\#(item)""#, #""kind": "\#(kind)""#, #""session": "\#(session)""#, #""timestamp_ms": \#(timestamp)"#]
    if let quantity { fields.append(#""quantity": \#(quantity)"#) }
    return "{" + fields.joined(separator: ", ") + "}"
}

func batch(_ events: [String]) -> String { #"{"events": ["# + events.joined(separator: ",") + "]}" }
