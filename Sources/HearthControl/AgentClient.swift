#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import HearthLocalAPI
import HearthCurl
import HearthUploader

/// Where `hearthctl` finds the agent: `--socket`, else `$HEARTH_SOCKET`, else the default.
public enum AgentSocket {
    /// The agent's default socket path.
    public static let defaultPath = "/run/hearth/agent.sock"
    /// The environment variable naming the socket.
    public static let environmentVariable = "HEARTH_SOCKET"

    /// The socket to use: the option if given, else the environment value if non-empty, else
    /// `defaultPath`.
    public static func resolve(option: String?, environmentValue: String?) -> String {
        if let option, !option.isEmpty { return option }
        if let environmentValue, !environmentValue.isEmpty { return environmentValue }
        return defaultPath
    }

    /// `resolve` with the process environment.
    public static func resolve(option: String?) -> String {
        let value = getenv(environmentVariable).map { String(cString: $0) }
        return resolve(option: option, environmentValue: value)
    }
}

/// A client of the agent's local API (HTTP/1.1 + JSON over its Unix socket), on libcurl.
public struct AgentClient: Sendable {
    /// The agent's socket.
    public let socketPath: String
    private let curl: CurlClient

    /// Largest answer accepted (the privacy ledger can be long).
    public static let maxResponseBytes = 16 << 20

    /// A client of the agent listening on `socketPath`.
    public init(socketPath: String, connectTimeoutMilliseconds: Int = 5_000, timeoutMilliseconds: Int = 60_000) {
        self.socketPath = socketPath
        self.curl = CurlClient(configuration: CurlClient.Configuration(
            connectTimeoutMilliseconds: connectTimeoutMilliseconds, timeoutMilliseconds: timeoutMilliseconds,
            userAgent: "hearthctl", unixSocketPath: socketPath
        ))
    }

    /// `GET target` (path and query); the parsed JSON answer.
    public func get(_ target: String) async throws(ControlError) -> JSONValue {
        try await send(.get, target, body: nil)
    }

    /// `POST target` with `body`; the parsed JSON answer.
    public func post(_ target: String, body: JSONValue) async throws(ControlError) -> JSONValue {
        try await send(.post, target, body: body)
    }

    /// `DELETE target`; the parsed JSON answer.
    public func delete(_ target: String) async throws(ControlError) -> JSONValue {
        try await send(.delete, target, body: nil)
    }

    private func send(_ method: HTTPRequest.Method, _ target: String, body: JSONValue?) async throws(ControlError) -> JSONValue {
        var headers = [HTTPField("Accept", "application/json")]
        if body != nil { headers.append(HTTPField("Content-Type", "application/json")) }
        let request = HTTPRequest(method: method, url: "http://localhost" + target, headers: headers,
                                  body: body?.serializedBytes() ?? [], maxResponseBytes: AgentClient.maxResponseBytes)
        let response: HTTPResponse
        do throws(UploaderError) {
            response = try await curl.perform(request)
        } catch {
            throw transportError(error)
        }
        let parsed = try? JSONParser(maxDepth: 64).parse(response.body)
        guard (200 ..< 300).contains(response.status) else {
            let object = parsed?.objectValue
            let message = object?["error"]?.stringValue ?? "HTTP \(response.status) with no error message"
            throw .http(status: response.status, error: message, field: object?["field"]?.stringValue)
        }
        guard let parsed else {
            throw .invalidResponse("the agent's answer to \(target) is not valid JSON")
        }
        return parsed
    }

    /// Maps a transport failure to "cannot reach the agent" with the most useful reason; other
    /// failures (an oversized answer) are invalid responses.
    private func transportError(_ error: UploaderError) -> ControlError {
        guard let code = error.curlCode else {
            return .invalidResponse("talking to the agent at \(socketPath) failed: \(error.message)")
        }
        var info = stat()
        if stat(socketPath, &info) != 0 {
            let reason = String(cString: strerror(errno))
            return .unreachable(socketPath: socketPath, reason: "\(reason) (is hearth-agent running?)")
        }
        if (info.st_mode & S_IFMT) != S_IFSOCK {
            return .unreachable(socketPath: socketPath, reason: "not a socket")
        }
        if code == .couldntConnect {
            return .unreachable(socketPath: socketPath, reason: "connection refused (is hearth-agent running?)")
        }
        return .unreachable(socketPath: socketPath, reason: code.message)
    }
}
