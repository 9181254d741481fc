/// The framing between the agent and its `hearth-fetch` helper (docs/formats.md, "Fetch helper
/// framing"): one request in on the helper's standard input, one response out on its standard
/// output, both little-endian, length-prefixed, size-limited, and refused whole when anything
/// is out of place (wrong magic, a field out of range, truncation, trailing bytes).
///
/// Pure byte code with no I/O, shared by both sides so they cannot drift apart.
public enum FetchFraming {
    /// First four bytes of a request frame.
    public static let requestMagic: [UInt8] = Array("HFQ1".utf8)
    /// First four bytes of a response frame.
    public static let responseMagic: [UInt8] = Array("HFS1".utf8)
    /// The file descriptor the helper writes a `.fileDescriptor` response body to.
    public static let bodyFileDescriptor: Int32 = 3

    /// Longest string field (URL, header name or value, path, user agent), in bytes.
    public static let maxStringBytes = 8 * 1024
    /// Most header fields in a request.
    public static let maxRequestHeaders = 64
    /// Most header fields in a response.
    public static let maxResponseHeaders = 256
    /// Largest request body (the aggregator's own `max_body_bytes` default is 64 MiB).
    public static let maxRequestBodyBytes = 64 * 1024 * 1024
    /// Largest `maxResponseBytes` a request may ask for (bodies written to a file).
    public static let maxResponseLimit = 1024 * 1024 * 1024
    /// Largest response body carried inline (`.memory` destination).
    public static let maxInlineBodyBytes = 16 * 1024 * 1024
    /// Largest head of a request frame (the fields before the body's bytes): 64 header fields
    /// and four strings of the largest size fit.
    public static let maxRequestHeadBytes = 2 * 1024 * 1024
    /// Largest request frame: the head, then the body.
    public static let maxRequestFrameBytes = maxRequestHeadBytes + maxRequestBodyBytes
    /// Largest response frame: 64 KiB of headers (what the transfer keeps), the inline body, the rest.
    public static let maxResponseFrameBytes = 64 * 1024 + 8 * 1024 + maxInlineBodyBytes
    /// Longest timeout a request may carry (one hour).
    public static let maxTimeoutMilliseconds = 3_600_000

    private enum Outcome: UInt8 {
        case response = 0, transport = 1, responseTooLarge = 2, fileSystem = 3, invalidRequest = 4
    }

    // MARK: - Request

    /// The request frame up to and including the body's length; the body's bytes follow it on
    /// the wire (written separately, so a large update is not copied). `request.timeoutMilliseconds`
    /// (or the configuration's) is the transfer's total timeout.
    public static func encodeRequestHead(_ request: HTTPRequest, configuration: CurlClient.Configuration) throws(UploaderError) -> [UInt8] {
        var out = FrameWriter()
        out.bytes(requestMagic)
        switch request.method {
        case .get: out.u8(0)
        case .post: out.u8(1)
        case .delete: out.u8(2)
        }
        switch request.destination {
        case .memory:
            guard request.maxResponseBytes <= maxInlineBodyBytes else {
                throw .invalidRequest("maxResponseBytes \(request.maxResponseBytes) above the inline limit \(maxInlineBodyBytes)")
            }
            out.u8(0)
        case .fileDescriptor: out.u8(1)
        }
        let timeout = request.timeoutMilliseconds ?? configuration.timeoutMilliseconds
        guard (1 ... maxTimeoutMilliseconds).contains(timeout),
              (1 ... maxTimeoutMilliseconds).contains(configuration.connectTimeoutMilliseconds) else {
            throw .invalidRequest("timeouts must be in 1...\(maxTimeoutMilliseconds) ms")
        }
        guard (0 ... maxResponseLimit).contains(request.maxResponseBytes) else {
            throw .invalidRequest("maxResponseBytes \(request.maxResponseBytes) outside 0...\(maxResponseLimit)")
        }
        out.u32(UInt32(configuration.connectTimeoutMilliseconds))
        out.u32(UInt32(timeout))
        out.u64(UInt64(request.maxResponseBytes))
        try out.string(request.url)
        try out.string(configuration.userAgent)
        try out.optionalString(configuration.caFile)
        try out.optionalString(configuration.unixSocketPath)
        guard request.headers.count <= maxRequestHeaders else {
            throw .invalidRequest("\(request.headers.count) header fields; at most \(maxRequestHeaders)")
        }
        out.u16(UInt16(request.headers.count))
        for field in request.headers {
            try out.string(field.name)
            try out.string(field.value)
        }
        guard request.body.count <= maxRequestBodyBytes else {
            throw .invalidRequest("request body of \(request.body.count) bytes; at most \(maxRequestBodyBytes)")
        }
        out.u64(UInt64(request.body.count))
        return out.buffer
    }

    /// The whole request frame (head and body): for tests and small requests.
    public static func encodeRequest(_ request: HTTPRequest, configuration: CurlClient.Configuration) throws(UploaderError) -> [UInt8] {
        try encodeRequestHead(request, configuration: configuration) + request.body
    }

    /// Decodes a whole request frame. A `.fileDescriptor` destination comes back as
    /// `bodyFileDescriptor` (the helper's descriptor 3). Throws `invalidRequest` naming what is wrong.
    public static func decodeRequest(_ bytes: [UInt8]) throws(UploaderError) -> (HTTPRequest, CurlClient.Configuration) {
        guard bytes.count <= maxRequestFrameBytes else { throw .invalidRequest("request frame larger than \(maxRequestFrameBytes) bytes") }
        guard let lengths = try requestHeadLength(bytes) else {
            throw .invalidRequest("fetch request frame: truncated before the body")
        }
        return try decodeRequest(head: Array(bytes[0 ..< lengths.head]), body: Array(bytes[lengths.head...]))
    }

    /// Once `prefix` holds a request frame's whole head (every field before the body's bytes):
    /// the head's length and the body's; nil while more bytes are needed. Lets the helper read
    /// the body straight into a buffer of its exact size. Throws `invalidRequest` for a head
    /// that is already wrong.
    public static func requestHeadLength(_ prefix: [UInt8]) throws(UploaderError) -> (head: Int, body: Int)? {
        var input = FrameReader(prefix)
        do throws(FrameReader.Failure) {
            let head = try readRequestHead(&input)
            return (input.offset, head.bodyLength)
        } catch {
            if error.truncated { return nil }
            throw .invalidRequest("fetch request frame: \(error.message)")
        }
    }

    /// Decodes a request frame given as its head (`requestHeadLength`) and its body.
    public static func decodeRequest(head bytes: [UInt8], body: [UInt8]) throws(UploaderError) -> (HTTPRequest, CurlClient.Configuration) {
        var input = FrameReader(bytes)
        do throws(FrameReader.Failure) {
            let head = try readRequestHead(&input)
            guard input.isAtEnd else { throw FrameReader.Failure("\(input.remaining) bytes after the head") }
            guard body.count <= head.bodyLength else { throw FrameReader.Failure("\(body.count - head.bodyLength) bytes after the request") }
            guard body.count == head.bodyLength else {
                throw FrameReader.Failure("truncated: \(head.bodyLength) body bytes announced, \(body.count) sent", truncated: true)
            }
            let request = HTTPRequest(method: head.method, url: head.url, headers: head.headers, body: body,
                                      maxResponseBytes: head.maxResponseBytes, timeoutMilliseconds: head.timeout,
                                      destination: head.destination)
            let configuration = CurlClient.Configuration(caFile: head.caFile, connectTimeoutMilliseconds: head.connectTimeout,
                                                         timeoutMilliseconds: head.timeout, userAgent: head.userAgent,
                                                         unixSocketPath: head.unixSocketPath)
            return (request, configuration)
        } catch {
            throw .invalidRequest("fetch request frame: \(error.message)")
        }
    }

    /// A request frame's fields before the body.
    private struct RequestHead {
        var method: HTTPRequest.Method
        var destination: HTTPRequest.BodyDestination
        var connectTimeout: Int
        var timeout: Int
        var maxResponseBytes: Int
        var url: String
        var userAgent: String
        var caFile: String?
        var unixSocketPath: String?
        var headers: [HTTPField]
        var bodyLength: Int
    }

    private static func readRequestHead(_ input: inout FrameReader) throws(FrameReader.Failure) -> RequestHead {
        guard try input.bytes(4) == requestMagic else { throw FrameReader.Failure("bad magic (not a request frame)") }
        let method: HTTPRequest.Method
        switch try input.u8() {
        case 0: method = .get
        case 1: method = .post
        case 2: method = .delete
        case let other: throw FrameReader.Failure("unknown method \(other)")
        }
        let destination: HTTPRequest.BodyDestination
        switch try input.u8() {
        case 0: destination = .memory
        case 1: destination = .fileDescriptor(bodyFileDescriptor)
        case let other: throw FrameReader.Failure("unknown body destination \(other)")
        }
        let connectTimeout = Int(try input.u32())
        let timeout = Int(try input.u32())
        guard (1 ... maxTimeoutMilliseconds).contains(connectTimeout), (1 ... maxTimeoutMilliseconds).contains(timeout) else {
            throw FrameReader.Failure("timeout outside 1...\(maxTimeoutMilliseconds) ms")
        }
        let maxResponse = try input.u64()
        let responseLimit = destination == .memory ? maxInlineBodyBytes : maxResponseLimit
        guard maxResponse <= UInt64(responseLimit) else { throw FrameReader.Failure("response limit \(maxResponse) above \(responseLimit)") }
        let url = try input.string()
        let userAgent = try input.string()
        let caFile = try input.optionalString()
        let unixSocketPath = try input.optionalString()
        let headerCount = Int(try input.u16())
        guard headerCount <= maxRequestHeaders else { throw FrameReader.Failure("\(headerCount) header fields; at most \(maxRequestHeaders)") }
        var headers: [HTTPField] = []
        for _ in 0 ..< headerCount { headers.append(HTTPField(try input.string(), try input.string())) }
        let bodyLength = try input.u64()
        guard bodyLength <= UInt64(maxRequestBodyBytes) else { throw FrameReader.Failure("body of \(bodyLength) bytes; at most \(maxRequestBodyBytes)") }
        guard method == .post || bodyLength == 0 else { throw FrameReader.Failure("a body on a request that is not a POST") }
        return RequestHead(method: method, destination: destination, connectTimeout: connectTimeout, timeout: timeout,
                           maxResponseBytes: Int(maxResponse), url: url, userAgent: userAgent, caFile: caFile,
                           unixSocketPath: unixSocketPath, headers: headers, bodyLength: Int(bodyLength))
    }

    // MARK: - Response

    /// The response frame for what the transfer produced (a response or its failure). A
    /// failure other than transport, size, file system or invalid request is sent as an
    /// invalid request with its message.
    public static func encodeResponse(_ result: Result<HTTPResponse, UploaderError>) -> [UInt8] {
        var out = FrameWriter()
        out.bytes(responseMagic)
        switch result {
        case .success(let response):
            var kept: [HTTPField] = []
            var headerBytes = 0
            for field in response.headers.prefix(maxResponseHeaders) {
                let name = Array(field.name.utf8.prefix(maxStringBytes))
                let value = Array(field.value.utf8.prefix(maxStringBytes))
                headerBytes += name.count + value.count
                if headerBytes > 64 * 1024 { break }
                kept.append(HTTPField(String(decoding: name, as: UTF8.self), String(decoding: value, as: UTF8.self)))
            }
            out.u8(Outcome.response.rawValue)
            out.u16(UInt16(clamping: response.status))
            out.u16(UInt16(kept.count))
            for field in kept {
                out.rawString(Array(field.name.utf8))
                out.rawString(Array(field.value.utf8))
            }
            out.u64(UInt64(response.bodyByteCount))
            out.u64(UInt64(response.body.count))
            out.bytes(response.body)
        case .failure(let error):
            if error == .transport(.ok), let code = error.curlCode {
                out.u8(Outcome.transport.rawValue)
                out.u32(UInt32(truncatingIfNeeded: code.rawValue))
            } else {
                let outcome: Outcome
                if error == .responseTooLarge("") { outcome = .responseTooLarge }
                else if error == .fileSystem("") { outcome = .fileSystem }
                else { outcome = .invalidRequest }
                out.u8(outcome.rawValue)
                out.rawString(Array(error.message.utf8.prefix(maxStringBytes)))
            }
        }
        return out.buffer
    }

    /// Decodes the helper's answer to `request`: the response, or the failure the helper
    /// reported (`transport`, `responseTooLarge`, `fileSystem`, `invalidRequest`). A frame that
    /// breaks the format, or a response that does not fit `request` (an inline body for a file
    /// destination, more bytes than `maxResponseBytes`), throws `helperFailed`.
    public static func decodeResponse(_ bytes: [UInt8], for request: HTTPRequest) throws(UploaderError) -> Result<HTTPResponse, UploaderError> {
        guard bytes.count <= maxResponseFrameBytes else { throw .helperFailed("response frame larger than \(maxResponseFrameBytes) bytes") }
        var input = FrameReader(bytes)
        do throws(FrameReader.Failure) {
            guard try input.bytes(4) == responseMagic else { throw FrameReader.Failure("bad magic (not a response frame)") }
            let outcome = try input.u8()
            let result: Result<HTTPResponse, UploaderError>
            switch Outcome(rawValue: outcome) {
            case .response:
                let status = Int(try input.u16())
                guard (100 ... 999).contains(status) else { throw FrameReader.Failure("status \(status)") }
                let headerCount = Int(try input.u16())
                guard headerCount <= maxResponseHeaders else { throw FrameReader.Failure("\(headerCount) header fields; at most \(maxResponseHeaders)") }
                var headers: [HTTPField] = []
                for _ in 0 ..< headerCount { headers.append(HTTPField(try input.string(), try input.string())) }
                let received = try input.u64()
                guard received <= UInt64(request.maxResponseBytes) else {
                    throw FrameReader.Failure("\(received) body bytes; the request allowed \(request.maxResponseBytes)")
                }
                let inline = try input.u64()
                let expectedInline: UInt64 = request.destination == .memory ? received : 0
                guard inline == expectedInline else { throw FrameReader.Failure("\(inline) inline body bytes; expected \(expectedInline)") }
                let body = try input.bytes(Int(inline))
                result = .success(HTTPResponse(status: status, headers: headers, body: body, bodyByteCount: Int(received)))
            case .transport:
                let code = try input.u32()
                guard code != 0, code < 1000 else { throw FrameReader.Failure("curl code \(code)") }
                result = .failure(.transport(CurlCode(rawValue: Int(code))))
            case .responseTooLarge:
                result = .failure(.responseTooLarge(try input.string()))
            case .fileSystem:
                result = .failure(.fileSystem(try input.string()))
            case .invalidRequest:
                result = .failure(.invalidRequest(try input.string()))
            case nil:
                throw FrameReader.Failure("unknown outcome \(outcome)")
            }
            guard input.isAtEnd else { throw FrameReader.Failure("\(input.remaining) bytes after the response") }
            return result
        } catch {
            throw .helperFailed("hearth-fetch answered a malformed frame: \(error.message)")
        }
    }
}

/// Appends little-endian fields.
struct FrameWriter {
    var buffer: [UInt8] = []

    mutating func bytes(_ values: [UInt8]) { buffer.append(contentsOf: values) }
    mutating func u8(_ value: UInt8) { buffer.append(value) }
    mutating func u16(_ value: UInt16) { for shift in stride(from: 0, to: 16, by: 8) { buffer.append(UInt8(truncatingIfNeeded: value >> UInt16(shift))) } }
    mutating func u32(_ value: UInt32) { for shift in stride(from: 0, to: 32, by: 8) { buffer.append(UInt8(truncatingIfNeeded: value >> UInt32(shift))) } }
    mutating func u64(_ value: UInt64) { for shift in stride(from: 0, to: 64, by: 8) { buffer.append(UInt8(truncatingIfNeeded: value >> UInt64(shift))) } }

    /// A string already known to be within `maxStringBytes`.
    mutating func rawString(_ utf8: [UInt8]) {
        u32(UInt32(utf8.count))
        bytes(utf8)
    }

    mutating func string(_ value: String) throws(UploaderError) {
        let utf8 = Array(value.utf8)
        guard utf8.count <= FetchFraming.maxStringBytes else {
            throw .invalidRequest("a field of \(utf8.count) bytes; at most \(FetchFraming.maxStringBytes)")
        }
        rawString(utf8)
    }

    mutating func optionalString(_ value: String?) throws(UploaderError) {
        guard let value else { return u8(0) }
        u8(1)
        try string(value)
    }
}

/// Reads little-endian fields, failing on truncation.
struct FrameReader {
    struct Failure: Error {
        let message: String
        /// The input ended before the field did (more bytes may complete it).
        let truncated: Bool
        init(_ message: String, truncated: Bool = false) {
            self.message = message
            self.truncated = truncated
        }
    }

    private let input: [UInt8]
    private(set) var offset = 0

    init(_ input: [UInt8]) { self.input = input }

    var remaining: Int { input.count - offset }
    var isAtEnd: Bool { offset == input.count }

    mutating func bytes(_ count: Int) throws(Failure) -> [UInt8] {
        guard count >= 0, count <= remaining else { throw Failure("truncated: \(count) bytes wanted, \(remaining) left", truncated: true) }
        defer { offset += count }
        return Array(input[offset ..< offset + count])
    }

    mutating func u8() throws(Failure) -> UInt8 { try bytes(1)[0] }

    private mutating func littleEndian(_ width: Int) throws(Failure) -> UInt64 {
        let raw = try bytes(width)
        var value: UInt64 = 0
        for (index, byte) in raw.enumerated() { value |= UInt64(byte) << UInt64(8 * index) }
        return value
    }

    mutating func u16() throws(Failure) -> UInt16 { UInt16(try littleEndian(2)) }
    mutating func u32() throws(Failure) -> UInt32 { UInt32(try littleEndian(4)) }
    mutating func u64() throws(Failure) -> UInt64 { try littleEndian(8) }

    mutating func string() throws(Failure) -> String {
        let count = Int(try u32())
        guard count <= FetchFraming.maxStringBytes else { throw Failure("a field of \(count) bytes; at most \(FetchFraming.maxStringBytes)") }
        let raw = try bytes(count)
        guard raw.allSatisfy({ $0 != 0 }) else { throw Failure("a NUL byte in a string field") }
        return String(decoding: raw, as: UTF8.self)
    }

    mutating func optionalString() throws(Failure) -> String? {
        switch try u8() {
        case 0: return nil
        case 1: return try string()
        case let other: throw Failure("optional field flag \(other)")
        }
    }
}
