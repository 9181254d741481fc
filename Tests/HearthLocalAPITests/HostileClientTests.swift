#if canImport(Glibc)
import Glibc
#endif
import HearthCore
@testable import HearthLocalAPI
import HearthTestSupport
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// Hostile requests tried, by class, and how many were wrongly accepted (answered 2xx, answered
/// without a JSON error, or not cut off in time). Printed by each test as `hostile-tally` lines
/// for docs/reliability.md.
final class HostileTally: Sendable {
    private struct Count {
        var tried = 0
        var wronglyAccepted = 0
    }

    private let counts = Mutex<[String: Count]>([:])

    func record(_ kind: String, wronglyAccepted: Bool) {
        counts.withLock { counts in
            counts[kind, default: Count()].tried += 1
            if wronglyAccepted { counts[kind, default: Count()].wronglyAccepted += 1 }
        }
    }

    var tried: Int { counts.withLock { $0.values.reduce(0) { $0 + $1.tried } } }
    var wronglyAccepted: Int { counts.withLock { $0.values.reduce(0) { $0 + $1.wronglyAccepted } } }

    /// One line per class, then the total, each starting with `hostile-tally <title>`.
    func printed(_ title: String) -> String {
        let lines = counts.withLock { counts in
            counts.keys.sorted().map { kind in
                let count = counts[kind] ?? Count()
                return "hostile-tally \(title) | \(kind) | tried \(count.tried) | wrongly accepted \(count.wronglyAccepted)"
            }
        }
        let text = (lines + ["hostile-tally \(title) | TOTAL | tried \(tried) | wrongly accepted \(wronglyAccepted)"]).joined(separator: "\n")
        print(text)
        return text
    }
}

/// Resident set size of this process (the server and its raw-socket clients), from /proc.
func residentKilobytes() -> Int {
    let fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return -1 }
    defer { close(fd) }
    var buffer = [UInt8](repeating: 0, count: 8192)
    let count = read(fd, &buffer, buffer.count)
    guard count > 0 else { return -1 }
    let text = String(decoding: buffer[0 ..< count], as: UTF8.self)
    guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }) else { return -1 }
    return Int(line.split(separator: " ").dropFirst().first ?? "") ?? -1
}

/// `withServer` (Support.swift) on a given event loop group.
func withServer(
    limits: LocalAPILimits, eventLoopGroup: any EventLoopGroup,
    _ body: (_ socketPath: String, _ backend: FakeBackend, _ server: LocalAPIServer) async throws -> Void
) async throws {
    let backend = FakeBackend()
    try await withTemporaryDirectoryAsync { directory in
        let path = directory + "/api.sock"
        let server = LocalAPIServer(
            configuration: LocalAPIConfiguration(listener: .unixSocket(path: path), limits: limits),
            backend: backend, logger: quietLogger, eventLoopGroup: eventLoopGroup
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

/// Client threads of this suite, apart from Support.swift's `clientThreads`: the slow-client
/// test holds eight of them for a second, which would queue the other suites' clients.
let hostileClientThreads: NIOThreadPool = {
    let pool = NIOThreadPool(numberOfThreads: 12)
    pool.start()
    return pool
}()

/// Runs blocking client code on this suite's threads.
func hostileOffload<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await hostileClientThreads.runIfActive(body)
}

/// A value shared between the test and its client threads.
final class Shared<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    var value: Value { mutex.withLock { $0 } }
    func update(_ change: (inout Value) -> Void) { mutex.withLock { change(&$0) } }
}

/// Nearest-rank percentile of `values` (milliseconds).
func percentile(_ values: [Int64], _ p: Double) -> Int64 {
    guard !values.isEmpty else { return -1 }
    let sorted = values.sorted()
    let rank = Int((p / 100 * Double(sorted.count)).rounded(.up)) - 1
    return sorted[min(max(rank, 0), sorted.count - 1)]
}

extension RawClient {
    /// Whether the server has sent something (a 408 or 503) or closed its end, without waiting.
    /// Checked by reading, not by a failing send: a child process spawned meanwhile by another
    /// test in this process inherits the server's accepted socket (NIO accepts without
    /// close-on-exec), and then the server's close does not reach this end until it exits.
    func peerSpokeOrClosed() -> Bool {
        var byte: UInt8 = 0
        let count = recv(fd, &byte, 1, CInt(MSG_PEEK) | CInt(MSG_DONTWAIT))
        if count >= 0 { return true }
        return errno != EAGAIN && errno != EWOULDBLOCK
    }

    /// The status of a response that has no body (the answer to `HEAD`), read up to the end of
    /// its head; nil if none came.
    func readHeadOnlyStatus() -> Int? {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while RawClient.find([13, 10, 13, 10], in: bytes) == nil {
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { return nil }
            bytes += chunk[0 ..< count]
        }
        let statusLine = String(decoding: bytes.prefix { $0 != 13 }, as: UTF8.self).split(separator: " ")
        return statusLine.count >= 2 ? Int(statusLine[1]) : nil
    }

    /// Sends `text` one byte at a time, `intervalMicroseconds` apart, until it is all sent, the
    /// peer closes, or `stop` says so; returns whether everything went out.
    func trickle(_ bytes: [UInt8], intervalMicroseconds: UInt32, stop: () -> Bool = { false }) -> Bool {
        for byte in bytes {
            if stop() { return false }
            guard send([byte]) else { return false }
            usleep(intervalMicroseconds)
        }
        return true
    }
}

/// The local API against hostile clients on a real socket: malformed and oversized requests,
/// slow clients, and a storm of connections while a well-behaved client keeps asking. Every
/// hostile request must get a clear 4xx with a JSON error (or be cut off in time), nothing may
/// reach the backend, memory must stay bounded and the good client must still be served.
@Suite("Hostile clients against the local API", .serialized, .timeLimit(.minutes(2)))
struct HostileClientTests {
    /// Small limits so oversized inputs are cheap to send.
    static var limits: LocalAPILimits {
        var limits = LocalAPILimits()
        limits.maxBodyBytes = 64 * 1024
        limits.maxHeaderBytes = 4096
        return limits
    }

    struct Case: Sendable {
        var kind: String
        var request: [UInt8]
        var statuses: Set<Int>

        init(_ kind: String, _ request: String, _ statuses: Set<Int> = [400]) {
            self.kind = kind
            self.request = Array(request.utf8)
            self.statuses = statuses
        }

        init(_ kind: String, bytes: [UInt8], _ statuses: Set<Int> = [400]) {
            self.kind = kind
            self.request = bytes
            self.statuses = statuses
        }
    }

    static func post(_ target: String, _ body: String) -> String {
        "POST \(target) HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
    }

    static func post(_ target: String, bytes body: [UInt8]) -> [UInt8] {
        Array("POST \(target) HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: \(body.count)\r\n\r\n".utf8) + body
    }

    static func get(_ target: String, method: String = "GET") -> String {
        "\(method) \(target) HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    }

    static func recommendations(_ query: String) -> String { get("/v1/recommendations?" + query) }

    static func singleEvent(_ fields: String) -> String { #"{"events": [{"# + fields + "}]}" }

    static let goodEventFields = #""item": "sku-1", "kind": "view", "session": "s-1", "timestamp_ms": 1700000000000"#

    /// Every malformed request class, with the statuses that answer it clearly.
    static var malformedCases: [Case] {
        var cases: [Case] = []
        // Sizes.
        let big = String(repeating: " ", count: 200 * 1024)
        cases.append(Case("oversized body, Content-Length", post("/v1/events", big), [413]))
        cases.append(Case("oversized body, Content-Length", "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n", [413]))
        cases.append(Case("oversized body, Content-Length", "POST /v1/rank HTTP/1.1\r\nHost: x\r\nContent-Length: 9223372036854775807\r\n\r\n{", [413]))
        let chunk = String(repeating: "x", count: 16 * 1024)
        cases.append(Case("oversized body, chunked",
                          "POST /v1/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                          + String(repeating: "4000\r\n" + chunk + "\r\n", count: 6), [413]))
        cases.append(Case("oversized body, chunked",
                          "POST /v1/rank HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n20000\r\n" + String(repeating: "y", count: 70_000), [413]))
        cases.append(Case("body without a length", "POST /v1/events HTTP/1.1\r\nHost: x\r\n\r\n" + singleEvent(goodEventFields), [411]))
        cases.append(Case("body without a length", "POST /v1/rank HTTP/1.0\r\n\r\n{\"session\":\"s\",\"candidates\":[\"a\"]}", [411]))
        cases.append(Case("oversized head", "GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Big: \(String(repeating: "a", count: 8192))\r\n\r\n", [431]))
        cases.append(Case("oversized head", "GET /v1/status HTTP/1.1\r\n" + (0 ..< 300).map { "X-\($0): y\r\n" }.joined() + "\r\n", [431]))
        cases.append(Case("oversized request target", get("/v1/recommendations?session=" + String(repeating: "s", count: 8192)), [414, 431]))
        // Encoding.
        var badByte = Array(post("/v1/events", singleEvent(#""item": "sku-X", "kind": "view", "session": "s-1", "timestamp_ms": 1"#)).utf8)
        if let x = badByte.firstIndex(of: UInt8(ascii: "X")) { badByte[x] = 0xFF }
        cases.append(Case("invalid UTF-8", bytes: badByte))
        cases.append(Case("invalid UTF-8", bytes: post("/v1/events", bytes: Array(#"{"events": ""#.utf8) + [0xC0, 0xAF] + Array(#""}"#.utf8))))
        cases.append(Case("invalid UTF-8", bytes: post("/v1/rank", bytes: Array(#"{"session": ""#.utf8) + [0xED, 0xA0, 0x80] + Array(#"", "candidates": ["a"]}"#.utf8))))
        cases.append(Case("invalid UTF-8", recommendations("session=%FF%FE")))
        cases.append(Case("invalid UTF-8", recommendations("session=s&exclude=%C3%28")))
        cases.append(Case("invalid UTF-8", bytes: Array("GET /v1/recommendations?session=".utf8) + [0xFF, 0xFE] + Array(" HTTP/1.1\r\nHost: x\r\n\r\n".utf8)))
        cases.append(Case("bad percent-encoding", recommendations("session=%G1")))
        cases.append(Case("bad percent-encoding", recommendations("session=abc%")))
        cases.append(Case("bad percent-encoding", recommendations("session=%F")))
        cases.append(Case("bad percent-encoding", recommendations("session=s&k=%%31")))
        cases.append(Case("bad percent-encoding", get("/v1/%ZZstatus")))
        // JSON structure.
        let depth = 30_000  // 60 KB: under the body limit, so the parser's depth check answers
        cases.append(Case("deep JSON nesting", post("/v1/events", #"{"events": "# + String(repeating: "[", count: depth) + String(repeating: "]", count: depth) + "}")))
        cases.append(Case("deep JSON nesting", post("/v1/rank", String(repeating: #"{"a":"#, count: 5_000) + "1" + String(repeating: "}", count: 5_000))))
        cases.append(Case("deep JSON nesting", post("/v1/events", String(repeating: "[", count: 40_000))))
        cases.append(Case("malformed JSON", post("/v1/events", "")))
        cases.append(Case("malformed JSON", post("/v1/events", #"{"events": [}"#)))
        cases.append(Case("malformed JSON", post("/v1/events", singleEvent(goodEventFields) + "garbage")))
        cases.append(Case("malformed JSON", post("/v1/events", singleEvent(#""item": "sku-1", "kind": "view", "session": "s-1", "timestamp_ms": NaN"#))))
        cases.append(Case("malformed JSON", post("/v1/events", singleEvent(#""item": "sku-1", "kind": "view", "session": "s-1", "timestamp_ms": Infinity"#))))
        cases.append(Case("malformed JSON", post("/v1/rank", #"{'session': 's', 'candidates': ['a']}"#)))
        cases.append(Case("unknown field", post("/v1/events", singleEvent(goodEventFields + #", "colour": "red""#))))
        cases.append(Case("unknown field", post("/v1/events", #"{"events": [], "extra": 1}"#)))
        cases.append(Case("unknown field", post("/v1/rank", #"{"session": "s", "candidates": ["a"], "boost": 10}"#)))
        cases.append(Case("duplicate field", post("/v1/rank", #"{"session": "a", "session": "b", "candidates": ["x"]}"#)))
        cases.append(Case("duplicate field", post("/v1/events", singleEvent(goodEventFields + #", "item": "sku-2""#))))
        cases.append(Case("duplicate field", recommendations("session=a&session=b")))
        cases.append(Case("duplicate field", recommendations("session=a&k=1&k=2")))
        cases.append(Case("duplicate field", "POST /v1/rank HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n{\"a\":1"))
        cases.append(Case("duplicate field", "POST /v1/rank HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"))
        // Field values.
        for k in ["-1", "0", "1001", "99999999999999999999999", "abc", "1.5", "1e3", "", "0x10", "+5", "10abc", "%2D1", "NaN"] {
            cases.append(Case("bad k", recommendations("session=s&k=" + k)))
        }
        for value in ["-1", "1.5", "1e30", "\"1700000000000\"", "null", "true", "-0.5", "99999999999999999999999"] {
            cases.append(Case("bad event field", post("/v1/events", singleEvent(#""item": "sku-1", "kind": "view", "session": "s-1", "timestamp_ms": "# + value))))
        }
        for value in ["0", "10001", "-3", "2.5", "\"2\""] {
            cases.append(Case("bad event field", post("/v1/events", singleEvent(goodEventFields + #", "quantity": "# + value))))
        }
        cases.append(Case("bad event field", post("/v1/events", singleEvent(#""item": "", "kind": "view", "session": "s-1", "timestamp_ms": 1"#))))
        cases.append(Case("bad event field", post("/v1/events", singleEvent(#""item": "\#(String(repeating: "i", count: 129))", "kind": "view", "session": "s-1", "timestamp_ms": 1"#))))
        cases.append(Case("bad event field", post("/v1/events", singleEvent(#""item": "a\u0000b", "kind": "view", "session": "s-1", "timestamp_ms": 1"#))))
        cases.append(Case("bad event field", post("/v1/events", singleEvent(#""item": "sku-1", "kind": "like", "session": "s-1", "timestamp_ms": 1"#))))
        cases.append(Case("bad event field", post("/v1/events", singleEvent(#""item": "sku-1", "kind": "view", "timestamp_ms": 1"#))))
        cases.append(Case("bad event field", post("/v1/events", #"{"events": [null]}"#)))
        cases.append(Case("bad event field", post("/v1/events", #"{"events": {"item": "sku-1"}}"#)))
        cases.append(Case("bad event field", post("/v1/events", #"{"events": ["# + Array(repeating: "{" + goodEventFields + "}", count: 1_001).joined(separator: ",") + "]}"), [413]))
        cases.append(Case("bad query field", recommendations("k=5")))
        cases.append(Case("bad query field", recommendations("session=")))
        cases.append(Case("bad query field", recommendations("session=a%0Ab")))
        cases.append(Case("bad query field", recommendations("session=s&debug=1")))
        cases.append(Case("bad query field", recommendations("session=s&exclude=" + Array(repeating: "a", count: 1_001).joined(separator: ","))))
        cases.append(Case("bad query field", get("/v1/status?verbose=1")))
        cases.append(Case("bad rank field", post("/v1/rank", #"{"session": "s", "candidates": []}"#)))
        cases.append(Case("bad rank field", post("/v1/rank", #"{"session": "s", "candidates": [1, 2]}"#)))
        cases.append(Case("bad rank field", post("/v1/rank", #"{"session": "s", "candidates": ["# + (0 ..< 1_001).map { "\"i\($0)\"" }.joined(separator: ",") + "]}"), [413]))
        cases.append(Case("bad rank field", post("/v1/rank", #"{"candidates": ["a"]}"#)))
        cases.append(Case("body where none is taken", "GET /v1/status HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"))
        cases.append(Case("body where none is taken", "DELETE /v1/data HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"))
        // Methods and paths.
        for (method, path) in [("PUT", "/v1/status"), ("DELETE", "/v1/events"), ("GET", "/v1/data"), ("PATCH", "/v1/rank"),
                               ("GET", "/v1/events"), ("POST", "/v1/recommendations"), ("OPTIONS", "/v1/status"), ("HEAD", "/v1/privacy")] {
            let request = ["POST", "PUT", "PATCH"].contains(method)
                ? "\(method) \(path) HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
                : get(path, method: method)
            cases.append(Case("wrong method", request, [405]))
        }
        for path in ["/", "/v1", "/v1/status/", "/v1//status", "/v1/../v1/status", "/V1/STATUS", "/v2/status", "/v1/status%00",
                     "/v1/events.json", "/metrics", "/%2e%2e/etc/passwd"] {
            cases.append(Case("wrong path", get(path), path.contains("%00") ? [400, 404] : [404]))
        }
        cases.append(Case("wrong path", get("*"), [400, 404]))
        cases.append(Case("wrong path", get("http://localhost/v1/status"), [400, 404]))
        // Not HTTP/1.x at all, or broken framing.
        cases.append(Case("protocol garbage", bytes: [0, 1, 2, 3, 13, 10, 13, 10]))
        cases.append(Case("protocol garbage", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
        cases.append(Case("protocol garbage", "BREW /v1/status HTTP/1.1\r\nHost: x\r\n\r\n", [400, 405]))
        cases.append(Case("protocol garbage", "GET /v1/status HTTP/9.9\r\nHost: x\r\n\r\n"))
        cases.append(Case("protocol garbage", "GET /v1/status HTTP/1.1\r\nNoColonHere\r\n\r\n"))
        cases.append(Case("protocol garbage", "GET /v1/status HTTP/1.1\r\nHost : x\r\n\r\n"))
        cases.append(Case("protocol garbage", "POST /v1/rank HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n"))
        cases.append(Case("protocol garbage", "POST /v1/rank HTTP/1.1\r\nHost: x\r\nContent-Length: 5x\r\n\r\n"))
        cases.append(Case("protocol garbage", "POST /v1/rank HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n"))
        cases.append(Case("protocol garbage", "GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Bad: a\u{01}b\r\n\r\n"))
        return cases
    }

    @Test("every malformed, oversized or misdirected request gets a clear 4xx with a JSON error, and nothing reaches the backend")
    func malformedRequestsGetAClear4xx() async throws {
        let tally = HostileTally()
        try await withServer(limits: Self.limits) { path, backend, _ in
            for item in Self.malformedCases where !item.request.starts(with: Array("HEAD ".utf8)) {
                let response: RawResponse? = try await hostileOffload {
                    let client = try RawClient(path: path)
                    client.send(item.request)
                    return try? client.readResponse()
                }
                let status = response?.status ?? -1
                let error = response?.object["error"]?.stringValue ?? ""
                let isJSON = response?.header("Content-Type")?.hasPrefix("application/json") == true
                let clear = item.statuses.contains(status) && isJSON && !error.isEmpty
                tally.record(item.kind, wronglyAccepted: !clear)
                let shown = String(decoding: item.request.prefix(80), as: UTF8.self)
                #expect(clear, "\(item.kind): \(shown.debugDescription) answered \(status) \(error.debugDescription), expected \(item.statuses.sorted())")
            }
            // HEAD: the 405 comes without a body (RFC 9110 §9.3.2), so only its status is checked.
            for item in Self.malformedCases where item.request.starts(with: Array("HEAD ".utf8)) {
                let status = try await hostileOffload {
                    let client = try RawClient(path: path)
                    client.send(item.request)
                    return client.readHeadOnlyStatus()
                }
                tally.record(item.kind, wronglyAccepted: !item.statuses.contains(status ?? -1))
                #expect(item.statuses.contains(status ?? -1), "HEAD answered \(String(describing: status))")
            }
            // Nothing hostile reached the backend, and it still serves.
            let calls = backend.calls.withLock { ($0.ingestStarted, $0.recommendations.count, $0.ranks.count, $0.erased) }
            #expect(calls == (0, 0, 0, 0))
            #expect(try await request(path, "GET", "/v1/status").status == 200)
            #expect(try await request(path, "POST", "/v1/events", json: batch([event()])).status == 200)
        }
        _ = tally.printed("local-api malformed")
        #expect(tally.tried >= 100)
        #expect(tally.wronglyAccepted == 0)
    }

    @Test("slow clients (head or body dribbled, a short body, silence) are answered 408 or closed by the deadlines")
    func slowClientsAreCutOff() async throws {
        var limits = Self.limits
        limits.requestTimeoutMilliseconds = 1_000
        limits.idleTimeoutMilliseconds = 1_000
        let tally = HostileTally()
        let body = Array(batch([event()]).utf8)
        let head = Array("POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: \(body.count)\r\n\r\n".utf8)
        // (class, bytes sent at once, bytes dribbled one per 50 ms, whether a 408 is expected)
        let attacks: [(String, [UInt8], [UInt8], Bool)] = [
            ("slow head (byte by byte)", [], head, true),
            ("slow body (byte by byte)", head, body, true),
            ("short body then silence", head + body.prefix(10), [], true),
            ("partial head then silence", Array(head.prefix(20)), [], true),
            ("chunked body then silence", Array("POST /v1/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"eve\r\n".utf8), [], true),
            ("idle connection", [], [], false),
            ("idle connection", [], [], false),
        ]
        try await withServer(limits: limits) { path, backend, server in
            // The server's own count, 2.5 s in (deadlines 1 s): every attacking connection dropped.
            let serverCount = Task {
                try await Task.sleep(for: .milliseconds(2_500))
                return server.openConnections
            }
            let results = try await withThrowingTaskGroup(of: (String, Int64, Int?, Bool).self) { group in
                for (kind, upfront, dribble, _) in attacks {
                    group.addTask {
                        try await hostileOffload {
                            let client = try RawClient(path: path, timeoutSeconds: 10)
                            let start = monotonicMilliseconds()
                            client.send(upfront)
                            // Long enough to outlast the 1 s deadline many times over.
                            _ = client.trickle(dribble + dribble + dribble, intervalMicroseconds: 50_000,
                                               stop: { client.peerSpokeOrClosed() })
                            // The 408, or (idle) the end of the stream.
                            let response = try? client.readResponse()
                            let elapsed = monotonicMilliseconds() - start
                            return (kind, elapsed, response?.status, elapsed < 9_000)
                        }
                    }
                }
                // A kept-alive connection that goes quiet after one good request.
                group.addTask {
                    try await hostileOffload {
                        let client = try RawClient(path: path, timeoutSeconds: 10)
                        client.send("GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n")
                        let first = try client.readResponse().status
                        let start = monotonicMilliseconds()
                        let closed = client.waitForClose()
                        return ("idle after a keep-alive request", monotonicMilliseconds() - start, first == 200 ? nil : first, closed)
                    }
                }
                var results: [(String, Int64, Int?, Bool)] = []
                for try await result in group { results.append(result) }
                return results
            }
            let openAfterDeadlines = try await serverCount.value
            print("hostile-slow | connections the server still held 2.5 s in: \(openAfterDeadlines)")
            for (kind, elapsed, status, closed) in results {
                let wants408 = attacks.first { $0.0 == kind }?.3 ?? false
                // Cut off after the deadline, well before the client would have finished (3 x 50 ms
                // per byte: 10 s and more); the slack is for a loaded CI machine. If the client did
                // not see the close (see `peerSpokeOrClosed`), the server's own count decides.
                let inTime = (closed && elapsed >= 900 && elapsed < 6_000) || (elapsed >= 900 && openAfterDeadlines == 0)
                let answeredRight = wants408 ? status == 408 : status == nil
                tally.record(kind, wronglyAccepted: !(inTime && answeredRight))
                print("hostile-slow | \(kind) | cut off after \(elapsed) ms | answer \(status.map(String.init) ?? "none") | closed \(closed)")
                #expect(inTime && answeredRight, "\(kind): closed \(closed) after \(elapsed) ms, answer \(String(describing: status))")
            }
            #expect(backend.calls.withLock { $0.ingestStarted } == 0)
            try await waitUntil { server.openConnections == 0 }
        }
        _ = tally.printed("local-api slow")
        #expect(tally.wronglyAccepted == 0)
    }

    @Test("a connection flood and slowloris clients: bounded memory, the good client still served")
    func stormDoesNotStarveAWellBehavedClient() async throws {
        var configured = Self.limits
        configured.maxConnections = 64
        configured.requestTimeoutMilliseconds = 2_000
        // The kept-alive good client must not sit idle this long between two of its requests;
        // under a sanitizer the test's own threads can stall for seconds (TestBounds).
        configured.idleTimeoutMilliseconds = TestBounds.milliseconds(2_000)
        let limits = configured
        let slowlorisClients = 40
        let floodConnections = 2_000
        let tally = HostileTally()
        // The storm gets its own event loop and client threads, so that it does not queue the
        // other suites' servers and clients running in the same test process.
        let loops = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let threads = NIOThreadPool(numberOfThreads: 8)
        threads.start()
        defer {
            loops.shutdownGracefully { _ in }
            threads.shutdownGracefully { _ in }
        }
        @Sendable func offload<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
            try await threads.runIfActive(body)
        }
        @Sendable func request(_ path: String, _ method: String, _ target: String) async throws -> RawResponse {
            try await offload {
                let client = try RawClient(path: path)
                client.send("\(method) \(target) HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                return try client.readResponse()
            }
        }
        try await withServer(limits: limits, eventLoopGroup: loops) { path, backend, server in
            // Warm up (allocator arenas, NIO buffers) before the baseline.
            for _ in 0 ..< 100 { _ = try await request(path, "GET", "/v1/status") }
            var quiet: [Int64] = []
            for _ in 0 ..< 40 {
                let start = monotonicMilliseconds()
                #expect(try await request(path, "GET", "/v1/status").status == 200)
                quiet.append(monotonicMilliseconds() - start)
            }
            let before = residentKilobytes()

            // The good client's kept-alive connection, opened before the attack (a kiosk UI's).
            let kept = try await offload { try RawClient(path: path, timeoutSeconds: 10) }
            let stop = Shared(false)
            let peak = Shared(before)

            // Slowloris: connections that trickle a request byte by byte, reconnecting when dropped.
            let slowloris = Task {
                try await withThrowingTaskGroup(of: (Int, Int, Int).self) { group in
                    for _ in 0 ..< 4 {
                        group.addTask {
                            try await offload {
                                var opened = 0
                                var cutOff = 0
                                var heldTooLong = 0
                                var clients: [(client: RawClient, opened: Int64)] = []
                                let request = Array("POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 400\r\n\r\n".utf8)
                                var position = 0
                                while !stop.value {
                                    while clients.count < slowlorisClients / 4, let client = try? RawClient(path: path, timeoutSeconds: 1) {
                                        clients.append((client, monotonicMilliseconds()))
                                        opened += 1
                                    }
                                    // The head alone takes 6 s at this pace: it never completes in time.
                                    let byte = request[position % request.count]
                                    position += 1
                                    clients.removeAll { entry in
                                        if !entry.client.peerSpokeOrClosed() && entry.client.send([byte]) { return false }
                                        cutOff += 1
                                        return true
                                    }
                                    usleep(100_000)
                                }
                                // Still connected long after the request deadline: the server failed to cut it off.
                                let now = monotonicMilliseconds()
                                heldTooLong = clients.filter { now - $0.opened > limits.requestTimeoutMilliseconds + 2_000 }.count
                                return (opened, cutOff, heldTooLong)
                            }
                        }
                    }
                    var totals = (0, 0, 0)
                    for try await (opened, cutOff, heldTooLong) in group {
                        totals.0 += opened
                        totals.1 += cutOff
                        totals.2 += heldTooLong
                    }
                    return totals
                }
            }
            // Flood: thousands of connections at once, held open and silent.
            let flood = Task {
                try await offload {
                    var held: [RawClient] = []
                    var refused = 0
                    for _ in 0 ..< floodConnections {
                        if let client = try? RawClient(path: path, timeoutSeconds: 1) { held.append(client) } else { refused += 1 }
                    }
                    peak.update { $0 = max($0, residentKilobytes()) }
                    // Those over the cap are answered 503 and closed at once; read what each got.
                    var answers: [Int: Int] = [:]
                    for client in held {
                        let status = (try? client.readResponse())?.status ?? 0
                        answers[status, default: 0] += 1
                    }
                    return (held.count, refused, answers)
                }
            }

            // The good client, during the attack: on its kept-alive connection, and on fresh ones.
            var keptLatency: [Int64] = []
            var freshLatency: [Int64] = []
            var freshStatuses: [Int: Int] = [:]
            let attackStart = monotonicMilliseconds()
            var keptLastUsed = monotonicMilliseconds()
            while monotonicMilliseconds() - attackStart < 4_000 {
                let start = monotonicMilliseconds()
                let status: Int
                do {
                    status = try await offload {
                        kept.send("GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n")
                        return try kept.readResponse().status
                    }
                } catch {
                    throw ClientError(description: "kept-alive connection: \(error), \(start - keptLastUsed) ms after its previous "
                                      + "request (idle timeout \(limits.idleTimeoutMilliseconds) ms), \(keptLatency.count) answered before")
                }
                keptLastUsed = monotonicMilliseconds()
                #expect(status == 200)
                keptLatency.append(monotonicMilliseconds() - start)
                let freshStart = monotonicMilliseconds()
                let fresh = (try? await request(path, "GET", "/v1/status"))?.status ?? 0
                freshStatuses[fresh, default: 0] += 1
                if fresh == 200 { freshLatency.append(monotonicMilliseconds() - freshStart) }
                peak.update { $0 = max($0, residentKilobytes()) }
                try await Task.sleep(for: .milliseconds(50))
            }
            stop.update { $0 = true }
            let (slowOpened, slowCutOff, slowHeldTooLong) = try await slowloris.value
            let (floodHeld, floodRefused, floodAnswers) = try await flood.value
            _ = kept

            // Every attacking connection is gone within the deadlines; memory comes back down.
            try await waitUntil(timeoutMilliseconds: TestBounds.milliseconds(10_000)) { server.openConnections <= 1 }
            try await Task.sleep(for: .milliseconds(500))
            let after = residentKilobytes()
            // After the attack a fresh connection is served at once.
            #expect(try await request(path, "GET", "/v1/status").status == 200)

            // Tally: a flood connection was wrongly accepted if it got anything but a 503 or a
            // silent close (idle timeout); a slowloris connection if its request was served.
            for (status, count) in floodAnswers {
                for _ in 0 ..< count { tally.record("connection flood (held open, silent)", wronglyAccepted: !(status == 503 || status == 0)) }
            }
            for index in 0 ..< slowOpened {
                tally.record("slowloris (byte every 100 ms)", wronglyAccepted: index < slowHeldTooLong)
            }
            let ingested = backend.calls.withLock { $0.ingestStarted }

            print("""
                hostile-storm | flood: \(floodConnections) connections at once, \(floodHeld) connected, \(floodRefused) refused by connect, answers \(floodAnswers.sorted { $0.key < $1.key })
                hostile-storm | slowloris: \(slowOpened) connections opened over 4 s (\(slowlorisClients) at a time), \(slowCutOff) seen cut off, \(slowHeldTooLong) held past the deadline
                hostile-storm | good client quiet (fresh connections): p50 \(percentile(quiet, 50)) ms, p95 \(percentile(quiet, 95)) ms, max \(quiet.max() ?? -1) ms
                hostile-storm | good client under attack, kept-alive: \(keptLatency.count) requests, all 200; p50 \(percentile(keptLatency, 50)) ms, p95 \(percentile(keptLatency, 95)) ms, max \(keptLatency.max() ?? -1) ms
                hostile-storm | good client under attack, fresh connections: \(freshStatuses.sorted { $0.key < $1.key }); 200s p50 \(percentile(freshLatency, 50)) ms, p95 \(percentile(freshLatency, 95)) ms, max \(freshLatency.max() ?? -1) ms
                hostile-storm | process RSS: before \(before / 1024) MiB, peak \(peak.value / 1024) MiB, after \(after / 1024) MiB (server and clients in one process)
                """)
            #expect(ingested == 0)
            #expect(slowOpened >= slowlorisClients)
            #expect(floodAnswers[503, default: 0] >= floodHeld / 2,
                    "the connection cap answers the flood with 503s: \(floodAnswers)")
            #expect(keptLatency.count >= TestBounds.atLeast(10))
            // Loose bounds for a loaded 2-core CI machine; the figures above are what is reported.
            #expect(percentile(keptLatency, 95) < TestBounds.milliseconds(1_000), "kept-alive p95 \(percentile(keptLatency, 95)) ms")
            // New connections compete with the attackers for the 64 slots: some or all get 503
            // while the attack lasts (reported above); none may hang.
            #expect(Set(freshStatuses.keys).isSubset(of: [200, 503]), "fresh connections get 200 or 503, never hang: \(freshStatuses)")
            #expect(after - before < TestBounds.kibibytes(64 * 1024), "RSS grew from \(before) KiB to \(after) KiB")
        }
        _ = tally.printed("local-api storm")
        #expect(tally.wronglyAccepted == 0)
    }
}
