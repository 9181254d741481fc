#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import HearthLocalAPI
import HearthStore
import HearthUploader
import Synchronization

/// A fault the agent has met and still reports in `GET /v1/status` (`conditions`).
///
/// Each is set by the code path that meets the fault and cleared by the code path that sees it
/// gone (a write that succeeds again, an upload the aggregator answers, a verified model, ...).
/// The raw values are the names operators and tools see.
public enum AgentCondition: String, Sendable, CaseIterable, Comparable {
    /// A write failed because the file system holding the state directory is full (events are
    /// refused with 507 until a write succeeds again).
    case diskFull = "disk_full"
    /// The state directory (or its file system) cannot be written (events are refused with 503).
    case stateReadOnly = "state_read_only"
    /// The database was found damaged; it was moved aside and a fresh one started.
    case databaseCorrupt = "database_corrupt"
    /// `models/current.hrth` did not decode (the previous model is served), or a downloaded
    /// model was rejected.
    case modelInvalid = "model_invalid"
    /// The wall clock went backwards while the agent ran (set until it catches up).
    case clockBackwards = "clock_backwards"
    /// The aggregator could not be reached (connection refused, DNS, TLS, reset).
    case aggregatorUnreachable = "aggregator_unreachable"
    /// The aggregator answered 5xx, 408 or 429.
    case aggregatorError = "aggregator_error"
    /// The aggregator did not answer within `upload.timeout_ms`.
    case aggregatorSlow = "aggregator_slow"

    public static func < (lhs: AgentCondition, rhs: AgentCondition) -> Bool { lhs.rawValue < rhs.rawValue }

    /// The conditions about the aggregator (one exchange that works clears them all).
    public static let aggregator: [AgentCondition] = [.aggregatorUnreachable, .aggregatorError, .aggregatorSlow]
}

/// The set of active fault conditions, with when each began and why, and how many times each
/// was raised and cleared since the agent started (pure bookkeeping; the runtime logs).
public struct AgentHealth: Sendable, Equatable {
    /// One active condition.
    public struct Entry: Sendable, Equatable {
        /// When it was raised (milliseconds since the Unix epoch, wall clock).
        public var since: Int64
        /// What the code path that met it saw (updated while it stays active).
        public var detail: String
    }

    /// The active conditions.
    public private(set) var active: [AgentCondition: Entry] = [:]
    /// Times each condition went from clear to set.
    public private(set) var raised: [AgentCondition: Int] = [:]
    /// Times each condition went from set to clear.
    public private(set) var cleared: [AgentCondition: Int] = [:]

    public init() {}

    /// Sets `condition`; true when it was not set before (the detail of an active one is updated).
    @discardableResult
    public mutating func raise(_ condition: AgentCondition, detail: String, now: Int64) -> Bool {
        if active[condition] != nil {
            active[condition]?.detail = detail
            return false
        }
        active[condition] = Entry(since: now, detail: detail)
        raised[condition, default: 0] += 1
        return true
    }

    /// Clears `condition`; the entry it had, or nil when it was not set.
    @discardableResult
    public mutating func clear(_ condition: AgentCondition) -> Entry? {
        guard let entry = active.removeValue(forKey: condition) else { return nil }
        cleared[condition, default: 0] += 1
        return entry
    }

    /// Whether `condition` is set.
    public func isActive(_ condition: AgentCondition) -> Bool { active[condition] != nil }

    /// `"ok"` without conditions, else `"degraded"`.
    public var summary: String { active.isEmpty ? "ok" : "degraded" }

    /// The active conditions for status: `[{"name", "since", "detail"}]`, sorted by name.
    public var conditionsJSON: JSONValue {
        .array(active.keys.sorted().map { condition in
            let entry = active[condition] ?? Entry(since: 0, detail: "")
            return ["name": .string(condition.rawValue), "since": .integer(entry.since), "detail": .string(entry.detail)]
        })
    }

    /// `{"<name>": {"raised": n, "cleared": m}}` for every condition seen since start.
    public var countsJSON: JSONValue {
        var object: [String: JSONValue] = [:]
        for condition in Set(raised.keys).union(cleared.keys) {
            object[condition.rawValue] = ["raised": .int(raised[condition] ?? 0), "cleared": .int(cleared[condition] ?? 0)]
        }
        return .object(object)
    }
}

/// What a failed store operation means for the agent.
enum StoreFailureKind: Sendable, Equatable {
    case diskFull
    case readOnly
    case corrupt
    case other

    /// Classifies `error`; `directory` is the state directory, probed with `statvfs` when SQLite
    /// reports a plain I/O or open error (a read-only mount shows up as `SQLITE_IOERR_WRITE` or
    /// `SQLITE_CANTOPEN`, a full disk sometimes as `SQLITE_IOERR_WRITE`).
    static func classify(_ error: StoreError, directory: String) -> StoreFailureKind {
        switch error.resultCode?.primary {
        case .full?: return .diskFull
        case .readonly?: return .readOnly
        case .corrupt?, .notadb?: return .corrupt
        case .ioerr?, .cantopen?, .perm?:
            let probe = FileSystemProbe(directory)
            if probe.readOnly { return .readOnly }
            if let free = probe.freeBytes, free < FileSystemProbe.nearlyFullBytes { return .diskFull }
            return .other
        default:
            return .other
        }
    }
}

/// `statvfs` of a directory: whether its file system is mounted read-only and the bytes free
/// to an unprivileged writer.
struct FileSystemProbe: Sendable {
    /// Below this many free bytes a failed write is taken for a full disk.
    static let nearlyFullBytes: Int64 = 64 * 1024

    var readOnly = false
    var freeBytes: Int64?

    init(_ directory: String) {
        var info = statvfs()
        guard statvfs(directory, &info) == 0 else { return }
        readOnly = (info.f_flag & UInt(ST_RDONLY)) != 0
        freeBytes = Int64(clamping: UInt64(info.f_bavail) &* UInt64(info.f_frsize))
    }
}

/// How an exchange with the aggregator went, for the `aggregator_*` conditions.
enum AggregatorExchange: Sendable, Equatable {
    /// An answer the agent can act on (2xx, or a 4xx about the request itself).
    case answered
    /// 5xx, 408 or 429.
    case serverError(status: Int)
    /// No answer within the configured timeout.
    case timedOut(String)
    /// No connection (refused, DNS, TLS, reset).
    case unreachable(String)

    /// The exchange of a transfer that threw `error`.
    init(error: UploaderError) {
        if let status = error.status {
            self.init(status: status)
        } else if error.curlCode == .operationTimedOut {
            self = .timedOut(error.message)
        } else if error.curlCode != nil || error == .helperFailed("") {
            // A hearth-fetch helper that could not run the exchange (missing, killed, hanging,
            // garbled output): nothing reached the aggregator.
            self = .unreachable(error.message)
        } else {
            // Not a network failure (a file, a signature, a model): the aggregator answered.
            self = .answered
        }
    }

    /// The exchange an uploader reported: an answer's status, or the transfer error.
    init(_ result: Result<Int, UploaderError>) {
        switch result {
        case .success(let status): self.init(status: status)
        case .failure(let error): self.init(error: error)
        }
    }

    /// The exchange of a response with HTTP `status`.
    init(status: Int) {
        self = (500 ..< 600).contains(status) || status == 408 || status == 429 ? .serverError(status: status) : .answered
    }
}

/// The wall clock the agent reads (`unixMilliseconds()`), plus an offset a test can set with
/// the hidden `--clock-offset-file` option to make the clock jump without touching the system's.
enum WallClockOffset {
    static let milliseconds = Atomic<Int64>(0)
}

/// The wall clock against the monotonic one: a backwards jump is the wall clock advancing less
/// than the monotonic clock since the last look (by more than a tolerance).
struct ClockWatch: Sendable {
    /// Jumps smaller than this are not reported (NTP slewing, scheduling delay).
    static let toleranceMilliseconds: Int64 = 2_000

    private var lastWall: Int64?
    private var lastMonotonic: Int64 = 0
    /// The wall time the clock must reach again before a backwards jump counts as over.
    private(set) var highWater: Int64?

    /// Takes a reading; the jump (positive milliseconds) when the wall clock went backwards.
    mutating func observe(wall: Int64, monotonic: Int64) -> Int64? {
        defer {
            lastWall = wall
            lastMonotonic = monotonic
        }
        guard let lastWall else { return nil }
        let expected = lastWall + max(0, monotonic - lastMonotonic)
        if wall < expected - ClockWatch.toleranceMilliseconds {
            highWater = max(highWater ?? expected, expected)
            return expected - wall
        }
        if let mark = highWater {
            // While behind, the mark advances with real time: caught up when the wall clock reaches it.
            let advanced = mark + max(0, monotonic - lastMonotonic)
            highWater = wall >= advanced ? nil : advanced
        }
        return nil
    }

    /// Whether the wall clock is still behind where it was before the last backwards jump.
    var isBehind: Bool { highWater != nil }
}
