/// What `eraseAll()` removed.
public struct EraseReport: Sendable, Hashable {
    public var events: Int
    public var outbox: Int
    public var localState: Int
    /// True when the WAL was checkpointed and truncated, so no copy of the erased pages remains
    /// in the WAL file. False only while a reader held an old snapshot open: the deletion is
    /// still durable and the next checkpoint truncates the WAL. (The final checkpoint waits up
    /// to the busy timeout for readers to finish.)
    public var walTruncated: Bool
}

extension DeviceStore {
    /// The right to erasure: deletes every event, queued upload and local-state value in one
    /// transaction (durable when it returns), then folds and truncates the WAL and VACUUMs, so
    /// the erased rows are gone from the file (with `secure_delete` they are also zeroed in place).
    ///
    /// The privacy ledger is kept on purpose: it records privacy already spent, and forgetting
    /// it would let the device spend the budget again: the data already uploaded stays
    /// uploaded. It holds no shopper data (only round numbers and noise parameters).
    public func eraseAll() throws(StoreError) -> EraseReport {
        let counts = try connection.transaction { () throws(StoreError) -> (Int, Int, Int) in
            try connection.execute("DELETE FROM events")
            let events = connection.changes
            try connection.execute("DELETE FROM outbox")
            let outbox = connection.changes
            try connection.execute("DELETE FROM local_state")
            return (events, outbox, connection.changes)
        }
        _ = try connection.checkpointTruncate(wait: false)
        try connection.execute("VACUUM")
        let truncated = try connection.checkpointTruncate()
        return EraseReport(events: counts.0, outbox: counts.1, localState: counts.2, walTruncated: truncated)
    }
}
