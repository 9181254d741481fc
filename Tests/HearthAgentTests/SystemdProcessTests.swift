#if canImport(Glibc)
import Glibc
#endif
import HearthLocalAPI
import HearthTestSupport
import Testing

/// The systemd protocols at the level of the real `hearth-agent` process, without systemd: the
/// test plays systemd's part (its own notify datagram socket; a listening socket passed as fd 3
/// with `LISTEN_FDS` / `LISTEN_PID`).
@Suite("Agent under a fake systemd", .serialized)
struct SystemdProcessTests {
    /// A minimal configuration (no model, no uploads) in a fresh directory.
    func prepare() throws -> (directory: String, config: String, socket: String, log: String) {
        let directory = try makeTemporaryDirectory()
        let state = directory + "/state"
        mkdir(state, 0o700)
        let socket = directory + "/a.sock"
        let toml = """
        [agent]
        state_directory = "\(state)"
        socket = "\(socket)"
        """
        try writeFile(directory + "/agent.toml", Array(toml.utf8))
        return (directory, directory + "/agent.toml", socket, directory + "/agent.log")
    }

    /// A bound AF_UNIX socket of `type` at `path` (close-on-exec, so only an explicit dup2
    /// reaches a child).
    func boundUnixSocket(_ path: String, type: Int32) throws -> Int32 {
        let fd = socket(AF_UNIX, type | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket failed") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in bytes.enumerated() where i < raw.count - 1 { raw[i] = byte }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0 else {
            close(fd)
            throw TestFailure("bind \(path): \(String(cString: strerror(errno)))")
        }
        if fd == 3 {
            // fd 3 is where the child expects it; keep ours elsewhere so dup2 makes a fresh copy.
            let moved = fcntl(fd, F_DUPFD_CLOEXEC, 10)
            close(fd)
            return moved
        }
        return fd
    }

    /// Notifications received within `milliseconds` (non-blocking reads, polled).
    func receive(_ fd: Int32, until done: ([String]) -> Bool, milliseconds: Int64) async -> [String] {
        var messages: [String] = []
        let deadline = monotonicMilliseconds() + milliseconds
        var buffer = [UInt8](repeating: 0, count: 4096)
        while monotonicMilliseconds() < deadline && !done(messages) {
            let n = recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
            if n > 0 {
                messages.append(String(decoding: buffer[0 ..< n], as: UTF8.self))
            } else {
                try? await Task.sleep(for: .milliseconds(20))
            }
        }
        return messages
    }

    @Test("the agent process sends READY=1 once serving, WATCHDOG=1 at half WATCHDOG_USEC, STOPPING=1 on SIGTERM")
    func notifyAndWatchdog() async throws {
        let setup = try prepare()
        defer { removeTree(setup.directory) }
        let notifyPath = setup.directory + "/notify"
        let notify = try boundUnixSocket(notifyPath, type: Int32(SOCK_DGRAM.rawValue))
        defer { close(notify) }

        let started = monotonicMilliseconds()
        let child = try ChildProcess(executable: try agentBinaryPath(), arguments: ["--config", setup.config],
                                     logPath: setup.log,
                                     environment: ["NOTIFY_SOCKET=\(notifyPath)", "WATCHDOG_USEC=400000"])
        // READY=1, then pings every 200 ms.
        var messages = await receive(notify, until: { $0.filter { $0 == "WATCHDOG=1" }.count >= 3 }, milliseconds: 60_000)
        let elapsed = monotonicMilliseconds() - started
        let ready = try #require(messages.firstIndex { $0.hasPrefix("READY=1") },
                                 Comment(rawValue: "no READY=1 in \(messages):\n" + readText(setup.log)))
        #expect(messages[ready].contains("STATUS=serving"))
        // Serving when READY=1 arrived: the socket answers.
        #expect(try unixRequest(setup.socket, "GET", "/v1/status").status == 200)
        let pings = messages.filter { $0 == "WATCHDOG=1" }.count
        #expect(pings >= 3, Comment(rawValue: "pings: \(messages)"))
        // Three pings at 200 ms cannot take less than ~400 ms after the first.
        #expect(elapsed >= 400)
        #expect(!messages.contains("STOPPING=1"))

        child.signal(SIGTERM)
        messages = await receive(notify, until: { $0.contains("STOPPING=1") }, milliseconds: 30_000)
        #expect(messages.contains("STOPPING=1"), Comment(rawValue: "after SIGTERM: \(messages)"))
        let status = await child.wait(timeoutMilliseconds: 30_000)
        #expect(status.flatMap(exitCode) == 0, Comment(rawValue: readText(setup.log)))
    }

    @Test("without WATCHDOG_USEC the agent sends READY=1 and no pings")
    func noWatchdogWithoutUsec() async throws {
        let setup = try prepare()
        defer { removeTree(setup.directory) }
        let notifyPath = setup.directory + "/notify"
        let notify = try boundUnixSocket(notifyPath, type: Int32(SOCK_DGRAM.rawValue))
        defer { close(notify) }
        let child = try ChildProcess(executable: try agentBinaryPath(), arguments: ["--config", setup.config],
                                     logPath: setup.log, environment: ["NOTIFY_SOCKET=\(notifyPath)"])
        var messages = await receive(notify, until: { $0.contains { $0.hasPrefix("READY=1") } }, milliseconds: 60_000)
        #expect(messages.contains { $0.hasPrefix("READY=1") }, Comment(rawValue: readText(setup.log)))
        messages += await receive(notify, until: { _ in false }, milliseconds: 600)
        #expect(!messages.contains("WATCHDOG=1"))
        child.signal(SIGTERM)
        #expect(await child.wait(timeoutMilliseconds: 30_000).flatMap(exitCode) == 0)
    }

    @Test("socket activation: the agent serves on the listening socket passed as fd 3 (LISTEN_FDS=1, LISTEN_PID)")
    func socketActivation() async throws {
        let setup = try prepare()
        defer { removeTree(setup.directory) }
        // The socket systemd would have made from hearth-agent.socket; not the configured path.
        let activatedPath = setup.directory + "/activated.sock"
        let listener = try boundUnixSocket(activatedPath, type: Int32(SOCK_STREAM.rawValue))
        defer { close(listener) }
        #expect(listen(listener, 16) == 0)

        // LISTEN_PID must be the agent's own pid: the shell exports its pid, then execs the agent.
        let agent = try agentBinaryPath()
        let child = try ChildProcess(
            executable: "/bin/sh",
            arguments: ["-c", #"LISTEN_PID=$$; export LISTEN_PID; exec "$0" "$@""#, agent, "--config", setup.config],
            logPath: setup.log, environment: ["LISTEN_FDS=1"], descriptor3: listener)

        var answered: (status: Int, json: JSONValue?)?
        let deadline = monotonicMilliseconds() + 60_000
        while answered == nil && monotonicMilliseconds() < deadline {
            answered = try? unixRequest(activatedPath, "GET", "/v1/status")
            if answered == nil { try await Task.sleep(for: .milliseconds(50)) }
        }
        let response = try #require(answered, Comment(rawValue: "no answer on the passed socket:\n" + readText(setup.log)))
        #expect(response.status == 200)
        #expect(response.json?.objectValue?["kernel"]?.stringValue?.isEmpty == false)
        // A second request on the same inherited socket.
        #expect(try unixRequest(activatedPath, "GET", "/v1/privacy").status == 200)
        // The configured path was never bound: the agent used the inherited socket.
        #expect(access(setup.socket, F_OK) != 0)
        #expect(readText(setup.log).contains("using the socket passed by systemd"))

        child.signal(SIGTERM)
        let status = await child.wait(timeoutMilliseconds: 30_000)
        #expect(status.flatMap(exitCode) == 0, Comment(rawValue: readText(setup.log)))
    }
}
