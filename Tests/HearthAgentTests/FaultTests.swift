#if canImport(Glibc)
import Glibc
#endif
import Crypto
import HearthCore
import HearthLocalAPI
import HearthTestSupport
import Synchronization
import Testing

/// The real `hearth-agent` under faults (issue 8): a full disk (a small tmpfs in the agent's
/// own mount namespace), a read-only state directory (a read-only bind mount), a corrupt
/// database, a truncated model file, the wall clock jumping backwards, and an aggregator that
/// answers 500, answers too slowly or is gone. In each: recommendations keep being served, the
/// condition shows in `GET /v1/status`, nothing acknowledged is lost, and the agent recovers
/// without a restart once the fault is removed. Each test prints `faults: <name> injected N
/// recovered M`.
///
/// The mounts need root and `unshare`/`nsenter` (util-linux); a test that cannot make its
/// mount fails, it does not pass silently.
@Suite("Agent faults", .serialized)
struct FaultTests {
    static let items = 40
    static let dimension = 8

    // MARK: - Full disk

    @Test("full disk: events refused with 507, recommendations served, recovers when space is freed")
    func diskFull() async throws {
        let agent = try FaultAgent()
        defer { agent.remove() }
        // The state directory is a 1 MiB tmpfs in the agent's own mount namespace (gone with it).
        let child = try agent.start(mount: .tmpfs(kilobytes: 1024))
        try await agent.waitForSocket(child)
        let root = try agent.namespaceRoot(child, expectingFileSystem: "tmpfs")

        var acknowledged = 0
        let first = try agent.post(session: "s-1", count: 8)
        #expect(first.status == 200)
        if first.status == 200 { acknowledged += 8 }

        // Fill the file system, then post until SQLite runs out of room (pages already in the
        // WAL can take a few more batches: those are acknowledged, so they count).
        let filler = root + agent.state + "/filler"
        let filled = fillFileSystem(filler)
        #expect(filled > 0, "nothing could be written to fill the tmpfs")
        var refused: (status: Int, json: JSONValue?)?
        for batch in 0 ..< 400 {
            let response = try agent.post(session: "fill-\(batch)", count: 50)
            if response.status == 200 {
                acknowledged += 50
            } else {
                refused = response
                break
            }
        }
        let refusal = try #require(refused, "the store never reported the full disk")
        #expect(refusal.status == 507, "refused with \(refusal.status) \(String(describing: refusal.json))")
        #expect(refusal.json?.objectValue?["error"]?.stringValue?.contains("disk is full") == true)
        var state = try agent.status()
        #expect(agent.conditions(state).contains("disk_full"))
        #expect(state["health"]?.stringValue == "degraded")
        #expect(try agent.recommendationCount(session: "s-1") == 5, "recommendations must be served on a full disk")
        // Still full: refused again (a 2xx only when SQLite found room in pages it already
        // had: then the batch is durable and counted).
        let again = try agent.post(session: "still-full", count: 50)
        #expect(again.status == 507 || again.status == 200)
        if again.status == 200 { acknowledged += 50 }

        // Free the space: the health check's probe write clears the condition, events are stored again.
        #expect(unlink(filler) == 0)
        try await waitUntil("disk_full cleared", agent) { !agent.conditions(try agent.status()).contains("disk_full") }
        #expect(try agent.post(session: "after", count: 8).status == 200)
        acknowledged += 8
        state = try agent.status()
        #expect(agent.integer(state["events_total"]) == Int64(acknowledged), "acknowledged \(acknowledged)")
        #expect(state["health"]?.stringValue == "ok")
        let log = readText(agent.log)
        #expect(log.contains("condition raised: disk_full") && log.contains("condition cleared: disk_full"))
        try await agent.stop(child)
        print("faults: disk_full injected 1 recovered 1 (events acknowledged \(acknowledged), all present)")
    }

    // MARK: - Read-only state directory

    @Test("read-only state directory: serving continues, events refused with 503, store reopened once writable")
    func readOnlyState() async throws {
        let agent = try FaultAgent()
        defer { agent.remove() }
        var child = try agent.start(mount: nil)
        try await agent.waitForSocket(child)
        #expect(try agent.post(session: "s-1", count: 8).status == 200)
        try await agent.stop(child)

        // The state directory as a read-only bind mount (root ignores file modes).
        child = try agent.start(mount: .readOnlyBind)
        try await agent.waitForSocket(child)
        let root = try agent.namespaceRoot(child, expectingFileSystem: nil)
        let probe = open(root + agent.state + "/probe", O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
        let probeErrno = errno
        if probe >= 0 { close(probe) }
        #expect(probe < 0 && probeErrno == EROFS, "the state directory must be read-only in the agent's namespace")
        var state = try agent.status()
        #expect(agent.conditions(state).contains("state_read_only"), "conditions: \(agent.conditions(state))")
        #expect(state["store"]?.stringValue == "unavailable")
        #expect(try agent.recommendationCount(session: "s-1") == 5)
        let refused = try agent.post(session: "s-2", count: 4)
        #expect(refused.status == 503)
        #expect(refused.json?.objectValue?["error"]?.stringValue?.contains("read-only") == true)

        // Make it writable again: the store is reopened without a restart.
        try await runAndWait("/usr/bin/nsenter", ["-t", String(child.pid), "-m", "mount", "-o", "remount,bind,rw", agent.state])
        try await waitUntil("state_read_only cleared", agent) { !agent.conditions(try agent.status()).contains("state_read_only") }
        state = try agent.status()
        #expect(agent.integer(state["events_total"]) == 8, "the events stored before are back")
        #expect(try agent.post(session: "s-2", count: 4).status == 200)
        #expect(agent.integer(try agent.status()["events_total"]) == 12)
        try await agent.stop(child)
        print("faults: state_read_only injected 1 recovered 1 (8 + 4 events acknowledged, all present)")
    }

    // MARK: - Corrupt database

    @Test("corrupt database at start: moved aside, a fresh store, training refused until the lost ledger is acknowledged")
    func corruptDatabase() async throws {
        let agent = try FaultAgent()
        defer { agent.remove() }
        var child = try agent.start(mount: nil)
        try await agent.waitForSocket(child)
        #expect(try agent.post(session: "s-1", count: 8).status == 200)
        try await waitUntil("a training round recorded", agent) {
            (agent.double(try agent.status()["privacy"]?.objectValue?["epsilon_spent"]) ?? 0) > 0
        }
        try await agent.stop(child)

        // Overwrite the database header: SQLite no longer recognises the file.
        let database = agent.state + "/hearth.db"
        let fd = open(database, O_WRONLY)
        #expect(fd >= 0)
        let garbage = [UInt8](repeating: 0x5A, count: 512)
        #expect(pwrite(fd, garbage, garbage.count, 0) == garbage.count)
        close(fd)

        child = try agent.start(mount: nil)
        try await agent.waitForSocket(child)
        var state = try agent.status()
        let corrupt = agent.condition("database_corrupt", in: state)
        #expect(corrupt != nil, "conditions: \(agent.conditions(state))")
        #expect(corrupt?.contains("ledger not recoverable") == true, "detail: \(corrupt ?? "")")
        let moved = agent.names(in: agent.state, prefix: "hearth.db.corrupt-")
        #expect(moved.count == 1, "moved aside: \(moved)")
        #expect(access(agent.state + "/ledger-lost", F_OK) == 0)
        #expect(try agent.recommendationCount(session: "s-1") == 5)
        #expect(try agent.post(session: "s-2", count: 8).status == 200)
        // The ledger is gone with the damaged file: no round may spend the budget again.
        try await waitUntil("training refused", agent) {
            (try agent.status()["training"]?.objectValue?["last_decision"]?.stringValue ?? "").contains("ledger was lost")
        }
        #expect(agent.double(try agent.status()["privacy"]?.objectValue?["epsilon_spent"]) == 0)

        // The operator keeps (or archives) the damaged file elsewhere and acknowledges the loss.
        for name in moved { unlink(agent.state + "/" + name) }
        unlink(agent.state + "/ledger-lost")
        try await waitUntil("database_corrupt cleared", agent) { !agent.conditions(try agent.status()).contains("database_corrupt") }
        state = try agent.status()
        #expect(agent.integer(state["events_total"]) == 8)
        try await agent.stop(child)
        print("faults: database_corrupt injected 1 recovered 1 (fresh store, 8 events acknowledged after it, all present)")
    }

    @Test("corrupt event pages found while running: integrity_check, moved aside, the privacy ledger carried over")
    func corruptEventPages() async throws {
        let agent = try FaultAgent()
        defer { agent.remove() }
        var child = try agent.start(mount: nil)
        try await agent.waitForSocket(child)
        #expect(try agent.post(session: "s-1", count: 8).status == 200)
        try await waitUntil("a training round recorded", agent) {
            (agent.double(try agent.status()["privacy"]?.objectValue?["epsilon_spent"]) ?? 0) > 0
        }
        let spent = agent.double(try agent.status()["privacy"]?.objectValue?["epsilon_spent"]) ?? 0
        try await agent.stop(child)
        // A clean stop closes the store: the log is checkpointed into hearth.db and removed, so the
        // page written below is the one the next start reads (a log left behind would hold newer
        // copies of the events pages and hide the damage).
        #expect(access(agent.state + "/hearth.db-wal", F_OK) != 0, "a clean stop leaves no write-ahead log")

        // Page 3 is the events table's root (the schema creates it first); the ledger's pages stay intact.
        let fd = open(agent.state + "/hearth.db", O_WRONLY)
        #expect(fd >= 0)
        let garbage = [UInt8](repeating: 0xFF, count: 4096)
        #expect(pwrite(fd, garbage, garbage.count, 2 * 4096) == garbage.count)
        close(fd)

        child = try agent.start(mount: nil)
        try await agent.waitForSocket(child)
        try await waitUntil("the damaged store replaced", agent) {
            agent.condition("database_corrupt", in: try agent.status())?.contains("privacy ledger recovered (1 entries)") == true
        }
        let state = try agent.status()
        #expect(state["store"]?.stringValue == "ok")
        #expect(agent.double(state["privacy"]?.objectValue?["epsilon_spent"]) == spent, "the ledger is carried over")
        #expect(access(agent.state + "/ledger-lost", F_OK) != 0)
        #expect(try agent.recommendationCount(session: "s-1") == 5)
        #expect(try agent.post(session: "s-2", count: 4).status == 200)
        for name in agent.names(in: agent.state, prefix: "hearth.db.corrupt-") { unlink(agent.state + "/" + name) }
        try await waitUntil("database_corrupt cleared", agent) { !agent.conditions(try agent.status()).contains("database_corrupt") }
        #expect(agent.integer(try agent.status()["events_total"]) == 4)
        try await agent.stop(child)
        print("faults: database_corrupt (event pages) injected 1 recovered 1 (ledger ε \(spent) carried over)")
    }

    // MARK: - Truncated model file

    @Test("truncated model file: the previous model is served, reported, then replaced by a verified download")
    func truncatedModel() async throws {
        let aggregator = try FaultyAggregator()
        defer { aggregator.stop() }
        let key = Curve25519.Signing.PrivateKey()
        let agent = try FaultAgent(aggregator: aggregator, publicKey: base64(Array(key.publicKey.rawRepresentation)))
        defer { agent.remove() }
        let previous = ModelFile.encode(try Fixtures.randomModel(items: Self.items, dimension: Self.dimension, seed: 5, version: 2))
        let current = ModelFile.encode(try Fixtures.randomModel(items: Self.items, dimension: Self.dimension, seed: 7, version: 3))
        try writeFile(agent.state + "/models/previous.hrth", previous)
        try writeFile(agent.state + "/models/current.hrth", Array(current.prefix(current.count / 2)))

        let child = try agent.start(mount: nil)
        try await agent.waitForSocket(child)
        var state = try agent.status()
        #expect(state["model_version"]?.stringValue == "2", "the previous model is served")
        #expect(agent.conditions(state).contains("model_invalid"))
        #expect(try agent.recommendationCount(session: "s-1") == 5)
        #expect(agent.names(in: agent.state + "/models", prefix: "current.hrth.corrupt-").count == 1)
        let restored = try ModelFile.decode(faultFileBytes(agent.state + "/models/current.hrth"), keepingMaster: false)
        #expect(restored.version == 2, "previous.hrth is restored as current.hrth")

        // The aggregator publishes version 4: verified, installed, served; the condition clears.
        let newer = ModelFile.encode(try Fixtures.randomModel(items: Self.items, dimension: Self.dimension, seed: 9, version: 4))
        aggregator.publish(model: newer, signature: base64(Array(try key.signature(for: newer))))
        try await waitUntil("model 4 served", agent) { try agent.status()["model_version"]?.stringValue == "4" }
        state = try agent.status()
        #expect(!agent.conditions(state).contains("model_invalid"))
        try await agent.stop(child)
        print("faults: model_invalid injected 1 recovered 1")
    }

    // MARK: - Clock backwards

    @Test("wall clock one day back: reported, serving and ingest unaffected, a pending retry is not parked for a day")
    func clockBackwards() async throws {
        let aggregator = try FaultyAggregator()
        defer { aggregator.stop() }
        aggregator.mode = .error500
        // The refused upload's retry is set 5 s ahead (Retry-After), so it is still pending when
        // the clock jumps: without the shift it would wait a day and five seconds.
        aggregator.retryAfterSeconds = 5
        let agent = try FaultAgent(aggregator: aggregator)
        defer { agent.remove() }
        let offsetFile = agent.directory + "/clock-offset"
        try writeFile(offsetFile, Array("0\n".utf8))
        let child = try agent.start(mount: nil, extraArguments: ["--clock-offset-file", offsetFile])
        try await agent.waitForSocket(child)
        #expect(try agent.post(session: "s-1", count: 8).status == 200)
        try await waitUntil("an upload refused with 500", agent) { aggregator.attempts > 0 }

        // One day back: the retry time written before the jump is a day ahead of the clock now.
        try writeFile(offsetFile, Array("-86400000\n".utf8))
        try await waitUntil("clock_backwards raised", agent) { agent.conditions(try agent.status()).contains("clock_backwards") }
        #expect(aggregator.attempts == 1, "no retry before the jump")
        #expect(try agent.post(session: "s-2", count: 4).status == 200)
        #expect(try agent.recommendationCount(session: "s-2") == 5)
        aggregator.mode = .ok
        try await waitUntil("the update delivered", agent) { agent.integer(try agent.status()["outbox_pending"]) == 0 }
        #expect(aggregator.acceptedKeys.count == 1)

        // The clock comes back: the condition clears.
        try writeFile(offsetFile, Array("0\n".utf8))
        try await waitUntil("clock_backwards cleared", agent) { !agent.conditions(try agent.status()).contains("clock_backwards") }
        #expect(agent.integer(try agent.status()["events_total"]) == 12)
        try await agent.stop(child)
        print("faults: clock_backwards injected 1 recovered 1 (the update delivered while the clock was a day behind)")
    }

    // MARK: - Aggregator

    @Test("aggregator answering 500, too slow, then gone: each reported, the update kept, delivered once it is back")
    func aggregatorFaults() async throws {
        let aggregator = try FaultyAggregator()
        defer { aggregator.stop() }
        aggregator.mode = .error500
        let agent = try FaultAgent(aggregator: aggregator, timeoutMilliseconds: 1000)
        defer { agent.remove() }
        let child = try agent.start(mount: nil)
        try await agent.waitForSocket(child)
        #expect(try agent.post(session: "s-1", count: 8).status == 200)
        var injected = 0
        var recovered = 0

        try await waitUntil("aggregator_error raised", agent) { agent.conditions(try agent.status()).contains("aggregator_error") }
        injected += 1
        #expect(agent.condition("aggregator_error", in: try agent.status())?.contains("500") == true)
        #expect(agent.integer(try agent.status()["outbox_pending"]) == 1)
        #expect(try agent.recommendationCount(session: "s-1") == 5)

        aggregator.mode = .slow(milliseconds: 2500)
        try await waitUntil("aggregator_slow raised", agent) { agent.conditions(try agent.status()).contains("aggregator_slow") }
        injected += 1
        #expect(try agent.recommendationCount(session: "s-1") == 5)

        aggregator.goDown()
        try await waitUntil("aggregator_unreachable raised", agent) {
            agent.conditions(try agent.status()).contains("aggregator_unreachable")
        }
        injected += 1
        #expect(try agent.recommendationCount(session: "s-1") == 5)
        #expect(agent.integer(try agent.status()["outbox_pending"]) == 1, "the outbox keeps the update")

        aggregator.mode = .ok
        try aggregator.comeBack()
        try await waitUntil("the update delivered", agent) { agent.integer(try agent.status()["outbox_pending"]) == 0 }
        let state = try agent.status()
        let remaining = agent.conditions(state).filter { $0.hasPrefix("aggregator_") }
        #expect(remaining.isEmpty, "still reported: \(remaining)")
        if remaining.isEmpty { recovered = injected }
        // The slow phase may have stored the update before the agent gave up waiting: it is then
        // answered as a replay; either way the aggregator counted exactly one update.
        #expect(aggregator.acceptedKeys.count == 1, "accepted keys: \(aggregator.acceptedKeys)")
        #expect(Set(aggregator.attemptKeys).count == 1, "every attempt carried the same idempotency key")
        let counts = state["condition_counts"]?.objectValue ?? [:]
        for name in ["aggregator_error", "aggregator_slow", "aggregator_unreachable"] {
            #expect(agent.integer(counts[name]?.objectValue?["raised"]).map { $0 >= 1 } == true, "\(name) never raised")
        }
        try await agent.stop(child)
        print("faults: aggregator injected \(injected) recovered \(recovered) (500, slow, unreachable; \(aggregator.attempts) attempts, 1 update counted)")
    }
}

// MARK: - Harness

/// Waits (up to 30 s) until `check` holds; fails with the agent's log otherwise.
func waitUntil(_ what: String, _ agent: FaultAgent, timeoutMilliseconds: Int64 = 30_000,
               _ check: () throws -> Bool) async throws {
    let deadline = monotonicMilliseconds() + timeoutMilliseconds
    while monotonicMilliseconds() < deadline {
        if (try? check()) == true { return }
        try await Task.sleep(for: .milliseconds(100))
    }
    throw TestFailure("timed out waiting for: \(what)\n" + readText(agent.log))
}

/// Runs `executable` with `arguments` and fails unless it exits 0 within 30 s.
func runAndWait(_ executable: String, _ arguments: [String]) async throws {
    let directory = try makeTemporaryDirectory()
    defer { removeTree(directory) }
    let child = try ChildProcess(executable: executable, arguments: arguments, logPath: directory + "/log")
    let status = await child.wait(timeoutMilliseconds: 30_000)
    guard let status, exitCode(status) == 0 else {
        throw TestFailure("\(executable) \(arguments.joined(separator: " ")) failed (status \(String(describing: status))): \(readText(directory + "/log"))")
    }
}

/// The file's bytes (empty when unreadable).
func faultFileBytes(_ path: String) -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return [] }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = read(fd, &chunk, chunk.count)
        if n <= 0 { break }
        bytes += chunk[0 ..< n]
    }
    return bytes
}

/// Writes zeros to `path` until the file system is full; the bytes written.
func fillFileSystem(_ path: String) -> Int {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
    guard fd >= 0 else { return 0 }
    defer { close(fd) }
    let chunk = [UInt8](repeating: 0, count: 16 * 1024)
    var total = 0
    var size = chunk.count
    while size > 0 {
        let n = chunk.withUnsafeBytes { write(fd, $0.baseAddress, size) }
        if n > 0 { total += n } else if size > 512 { size /= 2 } else { break }
    }
    return total
}

/// One agent under test: a state directory with a model, a configuration, a socket, a log.
final class FaultAgent: Sendable {
    /// How the state directory is mounted in the agent's own mount namespace.
    enum Mount {
        /// A fresh tmpfs of this size (the state's files are copied in before the agent starts).
        case tmpfs(kilobytes: Int)
        /// A read-only bind mount of the state directory onto itself.
        case readOnlyBind
    }

    let directory: String
    let state: String
    let socket: String
    let config: String
    let log: String

    init(aggregator: FaultyAggregator? = nil, publicKey: String? = nil, timeoutMilliseconds: Int = 5000) throws {
        directory = try makeTemporaryDirectory()
        state = directory + "/state"
        socket = directory + "/a.sock"
        config = directory + "/agent.toml"
        log = directory + "/agent.log"
        mkdir(state, 0o700)
        mkdir(state + "/models", 0o700)
        let model = try Fixtures.randomModel(items: FaultTests.items, dimension: FaultTests.dimension, seed: 7, version: 3)
        try writeFile(state + "/models/current.hrth", ModelFile.encode(model))
        try writeFile(directory + "/credential", Array("device-token-1\n".utf8))
        var upload = ""
        if let aggregator {
            upload = """
            [upload]
            aggregator_url = "\(aggregator.baseURL)"
            credential_file = "\(directory)/credential"
            connect_timeout_ms = 500
            timeout_ms = \(timeoutMilliseconds)
            \(publicKey.map { "model_public_key = \"\($0)\"" } ?? "")
            """
        }
        let text = """
        [agent]
        state_directory = "\(state)"
        socket = "\(socket)"
        [model]
        history = 10
        [training]
        window = "00:00-24:00"
        max_load = 64
        require_mains_power = false
        min_new_events = 5
        [privacy]
        mode = "local"
        unit = "device"
        clip_norm = 1.0
        noise_multiplier = 1.5
        bit_width = 16
        epsilon_budget = 50.0
        \(upload)
        """
        try writeFile(config, Array(text.utf8))
    }

    /// Starts the agent (fast intervals), in its own mount namespace when `mount` is set.
    func start(mount: Mount?, extraArguments: [String] = []) throws -> ChildProcess {
        let arguments = ["--config", config, "--log-level", "debug",
                         "--training-check-interval", "0.3", "--upload-interval", "0.2", "--model-refresh-interval", "0.3",
                         "--health-check-interval", "0.2", "--upload-backoff-cap", "1"] + extraArguments
        let agentPath = try agentBinaryPath()
        guard let mount else {
            return try ChildProcess(executable: agentPath, arguments: arguments, logPath: log)
        }
        let script: String
        switch mount {
        case .tmpfs(let kilobytes):
            let stage = directory + "/stage"
            guard rename(state, stage) == 0 || access(stage, F_OK) == 0 else { throw TestFailure("cannot stage the state") }
            mkdir(state, 0o700)
            script = #"mount -t tmpfs -o size=\#(kilobytes)k hearth-fault "$0" && cp -a "$1/." "$0/" && shift && exec "$@""#
            return try ChildProcess(executable: "/usr/bin/unshare",
                                    arguments: ["--mount", "--propagation", "private", "/bin/sh", "-c", script,
                                                state, stage, agentPath] + arguments,
                                    logPath: log)
        case .readOnlyBind:
            script = #"mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@""#
            return try ChildProcess(executable: "/usr/bin/unshare",
                                    arguments: ["--mount", "--propagation", "private", "/bin/sh", "-c", script,
                                                state, agentPath] + arguments,
                                    logPath: log)
        }
    }

    /// `/proc/<pid>/root`: the agent's view of the file system (its mount namespace). Fails
    /// loudly unless the state directory is a mount point there (of `fileSystem` when given).
    func namespaceRoot(_ child: ChildProcess, expectingFileSystem fileSystem: String?) throws -> String {
        let mounts = readText("/proc/\(child.pid)/mountinfo")
        let line = mounts.split(separator: "\n").first { $0.split(separator: " ").dropFirst(4).first.map(String.init) == state }
        guard let line else {
            throw TestFailure("the state directory is not a mount point in the agent's namespace (mount failed?):\n" + readText(log))
        }
        if let fileSystem, !line.contains(" - \(fileSystem) ") {
            throw TestFailure("the state directory is not a \(fileSystem): \(line)")
        }
        return "/proc/\(child.pid)/root"
    }

    func waitForSocket(_ child: ChildProcess) async throws {
        let deadline = monotonicMilliseconds() + 60_000
        while monotonicMilliseconds() < deadline {
            if (try? unixRequest(socket, "GET", "/v1/status"))?.status == 200 { return }
            if let status = await child.wait(timeoutMilliseconds: 1) {
                throw TestFailure("agent exited early (status \(status)):\n" + readText(log))
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TestFailure("agent socket never answered:\n" + readText(log))
    }

    /// SIGTERM; expects exit 0.
    func stop(_ child: ChildProcess) async throws {
        child.signal(SIGTERM)
        let status = await child.wait(timeoutMilliseconds: 30_000)
        #expect(status.flatMap(exitCode) == 0, Comment(rawValue: "exit status \(String(describing: status)):\n" + readText(log)))
    }

    func remove() { removeTree(directory) }

    func status() throws -> [String: JSONValue] {
        let response = try unixRequest(socket, "GET", "/v1/status")
        guard response.status == 200, let object = response.json?.objectValue else {
            throw TestFailure("status answered \(response.status)")
        }
        return object
    }

    /// The names of the active conditions.
    func conditions(_ status: [String: JSONValue]) -> [String] {
        (status["conditions"]?.arrayValue ?? []).compactMap { $0.objectValue?["name"]?.stringValue }
    }

    /// The detail of condition `name`, nil when it is not active.
    func condition(_ name: String, in status: [String: JSONValue]) -> String? {
        (status["conditions"]?.arrayValue ?? []).compactMap(\.objectValue)
            .first { $0["name"]?.stringValue == name }?["detail"]?.stringValue
    }

    /// Posts `count` events for `session` (timestamps a minute ago).
    func post(session: String, count: Int) throws -> (status: Int, json: JSONValue?) {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let timestamp = Int64(now.tv_sec) * 1000 - 60_000
        let kinds = ["view", "click", "cart", "view"]
        let list = (0 ..< count).map { index in
            #"{"item": "item-\#(index % FaultTests.items)", "kind": "\#(kinds[index % kinds.count])", "session": "\#(session)", "timestamp_ms": \#(timestamp + Int64(index))}"#
        }
        return try unixRequest(socket, "POST", "/v1/events", body: #"{"events": ["# + list.joined(separator: ",") + "]}")
    }

    /// The number of items `GET /v1/recommendations?k=5` returns (throws unless 200).
    func recommendationCount(session: String) throws -> Int {
        let response = try unixRequest(socket, "GET", "/v1/recommendations?session=\(session)&k=5")
        guard response.status == 200 else { throw TestFailure("recommendations answered \(response.status)") }
        return response.json?.objectValue?["items"]?.arrayValue?.count ?? 0
    }

    func names(in directory: String, prefix: String) -> [String] {
        guard let handle = opendir(directory) else { return [] }
        defer { closedir(handle) }
        var names: [String] = []
        while let entry = readdir(handle) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name.hasPrefix(prefix) { names.append(name) }
        }
        return names
    }

    func integer(_ value: JSONValue?) -> Int64? {
        switch value {
        case .integer(let i)?: return i
        case .double(let d)?: return Int64(exactly: d)
        default: return nil
        }
    }

    func double(_ value: JSONValue?) -> Double? {
        switch value {
        case .integer(let i)?: return Double(i)
        case .double(let d)?: return d
        default: return nil
        }
    }
}

/// A fake aggregator on 127.0.0.1 whose behaviour the test switches: answer normally
/// (`POST /v1/updates` stored once per idempotency key, replays answered with
/// `Idempotent-Replayed: true`; `GET /v1/model` the published model), answer 500, answer
/// after a delay, or not listen at all (`goDown`, then `comeBack` on the same port).
final class FaultyAggregator: @unchecked Sendable {
    enum Mode: Sendable, Equatable {
        case ok
        case error500
        case slow(milliseconds: Int)
    }

    private struct State {
        var mode: Mode = .ok
        var accepted: Set<String> = []
        var attemptKeys: [String] = []
        var model: (body: [UInt8], signature: String)?
        var listener: Int32 = -1
        var retryAfterSeconds: Int?
    }

    private let shared = Mutex(State())
    private(set) var port: UInt16 = 0

    init() throws {
        try listen(port: 0)
    }

    var baseURL: String { "http://127.0.0.1:\(port)" }

    var mode: Mode {
        get { shared.withLock { $0.mode } }
        set { shared.withLock { $0.mode = newValue } }
    }

    /// Keys of updates stored (each once).
    var acceptedKeys: Set<String> { shared.withLock { $0.accepted } }
    /// The idempotency key of every upload attempt received.
    var attemptKeys: [String] { shared.withLock { $0.attemptKeys } }
    var attempts: Int { shared.withLock { $0.attemptKeys.count } }

    /// The `Retry-After` (seconds) sent with the 500 answers, if any.
    var retryAfterSeconds: Int? {
        get { shared.withLock { $0.retryAfterSeconds } }
        set { shared.withLock { $0.retryAfterSeconds = newValue } }
    }

    func publish(model: [UInt8], signature: String) {
        shared.withLock { $0.model = (model, signature) }
    }

    /// Stops listening: connections are refused.
    func goDown() {
        let fd = shared.withLock { state -> Int32 in
            defer { state.listener = -1 }
            return state.listener
        }
        if fd >= 0 {
            shutdown(fd, Int32(SHUT_RDWR))
            close(fd)
        }
    }

    /// Listens again on the same port.
    func comeBack() throws {
        try listen(port: port)
    }

    func stop() { goDown() }

    private func listen(port requested: UInt16) throws {
        let (fd, listeningPort) = try Loopback.listening(port: requested, backlog: 16)
        port = listeningPort
        shared.withLock { $0.listener = fd }
        try Loopback.startThread { [self] in acceptLoop(fd) }
    }

    private func acceptLoop(_ listener: Int32) {
        while true {
            let connection = accept(listener, nil, nil)
            if connection < 0 {
                if errno == EINTR { continue }
                return
            }
            answer(connection)
            close(connection)
        }
    }

    private func answer(_ connection: Int32) {
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(connection, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        guard let request = readRequest(connection) else { return }
        let (method, path, headers) = request
        let mode = self.mode
        var status = 404
        var body: [UInt8] = []
        var extra = ""
        let isUpload = method == "POST" && path == "/v1/updates"
        let key = headers["idempotency-key"] ?? ""
        // Counted when received; a slow answer stores the update after its delay (the agent
        // may have given up by then: its retry is then a replay).
        if isUpload { shared.withLock { $0.attemptKeys.append(key) } }
        if case .slow(let milliseconds) = mode { usleep(useconds_t(milliseconds) * 1000) }
        if isUpload {
            let replay = shared.withLock { state -> Bool? in
                if state.mode == .error500 { return nil }
                return !state.accepted.insert(key).inserted
            }
            switch replay {
            case nil:
                status = 500
                body = Array(#"{"error": "injected failure"}"#.utf8)
                if let seconds = retryAfterSeconds { extra = "Retry-After: \(seconds)\r\n" }
            case true?:
                status = 200
                extra = "Idempotent-Replayed: true\r\n"
            case false?:
                status = 200
            }
        } else if method == "GET" && path == "/v1/model", mode != .error500,
                  let served = shared.withLock({ $0.model }) {
            status = 200
            body = served.body
            extra = "X-Hearth-Signature: \(served.signature)\r\nContent-Type: application/vnd.hearth.model\r\n"
        } else if mode == .error500 {
            status = 500
        }
        let answer = Array("HTTP/1.1 \(status) Fault\r\nConnection: close\r\n\(extra)Content-Length: \(body.count)\r\n\r\n".utf8) + body
        _ = answer.withUnsafeBytes { send(connection, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    private func readRequest(_ fd: Int32) -> (String, String, [String: String])? {
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
        var headers: [String: String] = [:]
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[String(line[..<colon]).lowercased()] = String(line[line.index(after: colon)...].drop { $0 == " " })
        }
        let length = Int(headers["content-length"] ?? "0") ?? 0
        var received = data.count - (headerEnd + 4)
        while received < length {
            let n = read(fd, &chunk, min(chunk.count, length - received))
            if n <= 0 { return nil }
            received += n
        }
        return (requestLine[0], requestLine[1], headers)
    }
}
