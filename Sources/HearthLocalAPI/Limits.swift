/// Bounds on what one client may send and hold. Every limit answers with a clear 4xx or a
/// closed connection; none lets one client stall the others.
public struct LocalAPILimits: Sendable, Hashable {
    /// Largest request body in bytes (413 above it, announced or streamed).
    public var maxBodyBytes: Int = 1 << 20
    /// Largest request line plus headers in bytes (431 above it).
    public var maxHeaderBytes: Int = 16 * 1024
    /// Most events in one `POST /v1/events` batch (413 above it).
    public var maxEventsPerBatch: Int = 1_000
    /// Deepest JSON nesting accepted in a body (400 above it).
    public var maxJSONDepth: Int = 16
    /// Largest `k` for recommendations (400 above it).
    public var maxK: Int = 1_000
    /// Most candidates in one `POST /v1/rank` (413 above it).
    public var maxCandidates: Int = 1_000
    /// Most ids in `exclude` (400 above it).
    public var maxExclusions: Int = 1_000
    /// A request must arrive completely (head and body) within this many milliseconds of its
    /// first byte, or the connection is closed: a slowloris client trickling bytes is dropped.
    public var requestTimeoutMilliseconds: Int64 = 10_000
    /// A kept-alive connection with no request in progress is closed after this many milliseconds.
    public var idleTimeoutMilliseconds: Int64 = 30_000
    /// Most simultaneous connections; more are answered 503 and closed at once.
    public var maxConnections: Int = 128

    public init() {}

    public init(
        maxBodyBytes: Int = 1 << 20, maxHeaderBytes: Int = 16 * 1024, maxEventsPerBatch: Int = 1_000,
        maxJSONDepth: Int = 16, maxK: Int = 1_000, maxCandidates: Int = 1_000, maxExclusions: Int = 1_000,
        requestTimeoutMilliseconds: Int64 = 10_000, idleTimeoutMilliseconds: Int64 = 30_000, maxConnections: Int = 128
    ) {
        self.maxBodyBytes = maxBodyBytes
        self.maxHeaderBytes = maxHeaderBytes
        self.maxEventsPerBatch = maxEventsPerBatch
        self.maxJSONDepth = maxJSONDepth
        self.maxK = maxK
        self.maxCandidates = maxCandidates
        self.maxExclusions = maxExclusions
        self.requestTimeoutMilliseconds = requestTimeoutMilliseconds
        self.idleTimeoutMilliseconds = idleTimeoutMilliseconds
        self.maxConnections = maxConnections
    }
}
