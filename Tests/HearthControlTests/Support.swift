#if canImport(Glibc)
import Glibc
#endif
import HearthCore
import HearthLocalAPI
import HearthTestSupport
import Logging
import NIOPosix
import Synchronization

struct TestFailure: Error, CustomStringConvertible {
    let description: String
}

/// Blocking work (spawning `hearthctl`) runs here, never on the cooperative pool the server's
/// backend calls need.
let blockingThreads: NIOThreadPool = {
    let pool = NIOThreadPool(numberOfThreads: 2)
    pool.start()
    return pool
}()

/// A fresh short temporary directory under /tmp (socket paths must stay below 108 bytes).
func withTemporaryDirectoryAsync<T>(_ body: (String) async throws -> T) async throws -> T {
    var template = Array("/tmp/hctl-XXXXXX".utf8CString)
    let path = template.withUnsafeMutableBufferPointer { buffer -> String? in
        guard let base = buffer.baseAddress, mkdtemp(base) != nil else { return nil }
        return String(cString: base)
    }
    guard let path else { throw TestFailure(description: "mkdtemp failed") }
    defer { removeTree(path) }
    return try await body(path)
}

let quietLogger = Logger(label: "hearth.ctl.test") { _ in SwiftLogNoOpLogHandler() }

/// Starts a real `LocalAPIServer` on a socket in a temporary directory, runs `body`, then
/// cancels the server and waits for it to stop.
func withServer(
    backend: FakeBackend = FakeBackend(),
    _ body: (_ socketPath: String, _ backend: FakeBackend) async throws -> Void
) async throws {
    try await withTemporaryDirectoryAsync { directory in
        let path = directory + "/agent.sock"
        let server = LocalAPIServer(
            configuration: LocalAPIConfiguration(listener: .unixSocket(path: path)),
            backend: backend, logger: quietLogger
        )
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await server.run() }
            do {
                try await server.waitUntilListening()
                try await body(path, backend)
            } catch {
                group.cancelAll()
                throw error
            }
            group.cancelAll()
            try await group.waitForAll()
        }
    }
}

/// A CSV with a header and `rows` valid events; `bad` replaces the row on that line number.
func eventsCSV(rows: Int, badLine: Int? = nil) -> String {
    var lines = ["item,kind,session,timestamp_ms,quantity"]
    for i in 0 ..< rows {
        let kind = i % 4 == 3 ? "purchase" : "view"
        let quantity = i % 4 == 3 ? "2" : ""
        lines.append("sku-\(i % 50),\(kind),s-\(i % 7),\(1_700_000_000_000 + Int64(i)),\(quantity)")
    }
    if let badLine { lines[badLine - 1] = "sku-x,like,s-1,1700000000000," }
    return lines.joined(separator: "\n") + "\n"
}

/// The result of running a process.
struct ProcessResult: Sendable {
    var status: Int32
    var standardOutput: String
    var standardError: String
}

/// `hearthctl` next to the test binary (SwiftPM puts every product of the build in one
/// directory), or nil.
func builtHearthctl() -> String? {
    var buffer = [CChar](repeating: 0, count: 4096)
    let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    guard count > 0 else { return nil }
    let exe = String(decoding: buffer[0 ..< count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    guard let slash = exe.lastIndex(of: "/") else { return nil }
    let candidate = String(exe[..<slash]) + "/hearthctl"
    return access(candidate, X_OK) == 0 ? candidate : nil
}

/// Runs `path` with `arguments` and `environment`, collecting its output (blocking; call it
/// on `blockingThreads`).
func runProcess(_ path: String, _ arguments: [String], environment: [String]) throws -> ProcessResult {
    var outPipe: [Int32] = [0, 0]
    var errPipe: [Int32] = [0, 0]
    guard pipe(&outPipe) == 0, pipe(&errPipe) == 0 else { throw TestFailure(description: "pipe failed") }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
    posix_spawn_file_actions_adddup2(&actions, errPipe[1], 2)
    posix_spawn_file_actions_addclose(&actions, outPipe[0])
    posix_spawn_file_actions_addclose(&actions, errPipe[0])
    let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
    let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup($0) } + [nil]
    defer {
        for pointer in argv { free(pointer) }
        for pointer in envp { free(pointer) }
    }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, path, &actions, nil, argv, envp)
    close(outPipe[1])
    close(errPipe[1])
    defer {
        close(outPipe[0])
        close(errPipe[0])
    }
    guard rc == 0 else { throw TestFailure(description: "posix_spawn failed: \(rc)") }
    // Outputs are small: read stderr after stdout (no deadlock below the pipe buffer size).
    let out = readAll(outPipe[0])
    let err = readAll(errPipe[0])
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    let exitCode = (status & 0x7F) == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
    return ProcessResult(status: exitCode, standardOutput: out, standardError: err)
}

private func readAll(_ fd: Int32) -> String {
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n > 0 {
            bytes += buffer[0 ..< n]
        } else if n < 0 && errno == EINTR {
            continue
        } else {
            break
        }
    }
    return String(decoding: bytes, as: UTF8.self)
}
