#if canImport(Glibc)
import Glibc
#endif
import HearthCore
import HearthLocalAPI
import HearthPrivacy
import HearthTestSupport
import Crypto
import Testing

/// The agent as a real process: Unix socket API, SQLite store, training, a noised upload over
/// libcurl to a fake aggregator, crash durability, erasure and a clean SIGTERM shutdown.
///
/// Needs the `hearth-agent` binary built next to the test bundle (`swift build --build-tests`,
/// which `scripts/test.sh` runs before `swift test`; the test target also depends on it).
@Suite("Agent end to end", .serialized)
struct AgentEndToEndTests {
    static let items = 40
    static let dimension = 8

    struct Setup {
        var directory: String
        var socket: String
        var config: String
        var log: String
    }

    func prepare(aggregator: FakeAggregator, publicKey: String? = nil) throws -> Setup {
        let directory = try makeTemporaryDirectory()
        let state = directory + "/state"
        mkdir(state, 0o700)
        mkdir(state + "/models", 0o700)
        let model = try Fixtures.randomModel(items: Self.items, dimension: Self.dimension, seed: 7, version: 3)
        try writeFile(state + "/models/current.hrth", ModelFile.encode(model))
        try writeFile(directory + "/credential", Array("device-token-1\n".utf8))
        let socket = directory + "/a.sock"
        let config = """
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
        [upload]
        aggregator_url = "\(aggregator.baseURL)"
        credential_file = "\(directory)/credential"
        connect_timeout_ms = 2000
        timeout_ms = 5000
        \(publicKey.map { "model_public_key = \"\($0)\"" } ?? "")
        """
        try writeFile(directory + "/agent.toml", Array(config.utf8))
        return Setup(directory: directory, socket: socket, config: directory + "/agent.toml", log: directory + "/agent.log")
    }

    func start(_ setup: Setup) throws -> ChildProcess {
        try ChildProcess(executable: try agentBinaryPath(),
                         arguments: ["--config", setup.config, "--log-level", "debug",
                                     "--training-check-interval", "0.3", "--upload-interval", "0.3",
                                     "--model-refresh-interval", "0.3"],
                         logPath: setup.log)
    }

    /// Waits until the socket answers `GET /v1/status`.
    func waitForSocket(_ setup: Setup, child: ChildProcess) async throws {
        let deadline = monotonicMilliseconds() + 60_000
        while monotonicMilliseconds() < deadline {
            if (try? unixRequest(setup.socket, "GET", "/v1/status"))?.status == 200 { return }
            if let status = await child.wait(timeoutMilliseconds: 1) {
                throw TestFailure("agent exited early (status \(status)):\n" + readText(setup.log))
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TestFailure("agent socket never answered:\n" + readText(setup.log))
    }

    func status(_ setup: Setup) throws -> [String: JSONValue] {
        let response = try unixRequest(setup.socket, "GET", "/v1/status")
        guard response.status == 200, let object = response.json?.objectValue else {
            throw TestFailure("status answered \(response.status)")
        }
        return object
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

    func events(session: String, _ specs: [(String, String)]) -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let timestamp = Int64(now.tv_sec) * 1000 - 60_000
        let list = specs.enumerated().map { index, spec in
            #"{"item": "\#(spec.0)", "kind": "\#(spec.1)", "session": "\#(session)", "timestamp_ms": \#(timestamp + Int64(index) * 1000)}"#
        }
        return #"{"events": ["# + list.joined(separator: ",") + "]}"
    }

    @Test("ingest, recommend, train, upload a noised update, survive kill -9, erase, SIGTERM")
    func endToEnd() async throws {
        let aggregator = try FakeAggregator()
        defer { aggregator.stop() }
        let setup = try prepare(aggregator: aggregator)
        defer { removeTree(setup.directory) }

        var child = try start(setup)
        try await waitForSocket(setup, child: child)

        // Ingest: answered after the batch is durable.
        let batch = events(session: "s-1", [("item-1", "view"), ("item-2", "click"), ("item-3", "purchase"),
                                             ("item-4", "view"), ("item-5", "cart"), ("item-6", "view"),
                                             ("item-7", "click"), ("item-8", "view")])
        let ingest = try unixRequest(setup.socket, "POST", "/v1/events", body: batch)
        #expect(ingest.status == 200, "ingest: \(ingest.status) \(String(describing: ingest.json))")

        // Recommendations: k results, never the purchased item nor an excluded one.
        let recommend = try unixRequest(setup.socket, "GET", "/v1/recommendations?session=s-1&k=5&exclude=item-9,item-10")
        #expect(recommend.status == 200)
        let items = recommend.json?.objectValue?["items"]?.arrayValue?.compactMap { $0.objectValue?["item"]?.stringValue } ?? []
        #expect(items.count == 5)
        #expect(!items.contains("item-3") && !items.contains("item-9") && !items.contains("item-10"))

        // Rank: known candidates come back, best first.
        let rank = try unixRequest(setup.socket, "POST", "/v1/rank", body: #"{"session": "s-1", "candidates": ["item-11", "item-12", "item-13"]}"#)
        #expect(rank.status == 200)

        // A training round runs and its update reaches the aggregator.
        let deadline = monotonicMilliseconds() + 60_000
        while aggregator.requests.first(where: { $0.method == "POST" }) == nil && monotonicMilliseconds() < deadline {
            try await Task.sleep(for: .milliseconds(100))
        }
        let upload = try #require(aggregator.requests.first { $0.method == "POST" }, Comment(rawValue: "no upload arrived:\n" + readText(setup.log)))
        #expect(upload.path == "/v1/updates")
        #expect(upload.headers.contains { $0.0 == "authorization" && $0.1 == "Bearer device-token-1" })
        let envelope = try UpdateEnvelope.decode(upload.body)
        #expect(envelope.dimension == Self.items * Self.dimension + Self.items)
        #expect(envelope.mode == UpdateMode.local)
        #expect(envelope.unit == PrivacyUnit.device)
        #expect(envelope.noiseMultiplier == 1.5)
        #expect(envelope.clipNorm == 1.0)
        #expect(envelope.bitWidth == 16)
        #expect(envelope.modelVersion == 3)
        let limit = Int64(1) << 15
        #expect(envelope.values.allSatisfy { $0 > -limit && $0 < limit })
        // Local noise: the update is not all zeros and not sparse-looking.
        #expect(envelope.values.filter { $0 != 0 }.count > envelope.dimension / 2)
        #expect(upload.headers.contains { $0.0 == "idempotency-key" && $0.1 == envelope.idempotencyKey.hex })

        // Status after delivery: ε spent, outbox empty, a last upload.
        var state = try status(setup)
        let statusDeadline = monotonicMilliseconds() + 30_000
        while integer(state["outbox_pending"]) != 0 && monotonicMilliseconds() < statusDeadline {
            try await Task.sleep(for: .milliseconds(100))
            state = try status(setup)
        }
        #expect(integer(state["outbox_pending"]) == 0)
        #expect(integer(state["last_upload"]) != nil)
        let privacy = state["privacy"]?.objectValue ?? [:]
        #expect((double(privacy["epsilon_spent"]) ?? 0) > 0)
        #expect(double(privacy["epsilon_budget"]) == 50)
        #expect(state["model_version"]?.stringValue == "3")
        #expect(state["kernel"]?.stringValue?.isEmpty == false)
        let ledger = try unixRequest(setup.socket, "GET", "/v1/privacy")
        #expect(ledger.json?.objectValue?["entries"]?.arrayValue?.count == 1)

        // kill -9 right after an acknowledged POST: the events survive.
        let more = events(session: "s-2", [("item-20", "view"), ("item-21", "cart"), ("item-22", "purchase")])
        #expect(try unixRequest(setup.socket, "POST", "/v1/events", body: more).status == 200)
        child.signal(SIGKILL)
        #expect(await child.wait(timeoutMilliseconds: 5_000) != nil)
        child = try start(setup)
        try await waitForSocket(setup, child: child)
        state = try status(setup)
        #expect(integer(state["events_total"]) == 11)
        #expect((double(state["privacy"]?.objectValue?["epsilon_spent"]) ?? 0) > 0, "the ledger is rebuilt at start")

        // Erasure.
        let erase = try unixRequest(setup.socket, "DELETE", "/v1/data")
        #expect(erase.status == 200)
        state = try status(setup)
        #expect(integer(state["events_total"]) == 0)

        // SIGTERM: graceful shutdown, exit 0, socket removed.
        child.signal(SIGTERM)
        let exit = await child.wait(timeoutMilliseconds: 30_000)
        #expect(exit.flatMap(exitCode) == 0, Comment(rawValue: "exit status \(String(describing: exit)):\n" + readText(setup.log)))
        #expect(access(setup.socket, F_OK) != 0)
        let log = readText(setup.log)
        #expect(log.contains("<info> hearth.agent"))
    }

    @Test("a signed model is swapped in; a badly signed one is rejected and never served")
    func modelSwap() async throws {
        let aggregator = try FakeAggregator()
        defer { aggregator.stop() }
        let signingKey = Curve25519.Signing.PrivateKey()
        let setup = try prepare(aggregator: aggregator, publicKey: base64(Array(signingKey.publicKey.rawRepresentation)))
        defer { removeTree(setup.directory) }

        let newer = ModelFile.encode(try Fixtures.randomModel(items: Self.items, dimension: Self.dimension, seed: 9, version: 4))
        aggregator.model.withLock { $0 = (newer, base64(Array(try! signingKey.signature(for: newer)))) }
        let child = try start(setup)
        try await waitForSocket(setup, child: child)

        func servedVersion() throws -> String? { try status(setup)["model_version"]?.stringValue }
        var deadline = monotonicMilliseconds() + 30_000
        while try servedVersion() != "4" && monotonicMilliseconds() < deadline {
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(try servedVersion() == "4")
        let recommend = try unixRequest(setup.socket, "GET", "/v1/recommendations?session=s-9&k=3")
        #expect(recommend.status == 200)

        // A model signed by another key: rejected, reported, never served.
        let forged = ModelFile.encode(try Fixtures.randomModel(items: Self.items, dimension: Self.dimension, seed: 10, version: 5))
        let otherKey = Curve25519.Signing.PrivateKey()
        aggregator.model.withLock { $0 = (forged, base64(Array(try! otherKey.signature(for: forged)))) }
        deadline = monotonicMilliseconds() + 30_000
        while !readText(setup.log).contains("signature does not verify") && monotonicMilliseconds() < deadline {
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(readText(setup.log).contains("signature does not verify"))
        #expect(try servedVersion() == "4")

        child.signal(SIGTERM)
        #expect(await child.wait(timeoutMilliseconds: 30_000).flatMap(exitCode) == 0)
    }

    @Test("--check-config: a bad setting is named and exits 2")
    func checkConfig() async throws {
        let directory = try makeTemporaryDirectory()
        defer { removeTree(directory) }
        try writeFile(directory + "/bad.toml", Array("[privacy]\nbit_width = 3\n".utf8))
        let child = try ChildProcess(executable: try agentBinaryPath(),
                                     arguments: ["--config", directory + "/bad.toml", "--check-config"],
                                     logPath: directory + "/log")
        let status = await child.wait(timeoutMilliseconds: 30_000)
        #expect(status.flatMap(exitCode) == 2)
        #expect(readText(directory + "/log").contains("privacy.bit_width"))
    }
}
