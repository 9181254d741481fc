#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Crypto
import HearthCore
import HearthFiles
import Logging

/// A verified model installed as `current.hrth`.
public struct ModelPackage: Sendable {
    /// The decoded model.
    public let model: Model
    /// Its version (from the model file).
    public let version: UInt64
    /// The server's `ETag` for it: send it back as `If-None-Match` next time (persist it).
    public let etag: String?
    /// Path of the installed file (`<directory>/current.hrth`).
    public let path: String
    /// Size of the model file.
    public let byteCount: Int
}

/// What a model fetch found.
public enum ModelFetchResult: Sendable {
    /// 304: the server's newest model is the one we have.
    case notModified
    /// 200: a new model, verified, decoded and installed.
    case downloaded(ModelPackage)
}

/// Fetches the newest signed model (`GET {baseURL}/v1/model`) and installs it atomically.
///
/// The response body is the model file exactly as `ModelFile.encode` writes it; the header
/// `X-Hearth-Signature` carries the base64 of the 64-byte Ed25519 signature over those bytes
/// (format in `docs/formats.md`). The body streams into a temporary file in the model
/// directory (size-capped), is verified (signature, then `ModelFile.decode`, which checks every
/// CRC), fsynced, and renamed over `current.hrth`; the model it replaces stays as
/// `previous.hrth` for rollback. `current.hrth` exists at every instant (the previous file is
/// hard-linked, not moved). Anything that fails leaves `current.hrth` untouched and removes the
/// temporary file.
public struct ModelFetcher: Sendable {
    public static let currentFileName = "current.hrth"
    public static let previousFileName = "previous.hrth"
    /// The response header carrying the signature.
    public static let signatureHeader = "X-Hearth-Signature"

    public let baseURL: String
    /// The directory holding `current.hrth` and `previous.hrth`.
    public let directory: String
    public let client: CurlClient
    public let logger: Logger
    /// Largest model file accepted.
    public var maxModelBytes: Int
    /// Total timeout of a model download (models are larger than updates).
    public var downloadTimeoutMilliseconds: Int
    /// Whether a fetched model keeps its float32 master (`Model.master`). A device that serves
    /// and trains from the int8 table sets false: the master is checked, then dropped.
    public var keepsFloatMaster = true
    private let publicKeyBytes: [UInt8]

    /// A fetcher verifying against the 32-byte raw Ed25519 public key `publicKey`.
    public init(baseURL: String, directory: String, publicKey: [UInt8], client: CurlClient, logger: Logger,
                maxModelBytes: Int = 256 * 1024 * 1024, downloadTimeoutMilliseconds: Int = 300_000) throws(UploaderError) {
        do {
            _ = try Curve25519.Signing.PublicKey(rawRepresentation: publicKey)
        } catch {
            throw .invalidConfiguration("model public key is not a 32-byte Ed25519 key")
        }
        guard !directory.isEmpty else { throw .invalidConfiguration("empty model directory") }
        self.baseURL = baseURL
        self.directory = directory
        self.publicKeyBytes = publicKey
        self.client = client
        self.logger = logger
        self.maxModelBytes = maxModelBytes
        self.downloadTimeoutMilliseconds = downloadTimeoutMilliseconds
    }

    public var modelURL: String { joinURL(baseURL, "/v1/model") }
    public var currentPath: String { directory + "/" + ModelFetcher.currentFileName }
    public var previousPath: String { directory + "/" + ModelFetcher.previousFileName }

    /// Fetches the model; `currentETag` (if any) is sent as `If-None-Match`, `deviceCredential`
    /// (if any) as `Authorization: Bearer`. Throws `transport`, `responseTooLarge`,
    /// `unexpectedStatus`, `missingSignature`, `badSignature`, `corruptModel` or `fileSystem`;
    /// in every failure `current.hrth` is untouched.
    public func fetch(currentETag: String?, deviceCredential: String? = nil) async throws(UploaderError) -> ModelFetchResult {
        var headers: [HTTPField] = [HTTPField("Accept", "application/vnd.hearth.model")]
        if let currentETag, !currentETag.isEmpty { headers.append(HTTPField("If-None-Match", currentETag)) }
        if let deviceCredential {
            guard isValidCredential(deviceCredential) else { throw .invalidRequest("invalid device credential") }
            headers.append(HTTPField("Authorization", "Bearer \(deviceCredential)"))
        }

        let temp = try makeTemporaryFile()
        var installed = false
        var descriptorOpen = true
        defer {
            if descriptorOpen { close(temp.fd) }
            if !installed { unlink(temp.path) }
        }
        let request = HTTPRequest(method: .get, url: modelURL, headers: headers, maxResponseBytes: maxModelBytes,
                                  timeoutMilliseconds: downloadTimeoutMilliseconds,
                                  destination: .fileDescriptor(temp.fd))
        let response = try await client.perform(request)

        switch response.status {
        case 304:
            logger.debug("model not modified", metadata: ["etag": "\(currentETag ?? "")"])
            return .notModified
        case 200:
            break
        default:
            let reason = String(decoding: (try? readAll(fd: temp.fd, count: min(response.bodyByteCount, 512))) ?? [], as: UTF8.self)
            logger.warning("model fetch failed", metadata: ["status": "\(response.status)", "reason": "\(reason)"])
            throw .unexpectedStatus(response.status, "GET /v1/model answered \(response.status): \(reason)")
        }

        guard let signatureText = response.header(ModelFetcher.signatureHeader) else {
            logger.error("model rejected: no signature header")
            throw .missingSignature("model response has no \(ModelFetcher.signatureHeader) header")
        }
        guard let signature = Base64.decode(signatureText), signature.count == 64 else {
            logger.error("model rejected: malformed signature")
            throw .badSignature("\(ModelFetcher.signatureHeader) is not the base64 of a 64-byte Ed25519 signature")
        }
        let bytes = try readAll(fd: temp.fd, count: response.bodyByteCount)
        guard try verify(signature: signature, bytes: bytes) else {
            logger.error("model rejected: signature does not verify", metadata: ["bytes": "\(bytes.count)"])
            throw .badSignature("model signature does not verify against the configured public key")
        }
        let model: Model
        do throws(CoreError) {
            model = try ModelFile.decode(bytes, keepingMaster: keepsFloatMaster)
        } catch {
            logger.error("model rejected: signed but undecodable", metadata: ["error": "\(error.message)"])
            throw .corruptModel("signed model does not decode: \(error.message)")
        }

        guard fsync(temp.fd) == 0 else { throw .fileSystem("fsync \(temp.path): \(errnoText())") }
        close(temp.fd)
        descriptorOpen = false
        try install(temporaryPath: temp.path)
        installed = true
        logger.info("model installed", metadata: [
            "version": "\(model.version)", "bytes": "\(bytes.count)", "etag": "\(response.header("ETag") ?? "")",
        ])
        return .downloaded(ModelPackage(model: model, version: model.version, etag: response.header("ETag"),
                                        path: currentPath, byteCount: bytes.count))
    }

    /// Whether `signature` is a valid Ed25519 signature of `bytes` under the configured key.
    public func verify(signature: [UInt8], bytes: [UInt8]) throws(UploaderError) -> Bool {
        let key: Curve25519.Signing.PublicKey
        do {
            key = try Curve25519.Signing.PublicKey(rawRepresentation: publicKeyBytes)
        } catch {
            throw .invalidConfiguration("model public key is not a 32-byte Ed25519 key")
        }
        return key.isValidSignature(signature, for: bytes)
    }

    // MARK: - Files

    /// Name prefix of the temporary file a download streams into.
    public static let temporaryPrefix = ".model-download-"

    /// Removes the temporary downloads a process killed mid-fetch left in the model directory
    /// (`.model-download-*`: each as large as a model; nothing else removes them). Call it
    /// before the first fetch, while no fetch into the directory runs. Returns how many.
    @discardableResult
    public func removeAbandonedDownloads() -> Int {
        guard let listing = opendir(directory) else { return 0 }
        var names: [String] = []
        while let entry = readdir(listing) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name.hasPrefix(ModelFetcher.temporaryPrefix) { names.append(name) }
        }
        closedir(listing)
        return names.filter { unlink(directory + "/" + $0) == 0 }.count
    }

    private func makeTemporaryFile() throws(UploaderError) -> (fd: Int32, path: String) {
        var template = Array((directory + "/" + ModelFetcher.temporaryPrefix + "XXXXXX").utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { buffer -> Int32 in
            guard let base = buffer.baseAddress else { return -1 }
            return mkstemp(base)
        }
        guard fd >= 0 else { throw .fileSystem("cannot create a temporary file in \(directory): \(errnoText())") }
        let path = template.withUnsafeBufferPointer { buffer -> String in
            guard let base = buffer.baseAddress else { return "" }
            return String(cString: base)
        }
        return (fd, path)
    }

    /// current → previous (hard link, then atomic rename), then temp → current (atomic rename),
    /// then fsync the directory.
    private func install(temporaryPath: String) throws(UploaderError) {
        if access(currentPath, F_OK) == 0 {
            let previousTemp = directory + "/.previous.hrth.tmp"
            unlink(previousTemp)
            guard link(currentPath, previousTemp) == 0 else {
                throw .fileSystem("link \(currentPath) -> \(previousTemp): \(errnoText())")
            }
            guard rename(previousTemp, previousPath) == 0 else {
                unlink(previousTemp)
                throw .fileSystem("rename \(previousTemp) -> \(previousPath): \(errnoText())")
            }
        }
        guard rename(temporaryPath, currentPath) == 0 else {
            throw .fileSystem("rename \(temporaryPath) -> \(currentPath): \(errnoText())")
        }
        // The renames reach the disk (a failure here leaves a swap that may not survive a power
        // cut; the new model is installed either way, as before).
        try? DurableFile.syncDirectory(containing: currentPath)
    }
}

func errnoText() -> String { String(cString: strerror(errno)) }

/// Reads `count` bytes from the start of `fd`.
func readAll(fd: Int32, count: Int) throws(UploaderError) -> [UInt8] {
    guard lseek(fd, 0, SEEK_SET) == 0 else { throw .fileSystem("lseek: \(errnoText())") }
    var bytes = [UInt8](repeating: 0, count: count)
    var offset = 0
    var failure: Int32 = 0
    bytes.withUnsafeMutableBytes { buffer in
        guard let base = buffer.baseAddress else { return }
        while offset < count {
            let n = read(fd, base + offset, count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                failure = errno
                return
            }
            if n == 0 { return }
            offset += n
        }
    }
    if failure != 0 { throw .fileSystem("read: \(String(cString: strerror(failure)))") }
    guard offset == count else { throw .fileSystem("short read: \(offset) of \(count) bytes") }
    return bytes
}
