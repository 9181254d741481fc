import CHearthSpawn
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Runs each request in a short-lived `hearth-fetch` process (libcurl lives there), so the
/// agent itself never maps libcurl and the ~30 libraries it loads (OpenSSL, GnuTLS, Kerberos,
/// LDAP, ...; docs/benchmarks.md, "Agent footprint").
///
/// Per request: `posix_spawn` of the helper (no shell, the agent's environment) with one end
/// of a Unix socket pair as its standard input and output and, for a `.fileDescriptor`
/// destination, that file as its descriptor 3; the request frame goes in, the helper's
/// standard input is then shut, and one response frame comes back (`FetchFraming`,
/// docs/formats.md). The helper's standard error is the agent's (the journal). The helper is
/// killed (SIGKILL) when it is still running `killGraceMilliseconds` after the request's own
/// timeout, or when it answers more than a response frame may hold.
///
/// Every failure of the helper itself (missing, not executable, killed, exited non-zero, too
/// slow, malformed output) throws `helperFailed`; failures of the transfer come back as the
/// helper reported them (`transport` with the curl code, `responseTooLarge`, ...).
public struct FetchHelperTransport: HTTPTransport {
    /// The helper's file name.
    public static let executableName = "hearth-fetch"

    /// The helper executable.
    public let helperPath: String
    /// How long past the request's timeout the helper may run before it is killed.
    public var killGraceMilliseconds: Int

    public init(helperPath: String, killGraceMilliseconds: Int = 5_000) {
        self.helperPath = helperPath
        self.killGraceMilliseconds = killGraceMilliseconds
    }

    /// The environment variable naming the helper (for a non-standard layout).
    public static let pathVariable = "HEARTH_FETCH_HELPER"

    /// `$HEARTH_FETCH_HELPER` when set and not empty, else `defaultHelperPath()`.
    public static func configuredHelperPath() -> String {
        if let value = getenv(pathVariable), value.pointee != 0 { return String(cString: value) }
        return defaultHelperPath()
    }

    /// Where the helper is when none is configured: next to the running executable
    /// (`/usr/bin/hearth-fetch`, or a build directory), else in `../lib/hearth/` from it
    /// (`/usr/lib/hearth/hearth-fetch`, where the package installs it). The first candidate
    /// when neither is executable, so that the error names a path.
    public static func defaultHelperPath(executablePath: String? = nil) -> String {
        let executable = executablePath ?? currentExecutablePath() ?? ""
        var directory = Substring(executable)
        if let slash = directory.lastIndex(of: "/") { directory = directory[..<slash] } else { directory = "." }
        let candidates = ["\(directory)/\(executableName)", "\(directory)/../lib/hearth/\(executableName)"]
        return candidates.first { access($0, X_OK) == 0 } ?? candidates[0]
    }

    /// Runs `request` in a new helper process (on a dedicated thread).
    public func perform(_ request: HTTPRequest, configuration: CurlClient.Configuration) async throws(UploaderError) -> HTTPResponse {
        let head = try FetchFraming.encodeRequestHead(request, configuration: configuration)
        let timeout = request.timeoutMilliseconds ?? configuration.timeoutMilliseconds
        let budget = timeout + max(0, killGraceMilliseconds)
        let path = helperPath
        let result: Result<HTTPResponse, UploaderError> = await runOnDedicatedThread {
            FetchHelperTransport.exchange(helperPath: path, head: head, request: request, budgetMilliseconds: budget)
        }
        return try result.get()
    }

    // MARK: - Blocking exchange (runs on the dedicated thread)

    static func exchange(helperPath: String, head: [UInt8], request: HTTPRequest, budgetMilliseconds: Int) -> Result<HTTPResponse, UploaderError> {
        let deadline = monotonicMilliseconds() + budgetMilliseconds
        var pair: [Int32] = [-1, -1]
        #if canImport(Glibc)
        let socketType = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        #else
        let socketType = SOCK_STREAM
        #endif
        guard socketpair(AF_UNIX, socketType, 0, &pair) == 0 else {
            return .failure(.helperFailed("socketpair for \(executableName): \(errnoText())"))
        }
        let ours = pair[0], theirs = pair[1]
        defer { close(ours) }

        var bodyDescriptor: Int32 = -1
        if case .fileDescriptor(let fd) = request.destination {
            // A copy at 10 or above, so that dup2 onto 3 never meets itself (dup2(3, 3) would
            // leave close-on-exec set).
            bodyDescriptor = fcntl(fd, F_DUPFD_CLOEXEC, 10)
            guard bodyDescriptor >= 0 else {
                close(theirs)
                return .failure(.fileSystem("duplicating the download's descriptor: \(errnoText())"))
            }
        }
        let spawned = spawn(helperPath, stdio: theirs, bodyDescriptor: bodyDescriptor)
        close(theirs)
        if bodyDescriptor >= 0 { close(bodyDescriptor) }
        let pid: pid_t
        switch spawned {
        case .success(let child): pid = child
        case .failure(let error): return .failure(error)
        }

        var output: [UInt8] = []
        let failure = pump(ours, head: head, body: request.body, into: &output, deadline: deadline)
        if let failure {
            kill(pid, SIGKILL)
            _ = waitBlocking(pid)
            return .failure(failure)
        }
        guard let status = waitUntil(pid, deadline: deadline) else {
            kill(pid, SIGKILL)
            _ = waitBlocking(pid)
            return .failure(.helperFailed("\(executableName) still running \(budgetMilliseconds) ms after it started; killed"))
        }
        let signal = status & 0x7F
        if signal != 0 {
            return .failure(.helperFailed("\(executableName) was killed by signal \(signal)"))
        }
        let exitCode = (status >> 8) & 0xFF
        guard exitCode == 0 else {
            return .failure(.helperFailed("\(executableName) exited with status \(exitCode) (its message is in the log)"))
        }
        do throws(UploaderError) {
            return try FetchFraming.decodeResponse(output, for: request)
        } catch {
            return .failure(error)
        }
    }

    /// Starts the helper with `stdio` as descriptors 0 and 1 and `bodyDescriptor` (if any) as 3.
    private static func spawn(_ path: String, stdio: Int32, bodyDescriptor: Int32) -> Result<pid_t, UploaderError> {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, stdio, 0)
        posix_spawn_file_actions_adddup2(&actions, stdio, 1)
        if bodyDescriptor >= 0 { posix_spawn_file_actions_adddup2(&actions, bodyDescriptor, FetchFraming.bodyFileDescriptor) }
        // Nothing else of the agent's reaches the helper (its socket's client connections above all).
        let closeFrom = hearth_spawn_close_from(&actions, bodyDescriptor >= 0 ? FetchFraming.bodyFileDescriptor + 1 : 3)
        guard closeFrom == 0 else {
            return .failure(.helperFailed("cannot start \(path) without the agent's descriptors: \(String(cString: strerror(closeFrom)))"))
        }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK))

        guard let argument = strdup(path) else { return .failure(.helperFailed("out of memory")) }
        defer { free(argument) }
        var argv: [UnsafeMutablePointer<CChar>?] = [argument, nil]
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &actions, &attributes, &argv, environ)
        guard rc == 0 else {
            return .failure(.helperFailed("cannot start \(path): \(String(cString: strerror(rc)))"))
        }
        return .success(pid)
    }

    /// Sends `head` and `body`, shuts the sending side, and reads the answer until the helper
    /// closes its end. Returns the failure that ended it early, if any.
    private static func pump(_ fd: Int32, head: [UInt8], body: [UInt8], into output: inout [UInt8], deadline: Int) -> UploaderError? {
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
        var headSent = 0, bodySent = 0
        var sending = true
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            if sending, headSent == head.count, bodySent == body.count {
                shutdown(fd, Int32(SHUT_WR))
                sending = false
            }
            let remaining = deadline - monotonicMilliseconds()
            guard remaining > 0 else {
                return .helperFailed("\(executableName) did not answer within its timeout; killed")
            }
            var poller = pollfd(fd: fd, events: Int16(POLLIN) | (sending ? Int16(POLLOUT) : 0), revents: 0)
            let ready = poll(&poller, 1, Int32(min(remaining, 1_000)))
            if ready < 0 {
                if errno == EINTR { continue }
                return .helperFailed("poll: \(errnoText())")
            }
            if ready == 0 { continue }
            if sending, poller.revents & Int16(POLLOUT) != 0 {
                let sent = headSent < head.count ? sendSome(fd, head, from: headSent) : sendSome(fd, body, from: bodySent)
                if sent < 0 {
                    if errno == EAGAIN || errno == EINTR { continue }
                    // The helper closed its end (it exited, or refused the request): read what it said.
                    sending = false
                } else if headSent < head.count {
                    headSent += sent
                } else {
                    bodySent += sent
                }
            }
            if poller.revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 {
                let received = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if received < 0 {
                    if errno == EAGAIN || errno == EINTR { continue }
                    if errno == ECONNRESET { return nil }
                    return .helperFailed("reading from \(executableName): \(errnoText())")
                }
                if received == 0 { return nil }
                guard output.count + received <= FetchFraming.maxResponseFrameBytes else {
                    return .helperFailed("\(executableName) answered more than \(FetchFraming.maxResponseFrameBytes) bytes; killed")
                }
                output.append(contentsOf: chunk[0 ..< received])
            }
        }
    }

    /// Sends what it can of `bytes[offset...]` without raising SIGPIPE; `send`'s result.
    private static func sendSome(_ fd: Int32, _ bytes: [UInt8], from offset: Int) -> Int {
        bytes.withUnsafeBytes { buffer -> Int in
            guard let base = buffer.baseAddress, offset < buffer.count else { return 0 }
            return send(fd, base + offset, buffer.count - offset, Int32(MSG_NOSIGNAL))
        }
    }

    /// The child's wait status once it exits, or nil at the deadline.
    private static func waitUntil(_ pid: pid_t, deadline: Int) -> Int32? {
        while true {
            var status: Int32 = 0
            let rc = waitpid(pid, &status, WNOHANG)
            if rc == pid { return status }
            if rc < 0 && errno != EINTR { return 0x7F }  // not our child any more: report as killed
            if monotonicMilliseconds() >= deadline { return nil }
            usleep(5_000)
        }
    }

    private static func waitBlocking(_ pid: pid_t) -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return status
    }
}

extension FetchHelperTransport {
/// The running executable (`/proc/self/exe`), or nil where that is unavailable.
private static func currentExecutablePath() -> String? {
    var buffer = [CChar](repeating: 0, count: 4096)
    let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    guard count > 0 else { return nil }
    return String(decoding: buffer[0 ..< count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

private static func monotonicMilliseconds() -> Int {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Int(now.tv_sec) * 1_000 + Int(now.tv_nsec) / 1_000_000
}
}
