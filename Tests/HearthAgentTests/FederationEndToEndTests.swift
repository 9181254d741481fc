#if canImport(Glibc)
import Glibc
#endif
import HearthCore
import HearthLocalAPI
import HearthPrivacy
import HearthTestSupport
import HearthCurl
import HearthUploader
import Testing

/// The whole federation as real processes on loopback: `hearth-aggregator` serving HTTPS with
/// a test certificate, three `hearth-agent`s uploading through libcurl, a published version
/// fetched, verified and served by every agent, then replayed and hostile uploads.
@Suite("Federation end to end", .serialized)
struct FederationEndToEndTests {
    static let items = 40
    static let dimension = 8
    static let agents = 3

    /// Runs `binary arguments` to completion with stdout into a file; returns (exit code, stdout).
    func run(_ binary: String, _ arguments: [String], in directory: String) async throws -> (Int32?, String) {
        let out = directory + "/out-\(monotonicMilliseconds()).txt"
        let command = ([binary] + arguments).map { "'" + $0 + "'" }.joined(separator: " ") + " > '" + out + "'"
        let child = try ChildProcess(executable: "/bin/sh", arguments: ["-c", command], logPath: directory + "/commands.log")
        guard let status = await child.wait(timeoutMilliseconds: 30_000) else { throw TestFailure("\(arguments) timed out") }
        return (exitCode(status), readText(out))
    }

    func fixture(_ name: String) -> String {
        let file = "\(#filePath)"
        let directory = file[..<(file.lastIndex(of: "/") ?? file.endIndex)]
        return directory + "/Fixtures/" + name
    }

    func waitForFile(_ path: String, child: ChildProcess, log: String) async throws -> String {
        let deadline = monotonicMilliseconds() + 60_000
        while monotonicMilliseconds() < deadline {
            let text = readText(path).split(separator: "\n").first.map(String.init) ?? ""
            if !text.isEmpty { return text }
            if let status = await child.wait(timeoutMilliseconds: 1) {
                throw TestFailure("process exited early (status \(status)):\n" + readText(log))
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TestFailure("\(path) never appeared:\n" + readText(log))
    }

    func agentStatus(_ socket: String) -> [String: JSONValue]? {
        guard let response = try? unixRequest(socket, "GET", "/v1/status"), response.status == 200 else { return nil }
        return response.json?.objectValue
    }

    func modelVersion(_ socket: String) -> Int64? {
        // The status reports the version as a string (u64 does not fit every JSON reader).
        switch agentStatus(socket)?["model_version"] {
        case .integer(let v)?: return v
        case .string(let s)?: return Int64(s)
        default: return nil
        }
    }

    func waitForModel(_ socket: String, version: Int64, log: String, seconds: Int64 = 60) async throws {
        let deadline = monotonicMilliseconds() + seconds * 1000
        while monotonicMilliseconds() < deadline {
            if modelVersion(socket) == version { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw TestFailure("agent never served model version \(version) (status: \(String(describing: agentStatus(socket)))):\n" + readText(log))
    }

    func events(session: String, items: [Int]) -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let start = Int64(now.tv_sec) * 1000 - 60_000
        let kinds = ["view", "click", "cart", "purchase"]
        let list = items.enumerated().map { index, item in
            #"{"item": "item-\#(item)", "kind": "\#(kinds[index % 4])", "session": "\#(session)", "timestamp_ms": \#(start + Int64(index) * 1000)}"#
        }
        return #"{"events": ["# + list.joined(separator: ",") + "]}"
    }

    func envelope(version: UInt64, key: UInt8, dimension: Int, seed: UInt64) throws -> (bytes: [UInt8], key: String) {
        try Fixtures.privatizedEnvelope(version: version, key: key, dimension: dimension, seed: seed,
                                        privacy: PrivacyConfiguration(clipNorm: 1, noiseMultiplier: 1, bitWidth: 16, mode: .local, unit: .device))
    }

    @Test("an aggregator and three agents: upload, publish, fetch, verify, serve; replays once; hostile uploads refused")
    func federation() async throws {
        let directory = try makeTemporaryDirectory()
        defer { removeTree(directory) }
        let agentBinary = try agentBinaryPath()
        let aggregatorBinary = String(agentBinary.dropLast("hearth-agent".count)) + "hearth-aggregator"

        // The catalogue and the aggregator's configuration (HTTPS with the test certificate).
        let catalogCSV = "item_id,category,brand\n" + (0 ..< Self.items).map { "item-\($0),cat-\($0 % 5),brand-\($0 % 3)" }.joined(separator: "\n") + "\n"
        try writeFile(directory + "/items.csv", Array(catalogCSV.utf8))
        let aggregatorConfig = directory + "/aggregator.toml"
        try writeFile(aggregatorConfig, Array("""
            [server]
            host = "127.0.0.1"
            port = 0
            tls_certificate = "\(fixture("localhost-cert.pem"))"
            tls_key = "\(fixture("localhost-key.pem"))"
            state_directory = "\(directory)/aggregator"
            signing_key = "\(directory)/signing.key"
            max_body_bytes = 1024
            [plan]
            sampling_rate = 1.0
            clip_norm = 1.0
            noise_multiplier = 1.0
            mode = "local"
            bit_width = 16
            [fedbuff]
            buffer_size = \(Self.agents)
            minimum_updates = 1
            round_deadline_seconds = 600
            [privacy]
            epsilon_budget = 50.0
            """.utf8))

        // init prints the public key for the agents; devices add prints each credential once.
        let (initCode, initOut) = try await run(aggregatorBinary, ["init", "--config", aggregatorConfig, "--catalog", directory + "/items.csv",
                                                                   "--dim", String(Self.dimension)], in: directory)
        #expect(initCode == 0, "init: \(initOut)\n\(readText(directory + "/commands.log"))")
        guard let keyLine = initOut.split(separator: "\n").first(where: { $0.hasPrefix("model_public_key") }),
              let publicKey = keyLine.split(separator: "\"").dropFirst().first.map(String.init) else {
            throw TestFailure("init printed no public key: \(initOut)")
        }
        var credentials: [String] = []
        for i in 0 ..< Self.agents {
            let (code, out) = try await run(aggregatorBinary, ["devices", "add", "kiosk-\(i)", "--config", aggregatorConfig], in: directory)
            #expect(code == 0)
            let credential = out.split(separator: "\n").first.map(String.init) ?? ""
            #expect(credential.hasPrefix("hrth_") && credential.utf8.count == 69)
            credentials.append(credential)
            try writeFile(directory + "/credential-\(i)", Array((credential + "\n").utf8))
        }
        // A second enrolment under a taken name fails.
        #expect(try await run(aggregatorBinary, ["devices", "add", "kiosk-0", "--config", aggregatorConfig], in: directory).0 == 1)

        let aggregatorLog = directory + "/aggregator.log"
        var aggregator = try ChildProcess(executable: aggregatorBinary,
                                          arguments: ["serve", "--config", aggregatorConfig, "--port-file", directory + "/port",
                                                      "--tick-interval", "0.2"],
                                          logPath: aggregatorLog)
        let port = try await waitForFile(directory + "/port", child: aggregator, log: aggregatorLog)
        let base = "https://127.0.0.1:\(port)"

        // Three agents with no model: they fetch version 1 over HTTPS and verify its signature.
        var agents: [ChildProcess] = []
        var sockets: [String] = []
        for i in 0 ..< Self.agents {
            let state = directory + "/agent-\(i)"
            mkdir(state, 0o700)
            let socket = directory + "/a\(i).sock"
            try writeFile(state + ".toml", Array("""
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
                noise_multiplier = 1.0
                bit_width = 16
                epsilon_budget = 50.0
                [upload]
                aggregator_url = "\(base)"
                ca_file = "\(fixture("localhost-cert.pem"))"
                credential_file = "\(directory)/credential-\(i)"
                model_public_key = "\(publicKey)"
                connect_timeout_ms = 2000
                timeout_ms = 10000
                """.utf8))
            agents.append(try ChildProcess(executable: agentBinary,
                                           arguments: ["--config", state + ".toml", "--log-level", "debug",
                                                       "--training-check-interval", "0.3", "--upload-interval", "0.3",
                                                       "--model-refresh-interval", "0.3"],
                                           logPath: state + ".log"))
            sockets.append(socket)
        }
        for i in 0 ..< Self.agents {
            try await waitForModel(sockets[i], version: 1, log: directory + "/agent-\(i).log")
        }

        // Each agent records its shoppers' events, trains a round and uploads a noised update;
        // the third accepted update fills the buffer (K = 3) and version 2 is published.
        for i in 0 ..< Self.agents {
            let body = events(session: "s-\(i)", items: (0 ..< 10).map { (i * 7 + $0 * 3) % Self.items })
            let answer = try unixRequest(sockets[i], "POST", "/v1/events", body: body)
            #expect(answer.status == 200)
        }
        for i in 0 ..< Self.agents {
            try await waitForModel(sockets[i], version: 2, log: directory + "/agent-\(i).log")
            let recommend = try unixRequest(sockets[i], "GET", "/v1/recommendations?session=s-\(i)&k=5")
            #expect(recommend.status == 200)
        }

        let client = CurlClient(configuration: CurlClient.Configuration(caFile: fixture("localhost-cert.pem"),
                                                                       connectTimeoutMilliseconds: 2000, timeoutMilliseconds: 10_000))
        func get(_ path: String, credential: String? = credentials[0], headers: [HTTPField] = []) async throws -> HTTPResponse {
            let auth = credential.map { [HTTPField("Authorization", "Bearer " + $0)] } ?? []
            return try await client.perform(HTTPRequest(method: .get, url: base + path, headers: auth + headers, maxResponseBytes: 1 << 20))
        }
        func post(_ body: [UInt8], key: String?, credential: String? = credentials[0]) async throws -> HTTPResponse {
            var headers = [HTTPField("Content-Type", "application/vnd.hearth.update")]
            if let key { headers.append(HTTPField("Idempotency-Key", key)) }
            if let credential { headers.append(HTTPField("Authorization", "Bearer " + credential)) }
            return try await client.perform(HTTPRequest(method: .post, url: base + "/v1/updates", headers: headers, body: body))
        }

        // The central ledger: version 2 averaged three device updates and spent some epsilon.
        let privacy = try await get("/v1/privacy")
        #expect(privacy.status == 200)
        let ledger = try JSONParser().parse(privacy.body).objectValue ?? [:]
        #expect(ledger["current_version"] == .integer(2))
        #expect(ledger["data_versions"] == .integer(1))
        if case .array(let versions)? = ledger["versions"], let last = versions.last?.objectValue {
            #expect(last["updates"] == .integer(Int64(Self.agents)))
        } else {
            Issue.record("no versions in \(ledger)")
        }
        if case .double(let spent)? = ledger["epsilon_spent"] { #expect(spent > 0) } else { Issue.record("no epsilon_spent") }

        // Conditional model fetch.
        let model = try await get("/v1/model")
        #expect(model.status == 200)
        #expect(model.header("ETag") == "\"v2\"")
        #expect(model.header("X-Hearth-Signature") != nil)
        #expect(try await get("/v1/model", headers: [HTTPField("If-None-Match", "\"v2\"")]).status == 304)

        // A replayed upload is answered as a duplicate and counted once.
        let dimension = Self.items * Self.dimension + Self.items
        let extra = try envelope(version: 2, key: 0xA1, dimension: dimension, seed: 11)
        let firstTry = try await post(extra.bytes, key: extra.key)
        #expect(firstTry.status == 200, "\(String(decoding: firstTry.body, as: UTF8.self))")
        let replay = try await post(extra.bytes, key: extra.key)
        #expect(replay.status == 200)
        #expect(replay.header("Idempotent-Replayed") == "true")

        // Hostile or broken uploads: each refused with its reason.
        func expectRejected(_ response: HTTPResponse, _ status: Int, _ reason: String) {
            #expect(response.status == status, "\(reason): got \(response.status) \(String(decoding: response.body, as: UTF8.self))")
            #expect(response.header("X-Hearth-Reason") == reason)
        }
        let fresh = try envelope(version: 2, key: 0xB2, dimension: dimension, seed: 12)
        expectRejected(try await post(fresh.bytes, key: fresh.key, credential: nil), 401, "unauthenticated")
        expectRejected(try await post(fresh.bytes, key: fresh.key, credential: "hrth_" + String(repeating: "0", count: 64)), 403, "unknown_device")
        expectRejected(try await post([UInt8](repeating: 7, count: 4096), key: fresh.key), 413, "body_too_large")
        let wrongShape = try envelope(version: 2, key: 0xB3, dimension: dimension - 8, seed: 13)
        expectRejected(try await post(wrongShape.bytes, key: wrongShape.key), 422, "dimension_mismatch")
        var nan = fresh.bytes
        let nanBits = Double.nan.bitPattern
        for j in 0 ..< 8 { nan[32 + j] = UInt8(truncatingIfNeeded: nanBits >> UInt64(8 * j)) }
        Fixtures.recomputeTrailingChecksum(&nan)
        let nanAnswer = try await post(nan, key: fresh.key)
        #expect(nanAnswer.status == 422 || nanAnswer.status == 400)
        #expect(["non_finite", "malformed_update"].contains(nanAnswer.header("X-Hearth-Reason") ?? ""), "\(String(describing: nanAnswer.header("X-Hearth-Reason")))")
        var forged = fresh.bytes
        forged[90] ^= 0x40   // a changed value without a matching checksum
        expectRejected(try await post(forged, key: fresh.key), 400, "checksum_mismatch")

        // Revocation takes effect immediately (the server reads the store per request).
        #expect(try await run(aggregatorBinary, ["devices", "revoke", "kiosk-2", "--config", aggregatorConfig], in: directory).0 == 0)
        expectRejected(try await post(fresh.bytes, key: fresh.key, credential: credentials[2]), 403, "revoked_device")

        let metrics = String(decoding: try await get("/metrics", credential: nil).body, as: UTF8.self)
        #expect(metrics.contains("hearth_updates_accepted_total \(Self.agents + 1)"), "\(metrics)")
        #expect(metrics.contains("hearth_updates_replayed_total 1"))
        #expect(metrics.contains(#"hearth_updates_rejected_total{reason="body_too_large"} 1"#))
        #expect(metrics.contains(#"hearth_updates_rejected_total{reason="dimension_mismatch"} 1"#))
        #expect(metrics.contains("hearth_model_version 2"))
        // The agents asked for the plan before training (and followed it: q = 1, same clip and noise).
        let planRequests = metrics.split(separator: "\n").first { $0.hasPrefix(#"hearth_request_duration_seconds_count{route="/v1/plan"}"#) }
        #expect((planRequests?.split(separator: " ").last.flatMap { Int($0) } ?? 0) >= Self.agents, "\(String(describing: planRequests))")

        // SIGTERM: a clean stop; the accepted-but-unpublished update is still buffered after a restart.
        aggregator.signal(SIGTERM)
        let stopped = await aggregator.wait(timeoutMilliseconds: 15_000)
        #expect(stopped.flatMap(exitCode) == 0, "\(readText(aggregatorLog))")
        unlink(directory + "/port")
        aggregator = try ChildProcess(executable: aggregatorBinary,
                                      arguments: ["serve", "--config", aggregatorConfig, "--port-file", directory + "/port"],
                                      logPath: aggregatorLog)
        let port2 = try await waitForFile(directory + "/port", child: aggregator, log: aggregatorLog)
        let plan = try await client.perform(HTTPRequest(method: .get, url: "https://127.0.0.1:\(port2)/v1/plan",
                                                        headers: [HTTPField("Authorization", "Bearer " + credentials[0])]))
        let planObject = try JSONParser().parse(plan.body).objectValue ?? [:]
        #expect(planObject["buffered"] == .integer(1))
        #expect(planObject["model_version"] == .integer(2))

        for agent in agents { agent.signal(SIGTERM) }
        for agent in agents { _ = await agent.wait(timeoutMilliseconds: 15_000) }
        aggregator.signal(SIGTERM)
        _ = await aggregator.wait(timeoutMilliseconds: 15_000)
    }
}
