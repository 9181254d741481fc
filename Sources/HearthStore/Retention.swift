#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Caps on the event log so it can never fill the board's disk. Nil disables a cap.
public struct RetentionPolicy: Sendable, Hashable {
    /// Events older than `now - maxAgeMilliseconds` (by event timestamp) are deleted.
    public var maxAgeMilliseconds: Int64?
    /// At most this many events are kept.
    public var maxEvents: Int?
    /// The database file plus its WAL stay at or below this many bytes (as far as deleting
    /// events can achieve: the schema itself takes a few pages).
    public var maxDatabaseBytes: Int64?
    /// Events deleted per transaction, so retention never holds the write lock for long.
    public var batchSize: Int

    public init(maxAgeMilliseconds: Int64? = nil, maxEvents: Int? = nil, maxDatabaseBytes: Int64? = nil, batchSize: Int = 2_000) {
        self.maxAgeMilliseconds = maxAgeMilliseconds
        self.maxEvents = maxEvents
        self.maxDatabaseBytes = maxDatabaseBytes
        self.batchSize = batchSize
    }

    func validate() throws(StoreError) {
        if let maxAgeMilliseconds, maxAgeMilliseconds <= 0 { throw .invalidArgument("retention max_age_ms: \(maxAgeMilliseconds) must be positive") }
        if let maxEvents, maxEvents < 0 { throw .invalidArgument("retention max_events: \(maxEvents) is negative") }
        if let maxDatabaseBytes, maxDatabaseBytes <= 0 { throw .invalidArgument("retention max_database_bytes: \(maxDatabaseBytes) must be positive") }
        guard batchSize > 0 else { throw .invalidArgument("retention batch_size: \(batchSize) must be positive") }
    }
}

/// Which cap made retention delete events (or is exceeded).
public enum RetentionCap: String, Sendable, Hashable, CaseIterable {
    case age
    case count
    case size
}

/// What `enforceRetention(now:)` did.
public struct RetentionReport: Sendable, Hashable {
    /// Events deleted in total, and by each cap (age first, then count, then size).
    public var deleted: Int
    public var deletedByCap: [RetentionCap: Int]
    public var remainingEvents: Int
    /// Database file size (page_count × page_size) plus WAL size after the run.
    public var databaseBytes: Int64
    /// The caps that made it delete something.
    public var boundBy: [RetentionCap]
    /// True when every cap is met afterwards (false when the size cap is below what an empty
    /// store needs, or when a reader's open snapshot kept the WAL from being truncated).
    public var withinPolicy: Bool
    /// False when a reader's open snapshot kept the WAL checkpoint from completing: the size
    /// cap then stops deleting (the WAL cannot shrink yet) and the next run finishes the job.
    public var walCheckpointed: Bool
}

/// Where the log stands against its caps (for `/v1/status`).
public struct RetentionState: Sendable, Hashable {
    public var policy: RetentionPolicy
    public var events: Int
    public var oldestTimestampMilliseconds: Int64?
    /// page_count × page_size.
    public var databaseFileBytes: Int64
    /// Size of the `-wal` file (0 when absent).
    public var walBytes: Int64
    /// Free pages inside the file that `PRAGMA incremental_vacuum` can give back.
    public var freeBytes: Int64
    public var databaseBytes: Int64 { databaseFileBytes + walBytes }
    /// Caps currently exceeded at the `now` given.
    public var exceeded: [RetentionCap]
}

extension DeviceStore {
    /// The log against its caps at `now` (milliseconds since the epoch).
    public func retentionState(now: Int64) throws(StoreError) -> RetentionState {
        let totals = try connection.totals()
        let sizes = try measure()
        let policy = retentionPolicy
        var exceeded: [RetentionCap] = []
        if let maxAge = policy.maxAgeMilliseconds, let oldest = totals.oldestTimestampMilliseconds,
           oldest < now &- maxAge { exceeded.append(.age) }
        if let maxEvents = policy.maxEvents, totals.eventsTotal > maxEvents { exceeded.append(.count) }
        if let maxBytes = policy.maxDatabaseBytes, sizes.file + sizes.wal > maxBytes { exceeded.append(.size) }
        return RetentionState(policy: policy, events: totals.eventsTotal,
                              oldestTimestampMilliseconds: totals.oldestTimestampMilliseconds,
                              databaseFileBytes: sizes.file, walBytes: sizes.wal, freeBytes: sizes.free,
                              exceeded: exceeded)
    }

    /// Applies the retention policy at `now`: deletes the oldest events (by timestamp, then
    /// sequence) first, in transactions of at most `batchSize` events, until every cap holds;
    /// then gives free pages back to the file system (incremental vacuum + WAL checkpoint).
    public func enforceRetention(now: Int64) throws(StoreError) -> RetentionReport {
        let policy = retentionPolicy
        try policy.validate()
        var deletedByCap: [RetentionCap: Int] = [:]
        var boundBy: [RetentionCap] = []
        func note(_ cap: RetentionCap, _ n: Int) {
            guard n > 0 else { return }
            deletedByCap[cap, default: 0] += n
            if !boundBy.contains(cap) { boundBy.append(cap) }
        }

        if let maxAge = policy.maxAgeMilliseconds {
            let cutoff = now &- maxAge
            while true {
                let n = try deleteOldest(limit: policy.batchSize, olderThan: cutoff)
                note(.age, n)
                if n < policy.batchSize { break }
            }
        }
        if let maxEvents = policy.maxEvents {
            while true {
                let count = try connection.totals().eventsTotal
                guard count > maxEvents else { break }
                note(.count, try deleteOldest(limit: min(count - maxEvents, policy.batchSize), olderThan: nil))
            }
        }
        var sizes = try reclaim()
        if let maxBytes = policy.maxDatabaseBytes {
            // Without a completed checkpoint the WAL cannot shrink, and deleting more would only
            // grow it: stop and let the next run (after the reader is done) finish.
            while sizes.checkpointed, sizes.file + sizes.wal > maxBytes {
                let count = try connection.totals().eventsTotal
                guard count > 0 else { break }
                // Estimate how many events hold the excess, from the average bytes per event,
                // with a 10 % margin; the loop re-measures, so the estimate need not be exact.
                let used = max(sizes.file - sizes.free, 1)
                let perEvent = max(used / Int64(count), 1)
                let excess = sizes.file + sizes.wal - maxBytes
                let estimate = Int(min(Int64(count), excess / perEvent + excess / perEvent / 10 + 1))
                note(.size, try deleteOldest(limit: min(estimate, policy.batchSize), olderThan: nil))
                sizes = try reclaim()
            }
        }
        let remaining = try connection.totals().eventsTotal
        let within = policy.maxDatabaseBytes.map { sizes.file + sizes.wal <= $0 } ?? true
        return RetentionReport(deleted: deletedByCap.values.reduce(0, +), deletedByCap: deletedByCap,
                               remainingEvents: remaining, databaseBytes: sizes.file + sizes.wal,
                               boundBy: boundBy, withinPolicy: within, walCheckpointed: sizes.checkpointed)
    }

    /// Deletes up to `limit` oldest events (optionally only those older than `cutoff`) in one
    /// transaction; returns how many.
    private func deleteOldest(limit: Int, olderThan cutoff: Int64?) throws(StoreError) -> Int {
        guard limit > 0 else { return 0 }
        return try connection.transaction { () throws(StoreError) -> Int in
            let statement: Statement
            if let cutoff {
                statement = try connection.prepare(
                    "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE ts_ms < ? ORDER BY ts_ms, seq LIMIT ?)")
                try statement.bind(1, cutoff)
                try statement.bind(2, Int64(limit))
            } else {
                statement = try connection.prepare(
                    "DELETE FROM events WHERE seq IN (SELECT seq FROM events ORDER BY ts_ms, seq LIMIT ?)")
                try statement.bind(1, Int64(limit))
            }
            try statement.run()
            return connection.changes
        }
    }

    /// Frees empty pages (incremental vacuum), folds the WAL back and truncates it (without
    /// waiting for readers), and measures.
    func reclaim() throws(StoreError) -> (file: Int64, wal: Int64, free: Int64, checkpointed: Bool) {
        try connection.execute("PRAGMA incremental_vacuum")
        let checkpointed = try connection.checkpointTruncate(wait: false)
        let sizes = try measure()
        return (sizes.file, sizes.wal, sizes.free, checkpointed)
    }

    /// page_count × page_size, the WAL file's size, and the free-list bytes.
    func measure() throws(StoreError) -> (file: Int64, wal: Int64, free: Int64) {
        let pageSize = try connection.scalarInt("PRAGMA page_size") ?? 4096
        let pages = try connection.scalarInt("PRAGMA page_count") ?? 0
        let free = try connection.scalarInt("PRAGMA freelist_count") ?? 0
        return (pages * pageSize, DeviceStore.fileSize(path + "-wal"), free * pageSize)
    }

    static func fileSize(_ path: String) -> Int64 {
        var info = stat()
        guard stat(path, &info) == 0 else { return 0 }
        return Int64(info.st_size)
    }
}
