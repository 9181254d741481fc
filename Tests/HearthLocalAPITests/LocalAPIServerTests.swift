#if canImport(Glibc)
import Glibc
#endif
import HearthCore
@testable import HearthLocalAPI
import HearthTestSupport
import Logging
import ServiceLifecycle
import ServiceLifecycleTestKit
import Testing

@Suite("Local API server on a real Unix socket", .serialized, .timeLimit(.minutes(1)))
struct LocalAPIServerTests {
    // MARK: Routes

    @Test func statusReportsTheAgentsState() async throws {
        try await withServer { path, _, _ in
            let response = try await request(path, "GET", "/v1/status")
            #expect(response.status == 200)
            #expect(response.header("Content-Type") == "application/json")
            let object = response.object
            #expect(object["model_version"] == "7")
            #expect(object["kernel"] == "avx2")
            #expect(object["events_total"] == 42)
            #expect(object["outbox_pending"] == 1)
            #expect(object["last_upload"] == .null)
            let privacy = object["privacy"]?.objectValue ?? [:]
            #expect(privacy["epsilon_spent"] == 0.5)
            #expect(privacy["epsilon_budget"] == 8)
            #expect(privacy["delta"] != nil)
            #expect(object["retention"] != nil)
        }
    }

    @Test func eventsBatchReachesTheBackendInOneCall() async throws {
        try await withServer { path, backend, _ in
            let body = batch([event(), event(item: "sku-2", kind: "purchase", session: "s-9", quantity: "2", timestamp: "1700000000001")])
            let response = try await request(path, "POST", "/v1/events", json: body)
            #expect(response.status == 200)
            #expect(response.object["accepted"] == 2)
            let ingested = backend.calls.withLock { $0.ingested }
            try #require(ingested.count == 1)
            #expect(ingested[0].count == 2)
            #expect(ingested[0][1].item == "sku-2")
            #expect(ingested[0][1].kind == .purchase)
            #expect(ingested[0][1].session == "s-9")
            #expect(ingested[0][1].quantity == 2)
            #expect(ingested[0][1].timestampMilliseconds == 1_700_000_000_001)
            #expect(ingested[0][0].quantity == nil)
        }
    }

    @Test(arguments: [
        (batch([event(), event(), event(), event(kind: "like")]), "events[3].kind"),
        (batch([event(), event(quantity: "0")]), "events[1].quantity"),
        (batch([event(quantity: "1.5")]), "events[0].quantity"),
        (batch([event(item: "")]), "events[0].item"),
        (batch([event(session: String(repeating: "s", count: 129))]), "events[0].session"),
        (batch([event(timestamp: "-5")]), "events[0].timestamp_ms"),
        (batch([event(), #"{"item": "a", "kind": "view", "session": "s"}"#]), "events[1].timestamp_ms"),
        (batch([#"{"item": 5, "kind": "view", "session": "s", "timestamp_ms": 1}"#]), "events[0].item"),
        (batch([event(), "[]"]), "events[1]"),
        (#"{"events": [{"item": "a", "kind": "view", "session": "s", "timestamp_ms": 1, "colour": "red"}]}"#, "events[0].colour"),
        (#"{"events": []}"#, "events"),
        (#"{"evnts": []}"#, "evnts"),
        (#"{}"#, "events"),
    ])
    func badEventIsRejectedNamingTheFieldAndNothingIsStored(body: String, field: String) async throws {
        try await withServer { path, backend, _ in
            let response = try await request(path, "POST", "/v1/events", json: body)
            #expect(response.status == 400)
            #expect(response.errorField == field)
            #expect(response.object["error"]?.stringValue?.isEmpty == false)
            #expect(backend.calls.withLock { $0.ingestStarted } == 0)
        }
    }

    @Test func recommendationsPassSessionKAndExclusions() async throws {
        try await withServer { path, backend, _ in
            let response = try await request(path, "GET", "/v1/recommendations?session=s%2D1&k=5&exclude=a,b")
            #expect(response.status == 200)
            #expect(response.object["items"]?.arrayValue?.count == 3)
            #expect(response.object["items"]?.arrayValue?.first?.objectValue?["item"] == "item-0")
            let calls = backend.calls.withLock { $0.recommendations }
            try #require(calls.count == 1)
            #expect(calls[0].session == "s-1")
            #expect(calls[0].k == 5)
            #expect(calls[0].exclude == ["a", "b"])

            let defaults = try await request(path, "GET", "/v1/recommendations?session=s")
            #expect(defaults.status == 200)
            #expect(backend.calls.withLock { $0.recommendations.last?.k } == 10)
        }
    }

    @Test(arguments: [
        ("/v1/recommendations?session=s&k=abc", "k"),
        ("/v1/recommendations?session=s&k=0", "k"),
        ("/v1/recommendations?session=s&k=-3", "k"),
        ("/v1/recommendations?session=s&k=1001", "k"),
        ("/v1/recommendations?session=s&k=99999999999999999999999", "k"),
        ("/v1/recommendations?k=3", "session"),
        ("/v1/recommendations?session=", "session"),
        ("/v1/recommendations?session=s&session=t", "session"),
        ("/v1/recommendations?session=s&colour=red", "colour"),
    ])
    func badQueryIs400WithTheParameter(target: String, field: String) async throws {
        try await withServer { path, backend, _ in
            let response = try await request(path, "GET", target)
            #expect(response.status == 400)
            #expect(response.errorField == field)
            #expect(backend.calls.withLock { $0.recommendations.count } == 0)
        }
    }

    @Test func rankReordersCandidates() async throws {
        try await withServer { path, backend, _ in
            let response = try await request(path, "POST", "/v1/rank", json: #"{"session": "s-1", "candidates": ["a", "b", "c"]}"#)
            #expect(response.status == 200)
            let items = response.object["items"]?.arrayValue?.compactMap { $0.objectValue?["item"]?.stringValue }
            #expect(items == ["c", "b", "a"])
            #expect(backend.calls.withLock { $0.ranks.first?.candidates } == ["a", "b", "c"])

            let bad = try await request(path, "POST", "/v1/rank", json: #"{"session": "s-1", "candidates": ["a", 7]}"#)
            #expect(bad.status == 400)
            #expect(bad.errorField == "candidates[1]")
        }
    }

    @Test func privacyProfileAndErase() async throws {
        try await withServer { path, backend, _ in
            let privacy = try await request(path, "GET", "/v1/privacy")
            #expect(privacy.status == 200)
            #expect(privacy.object["epsilon_spent"] == 0.5)
            #expect(privacy.object["entries"]?.arrayValue?.count == 1)

            let profile = try await request(path, "GET", "/v1/profile")
            #expect(profile.status == 200)
            #expect(profile.object["top_categories"]?.arrayValue?.first?.objectValue?["name"] == "shoes")
            #expect(profile.object["top_brands"]?.arrayValue?.count == 1)

            let erase = try await request(path, "DELETE", "/v1/data")
            #expect(erase.status == 200)
            #expect(erase.object["erased"] == true)
            #expect(backend.calls.withLock { $0.erased } == 1)
        }
    }

    @Test func unknownRouteIs404AndWrongMethodIs405() async throws {
        try await withServer { path, backend, _ in
            #expect(try await request(path, "GET", "/v1/nope").status == 404)
            #expect(try await request(path, "GET", "/").status == 404)
            let wrong = try await request(path, "GET", "/v1/data")
            #expect(wrong.status == 405)
            #expect(wrong.header("Allow") == "DELETE")
            #expect(try await request(path, "DELETE", "/v1/status").status == 405)
            #expect(backend.calls.withLock { $0.erased } == 0)
        }
    }

    @Test func backendErrorsKeepTheirStatus() async throws {
        try await withServer(backend: FakeBackend(failWith: .insufficientStorage("disk full"))) { path, _, _ in
            let response = try await request(path, "POST", "/v1/events", json: batch([event()]))
            #expect(response.status == 507)
            #expect(response.object["error"] == "disk full")
        }
    }

    // MARK: Hostile input

    @Test func oversizedBodyIs413() async throws {
        var limits = LocalAPILimits()
        limits.maxBodyBytes = 64 * 1024
        try await withServer(limits: limits) { path, backend, _ in
            // Announced by Content-Length: refused at the head.
            let big = [UInt8](repeating: UInt8(ascii: " "), count: 200 * 1024)
            let announced = try await request(path, "POST", "/v1/events", body: big)
            #expect(announced.status == 413)
            // Streamed with chunked encoding: refused once the limit is crossed.
            let chunked = try await offload {
                let client = try RawClient(path: path)
                client.send("POST /v1/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
                let chunk = String(repeating: " ", count: 16 * 1024)
                for _ in 0 ..< 8 { client.send("4000\r\n" + chunk + "\r\n") }
                return try client.readResponse()
            }
            #expect(chunked.status == 413)
            #expect(backend.calls.withLock { $0.ingestStarted } == 0)
            // Still serving.
            #expect(try await request(path, "GET", "/v1/status").status == 200)
        }
    }

    @Test func tooManyEventsIs413() async throws {
        var limits = LocalAPILimits()
        limits.maxEventsPerBatch = 10
        try await withServer(limits: limits) { path, backend, _ in
            let response = try await request(path, "POST", "/v1/events", json: batch(Array(repeating: event(), count: 11)))
            #expect(response.status == 413)
            #expect(response.errorField == "events")
            #expect(backend.calls.withLock { $0.ingestStarted } == 0)
        }
    }

    @Test func deepNestingIs400NotACrash() async throws {
        try await withServer { path, _, _ in
            let depth = 200_000
            let body = #"{"events": "# + String(repeating: "[", count: depth) + String(repeating: "]", count: depth) + "}"
            let response = try await request(path, "POST", "/v1/events", json: body)
            #expect(response.status == 400)
            #expect(response.object["error"]?.stringValue?.contains("nesting") == true)
            let objects = String(repeating: #"{"a":"#, count: 5_000) + "1" + String(repeating: "}", count: 5_000)
            #expect(try await request(path, "POST", "/v1/rank", json: objects).status == 400)
            #expect(try await request(path, "GET", "/v1/status").status == 200)
        }
    }

    @Test func invalidUTF8Is400() async throws {
        try await withServer { path, backend, _ in
            var body = Array(batch([event(item: "sku-X")]).utf8)
            let x = try #require(body.firstIndex(of: UInt8(ascii: "X")))
            body[x] = 0xFF
            let response = try await request(path, "POST", "/v1/events", body: body)
            #expect(response.status == 400)
            #expect(response.object["error"]?.stringValue?.contains("UTF-8") == true)
            let overlong = try await request(path, "POST", "/v1/events", body: Array(#"{"events": ""#.utf8) + [0xC0, 0xAF] + Array(#""}"#.utf8))
            #expect(overlong.status == 400)
            let query = try await request(path, "GET", "/v1/recommendations?session=%FF%FE")
            #expect(query.status == 400)
            #expect(backend.calls.withLock { $0.ingestStarted + $0.recommendations.count } == 0)
        }
    }

    @Test func oversizedHeadIsRefused() async throws {
        var limits = LocalAPILimits()
        limits.maxHeaderBytes = 4096
        try await withServer(limits: limits) { path, _, _ in
            let response = try await request(path, "GET", "/v1/status", extraHeaders: "X-Big: \(String(repeating: "a", count: 8192))\r\n")
            #expect(response.status == 431 || response.status == 400)
            #expect(try await request(path, "GET", "/v1/status").status == 200)
        }
    }

    @Test func keepAliveServesSeveralRequestsOnOneConnection() async throws {
        try await withServer { path, _, _ in
            let statuses = try await offload {
                let client = try RawClient(path: path)
                var statuses: [Int] = []
                for _ in 0 ..< 3 {
                    client.send("GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n")
                    statuses.append(try client.readResponse().status)
                }
                // Two pipelined requests in one write.
                client.send("GET /v1/privacy HTTP/1.1\r\nHost: x\r\n\r\nGET /v1/profile HTTP/1.1\r\nHost: x\r\n\r\n")
                statuses.append(try client.readResponse().status)
                statuses.append(try client.readResponse().status)
                return statuses
            }
            #expect(statuses == [200, 200, 200, 200, 200])
        }
    }

    @Test func slowClientDoesNotBlockOthersAndIsDropped() async throws {
        var limits = LocalAPILimits()
        limits.requestTimeoutMilliseconds = 1_500
        try await withServer(limits: limits) { path, _, _ in
            let slow = try await offload { try RawClient(path: path) }
            // Half a request, then a byte every 200 ms: each read would reset a plain read timeout.
            slow.send("POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n{\"ev")
            let trickle = Task {
                try await offload {
                    let start = monotonicMilliseconds()
                    while monotonicMilliseconds() - start < 4_000 {
                        guard slow.send(" ") else { return monotonicMilliseconds() - start }
                        usleep(200_000)
                    }
                    return Int64(-1)
                }
            }
            let start = monotonicMilliseconds()
            let other = try await request(path, "GET", "/v1/status")
            let elapsed = monotonicMilliseconds() - start
            #expect(other.status == 200)
            let closed = try await offload { slow.waitForClose() }
            #expect(closed)
            let sendFailedAfter = try await trickle.value
            // Ordering, not wall time (CI machines are loaded): the other client was answered
            // while the slow one was still connected, and the slow one was cut off by the
            // 1.5 s request deadline before its 4 s of trickling ended.
            #expect(sendFailedAfter > 0, "server should close the trickling client at ~1.5 s")
            #expect(elapsed < sendFailedAfter, "answered after \(elapsed) ms; slow client dropped after \(sendFailedAfter) ms")
        }
    }

    @Test func idleKeepAliveConnectionIsClosed() async throws {
        var limits = LocalAPILimits()
        limits.idleTimeoutMilliseconds = 500
        try await withServer(limits: limits) { path, _, _ in
            let closed = try await offload {
                let client = try RawClient(path: path, timeoutSeconds: 3)
                return client.waitForClose()
            }
            #expect(closed)
        }
    }

    @Test func connectionsBeyondTheLimitGet503() async throws {
        var limits = LocalAPILimits()
        limits.maxConnections = 2
        try await withServer(limits: limits) { path, _, server in
            let first = try await offload { try RawClient(path: path) }
            let second = try await offload { try RawClient(path: path) }
            try await waitUntil { server.openConnections == 2 }
            let third = try await offload {
                let client = try RawClient(path: path)
                return try client.readResponse()
            }
            #expect(third.status == 503)
            // The held ones still work; once one closes, a new client gets in.
            let status = try await offload {
                first.send("GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                return try first.readResponse().status
            }
            #expect(status == 200)
            try await waitUntil { server.openConnections == 1 }
            #expect(try await request(path, "GET", "/v1/status").status == 200)
            _ = second
        }
    }

    // MARK: Socket

    @Test func socketFileHasMode0660AndIsRemovedOnShutdown() async throws {
        var socketPath = ""
        try await withServer { path, _, _ in
            socketPath = path
            var info = stat()
            #expect(stat(path, &info) == 0)
            #expect((info.st_mode & S_IFMT) == S_IFSOCK)
            #expect(info.st_mode & 0o777 == 0o660)
        }
        var info = stat()
        #expect(stat(socketPath, &info) != 0)
    }

    @Test func staleSocketFileIsReplacedButARegularFileIsNot() async throws {
        try await withTemporaryDirectoryAsync { directory in
            let path = directory + "/api.sock"
            close(open(path, O_CREAT | O_WRONLY, 0o600))
            let server = LocalAPIServer(
                configuration: LocalAPIConfiguration(listener: .unixSocket(path: path)), backend: FakeBackend(), logger: quietLogger
            )
            await #expect(throws: (any Error).self) { try await server.run() }
            var info = stat()
            #expect(stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG, "a non-socket file is left alone")
        }

        try await withTemporaryDirectoryAsync { directory in
            let path = directory + "/api.sock"
            // A socket file left behind by a crashed agent: bound, never unlinked.
            close(try makeListeningSocket(path: path))
            let server = LocalAPIServer(
                configuration: LocalAPIConfiguration(listener: .unixSocket(path: path, mode: 0o600, group: .id(getgid()))),
                backend: FakeBackend(), logger: quietLogger
            )
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await server.run() }
                try await server.waitUntilListening()
                var info = stat()
                #expect(stat(path, &info) == 0)
                #expect(info.st_mode & 0o777 == 0o600)
                #expect(try await request(path, "GET", "/v1/status").status == 200)
                group.cancelAll()
            }
        }
    }

    @Test func adoptsAnInheritedListeningSocket() async throws {
        try await withTemporaryDirectoryAsync { directory in
            let path = directory + "/act.sock"
            let fd = try makeListeningSocket(path: path)
            // The systemd helper finds it (tested at this fd; systemd always uses 3).
            let environment = ["LISTEN_PID": "\(getpid())", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "other:api"]
            let found = try LocalAPIServer.listeningSocket(fromEnvironment: environment, name: "api", firstDescriptor: fd - 1)
            #expect(found == fd)
            let server = LocalAPIServer(
                configuration: LocalAPIConfiguration(listener: .inheritedSocket(descriptor: fd)),
                backend: FakeBackend(), logger: quietLogger
            )
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await server.run() }
                try await server.waitUntilListening()
                #expect(try await request(path, "GET", "/v1/status").status == 200)
                group.cancelAll()
            }
        }
    }

    @Test func socketActivationEnvironment() throws {
        #expect(try LocalAPIServer.listeningSocket(fromEnvironment: [:]) == nil)
        // Meant for another process.
        #expect(try LocalAPIServer.listeningSocket(fromEnvironment: ["LISTEN_PID": "1", "LISTEN_FDS": "1"], processID: 4242) == nil)
        #expect(try LocalAPIServer.listeningSocket(fromEnvironment: ["LISTEN_PID": "4242", "LISTEN_FDS": "0"], processID: 4242) == nil)
        #expect(throws: LocalAPIServerError.self) {
            try LocalAPIServer.listeningSocket(fromEnvironment: ["LISTEN_PID": "x", "LISTEN_FDS": "1"])
        }
        // An fd that is not a listening socket is refused.
        let fd = open("/dev/null", O_RDONLY)
        defer { close(fd) }
        #expect(throws: LocalAPIServerError.self) {
            try LocalAPIServer.listeningSocket(fromEnvironment: ["LISTEN_PID": "\(getpid())", "LISTEN_FDS": "1"], firstDescriptor: fd)
        }
    }

    @Test func bindFailureIsReported() async throws {
        let server = LocalAPIServer(
            configuration: LocalAPIConfiguration(listener: .unixSocket(path: "/nonexistent-dir/x.sock")),
            backend: FakeBackend(), logger: quietLogger
        )
        await #expect(throws: (any Error).self) { try await server.run() }
        await #expect(throws: (any Error).self) { try await server.waitUntilListening() }
    }

    // MARK: Shutdown

    @Test func gracefulShutdownFinishesInFlightRequests() async throws {
        try await withTemporaryDirectoryAsync { directory in
            let path = directory + "/api.sock"
            let backend = FakeBackend(ingestDelayMilliseconds: 700)
            let server = LocalAPIServer(
                configuration: LocalAPIConfiguration(listener: .unixSocket(path: path)), backend: backend, logger: quietLogger
            )
            try await testGracefulShutdown { trigger in
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await server.run() }
                    try await server.waitUntilListening()
                    let idle = try await offload { try RawClient(path: path) }
                    let inFlight = Task { try await request(path, "POST", "/v1/events", json: batch([event()])) }
                    try await waitUntil { backend.calls.withLock { $0.ingestStarted } == 1 }
                    trigger.triggerGracefulShutdown()
                    // The idle keep-alive connection is closed at once; the in-flight one is answered.
                    #expect(try await offload { idle.waitForClose() })
                    let response = try await inFlight.value
                    #expect(response.status == 200)
                    #expect(backend.calls.withLock { $0.ingested.count } == 1)
                    try await group.waitForAll()  // run() returned
                }
            }
            var info = stat()
            #expect(stat(path, &info) != 0, "socket file removed")
            #expect(throws: ClientError.self) { try RawClient(path: path) }
        }
    }
}

func monotonicMilliseconds() -> Int64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
}

func waitUntil(timeoutMilliseconds: Int64 = 3_000, _ condition: () -> Bool) async throws {
    let start = monotonicMilliseconds()
    while !condition() {
        guard monotonicMilliseconds() - start < timeoutMilliseconds else { throw ClientError(description: "condition not met in time") }
        try await Task.sleep(for: .milliseconds(10))
    }
}

/// A bound, listening Unix socket, as systemd would pass it.
func makeListeningSocket(path: String) throws -> CInt {
    let fd = socket(AF_UNIX, CInt(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw ClientError(description: "socket failed") }
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        for (i, byte) in bytes.enumerated() where i < raw.count - 1 { raw[i] = byte }
    }
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
    guard bound == 0, listen(fd, 16) == 0 else {
        close(fd)
        throw ClientError(description: "bind/listen failed")
    }
    return fd
}
