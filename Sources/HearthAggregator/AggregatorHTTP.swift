import HTTPTypes
import HearthAggregation
import HearthConfig
import HearthCore
import HearthLocalAPI
import HearthPrivacy
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOCore
import NIOSSL

/// The aggregator's HTTP routes on Hummingbird.
///
/// | Route | Auth | Answer |
/// |---|---|---|
/// | `GET /v1/plan` | device | the `PlanDocument` (JSON) |
/// | `GET /v1/model` | device | the signed model file; `ETag`, `If-None-Match` → 304, `X-Hearth-Signature` |
/// | `POST /v1/updates` | device | 200 accepted, 200 + `Idempotent-Replayed: true`, or 4xx with `X-Hearth-Reason` |
/// | `GET /v1/privacy` | device | the central ledger (JSON) |
/// | `GET /metrics` | none | Prometheus text |
/// | `GET /healthz` | none | `ok` |
///
/// Devices authenticate with `Authorization: Bearer <credential>`; a missing or malformed
/// header is 401, an unknown or revoked credential 403.
public enum AggregatorHTTP {
    static let reasonHeader = headerName("X-Hearth-Reason")
    static let signatureHeader = headerName("X-Hearth-Signature")
    static let idempotencyKeyHeader = headerName("Idempotency-Key")
    static let replayedHeader = headerName("Idempotent-Replayed")

    /// A header name from a literal of this file (all valid RFC 9110 tokens).
    private static func headerName(_ token: StaticString) -> HTTPField.Name {
        guard let name = HTTPField.Name("\(token)") else { preconditionFailure("'\(token)' is not an HTTP token") }
        return name
    }

    /// The router for `aggregator`, authenticating against `devices`.
    public static func router(aggregator: Aggregator, devices: DeviceDirectory, metrics: AggregatorMetrics,
                              maxBodyBytes: Int) -> Router<BasicRequestContext> {
        let router = Router()
        router.add(middleware: LatencyMiddleware(metrics: metrics))

        router.get("/healthz") { _, _ in text(.ok, "ok\n") }

        router.get("/metrics") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                     body: .init(byteBuffer: ByteBuffer(bytes: metrics.render())))
        }

        router.get("/v1/plan") { request, _ in
            let device: String
            switch await devices.authenticate(request.headers[.authorization]) {
            case .failure(let response): return response.response
            case .success(let name): device = name
            }
            return json(await aggregator.planDocument(device: device).json)
        }

        router.get("/v1/model") { request, _ in
            if case .failure(let response) = await devices.authenticate(request.headers[.authorization]) {
                return response.response
            }
            let model = await aggregator.currentModel()
            var headers: HTTPFields = [.eTag: model.etag, .cacheControl: "no-cache"]
            if let match = request.headers[.ifNoneMatch], match.split(separator: ",").contains(where: {
                $0.trimmingCharacters() == model.etag || $0.trimmingCharacters() == "*"
            }) {
                return Response(status: .notModified, headers: headers)
            }
            headers[.contentType] = "application/vnd.hearth.model"
            headers[signatureHeader] = Base64.encode(model.signature)
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: model.body))
        }

        router.get("/v1/privacy") { request, _ in
            if case .failure(let response) = await devices.authenticate(request.headers[.authorization]) {
                return response.response
            }
            do {
                return json(try await aggregator.privacyReport().json)
            } catch {
                return text(.serviceUnavailable, "\(error)\n")
            }
        }

        router.post("/v1/updates") { request, _ in
            let device: String
            switch await devices.authenticate(request.headers[.authorization]) {
            case .failure(let response): metrics.rejected(reason: response.reason); return response.response
            case .success(let name): device = name
            }
            let contentType = request.headers[.contentType]?.split(separator: ";").first.map { $0.trimmingCharacters() }
            guard contentType == UpdateEnvelope.contentType else {
                metrics.rejected(reason: "unsupported_media_type")
                return rejection(.unsupportedMediaType, "unsupported_media_type",
                                 "the body must be \(UpdateEnvelope.contentType)", retryAfter: nil)
            }
            if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > maxBodyBytes {
                metrics.rejected(reason: "body_too_large")
                return rejection(.contentTooLarge, "body_too_large", "the body is \(length) bytes; the limit is \(maxBodyBytes)", retryAfter: nil)
            }
            let buffer: ByteBuffer
            do {
                buffer = try await request.body.collect(upTo: maxBodyBytes)
            } catch is NIOTooManyBytesError {
                metrics.rejected(reason: "body_too_large")
                return rejection(.contentTooLarge, "body_too_large", "the body exceeds \(maxBodyBytes) bytes", retryAfter: nil)
            } catch {
                // The client went away or the stream broke: nothing was read, nothing is stored.
                metrics.rejected(reason: "incomplete_body")
                return rejection(.badRequest, "incomplete_body", "the body could not be read: \(error)", retryAfter: nil)
            }
            let body = Array(buffer.readableBytesView)
            let outcome = await aggregator.accept(device: device, body: body,
                                                  idempotencyKeyHeader: request.headers[idempotencyKeyHeader])
            switch outcome {
            case .accepted(let published):
                var fields: HTTPFields = [.contentType: "application/json"]
                fields[.cacheControl] = "no-store"
                let answer: JSONValue = ["status": "accepted", "published_version": published.map { .integer(Int64($0)) } ?? .null]
                return Response(status: .ok, headers: fields, body: .init(byteBuffer: ByteBuffer(bytes: answer.serializedBytes())))
            case .replayed:
                var fields: HTTPFields = [.contentType: "application/json"]
                fields[replayedHeader] = "true"
                let answer: JSONValue = ["status": "duplicate"]
                return Response(status: .ok, headers: fields, body: .init(byteBuffer: ByteBuffer(bytes: answer.serializedBytes())))
            case .rejected(let status, let reason, let message, let retryAfter):
                return rejection(HTTPResponse.Status(code: status), reason, message, retryAfter: retryAfter)
            }
        }
        return router
    }

    static func rejection(_ status: HTTPResponse.Status, _ reason: String, _ message: String, retryAfter: Int?) -> Response {
        var fields: HTTPFields = [.contentType: "text/plain; charset=utf-8"]
        fields[reasonHeader] = reason
        if let retryAfter { fields[.retryAfter] = String(retryAfter) }
        return Response(status: status, headers: fields, body: .init(byteBuffer: ByteBuffer(string: reason + ": " + message + "\n")))
    }

    static func text(_ status: HTTPResponse.Status, _ body: String) -> Response {
        Response(status: status, headers: [.contentType: "text/plain; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: body)))
    }

    static func json(_ value: JSONValue) -> Response {
        Response(status: .ok, headers: [.contentType: "application/json"],
                 body: .init(byteBuffer: ByteBuffer(bytes: value.serializedBytes())))
    }

    /// The server builder: HTTPS when the configuration names a certificate and key, else
    /// plain HTTP (the configuration only allows that on loopback), with the server's limits:
    /// - at most `server.max_connections` open connections; one more is answered 503
    ///   `too_many_connections` (closed at once under TLS) and counted in
    ///   `hearth_connections_refused_total`, while the admitted ones keep being served;
    /// - a request (head and body) must arrive within `server.request_timeout_seconds` of its
    ///   first byte, or it is answered 408 `request_timeout`, counted, and its connection closed;
    /// - a connection with no request in progress is closed after `server.idle_timeout_seconds`.
    public static func serverBuilder(_ configuration: AggregatorConfiguration, metrics: AggregatorMetrics,
                                     logger: Logger) throws(AggregatorError) -> HTTPServerBuilder {
        let http = HTTP1Channel.Configuration(additionalChannelHandlers: [RequestPhaseHandler()],
                                              idleTimeout: .seconds(Int64(configuration.idleTimeoutSeconds)))
        let counter = ConnectionCounter(maximum: configuration.maxConnections)
        let requestTimeout = TimeAmount.seconds(Int64(configuration.requestTimeoutSeconds))
        guard !configuration.tlsCertificate.isEmpty else {
            return HTTPServerBuilder { responder in
                let deadline = RequestDeadlineChannel(base: HTTP1Channel(responder: responder, configuration: http),
                                                      timeout: requestTimeout, metrics: metrics, logger: logger)
                return ConnectionCapChannel(base: deadline, counter: counter, answersRefusal: true, metrics: metrics, logger: logger)
            }
        }
        let tls: TLSConfiguration
        do {
            let chain = try NIOSSLCertificate.fromPEMFile(configuration.tlsCertificate).map { NIOSSLCertificateSource.certificate($0) }
            let key = try NIOSSLPrivateKey(file: configuration.tlsKey, format: .pem)
            var server = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key))
            server.minimumTLSVersion = .tlsv12
            tls = server
        } catch {
            throw .configuration("cannot load the TLS certificate/key (\(configuration.tlsCertificate), \(configuration.tlsKey)): \(error)")
        }
        return HTTPServerBuilder { responder in
            // The deadline handler sits behind TLS (it reads and answers plaintext); the cap in
            // front of it, so a refused connection costs no handshake.
            let deadline = RequestDeadlineChannel(base: HTTP1Channel(responder: responder, configuration: http),
                                                  timeout: requestTimeout, metrics: metrics, logger: logger)
            return ConnectionCapChannel(base: try TLSChannel(deadline, tlsConfiguration: tls), counter: counter,
                                        answersRefusal: false, metrics: metrics, logger: logger)
        }
    }
}

/// Looks devices up by the SHA-256 of their bearer credential (cached per credential hash).
public actor DeviceDirectory {
    private let store: AggregatorStore
    private let logger: Logger

    /// A directory over its own connection to the store (`store` must not be used elsewhere).
    public init(store: sending AggregatorStore, logger: Logger) {
        self.store = store
        self.logger = logger
    }

    struct Refusal: Error {
        var reason: String
        var response: Response
    }

    /// The device name, or the 401/403 answer.
    func authenticate(_ header: String?) -> Result<String, Refusal> {
        guard let token = DeviceCredential.bearer(header) else {
            var fields: HTTPFields = [.wwwAuthenticate: "Bearer realm=\"hearth\""]
            fields[AggregatorHTTP.reasonHeader] = "unauthenticated"
            return .failure(Refusal(reason: "unauthenticated", response: Response(
                status: .unauthorized, headers: fields,
                body: .init(byteBuffer: ByteBuffer(string: "unauthenticated: send Authorization: Bearer <device credential>\n")))))
        }
        do {
            guard let found = try store.device(tokenHash: DeviceCredential.hash(token)) else {
                return .failure(Refusal(reason: "unknown_device", response: AggregatorHTTP.rejection(
                    .forbidden, "unknown_device", "this credential belongs to no enrolled device", retryAfter: nil)))
            }
            guard !found.revoked else {
                return .failure(Refusal(reason: "revoked_device", response: AggregatorHTTP.rejection(
                    .forbidden, "revoked_device", "device '\(found.name)' has been revoked", retryAfter: nil)))
            }
            return .success(found.name)
        } catch {
            logger.error("device lookup failed", metadata: ["error": "\(error)"])
            return .failure(Refusal(reason: "store_unavailable", response: AggregatorHTTP.rejection(
                .serviceUnavailable, "store_unavailable", "cannot check credentials right now", retryAfter: 30)))
        }
    }
}

/// Records each request's latency in `hearth_request_duration_seconds{route}`.
struct LatencyMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext
    let metrics: AggregatorMetrics

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        let route = ["/v1/plan", "/v1/model", "/v1/updates", "/v1/privacy", "/metrics", "/healthz"].first { $0 == request.uri.path } ?? "other"
        defer { metrics.latency(route: route).record(ContinuousClock.now - start) }
        return try await next(request, context)
    }
}

extension Substring {
    fileprivate func trimmingCharacters() -> String {
        var s = self
        while s.first == " " { s = s.dropFirst() }
        while s.last == " " { s = s.dropLast() }
        return String(s)
    }
}
