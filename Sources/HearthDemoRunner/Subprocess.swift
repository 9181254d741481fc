#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A child process (posix_spawn) with stdout/stderr appended to a log file; SIGTERM on `stop`.
final class Subprocess: @unchecked Sendable {
    let pid: pid_t
    let log: String
    private var status: Int32?

    init(_ executable: String, _ arguments: [String], log: String, stdout: String? = nil) throws {
        self.log = log
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdout ?? log, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, log, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var child: pid_t = 0
        let rc = posix_spawn(&child, executable, &actions, nil, argv, environ)
        guard rc == 0 else { throw DemoError("cannot start \(executable): \(String(cString: strerror(rc)))") }
        pid = child
    }

    /// Runs to completion and returns what it printed on stdout; throws on a non-zero exit.
    static func output(_ executable: String, _ arguments: [String], log: String) async throws -> String {
        let out = log + ".stdout"
        unlink(out)
        let process = try Subprocess(executable, arguments, log: log, stdout: out)
        let status = await process.wait()
        let text = readText(out) ?? ""
        unlink(out)
        guard status == 0 else { throw DemoError("\(executable) \(arguments.first ?? "") failed (status \(status)); see \(log)") }
        return text
    }

    var isRunning: Bool {
        if status != nil { return false }
        var raw: Int32 = 0
        if waitpid(pid, &raw, WNOHANG) == pid {
            status = raw
            return false
        }
        return true
    }

    /// Waits for exit; the raw wait status.
    func wait() async -> Int32 {
        while isRunning { try? await Task.sleep(for: .milliseconds(20)) }
        return status ?? -1
    }

    /// SIGTERM, then SIGKILL after 10 s.
    func stop() {
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

/// Removes a directory tree (`rm -rf`).
func removeTree(_ path: String) {
    guard let process = try? Subprocess("/bin/rm", ["-rf", path], log: "/dev/null") else { return }
    var raw: Int32 = 0
    waitpid(process.pid, &raw, 0)
}
