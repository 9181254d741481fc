#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CHearthCurl

/// A libcurl result code (`CURLcode`), with named constants for the ones Hearth reacts to and
/// curl's own message (`curl_easy_strerror`).
public struct CurlCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: Int

    public init(rawValue: Int) { self.rawValue = rawValue }
    init(_ code: CURLcode) { self.rawValue = Int(code.rawValue) }

    public static let ok = CurlCode(CURLE_OK)
    public static let unsupportedProtocol = CurlCode(CURLE_UNSUPPORTED_PROTOCOL)
    public static let failedInit = CurlCode(CURLE_FAILED_INIT)
    public static let urlMalformed = CurlCode(CURLE_URL_MALFORMAT)
    public static let couldntResolveHost = CurlCode(CURLE_COULDNT_RESOLVE_HOST)
    public static let couldntConnect = CurlCode(CURLE_COULDNT_CONNECT)
    public static let partialFile = CurlCode(CURLE_PARTIAL_FILE)
    public static let writeError = CurlCode(CURLE_WRITE_ERROR)
    public static let operationTimedOut = CurlCode(CURLE_OPERATION_TIMEDOUT)
    public static let sslConnectError = CurlCode(CURLE_SSL_CONNECT_ERROR)
    public static let abortedByCallback = CurlCode(CURLE_ABORTED_BY_CALLBACK)
    public static let gotNothing = CurlCode(CURLE_GOT_NOTHING)
    public static let sendError = CurlCode(CURLE_SEND_ERROR)
    public static let recvError = CurlCode(CURLE_RECV_ERROR)
    public static let peerFailedVerification = CurlCode(CURLE_PEER_FAILED_VERIFICATION)
    public static let sslCACertBadFile = CurlCode(CURLE_SSL_CACERT_BADFILE)
    public static let fileSizeExceeded = CurlCode(CURLE_FILESIZE_EXCEEDED)

    /// curl's description of the code.
    public var message: String {
        guard let text = curl_easy_strerror(CURLcode(rawValue: CURLcode.RawValue(truncatingIfNeeded: rawValue))) else {
            return "curl error \(rawValue)"
        }
        return String(cString: text)
    }

    public var description: String { "\(message) (\(rawValue))" }
}

/// One HTTP header field.
public struct HTTPField: Sendable, Hashable {
    public var name: String
    public var value: String
    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }
}

/// An HTTP request for `CurlClient`.
public struct HTTPRequest: Sendable {
    /// The request method. `delete` sends no body (`CURLOPT_CUSTOMREQUEST`).
    public enum Method: Sendable, Hashable { case get, post, delete }
    /// Where the response body goes.
    public enum BodyDestination: Sendable, Hashable {
        /// Collected in `HTTPResponse.body`.
        case memory
        /// Written to this open file descriptor as it arrives (`HTTPResponse.body` stays empty).
        case fileDescriptor(Int32)
    }

    public var method: Method
    public var url: String
    public var headers: [HTTPField]
    /// The POST body (sent with `CURLOPT_POSTFIELDS` + `CURLOPT_POSTFIELDSIZE_LARGE`).
    public var body: [UInt8]
    /// Largest response body accepted; a larger one aborts the transfer (`responseTooLarge`).
    public var maxResponseBytes: Int
    /// Overrides the client's total timeout for this request.
    public var timeoutMilliseconds: Int?
    public var destination: BodyDestination

    public init(method: Method, url: String, headers: [HTTPField] = [], body: [UInt8] = [],
                maxResponseBytes: Int = 64 * 1024, timeoutMilliseconds: Int? = nil,
                destination: BodyDestination = .memory) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.maxResponseBytes = maxResponseBytes
        self.timeoutMilliseconds = timeoutMilliseconds
        self.destination = destination
    }
}

/// An HTTP response: status, the final response's headers, and the body (when kept in memory).
public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: [HTTPField]
    public var body: [UInt8]
    /// Body bytes received (also when written to a file).
    public var bodyByteCount: Int

    /// The first header named `name` (case-insensitive ASCII), trimmed.
    public func header(_ name: String) -> String? {
        let wanted = asciiLowercased(name)
        return headers.first { asciiLowercased($0.name) == wanted }?.value
    }
}

func asciiLowercased(_ s: String) -> String {
    String(decoding: s.utf8.map { $0 >= 0x41 && $0 <= 0x5A ? $0 + 0x20 : $0 }, as: UTF8.self)
}

/// A small typed wrapper over the libcurl easy API.
///
/// One easy handle per request; `curl_global_init` runs once per process. Each blocking
/// `curl_easy_perform` runs on its own short-lived pthread, never on the Swift concurrency pool,
/// and is exposed as `async`. Redirects are not followed; only http and https are allowed.
public struct CurlClient: Sendable {
    public struct Configuration: Sendable, Hashable {
        /// PEM file of CA certificates to verify the server with (`CURLOPT_CAINFO`); nil = system default.
        public var caFile: String?
        /// Connect timeout (`CURLOPT_CONNECTTIMEOUT_MS`).
        public var connectTimeoutMilliseconds: Int
        /// Total timeout of one transfer (`CURLOPT_TIMEOUT_MS`).
        public var timeoutMilliseconds: Int
        /// The `User-Agent` header.
        public var userAgent: String
        /// Connect to this Unix domain socket instead of the URL's host and port
        /// (`CURLOPT_UNIX_SOCKET_PATH`); the URL's host is then only sent as `Host`. nil = TCP.
        public var unixSocketPath: String?

        public init(caFile: String? = nil, connectTimeoutMilliseconds: Int = 10_000,
                    timeoutMilliseconds: Int = 60_000, userAgent: String = "hearth-agent",
                    unixSocketPath: String? = nil) {
            self.caFile = caFile
            self.connectTimeoutMilliseconds = connectTimeoutMilliseconds
            self.timeoutMilliseconds = timeoutMilliseconds
            self.userAgent = userAgent
            self.unixSocketPath = unixSocketPath
        }
    }

    public let configuration: Configuration

    public init(configuration: Configuration = Configuration()) {
        self.configuration = configuration
    }

    /// Performs `request` on a dedicated thread. Throws `transport` (with the curl code),
    /// `responseTooLarge`, `fileSystem` (writing to the destination failed) or `invalidRequest`.
    /// Any HTTP status is a successful transfer: the caller interprets it.
    public func perform(_ request: HTTPRequest) async throws(UploaderError) -> HTTPResponse {
        let configuration = self.configuration
        let result: Result<HTTPResponse, UploaderError> = await runOnDedicatedThread {
            CurlClient.performBlocking(request, configuration)
        }
        return try result.get()
    }

    // MARK: - Blocking core (runs on the dedicated thread)

    private static let globalInit: CURLcode = curl_global_init(Int(CURL_GLOBAL_DEFAULT))

    static func performBlocking(_ request: HTTPRequest, _ configuration: Configuration) -> Result<HTTPResponse, UploaderError> {
        guard globalInit == CURLE_OK else { return .failure(.transport(CurlCode(globalInit))) }
        guard !request.url.isEmpty else { return .failure(.invalidRequest("empty URL")) }
        guard let handle = curl_easy_init() else { return .failure(.transport(.failedInit)) }
        defer { curl_easy_cleanup(handle) }

        var list: UnsafeMutablePointer<curl_slist>? = nil
        defer { curl_slist_free_all(list) }
        // "Expect:" disables curl's 100-continue handshake for larger POST bodies.
        for field in request.headers + [HTTPField("Expect", "")] {
            let forbidden = field.name.utf8.contains { $0 == 0x0D || $0 == 0x0A || $0 == 0x3A || $0 == 0 }
                || field.value.utf8.contains { $0 == 0x0D || $0 == 0x0A || $0 == 0 }
            guard !field.name.isEmpty, !forbidden else {
                return .failure(.invalidRequest("header \(field.name) contains a forbidden character"))
            }
            let line = field.value.isEmpty ? "\(field.name):" : "\(field.name): \(field.value)"
            guard let appended = curl_slist_append(list, line) else {
                return .failure(.invalidRequest("curl_slist_append failed"))
            }
            list = appended
        }

        let state = TransferState(maxBytes: request.maxResponseBytes, destination: request.destination)
        let context = Unmanaged.passUnretained(state).toOpaque()
        let timeout = request.timeoutMilliseconds ?? configuration.timeoutMilliseconds

        var setupError: CURLcode = CURLE_OK
        func set(_ rc: CURLcode) { if setupError == CURLE_OK && rc != CURLE_OK { setupError = rc } }
        set(hearth_curl_setopt_string(handle, CURLOPT_URL, request.url))
        set(hearth_curl_setopt_long(handle, CURLOPT_NOSIGNAL, 1))
        set(hearth_curl_setopt_string(handle, CURLOPT_PROTOCOLS_STR, "http,https"))
        set(hearth_curl_setopt_long(handle, CURLOPT_FOLLOWLOCATION, 0))
        set(hearth_curl_setopt_long(handle, CURLOPT_CONNECTTIMEOUT_MS, max(1, configuration.connectTimeoutMilliseconds)))
        set(hearth_curl_setopt_long(handle, CURLOPT_TIMEOUT_MS, max(1, timeout)))
        set(hearth_curl_setopt_long(handle, CURLOPT_SSL_VERIFYPEER, 1))
        set(hearth_curl_setopt_long(handle, CURLOPT_SSL_VERIFYHOST, 2))
        if let caFile = configuration.caFile {
            set(hearth_curl_setopt_string(handle, CURLOPT_CAINFO, caFile))
        }
        if let unixSocketPath = configuration.unixSocketPath {
            set(hearth_curl_setopt_string(handle, CURLOPT_UNIX_SOCKET_PATH, unixSocketPath))
        }
        set(hearth_curl_setopt_string(handle, CURLOPT_USERAGENT, configuration.userAgent))
        set(hearth_curl_setopt_slist(handle, CURLOPT_HTTPHEADER, list))
        set(hearth_curl_setopt_io_callback(handle, CURLOPT_WRITEFUNCTION, curlWriteCallback))
        set(hearth_curl_setopt_pointer(handle, CURLOPT_WRITEDATA, context))
        set(hearth_curl_setopt_io_callback(handle, CURLOPT_HEADERFUNCTION, curlHeaderCallback))
        set(hearth_curl_setopt_pointer(handle, CURLOPT_HEADERDATA, context))
        set(hearth_curl_setopt_off_t(handle, CURLOPT_MAXFILESIZE_LARGE, curl_off_t(request.maxResponseBytes)))
        switch request.method {
        case .get:
            set(hearth_curl_setopt_long(handle, CURLOPT_HTTPGET, 1))
        case .post:
            set(hearth_curl_setopt_long(handle, CURLOPT_POST, 1))
            set(hearth_curl_setopt_off_t(handle, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(request.body.count)))
        case .delete:
            set(hearth_curl_setopt_long(handle, CURLOPT_HTTPGET, 1))
            set(hearth_curl_setopt_string(handle, CURLOPT_CUSTOMREQUEST, "DELETE"))
        }
        guard setupError == CURLE_OK else { return .failure(.transport(CurlCode(setupError))) }

        // The body stays pinned for the whole transfer: CURLOPT_POSTFIELDS does not copy.
        let rc: CURLcode = request.body.withUnsafeBytes { body -> CURLcode in
            if request.method == .post {
                let rc: CURLcode
                if let base = body.baseAddress {
                    rc = hearth_curl_setopt_pointer(handle, CURLOPT_POSTFIELDS, UnsafeMutableRawPointer(mutating: base))
                } else {
                    rc = hearth_curl_setopt_string(handle, CURLOPT_POSTFIELDS, "")
                }
                guard rc == CURLE_OK else { return rc }
            }
            return curl_easy_perform(handle)
        }
        if state.exceeded || rc == CURLE_FILESIZE_EXCEEDED {
            return .failure(.responseTooLarge("response body larger than \(request.maxResponseBytes) bytes; transfer aborted"))
        }
        if let errorNumber = state.writeErrno {
            return .failure(.fileSystem("writing the response body failed: \(String(cString: strerror(errorNumber)))"))
        }
        guard rc == CURLE_OK else { return .failure(.transport(CurlCode(rc))) }
        var status = 0
        _ = hearth_curl_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
        return .success(HTTPResponse(status: status, headers: state.headers, body: state.body,
                                     bodyByteCount: state.received))
    }
}

/// Per-transfer state shared with the C callbacks (used on the transfer's thread only).
final class TransferState {
    static let maxHeaderBytes = 64 * 1024

    let maxBytes: Int
    let destination: HTTPRequest.BodyDestination
    var body: [UInt8] = []
    var received = 0
    var exceeded = false
    var writeErrno: Int32?
    var headers: [HTTPField] = []
    var headerBytes = 0

    init(maxBytes: Int, destination: HTTPRequest.BodyDestination) {
        self.maxBytes = maxBytes
        self.destination = destination
    }
}

private let curlWriteCallback: hearth_curl_io_callback = { buffer, size, count, context in
    guard let context else { return 0 }
    let state = Unmanaged<TransferState>.fromOpaque(context).takeUnretainedValue()
    let n = size * count
    guard n > 0 else { return 0 }
    guard let buffer else { return 0 }
    guard n <= state.maxBytes - state.received else {
        state.exceeded = true
        return 0  // curl aborts with CURLE_WRITE_ERROR
    }
    switch state.destination {
    case .memory:
        state.body.append(contentsOf: UnsafeRawBufferPointer(start: buffer, count: n))
    case .fileDescriptor(let fd):
        var offset = 0
        while offset < n {
            let written = write(fd, buffer + offset, n - offset)
            if written < 0 {
                if errno == EINTR { continue }
                state.writeErrno = errno
                return 0
            }
            offset += written
        }
    }
    state.received += n
    return n
}

private let curlHeaderCallback: hearth_curl_io_callback = { buffer, size, count, context in
    guard let context, let buffer else { return 0 }
    let state = Unmanaged<TransferState>.fromOpaque(context).takeUnretainedValue()
    let n = size * count
    state.headerBytes += n
    guard state.headerBytes <= TransferState.maxHeaderBytes else { return 0 }
    let bytes = UnsafeRawBufferPointer(start: buffer, count: n)
    if n >= 5, bytes[0] == 0x48, bytes[1] == 0x54, bytes[2] == 0x54, bytes[3] == 0x50, bytes[4] == 0x2F {
        state.headers.removeAll()  // a new response ("HTTP/..."), e.g. after an interim 1xx
        return n
    }
    guard let colon = bytes.firstIndex(of: 0x3A) else { return n }
    let name = trimmedString(bytes[..<colon])
    let value = trimmedString(bytes[(colon + 1)...])
    if !name.isEmpty { state.headers.append(HTTPField(name, value)) }
    return n
}

private func trimmedString(_ bytes: Slice<UnsafeRawBufferPointer>) -> String {
    func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0D || b == 0x0A }
    var start = bytes.startIndex
    var end = bytes.endIndex
    while start < end, isSpace(bytes[start]) { start += 1 }
    while end > start, isSpace(bytes[end - 1]) { end -= 1 }
    return String(decoding: bytes[start ..< end], as: UTF8.self)
}

// MARK: - Dedicated threads

private final class ThreadJob: @unchecked Sendable {
    let run: () -> Void
    init(_ run: @escaping () -> Void) { self.run = run }
}

/// Runs blocking `body` on a new detached pthread and resumes with its result, so blocking
/// libcurl calls never occupy a thread of the Swift concurrency pool.
func runOnDedicatedThread<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { (continuation: CheckedContinuation<T, Never>) in
        let job = ThreadJob { continuation.resume(returning: body()) }
        let unmanaged = Unmanaged.passRetained(job)
        #if canImport(Glibc)
        var thread = pthread_t()
        #else
        var thread: pthread_t? = nil
        #endif
        let rc = pthread_create(&thread, nil, { argument in
            guard let argument else { return nil }
            Unmanaged<ThreadJob>.fromOpaque(argument).takeRetainedValue().run()
            return nil
        }, unmanaged.toOpaque())
        if rc == 0 {
            #if canImport(Glibc)
            pthread_detach(thread)
            #else
            if let thread { pthread_detach(thread) }
            #endif
        } else {
            // No thread available: run inline rather than fail the transfer.
            unmanaged.takeRetainedValue().run()
        }
    }
}
