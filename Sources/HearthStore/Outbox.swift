/// One upload waiting in the outbox.
public struct OutboxItem: Sendable, Hashable {
    /// The key the server deduplicates on: a retried upload is never counted twice.
    public var idempotencyKey: String
    /// The model version (round) the update is for.
    public var modelVersion: UInt64
    /// The encoded, already noised update.
    public var payload: [UInt8]
    public var createdMilliseconds: Int64
    /// Upload attempts so far.
    public var attempts: Int
    /// Not to be tried before this time (milliseconds since the epoch).
    public var nextAttemptMilliseconds: Int64
    public var lastAttemptMilliseconds: Int64?
    /// The last attempt's failure, for status and logs.
    public var lastError: String?
}

/// The most recent delivered upload (for `hearthctl status`: `last_upload`).
public struct OutboxDelivery: Sendable, Hashable {
    public var idempotencyKey: String
    public var modelVersion: UInt64
    public var deliveredMilliseconds: Int64
}

extension DeviceStore {
    /// Puts an update into the durable upload queue (durable when it returns), due at once.
    /// Throws `.duplicateKey` if `idempotencyKey` is already queued.
    public func enqueue(payload: [UInt8], idempotencyKey: String, modelVersion: UInt64, createdAt: Int64) throws(StoreError) {
        try connection.transaction { () throws(StoreError) in
            try insertOutbox(payload: payload, idempotencyKey: idempotencyKey, modelVersion: modelVersion, createdAt: createdAt)
        }
    }

    func insertOutbox(payload: [UInt8], idempotencyKey: String, modelVersion: UInt64, createdAt: Int64) throws(StoreError) {
        let length = idempotencyKey.utf8.count
        guard (1 ... 256).contains(length) else {
            throw .invalidArgument("idempotency_key: \(length) bytes, 1 to 256 allowed")
        }
        let insert = try connection.prepare(
            "INSERT INTO outbox (idempotency_key, model_version, created_ms, next_attempt_ms) VALUES (?, ?, ?, ?)")
        try insert.bind(1, idempotencyKey)
        try insert.bind(2, Int64(bitPattern: modelVersion))
        try insert.bind(3, createdAt)
        try insert.bind(4, createdAt)
        do {
            try insert.run()
        } catch where error.resultCode == .constraintUnique {
            throw .duplicateKey("idempotency_key \"\(idempotencyKey)\" is already in the outbox")
        }
        // The payload (megabytes for a large model) goes in as a trailing zeroblob and is then
        // written in place (`writeBlob`): binding it would make SQLite hold two more copies of it.
        let id = connection.lastInsertRowID
        let payloadRow = try connection.prepare("INSERT INTO outbox_payloads (id, payload) VALUES (?, zeroblob(?))")
        try payloadRow.bind(1, id)
        try payloadRow.bind(2, Int64(payload.count))
        try payloadRow.run()
        if !payload.isEmpty {
            try connection.writeBlob(table: "outbox_payloads", column: "payload", rowid: id, bytes: payload)
        }
    }

    /// Queued uploads, oldest first, at most `limit`.
    public func pending(limit: Int) throws(StoreError) -> [OutboxItem] {
        guard limit >= 0 else { throw .invalidArgument("limit: \(limit) is negative") }
        let statement = try connection.prepare("SELECT \(DeviceStore.outboxColumns) FROM \(DeviceStore.outboxJoin) ORDER BY o.id LIMIT ?")
        try statement.bind(1, Int64(limit))
        return try readOutbox(statement)
    }

    /// Queued uploads whose next attempt is due at `now`, oldest first, at most `limit`.
    public func due(now: Int64, limit: Int) throws(StoreError) -> [OutboxItem] {
        guard limit >= 0 else { throw .invalidArgument("limit: \(limit) is negative") }
        let statement = try connection.prepare(
            "SELECT \(DeviceStore.outboxColumns) FROM \(DeviceStore.outboxJoin) WHERE o.next_attempt_ms <= ? ORDER BY o.id LIMIT ?")
        try statement.bind(1, now)
        try statement.bind(2, Int64(limit))
        return try readOutbox(statement)
    }

    /// Failed attempts so far of the upload with `idempotencyKey`, nil when it is not queued
    /// (reads the small outbox row only, never the payload).
    public func attempts(idempotencyKey: String) throws(StoreError) -> Int? {
        let statement = try connection.prepare("SELECT attempts FROM outbox WHERE idempotency_key = ?")
        try statement.bind(1, idempotencyKey)
        guard try statement.step() else { return nil }
        defer { statement.reset() }
        return Int(statement.int64(0))
    }

    /// Number of queued uploads.
    public func pendingCount() throws(StoreError) -> Int {
        Int(try connection.scalarInt("SELECT count(*) FROM outbox") ?? 0)
    }

    /// Records a failed attempt: one more attempt, the next one not before `nextAttemptAt`.
    /// Returns false when no upload has that key (already delivered).
    @discardableResult
    public func recordAttempt(idempotencyKey: String, at now: Int64, nextAttemptAt: Int64, error: String?) throws(StoreError) -> Bool {
        try connection.transaction { () throws(StoreError) -> Bool in
            let update = try connection.prepare(
                "UPDATE outbox SET attempts = attempts + 1, last_attempt_ms = ?, next_attempt_ms = ?, last_error = ? WHERE idempotency_key = ?")
            try update.bind(1, now)
            try update.bind(2, nextAttemptAt)
            try update.bind(3, error)
            try update.bind(4, idempotencyKey)
            try update.run()
            return connection.changes > 0
        }
    }

    /// The server accepted the upload: removes it from the queue (its payload is overwritten,
    /// `secure_delete`) and remembers it as the last delivery. Returns false when the key was
    /// not queued (marking twice is harmless).
    @discardableResult
    public func markDelivered(idempotencyKey: String, at now: Int64) throws(StoreError) -> Bool {
        try connection.transaction { () throws(StoreError) -> Bool in
            let find = try connection.prepare("SELECT model_version FROM outbox WHERE idempotency_key = ?")
            try find.bind(1, idempotencyKey)
            guard try find.step() else { return false }
            let version = find.int64(0)
            find.reset()
            let delete = try connection.prepare("DELETE FROM outbox WHERE idempotency_key = ?")
            try delete.bind(1, idempotencyKey)
            try delete.run()
            let status = try connection.prepare(
                "INSERT OR REPLACE INTO upload_status (id, idempotency_key, model_version, delivered_ms) VALUES (1, ?, ?, ?)")
            try status.bind(1, idempotencyKey)
            try status.bind(2, version)
            try status.bind(3, now)
            try status.run()
            return true
        }
    }

    /// The most recent delivery, if any.
    public func lastDelivery() throws(StoreError) -> OutboxDelivery? {
        let statement = try connection.prepare("SELECT idempotency_key, model_version, delivered_ms FROM upload_status WHERE id = 1")
        guard try statement.step() else { return nil }
        defer { statement.reset() }
        return OutboxDelivery(idempotencyKey: statement.text(0), modelVersion: UInt64(bitPattern: statement.int64(1)),
                              deliveredMilliseconds: statement.int64(2))
    }

    private static let outboxColumns =
        "o.idempotency_key, o.model_version, p.payload, o.created_ms, o.attempts, o.next_attempt_ms, o.last_attempt_ms, o.last_error"
    /// Queued uploads with their payloads (deleting an outbox row deletes its payload: ON DELETE CASCADE).
    private static let outboxJoin = "outbox o JOIN outbox_payloads p ON p.id = o.id"

    private func readOutbox(_ statement: Statement) throws(StoreError) -> [OutboxItem] {
        var items: [OutboxItem] = []
        while try statement.step() {
            items.append(OutboxItem(
                idempotencyKey: statement.text(0), modelVersion: UInt64(bitPattern: statement.int64(1)),
                payload: statement.blob(2), createdMilliseconds: statement.int64(3), attempts: Int(statement.int64(4)),
                nextAttemptMilliseconds: statement.int64(5),
                lastAttemptMilliseconds: statement.isNull(6) ? nil : statement.int64(6),
                lastError: statement.isNull(7) ? nil : statement.text(7)))
        }
        return items
    }
}

extension DeviceStore {
    /// Moves every pending retry time later than `now` by `delta` milliseconds (never before
    /// `now`); returns how many moved. After the wall clock jumped back by J, `delta` = −J keeps
    /// each retry's remaining wait: without it a retry written before the jump would wait J more.
    @discardableResult
    public func shiftAttempts(by delta: Int64, notBefore now: Int64) throws(StoreError) -> Int {
        try connection.transaction { () throws(StoreError) -> Int in
            let update = try connection.prepare(
                "UPDATE outbox SET next_attempt_ms = max(next_attempt_ms + ?, ?) WHERE next_attempt_ms > ?")
            try update.bind(1, delta)
            try update.bind(2, now)
            try update.bind(3, now)
            try update.run()
            return connection.changes
        }
    }
}
