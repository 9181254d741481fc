#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CHearthCurl
import HearthHTTP

/// Runs requests with libcurl in this process: one easy handle per request, `curl_global_init`
/// once per process, each blocking `curl_easy_perform` on its own short-lived pthread (never on
/// the Swift concurrency pool). Redirects are not followed; only http and https are allowed.
///
/// hearth-sim, hearthctl, the tools, the tests and the `hearth-fetch` helper use it; the agent
/// runs its requests in `hearth-fetch` instead (`FetchHelperTransport`), so that it never maps
/// libcurl and the TLS libraries it loads.
public struct InProcessCurlTransport: HTTPTransport {
    public init() {}

    /// Performs `request` on a dedicated thread. Throws `transport` (with the curl code),
    /// `responseTooLarge`, `fileSystem` (writing to the destination failed) or `invalidRequest`.
    public func perform(_ request: HTTPRequest, configuration: CurlClient.Configuration) async throws(UploaderError) -> HTTPResponse {
        let result: Result<HTTPResponse, UploaderError> = await runOnDedicatedThread {
            InProcessCurlTransport.performBlocking(request, configuration)
        }
        return try result.get()
    }

    // MARK: - Blocking core (runs on the dedicated thread)

    private static let globalInit: CURLcode = curl_global_init(Int(CURL_GLOBAL_DEFAULT))

    /// Performs `request` on the calling thread (which it blocks for the whole transfer).
    public static func performBlocking(_ request: HTTPRequest, _ configuration: CurlClient.Configuration) -> Result<HTTPResponse, UploaderError> {
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

extension CurlClient {
    /// A client running its requests with libcurl in this process (`InProcessCurlTransport`).
    public init(configuration: Configuration = Configuration()) {
        self.init(configuration: configuration, transport: InProcessCurlTransport())
    }
}

extension CurlCode {
    init(_ code: CURLcode) { self.init(rawValue: Int(code.rawValue)) }
}
