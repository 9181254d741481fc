#if canImport(Glibc)
import Glibc
#endif
import HearthCore
import HearthPrivacy
import HearthStore
import HearthTestSupport
import Synchronization

// Support for the kill -9 crash-consistency tests (`CrashConsistencyTests.swift`): a blocking
// HTTP/1.1 client over TCP, a delaying HTTP proxy between an agent and its aggregator, threads,
// and read-only inspection of the SQLite stores after a kill.

/// Sleeps the calling thread for `milliseconds`.
func sleepMilliseconds(_ milliseconds: Int) {
    guard milliseconds > 0 else { return }
    var request = timespec(tv_sec: milliseconds / 1000, tv_nsec: (milliseconds % 1000) * 1_000_000)
    var remaining = timespec()
    while nanosleep(&request, &remaining) != 0 && errno == EINTR { request = remaining }
}

/// An HTTP message as read off a socket.
struct RawHTTPMessage: Sendable {
    /// Request: method and target; response: "HTTP/1.1" and the status code.
    var startLine: [String]
    var headers: [(String, String)]
    var body: [UInt8]

    /// The first header named `name` (case-insensitive).
    func header(_ name: String) -> String? {
        let lower = name.lowercased()
        return headers.first { $0.0 == lower }?.1
    }

    /// The status code of a response.
    var status: Int { startLine.count >= 2 ? Int(startLine[1]) ?? 0 : 0 }
}

/// Sends all of `bytes`; false when the peer went away.
func sendAllBytes(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
    var offset = 0
    while offset < bytes.count {
        let n = bytes[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else { return false }
        offset += n
    }
    return true
}

/// Reads one HTTP message (head, then `Content-Length` bytes of body, or to EOF when
/// `bodyToEOF` and no length is given). `onHead` sees the head before the body is read
/// (the proxy answers `Expect: 100-continue` there). Nil when the peer closed early.
func readHTTPMessage(_ fd: Int32, bodyToEOF: Bool = false, onHead: (RawHTTPMessage) -> Void = { _ in }) -> RawHTTPMessage? {
    var data: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    var headerEnd: Int?
    while headerEnd == nil {
        let n = read(fd, &chunk, chunk.count)
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { return nil }
        data += chunk[0 ..< n]
        headerEnd = find([13, 10, 13, 10], in: data)
        if headerEnd == nil && data.count > 1 << 20 { return nil }
    }
    guard let headerEnd else { return nil }
    var lines = String(decoding: data[0 ..< headerEnd], as: UTF8.self).split(separator: "\r\n").map(String.init)
    guard !lines.isEmpty else { return nil }
    let startLine = lines.removeFirst().split(separator: " ", maxSplits: 2).map(String.init)
    let headers = lines.compactMap { line -> (String, String)? in
        guard let colon = line.firstIndex(of: ":") else { return nil }
        return (String(line[..<colon]).lowercased(), String(line[line.index(after: colon)...].drop { $0 == " " }))
    }
    var message = RawHTTPMessage(startLine: startLine, headers: headers, body: Array(data[(headerEnd + 4)...]))
    onHead(message)
    if let lengthText = message.header("content-length") {
        let length = Int(lengthText) ?? 0
        while message.body.count < length {
            let n = read(fd, &chunk, min(chunk.count, length - message.body.count))
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return nil }
            message.body += chunk[0 ..< n]
        }
    } else if bodyToEOF {
        while true {
            let n = read(fd, &chunk, chunk.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            message.body += chunk[0 ..< n]
        }
    }
    return message
}

/// One HTTP/1.1 request to 127.0.0.1:`port` (`Connection: close`); nil when there was no
/// complete answer (refused, reset, timed out).
func loopbackHTTP(port: Int, _ method: String, _ target: String, headers: [(String, String)] = [], body: [UInt8]? = nil,
                  timeoutSeconds: Int = 10) -> RawHTTPMessage? {
    guard let fd = try? Loopback.connected(port: port, timeoutSeconds: timeoutSeconds) else { return nil }
    defer { close(fd) }
    var head = "\(method) \(target) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n"
    for (name, value) in headers { head += "\(name): \(value)\r\n" }
    if let body { head += "Content-Length: \(body.count)\r\n" }
    guard sendAllBytes(fd, Array((head + "\r\n").utf8) + (body ?? [])) else { return nil }
    return readHTTPMessage(fd, bodyToEOF: true)
}

/// The port of a base URL `http://127.0.0.1:PORT`.
func portOf(_ baseURL: String) -> Int? {
    baseURL.split(separator: ":").last.flatMap { Int($0) }
}

/// A proxy between an agent and the aggregator that holds uploads and model downloads for a
/// while, so that a kill can land while one is in flight, and records what the aggregator
/// answered to each upload (by idempotency key).
///
/// Each connection carries one request (`Connection: close` both ways). `POST /v1/updates`
/// is held `uploadHoldBefore` ms before it is forwarded and `uploadHoldAfter` ms after the
/// aggregator answered; a `200` answer to `GET /v1/model` is held `modelHold` ms. Held work
/// continues when the agent dies meanwhile (the aggregator still receives the upload, as it
/// would from a network buffer), so a kill can fall before the server stored an update or
/// after it stored it but before the agent heard so.
final class DelayingProxy: @unchecked Sendable {
    /// What the aggregator answered for one idempotency key.
    struct UploadAnswers: Sendable {
        var accepted = 0
        var replayed = 0
        var other: [Int] = []
    }

    struct State: Sendable {
        /// Uploads read from the agent, not yet forwarded.
        var uploadsBeforeServer = 0
        /// Uploads the aggregator answered, the answer not yet passed to the agent.
        var uploadsAnsweredNotRelayed = 0
        /// `200` model answers being held or sent, with their version (from the ETag).
        var modelTransfers: [UInt64] = []
        var answers: [String: UploadAnswers] = [:]
        var uploadsForwarded = 0
        var modelDownloads = 0
    }

    let port: Int
    let upstreamPort: Int
    let uploadHoldBefore: Int
    let uploadHoldAfter: Int
    let modelHold: Int
    let state = Mutex(State())
    private let listener: Int32
    private let stopped = Atomic<Bool>(false)

    init(upstreamPort: Int, uploadHoldBefore: Int, uploadHoldAfter: Int, modelHold: Int) throws {
        self.upstreamPort = upstreamPort
        self.uploadHoldBefore = uploadHoldBefore
        self.uploadHoldAfter = uploadHoldAfter
        self.modelHold = modelHold
        let (fd, listeningPort) = try Loopback.listening()
        listener = fd
        port = Int(listeningPort)
        try Loopback.startThread { [self] in acceptLoop() }
    }

    var baseURL: String { "http://127.0.0.1:\(port)" }
    var snapshot: State { state.withLock { $0 } }

    func stop() {
        if stopped.exchange(true, ordering: .acquiringAndReleasing) { return }
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }

    private func acceptLoop() {
        while !stopped.load(ordering: .acquiring) {
            let connection = accept(listener, nil, nil)
            if connection < 0 {
                if errno == EINTR || errno == ECONNABORTED { continue }
                return
            }
            do {
                try Loopback.startThread { [self] in
                    handle(connection)
                    close(connection)
                }
            } catch {
                close(connection)
            }
        }
    }

    private func handle(_ client: Int32) {
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        guard let request = readHTTPMessage(client, onHead: { head in
            if head.header("expect")?.lowercased() == "100-continue" {
                _ = sendAllBytes(client, Array("HTTP/1.1 100 Continue\r\n\r\n".utf8))
            }
        }), request.startLine.count >= 2 else { return }
        let method = request.startLine[0]
        let target = request.startLine[1]
        let isUpload = method == "POST" && target.hasPrefix("/v1/updates")
        let isModel = method == "GET" && target.hasPrefix("/v1/model")
        if isUpload {
            state.withLock { $0.uploadsBeforeServer += 1 }
            sleepMilliseconds(uploadHoldBefore)
        }
        var head = "\(method) \(target) HTTP/1.1\r\n"
        for (name, value) in request.headers where !["connection", "expect", "content-length", "keep-alive"].contains(name) {
            head += "\(name): \(value)\r\n"
        }
        head += "Connection: close\r\nContent-Length: \(request.body.count)\r\n\r\n"
        var answer: RawHTTPMessage?
        if let upstream = try? Loopback.connected(port: upstreamPort, timeoutSeconds: 20) {
            if sendAllBytes(upstream, Array(head.utf8) + request.body) {
                answer = readHTTPMessage(upstream, bodyToEOF: true)
            }
            close(upstream)
        }
        if isUpload {
            let key = request.header("idempotency-key") ?? "?"
            state.withLock {
                $0.uploadsBeforeServer -= 1
                $0.uploadsForwarded += 1
                if let answer {
                    $0.uploadsAnsweredNotRelayed += 1
                    var answers = $0.answers[key] ?? UploadAnswers()
                    if answer.status == 200 {
                        if answer.header("idempotent-replayed") == "true" { answers.replayed += 1 } else { answers.accepted += 1 }
                    } else {
                        answers.other.append(answer.status)
                    }
                    $0.answers[key] = answers
                }
            }
            sleepMilliseconds(uploadHoldAfter)
        }
        var modelVersion: UInt64?
        if isModel, let answer, answer.status == 200 {
            let etag = answer.header("etag") ?? ""
            let version = UInt64(etag.filter { $0.isNumber }) ?? 0
            modelVersion = version
            state.withLock {
                $0.modelTransfers.append(version)
                $0.modelDownloads += 1
            }
            sleepMilliseconds(modelHold)
        }
        if let answer {
            var out = "HTTP/1.1 \(answer.startLine.dropFirst().joined(separator: " "))\r\n"
            for (name, value) in answer.headers where !["connection", "content-length", "transfer-encoding", "keep-alive"].contains(name) {
                out += "\(name): \(value)\r\n"
            }
            out += "Connection: close\r\nContent-Length: \(answer.body.count)\r\n\r\n"
            _ = sendAllBytes(client, Array(out.utf8) + answer.body)
        }
        state.withLock {
            if isUpload && answer != nil { $0.uploadsAnsweredNotRelayed -= 1 }
            if let modelVersion, let index = $0.modelTransfers.firstIndex(of: modelVersion) { $0.modelTransfers.remove(at: index) }
        }
    }
}

/// Read-only inspection of a store after a kill, through the same SQLite code the product uses.
struct StoreInspection {
    let connection: SQLiteConnection

    /// Opens `path` read-only (nothing is repaired or checkpointed by this connection).
    init(path: String) throws {
        connection = try SQLiteConnection(path: path, flags: SQLITE_OPEN_READONLY_FLAG)
    }

    func close() { connection.close() }

    /// `PRAGMA integrity_check` lines (`["ok"]` when healthy).
    func integrity() throws -> [String] { try connection.integrityCheck() }

    func count(_ sql: String) throws -> Int { Int(try connection.scalarInt(sql) ?? -1) }

    /// Every row of a two-column text/integer query as "text|integer".
    func pairs(_ sql: String) throws -> [String] {
        let statement = try connection.prepare(sql, cached: false)
        var out: [String] = []
        while try statement.step() { out.append(statement.text(0) + "|" + String(statement.int64(1))) }
        return out
    }

    /// The blobs of the first row of `sql` with one integer parameter.
    func blobs(_ sql: String, _ value: Int64, columns: Int32) throws -> [[UInt8]]? {
        let statement = try connection.prepare(sql, cached: false)
        try statement.bind(1, value)
        guard try statement.step() else { return nil }
        return (0 ..< columns).map { statement.blob($0) }
    }

    /// The hex of each blob in a one-column query.
    func hexKeys(_ sql: String) throws -> [String] {
        let statement = try connection.prepare(sql, cached: false)
        var out: [String] = []
        while try statement.step() { out.append(statement.blob(0).map { hexByte($0) }.joined()) }
        return out
    }
}

/// SQLITE_OPEN_READONLY (0x1) without importing the C module here.
let SQLITE_OPEN_READONLY_FLAG: Int32 = 0x0000_0001

func hexByte(_ byte: UInt8) -> String {
    let digits = Array("0123456789abcdef")
    return String([digits[Int(byte >> 4)], digits[Int(byte & 15)]])
}

/// A noised device update for `version` as an agent makes one, with a fresh idempotency key
/// drawn from `rng`.
func crashTestEnvelope(version: UInt64, dimension: Int, rng: inout Xoshiro256) throws -> (bytes: [UInt8], key: String) {
    let privacy = PrivacyConfiguration(clipNorm: 1, noiseMultiplier: 1, bitWidth: 16, mode: .local, unit: .device)
    let raw = (0 ..< dimension).map { _ in Float.random(in: -0.05 ... 0.05, using: &rng) }
    let update = try UpdatePrivatizer(configuration: privacy, dimension: dimension).privatize(update: raw, using: &rng)
    let key = IdempotencyKey(using: &rng)
    let bytes = try UpdateEnvelope(update: update, configuration: privacy, modelVersion: version, samplingRate: 1,
                                   idempotencyKey: key).encode()
    return (bytes, key.hex)
}

/// An environment variable as an integer, or `fallback`.
func environmentInteger(_ name: String, _ fallback: Int) -> Int {
    guard let value = getenv(name) else { return fallback }
    return Int(String(cString: value)) ?? fallback
}
