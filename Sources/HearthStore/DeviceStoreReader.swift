import CHearthSQLite
import HearthPrivacy

/// A read-only connection to a store a `DeviceStore` has created, for readers that must not
/// wait behind the writer or each other (serving, training). Not `Sendable`: each reader is
/// owned by one isolation domain; open one per concurrent reader. WAL gives each read a
/// consistent snapshot while the writer commits.
public final class DeviceStoreReader {
    let connection: SQLiteConnection
    public let path: String

    /// Opens `path` read-only; the store must exist and be migrated (open a `DeviceStore` first).
    public init(path: String, busyTimeoutMilliseconds: Int32 = 5_000) throws(StoreError) {
        self.path = path
        connection = try SQLiteConnection(path: path, flags: SQLITE_OPEN_READONLY)
        do throws(StoreError) {
            try connection.busyTimeout(milliseconds: busyTimeoutMilliseconds)
            _ = try connection.dbConfig(SQLITE_DBCONFIG_DEFENSIVE, 1)
            _ = try connection.dbConfig(SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0)
            try connection.execute("PRAGMA query_only = ON")
            let mode = try connection.scalarText("PRAGMA journal_mode")
            guard mode?.lowercased() == "wal" else {
                throw .invalidArgument("the store at \(path) is not in WAL mode (\(mode ?? "unknown")); open it with DeviceStore first")
            }
            try Schema.checkReadable(connection)
        } catch {
            connection.close()
            throw DeviceStore.explain(error, path: path)
        }
    }

    deinit { connection.close() }

    public func close() { connection.close() }

    /// Runs `body` on one snapshot: every read inside sees the log as of the first read, however
    /// much the writer commits meanwhile (a training pass pages through a stable log).
    public func withSnapshot<T>(_ body: () throws(StoreError) -> T) throws(StoreError) -> T {
        try connection.transaction(immediate: false, body)
    }

    public func events(after sequence: Int64, limit: Int) throws(StoreError) -> [StoredEvent] {
        try connection.events(after: sequence, limit: limit)
    }

    public func recentEvents(session: String, limit: Int) throws(StoreError) -> [StoredEvent] {
        try connection.recentEvents(session: session, limit: limit)
    }

    public func totals() throws(StoreError) -> EventTotals {
        try connection.totals()
    }

    public func sessions(limit: Int) throws(StoreError) -> [SessionSummary] {
        try connection.sessions(limit: limit)
    }

    public func ledgerEntries() throws(StoreError) -> [LedgerEntry] {
        try connection.ledgerEntries()
    }
}
