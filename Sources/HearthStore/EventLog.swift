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

    func totals() throws(StoreError) -> EventTotals {
        let summary = try prepare(
            "SELECT count(*), min(ts_ms), max(ts_ms), min(seq), max(seq), count(DISTINCT session) FROM events")
        guard try summary.step() else { throw .sqlite("totals: no row") }
        var totals = EventTotals(
            eventsTotal: Int(summary.int64(0)), perKind: [:],
            oldestTimestampMilliseconds: summary.isNull(1) ? nil : summary.int64(1),
            newestTimestampMilliseconds: summary.isNull(2) ? nil : summary.int64(2),
            firstSequence: summary.isNull(3) ? nil : summary.int64(3),
            lastSequence: summary.isNull(4) ? nil : summary.int64(4),
            sessions: Int(summary.int64(5)))
        summary.reset()
        for kind in EventKind.allCases { totals.perKind[kind] = 0 }
        let perKind = try prepare("SELECT kind, count(*) FROM events GROUP BY kind")
        while try perKind.step() {
            if let byte = UInt8(exactly: perKind.int64(0)), let kind = EventKind(rawValue: byte) {
                totals.perKind[kind] = Int(perKind.int64(1))
            }
        }
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
