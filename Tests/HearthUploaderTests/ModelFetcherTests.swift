#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Crypto
import HearthCore
import HearthTestSupport
import Testing
@testable import HearthUploader

/// A fresh temporary directory for async tests (removed by the caller with `removeTree`).
func makeTemporaryDirectory() throws -> String {
    var template = Array("/tmp/hearth-upload-test-XXXXXX".utf8CString)
    let ok = template.withUnsafeMutableBufferPointer { buffer -> Bool in
        guard let base = buffer.baseAddress else { return false }
        return mkdtemp(base) != nil
    }
    guard ok else { throw ServerError(description: "mkdtemp failed") }
    return template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
}

func readFile(_ path: String) -> [UInt8]? {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = read(fd, &chunk, chunk.count)
        if n < 0 { return nil }
        if n == 0 { return out }
        out += chunk[0 ..< n]
    }
}

func writeFile(_ path: String, _ bytes: [UInt8]) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    precondition(fd >= 0)
    _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    close(fd)
}

func directoryEntries(_ path: String) -> [String] {
    guard let dir = opendir(path) else { return [] }
    defer { closedir(dir) }
    var names: [String] = []
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
            String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
        }
        if name != "." && name != ".." { names.append(name) }
    }
    return names.sorted()
}

/// A model server: serves `body` with `signature` and `etag`, answers 304 when If-None-Match matches.
func modelServer(body: [UInt8], signature: String?, etag: String) throws -> TestHTTPServer {
    try TestHTTPServer { request in
        if request.header("If-None-Match") == etag { return ScriptedResponse(status: 304, headers: [HTTPField("ETag", etag)]) }
        var headers = [HTTPField("ETag", etag), HTTPField("Content-Type", "application/vnd.hearth.model")]
        if let signature { headers.append(HTTPField("X-Hearth-Signature", signature)) }
        return ScriptedResponse(status: 200, headers: headers, body: body)
    }
}

@Suite("Model fetcher: signed models, atomic swap")
struct ModelFetcherTests {
    let key = Curve25519.Signing.PrivateKey()
    var publicKey: [UInt8] { Array(key.publicKey.rawRepresentation) }

    func signed(_ bytes: [UInt8]) throws -> String {
        Base64.encode(Array(try key.signature(for: bytes)))
    }

    func fetcher(_ server: TestHTTPServer, _ directory: String, maxModelBytes: Int = 1 << 24) throws -> ModelFetcher {
        try ModelFetcher(baseURL: server.baseURL, directory: directory, publicKey: publicKey, client: fastClient(),
                         logger: testLogger, maxModelBytes: maxModelBytes)
    }

    @Test("200 with a valid signature installs current.hrth atomically and keeps the previous")
    func downloadAndSwap() async throws {
        let directory = try makeTemporaryDirectory()
        defer { removeTree(directory) }
        let old = ModelFile.encode(try Fixtures.randomModel(items: 20, dimension: 8, seed: 1, version: 4))
        writeFile(directory + "/current.hrth", old)
        let new = ModelFile.encode(try Fixtures.randomModel(items: 30, dimension: 8, seed: 2, version: 5))
        let server = try modelServer(body: new, signature: try signed(new), etag: "\"v5\"")
        defer { server.stop() }
        let result = try await fetcher(server, directory).fetch(currentETag: "\"v4\"", deviceCredential: "cred")
        guard case .downloaded(let package) = result else {
            Issue.record("expected a download")
            return
        }
        #expect(package.version == 5)
        #expect(package.etag == "\"v5\"")
        #expect(package.byteCount == new.count)
        #expect(package.model.catalog.count == 30)
        #expect(readFile(directory + "/current.hrth") == new)
        #expect(readFile(directory + "/previous.hrth") == old)
        #expect(directoryEntries(directory) == ["current.hrth", "previous.hrth"])  // no temp files left
        let request = try #require(server.requests.first)
        #expect(request.path == "/v1/model")
        #expect(request.header("If-None-Match") == "\"v4\"")
        #expect(request.header("Authorization") == "Bearer cred")

        // Same ETag now: 304, nothing changes.
        let again = try await fetcher(server, directory).fetch(currentETag: "\"v5\"")
        guard case .notModified = again else {
            Issue.record("expected notModified")
            return
        }
        #expect(readFile(directory + "/current.hrth") == new)
        #expect(directoryEntries(directory) == ["current.hrth", "previous.hrth"])
    }

    @Test("first install with no current model")
    func firstInstall() async throws {
        let directory = try makeTemporaryDirectory()
        defer { removeTree(directory) }
        let new = ModelFile.encode(try Fixtures.randomModel(items: 5, dimension: 4, version: 1))
        let server = try modelServer(body: new, signature: try signed(new), etag: "e1")
        defer { server.stop() }
        _ = try await fetcher(server, directory).fetch(currentETag: nil)
        #expect(readFile(directory + "/current.hrth") == new)
        #expect(directoryEntries(directory) == ["current.hrth"])
    }

    @Test("bad, missing or malformed signature → rejected, current model untouched")
    func badSignature() async throws {
        let directory = try makeTemporaryDirectory()
        defer { removeTree(directory) }
        let old = ModelFile.encode(try Fixtures.randomModel(items: 20, dimension: 8, seed: 1, version: 4))
        writeFile(directory + "/current.hrth", old)
        let new = ModelFile.encode(try Fixtures.randomModel(items: 20, dimension: 8, seed: 2, version: 5))
        let other = Curve25519.Signing.PrivateKey()
        let forged = Base64.encode(Array(try other.signature(for: new)))
        var tampered = new
        tampered[tampered.count / 2] ^= 1
        let cases: [([UInt8], String?, UploaderError)] = [
            (new, forged, .badSignature("")),            // signed by another key
            (tampered, try signed(new), .badSignature("")),  // body changed after signing
            (new, nil, .missingSignature("")),
            (new, "not base64!", .badSignature("")),
            (new, Base64.encode([1, 2, 3]), .badSignature("")),
        ]
        for (body, signature, expected) in cases {
            let server = try modelServer(body: body, signature: signature, etag: "e")
            defer { server.stop() }
            await #expect(throws: expected) { try await fetcher(server, directory).fetch(currentETag: nil) }
            #expect(readFile(directory + "/current.hrth") == old)
            #expect(directoryEntries(directory) == ["current.hrth"])
        }
    }

    @Test("a signed but truncated or corrupt model is rejected; oversized downloads are aborted")
    func corruptModel() async throws {
        let directory = try makeTemporaryDirectory()
        defer { removeTree(directory) }
        let old = ModelFile.encode(try Fixtures.randomModel(items: 20, dimension: 8, seed: 1, version: 4))
        writeFile(directory + "/current.hrth", old)
        let full = ModelFile.encode(try Fixtures.randomModel(items: 20, dimension: 8, seed: 2, version: 5))
        let truncated = Array(full.prefix(full.count - 17))
        let server = try modelServer(body: truncated, signature: try signed(truncated), etag: "e")
        defer { server.stop() }
        await #expect(throws: UploaderError.corruptModel("")) { try await fetcher(server, directory).fetch(currentETag: nil) }
        #expect(readFile(directory + "/current.hrth") == old)
        #expect(directoryEntries(directory) == ["current.hrth"])

        let big = try modelServer(body: full, signature: try signed(full), etag: "e")
        defer { big.stop() }
        await #expect(throws: UploaderError.responseTooLarge("")) {
            try await fetcher(big, directory, maxModelBytes: full.count - 1).fetch(currentETag: nil)
        }
        #expect(readFile(directory + "/current.hrth") == old)
        #expect(directoryEntries(directory) == ["current.hrth"])
    }

    @Test("a non-200 answer is an error with the status; an invalid key is a configuration error")
    func errors() async throws {
        let directory = try makeTemporaryDirectory()
        defer { removeTree(directory) }
        let server = try TestHTTPServer { _ in ScriptedResponse(status: 403, body: Array("device revoked".utf8)) }
        defer { server.stop() }
        let f = try fetcher(server, directory)
        do throws(UploaderError) {
            _ = try await f.fetch(currentETag: nil)
            Issue.record("expected an error")
        } catch {
            #expect(error == .unexpectedStatus(403, ""))
            #expect(error.status == 403)
            #expect(error.message.contains("device revoked"))
        }
        #expect(throws: UploaderError.invalidConfiguration("")) {
            try ModelFetcher(baseURL: server.baseURL, directory: directory, publicKey: [1, 2, 3],
                             client: fastClient(), logger: testLogger)
        }
    }

    @Test("base64 helper round trips and is strict")
    func base64() {
        for n in 0 ..< 70 {
            let bytes = (0 ..< n).map { UInt8(truncatingIfNeeded: $0 * 37 + 11) }
            #expect(Base64.decode(Base64.encode(bytes)) == bytes)
        }
        #expect(Base64.encode(Array("foobar".utf8)) == "Zm9vYmFy")
        #expect(Base64.decode("Zm9vYg==") == Array("foob".utf8))
        #expect(Base64.decode("Zm9vYh==") == nil)  // non-canonical trailing bits
        #expect(Base64.decode("Zm9v!mFy") == nil)
        #expect(Base64.decode("Z") == nil)
    }
}
