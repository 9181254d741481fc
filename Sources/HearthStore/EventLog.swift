import HearthCore

/// An event as stored: the record and the sequence id the log assigned to it.
public struct StoredEvent: Sendable, Hashable {
    /// Sequence id: increases with every append and is never reused (not even after erasure),
    /// so a reader's "after" cursor stays valid.
    public var sequence: Int64
    public var record: EventRecord

    public init(sequence: Int64, record: EventRecord) {
        self.sequence = sequence
        self.record = record
    }
}

/// What `append` did: the sequence ids of the batch, in batch order. Durable when returned.
public struct AppendResult: Sendable, Hashable {
    public var sequenceIDs: [Int64]
    public var count: Int { sequenceIDs.count }
}

/// Totals over the event log (status and training scheduling).
public struct EventTotals: Sendable, Hashable {
    public var eventsTotal: Int
    /// Events per kind; every kind is present (0 when none).
    public var perKind: [EventKind: Int]
    public var oldestTimestampMilliseconds: Int64?
    public var newestTimestampMilliseconds: Int64?
    /// Lowest and highest stored sequence ids, nil when the log is empty.
    public var firstSequence: Int64?
    public var lastSequence: Int64?
    /// Number of distinct sessions.
    public var sessions: Int
}

/// One session in the log.
public struct SessionSummary: Sendable, Hashable {
    public var session: String
    public var eventCount: Int
    public var lastTimestampMilliseconds: Int64
    public var lastSequence: Int64
}

extension DeviceStore {
    /// Appends a batch in ONE transaction: either every event is stored or none is. Durable
    /// (fsynced, `synchronous=FULL`) when it returns. Every record is re-validated first, since
    /// `EventRecord`'s fields are mutable: `.invalidArgument` names the index and field.
    public func append(_ batch: [EventRecord]) throws(StoreError) -> AppendResult {
        try append(batch, validating: true)
    }

    func append(_ batch: [EventRecord], validating: Bool) throws(StoreError) -> AppendResult {
        if validating {
            for (index, record) in batch.enumerated() {
                do {
                    _ = try EventRecord(item: record.item, kind: record.kind, session: record.session,
                                        quantity: record.quantity, timestampMilliseconds: record.timestampMilliseconds)
                } catch {
                    throw .invalidArgument("event \(index): \(error.message)")
                }
            }
        }
        guard !batch.isEmpty else { return AppendResult(sequenceIDs: []) }
        let failAfter = failAppendAfterRows
        let ids = try connection.transaction { () throws(StoreError) -> [Int64] in
            let insert = try connection.prepare(
                "INSERT INTO events (item, kind, session, quantity, ts_ms) VALUES (?, ?, ?, ?, ?)")
            var ids: [Int64] = []
            ids.reserveCapacity(batch.count)
            for record in batch {
                if let failAfter, ids.count >= failAfter {
                    throw .ioError("simulated failure after \(failAfter) rows")
                }
                insert.reset()
                try insert.bind(1, record.item)
                try insert.bind(2, Int64(record.kind.rawValue))
                try insert.bind(3, record.session)
                try insert.bind(4, record.quantity.map { Int64($0) })
                try insert.bind(5, record.timestampMilliseconds)
                try insert.run()
                ids.append(connection.lastInsertRowID)
            }
            return ids
        }
        return AppendResult(sequenceIDs: ids)
    }

    /// Up to `limit` events with a sequence id greater than `sequence`, in sequence order
    /// (page through the log: pass the last id of one page to get the next).
    public func events(after sequence: Int64, limit: Int) throws(StoreError) -> [StoredEvent] {
        try connection.events(after: sequence, limit: limit)
    }

    /// The last `limit` events of `session`, oldest first (the serving query's context).
    public func recentEvents(session: String, limit: Int) throws(StoreError) -> [StoredEvent] {
        try connection.recentEvents(session: session, limit: limit)
    }

    /// How many events have a sequence id greater than `sequence` (the events a training round
    /// has not seen yet).
    ///
    /// A range search on the primary key: its cost grows with the events counted, not with the
    /// log, so the scheduler can ask on every tick (`totals()` scans the whole log).
    public func eventCount(after sequence: Int64) throws(StoreError) -> Int {
        try connection.eventCount(after: sequence)
    }

    /// Totals over the whole log.
    public func totals() throws(StoreError) -> EventTotals {
        try connection.totals()
    }

    /// Sessions, most recently active first, at most `limit`.
    public func sessions(limit: Int) throws(StoreError) -> [SessionSummary] {
        try connection.sessions(limit: limit)
    }
}

extension SQLiteConnection {
    private static let eventColumns = "seq, item, kind, session, quantity, ts_ms"

    private func readEvent(_ statement: Statement) throws(StoreError) -> StoredEvent {
        let sequence = statement.int64(0)
        let rawKind = statement.int64(2)
        guard let byte = UInt8(exactly: rawKind), let kind = EventKind(rawValue: byte) else {
            throw .corrupt("event \(sequence): unknown kind \(rawKind)")
        }
        let quantity: Int32?
        if statement.isNull(4) {
            quantity = nil
        } else {
            guard let q = Int32(exactly: statement.int64(4)) else { throw .corrupt("event \(sequence): quantity out of range") }
            quantity = q
        }
        do {
            let record = try EventRecord(item: statement.text(1), kind: kind, session: statement.text(3),
                                         quantity: quantity, timestampMilliseconds: statement.int64(5))
            return StoredEvent(sequence: sequence, record: record)
        } catch {
            throw .corrupt("event \(sequence): \(error.message)")
        }
    }

    private static func checkLimit(_ limit: Int) throws(StoreError) -> Int64 {
        guard limit >= 0 else { throw .invalidArgument("limit: \(limit) is negative") }
        return Int64(limit)
    }

    func events(after sequence: Int64, limit: Int) throws(StoreError) -> [StoredEvent] {
        let limit = try SQLiteConnection.checkLimit(limit)
        let statement = try prepare("SELECT \(SQLiteConnection.eventColumns) FROM events WHERE seq > ? ORDER BY seq LIMIT ?")
        try statement.bind(1, sequence)
        try statement.bind(2, limit)
        var result: [StoredEvent] = []
        while try statement.step() { result.append(try readEvent(statement)) }
        return result
    }

    /// `SELECT count(*) ... WHERE seq > ?`: a range search on the primary key.
    static let eventCountAfterQuery = "SELECT count(*) FROM events WHERE seq > ?"

    func eventCount(after sequence: Int64) throws(StoreError) -> Int {
        let statement = try prepare(SQLiteConnection.eventCountAfterQuery)
        defer { statement.reset() }
        try statement.bind(1, sequence)
        guard try statement.step() else { throw .sqlite("event count: no row") }
        return Int(statement.int64(0))
    }

    func recentEvents(session: String, limit: Int) throws(StoreError) -> [StoredEvent] {
        let limit = try SQLiteConnection.checkLimit(limit)
        let statement = try prepare(
            "SELECT \(SQLiteConnection.eventColumns) FROM events WHERE session = ? ORDER BY seq DESC LIMIT ?")
        try statement.bind(1, session)
        try statement.bind(2, limit)
        var result: [StoredEvent] = []
        while try statement.step() { result.append(try readEvent(statement)) }
        return result.reversed()
    }

    /// The one scan behind `totals()`: count, per-kind counts (in `EventKind.allCases` order),
    /// timestamp and sequence bounds.
    ///
    /// Every aggregate streams, so the scan needs no memory beyond the page cache however long
    /// the log is. (It was `SELECT kind, count(*) ... GROUP BY kind`: with no index on `kind`,
    /// SQLite sorts every row in a temporary b-tree first, which `temp_store = MEMORY` keeps
    /// in RAM: about 25 bytes per stored event on each call, 5.8 MB at 150,000 events, redone
    /// on every scheduler tick and status request. It made the agent's peak memory climb with
    /// its event count in the soak, docs/reliability.md.)
    static let totalsQuery = "SELECT count(*), "
        + EventKind.allCases.map { "count(*) FILTER (WHERE kind = \($0.rawValue))" }.joined(separator: ", ")
        + ", min(ts_ms), max(ts_ms), min(seq), max(seq) FROM events"
    /// Distinct sessions, counted along the `events_by_session` index (in order, so no
    /// temporary b-tree; `count(DISTINCT session)` over the table built one of every session).
    static let distinctSessionsQuery = "SELECT count(*) FROM (SELECT DISTINCT session FROM events)"

    func totals() throws(StoreError) -> EventTotals {
        let summary = try prepare(SQLiteConnection.totalsQuery)
        guard try summary.step() else { throw .sqlite("totals: no row") }
        var perKind: [EventKind: Int] = [:]
        for (offset, kind) in EventKind.allCases.enumerated() {
            perKind[kind] = Int(summary.int64(Int32(1 + offset)))
        }
        let bounds = Int32(1 + EventKind.allCases.count)
        var totals = EventTotals(
            eventsTotal: Int(summary.int64(0)), perKind: perKind,
            oldestTimestampMilliseconds: summary.isNull(bounds) ? nil : summary.int64(bounds),
            newestTimestampMilliseconds: summary.isNull(bounds + 1) ? nil : summary.int64(bounds + 1),
            firstSequence: summary.isNull(bounds + 2) ? nil : summary.int64(bounds + 2),
            lastSequence: summary.isNull(bounds + 3) ? nil : summary.int64(bounds + 3),
            sessions: 0)
        summary.reset()
        let sessions = try prepare(SQLiteConnection.distinctSessionsQuery)
        guard try sessions.step() else { throw .sqlite("totals: no session count") }
        totals.sessions = Int(sessions.int64(0))
        sessions.reset()
        return totals
    }

    func sessions(limit: Int) throws(StoreError) -> [SessionSummary] {
        let limit = try SQLiteConnection.checkLimit(limit)
        let statement = try prepare(
            "SELECT session, count(*), max(ts_ms), max(seq) AS last FROM events GROUP BY session ORDER BY last DESC LIMIT ?")
        try statement.bind(1, limit)
        var result: [SessionSummary] = []
        while try statement.step() {
            result.append(SessionSummary(session: statement.text(0), eventCount: Int(statement.int64(1)),
                                         lastTimestampMilliseconds: statement.int64(2), lastSequence: statement.int64(3)))
        }
        return result
    }
}
