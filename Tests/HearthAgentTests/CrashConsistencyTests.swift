#if canImport(Glibc)
import Glibc
#endif
import Crypto
import HearthCore
import HearthLocalAPI
import HearthPrivacy
import HearthProcess
import HearthTestSupport
import Synchronization
import Testing

/// `kill -9` of real `hearth-agent` and `hearth-aggregator` processes at seeded random moments,
/// restart on the same state, and what must hold afterwards: every acknowledged event in the log,
/// the databases pass `PRAGMA integrity_check`, the served model is a complete published and
/// signed version, and no update is lost or counted twice.
///
/// Sizes: `HEARTH_CRASH_AGENT_KILLS` (default 104, spread over four phases),
/// `HEARTH_CRASH_AGGREGATOR_KILLS` (default 24), `HEARTH_CRASH_SEED` (default 8);
/// `HEARTH_CRASH_KEEP=1` keeps the state directories and logs. Each test prints its counts on
/// `crash-consistency` lines.
@Suite("CrashConsistency", .serialized)
struct CrashConsistencyTests {
    // MARK: - The agent

    /// What the agent was doing when a kill was aimed at it.
    enum Phase: String, CaseIterable, Sendable {
        case streaming, training, swap, upload
    }

    /// A client posting batches of 10 events to the agent's socket, back to back, each event
    /// with a unique (session, timestamp) id; remembers which were acknowledged with a 200.
    final class EventStreamer: @unchecked Sendable {
        let socket: String
        let items: Int
        let acknowledged = Mutex<[String]>([])
        /// Events sent whose request got no answer (the agent died under it).
        let unanswered = Atomic<Int>(0)
        let refused = Atomic<Int>(0)
        let inFlight = Atomic<Bool>(false)
        let running = Atomic<Bool>(true)
        let finished = Atomic<Bool>(false)

        init(socket: String, items: Int) {
            self.socket = socket
            self.items = items
        }

        func run() {
            var now = timespec()
            clock_gettime(CLOCK_REALTIME, &now)
            let base = Int64(now.tv_sec) * 1000 - 3_600_000
            let kinds = ["view", "click", "cart", "view", "purchase"]
            var batch = 0
            while running.load(ordering: .acquiring) {
                batch += 1
                let session = "b\(batch)"
                var ids: [String] = []
                var list: [String] = []
                for i in 0 ..< 10 {
                    let timestamp = base + Int64(batch) * 10 + Int64(i)
                    let item = (batch * 7 + i * 13) % items
                    ids.append(session + "|" + String(timestamp))
                    list.append(#"{"item": "item-\#(item)", "kind": "\#(kinds[(batch + i) % kinds.count])", "session": "\#(session)", "timestamp_ms": \#(timestamp)}"#)
                }
                let body = #"{"events": ["# + list.joined(separator: ",") + "]}"
                inFlight.store(true, ordering: .releasing)
                do {
                    let answer = try unixRequest(socket, "POST", "/v1/events", body: body)
                    inFlight.store(false, ordering: .releasing)
                    if answer.status == 200, answer.json?.objectValue?["accepted"] == .integer(10) {
                        acknowledged.withLock { $0 += ids }
                    } else {
                        refused.add(10, ordering: .relaxed)
                    }
                    sleepMilliseconds(5)
                } catch {
                    inFlight.store(false, ordering: .releasing)
                    if !"\(error)".hasPrefix("connect ") { unanswered.add(10, ordering: .relaxed) }
                    sleepMilliseconds(20)
                }
            }
            finished.store(true, ordering: .releasing)
        }
    }

    /// Counts of the agent run, printed at the end.
    struct AgentCounts {
        var kills: [Phase: Int] = [:]
        var landed: [Phase: Int] = [:]
        var landedDetail: [String: Int] = [:]
        var integrityFailures = 0
        var lostEvents = Set<String>()
        var modelFailures = 0
        var restartFailures = 0
        var recommendationFailures = 0
        var tornRounds = 0
        /// Temporary download files found after kills (before the restart removes them).
        var leftoverDownloads = 0
        var maxLeftoverDownloads = 0
    }

    static func status(_ socket: String) -> [String: JSONValue]? {
        guard let answer = try? unixRequest(socket, "GET", "/v1/status"), answer.status == 200 else { return nil }
        return answer.json?.objectValue
    }

    static func servedVersion(_ status: [String: JSONValue]?) -> UInt64? {
        switch status?["model_version"] {
        case .integer(let v)?: return UInt64(clamping: v)
        case .string(let s)?: return UInt64(s)
        default: return nil
        }
    }

    static func trainingInProgress(_ status: [String: JSONValue]?) -> Bool {
        status?["training"]?.objectValue?["in_progress"] == .bool(true)
    }

    /// The model version in the log's last "runtime ready" line (nil for "none").
    static func loadedVersion(_ log: String) -> UInt64? {
        guard let line = log.split(separator: "\n").last(where: { $0.contains("runtime ready") }),
              let field = line.split(separator: " ").first(where: { $0.hasPrefix("model_version=") }) else { return nil }
        return UInt64(field.dropFirst("model_version=".count).prefix { $0.isNumber })
    }

    static func lastRoundMilliseconds(_ status: [String: JSONValue]?) -> Int64? {
        if case .integer(let ms)? = status?["last_round"]?.objectValue?["duration_ms"] { return ms }
        return nil
    }

    @Test("kill -9 the agent while events stream, a round trains, a model is swapped and an upload is in flight")
    func agentSurvivesKills() async throws {
        let kills = environmentInteger("HEARTH_CRASH_AGENT_KILLS", 104)
        var rng = Xoshiro256(seed: UInt64(environmentInteger("HEARTH_CRASH_SEED", 8)))
        let directory = try makeTemporaryDirectory()
        defer { if environmentInteger("HEARTH_CRASH_KEEP", 0) == 0 { HearthProcess.removeTree(directory) } else { print("kept \(directory)") } }
        let agentBinary = try agentBinaryPath()
        let aggregatorBinary = String(agentBinary.dropLast("hearth-agent".count)) + "hearth-aggregator"
        let started = monotonicMilliseconds()

        // One aggregator for the whole run: every accepted update publishes a version (K = 1),
        // so the agent keeps fetching new models.
        let items = 600
        let catalog = "item_id,category,brand\n" + (0 ..< items).map { "item-\($0),cat-\($0 % 7),brand-\($0 % 5)" }.joined(separator: "\n") + "\n"
        try writeFile(directory + "/items.csv", Array(catalog.utf8))
        var setup = LoopbackAggregator.Setup(
            binary: aggregatorBinary, directory: directory,
            sections: """
                [plan]
                sampling_rate = 1.0
                clip_norm = 1.0
                noise_multiplier = 1.0
                mode = "local"
                bit_width = 16
                max_staleness = 1000
                [fedbuff]
                buffer_size = 1
                minimum_updates = 1
                round_deadline_seconds = 3600
                [privacy]
                epsilon_budget = 1000000000.0
                """,
            initArguments: ["--catalog", directory + "/items.csv", "--dim", "16"], fleetName: "kiosk", fleetSize: 1)
        setup.serverSettings = ["updates_per_device_per_hour = 3600"]
        let aggregator = try await LoopbackAggregator.start(setup)
        defer { aggregator.stop() }
        guard let aggregatorPort = portOf(aggregator.baseURL) else { throw TestFailure("no port in \(aggregator.baseURL)") }
        let aggregatorDatabase = directory + "/aggregator/aggregator.db"
        guard let publicKey = decodeBase64Text(aggregator.modelPublicKey),
              let verifier = try? Curve25519.Signing.PublicKey(rawRepresentation: publicKey) else {
            throw TestFailure("bad model public key \(aggregator.modelPublicKey)")
        }

        let proxy = try DelayingProxy(upstreamPort: aggregatorPort, uploadHoldBefore: 120, uploadHoldAfter: 120, modelHold: 150)
        defer { proxy.stop() }

        let state = directory + "/agent"
        mkdir(state, 0o700)
        let socket = directory + "/agent.sock"
        let agentLog = directory + "/agent.log"
        try writeFile(directory + "/credential", Array((aggregator.credentials[0] + "\n").utf8))
        try writeFile(directory + "/agent.toml", Array("""
            [agent]
            state_directory = "\(state)"
            socket = "\(socket)"
            [model]
            history = 10
            [training]
            window = "00:00-24:00"
            max_load = 64
            require_mains_power = false
            min_new_events = 20
            epochs = 2
            [privacy]
            mode = "local"
            unit = "device"
            clip_norm = 1.0
            noise_multiplier = 1.0
            bit_width = 16
            epsilon_budget = 1000000000.0
            [upload]
            aggregator_url = "\(proxy.baseURL)"
            credential_file = "\(directory)/credential"
            model_public_key = "\(aggregator.modelPublicKey)"
            connect_timeout_ms = 2000
            timeout_ms = 10000
            """.utf8))

        func startAgent() async throws -> ChildProcess {
            let child = try ChildProcess(executable: agentBinary,
                                         arguments: ["--config", directory + "/agent.toml", "--log-level", "debug",
                                                     "--training-check-interval", "0.1", "--upload-interval", "0.1",
                                                     "--model-refresh-interval", "0.1"],
                                         logPath: agentLog)
            let deadline = monotonicMilliseconds() + 30_000
            while monotonicMilliseconds() < deadline {
                if Self.status(socket) != nil { return child }
                if let status = await child.wait(timeoutMilliseconds: 1) {
                    throw TestFailure("the agent exited at start (status \(status)):\n" + String(readText(agentLog).suffix(3000)))
                }
                try await Task.sleep(for: .milliseconds(20))
            }
            throw TestFailure("the agent did not answer on its socket within 30 s:\n" + String(readText(agentLog).suffix(3000)))
        }

        var agent = try await startAgent()
        // The first model, before the kills start.
        let firstDeadline = monotonicMilliseconds() + 60_000
        while Self.servedVersion(Self.status(socket)) == nil && monotonicMilliseconds() < firstDeadline {
            try await Task.sleep(for: .milliseconds(50))
        }
        let streamer = EventStreamer(socket: socket, items: items)
        try Loopback.startThread { streamer.run() }

        var counts = AgentCounts()
        var lastRoundMilliseconds: Int64 = 100
        let phases = Phase.allCases
        func random(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &rng) }

        for kill in 0 ..< kills {
            let phase = phases[kill % phases.count]
            var landed = false
            var detail = ""
            switch phase {
            case .streaming:
                try await Task.sleep(for: .milliseconds(random(20 ... 300)))
                let deadline = monotonicMilliseconds() + 500
                while !streamer.inFlight.load(ordering: .acquiring) && monotonicMilliseconds() < deadline {
                    try await Task.sleep(for: .milliseconds(1))
                }
                landed = streamer.inFlight.load(ordering: .acquiring)
                detail = landed ? "streaming: POST /v1/events in flight" : "streaming: between requests"
            case .training:
                let delay = random(0 ... 1000)
                let deadline = monotonicMilliseconds() + 20_000
                var status = Self.status(socket)
                while !Self.trainingInProgress(status) && monotonicMilliseconds() < deadline {
                    if let ms = Self.lastRoundMilliseconds(status) { lastRoundMilliseconds = ms }
                    try await Task.sleep(for: .milliseconds(5))
                    status = Self.status(socket)
                }
                // Somewhere in the first 80% of a typical round.
                try await Task.sleep(for: .milliseconds(Int(Int64(delay) * max(lastRoundMilliseconds, 10) * 8 / 10_000)))
                landed = Self.trainingInProgress(Self.status(socket))
                detail = landed ? "training: round in progress" : "training: no round in progress"
            case .swap:
                let before = Self.servedVersion(Self.status(socket)) ?? 0
                let deadline = monotonicMilliseconds() + 20_000
                var transfer: UInt64?
                while monotonicMilliseconds() < deadline {
                    if let newest = proxy.snapshot.modelTransfers.max(), newest > before {
                        transfer = newest
                        break
                    }
                    try await Task.sleep(for: .milliseconds(2))
                }
                try await Task.sleep(for: .milliseconds(random(0 ... proxy.modelHold + 60)))
                let served = Self.servedVersion(Self.status(socket)) ?? 0
                if let transfer, served < transfer {
                    landed = true
                    detail = proxy.snapshot.modelTransfers.contains(transfer)
                        ? "swap: model download in progress" : "swap: downloaded, not yet served (verify/install)"
                } else {
                    detail = transfer == nil ? "swap: no new model offered" : "swap: new model already served"
                }
            case .upload:
                let deadline = monotonicMilliseconds() + 20_000
                while monotonicMilliseconds() < deadline {
                    let s = proxy.snapshot
                    if s.uploadsBeforeServer + s.uploadsAnsweredNotRelayed > 0 { break }
                    try await Task.sleep(for: .milliseconds(2))
                }
                try await Task.sleep(for: .milliseconds(random(0 ... proxy.uploadHoldBefore + proxy.uploadHoldAfter + 30)))
                let s = proxy.snapshot
                if s.uploadsBeforeServer > 0 {
                    landed = true
                    detail = "upload: sent, not yet at the aggregator"
                } else if s.uploadsAnsweredNotRelayed > 0 {
                    landed = true
                    detail = "upload: stored by the aggregator, answer not yet at the agent"
                } else {
                    detail = "upload: none in flight"
                }
            }
            agent.signal(SIGKILL)
            guard await agent.wait(timeoutMilliseconds: 10_000) != nil else {
                let diagnosis = agent.diagnosis()
                let start = monotonicMilliseconds()
                let later = await agent.wait(timeoutMilliseconds: 120_000)
                throw TestFailure("the agent was not reaped within \(TestBounds.milliseconds(10_000)) ms of SIGKILL (\(detail)): \(diagnosis); "
                                  + (later == nil ? "still not reaped 120 s later" : "reaped \(monotonicMilliseconds() - start) ms later"))
            }
            counts.kills[phase, default: 0] += 1
            if landed { counts.landed[phase, default: 0] += 1 }
            counts.landedDetail[detail, default: 0] += 1

            // The state as the kill left it, read-only.
            let acknowledged = streamer.acknowledged.withLock { $0 }
            let store = try StoreInspection(path: state + "/hearth.db")
            let integrity = try store.integrity()
            if integrity != ["ok"] {
                counts.integrityFailures += 1
                Issue.record("kill \(kill) (\(detail)): integrity_check: \(integrity.prefix(5))")
            }
            let logged = Set(try store.pairs("SELECT session, ts_ms FROM events"))
            // A round records its ledger entry + upload and the last trained event sequence with
            // the same time: an upload newer than the sequence means the round was half recorded
            // (its events would be trained into a second update after the restart).
            let torn = try store.count("""
                SELECT count(*) FROM outbox WHERE created_ms >
                    coalesce((SELECT updated_ms FROM local_state WHERE key = 'last_trained_sequence'), -1)
                """)
            if torn > 0 {
                counts.tornRounds += 1
                Issue.record("kill \(kill) (\(detail)): a round's upload is queued but its events are not marked trained")
            }
            store.close()
            for id in acknowledged where !logged.contains(id) { counts.lostEvents.insert(id) }

            // The model on disk: a complete file, byte for byte a published, signed version.
            var diskVersion: UInt64?
            if let bytes = readBytes(state + "/models/current.hrth") {
                do {
                    let model = try ModelFile.decode(bytes, keepingMaster: false)
                    diskVersion = model.version
                    let published = try StoreInspection(path: aggregatorDatabase)
                    let row = try published.blobs("SELECT model, signature FROM versions WHERE version = ?", Int64(model.version), columns: 2)
                    published.close()
                    if let row, row[0] == bytes, verifier.isValidSignature(row[1], for: bytes) {
                        // complete and verified
                    } else {
                        counts.modelFailures += 1
                        Issue.record("kill \(kill): current.hrth (version \(model.version)) is not the published, signed file")
                    }
                } catch {
                    counts.modelFailures += 1
                    Issue.record("kill \(kill) (\(detail)): current.hrth does not decode: \(error)")
                }
            } else {
                counts.modelFailures += 1
                Issue.record("kill \(kill) (\(detail)): no current.hrth")
            }
            let leftovers = countFiles(in: state + "/models", prefix: ".model-download-")
            counts.leftoverDownloads += leftovers
            counts.maxLeftoverDownloads = max(counts.maxLeftoverDownloads, leftovers)

            // Restart on the same state: it serves that model and recommends.
            do {
                agent = try await startAgent()
            } catch {
                counts.restartFailures += 1
                Issue.record("kill \(kill) (\(detail)): restart failed: \(error)")
                throw error
            }
            // It loaded the file the kill left (its start line), and serves a published version
            // (the refresh may already have moved it on).
            let loaded = Self.loadedVersion(readText(agentLog))
            if loaded != diskVersion {
                counts.modelFailures += 1
                Issue.record("kill \(kill): the restarted agent loaded \(String(describing: loaded)), the file holds \(String(describing: diskVersion))")
            }
            if let served = Self.servedVersion(Self.status(socket)) {
                let published = try StoreInspection(path: aggregatorDatabase)
                let known = try published.count("SELECT count(*) FROM versions WHERE version = \(served)")
                published.close()
                if known != 1 || served < (diskVersion ?? 0) {
                    counts.modelFailures += 1
                    Issue.record("kill \(kill): the restarted agent serves version \(served), not published or older than its file")
                }
            } else {
                counts.modelFailures += 1
                Issue.record("kill \(kill): the restarted agent serves no model")
            }
            let recommended = try? unixRequest(socket, "GET", "/v1/recommendations?session=b1&k=5")
            if recommended?.status != 200 {
                counts.recommendationFailures += 1
                Issue.record("kill \(kill): recommendations answered \(String(describing: recommended?.status))")
            }
        }

        // Drain: no more events; the agent uploads what its outbox holds.
        streamer.running.store(false, ordering: .releasing)
        while !streamer.finished.load(ordering: .acquiring) { try await Task.sleep(for: .milliseconds(10)) }
        let drainDeadline = monotonicMilliseconds() + 60_000
        var quietSince = monotonicMilliseconds()
        while monotonicMilliseconds() < drainDeadline {
            let status = Self.status(socket)
            let pending = status?["outbox_pending"]
            let busy = Self.trainingInProgress(status) || pending != .integer(0)
                || proxy.snapshot.uploadsBeforeServer + proxy.snapshot.uploadsAnsweredNotRelayed > 0
            if busy { quietSince = monotonicMilliseconds() }
            if monotonicMilliseconds() - quietSince > 1500 { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        agent.signal(SIGTERM)
        #expect(await agent.wait(timeoutMilliseconds: 15_000).flatMap(exitCode) == 0, "the agent did not stop cleanly")

        let finalLeftovers = countFiles(in: state + "/models", prefix: ".model-download-")
        let store = try StoreInspection(path: state + "/hearth.db")
        let finalIntegrity = try store.integrity()
        let ledgerEntries = try store.count("SELECT count(*) FROM privacy_ledger")
        let outboxLeft = try store.count("SELECT count(*) FROM outbox")
        let logged = Set(try store.pairs("SELECT session, ts_ms FROM events"))
        store.close()
        let acknowledged = streamer.acknowledged.withLock { $0 }
        for id in acknowledged where !logged.contains(id) { counts.lostEvents.insert(id) }
        let published = try StoreInspection(path: aggregatorDatabase)
        let stored = try published.count("SELECT count(*) FROM updates WHERE device = 'kiosk-0'")
        let storedKeys = Set(try published.hexKeys("SELECT idempotency_key FROM updates WHERE device = 'kiosk-0'"))
        published.close()
        let answers = proxy.snapshot.answers
        let doubleAccepted = answers.values.filter { $0.accepted > 1 }.count
        let replays = answers.values.reduce(0) { $0 + $1.replayed }
        let refusedUploads = answers.values.reduce(0) { $0 + $1.other.count }
        let answeredKeys = Set(answers.filter { $0.value.accepted + $0.value.replayed > 0 }.keys.map { $0.lowercased() })
        let lostUploads = max(0, ledgerEntries - outboxLeft - stored)
        let extraUploads = max(0, stored - (ledgerEntries - outboxLeft))

        let phaseText = Phase.allCases.map { "\($0.rawValue) \(counts.kills[$0] ?? 0) (in phase \(counts.landed[$0] ?? 0))" }.joined(separator: ", ")
        let detailText = counts.landedDetail.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: "; ")
        print("""
            crash-consistency agent: kills \(counts.kills.values.reduce(0, +)) [\(phaseText)]; \
            events acknowledged \(acknowledged.count), found \(acknowledged.count - counts.lostEvents.count), lost \(counts.lostEvents.count), \
            sent without answer \(streamer.unanswered.load(ordering: .relaxed)), logged in total \(logged.count); \
            integrity failures \(counts.integrityFailures) (final: \(finalIntegrity.first ?? "?")), half-recorded rounds \(counts.tornRounds); \
            model failures \(counts.modelFailures), restart failures \(counts.restartFailures), recommendation failures \(counts.recommendationFailures); \
            rounds recorded \(ledgerEntries), outbox left \(outboxLeft), updates at the aggregator \(stored), uploads lost \(lostUploads), \
            duplicated \(extraUploads + doubleAccepted) (keys accepted twice \(doubleAccepted)), replays answered as duplicates \(replays), \
            uploads refused \(refusedUploads); \
            unfinished download files found after kills \(counts.leftoverDownloads) (at most \(counts.maxLeftoverDownloads) at once), left at the end \(finalLeftovers); \
            \((monotonicMilliseconds() - started) / 1000) s
            crash-consistency agent kill moments: \(detailText)
            """)

        #expect(counts.kills.values.reduce(0, +) == kills)
        #expect(counts.lostEvents.isEmpty, "acknowledged events lost: \(counts.lostEvents.prefix(10))")
        #expect(acknowledged.count > 0)
        #expect(counts.integrityFailures == 0 && finalIntegrity == ["ok"])
        #expect(counts.tornRounds == 0)
        #expect(counts.modelFailures == 0 && counts.restartFailures == 0 && counts.recommendationFailures == 0)
        #expect(outboxLeft == 0, "the outbox was not drained")
        #expect(lostUploads == 0 && extraUploads == 0 && doubleAccepted == 0)
        #expect(storedKeys == answeredKeys.intersection(storedKeys) && storedKeys.count == stored)
        #expect(refusedUploads == 0, "\(answers.filter { !$0.value.other.isEmpty })")
        #expect(ledgerEntries > 0)
        #expect(finalLeftovers == 0 && counts.maxLeftoverDownloads <= 1, "unfinished downloads are not removed at restart")
        for phase in Phase.allCases {
            #expect((counts.landed[phase] ?? 0) > 0, "no kill landed in phase \(phase.rawValue)")
        }
    }
}

extension CrashConsistencyTests {
    // MARK: - The aggregator

    /// Where the aggregator listens now (it gets a new port at each restart).
    final class CurrentPort: @unchecked Sendable {
        let value: Atomic<Int>
        init(_ port: Int) { value = Atomic(port) }
    }

    /// A device uploading noised updates for the current version, one after another; an upload
    /// without an answer is sent again, same bytes and key, until it gets one.
    final class UploadingDevice: @unchecked Sendable {
        struct Record: Sendable {
            /// Accepted (not replayed) answers per idempotency key.
            var accepted: [String: Int] = [:]
            var replayed = 0
            var unanswered = 0
            var refusals: [String: Int] = [:]
            /// Every upload made, by lower-case key.
            var sent: [String: [UInt8]] = [:]
        }

        let name: String
        let credential: String
        let dimension: Int
        let port: CurrentPort
        let seed: UInt64
        let record = Mutex(Record())
        let inFlight = Atomic<Bool>(false)
        let running = Atomic<Bool>(true)
        let finished = Atomic<Bool>(false)

        init(name: String, credential: String, dimension: Int, port: CurrentPort, seed: UInt64) {
            self.name = name
            self.credential = credential
            self.dimension = dimension
            self.port = port
            self.seed = seed
        }

        func run() {
            var rng = Xoshiro256(seed: seed)
            var upload: (bytes: [UInt8], key: String)?
            let auth = ("Authorization", "Bearer " + credential)
            while true {
                if upload == nil {
                    guard running.load(ordering: .acquiring) else { break }
                    guard let plan = loopbackHTTP(port: port.value.load(ordering: .acquiring), "GET", "/v1/plan", headers: [auth], timeoutSeconds: 5),
                          plan.status == 200,
                          case .integer(let version)? = (try? JSONParser().parse(plan.body))?.objectValue?["model_version"] else {
                        sleepMilliseconds(20)
                        continue
                    }
                    upload = try? crashTestEnvelope(version: UInt64(version), dimension: dimension, rng: &rng)
                    if let made = upload { record.withLock { $0.sent[made.key.lowercased()] = made.bytes } }
                }
                guard let current = upload else { continue }
                inFlight.store(true, ordering: .releasing)
                let answer = loopbackHTTP(port: port.value.load(ordering: .acquiring), "POST", "/v1/updates",
                                          headers: [auth, ("Content-Type", "application/vnd.hearth.update"), ("Idempotency-Key", current.key)],
                                          body: current.bytes, timeoutSeconds: 10)
                inFlight.store(false, ordering: .releasing)
                guard let answer else {
                    record.withLock { $0.unanswered += 1 }
                    sleepMilliseconds(20)
                    continue
                }
                let reason = answer.header("x-hearth-reason") ?? ""
                switch answer.status {
                case 200:
                    record.withLock {
                        if answer.header("idempotent-replayed") == "true" {
                            $0.replayed += 1
                            $0.accepted[current.key, default: 0] += 0
                        } else {
                            $0.accepted[current.key, default: 0] += 1
                        }
                    }
                    upload = nil
                case 429, 503:
                    sleepMilliseconds(50)
                default:
                    // already_contributed: wait for the next version; anything else is counted.
                    if reason != "already_contributed" { record.withLock { $0.refusals[reason + " \(answer.status)", default: 0] += 1 } }
                    upload = nil
                    sleepMilliseconds(30)
                }
            }
            finished.store(true, ordering: .releasing)
        }
    }

    @Test("kill -9 the aggregator while devices upload: no acknowledged update lost, the buffer resumes")
    func aggregatorSurvivesKills() async throws {
        let kills = environmentInteger("HEARTH_CRASH_AGGREGATOR_KILLS", 24)
        var rng = Xoshiro256(seed: UInt64(environmentInteger("HEARTH_CRASH_SEED", 8)) &+ 1)
        let directory = try makeTemporaryDirectory()
        defer { if environmentInteger("HEARTH_CRASH_KEEP", 0) == 0 { HearthProcess.removeTree(directory) } else { print("kept \(directory)") } }
        let agentBinary = try agentBinaryPath()
        let aggregatorBinary = String(agentBinary.dropLast("hearth-agent".count)) + "hearth-aggregator"
        let started = monotonicMilliseconds()
        let items = 40
        let devices = 4
        let catalog = "item_id,category,brand\n" + (0 ..< items).map { "item-\($0),cat-\($0 % 5),brand-\($0 % 3)" }.joined(separator: "\n") + "\n"
        try writeFile(directory + "/items.csv", Array(catalog.utf8))
        var setup = LoopbackAggregator.Setup(
            binary: aggregatorBinary, directory: directory,
            sections: """
                [plan]
                sampling_rate = 1.0
                clip_norm = 1.0
                noise_multiplier = 1.0
                mode = "local"
                bit_width = 16
                max_staleness = 1000
                [fedbuff]
                buffer_size = 3
                minimum_updates = 3
                round_deadline_seconds = 3600
                [privacy]
                epsilon_budget = 1000000000.0
                """,
            initArguments: ["--catalog", directory + "/items.csv", "--dim", "8"], fleetName: "dev", fleetSize: devices)
        setup.serverSettings = ["updates_per_device_per_hour = 3600"]
        let aggregator = try await LoopbackAggregator.start(setup)
        guard let firstPort = portOf(aggregator.baseURL) else { throw TestFailure("no port in \(aggregator.baseURL)") }
        let database = directory + "/aggregator/aggregator.db"
        let log = directory + "/aggregator.log"
        let port = CurrentPort(firstPort)
        let clients = (0 ..< devices).map {
            UploadingDevice(name: "dev-\($0)", credential: aggregator.credentials[$0], dimension: items * 8 + items, port: port,
                            seed: rng.next())
        }
        for client in clients { try Loopback.startThread { client.run() } }

        var current: ChildProcess?
        func killCurrent() async throws {
            if let child = current {
                child.signal(SIGKILL)
                guard await child.wait(timeoutMilliseconds: 10_000) != nil else { throw TestFailure("the aggregator did not die on SIGKILL") }
            } else {
                kill(aggregator.process.pid, SIGKILL)
                _ = await aggregator.process.wait()
            }
        }
        func restart() async throws -> Int {
            unlink(directory + "/port")
            let child = try ChildProcess(executable: aggregatorBinary,
                                         arguments: ["serve", "--config", aggregator.configurationPath, "--port-file", directory + "/port",
                                                     "--tick-interval", "0.2"],
                                         logPath: log)
            current = child
            let deadline = monotonicMilliseconds() + 30_000
            while monotonicMilliseconds() < deadline {
                if let line = readText(directory + "/port").split(separator: "\n").first, let value = Int(line) { return value }
                if let status = await child.wait(timeoutMilliseconds: 1) {
                    throw TestFailure("the aggregator exited at restart (status \(status)):\n" + String(readText(log).suffix(3000)))
                }
                try await Task.sleep(for: .milliseconds(20))
            }
            throw TestFailure("the aggregator did not listen within 30 s after a restart")
        }
        func acknowledgedKeys() -> Set<String> {
            var keys = Set<String>()
            for client in clients { keys.formUnion(client.record.withLock { $0.accepted.keys.map { $0.lowercased() } }) }
            return keys
        }

        var killsDuringUpload = 0
        var integrityFailures = 0
        var lost = Set<String>()
        var resumeMismatches = 0
        var countMismatches = 0
        var pendingAtRestart: [Int] = []
        for kill in 0 ..< kills {
            try await Task.sleep(for: .milliseconds(Int.random(in: 100 ... 600, using: &rng)))
            if clients.contains(where: { $0.inFlight.load(ordering: .acquiring) }) { killsDuringUpload += 1 }
            try await killCurrent()
            let acknowledged = acknowledgedKeys()

            let store = try StoreInspection(path: database)
            let integrity = try store.integrity()
            if integrity != ["ok"] {
                integrityFailures += 1
                Issue.record("aggregator kill \(kill): integrity_check: \(integrity.prefix(5))")
            }
            let storedKeys = Set(try store.hexKeys("SELECT idempotency_key FROM updates"))
            lost.formUnion(acknowledged.subtracting(storedKeys))
            let pending = try store.count("SELECT count(*) FROM updates WHERE published_in IS NULL")
            let folded = try store.count("SELECT coalesce(sum(updates), 0) FROM versions WHERE origin = 'fedbuff'")
            let published = try store.count("SELECT count(*) FROM updates WHERE published_in IS NOT NULL")
            store.close()
            if folded != published {
                countMismatches += 1
                Issue.record("aggregator kill \(kill): versions count \(folded) folded updates, \(published) rows are marked published")
            }

            // Restart; before the devices learn the new port, the rebuilt buffer is compared with the store.
            let newPort = try await restart()
            let plan = loopbackHTTP(port: newPort, "GET", "/v1/plan", headers: [("Authorization", "Bearer " + aggregator.credentials[0])])
            let buffered = plan.flatMap { try? JSONParser().parse($0.body) }?.objectValue?["buffered"]
            pendingAtRestart.append(pending)
            if buffered != .integer(Int64(pending)) {
                resumeMismatches += 1
                Issue.record("aggregator kill \(kill): \(pending) accepted, unpublished updates stored; the restarted aggregator buffers \(String(describing: buffered))")
            }
            port.value.store(newPort, ordering: .releasing)
        }

        // The devices finish (each retries an unanswered upload until it gets an answer).
        for client in clients { client.running.store(false, ordering: .releasing) }
        let finishDeadline = monotonicMilliseconds() + 60_000
        while clients.contains(where: { !$0.finished.load(ordering: .acquiring) }) && monotonicMilliseconds() < finishDeadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(clients.allSatisfy { $0.finished.load(ordering: .acquiring) }, "a device never got an answer")
        let finalPort = port.value.load(ordering: .acquiring)
        let finalPlan = loopbackHTTP(port: finalPort, "GET", "/v1/plan", headers: [("Authorization", "Bearer " + aggregator.credentials[0])])
        let finalBuffered = finalPlan.flatMap { try? JSONParser().parse($0.body) }?.objectValue?["buffered"]
        if let child = current {
            child.signal(SIGTERM)
            let stopped = await child.wait(timeoutMilliseconds: 15_000)
            #expect(stopped.flatMap(exitCode) == 0, "the aggregator did not stop cleanly")
        }

        let acknowledged = acknowledgedKeys()
        let store = try StoreInspection(path: database)
        let finalIntegrity = try store.integrity()
        let storedKeys = Set(try store.hexKeys("SELECT idempotency_key FROM updates"))
        let rows = try store.count("SELECT count(*) FROM updates")
        let pending = try store.count("SELECT count(*) FROM updates WHERE published_in IS NULL")
        let folded = try store.count("SELECT coalesce(sum(updates), 0) FROM versions WHERE origin = 'fedbuff'")
        let versions = try store.count("SELECT count(*) FROM versions")
        // Every published version is the fold of exactly the updates marked for it, recomputed
        // from the bytes the devices sent (buffers rebuilt at restarts included).
        var sent: [String: [UInt8]] = [:]
        for client in clients { sent.merge(client.record.withLock { $0.sent }, uniquingKeysWith: { first, _ in first }) }
        let configurationText = readText(aggregator.configurationPath)
        var recomputed = 0
        var foldMismatches = 0
        for line in try store.pairs("SELECT origin, version FROM versions WHERE origin = 'fedbuff' ORDER BY version") {
            guard let version = Int64(line.split(separator: "|").last ?? "") else { continue }
            guard let row = try store.blobs("SELECT model FROM versions WHERE version = ?", version, columns: 1),
                  let parentRow = try store.blobs("""
                      SELECT model, optimizer, version FROM versions WHERE version = (SELECT parent FROM versions WHERE version = ?)
                      """, version, columns: 2) else {
                foldMismatches += 1
                continue
            }
            let parentVersion = try store.count("SELECT parent FROM versions WHERE version = \(version)")
            let keys = try store.hexKeys("SELECT idempotency_key FROM updates WHERE published_in = \(version) ORDER BY rowid")
            let updates = keys.compactMap { sent[$0] }
            let reference = try referencePublication(configurationText: configurationText, parentModel: parentRow[0],
                                                     parentOptimizer: parentRow[1].isEmpty ? nil : parentRow[1],
                                                     parentVersion: UInt64(parentVersion), version: UInt64(version), updates: updates)
            if recomputed == 0 && updates.count > 1 {
                // The comparison can fail: one update fewer publishes different bytes.
                let partial = try referencePublication(configurationText: configurationText, parentModel: parentRow[0],
                                                       parentOptimizer: parentRow[1].isEmpty ? nil : parentRow[1],
                                                       parentVersion: UInt64(parentVersion), version: UInt64(version),
                                                       updates: Array(updates.dropLast()))
                #expect(partial != row[0])
            }
            recomputed += 1
            if updates.count != keys.count || reference != row[0] {
                foldMismatches += 1
                Issue.record("version \(version): the published model is not the fold of its \(keys.count) updates")
            }
        }
        store.close()
        lost.formUnion(acknowledged.subtracting(storedKeys))
        let records = clients.map { $0.record.withLock { $0 } }
        let acceptedTwice = records.reduce(0) { $0 + $1.accepted.values.filter { $0 > 1 }.count }
        let accepted = records.reduce(0) { $0 + $1.accepted.values.reduce(0, +) }
        let replayed = records.reduce(0) { $0 + $1.replayed }
        let unanswered = records.reduce(0) { $0 + $1.unanswered }
        var refusals: [String: Int] = [:]
        for record in records { refusals.merge(record.refusals, uniquingKeysWith: +) }
        let unacknowledgedStored = storedKeys.subtracting(acknowledged).count

        print("""
            crash-consistency aggregator: kills \(kills) (\(killsDuringUpload) with an upload in flight); \
            updates acknowledged \(acknowledged.count) (accepted answers \(accepted), replay answers \(replayed), sent without answer \(unanswered)), \
            stored \(rows), lost \(lost.count), stored but never acknowledged \(unacknowledgedStored), accepted twice \(acceptedTwice); \
            versions \(versions), folded into versions \(folded) (versions recomputed from their updates \(recomputed), different \(foldMismatches)), buffered \(pending) (restarted aggregator: \(String(describing: finalBuffered))); \
            buffer at restarts: max \(pendingAtRestart.max() ?? 0), non-empty \(pendingAtRestart.filter { $0 > 0 }.count) of \(kills), mismatches \(resumeMismatches); \
            integrity failures \(integrityFailures) (final: \(finalIntegrity.first ?? "?")); refusals \(refusals); \
            \((monotonicMilliseconds() - started) / 1000) s
            """)

        #expect(lost.isEmpty, "acknowledged updates lost: \(lost.prefix(5))")
        #expect(integrityFailures == 0 && finalIntegrity == ["ok"])
        #expect(resumeMismatches == 0 && countMismatches == 0)
        #expect(acceptedTwice == 0)
        #expect(unacknowledgedStored == 0 && rows == acknowledged.count)
        #expect(folded + pending == rows)
        #expect(foldMismatches == 0 && recomputed == versions - 1)
        #expect(finalBuffered == .integer(Int64(pending)))
        #expect(refusals.isEmpty, "\(refusals)")
        #expect(acknowledged.count > kills)
    }
}

/// The file's bytes, or nil when it cannot be opened.
func readBytes(_ path: String) -> [UInt8]? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
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

/// How many entries of `directory` start with `prefix`.
func countFiles(in directory: String, prefix: String) -> Int {
    guard let dir = opendir(directory) else { return 0 }
    defer { closedir(dir) }
    var count = 0
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        if name.hasPrefix(prefix) { count += 1 }
    }
    return count
}

/// Standard base64 decoding (nil when malformed).
func decodeBase64Text(_ text: String) -> [UInt8]? {
    let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
    var values = [UInt8](repeating: 255, count: 256)
    for (i, c) in alphabet.enumerated() { values[Int(c)] = UInt8(i) }
    var out: [UInt8] = []
    var acc: UInt32 = 0
    var bits = 0
    for c in text.utf8 where c != UInt8(ascii: "=") {
        let v = values[Int(c)]
        guard v != 255 else { return nil }
        acc = acc << 6 | UInt32(v)
        bits += 6
        if bits >= 8 {
            bits -= 8
            out.append(UInt8(truncatingIfNeeded: acc >> UInt32(bits)))
        }
    }
    return out
}
