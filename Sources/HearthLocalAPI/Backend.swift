import HearthCore

/// What the local API server asks of the agent. The server validates every request before it
/// calls the backend; the backend does the work (event log, model, ledger) and may throw
/// `LocalAPIError` to choose the HTTP status. Any other error becomes a 500 (logged, message
/// not sent), except `CoreError`, which becomes a 400 with its message.
public protocol LocalAPIBackend: Sendable {
    /// Stores a whole validated batch, atomically, and returns once it is durable. The server
    /// answers 200 only after this returns.
    func ingest(_ events: [EventRecord]) async throws -> IngestResult
    /// Top `k` items for `session`, never any id in `exclude`.
    func recommendations(session: String, k: Int, exclude: [String]) async throws -> [RankedItem]
    /// `candidates` re-ranked for `session`, best first (unknown ids may be dropped or kept last).
    func rank(session: String, candidates: [String]) async throws -> [RankedItem]
    /// The agent's state for `GET /v1/status`.
    func status() async throws -> StatusReport
    /// The privacy ledger for `GET /v1/privacy`.
    func privacy() async throws -> PrivacyReport
    /// The device's local interest profile for `GET /v1/profile`.
    func profile() async throws -> ProfileReport
    /// Erases all events and local state; returns once the erasure is durable.
    func eraseAll() async throws -> EraseResult
}

/// Something the server can put in a response body.
public protocol JSONRepresentable: Sendable {
    var json: JSONValue { get }
}

/// The answer to `POST /v1/events`.
public struct IngestResult: Sendable, Hashable, JSONRepresentable {
    /// Events stored from this batch.
    public var accepted: Int
    /// Events in the log after this batch, if the backend knows it cheaply.
    public var eventsTotal: Int64?

    public init(accepted: Int, eventsTotal: Int64? = nil) {
        self.accepted = accepted
        self.eventsTotal = eventsTotal
    }

    public var json: JSONValue {
        var object: [String: JSONValue] = ["accepted": .int(accepted)]
        if let eventsTotal { object["events_total"] = .integer(eventsTotal) }
        return .object(object)
    }
}

/// One item in a ranking, with its score (higher is better).
public struct RankedItem: Sendable, Hashable, JSONRepresentable {
    public var item: String
    public var score: Double

    public init(item: String, score: Double) {
        self.item = item
        self.score = score
    }

    public var json: JSONValue { ["item": .string(item), "score": .double(score)] }
}

/// The privacy budget summary: what `status` shows and the head of `privacy`.
public struct PrivacySummary: Sendable, Hashable, JSONRepresentable {
    public var epsilonSpent: Double
    public var delta: Double
    public var epsilonBudget: Double

    public init(epsilonSpent: Double, delta: Double, epsilonBudget: Double) {
        self.epsilonSpent = epsilonSpent
        self.delta = delta
        self.epsilonBudget = epsilonBudget
    }

    public var json: JSONValue {
        ["epsilon_spent": .double(epsilonSpent), "delta": .double(delta), "epsilon_budget": .double(epsilonBudget)]
    }
}

/// The answer to `GET /v1/status`. `extra` carries any further fields the agent wants to show
/// (retention cap, fault conditions, …); the named fields win over `extra` on a clash.
public struct StatusReport: Sendable, Hashable, JSONRepresentable {
    public var modelVersion: String?
    public var kernel: String
    public var eventsTotal: Int64
    public var outboxPending: Int
    /// Milliseconds since the Unix epoch of the last successful upload, or nil if none.
    public var lastUploadMilliseconds: Int64?
    public var privacy: PrivacySummary
    public var extra: [String: JSONValue]

    public init(
        modelVersion: String?, kernel: String, eventsTotal: Int64, outboxPending: Int,
        lastUploadMilliseconds: Int64?, privacy: PrivacySummary, extra: [String: JSONValue] = [:]
    ) {
        self.modelVersion = modelVersion
        self.kernel = kernel
        self.eventsTotal = eventsTotal
        self.outboxPending = outboxPending
        self.lastUploadMilliseconds = lastUploadMilliseconds
        self.privacy = privacy
        self.extra = extra
    }

    public var json: JSONValue {
        var object = extra
        object["model_version"] = .optional(modelVersion)
        object["kernel"] = .string(kernel)
        object["events_total"] = .integer(eventsTotal)
        object["outbox_pending"] = .int(outboxPending)
        object["last_upload"] = .optional(lastUploadMilliseconds)
        object["privacy"] = privacy.json
        return .object(object)
    }
}

/// The answer to `GET /v1/privacy`: the budget and the ledger's entries (one per noised
/// update: whatever the privacy engine records, as JSON).
public struct PrivacyReport: Sendable, Hashable, JSONRepresentable {
    public var summary: PrivacySummary
    public var entries: [JSONValue]
    public var extra: [String: JSONValue]

    public init(summary: PrivacySummary, entries: [JSONValue] = [], extra: [String: JSONValue] = [:]) {
        self.summary = summary
        self.entries = entries
        self.extra = extra
    }

    public var json: JSONValue {
        var object = extra
        object["epsilon_spent"] = .double(summary.epsilonSpent)
        object["delta"] = .double(summary.delta)
        object["epsilon_budget"] = .double(summary.epsilonBudget)
        object["entries"] = .array(entries)
        return .object(object)
    }
}

/// A label with a weight, for the interest profile.
public struct WeightedLabel: Sendable, Hashable, JSONRepresentable {
    public var name: String
    public var weight: Double

    public init(name: String, weight: Double) {
        self.name = name
        self.weight = weight
    }

    public var json: JSONValue { ["name": .string(name), "weight": .double(weight)] }
}

/// The answer to `GET /v1/profile`: the device's local interest profile (never uploaded).
public struct ProfileReport: Sendable, Hashable, JSONRepresentable {
    public var topCategories: [WeightedLabel]
    public var topBrands: [WeightedLabel]
    public var extra: [String: JSONValue]

    public init(topCategories: [WeightedLabel], topBrands: [WeightedLabel], extra: [String: JSONValue] = [:]) {
        self.topCategories = topCategories
        self.topBrands = topBrands
        self.extra = extra
    }

    public var json: JSONValue {
        var object = extra
        object["top_categories"] = .array(topCategories.map(\.json))
        object["top_brands"] = .array(topBrands.map(\.json))
        return .object(object)
    }
}

/// The answer to `DELETE /v1/data`.
public struct EraseResult: Sendable, Hashable, JSONRepresentable {
    /// Events removed, if known.
    public var eventsErased: Int64?

    public init(eventsErased: Int64? = nil) {
        self.eventsErased = eventsErased
    }

    public var json: JSONValue {
        var object: [String: JSONValue] = ["erased": true]
        if let eventsErased { object["events_erased"] = .integer(eventsErased) }
        return .object(object)
    }
}

/// An error with an HTTP status, thrown by the server's validation and by backends.
/// The body sent is `{"error": message, "field": field}` (`field` only when set).
public struct LocalAPIError: Error, Sendable, Hashable, CustomStringConvertible {
    /// HTTP status code (4xx or 5xx).
    public var status: Int
    public var message: String
    /// The offending field or query parameter, e.g. `events[3].kind`.
    public var field: String?

    public init(status: Int, message: String, field: String? = nil) {
        self.status = status
        self.message = message
        self.field = field
    }

    public var description: String {
        field.map { "\(status) \($0): \(message)" } ?? "\(status): \(message)"
    }

    public static func badRequest(_ message: String, field: String? = nil) -> LocalAPIError {
        LocalAPIError(status: 400, message: message, field: field)
    }
    public static func notFound(_ message: String) -> LocalAPIError { LocalAPIError(status: 404, message: message) }
    public static func conflict(_ message: String) -> LocalAPIError { LocalAPIError(status: 409, message: message) }
    public static func payloadTooLarge(_ message: String, field: String? = nil) -> LocalAPIError {
        LocalAPIError(status: 413, message: message, field: field)
    }
    public static func tooManyRequests(_ message: String) -> LocalAPIError { LocalAPIError(status: 429, message: message) }
    public static func internalError(_ message: String) -> LocalAPIError { LocalAPIError(status: 500, message: message) }
    /// The backend cannot serve right now (no model yet, database unavailable, …).
    public static func serviceUnavailable(_ message: String) -> LocalAPIError { LocalAPIError(status: 503, message: message) }
    /// The disk is full: the event could not be made durable.
    public static func insufficientStorage(_ message: String) -> LocalAPIError { LocalAPIError(status: 507, message: message) }

    public var json: JSONValue {
        var object: [String: JSONValue] = ["error": .string(message)]
        if let field { object["field"] = .string(field) }
        return .object(object)
    }
}
