/// Performs one HTTP exchange for `CurlClient`.
///
/// Two implementations: `InProcessCurlTransport` (module `HearthCurl`: libcurl in this process,
/// for hearth-sim, hearthctl, the tools and tests) and `FetchHelperTransport` (module
/// `HearthUploader`: libcurl in a short-lived `hearth-fetch` process, for the agent, which then
/// never maps libcurl and its TLS libraries; docs/agent.md).
public protocol HTTPTransport: Sendable {
    /// Performs `request` with `configuration`'s CA file, timeouts and user agent. Any HTTP
    /// status is a successful exchange; failures throw `UploaderError`.
    func perform(_ request: HTTPRequest, configuration: CurlClient.Configuration) async throws(UploaderError) -> HTTPResponse
}

/// An HTTP(S) client over libcurl: the settings every request shares and the transport that
/// runs them (in process or in the `hearth-fetch` helper).
///
/// Redirects are not followed; only http and https are allowed.
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
    /// What runs the requests.
    public let transport: any HTTPTransport

    /// A client running its requests through `transport`.
    public init(configuration: Configuration = Configuration(), transport: any HTTPTransport) {
        self.configuration = configuration
        self.transport = transport
    }

    /// Performs `request`. Throws `transport` (with the curl code), `responseTooLarge`,
    /// `fileSystem` (writing to the destination failed), `invalidRequest`, or `helperFailed`
    /// (the `hearth-fetch` process was missing, killed, too slow or answered garbage).
    /// Any HTTP status is a successful transfer: the caller interprets it.
    public func perform(_ request: HTTPRequest) async throws(UploaderError) -> HTTPResponse {
        try await transport.perform(request, configuration: configuration)
    }
}
