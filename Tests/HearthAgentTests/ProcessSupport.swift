import CHearthSpawn
#if canImport(Glibc)
import Glibc
#endif
import HearthLocalAPI
import HearthProcess
import HearthTestSupport
import Synchronization

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Monotonic milliseconds.
func monotonicMilliseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
}

/// Writes `bytes` to `path` (created or truncated).
func writeFile(_ path: String, _ bytes: [UInt8]) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
    guard fd >= 0 else { throw TestFailure("open \(path) failed") }
    defer { close(fd) }
    var offset = 0
    while offset < bytes.count {
        let n = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { throw TestFailure("write \(path) failed") }
        offset += n
    }
}

/// The file's contents as text ("" when unreadable).
func readText(_ path: String) -> String {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return "" }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = read(fd, &chunk, chunk.count)
        if n <= 0 { break }
        bytes += chunk[0 ..< n]
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// A freshly made short directory under /tmp.
func makeTemporaryDirectory() throws -> String {
    var template = Array("/tmp/hag-XXXXXX".utf8CString)
    let made = template.withUnsafeMutableBufferPointer { buffer -> String? in
        guard let base = buffer.baseAddress, let result = mkdtemp(base) else { return nil }
        return String(cString: result)
    }
    guard let made else { throw TestFailure("mkdtemp failed") }
    return made
}

/// The built `hearth-agent`: next to the test bundle in the build directory.
func agentBinaryPath() throws -> String {
    do {
        return try builtExecutable("hearth-agent")
    } catch {
        throw TestFailure("\(error.message): run `swift build --build-tests` first")
    }
}

/// A child process started with posix_spawn, stderr to `logPath`.
final class ChildProcess: @unchecked Sendable {
    let pid: pid_t
    /// The wait status once reaped (by `wait` or `diagnosis`).
    private var reapedStatus: Int32?
    private var reaped: Bool { reapedStatus != nil }

    /// Spawns `executable`. The systemd variables of the test's own environment are dropped;
    /// `environment` adds variables, and `descriptor3` becomes the child's fd 3 (socket activation).
    init(executable: String, arguments: [String], logPath: String, environment extra: [String] = [],
         descriptor3: Int32? = nil) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 2, logPath, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        if let descriptor3 {
            // dup2 onto 3 clears close-on-exec on the child's copy only.
            precondition(descriptor3 != 3, "pass a descriptor other than 3")
            posix_spawn_file_actions_adddup2(&actions, descriptor3, 3)
        }
        // Only 0-2 (and 3 when given): servers run in this test process, and NIO accepts without
        // close-on-exec; a child holding a copy would keep a connection open after its server closed it.
        let closeFrom = hearth_spawn_close_from(&actions, descriptor3 == nil ? 3 : 4)
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
        environment += extra
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup($0) } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var child: pid_t = 0
        let rc = posix_spawn(&child, executable, &actions, nil, argv, envp)
        guard rc == 0 else { throw TestFailure("posix_spawn failed: \(rc)") }
        pid = child
    }

    func signal(_ number: Int32) { if !reaped { kill(pid, number) } }

    /// What the kernel says of the process (for a failure message): its state and where it
    /// sleeps, and what `waitpid` answers now.
    func diagnosis() -> String {
        var status: Int32 = 0
        let waited = waitpid(pid, &status, WNOHANG)
        let waitError = errno
        if waited == pid { reapedStatus = status }
        let state = readText("/proc/\(pid)/status").split(separator: "\n").first { $0.hasPrefix("State:") } ?? "no /proc entry"
        let wchan = readText("/proc/\(pid)/wchan")
        let stack = readText("/proc/\(pid)/stack").split(separator: "\n").prefix(6).joined(separator: " | ")
        let threads = readText("/proc/\(pid)/status").split(separator: "\n").first { $0.hasPrefix("Threads:") } ?? ""
        var tasks: [String] = []
        if let directory = opendir("/proc/\(pid)/task") {
            while let entry = readdir(directory) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                guard name.first?.isNumber == true else { continue }
                let base = "/proc/\(pid)/task/\(name)"
                let taskState = readText(base + "/status").split(separator: "\n").first { $0.hasPrefix("State:") } ?? ""
                let comm = readText(base + "/comm").split(separator: "\n").first.map(String.init) ?? ""
                let taskStack = readText(base + "/stack").split(separator: "\n").prefix(8).joined(separator: " < ")
                tasks.append("[\(name) \(comm) \(taskState) wchan \(readText(base + "/wchan")) stack \(taskStack)]")
            }
            closedir(directory)
        }
        return "pid \(pid): waitpid \(waited) (errno \(waited < 0 ? waitError : 0)); \(state); \(threads); wchan \(wchan); stack \(stack); tasks \(tasks.joined(separator: " "))"
    }

    /// Waits up to `timeoutMilliseconds` for exit; the wait status, or nil on timeout.
    ///
    /// The time is widened under a sanitizer (`TestBounds`): a dying ASan process spends seconds
    /// in the kernel unmapping its address space (seen: the last thread in `exit_mmap` /
    /// `unmap_page_range`, the process reaped 24 s after SIGKILL on a loaded machine).
    func wait(timeoutMilliseconds: Int64) async -> Int32? {
        if let reapedStatus { return reapedStatus }
        let deadline = monotonicMilliseconds() + TestBounds.milliseconds(timeoutMilliseconds)
        while true {
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                reapedStatus = status
                return status
            }
            // Looked once more after the deadline: a sleep that overran it (a busy machine)
            // must not report a process that had long exited as still running.
            if monotonicMilliseconds() >= deadline { return nil }
            try? await Task.sleep(for: .milliseconds(50))
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

/// `WIFEXITED(status) ? WEXITSTATUS(status) : nil`.
func exitCode(_ status: Int32) -> Int32? {
    (status & 0x7F) == 0 ? (status >> 8) & 0xFF : nil
}

/// One HTTP request over the Unix socket (blocking; run off the cooperative pool for long waits).
func unixRequest(_ socketPath: String, _ method: String, _ target: String, body: String? = nil) throws -> (status: Int, json: JSONValue?) {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw TestFailure("socket failed") }
    defer { close(fd) }
    var timeout = timeval(tv_sec: 10, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let pathBytes = Array(socketPath.utf8)
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        for (i, byte) in pathBytes.enumerated() where i < raw.count - 1 { raw[i] = byte }
    }
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
    guard connected == 0 else { throw TestFailure("connect \(socketPath): \(String(cString: strerror(errno)))") }
    let bodyBytes = Array((body ?? "").utf8)
    var head = "\(method) \(target) HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
    if body != nil { head += "Content-Type: application/json\r\nContent-Length: \(bodyBytes.count)\r\n" }
    let request = Array((head + "\r\n").utf8) + bodyBytes
    var offset = 0
    while offset < request.count {
        let n = request[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        guard n > 0 else { throw TestFailure("send failed") }
        offset += n
    }
    var response: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = recv(fd, &chunk, chunk.count, 0)
        if n <= 0 { break }
        response += chunk[0 ..< n]
    }
    guard let split = find([13, 10, 13, 10], in: response) else { throw TestFailure("no response head") }
    let statusLine = String(decoding: response[0 ..< split], as: UTF8.self).split(separator: " ")
    guard statusLine.count >= 2, let status = Int(statusLine[1]) else { throw TestFailure("bad status line") }
    let payload = Array(response[(split + 4)...])
    return (status, try? JSONParser(maxDepth: 64).parse(payload))
}

func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
    guard haystack.count >= needle.count else { return nil }
    for i in 0 ... (haystack.count - needle.count) where haystack[i ..< i + needle.count].elementsEqual(needle) {
        return i
    }
    return nil
}

/// A tiny blocking HTTP/1.1 server on 127.0.0.1 (one request per connection) that records
/// what it receives and answers 200 (the fake aggregator).
final class FakeAggregator: @unchecked Sendable {
    struct Request: Sendable {
        var method: String
        var path: String
        var headers: [(String, String)]
        var body: [UInt8]
    }

    let port: UInt16
    private let listener: Int32
    private let recorded = Mutex<[Request]>([])
    /// What `GET /v1/model` answers: the body and the `X-Hearth-Signature` header (404 when nil).
    let model = Mutex<(body: [UInt8], signature: String)?>(nil)
    private let stopped = Atomic<Bool>(false)

    init() throws {
        let (fd, listeningPort) = try Loopback.listening(backlog: 16)
        listener = fd
        port = listeningPort
        try Loopback.startThread { [self] in acceptLoop() }
    }

    var baseURL: String { "http://127.0.0.1:\(port)" }
    var requests: [Request] { recorded.withLock { $0 } }

    func stop() {
        if stopped.exchange(true, ordering: .acquiringAndReleasing) { return }
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
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
            var status = 400
            var body: [UInt8] = []
            var extra = ""
            if let request = readRequest(connection) {
                recorded.withLock { $0.append(request) }
                if request.method == "POST" {
                    status = 200
                } else if let served = model.withLock({ $0 }) {
                    status = 200
                    body = served.body
                    extra = "X-Hearth-Signature: \(served.signature)\r\nContent-Type: application/vnd.hearth.model\r\n"
                } else {
                    status = 404
                }
            }
            let answer = Array("HTTP/1.1 \(status) Fake\r\nConnection: close\r\n\(extra)Content-Length: \(body.count)\r\n\r\n".utf8) + body
            _ = answer.withUnsafeBytes { send(connection, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            close(connection)
        }
    }

    private func readRequest(_ fd: Int32) -> Request? {
        var data: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        var headerEnd: Int?
        while headerEnd == nil {
            let n = read(fd, &chunk, chunk.count)
            if n <= 0 { return nil }
            data += chunk[0 ..< n]
            headerEnd = find([13, 10, 13, 10], in: data)
        }
        guard let headerEnd else { return nil }
        var lines = String(decoding: data[0 ..< headerEnd], as: UTF8.self).split(separator: "\r\n").map(String.init)
        guard !lines.isEmpty else { return nil }
        let requestLine = lines.removeFirst().split(separator: " ").map(String.init)
        guard requestLine.count >= 2 else { return nil }
        let headers = lines.compactMap { line -> (String, String)? in
            guard let colon = line.firstIndex(of: ":") else { return nil }
            return (String(line[..<colon]).lowercased(), String(line[line.index(after: colon)...].drop { $0 == " " }))
        }
        let length = Int(headers.first { $0.0 == "content-length" }?.1 ?? "0") ?? 0
        var body = Array(data[(headerEnd + 4)...])
        while body.count < length {
            let n = read(fd, &chunk, min(chunk.count, length - body.count))
            if n <= 0 { return nil }
            body += chunk[0 ..< n]
        }
        return Request(method: requestLine[0], path: requestLine[1], headers: headers, body: body)
    }
}

/// Standard base64 with padding.
func base64(_ bytes: [UInt8]) -> String {
    let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
    var out: [UInt8] = []
    var i = 0
    while i < bytes.count {
        let n = min(3, bytes.count - i)
        var acc: UInt32 = 0
        for j in 0 ..< 3 { acc = acc << 8 | UInt32(j < n ? bytes[i + j] : 0) }
        for j in 0 ..< 4 {
            out.append(j <= n ? alphabet[Int((acc >> UInt32(18 - 6 * j)) & 63)] : UInt8(ascii: "="))
        }
        i += 3
    }
    return String(decoding: out, as: UTF8.self)
}
