#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import HearthProcess
import Testing
@testable import HearthUploader
import HearthTestSupport

/// The built `hearth-fetch` (the test target depends on it, so it is built with the tests).
func fetchHelperPath() throws -> String {
    do {
        return try builtExecutable(FetchHelperTransport.executableName)
    } catch {
        throw ServerError(description: error.message)
    }
}

/// A client whose requests run in the real `hearth-fetch`.
func helperClient(timeoutMilliseconds: Int = 2_000, killGraceMilliseconds: Int = 5_000) throws -> CurlClient {
    CurlClient(configuration: .init(connectTimeoutMilliseconds: 1_000, timeoutMilliseconds: timeoutMilliseconds),
               transport: FetchHelperTransport(helperPath: try fetchHelperPath(), killGraceMilliseconds: killGraceMilliseconds))
}

/// Writes an executable shell script standing in for a misbehaving helper.
func writeScript(_ path: String, _ text: String) throws {
    let bytes = Array(text.utf8)
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o755)
    guard fd >= 0 else { throw ServerError(description: "cannot create \(path)") }
    defer { close(fd) }
    guard write(fd, bytes, bytes.count) == bytes.count else { throw ServerError(description: "cannot write \(path)") }
}

@Suite("Fetch helper framing")
struct FetchFramingTests {
    static let configuration = CurlClient.Configuration(caFile: "/etc/hearth/ca.pem", connectTimeoutMilliseconds: 1_500,
                                                        timeoutMilliseconds: 9_000, userAgent: "hearth-agent",
                                                        unixSocketPath: nil)

    static func sampleRequest() -> HTTPRequest {
        HTTPRequest(method: .post, url: "https://aggregator.example:8443/v1/updates",
                    headers: [HTTPField("Idempotency-Key", "00ff"), HTTPField("Authorization", "Bearer dev-1"), HTTPField("X-Empty", "")],
                    body: (0 ..< 1_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }, maxResponseBytes: 16 * 1024)
    }

    @Test("a request survives the round trip field by field; a file destination arrives as descriptor 3")
    func requestRoundTrip() throws {
        let request = Self.sampleRequest()
        let (decoded, configuration) = try FetchFraming.decodeRequest(try FetchFraming.encodeRequest(request, configuration: Self.configuration))
        #expect(decoded.method == .post && decoded.url == request.url && decoded.headers == request.headers)
        #expect(decoded.body == request.body && decoded.maxResponseBytes == 16 * 1024 && decoded.destination == .memory)
        #expect(decoded.timeoutMilliseconds == 9_000)
        #expect(configuration == CurlClient.Configuration(caFile: "/etc/hearth/ca.pem", connectTimeoutMilliseconds: 1_500,
                                                          timeoutMilliseconds: 9_000, userAgent: "hearth-agent"))

        let download = HTTPRequest(method: .get, url: "http://127.0.0.1:1/v1/model", maxResponseBytes: 200 << 20,
                                   timeoutMilliseconds: 300_000, destination: .fileDescriptor(17))
        let socketConfiguration = CurlClient.Configuration(unixSocketPath: "/run/hearth/agent.sock")
        let (file, fileConfiguration) = try FetchFraming.decodeRequest(try FetchFraming.encodeRequest(download, configuration: socketConfiguration))
        #expect(file.destination == .fileDescriptor(FetchFraming.bodyFileDescriptor) && file.method == .get && file.body.isEmpty)
        #expect(file.timeoutMilliseconds == 300_000 && file.maxResponseBytes == 200 << 20)
        #expect(fileConfiguration.caFile == nil && fileConfiguration.unixSocketPath == "/run/hearth/agent.sock")
    }

    @Test("every truncation of a request frame, a trailing byte and a wrong magic are refused")
    func requestTruncations() throws {
        let frame = try FetchFraming.encodeRequest(Self.sampleRequest(), configuration: Self.configuration)
        for length in 0 ..< frame.count {
            #expect(throws: UploaderError.invalidRequest("")) { _ = try FetchFraming.decodeRequest(Array(frame[0 ..< length])) }
        }
        #expect(throws: UploaderError.invalidRequest("")) { _ = try FetchFraming.decodeRequest(frame + [0]) }
        var wrongMagic = frame
        wrongMagic[3] = UInt8(ascii: "2")
        #expect(throws: UploaderError.invalidRequest("")) { _ = try FetchFraming.decodeRequest(wrongMagic) }
    }

    @Test("the head's length is known exactly when the head is complete; the body must match it")
    func headThenBody() throws {
        let request = Self.sampleRequest()
        let head = try FetchFraming.encodeRequestHead(request, configuration: Self.configuration)
        for length in 0 ..< head.count {
            #expect(try FetchFraming.requestHeadLength(Array(head[0 ..< length])) == nil, "prefix \(length)")
        }
        let lengths = try #require(try FetchFraming.requestHeadLength(head + request.body.prefix(10)))
        #expect(lengths.head == head.count && lengths.body == request.body.count)
        let (decoded, _) = try FetchFraming.decodeRequest(head: head, body: request.body)
        #expect(decoded.body == request.body && decoded.url == request.url)
        #expect(throws: UploaderError.invalidRequest("")) { _ = try FetchFraming.decodeRequest(head: head, body: request.body.dropLast()) }
        #expect(throws: UploaderError.invalidRequest("")) { _ = try FetchFraming.decodeRequest(head: head, body: request.body + [0]) }
        #expect(throws: UploaderError.invalidRequest("")) { _ = try FetchFraming.requestHeadLength(Array("POST / HTTP/1.1\r\n".utf8)) }
    }

    @Test("out-of-range fields are refused on both sides")
    func requestLimits() throws {
        let configuration = Self.configuration
        // Encoder: oversized string, too many headers, inline limit, timeouts.
        #expect(throws: UploaderError.invalidRequest("")) {
            _ = try FetchFraming.encodeRequestHead(HTTPRequest(method: .get, url: String(repeating: "a", count: FetchFraming.maxStringBytes + 1)),
                                                   configuration: configuration)
        }
        #expect(throws: UploaderError.invalidRequest("")) {
            let headers = (0 ... FetchFraming.maxRequestHeaders).map { HTTPField("X-\($0)", "v") }
            _ = try FetchFraming.encodeRequestHead(HTTPRequest(method: .get, url: "http://h/", headers: headers), configuration: configuration)
        }
        #expect(throws: UploaderError.invalidRequest("")) {
            _ = try FetchFraming.encodeRequestHead(HTTPRequest(method: .get, url: "http://h/", maxResponseBytes: FetchFraming.maxInlineBodyBytes + 1),
                                                   configuration: configuration)
        }
        #expect(throws: UploaderError.invalidRequest("")) {
            _ = try FetchFraming.encodeRequestHead(HTTPRequest(method: .get, url: "http://h/", timeoutMilliseconds: 0), configuration: configuration)
        }
        // Decoder: a body on a GET, a NUL in a string, an unknown method, a huge length field.
        let get = try FetchFraming.encodeRequest(HTTPRequest(method: .get, url: "http://h/"), configuration: configuration)
        var getWithBody = Array(get.dropLast(8))
        getWithBody += [1, 0, 0, 0, 0, 0, 0, 0, 0x41]
        #expect(throws: UploaderError.invalidRequest("")) { _ = try FetchFraming.decodeRequest(getWithBody) }
        var nul = get
        let urlStart = 4 + 1 + 1 + 4 + 4 + 8 + 4
        nul[urlStart] = 0
        #expect(throws: UploaderError.invalidRequest("")) { _ = try FetchFraming.decodeRequest(nul) }
        var method = get
        method[4] = 9
        #expect(throws: UploaderError.invalidRequest("")) { _ = try FetchFraming.decodeRequest(method) }
        var longURL = get
        longURL[urlStart - 2] = 0xFF  // the URL's length becomes 16 M + ...
        #expect(throws: UploaderError.invalidRequest("")) { _ = try FetchFraming.decodeRequest(longURL) }
    }

    @Test("responses and each failure kind survive the round trip")
    func responseRoundTrip() throws {
        let request = Self.sampleRequest()
        let response = HTTPResponse(status: 202, headers: [HTTPField("Idempotent-Replayed", "true"), HTTPField("ETag", "\"v3\"")],
                                    body: Array("accepted".utf8), bodyByteCount: 8)
        let decoded = try FetchFraming.decodeResponse(FetchFraming.encodeResponse(.success(response)), for: request).get()
        #expect(decoded.status == 202 && decoded.headers == response.headers && decoded.body == response.body && decoded.bodyByteCount == 8)

        let failures: [UploaderError] = [.transport(.operationTimedOut), .transport(.couldntResolveHost), .transport(.peerFailedVerification),
                                         .responseTooLarge("too big"), .fileSystem("disk full"), .invalidRequest("header X")]
        for failure in failures {
            let result = try FetchFraming.decodeResponse(FetchFraming.encodeResponse(.failure(failure)), for: request)
            guard case .failure(let error) = result else {
                Issue.record("\(failure) came back as a response")
                continue
            }
            #expect(error == failure && error.curlCode == failure.curlCode)
            if failure.curlCode == nil { #expect(error.message == failure.message) }
        }
    }

    @Test("a response frame that does not fit its request is the helper's failure")
    func responseRefusals() throws {
        let memory = HTTPRequest(method: .get, url: "http://h/", maxResponseBytes: 10)
        let file = HTTPRequest(method: .get, url: "http://h/", maxResponseBytes: 1_000, destination: .fileDescriptor(5))
        let fine = FetchFraming.encodeResponse(.success(HTTPResponse(status: 200, headers: [], body: Array("0123456789".utf8), bodyByteCount: 10)))
        _ = try FetchFraming.decodeResponse(fine, for: memory).get()
        // More than the request allowed; an inline body for a file download.
        let tooMuch = FetchFraming.encodeResponse(.success(HTTPResponse(status: 200, headers: [], body: Array("0123456789A".utf8), bodyByteCount: 11)))
        #expect(throws: UploaderError.helperFailed("")) { _ = try FetchFraming.decodeResponse(tooMuch, for: memory) }
        #expect(throws: UploaderError.helperFailed("")) { _ = try FetchFraming.decodeResponse(fine, for: file) }
        let written = FetchFraming.encodeResponse(.success(HTTPResponse(status: 200, headers: [], body: [], bodyByteCount: 600)))
        #expect(try FetchFraming.decodeResponse(written, for: file).get().bodyByteCount == 600)
        for length in 0 ..< fine.count {
            #expect(throws: UploaderError.helperFailed("")) { _ = try FetchFraming.decodeResponse(Array(fine[0 ..< length]), for: memory) }
        }
        #expect(throws: UploaderError.helperFailed("")) { _ = try FetchFraming.decodeResponse(fine + [0], for: memory) }
        #expect(throws: UploaderError.helperFailed("")) { _ = try FetchFraming.decodeResponse(Array("HTTP/1.1 200 OK\r\n\r\n".utf8), for: memory) }
    }
}

@Suite("Fetch helper process (the real hearth-fetch, and stand-ins that fail)")
struct FetchHelperProcessTests {
    @Test("an upload through hearth-fetch reaches the server byte for byte, with its headers")
    func uploadThroughHelper() async throws {
        let server = try TestHTTPServer { _ in ScriptedResponse(status: 202, headers: [HTTPField("Idempotent-Replayed", "true")], body: Array("ok".utf8)) }
        defer { server.stop() }
        let (bytes, key) = try sampleEnvelope()
        let uploader = UpdateUploader(baseURL: server.baseURL, client: try helperClient(), logger: testLogger)
        #expect(await uploader.upload(bytes, idempotencyKey: key, deviceCredential: "dev-secret-1") == .duplicate)
        let requests = server.requests
        try #require(requests.count == 1)
        #expect(requests[0].method == "POST" && requests[0].path == "/v1/updates" && requests[0].body == bytes)
        #expect(requests[0].header("Idempotency-Key") == key.hex && requests[0].header("Authorization") == "Bearer dev-secret-1")
        #expect(requests[0].header("User-Agent") == "hearth-agent")
    }

    @Test("a large body (4 MiB) goes through, and a download lands in the caller's file")
    func largeBodiesBothWays() async throws {
        let payload = (0 ..< (4 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ ($0 >> 12)) }
        let server = try TestHTTPServer { request in ScriptedResponse(status: 200, body: request.body) }
        defer { server.stop() }
        let directory = try HearthProcess.makeTemporaryDirectory(prefix: "hfh")
        defer { HearthProcess.removeTree(directory) }
        let fd = open(directory + "/download", O_RDWR | O_CREAT | O_TRUNC, 0o600)
        try #require(fd >= 0)
        defer { close(fd) }
        let client = try helperClient(timeoutMilliseconds: 20_000)
        let response = try await client.perform(HTTPRequest(method: .post, url: server.baseURL + "/echo", body: payload,
                                                            maxResponseBytes: 8 << 20, destination: .fileDescriptor(fd)))
        #expect(response.status == 200 && response.bodyByteCount == payload.count && response.body.isEmpty)
        #expect(server.requests.first?.body == payload)
        #expect(lseek(fd, 0, SEEK_SET) == 0)
        var back = [UInt8](repeating: 0, count: payload.count + 1)
        var total = 0
        while total < back.count {
            let n = back.withUnsafeMutableBytes { read(fd, $0.baseAddress! + total, $0.count - total) }
            if n <= 0 { break }
            total += n
        }
        #expect(total == payload.count && Array(back[0 ..< total]) == payload)
    }

    @Test("transfer failures come back typed: refused, timeout, size cap")
    func typedTransportFailures() async throws {
        let port = try TestHTTPServer.deadPort()
        await #expect(throws: UploaderError.transport(.couldntConnect)) {
            _ = try await helperClient().perform(HTTPRequest(method: .get, url: "http://127.0.0.1:\(port)/"))
        }
        let hung = try TestHTTPServer(accepting: false)
        defer { hung.stop() }
        let impatient = try helperClient(timeoutMilliseconds: 300)
        do throws(UploaderError) {
            _ = try await impatient.perform(HTTPRequest(method: .get, url: hung.baseURL))
            Issue.record("expected a timeout")
        } catch {
            #expect(error.curlCode == .operationTimedOut)
        }
        let big = try TestHTTPServer { _ in ScriptedResponse(status: 200, body: [UInt8](repeating: 65, count: 100_000)) }
        defer { big.stop() }
        await #expect(throws: UploaderError.responseTooLarge("")) {
            _ = try await helperClient().perform(HTTPRequest(method: .get, url: big.baseURL, maxResponseBytes: 1_000))
        }
        await #expect(throws: UploaderError.transport(.unsupportedProtocol)) {
            _ = try await helperClient().perform(HTTPRequest(method: .get, url: "ftp://127.0.0.1:\(port)/"))
        }
    }

    @Test("a missing helper fails the exchange at once, and the uploader keeps the update for later")
    func missingHelper() async throws {
        let client = CurlClient(transport: FetchHelperTransport(helperPath: "/nonexistent/hearth-fetch"))
        do throws(UploaderError) {
            _ = try await client.perform(HTTPRequest(method: .get, url: "http://127.0.0.1:1/"))
            Issue.record("expected helperFailed")
        } catch {
            #expect(error == .helperFailed("") && error.message.contains("/nonexistent/hearth-fetch"))
        }
        let (bytes, key) = try sampleEnvelope()
        let uploader = UpdateUploader(baseURL: "http://127.0.0.1:1", client: client, logger: testLogger)
        #expect(await uploader.upload(bytes, idempotencyKey: key, deviceCredential: "c") == .retryLater(after: nil))
    }

    @Test("a helper killed by a signal, exiting non-zero, answering garbage or nothing: helperFailed")
    func misbehavingHelpers() async throws {
        let directory = try HearthProcess.makeTemporaryDirectory(prefix: "hfh")
        defer { HearthProcess.removeTree(directory) }
        let cases: [(name: String, script: String, expect: String)] = [
            ("killed", "#!/bin/sh\ncat >/dev/null\nkill -9 $$\n", "signal 9"),
            ("status", "#!/bin/sh\ncat >/dev/null\nexit 3\n", "status 3"),
            ("garbage", "#!/bin/sh\ncat >/dev/null\necho 'HTTP/1.1 200 OK'\n", "malformed"),
            ("silent", "#!/bin/sh\nexit 0\n", "malformed"),
            ("truncated", "#!/bin/sh\ncat >/dev/null\nprintf 'HFS1\\000\\310'\n", "malformed"),
        ]
        for item in cases {
            let path = "\(directory)/\(item.name)"
            try writeScript(path, item.script)
            let client = CurlClient(transport: FetchHelperTransport(helperPath: path))
            do throws(UploaderError) {
                _ = try await client.perform(HTTPRequest(method: .post, url: "http://127.0.0.1:1/", body: [UInt8](repeating: 1, count: 300_000)))
                Issue.record("\(item.name): expected helperFailed")
            } catch {
                #expect(error == .helperFailed(""), "\(item.name): \(error.message)")
                #expect(error.message.contains(item.expect), "\(item.name): \(error.message)")
            }
        }
    }

    @Test("the helper inherits only its standard descriptors, not the agent's sockets and files")
    func helperInheritsNoDescriptors() async throws {
        let directory = try HearthProcess.makeTemporaryDirectory(prefix: "hfh")
        defer { HearthProcess.removeTree(directory) }
        // A descriptor without close-on-exec (dup2 clears it), as NIO leaves the connections it
        // accepts; a number no shell picks for itself.
        let opened = open("/dev/null", O_RDONLY)
        #expect(opened > 2)
        let leaked = dup2(opened, 987)
        close(opened)
        #expect(leaked == 987)
        defer { close(leaked) }
        let path = directory + "/fds"
        // Lists its own descriptors, then fails.
        try writeScript(path, "#!/bin/sh\nls /proc/$$/fd > '\(directory)/fds.txt'\ncat >/dev/null\nexit 3\n")
        let client = CurlClient(transport: FetchHelperTransport(helperPath: path))
        do throws(UploaderError) {
            _ = try await client.perform(HTTPRequest(method: .post, url: "http://127.0.0.1:1/", body: [1, 2, 3]))
            Issue.record("expected helperFailed")
        } catch {
            #expect(error == .helperFailed(""), "\(error.message)")
        }
        let listing = try #require(readWholeFile("\(directory)/fds.txt"))
        let descriptors = Set(listing.split(separator: "\n").compactMap { Int32($0) })
        #expect(descriptors.contains(0) && descriptors.contains(1))
        #expect(!descriptors.contains(leaked), "the helper inherited descriptor \(leaked): \(descriptors.sorted())")
    }

    @Test("a helper hanging past the request's timeout is killed and reaped")
    func hangingHelper() async throws {
        let directory = try HearthProcess.makeTemporaryDirectory(prefix: "hfh")
        defer { HearthProcess.removeTree(directory) }
        let path = directory + "/hang"
        // Never reads its input, never answers.
        try writeScript(path, "#!/bin/sh\necho $$ > '\(directory)/pid'\nexec sleep 60\n")
        let client = CurlClient(configuration: .init(connectTimeoutMilliseconds: 200, timeoutMilliseconds: 300),
                                transport: FetchHelperTransport(helperPath: path, killGraceMilliseconds: 200))
        let start = monotonicMilliseconds()
        do throws(UploaderError) {
            _ = try await client.perform(HTTPRequest(method: .post, url: "http://127.0.0.1:1/", body: [UInt8](repeating: 7, count: 2 << 20)))
            Issue.record("expected helperFailed")
        } catch {
            #expect(error == .helperFailed("") && error.message.contains("killed"), "\(error.message)")
        }
        let elapsed = monotonicMilliseconds() - start
        #expect(elapsed >= 450 && elapsed < TestBounds.milliseconds(20_000), "took \(elapsed) ms")
        let pidText = try #require(readText(directory + "/pid"))
        let pid = try #require(pid_t(pidText.filter { $0.isNumber }))
        #expect(kill(pid, 0) != 0 && errno == ESRCH, "the helper \(pid) is still there")
    }

    @Test("the default helper path is next to the executable, else ../lib/hearth")
    func defaultPath() throws {
        let directory = try HearthProcess.makeTemporaryDirectory(prefix: "hfh")
        defer { HearthProcess.removeTree(directory) }
        #expect(mkdir(directory + "/bin", 0o755) == 0 && mkdir(directory + "/lib", 0o755) == 0 && mkdir(directory + "/lib/hearth", 0o755) == 0)
        #expect(FetchHelperTransport.defaultHelperPath(executablePath: directory + "/bin/hearth-agent") == directory + "/bin/hearth-fetch")
        try writeScript(directory + "/lib/hearth/hearth-fetch", "#!/bin/sh\n")
        #expect(FetchHelperTransport.defaultHelperPath(executablePath: directory + "/bin/hearth-agent") == directory + "/bin/../lib/hearth/hearth-fetch")
        try writeScript(directory + "/bin/hearth-fetch", "#!/bin/sh\n")
        #expect(FetchHelperTransport.defaultHelperPath(executablePath: directory + "/bin/hearth-agent") == directory + "/bin/hearth-fetch")
    }
}

func readText(_ path: String) -> String? {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var buffer = [UInt8](repeating: 0, count: 256)
    let n = read(fd, &buffer, buffer.count)
    return n > 0 ? String(decoding: buffer[0 ..< n], as: UTF8.self) : nil
}

/// The whole file as text, or nil when it cannot be opened.
private func readWholeFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
        let count = read(fd, &chunk, chunk.count)
        guard count > 0 else { break }
        bytes += chunk[0 ..< count]
    }
    return String(decoding: bytes, as: UTF8.self)
}
