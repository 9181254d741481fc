import CHearthSpawn
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A child process (posix_spawn) with stdout and stderr appended to a log file; SIGTERM on `stop`.
public final class Subprocess: @unchecked Sendable {
    /// The child's process id.
    public let pid: pid_t
    /// Where its stderr (and, unless redirected, stdout) goes.
    public let log: String
    private var status: Int32?

    /// Starts `executable arguments` with stdin from /dev/null, stdout appended to `stdout` (or
    /// `log`) and stderr appended to `log`.
    public init(_ executable: String, _ arguments: [String], log: String, stdout: String? = nil) throws(ProcessError) {
        self.log = log
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdout ?? log, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, log, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        let closeFrom = hearth_spawn_close_from(&actions, 3)
        guard closeFrom == 0 else { throw .spawnFailed("cannot close descriptors for \(executable): \(String(cString: strerror(closeFrom)))") }
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var child: pid_t = 0
        let rc = posix_spawn(&child, executable, &actions, nil, argv, environ)
        guard rc == 0 else { throw .spawnFailed("cannot start \(executable): \(String(cString: strerror(rc)))") }
        pid = child
    }

    /// Runs to completion and returns what it printed on stdout; throws `failed` (with the end of
    /// `log`) on a non-zero exit.
    public static func output(_ executable: String, _ arguments: [String], log: String) async throws(ProcessError) -> String {
        let out = log + ".stdout"
        unlink(out)
        let process = try Subprocess(executable, arguments, log: log, stdout: out)
        let status = await process.wait()
        let text = readTextFile(out) ?? ""
        unlink(out)
        guard status == 0 else {
            throw .failed("\(executable) \(arguments.first ?? "") failed (\(describeWaitStatus(status))); see \(log)\(logTail(log))")
        }
        return text
    }

    /// Whether the child has not exited yet (reaps it when it has).
    public var isRunning: Bool {
        if status != nil { return false }
        var raw: Int32 = 0
        if waitpid(pid, &raw, WNOHANG) == pid {
            status = raw
            return false
        }
        return true
    }

    /// Waits for exit; the raw wait status.
    public func wait() async -> Int32 {
        while isRunning { try? await Task.sleep(for: .milliseconds(20)) }
        return status ?? -1
    }

    /// SIGTERM, then SIGKILL after 10 s.
    public func stop() {
        guard isRunning else { return }
        kill(pid, SIGTERM)
        for _ in 0 ..< 500 {
            if !isRunning { return }
            usleep(20_000)
        }
        kill(pid, SIGKILL)
        var raw: Int32 = 0
        waitpid(pid, &raw, 0)
        status = raw
    }
}

/// "exit status N" or "signal N" for a raw wait status.
public func describeWaitStatus(_ status: Int32) -> String {
    (status & 0x7F) == 0 ? "exit status \((status >> 8) & 0xFF)" : "signal \(status & 0x7F)"
}

/// Removes a directory tree (`rm -rf`).
public func removeTree(_ path: String) {
    guard let process = try? Subprocess("/bin/rm", ["-rf", path], log: "/dev/null") else { return }
    var raw: Int32 = 0
    waitpid(process.pid, &raw, 0)
}

/// A new private directory `<base>/<prefix>XXXXXX` (mkdtemp).
public func makeTemporaryDirectory(prefix: String, base: String = "/tmp") throws(ProcessError) -> String {
    var template = Array((base + "/" + prefix + "XXXXXX").utf8CString)
    let made = template.withUnsafeMutableBufferPointer { buffer -> String? in
        guard let start = buffer.baseAddress, let result = mkdtemp(start) else { return nil }
        return String(cString: result)
    }
    guard let made else { throw .io("cannot create a temporary directory in \(base): \(String(cString: strerror(errno)))") }
    return made
}

/// The executable `name` built next to the running one: in the directory of `/proc/self/exe`
/// or one of its parents (a test bundle may sit one level below the products).
public func builtExecutable(_ name: String) throws(ProcessError) -> String {
    var buffer = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    guard n > 0 else { throw .io("cannot read /proc/self/exe to find \(name)") }
    var path = String(decoding: buffer[0 ..< n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    while let slash = path.lastIndex(of: "/") {
        path = String(path[..<slash])
        let candidate = path + "/" + name
        if access(candidate, X_OK) == 0 { return candidate }
        if path.isEmpty { break }
    }
    throw .io("\(name) not found next to this executable; build it (swift build --product \(name))")
}

/// The file's contents as text, or nil when it cannot be read.
func readTextFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            return nil
        }
        if n == 0 { break }
        bytes += chunk[0 ..< n]
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// Writes `text` to `path` (created or truncated, mode 0600).
func writeTextFile(_ path: String, _ text: String) throws(ProcessError) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
    guard fd >= 0 else { throw .io("cannot create \(path): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    let bytes = Array(text.utf8)
    var offset = 0
    while offset < bytes.count {
        let n = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            throw .io("cannot write \(path): \(String(cString: strerror(errno)))")
        }
        offset += n
    }
}

/// The last lines of a log, as a suffix for an error message ("" when there is nothing).
func logTail(_ path: String, lines: Int = 8) -> String {
    guard let text = readTextFile(path) else { return "" }
    let last = text.split(separator: "\n").suffix(lines)
    return last.isEmpty ? "" : ":\n" + last.joined(separator: "\n")
}
