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

    public init(status: Int, headers: [HTTPField], body: [UInt8], bodyByteCount: Int) {
        self.status = status
        self.headers = headers
        self.body = body
        self.bodyByteCount = bodyByteCount
    }

    /// The first header named `name` (case-insensitive ASCII), trimmed.
    public func header(_ name: String) -> String? {
        let wanted = asciiLowercased(name)
        return headers.first { asciiLowercased($0.name) == wanted }?.value
    }
}

/// `s` with ASCII capitals lowered (header names compare this way).
public func asciiLowercased(_ s: String) -> String {
    String(decoding: s.utf8.map { $0 >= 0x41 && $0 <= 0x5A ? $0 + 0x20 : $0 }, as: UTF8.self)
}
