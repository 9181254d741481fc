#if canImport(Glibc)
import Glibc
#endif
import HearthControl
import HearthCore
import HearthLocalAPI
import HearthTestSupport
import Testing

@Suite("hearthctl against a real local API server", .serialized, .timeLimit(.minutes(2)))
struct HearthControlTests {
    // MARK: status

    @Test func statusJSONPassesTheAgentsAnswerThrough() async throws {
        try await withServer { path, backend in
            let output = try await ControlCommands(socketPath: path).status(json: true)
            let value = try JSONParser().parse(output)
            let expected = try JSONParser().parse(try await backend.status().json.serialized())
            #expect(value == expected)
            let object = value.objectValue ?? [:]
            for key in ["model_version", "kernel", "events_total", "outbox_pending", "last_upload", "privacy"] {
                #expect(object[key] != nil, "missing \(key)")
            }
            let privacy = object["privacy"]?.objectValue ?? [:]
            #expect(privacy["epsilon_spent"] == 0.5)
            #expect(privacy["delta"] == 1e-6)
            #expect(privacy["epsilon_budget"] == 8)
        }
    }

    @Test func statusTextSummarisesTheState() async throws {
        try await withServer(backend: FakeBackend(lastUpload: 1_700_000_000_000)) { path, _ in
            let output = try await ControlCommands(socketPath: path).status(json: false)
            let lines = output.split(separator: "\n").map(String.init)
            #expect(lines.contains("model version  7"))
            #expect(lines.contains("kernel         avx2"))
            #expect(lines.contains("events         42"))
            #expect(lines.contains("outbox         1 pending"))
            #expect(lines.contains("last upload    2023-11-14 22:13:20 UTC"))
            #expect(lines.contains("privacy        ε 0.5 spent of 8 at δ 1e-06"))
            #expect(lines.contains { $0.hasPrefix("retention") && $0.hasSuffix(#"{"max_events":100}"#) })
        }
        try await withServer { path, _ in
            let output = try await ControlCommands(socketPath: path).status(json: false)
            #expect(output.contains("last upload    never"))
        }
    }

    // MARK: recommend, rank

    @Test func recommendSendsSessionKAndExclusions() async throws {
        try await withServer { path, backend in
            let commands = ControlCommands(socketPath: path)
            let text = try await commands.recommend(session: "s 1/ü", k: 2, exclude: ["a", "b c?"], json: false)
            #expect(text == "1. item-0  1.5000\n2. item-1  0.5000")
            let calls = backend.calls.withLock { $0.recommendations }
            try #require(calls.count == 1)
            #expect(calls[0].session == "s 1/ü")
            #expect(calls[0].k == 2)
            #expect(calls[0].exclude == ["a", "b c?"])

            let json = try JSONParser().parse(try await commands.recommend(session: "s", k: nil, exclude: [], json: true))
            #expect(json.objectValue?["k"] == 10)
            #expect(json.objectValue?["items"]?.arrayValue?.count == 3)
        }
    }

    @Test func rankPostsTheCandidates() async throws {
        try await withServer { path, backend in
            let commands = ControlCommands(socketPath: path)
            let text = try await commands.rank(session: "s-1", items: ["a", "b", "c"], json: false)
            #expect(text == "1. c  0.0000\n2. b  -1.0000\n3. a  -2.0000")
            let calls = backend.calls.withLock { $0.ranks }
            try #require(calls.count == 1)
            #expect(calls[0].session == "s-1")
            #expect(calls[0].candidates == ["a", "b", "c"])
            let json = try JSONParser().parse(try await commands.rank(session: "s-1", items: ["x"], json: true))
            #expect(json.objectValue?["session"] == "s-1")
        }
    }

    @Test func httpErrorCarriesTheAgentsMessageAndField() async throws {
        try await withServer { path, _ in
            do {
                _ = try await ControlCommands(socketPath: path).recommend(session: "s", k: 0, exclude: [], json: false)
                Issue.record("expected a 400")
            } catch let error as ControlError {
                #expect(error.isHTTPError)
                #expect(error.status == 400)
                #expect(error.field == "k")
                #expect(error.exitCode == 1)
                #expect(error.message.hasPrefix("the agent answered 400: "))
                #expect(error.message.hasSuffix("(field k)"))
            }
        }
    }

    // MARK: events import

    @Test func importSendsBatchesOfAtMost500() async throws {
        try await withServer { path, backend in
            let csv = try EventCSV(text: eventsCSV(rows: 1_200))
            let text = try await ControlCommands(socketPath: path).importEvents(csv, source: "events.csv", json: false)
            #expect(text == "imported 1200 events from events.csv in 3 batches (the agent now holds 1200)")
            let ingested = backend.calls.withLock { $0.ingested }
            #expect(ingested.map(\.count) == [500, 500, 200])
            let first = try #require(ingested.first?.first)
            #expect(first.item == "sku-0")
            #expect(first.kind == .view)
            #expect(first.session == "s-0")
            #expect(first.quantity == nil)
            #expect(first.timestampMilliseconds == 1_700_000_000_000)
            let fourth = ingested[0][3]
            #expect(fourth.kind == .purchase)
            #expect(fourth.quantity == 2)
        }
    }

    @Test func importJSONReportsCounts() async throws {
        try await withServer { path, _ in
            let csv = try EventCSV(text: "timestamp_ms,session,kind,item\r\n5,s,click,\"sku,1\"\r\n\r\n")
            let output = try await ControlCommands(socketPath: path).importEvents(csv, source: "x.csv", json: true)
            #expect(try JSONParser().parse(output) == ["imported": 1, "batches": 1, "events_total": 1])
        }
    }

    @Test func malformedRowStopsTheImportAndItsBatchIsNotSent() async throws {
        try await withServer { path, backend in
            // Data lines 2...501 are batch 1, 502...1001 batch 2: line 702 is in batch 2.
            let csv = try EventCSV(text: eventsCSV(rows: 1_200, badLine: 702))
            do {
                _ = try await ControlCommands(socketPath: path).importEvents(csv, source: "events.csv", json: false)
                Issue.record("expected the import to fail")
            } catch let error as ControlError {
                #expect(error.message.hasPrefix("events.csv: line 702: kind: unknown kind \"like\""))
                #expect(error.message.contains("500 events from earlier batches were imported"))
                #expect(error.exitCode == 1)
            }
            #expect(backend.calls.withLock { $0.ingestStarted } == 1)
            #expect(backend.calls.withLock { $0.ingested.map(\.count) } == [500])
        }
        try await withServer { path, backend in
            let csv = try EventCSV(text: eventsCSV(rows: 10, badLine: 4))
            await #expect { try await ControlCommands(socketPath: path).importEvents(csv, source: "e.csv", json: false) } throws: { error in
                (error as? ControlError)?.message.hasPrefix("e.csv: line 4: ") == true
            }
            #expect(backend.calls.withLock { $0.ingestStarted } == 0)
        }
    }

    @Test func agentRejectionIsReportedByLine() async throws {
        let backend = FakeBackend(failWith: .badRequest("unknown item", field: "events[1].item"))
        try await withServer(backend: backend) { path, _ in
            let csv = try EventCSV(text: eventsCSV(rows: 3))
            do {
                _ = try await ControlCommands(socketPath: path).importEvents(csv, source: "x.csv", json: false)
                Issue.record("expected the import to fail")
            } catch let error as ControlError {
                #expect(error.isHTTPError)
                #expect(error.message == "x.csv: line 3: the agent answered 400: unknown item (field events[1].item); nothing was imported")
            }
        }
    }

    @Test func fileErrorsNameTheFile() async throws {
        try await withTemporaryDirectoryAsync { directory in
            let path = directory + "/bad.csv"
            let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
            try #require(fd >= 0)
            _ = "item,kind\n".withCString { write(fd, $0, 10) }
            close(fd)
            #expect(throws: ControlError.self) { try EventCSV(contentsOf: path) }
            do {
                _ = try EventCSV(contentsOf: path)
            } catch let error as ControlError {
                #expect(error.message.hasPrefix("\(path): line 1: the header lacks the \"session\" column"))
            }
            do {
                _ = try EventCSV(contentsOf: directory + "/missing.csv")
            } catch let error as ControlError {
                #expect(error.message.hasPrefix("cannot open \(directory)/missing.csv: "))
            }
        }
    }

    @Test(arguments: [
        ("item,kind,session\n", "line 1: the header lacks the \"timestamp_ms\" column"),
        ("item,kind,session,timestamp_ms,colour\n", "line 1: unknown column \"colour\""),
        ("", "line 1: the header is missing"),
        ("item,kind,session,timestamp_ms\na,view,s\n", "line 2: 3 fields, the header has 4"),
        ("item,kind,session,timestamp_ms\na,view,s,soon\n", "line 2: timestamp_ms: \"soon\" is not an integer"),
        ("item,kind,session,timestamp_ms\na,view,s,-1\n", "line 2: timestamp_ms: -1 is negative"),
        ("item,kind,session,timestamp_ms\n,view,s,1\n", "line 2: item: must not be empty"),
        ("item,kind,session,timestamp_ms,quantity\na,view,s,1,0\n", "line 2: quantity: 0 is outside"),
        ("item,kind,session,timestamp_ms,quantity\na,view,s,1,lots\n", "line 2: quantity: \"lots\" is not an integer"),
        ("item,kind,session,timestamp_ms\n\"a,view,s,1\n", "line 2: an unterminated quoted field"),
    ])
    func csvErrorsNameTheLine(text: String, message: String) {
        let error = csvError(text)
        #expect(error?.hasPrefix(message) == true, "\(error ?? "no error")")
    }

    // MARK: privacy, profile, forget

    @Test func privacyAndProfile() async throws {
        try await withServer { path, _ in
            let commands = ControlCommands(socketPath: path)
            let privacy = try await commands.privacy(json: false)
            #expect(privacy == "ε spent 0.5 of 8 at δ 1e-06\nledger (1 entry):\n  epsilon 0.5, round 1")
            let privacyJSON = try JSONParser().parse(try await commands.privacy(json: true))
            #expect(privacyJSON.objectValue?["entries"]?.arrayValue?.count == 1)
            let profile = try await commands.profile(json: false)
            #expect(profile == "top categories:\n  shoes  0.7000\ntop brands:\n  acme  0.3000")
            let profileJSON = try JSONParser().parse(try await commands.profile(json: true))
            #expect(profileJSON.objectValue?["top_categories"] != nil)
        }
    }

    @Test func forgetRequiresYes() async throws {
        try await withServer { path, backend in
            let commands = ControlCommands(socketPath: path)
            do {
                _ = try await commands.forget(confirmed: false, json: false)
                Issue.record("expected a confirmation error")
            } catch let error as ControlError {
                #expect(error.isConfirmationRequired)
                #expect(error.message.contains("--yes"))
            }
            #expect(backend.calls.withLock { $0.erased } == 0)
            let text = try await commands.forget(confirmed: true, json: false)
            #expect(text == "erased all local data (42 events)")
            #expect(backend.calls.withLock { $0.erased } == 1)
            let json = try JSONParser().parse(try await commands.forget(confirmed: true, json: true))
            #expect(json == ["erased": true, "events_erased": 42])
        }
    }

    // MARK: agent down

    @Test func agentDownIsACannotReachError() async throws {
        try await withTemporaryDirectoryAsync { directory in
            let path = directory + "/missing.sock"
            do {
                _ = try await ControlCommands(socketPath: path).status(json: true)
                Issue.record("expected an error")
            } catch let error as ControlError {
                #expect(error.isUnreachable)
                #expect(error.exitCode == 3)
                #expect(error.message.hasPrefix("cannot reach the agent at \(path): "))
                #expect(!error.message.contains("\n"))
            }
            // A socket file nobody listens on (an agent that died): connection refused.
            let fd = socket(AF_UNIX, CInt(SOCK_STREAM.rawValue), 0)
            defer { close(fd) }
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            let stale = directory + "/stale.sock"
            withUnsafeMutableBytes(of: &address.sun_path) { raw in
                for (i, byte) in stale.utf8.enumerated() where i < raw.count - 1 { raw[i] = byte }
            }
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            try #require(bound == 0)
            do {
                _ = try await ControlCommands(socketPath: stale).privacy(json: false)
                Issue.record("expected an error")
            } catch let error as ControlError {
                #expect(error.isUnreachable)
                #expect(error.message.hasPrefix("cannot reach the agent at \(stale): "))
            }
        }
    }

    // MARK: pieces

    @Test func socketResolution() {
        #expect(AgentSocket.resolve(option: "/a.sock", environmentValue: "/b.sock") == "/a.sock")
        #expect(AgentSocket.resolve(option: nil, environmentValue: "/b.sock") == "/b.sock")
        #expect(AgentSocket.resolve(option: nil, environmentValue: "") == "/run/hearth/agent.sock")
        #expect(AgentSocket.resolve(option: nil, environmentValue: nil) == "/run/hearth/agent.sock")
    }

    @Test func recommendationTargetIsPercentEncoded() {
        #expect(ControlCommands.recommendationsTarget(session: "s 1&k=2", k: 5, exclude: ["a", "b,c"])
            == "/v1/recommendations?session=s%201%26k%3D2&k=5&exclude=a,b%2Cc")
    }

    // MARK: the real binary

    @Test func builtBinaryPrintsStatusJSON() async throws {
        guard let binary = builtHearthctl() else {
            withKnownIssue("hearthctl is not built next to the test binary") { throw TestFailure(description: "no binary") }
            return
        }
        try await withServer { path, _ in
            let result = try await blockingThreads.runIfActive {
                try runProcess(binary, ["status", "--json"], environment: ["HEARTH_SOCKET=\(path)"])
            }
            #expect(result.status == 0, "\(result.standardError)")
            let value = try JSONParser().parse(result.standardOutput.trimmingSuffixNewline())
            #expect(value.objectValue?["model_version"] == "7")
            #expect(value.objectValue?["privacy"]?.objectValue?["epsilon_budget"] == 8)

            let down = try await blockingThreads.runIfActive {
                try runProcess(binary, ["status", "--socket", path + ".gone"], environment: [])
            }
            #expect(down.status == 3)
            #expect(down.standardError.hasPrefix("hearthctl: cannot reach the agent at \(path).gone: "))
            #expect(down.standardOutput.isEmpty)
        }
    }
}

/// The message of the error parsing `text` as an import CSV, or nil if it parses.
private func csvError(_ text: String) -> String? {
    do throws(ControlError) {
        _ = try EventCSV(text: text).allEvents()
        return nil
    } catch {
        return error.message
    }
}

extension String {
    fileprivate func trimmingSuffixNewline() -> String {
        var s = self
        while s.hasSuffix("\n") { s.removeLast() }
        return s
    }
}
