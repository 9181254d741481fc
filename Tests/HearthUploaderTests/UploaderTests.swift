import HearthCurl
import HearthPrivacy
import Logging
import Synchronization
import Testing
@testable import HearthUploader

let testLogger: Logger = {
    var logger = Logger(label: "hearth.agent.upload")
    logger.logLevel = .critical
    return logger
}()

func fastClient(timeoutMilliseconds: Int = 2_000) -> CurlClient {
    CurlClient(configuration: .init(connectTimeoutMilliseconds: 1_000, timeoutMilliseconds: timeoutMilliseconds))
}

func sampleEnvelope(seed: UInt64 = 1) throws -> (bytes: [UInt8], key: IdempotencyKey) {
    var rng = SeededGenerator(seed: seed)
    let key = IdempotencyKey(using: &rng)
    let values = (0 ..< 100).map { _ in Int64.random(in: -500 ... 500, using: &rng) }
    let envelope = UpdateEnvelope(modelVersion: 3, mode: .local, unit: .device, contributions: 1, noiseMultiplier: 1,
                                  samplingRate: 0.5, clipNorm: 1, bitWidth: 16, scale: 100, values: values,
                                  idempotencyKey: key)
    return (try envelope.encode(), key)
}

/// An in-memory outbox that records what the uploader did to it.
final class MemoryOutbox: UploadOutbox, @unchecked Sendable {
    struct State {
        var entries: [OutboxEntry]
        var delivered: [Int64] = []
        var attempts: [Int64: [UploadOutcome]] = [:]
    }
    let state: Mutex<State>
    init(_ entries: [OutboxEntry]) { state = Mutex(State(entries: entries)) }

    func pending(limit: Int) async throws -> [OutboxEntry] {
        state.withLock { s in Array(s.entries.filter { !s.delivered.contains($0.id) }.prefix(limit)) }
    }
    func recordAttempt(id: Int64, outcome: UploadOutcome) async throws {
        state.withLock { $0.attempts[id, default: []].append(outcome) }
    }
    func markDelivered(id: Int64) async throws {
        state.withLock { $0.delivered.append(id) }
    }
}

@Suite("Update uploader over real libcurl")
struct UpdateUploaderTests {
    @Test("accepted upload carries the idempotency key, bearer credential, media type and the exact body")
    func accepted() async throws {
        let server = try TestHTTPServer { _ in ScriptedResponse(status: 202, body: Array("ok".utf8)) }
        defer { server.stop() }
        let (bytes, key) = try sampleEnvelope()
        let uploader = UpdateUploader(baseURL: server.baseURL + "/", client: fastClient(), logger: testLogger)
        let outcome = await uploader.upload(bytes, idempotencyKey: key, deviceCredential: "dev-secret-1")
        #expect(outcome == .accepted)
        let requests = server.requests
        try #require(requests.count == 1)
        let r = requests[0]
        #expect(r.method == "POST")
        #expect(r.path == "/v1/updates")
        #expect(r.header("Idempotency-Key") == key.hex)
        #expect(r.header("Authorization") == "Bearer dev-secret-1")
        #expect(r.header("Content-Type") == "application/vnd.hearth.update")
        #expect(r.header("Expect") == nil)
        #expect(r.body == bytes)
        #expect(try UpdateEnvelope.decode(r.body).idempotencyKey == key)
    }

    @Test("2xx with Idempotent-Replayed: true is a duplicate (delivered)")
    func duplicate() async throws {
        let server = try TestHTTPServer { _ in ScriptedResponse(status: 200, headers: [HTTPField("Idempotent-Replayed", "true")]) }
        defer { server.stop() }
        let (bytes, key) = try sampleEnvelope()
        let outcome = await UpdateUploader(baseURL: server.baseURL, client: fastClient(), logger: testLogger)
            .upload(bytes, idempotencyKey: key, deviceCredential: "c")
        #expect(outcome == .duplicate)
        #expect(outcome.isDelivered)
    }

    @Test("503 with Retry-After → retryLater with that delay; 429 and 500 also retry")
    func retryLater() async throws {
        let server = try TestHTTPServer { request in
            switch request.header("Authorization") {
            case "Bearer a": return ScriptedResponse(status: 503, headers: [HTTPField("Retry-After", "120")])
            case "Bearer b": return ScriptedResponse(status: 429, headers: [HTTPField("retry-after", " 7 ")])
            default: return ScriptedResponse(status: 500)
            }
        }
        defer { server.stop() }
        let (bytes, key) = try sampleEnvelope()
        let uploader = UpdateUploader(baseURL: server.baseURL, client: fastClient(), logger: testLogger)
        #expect(await uploader.upload(bytes, idempotencyKey: key, deviceCredential: "a") == .retryLater(after: .seconds(120)))
        #expect(await uploader.upload(bytes, idempotencyKey: key, deviceCredential: "b") == .retryLater(after: .seconds(7)))
        #expect(await uploader.upload(bytes, idempotencyKey: key, deviceCredential: "c") == .retryLater(after: nil))
    }

    @Test("400 → rejected with the server's reason; 408 retries; bad credential refused locally")
    func rejected() async throws {
        let server = try TestHTTPServer { request in
            request.header("Authorization") == "Bearer slow"
                ? ScriptedResponse(status: 408)
                : ScriptedResponse(status: 400, body: Array("model version 1 too stale (current 9)\n".utf8))
        }
        defer { server.stop() }
        let (bytes, key) = try sampleEnvelope()
        let uploader = UpdateUploader(baseURL: server.baseURL, client: fastClient(), logger: testLogger)
        #expect(await uploader.upload(bytes, idempotencyKey: key, deviceCredential: "x")
            == .rejected(status: 400, reason: "model version 1 too stale (current 9)"))
        #expect(await uploader.upload(bytes, idempotencyKey: key, deviceCredential: "slow") == .retryLater(after: nil))
        let before = server.requests.count
        #expect(await uploader.upload(bytes, idempotencyKey: key, deviceCredential: "a\r\nX-Evil: 1")
            == .rejected(status: 0, reason: "invalid device credential"))
        #expect(server.requests.count == before)
    }

    @Test("connection refused → retryLater, without waiting for the connect timeout")
    func connectionRefused() async throws {
        let port = try TestHTTPServer.deadPort()
        let (bytes, key) = try sampleEnvelope()
        // A 60 s connect timeout: finishing well before it shows the refusal itself ended the
        // attempt (the error kind below says so exactly); wall time is only a coarse guard, since
        // a loaded CI machine can take seconds to schedule the transfer thread.
        let patient = CurlClient(configuration: .init(connectTimeoutMilliseconds: 60_000, timeoutMilliseconds: 60_000))
        let uploader = UpdateUploader(baseURL: "http://127.0.0.1:\(port)", client: patient, logger: testLogger)
        let start = monotonicMilliseconds()
        #expect(await uploader.upload(bytes, idempotencyKey: key, deviceCredential: "c") == .retryLater(after: nil))
        #expect(monotonicMilliseconds() - start < 30_000)
        do throws(UploaderError) {
            _ = try await fastClient().perform(HTTPRequest(method: .get, url: "http://127.0.0.1:\(port)/"))
            Issue.record("expected a transport error")
        } catch {
            #expect(error == .transport(.couldntConnect))
            #expect(error.curlCode == .couldntConnect)
            #expect(!CurlCode.couldntConnect.message.isEmpty)
        }
    }

    @Test("a server that never answers → timeout (~300 ms) → retryLater")
    func hungServer() async throws {
        let server = try TestHTTPServer(accepting: false)
        defer { server.stop() }
        let (bytes, key) = try sampleEnvelope()
        let uploader = UpdateUploader(baseURL: server.baseURL, client: fastClient(timeoutMilliseconds: 300), logger: testLogger)
        let start = monotonicMilliseconds()
        #expect(await uploader.upload(bytes, idempotencyKey: key, deviceCredential: "c") == .retryLater(after: nil))
        let elapsed = monotonicMilliseconds() - start
        // At least the timeout; the upper bound only guards against hanging (CI may be loaded).
        #expect(elapsed >= 250 && elapsed < 30_000, "took \(elapsed) ms")
        do throws(UploaderError) {
            _ = try await fastClient(timeoutMilliseconds: 300).perform(HTTPRequest(method: .get, url: server.baseURL))
            Issue.record("expected a timeout")
        } catch {
            #expect(error.curlCode == .operationTimedOut)
        }
    }

    @Test("response body cap aborts the transfer")
    func responseCap() async throws {
        let server = try TestHTTPServer { _ in ScriptedResponse(status: 200, body: [UInt8](repeating: 65, count: 100_000)) }
        defer { server.stop() }
        await #expect(throws: UploaderError.responseTooLarge("")) {
            _ = try await fastClient().perform(HTTPRequest(method: .get, url: server.baseURL, maxResponseBytes: 1_000))
        }
        let ok = try await fastClient().perform(HTTPRequest(method: .get, url: server.baseURL, maxResponseBytes: 100_000))
        #expect(ok.body.count == 100_000 && ok.status == 200)
    }

    @Test("drain marks only acknowledged entries delivered and stops at retry-later")
    func drain() async throws {
        // Entry 1 accepted, 2 duplicate, 3 rejected, 4 → 503, 5 never tried.
        let server = try TestHTTPServer { request in
            switch request.body.first {
            case 1: return ScriptedResponse(status: 201)
            case 2: return ScriptedResponse(status: 200, headers: [HTTPField("Idempotent-Replayed", "true")])
            case 3: return ScriptedResponse(status: 422, body: Array("bad shape".utf8))
            case 4: return ScriptedResponse(status: 503, headers: [HTTPField("Retry-After", "30")])
            default: return ScriptedResponse(status: 201)
            }
        }
        defer { server.stop() }
        var rng = SeededGenerator(seed: 4)
        let entries = (1 ... 5).map { OutboxEntry(id: Int64($0), idempotencyKey: IdempotencyKey(using: &rng), body: [UInt8($0), 0, 0]) }
        let outbox = MemoryOutbox(entries)
        let uploader = UpdateUploader(baseURL: server.baseURL, client: fastClient(), logger: testLogger)
        let report = try await uploader.drain(outbox: outbox, deviceCredential: "c", batchSize: 2)
        #expect(report.accepted == [1])
        #expect(report.duplicates == [2])
        #expect(report.rejected == [3])
        #expect(report.retryLaterEntry == 4)
        #expect(report.retryAfter == .seconds(30))
        let state = outbox.state.withLock { $0 }
        #expect(state.delivered == [1, 2])
        #expect(state.attempts[3] == [.rejected(status: 422, reason: "bad shape")])
        #expect(state.attempts[4] == [.retryLater(after: .seconds(30))])
        #expect(state.attempts[5] == nil)
        #expect(server.requests.map { $0.header("Idempotency-Key") } == entries.prefix(4).map { $0.idempotencyKey.hex })

        // Server down: nothing is marked delivered.
        let dead = MemoryOutbox(entries)
        let deadPort = try TestHTTPServer.deadPort()
        let deadReport = try await UpdateUploader(baseURL: "http://127.0.0.1:\(deadPort)", client: fastClient(), logger: testLogger)
            .drain(outbox: dead, deviceCredential: "c")
        #expect(deadReport.stoppedForRetry && deadReport.retryLaterEntry == 1)
        #expect(dead.state.withLock { $0.delivered }.isEmpty)
    }
}

@Suite("Backoff")
struct BackoffTests {
    @Test("window doubles from base and stops at the cap; delays stay inside it")
    func bounds() {
        let backoff = Backoff(base: .milliseconds(100), cap: .seconds(10))
        #expect(backoff.window(attempt: 0) == .milliseconds(100))
        #expect(backoff.window(attempt: 1) == .milliseconds(200))
        #expect(backoff.window(attempt: 6) == .milliseconds(6_400))
        #expect(backoff.window(attempt: 7) == .seconds(10))
        #expect(backoff.window(attempt: 1_000) == .seconds(10))
        #expect(backoff.window(attempt: -3) == .milliseconds(100))
        var rng = SeededGenerator(seed: 1)
        for attempt in 0 ..< 40 {
            for _ in 0 ..< 50 {
                let d = backoff.delay(attempt: attempt, using: &rng)
                #expect(d >= .zero && d <= backoff.window(attempt: attempt))
            }
        }
    }

    @Test("full jitter is uniform over [0, window] (seeded)")
    func jitterDistribution() {
        let backoff = Backoff(base: .seconds(1), cap: .seconds(60))
        var rng = SeededGenerator(seed: 12345)
        let n = 20_000
        var buckets = [Int](repeating: 0, count: 10)
        var sum = 0.0
        for _ in 0 ..< n {
            let ns = Backoff.nanoseconds(backoff.delay(attempt: 3, using: &rng))  // window 8 s
            let fraction = Double(ns) / 8e9
            sum += fraction
            buckets[min(9, Int(fraction * 10))] += 1
        }
        #expect(abs(sum / Double(n) - 0.5) < 0.01)
        for count in buckets { #expect(abs(count - n / 10) < n / 40, "bucket count \(count)") }
        // The same seed gives the same delays; another seed does not.
        var a = SeededGenerator(seed: 9), b = SeededGenerator(seed: 9), c = SeededGenerator(seed: 10)
        let da = (0 ..< 5).map { backoff.delay(attempt: $0, using: &a) }
        #expect(da == (0 ..< 5).map { backoff.delay(attempt: $0, using: &b) })
        #expect(da != (0 ..< 5).map { backoff.delay(attempt: $0, using: &c) })
    }

    @Test("Retry-After wins when larger, is bounded by maxServerDelay, and parses strictly")
    func retryAfter() {
        let backoff = Backoff(base: .seconds(1), cap: .seconds(4), maxServerDelay: .seconds(3600))
        var rng = SeededGenerator(seed: 2)
        for _ in 0 ..< 100 {
            #expect(backoff.delay(attempt: 0, retryAfter: .seconds(120), using: &rng) == .seconds(120))
            #expect(backoff.delay(attempt: 0, retryAfter: .seconds(999_999), using: &rng) == .seconds(3600))
            let small = backoff.delay(attempt: 5, retryAfter: .milliseconds(1), using: &rng)
            #expect(small >= .milliseconds(1) && small <= .seconds(4))
        }
        #expect(Backoff.parseRetryAfter("120") == .seconds(120))
        #expect(Backoff.parseRetryAfter(" 5") == .seconds(5))
        #expect(Backoff.parseRetryAfter("0") == .seconds(0))
        #expect(Backoff.parseRetryAfter(nil) == nil)
        #expect(Backoff.parseRetryAfter("") == nil)
        #expect(Backoff.parseRetryAfter("-1") == nil)
        #expect(Backoff.parseRetryAfter("1.5") == nil)
        #expect(Backoff.parseRetryAfter("Wed, 21 Oct 2015 07:28:00 GMT") == nil)
        #expect(Backoff.parseRetryAfter("99999999999") == nil)
    }
}
