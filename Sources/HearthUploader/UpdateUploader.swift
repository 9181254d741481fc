import HearthPrivacy
import Logging

/// What happened to one upload attempt.
public enum UploadOutcome: Sendable, Hashable {
    /// 2xx: the aggregator stored the update (durably, before answering).
    case accepted
    /// 2xx with `Idempotent-Replayed: true`: the aggregator had already counted this
    /// idempotency key. Delivered; do not send again.
    case duplicate
    /// 408, 429, 5xx or a network failure: try again later; `after` is the server's
    /// `Retry-After` when it sent one (feed it to `Backoff.delay(attempt:retryAfter:using:)`).
    case retryLater(after: Duration?)
    /// Any other status (4xx other than 408/429, or an unexpected 1xx/3xx): do not retry the
    /// same bytes; report. `status` 0 means refused locally before sending (bad credential).
    case rejected(status: Int, reason: String)

    /// Whether the server acknowledged the update (accepted or duplicate).
    public var isDelivered: Bool {
        switch self {
        case .accepted, .duplicate: return true
        case .retryLater, .rejected: return false
        }
    }
}

/// One update waiting in the durable outbox.
public struct OutboxEntry: Sendable, Hashable {
    /// The outbox's own identifier.
    public var id: Int64
    /// The idempotency key chosen when the update was made (the same on every attempt).
    public var idempotencyKey: IdempotencyKey
    /// The encoded `UpdateEnvelope`.
    public var body: [UInt8]
    /// Attempts made so far.
    public var attempts: Int

    public init(id: Int64, idempotencyKey: IdempotencyKey, body: [UInt8], attempts: Int = 0) {
        self.id = id
        self.idempotencyKey = idempotencyKey
        self.body = body
        self.attempts = attempts
    }
}

/// The durable outbox the uploader drains (the SQLite store implements it).
///
/// `pending` returns entries due now (the outbox applies its own retry times); `recordAttempt`
/// is called after every attempt that did not deliver; `markDelivered` only after the server
/// acknowledged the entry.
public protocol UploadOutbox: Sendable {
    func pending(limit: Int) async throws -> [OutboxEntry]
    func recordAttempt(id: Int64, outcome: UploadOutcome) async throws
    func markDelivered(id: Int64) async throws
}

/// What one `drain` did.
public struct DrainReport: Sendable, Hashable {
    /// Entries the server accepted.
    public var accepted: [Int64] = []
    /// Entries the server had already counted.
    public var duplicates: [Int64] = []
    /// Entries the server rejected (status, reason).
    public var rejected: [Int64] = []
    /// Set when draining stopped early because the server or network asked to retry later:
    /// the entry that hit it and the server's `Retry-After`, if any.
    public var retryLaterEntry: Int64?
    public var retryAfter: Duration?
    /// Whether draining stopped because of a retryable failure.
    public var stoppedForRetry: Bool { retryLaterEntry != nil }

    public init() {}
}

/// Uploads update envelopes to the aggregator (`POST {baseURL}/v1/updates`).
public struct UpdateUploader: Sendable {
    /// The aggregator's base URL, e.g. `https://aggregator.example:8443` (no trailing slash needed).
    public let baseURL: String
    public let client: CurlClient
    public let logger: Logger
    /// Largest response body read (reasons are short).
    public var maxResponseBytes = 16 * 1024
    /// Called after every attempt with how the exchange went: the answer's HTTP status, or the
    /// transfer error (the agent feeds its `aggregator_*` conditions from it).
    public var onExchange: (@Sendable (Result<Int, UploaderError>) async -> Void)?

    public init(baseURL: String, client: CurlClient, logger: Logger) {
        self.baseURL = baseURL
        self.client = client
        self.logger = logger
    }

    /// The full URL of the updates endpoint.
    public var updatesURL: String { joinURL(baseURL, "/v1/updates") }

    /// Sends one encoded envelope with its idempotency key and the device credential.
    public func upload(_ envelope: [UInt8], idempotencyKey: IdempotencyKey,
                       deviceCredential: String) async -> UploadOutcome {
        guard isValidCredential(deviceCredential) else {
            logger.error("device credential is empty or contains characters not allowed in a header; not uploading")
            return .rejected(status: 0, reason: "invalid device credential")
        }
        let request = HTTPRequest(
            method: .post, url: updatesURL,
            headers: [
                HTTPField("Content-Type", UpdateEnvelope.contentType),
                HTTPField("Idempotency-Key", idempotencyKey.hex),
                HTTPField("Authorization", "Bearer \(deviceCredential)"),
            ],
            body: envelope, maxResponseBytes: maxResponseBytes)
        let response: HTTPResponse
        do throws(UploaderError) {
            response = try await client.perform(request)
        } catch {
            if let onExchange { await onExchange(.failure(error)) }
            logger.warning("update upload failed; will retry", metadata: [
                "idempotency_key": "\(idempotencyKey.hex)", "error": "\(error.message)",
            ])
            return .retryLater(after: nil)
        }
        if let onExchange { await onExchange(.success(response.status)) }
        let outcome = UpdateUploader.classify(response)
        switch outcome {
        case .accepted, .duplicate:
            logger.info("update delivered", metadata: [
                "idempotency_key": "\(idempotencyKey.hex)", "status": "\(response.status)",
                "duplicate": "\(outcome == .duplicate)", "bytes": "\(envelope.count)",
            ])
        case .retryLater(let after):
            logger.warning("aggregator asked to retry later", metadata: [
                "idempotency_key": "\(idempotencyKey.hex)", "status": "\(response.status)",
                "retry_after": "\(after.map { "\($0)" } ?? "none")",
            ])
        case .rejected(let status, let reason):
            logger.error("aggregator rejected update", metadata: [
                "idempotency_key": "\(idempotencyKey.hex)", "status": "\(status)", "reason": "\(reason)",
            ])
        }
        return outcome
    }

    /// Maps a response to an outcome (pure; see `UploadOutcome`).
    public static func classify(_ response: HTTPResponse) -> UploadOutcome {
        let status = response.status
        switch status {
        case 200 ..< 300:
            if let replayed = response.header("Idempotent-Replayed"), asciiLowercased(replayed) == "true" {
                return .duplicate
            }
            return .accepted
        case 408, 429, 500 ..< 600:
            return .retryLater(after: Backoff.parseRetryAfter(response.header("Retry-After")))
        default:
            return .rejected(status: status, reason: reasonText(response))
        }
    }

    /// Uploads every pending entry (in batches of `batchSize`) until the outbox is empty, the
    /// server asks to retry later, or `maxEntries` were attempted. An entry is marked delivered
    /// only after the server acknowledged it (accepted or duplicate).
    public func drain<Outbox: UploadOutbox>(outbox: Outbox, deviceCredential: String,
                                            batchSize: Int = 16, maxEntries: Int = 1024) async throws -> DrainReport {
        var report = DrainReport()
        var attempted = 0
        var seen = Set<Int64>()
        while attempted < maxEntries {
            let batch = try await outbox.pending(limit: max(1, min(batchSize, maxEntries - attempted)))
                .filter { !seen.contains($0.id) }
            if batch.isEmpty { break }
            for entry in batch {
                seen.insert(entry.id)
                attempted += 1
                let outcome = await upload(entry.body, idempotencyKey: entry.idempotencyKey,
                                           deviceCredential: deviceCredential)
                switch outcome {
                case .accepted:
                    try await outbox.markDelivered(id: entry.id)
                    report.accepted.append(entry.id)
                case .duplicate:
                    try await outbox.markDelivered(id: entry.id)
                    report.duplicates.append(entry.id)
                case .rejected:
                    try await outbox.recordAttempt(id: entry.id, outcome: outcome)
                    report.rejected.append(entry.id)
                case .retryLater(let after):
                    try await outbox.recordAttempt(id: entry.id, outcome: outcome)
                    report.retryLaterEntry = entry.id
                    report.retryAfter = after
                    return report
                }
            }
        }
        return report
    }

    private static func reasonText(_ response: HTTPResponse) -> String {
        if let reason = response.header("X-Hearth-Reason"), !reason.isEmpty { return reason }
        let prefix = response.body.prefix(512).map { $0 < 0x20 && $0 != 0x09 ? 0x20 : $0 }
        let text = String(decoding: prefix, as: UTF8.self)
        var trimmed = Substring(text)
        while let last = trimmed.last, last == " " { trimmed.removeLast() }
        while let first = trimmed.first, first == " " { trimmed.removeFirst() }
        return trimmed.isEmpty ? "HTTP \(response.status)" : String(trimmed)
    }
}

func isValidCredential(_ credential: String) -> Bool {
    !credential.isEmpty && credential.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F }
}

func joinURL(_ base: String, _ path: String) -> String {
    var base = Substring(base)
    while base.hasSuffix("/") { base.removeLast() }
    return base + path
}
