#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import HearthTestSupport
import Synchronization
@testable import HearthUploader

/// A request as the test server saw it.
struct RecordedRequest: Sendable {
    var method: String
    var path: String
    var headers: [HTTPField]
    var body: [UInt8]

    func header(_ name: String) -> String? {
        headers.first { asciiLowercased($0.name) == asciiLowercased(name) }?.value
    }
}

/// A scripted response.
struct ScriptedResponse: Sendable {
    var status: Int
    var headers: [HTTPField] = []
    var body: [UInt8] = []
}

struct ServerError: Error, CustomStringConvertible {
    var description: String
}

/// A tiny blocking HTTP/1.1 server on 127.0.0.1 with an ephemeral port: one accept thread,
/// one request per connection (`Connection: close`), answers from a handler. Written with
/// Glibc sockets so that the client side is exercised against bytes on a real socket.
final class TestHTTPServer: @unchecked Sendable {
    let port: UInt16
    private let listener: Int32
    private let handler: @Sendable (RecordedRequest) -> ScriptedResponse
    private let recorded = Mutex<[RecordedRequest]>([])
    private let stopped = Atomic<Bool>(false)

    /// With `accepting: false` the socket listens but nobody ever accepts: connections
    /// complete in the backlog and no answer ever comes (a hung server).
    init(accepting: Bool = true, handler: @escaping @Sendable (RecordedRequest) -> ScriptedResponse = { _ in ScriptedResponse(status: 200) }) throws {
        let (fd, port) = try Loopback.listening(backlog: 16)
        self.listener = fd
        self.port = port
        self.handler = handler
        if accepting {
            try Loopback.startThread { [self] in self.acceptLoop() }
        }
    }

    deinit { stop() }

    var baseURL: String { "http://127.0.0.1:\(port)" }

    var requests: [RecordedRequest] { recorded.withLock { $0 } }

    func stop() {
        if stopped.exchange(true, ordering: .acquiringAndReleasing) { return }
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }

    /// A port on which nothing listens (bound, read, closed).
    static func deadPort() throws -> UInt16 {
        let (fd, port) = try Loopback.listening(backlog: 16)
        close(fd)
        return port
    }

    private func acceptLoop() {
        while !stopped.load(ordering: .acquiring) {
            let connection = accept(listener, nil, nil)
            if connection < 0 {
                if errno == EINTR { continue }
                return
            }
            var timeout = timeval(tv_sec: 5, tv_usec: 0)
            setsockopt(connection, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            if let request = readRequest(connection) {
                recorded.withLock { $0.append(request) }
                writeResponse(connection, handler(request))
            }
            close(connection)
        }
    }

    private func readRequest(_ fd: Int32) -> RecordedRequest? {
        var data: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        var headerEnd: Int?
        while headerEnd == nil {
            let n = read(fd, &chunk, chunk.count)
            if n <= 0 { return nil }
            data.append(contentsOf: chunk[0 ..< n])
            headerEnd = TestHTTPServer.find([13, 10, 13, 10], in: data)
        }
        guard let headerEnd else { return nil }
        let head = String(decoding: data[0 ..< headerEnd], as: UTF8.self)
        var lines = head.split(separator: "\r\n", omittingEmptySubsequences: false).map(String.init)
        guard !lines.isEmpty else { return nil }
        let requestLine = lines.removeFirst().split(separator: " ").map(String.init)
        guard requestLine.count >= 2 else { return nil }
        var headers: [HTTPField] = []
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = String(line[..<colon])
            let value = line[line.index(after: colon)...].trimmingPrefix(" ")
            headers.append(HTTPField(name, String(value)))
        }
        var request = RecordedRequest(method: requestLine[0], path: requestLine[1], headers: headers, body: [])
        let length = Int(request.header("Content-Length") ?? "0") ?? 0
        var body = Array(data[(headerEnd + 4)...])
        while body.count < length {
            let n = read(fd, &chunk, min(chunk.count, length - body.count))
            if n <= 0 { return nil }
            body.append(contentsOf: chunk[0 ..< n])
        }
        request.body = body
        return request
    }

    private func writeResponse(_ fd: Int32, _ response: ScriptedResponse) {
        var head = "HTTP/1.1 \(response.status) Scripted\r\nConnection: close\r\n"
        if response.status != 304 && response.status >= 200 {
            head += "Content-Length: \(response.body.count)\r\n"
        }
        for field in response.headers { head += "\(field.name): \(field.value)\r\n" }
        head += "\r\n"
        var bytes = Array(head.utf8)
        if response.status != 304 { bytes += response.body }
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            offset += n
        }
    }

    static func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        for i in 0 ... (haystack.count - needle.count) where Array(haystack[i ..< i + needle.count]) == needle {
            return i
        }
        return nil
    }
}

/// Monotonic milliseconds, for timing assertions.
func monotonicMilliseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
}
