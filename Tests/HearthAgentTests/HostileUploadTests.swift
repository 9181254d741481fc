import CHearthSpawn
#if canImport(Glibc)
import Glibc
#endif
import HearthCore
import HearthLocalAPI
import HearthPrivacy
import HearthTestSupport
import Synchronization
import Testing

/// Hostile uploads against a real `hearth-aggregator serve` (plain HTTP on loopback): forged and
/// revoked credentials, replays (also across versions), oversized, slow, wrong-shape, NaN/∞ and
/// out-of-range envelopes with valid checksums, stale versions, and floods. Each must be refused
/// with its `X-Hearth-Reason`, counted under that reason in `/metrics`, and leave the model and
/// the running sum (the buffer) as they were. Prints `hostile-tally` lines for the report.
@Suite("Hostile uploads against the aggregator process", .serialized, .timeLimit(.minutes(3)))
struct HostileUploadTests {
    static let items = 20
    static let modelDimension = 4
    static var parameterCount: Int { items * modelDimension + items }
    static let maxBodyBytes = 4096
    /// In `add`: use the good envelope's key, or device 2's credential.
    static let same = "<as the good upload>"

    /// A parsed HTTP/1.1 response.
    struct Answer: Sendable {
        var status: Int
        var headers: [(String, String)]
        var body: [UInt8]
        func header(_ name: String) -> String? { headers.first { $0.0.lowercased() == name.lowercased() }?.1 }
        var reason: String? { header("X-Hearth-Reason") }
        var text: String { String(decoding: body, as: UTF8.self) }
    }

    /// A blocking TCP client to 127.0.0.1 with read/write timeouts.
    final class Connection: @unchecked Sendable {
        let fd: Int32
        private var pending: [UInt8] = []

        /// `fd` is set only once connected: a class whose initializer throws after every stored
        /// property is set still runs `deinit`, so closing a failed socket here as well would
        /// close it twice (the second time, possibly a descriptor another test just opened).
        init(port: Int, timeoutSeconds: Int = 10) throws {
            fd = try Loopback.connected(port: port, timeoutSeconds: timeoutSeconds)
        }

        deinit { close(fd) }

        @discardableResult
        func send(_ bytes: [UInt8]) -> Bool {
            var offset = 0
            while offset < bytes.count {
                let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                if n <= 0 { return false }
                offset += n
            }
            return true
        }

        private func readMore() -> [UInt8]? {
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            return n > 0 ? Array(chunk[0 ..< n]) : nil
        }

        /// One response (Content-Length framed, or to EOF without one); nil on close or timeout.
        func readAnswer() -> Answer? {
            var headEnd: Int?
            while headEnd == nil {
                if let index = find([13, 10, 13, 10], in: pending) { headEnd = index; break }
                guard let more = readMore() else { return nil }
                pending += more
            }
            guard let headEnd else { return nil }
            var lines = String(decoding: pending[0 ..< headEnd], as: UTF8.self).split(separator: "\r\n").map(String.init)
            guard !lines.isEmpty else { return nil }
            let statusLine = lines.removeFirst().split(separator: " ")
            guard statusLine.count >= 2, let status = Int(statusLine[1]) else { return nil }
            let headers = lines.compactMap { line -> (String, String)? in
                guard let colon = line.firstIndex(of: ":") else { return nil }
                return (String(line[..<colon]), String(line[line.index(after: colon)...].drop { $0 == " " }))
            }
            pending.removeFirst(headEnd + 4)
            if let length = headers.first(where: { $0.0.lowercased() == "content-length" }).flatMap({ Int($0.1) }) {
                while pending.count < length {
                    guard let more = readMore() else { return nil }
                    pending += more
                }
                let body = Array(pending[0 ..< length])
                pending.removeFirst(length)
                return Answer(status: status, headers: headers, body: body)
            }
            while let more = readMore() { pending += more }
            defer { pending = [] }
            return Answer(status: status, headers: headers, body: pending)
        }

        /// True once the server closes the connection (EOF) before the read timeout.
        func closedByServer() -> Bool {
            var chunk = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if n == 0 { return true }
                if n < 0 { return errno != EAGAIN && errno != EWOULDBLOCK }
            }
        }
    }

    /// The running aggregator and what a test needs to talk to it.
    struct Server {
        var directory: String
        var config: String
        var binary: String
        var port: Int
        var credentials: [String]
        var process: CleanChild
        var log: String
    }

    /// A child process that inherits only stdin (/dev/null), stdout and stderr: every other
    /// descriptor is closed in the child (`closefrom(3)`). Other suites run servers in this test
    /// process, and NIO accepts their connections without close-on-exec: a child holding a copy
    /// would keep a connection open after its server closed it.
    final class CleanChild: @unchecked Sendable {
        let pid: pid_t
        private var reaped = false

        init(executable: String, arguments: [String], stdout: String, stderr: String) throws {
            var actions = posix_spawn_file_actions_t()
            posix_spawn_file_actions_init(&actions)
            defer { posix_spawn_file_actions_destroy(&actions) }
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
            posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_APPEND, 0o600)
            posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_APPEND, 0o600)
            let closeFrom = hearth_spawn_close_from(&actions, 3)
            guard closeFrom == 0 else { throw TestFailure("posix_spawn_file_actions_addclosefrom_np failed: \(closeFrom)") }
            var environment: [String] = []
            var cursor = environ
            while let entry = cursor.pointee {
                let text = String(cString: entry)
                if !text.hasPrefix("NOTIFY_SOCKET=") && !text.hasPrefix("LISTEN_") && !text.hasPrefix("WATCHDOG_") {
                    environment.append(text)
                }
                cursor += 1
            }
            let argv = ([executable] + arguments).map { strdup($0) } + [nil]
            let envp = environment.map { strdup($0) } + [nil]
            defer {
                argv.forEach { free($0) }
                envp.forEach { free($0) }
            }
            var child: pid_t = 0
            let rc = posix_spawn(&child, executable, &actions, nil, argv, envp)
            guard rc == 0 else { throw TestFailure("posix_spawn \(executable) failed: \(rc)") }
            pid = child
        }

        func signal(_ number: Int32) { if !reaped { kill(pid, number) } }

        /// Waits up to `timeoutMilliseconds` for exit; the wait status, or nil on timeout.
        /// Widened under a sanitizer, as `ChildProcess.wait` (an ASan process is slow to die).
        func wait(timeoutMilliseconds: Int64) async -> Int32? {
            let deadline = monotonicMilliseconds() + TestBounds.milliseconds(timeoutMilliseconds)
            while true {
                var status: Int32 = 0
                if waitpid(pid, &status, WNOHANG) == pid {
                    reaped = true
                    return status
                }
                // Looked once more after the deadline (a sleep may overrun it on a busy machine).
                if monotonicMilliseconds() >= deadline { return nil }
                try? await Task.sleep(for: .milliseconds(20))
            }
        }

        deinit {
            if !reaped {
                kill(pid, SIGKILL)
                var status: Int32 = 0
                waitpid(pid, &status, 0)
            }
        }
    }

    static func runCommand(_ binary: String, _ arguments: [String], in directory: String) async throws -> (Int32?, String) {
        let out = directory + "/out-\(monotonicMilliseconds())-\(arguments.count).txt"
        let child = try CleanChild(executable: binary, arguments: arguments, stdout: out, stderr: directory + "/commands.log")
        guard let status = await child.wait(timeoutMilliseconds: 60_000) else { throw TestFailure("\(arguments) timed out") }
        return (exitCode(status), readText(out))
    }

    /// `init`, five enrolled devices, then `serve` on an ephemeral port.
    static func startAggregator(devices: Int = 5) async throws -> Server {
        let directory = try makeTemporaryDirectory()
        let binary = String(try agentBinaryPath().dropLast("hearth-agent".count)) + "hearth-aggregator"
        let catalog = "item_id\n" + (0 ..< items).map { "item-\($0)" }.joined(separator: "\n") + "\n"
        try writeFile(directory + "/items.csv", Array(catalog.utf8))
        let config = directory + "/aggregator.toml"
        try writeFile(config, Array("""
            [server]
            host = "127.0.0.1"
            port = 0
            state_directory = "\(directory)/state"
            signing_key = "\(directory)/signing.key"
            max_body_bytes = \(maxBodyBytes)
            updates_per_device_per_hour = 3600
            idle_timeout_seconds = 2
            [plan]
            sampling_rate = 1.0
            clip_norm = 1.0
            noise_multiplier = 1.0
            mode = "local"
            bit_width = 16
            max_staleness = 1
            [fedbuff]
            buffer_size = 2
            minimum_updates = 1
            round_deadline_seconds = 3600
            [privacy]
            epsilon_budget = 1000.0
            """.utf8))
        let (initCode, initOut) = try await runCommand(binary, ["init", "--config", config, "--catalog", directory + "/items.csv",
                                                                "--dim", String(modelDimension)], in: directory)
        guard initCode == 0 else { throw TestFailure("init failed: \(initOut)\n\(readText(directory + "/commands.log"))") }
        var credentials: [String] = []
        for i in 0 ..< devices {
            let (code, out) = try await runCommand(binary, ["devices", "add", "device-\(i)", "--config", config], in: directory)
            guard code == 0, let credential = out.split(separator: "\n").first.map(String.init) else {
                throw TestFailure("devices add failed: \(out)")
            }
            credentials.append(credential)
        }
        let log = directory + "/aggregator.log"
        let process = try CleanChild(executable: binary, arguments: ["serve", "--config", config, "--port-file", directory + "/port",
                                                                     "--log-level", "warning"], stdout: log, stderr: log)
        let deadline = monotonicMilliseconds() + 60_000
        while monotonicMilliseconds() < deadline {
            if let port = readText(directory + "/port").split(separator: "\n").first.flatMap({ Int($0) }), port > 0 {
                return Server(directory: directory, config: config, binary: binary, port: port, credentials: credentials,
                              process: process, log: log)
            }
            if let status = await process.wait(timeoutMilliseconds: 1) {
                throw TestFailure("aggregator exited early (status \(status)):\n" + readText(log))
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TestFailure("the aggregator never wrote its port:\n" + readText(log))
    }

    /// Blocking socket work runs on its own thread, never on the cooperative pool.
    static func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await onOwnThread(body)
    }

    /// One request on a fresh connection (`Connection: close`); nil when no answer came.
    static func exchange(port: Int, _ method: String, _ target: String, headers: [(String, String)] = [], body: [UInt8]? = nil,
                         rawHead: String? = nil) throws -> Answer? {
        let connection = try Connection(port: port)
        var head = rawHead ?? "\(method) \(target) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        if let body, rawHead == nil { head += "Content-Length: \(body.count)\r\n" }
        connection.send(Array((head + "\r\n").utf8) + (body ?? []))
        return connection.readAnswer()
    }

    static func upload(port: Int, _ body: [UInt8], key: String?, credential: String?, contentType: String = "application/vnd.hearth.update",
                       extraHeaders: [(String, String)] = []) throws -> Answer? {
        var headers = [("Content-Type", contentType)]
        if let key { headers.append(("Idempotency-Key", key)) }
        if let credential { headers.append(("Authorization", "Bearer " + credential)) }
        return try exchange(port: port, "POST", "/v1/updates", headers: headers + extraHeaders, body: body)
    }

    /// `/metrics` as name{labels} → value.
    static func metrics(port: Int) throws -> [String: Double] {
        guard let answer = try exchange(port: port, "GET", "/metrics"), answer.status == 200 else { throw TestFailure("no /metrics") }
        var values: [String: Double] = [:]
        for line in answer.text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            values[String(line[..<space])] = value
        }
        return values
    }

    /// What must not change under attack: the served model (bytes and version), the buffer
    /// (the running sum's count) and the accepted counter.
    struct Snapshot: Equatable, CustomStringConvertible {
        var modelVersion: String
        var modelDigest: UInt64
        var buffered: Double
        var accepted: Double
        var description: String { "model \(modelVersion) (fnv \(modelDigest)), buffered \(buffered), accepted \(accepted)" }
    }

    static func snapshot(port: Int, credential: String) throws -> Snapshot {
        guard let model = try exchange(port: port, "GET", "/v1/model", headers: [("Authorization", "Bearer " + credential)]),
              model.status == 200 else { throw TestFailure("GET /v1/model failed") }
        var digest: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in model.body { digest = (digest ^ UInt64(byte)) &* 0x100_0000_01b3 }
        let values = try metrics(port: port)
        return Snapshot(modelVersion: model.header("ETag") ?? "", modelDigest: digest,
                        buffered: values["hearth_buffer_updates"] ?? -1, accepted: values["hearth_updates_accepted_total"] ?? -1)
    }

    static func envelope(version: UInt64, key: UInt8, seed: UInt64, dimension: Int = HostileUploadTests.parameterCount, bitWidth: Int = 16,
                         mode: UpdateMode = .local) throws -> (bytes: [UInt8], key: String) {
        try Fixtures.privatizedEnvelope(version: version, key: key, dimension: dimension, seed: seed,
                                        privacy: PrivacyConfiguration(clipNorm: 1, noiseMultiplier: 1, bitWidth: bitWidth, mode: mode, unit: .device))
    }

    static func withDouble(_ bytes: [UInt8], at offset: Int, _ value: Double) -> [UInt8] {
        var edited = bytes
        for j in 0 ..< 8 { edited[offset + j] = UInt8(truncatingIfNeeded: value.bitPattern >> UInt64(8 * j)) }
        Fixtures.recomputeTrailingChecksum(&edited)
        return edited
    }

    /// Resident set size of `pid` in KiB, from /proc.
    static func residentKilobytes(of pid: pid_t) -> Int {
        let status = readText("/proc/\(pid)/status")
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }) else { return -1 }
        return Int(line.split(separator: " ").dropFirst().first ?? "") ?? -1
    }

    /// Hostile requests by class: tried, wrongly accepted, and the reasons the server gave.
    final class Tally: Sendable {
        struct Count: Sendable {
            var tried = 0
            var wronglyAccepted = 0
            var reasons: [String: Int] = [:]
        }

        let counts = Mutex<[String: Count]>([:])

        func record(_ kind: String, reason: String?, wronglyAccepted: Bool) {
            counts.withLock { counts in
                var count = counts[kind] ?? Count()
                count.tried += 1
                if wronglyAccepted { count.wronglyAccepted += 1 }
                count.reasons[reason ?? "none", default: 0] += 1
                counts[kind] = count
            }
        }

        /// Rejections per reason over every class.
        var byReason: [String: Int] {
            counts.withLock { counts in
                var total: [String: Int] = [:]
                for count in counts.values { for (reason, n) in count.reasons { total[reason, default: 0] += n } }
                return total
            }
        }

        var totals: (tried: Int, wronglyAccepted: Int) {
            counts.withLock { $0.values.reduce((0, 0)) { ($0.0 + $1.tried, $0.1 + $1.wronglyAccepted) } }
        }

        func print(_ title: String) {
            let lines = counts.withLock { counts in
                counts.keys.sorted().map { kind in
                    let count = counts[kind] ?? Count()
                    let reasons = count.reasons.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
                    return "hostile-tally \(title) | \(kind) | tried \(count.tried) | wrongly accepted \(count.wronglyAccepted) | \(reasons)"
                }
            }
            let (tried, wrong) = totals
            Swift.print((lines + ["hostile-tally \(title) | TOTAL | tried \(tried) | wrongly accepted \(wrong)"]).joined(separator: "\n"))
        }
    }

    @Test("every hostile upload is refused with its reason, counted in /metrics, and changes neither the model nor the buffer")
    func hostileUploadsAreRefusedAndCounted() async throws {
        let server = try await Self.startAggregator()
        defer { removeTree(server.directory) }
        let port = server.port
        let credentials = server.credentials
        let tally = Tally()
        let metricsBefore = try Self.metrics(port: port)

        // A legitimate update from device 0 in version 1: the buffer holds one.
        let first = try Self.envelope(version: 1, key: 0x01, seed: 1)
        let accepted = try await Self.blocking { try Self.upload(port: port, first.bytes, key: first.key, credential: credentials[0]) }
        #expect(accepted?.status == 200, "\(accepted?.text ?? "no answer")")
        try #require(try await Self.runCommand(server.binary, ["devices", "revoke", "device-4", "--config", server.config],
                                               in: server.directory).0 == 0)
        let before = try Self.snapshot(port: port, credential: credentials[1])
        #expect(before.buffered == 1)

        // Device 2 has not contributed: a valid envelope from it would be accepted, so each
        // refusal below is for what the request carries, not for who sends it.
        let good = try Self.envelope(version: 1, key: 0x20, seed: 20)
        struct Attempt: Sendable {
            var kind: String
            var body: [UInt8]
            var key: String?
            var credential: String?
            var contentType = "application/vnd.hearth.update"
            var rawHead: String?
            var statuses: Set<Int>
            var reasons: Set<String>
        }
        var attempts: [Attempt] = []
        func add(_ kind: String, _ body: [UInt8], key: String? = Self.same, credential: String? = Self.same,
                 _ statuses: Set<Int>, _ reasons: Set<String>, contentType: String = "application/vnd.hearth.update", rawHead: String? = nil) {
            attempts.append(Attempt(kind: kind, body: body, key: key == Self.same ? good.key : key,
                                    credential: credential == Self.same ? credentials[2] : credential,
                                    contentType: contentType, rawHead: rawHead, statuses: statuses, reasons: reasons))
        }
        // Credentials.
        add("unauthenticated", good.bytes, credential: nil, [401], ["unauthenticated"])
        add("unauthenticated", good.bytes, credential: "", [401], ["unauthenticated"])
        add("unauthenticated", good.bytes, credential: "hrth_short", [401, 403], ["unauthenticated", "unknown_device"])
        add("unauthenticated", good.bytes, credential: String(repeating: "A", count: 5000), [401, 403, 431], ["unauthenticated", "unknown_device"])
        add("forged credential", good.bytes, credential: "hrth_" + String(repeating: "0", count: 64), [403], ["unknown_device"])
        var flipped = Array(credentials[2].utf8)
        flipped[flipped.count - 1] = flipped[flipped.count - 1] == UInt8(ascii: "a") ? UInt8(ascii: "b") : UInt8(ascii: "a")
        add("forged credential", good.bytes, credential: String(decoding: flipped, as: UTF8.self), [403], ["unknown_device"])
        add("forged credential", good.bytes, credential: credentials[2].uppercased(), [401, 403], ["unauthenticated", "unknown_device"])
        add("forged credential", first.bytes, key: first.key, credential: credentials[1], [409], ["idempotency_key_conflict"])
        add("revoked credential", good.bytes, credential: credentials[4], [403], ["revoked_device"])
        // Size and framing.
        add("oversized", [UInt8](repeating: 7, count: Self.maxBodyBytes + 1), [413], ["body_too_large"])
        add("oversized", good.bytes + [UInt8](repeating: 0, count: 2 * Self.maxBodyBytes), [413], ["body_too_large"])
        add("oversized", [], [413], ["body_too_large"],
            rawHead: "POST /v1/updates HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/vnd.hearth.update\r\nIdempotency-Key: \(good.key)\r\nAuthorization: Bearer \(credentials[2])\r\nContent-Length: 10000000000\r\n")
        let chunk = [UInt8](repeating: 0x41, count: 1024)
        var chunked: [UInt8] = []
        for _ in 0 ..< 6 { chunked += Array("400\r\n".utf8) + chunk + Array("\r\n".utf8) }
        chunked += Array("0\r\n\r\n".utf8)
        add("oversized", chunked, [413], ["body_too_large"],
            rawHead: "POST /v1/updates HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/vnd.hearth.update\r\nIdempotency-Key: \(good.key)\r\nAuthorization: Bearer \(credentials[2])\r\nTransfer-Encoding: chunked\r\n")
        // Shape and header fields.
        add("wrong shape", good.bytes, [415], ["unsupported_media_type"], contentType: "application/json")
        add("wrong shape", good.bytes, key: nil, [400], ["missing_idempotency_key"])
        add("wrong shape", good.bytes, key: "zz" + String(good.key.dropFirst(2)), [400], ["missing_idempotency_key"])
        add("wrong shape", good.bytes, key: String(repeating: "ab", count: 16), [400], ["idempotency_key_mismatch"])
        add("wrong shape", [], [400], ["malformed_update"])
        add("wrong shape", Array(good.bytes.prefix(83)), [400], ["malformed_update"])
        add("wrong shape", Array(good.bytes.dropLast(2)), [400], ["malformed_update"])
        var badMagic = good.bytes
        badMagic[0] = UInt8(ascii: "X")
        Fixtures.recomputeTrailingChecksum(&badMagic)
        add("wrong shape", badMagic, [400], ["malformed_update"])
        var version2 = good.bytes
        version2[8] = 2
        Fixtures.recomputeTrailingChecksum(&version2)
        add("wrong shape", version2, [400], ["unsupported_format_version"])
        var tampered = good.bytes
        tampered[90] ^= 0x40
        add("wrong shape", tampered, [400], ["checksum_mismatch"])
        let narrow = try Self.envelope(version: 1, key: 0x21, seed: 21, dimension: Self.parameterCount - 1)
        add("wrong shape", narrow.bytes, key: narrow.key, [422], ["dimension_mismatch"])
        let wide = try Self.envelope(version: 1, key: 0x22, seed: 22, dimension: Self.parameterCount * 4)
        add("wrong shape", wide.bytes, key: wide.key, [422], ["dimension_mismatch"])
        let eightBit = try Self.envelope(version: 1, key: 0x23, seed: 23, bitWidth: 8)
        add("wrong shape", eightBit.bytes, key: eightBit.key, [422], ["plan_mismatch"])
        let central = try Self.envelope(version: 1, key: 0x24, seed: 24, mode: .central)
        add("wrong shape", central.bytes, key: central.key, [422], ["plan_mismatch"])
        // NaN and ±∞ in every floating-point header field, checksum recomputed.
        for (offset, field) in [(32, "noise multiplier"), (40, "sampling rate"), (48, "clip norm"), (56, "grid scale")] {
            for value in [Double.nan, Double.infinity, -Double.infinity] {
                add("NaN/∞ (\(field))", Self.withDouble(good.bytes, at: offset, value), [422], ["non_finite"])
            }
        }
        // Out of range, checksum recomputed.
        var loud = good.bytes
        for i in stride(from: 80, to: loud.count - 4, by: 2) {
            loud[i] = 0xFF
            loud[i + 1] = 0x7F
        }
        Fixtures.recomputeTrailingChecksum(&loud)
        add("out of range", loud, [422], ["norm_bound_exceeded"])
        var floor = good.bytes
        floor[80] = 0x00
        floor[81] = 0x80  // -2^15: outside ±(2^15 - 1)
        Fixtures.recomputeTrailingChecksum(&floor)
        add("out of range", floor, [422], ["value_out_of_range"])
        add("out of range", Self.withDouble(good.bytes, at: 48, 1_000), [422], ["plan_mismatch"])
        add("out of range", Self.withDouble(good.bytes, at: 32, 0.01), [422], ["plan_mismatch"])
        add("out of range", Self.withDouble(good.bytes, at: 40, 0), [400, 422], ["plan_mismatch", "malformed_update"])
        var contributions = good.bytes
        contributions[28] = 2
        Fixtures.recomputeTrailingChecksum(&contributions)
        add("out of range", contributions, [400, 422], ["plan_mismatch", "malformed_update"])
        // Versions.
        let future = try Self.envelope(version: 99, key: 0x25, seed: 25)
        add("future version", future.bytes, key: future.key, [409], ["unknown_model_version"])
        // The same accepted upload again with another key in the header.
        add("replay with a new key", first.bytes, key: String(repeating: "cd", count: 16), credential: credentials[0], [400], ["idempotency_key_mismatch"])

        for attempt in attempts {
            let answer = try await Self.blocking {
                if let rawHead = attempt.rawHead {
                    return try Self.exchange(port: port, "POST", "/v1/updates", body: attempt.body, rawHead: rawHead)
                }
                return try Self.upload(port: port, attempt.body, key: attempt.key, credential: attempt.credential, contentType: attempt.contentType)
            }
            let right = answer.map { attempt.statuses.contains($0.status) && attempt.reasons.contains($0.reason ?? "") } ?? false
            tally.record(attempt.kind, reason: answer?.reason, wronglyAccepted: !right)
            #expect(right, "\(attempt.kind): expected \(attempt.statuses.sorted()) \(attempt.reasons.sorted()), got \(answer?.status ?? -1) \(answer?.reason ?? "-") \(answer?.text ?? "")")
        }

        // A flood from device 0, which already contributed to this version: 120 distinct valid
        // updates, 8 at a time. None may get in.
        let floodEnvelopes = try (0 ..< 120).map { try Self.envelope(version: 1, key: UInt8(0x40 + $0), seed: UInt64(100 + $0)) }
        let floodAnswers = try await withThrowingTaskGroup(of: [Answer?].self) { group in
            for lane in 0 ..< 8 {
                group.addTask {
                    try await Self.blocking {
                        try stride(from: lane, to: floodEnvelopes.count, by: 8).map {
                            try Self.upload(port: port, floodEnvelopes[$0].bytes, key: floodEnvelopes[$0].key, credential: credentials[0])
                        }
                    }
                }
            }
            var all: [Answer?] = []
            for try await answers in group { all += answers }
            return all
        }
        for answer in floodAnswers {
            let right = answer.map { [409, 429].contains($0.status) && ["already_contributed", "rate_limited"].contains($0.reason ?? "") } ?? false
            tally.record("flood (one device, valid updates)", reason: answer?.reason, wronglyAccepted: !right)
        }

        // The model and the buffer are as they were; each refusal is counted under its reason.
        let after = try Self.snapshot(port: port, credential: credentials[1])
        #expect(after == before, "before: \(before); after: \(after)")
        let metricsAfter = try Self.metrics(port: port)
        for (reason, count) in tally.byReason where reason != "none" {
            let name = #"hearth_updates_rejected_total{reason="\#(reason)"}"#
            let counted = (metricsAfter[name] ?? 0) - (metricsBefore[name] ?? 0)
            #expect(counted == Double(count), "\(reason): \(count) refused, \(counted) counted in /metrics")
        }
        // The good envelope from device 2 still goes in after all that.
        let stillWorks = try await Self.blocking { try Self.upload(port: port, good.bytes, key: good.key, credential: credentials[2]) }
        #expect(stillWorks?.status == 200, "\(stillWorks?.text ?? "no answer")\n\(readText(server.log))")

        tally.print("aggregator uploads")
        let (tried, wrong) = tally.totals
        #expect(tried >= 150)
        #expect(wrong == 0)
        server.process.signal(SIGTERM)
        _ = await server.process.wait(timeoutMilliseconds: 15_000)
    }

    @Test("replays across versions are answered as duplicates and never folded again; stale updates are refused")
    func replaysAcrossVersionsAndStaleUpdates() async throws {
        let server = try await Self.startAggregator()
        defer { removeTree(server.directory) }
        let port = server.port
        let credentials = server.credentials
        let tally = Tally()
        func upload(_ envelope: (bytes: [UInt8], key: String), device: Int) async throws -> Answer? {
            try await Self.blocking { try Self.upload(port: port, envelope.bytes, key: envelope.key, credential: credentials[device]) }
        }
        // Version 1 → 2: two updates fill the buffer (buffer_size 2) and publish.
        let a = try Self.envelope(version: 1, key: 0x01, seed: 1)
        let b = try Self.envelope(version: 1, key: 0x02, seed: 2)
        #expect(try await upload(a, device: 0)?.status == 200)
        #expect(try await upload(b, device: 1)?.status == 200)
        let v2 = try Self.snapshot(port: port, credential: credentials[0])
        #expect(v2.modelVersion == "\"v2\"" && v2.buffered == 0 && v2.accepted == 2, "\(v2)")

        // Replays of version-1 uploads after version 2 is out: duplicates, not folded.
        for (envelope, device) in [(a, 0), (b, 1), (a, 0)] {
            let answer = try await upload(envelope, device: device)
            let right = answer?.status == 200 && answer?.header("Idempotent-Replayed") == "true"
            tally.record("replay across versions", reason: answer?.header("Idempotent-Replayed").map { _ in "duplicate" } ?? answer?.reason,
                         wronglyAccepted: !right)
            #expect(right, "\(answer?.status ?? -1) \(answer?.text ?? "")")
        }
        #expect(try Self.snapshot(port: port, credential: credentials[0]) == v2)

        // Version 2 → 3.
        let c = try Self.envelope(version: 2, key: 0x03, seed: 3)
        let d = try Self.envelope(version: 2, key: 0x04, seed: 4)
        #expect(try await upload(c, device: 2)?.status == 200)
        #expect(try await upload(d, device: 3)?.status == 200)
        let v3 = try Self.snapshot(port: port, credential: credentials[0])
        #expect(v3.modelVersion == "\"v3\"" && v3.buffered == 0 && v3.accepted == 4, "\(v3)")

        // Version 1 is now two behind (max_staleness 1): a fresh update trained from it is stale.
        for (key, device) in [(UInt8(0x11), 0), (0x12, 1), (0x13, 4)] {
            let stale = try Self.envelope(version: 1, key: key, seed: UInt64(key))
            let answer = try await upload(stale, device: device)
            let right = answer?.status == 409 && answer?.reason == "stale_model_version"
            tally.record("stale version", reason: answer?.reason, wronglyAccepted: !right)
            #expect(right, "\(answer?.status ?? -1) \(answer?.reason ?? "-")")
        }
        // Replays from both earlier versions, still duplicates.
        for (envelope, device) in [(a, 0), (c, 2)] {
            let answer = try await upload(envelope, device: device)
            let right = answer?.status == 200 && answer?.header("Idempotent-Replayed") == "true"
            tally.record("replay across versions", reason: answer?.header("Idempotent-Replayed").map { _ in "duplicate" } ?? answer?.reason,
                         wronglyAccepted: !right)
            #expect(right)
        }
        #expect(try Self.snapshot(port: port, credential: credentials[0]) == v3)
        let values = try Self.metrics(port: port)
        #expect(values["hearth_updates_replayed_total"] == 5)
        #expect(values[#"hearth_updates_rejected_total{reason="stale_model_version"}"#] == 3)
        tally.print("aggregator versions")
        #expect(tally.totals.wronglyAccepted == 0)
        server.process.signal(SIGTERM)
        _ = await server.process.wait(timeoutMilliseconds: 15_000)
    }

    @Test("a flood of unauthenticated uploads and slow clients: the aggregator keeps answering a good device, memory bounded")
    func floodAndSlowClients() async throws {
        let server = try await Self.startAggregator()
        defer { removeTree(server.directory) }
        let port = server.port
        let credentials = server.credentials
        let pid = server.process.pid
        let tally = Tally()
        let good = try Self.envelope(version: 1, key: 0x30, seed: 30)

        // The good device's quiet latency, then the attack.
        var quiet: [Int64] = []
        for _ in 0 ..< 20 {
            let start = monotonicMilliseconds()
            let answer = try await Self.blocking { try Self.exchange(port: port, "GET", "/v1/plan", headers: [("Authorization", "Bearer " + credentials[3])]) }
            #expect(answer?.status == 200)
            quiet.append(monotonicMilliseconds() - start)
        }
        let rssBefore = Self.residentKilobytes(of: pid)
        let before = try Self.snapshot(port: port, credential: credentials[3])

        // Slow clients: 30 connections sending an upload's head and then its body a byte every 200 ms.
        let slowStop = Shared(false)
        let slow = Task {
            try await Self.blocking {
                var connections: [Connection] = []
                for _ in 0 ..< 30 {
                    let connection = try Connection(port: port, timeoutSeconds: 2)
                    connection.send(Array("POST /v1/updates HTTP/1.1\r\nHost: x\r\nContent-Type: application/vnd.hearth.update\r\nIdempotency-Key: \(good.key)\r\nAuthorization: Bearer \(credentials[2])\r\nContent-Length: \(good.bytes.count)\r\n\r\n".utf8))
                    connections.append(connection)
                }
                var position = 0
                while !slowStop.value && position < good.bytes.count - 1 {
                    for connection in connections { connection.send([good.bytes[position]]) }
                    position += 1
                    usleep(200_000)
                }
                // Never finished: the last byte is withheld. Close without completing.
                return connections.count
            }
        }
        // Unauthenticated flood: 600 uploads, 12 at a time.
        let floodCount = 600
        let flood = Task {
            try await withThrowingTaskGroup(of: [Answer?].self) { group in
                for lane in 0 ..< 12 {
                    group.addTask {
                        try await Self.blocking {
                            try stride(from: lane, to: floodCount, by: 12).map { _ in try Self.upload(port: port, good.bytes, key: good.key, credential: nil) }
                        }
                    }
                }
                var all: [Answer?] = []
                for try await answers in group { all += answers }
                return all
            }
        }
        var underAttack: [Int64] = []
        var rssPeak = rssBefore
        let attackStart = monotonicMilliseconds()
        while monotonicMilliseconds() - attackStart < 5_000 {
            let start = monotonicMilliseconds()
            let answer = try await Self.blocking { try Self.exchange(port: port, "GET", "/v1/plan", headers: [("Authorization", "Bearer " + credentials[3])]) }
            #expect(answer?.status == 200)
            underAttack.append(monotonicMilliseconds() - start)
            rssPeak = max(rssPeak, Self.residentKilobytes(of: pid))
            try await Task.sleep(for: .milliseconds(50))
        }
        let floodAnswers = try await flood.value
        slowStop.update { $0 = true }
        let slowCount = try await slow.value
        for answer in floodAnswers {
            let right = answer?.status == 401 && answer?.reason == "unauthenticated"
            tally.record("flood (unauthenticated)", reason: answer?.reason, wronglyAccepted: !right)
        }
        // The slow uploads never completed, so none was stored: the buffer is unchanged.
        try await Task.sleep(for: .milliseconds(500))
        let after = try Self.snapshot(port: port, credential: credentials[3])
        for _ in 0 ..< slowCount { tally.record("slow body (byte every 200 ms, never finished)", reason: nil, wronglyAccepted: after != before) }
        #expect(after == before, "before: \(before); after: \(after)")
        let rssAfter = Self.residentKilobytes(of: pid)
        // A silent connection: does the aggregator ever close it? (Measured, reported.)
        let idleStart = monotonicMilliseconds()
        let idleClosed = try await Self.blocking { try Connection(port: port, timeoutSeconds: 6).closedByServer() }
        // A head dribbled a byte every 200 ms never completes a request: closed at the idle timeout too.
        let headStart = monotonicMilliseconds()
        let headClosed = try await Self.blocking {
            let connection = try Connection(port: port, timeoutSeconds: 1)
            for byte in Array("POST /v1/updates HTTP/1.1\r\nHost: x\r\nX-Padding: \(String(repeating: "p", count: 200))".utf8) {
                guard connection.send([byte]) else { return true }
                usleep(200_000)
            }
            return false
        }
        let headHeld = monotonicMilliseconds() - headStart
        let idleHeld = monotonicMilliseconds() - idleStart

        var floodStatuses: [Int: Int] = [:]
        for answer in floodAnswers { floodStatuses[answer?.status ?? 0, default: 0] += 1 }
        print("""
            hostile-aggregator | flood: \(floodCount) unauthenticated uploads, 12 at a time: statuses \(floodStatuses.sorted { $0.key < $1.key })
            hostile-aggregator | slow: \(slowCount) uploads dribbled a byte every 200 ms for the whole attack, never finished
            hostile-aggregator | good device GET /v1/plan quiet: p50 \(Self.percentile(quiet, 50)) ms, max \(quiet.max() ?? -1) ms
            hostile-aggregator | good device GET /v1/plan under attack: \(underAttack.count) requests, p50 \(Self.percentile(underAttack, 50)) ms, p95 \(Self.percentile(underAttack, 95)) ms, max \(underAttack.max() ?? -1) ms
            hostile-aggregator | aggregator RSS: before \(rssBefore / 1024) MiB, peak \(rssPeak / 1024) MiB, after \(rssAfter / 1024) MiB
            hostile-aggregator | a silent connection (idle_timeout_seconds = 2): \(idleClosed ? "closed by the server after \(idleHeld) ms" : "still open after \(idleHeld) ms")
            hostile-aggregator | a head dribbled a byte every 200 ms: \(headClosed ? "cut off after \(headHeld) ms" : "never cut off (\(headHeld) ms)")
            """)
        tally.record("silent connection", reason: nil, wronglyAccepted: !(idleClosed && idleHeld < 8_000))
        tally.record("slow head (byte every 200 ms)", reason: nil, wronglyAccepted: !(headClosed && headHeld < 8_000))
        #expect(idleClosed && idleHeld < 8_000, "silent connection: closed \(idleClosed) after \(idleHeld) ms")
        #expect(headClosed && headHeld < 8_000, "slow head: closed \(headClosed) after \(headHeld) ms")
        tally.print("aggregator flood")
        #expect(tally.totals.wronglyAccepted == 0)
        #expect(underAttack.count >= 10)
        #expect(Self.percentile(underAttack, 95) < 2_000, "good device p95 \(Self.percentile(underAttack, 95)) ms under attack")
        #expect(rssAfter - rssBefore < TestBounds.kibibytes(64 * 1024), "aggregator RSS grew from \(rssBefore) KiB to \(rssAfter) KiB")
        // Still accepts the good upload once the attack is over.
        let accepted = try await Self.blocking { try Self.upload(port: port, good.bytes, key: good.key, credential: credentials[2]) }
        #expect(accepted?.status == 200, "\(accepted?.text ?? "no answer")")
        server.process.signal(SIGTERM)
        _ = await server.process.wait(timeoutMilliseconds: 15_000)
    }

    static func percentile(_ values: [Int64], _ p: Double) -> Int64 {
        guard !values.isEmpty else { return -1 }
        let sorted = values.sorted()
        let rank = Int((p / 100 * Double(sorted.count)).rounded(.up)) - 1
        return sorted[min(max(rank, 0), sorted.count - 1)]
    }

    /// A value shared with the client threads.
    final class Shared<Value: Sendable>: Sendable {
        private let mutex: Mutex<Value>
        init(_ value: Value) { mutex = Mutex(value) }
        var value: Value { mutex.withLock { $0 } }
        func update(_ change: (inout Value) -> Void) { mutex.withLock { change(&$0) } }
    }
}
