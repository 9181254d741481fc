/// Errors of the uploader and the model fetcher.
///
/// One struct over a private code enum (the style of `CoreError`), so new cases can be added
/// without breaking callers, with a message that says what was wrong. Compare by kind with `==`
/// against the static constructors (`error == .badSignature("")`).
public struct UploaderError: Error, Hashable, Sendable {
    private enum Code: Hashable, Sendable {
        case transport
        case responseTooLarge
        case invalidRequest
        case fileSystem
        case unexpectedStatus
        case missingSignature
        case badSignature
        case corruptModel
        case invalidConfiguration
        case helperFailed
    }

    private let code: Code
    /// What went wrong, for people.
    public let message: String
    /// The libcurl code, for transport errors.
    public let curlCode: CurlCode?
    /// The HTTP status, for `unexpectedStatus`.
    public let status: Int?

    private init(_ code: Code, _ message: String, curlCode: CurlCode? = nil, status: Int? = nil) {
        self.code = code
        self.message = message
        self.curlCode = curlCode
        self.status = status
    }

    /// libcurl failed the transfer (connection refused, timeout, TLS, ...): worth retrying later.
    public static func transport(_ code: CurlCode) -> UploaderError {
        UploaderError(.transport, "transfer failed: \(code.message) (curl code \(code.rawValue))", curlCode: code)
    }
    /// The response body exceeded the configured size cap; the transfer was aborted.
    public static func responseTooLarge(_ message: String) -> UploaderError { UploaderError(.responseTooLarge, message) }
    /// The request is unusable (a header with CR/LF, an empty URL, ...).
    public static func invalidRequest(_ message: String) -> UploaderError { UploaderError(.invalidRequest, message) }
    /// A file operation (create, write, fsync, rename, link) failed.
    public static func fileSystem(_ message: String) -> UploaderError { UploaderError(.fileSystem, message) }
    /// The server answered with a status the caller cannot use.
    public static func unexpectedStatus(_ status: Int, _ message: String) -> UploaderError {
        UploaderError(.unexpectedStatus, message, status: status)
    }
    /// A downloaded model came without a signature header.
    public static func missingSignature(_ message: String) -> UploaderError { UploaderError(.missingSignature, message) }
    /// A downloaded model's Ed25519 signature does not verify against the configured public key.
    public static func badSignature(_ message: String) -> UploaderError { UploaderError(.badSignature, message) }
    /// A downloaded model verified but `ModelFile.decode` rejected it.
    public static func corruptModel(_ message: String) -> UploaderError { UploaderError(.corruptModel, message) }
    /// A configuration value (public key, URL, directory) is unusable.
    public static func invalidConfiguration(_ message: String) -> UploaderError { UploaderError(.invalidConfiguration, message) }

    /// The `hearth-fetch` helper process could not run the exchange: missing or not executable,
    /// killed, still running past the request's timeout, or its output broke the framing
    /// (docs/formats.md). Worth retrying later, like `transport`.
    public static func helperFailed(_ message: String) -> UploaderError { UploaderError(.helperFailed, message) }

    /// Errors compare by kind, not message.
    public static func == (lhs: UploaderError, rhs: UploaderError) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}

extension UploaderError: CustomStringConvertible {
    public var description: String { message }
}
