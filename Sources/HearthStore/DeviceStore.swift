import CHearthSQLite
import HearthCore

/// Settings for opening a `DeviceStore`.
public struct StoreOptions: Sendable, Hashable {
    /// Caps on the event log, enforced by `DeviceStore.enforceRetention(now:)`.
    public var retention: RetentionPolicy
    /// How long a write waits for another connection's lock before failing with `.busy`.
    public var busyTimeoutMilliseconds: Int32
    /// Upper bound of the WAL file kept after a checkpoint (SQLite's `journal_size_limit`).
    public var walSizeLimitBytes: Int64
    /// Test hook: when false, closing does not checkpoint (the WAL stays, as after a crash).
    var checkpointOnClose = true
    /// The SQLite VFS to open the database through, by registered name (nil: the default VFS).
    /// For tests: the power-loss tests open the store through a recording VFS.
    public var vfsName: String?

    public init(retention: RetentionPolicy = RetentionPolicy(), busyTimeoutMilliseconds: Int32 = 5_000,
                walSizeLimitBytes: Int64 = 1 << 20) {
        self.retention = retention
        self.busyTimeoutMilliseconds = busyTimeoutMilliseconds
        self.walSizeLimitBytes = walSizeLimitBytes
    }
}

/// The agent's durable local store: the event log, the upload outbox, the privacy ledger and
/// the device's local state, in one SQLite database (WAL, `synchronous=FULL`).
///
/// Concurrency: a `DeviceStore` is deliberately **not** `Sendable`. It owns the single write
/// connection and must be owned by one isolation domain (the agent's store actor); every call
/// is synchronous and a write is durable when it returns. Readers that must not wait behind
/// writes or each other (serving, training) each open their own `DeviceStoreReader`: WAL lets
/// them read a consistent snapshot while this connection writes.
public final class DeviceStore {
    let connection: SQLiteConnection
    /// The database file.
    public let path: String
    /// The caps `enforceRetention(now:)` applies.
    public var retentionPolicy: RetentionPolicy
    /// Test hook: throw a simulated I/O failure after this many rows of an `append` batch.
    var failAppendAfterRows: Int?

    /// Opens (creating if needed) and migrates the store at `path`.
    ///
    /// Errors: `.notADatabase` / `.corrupt` for a damaged or foreign file, `.schemaTooNew` for a
    /// store written by a newer build, `.cannotOpen` / `.readOnly` / `.full` / `.ioError` from
    /// the file system (each with the SQLite result code).
    public init(path: String, options: StoreOptions = StoreOptions()) throws(StoreError) {
        try options.retention.validate()
        self.path = path
        self.retentionPolicy = options.retention
        connection = try SQLiteConnection(path: path, flags: SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                                          vfsName: options.vfsName)
        do {
            try configure(options)
            try Schema.migrate(connection)
        } catch {
            connection.close()
            throw DeviceStore.explain(error, path: path)
        }
    }

    private func configure(_ options: StoreOptions) throws(StoreError) {
        try connection.busyTimeout(milliseconds: options.busyTimeoutMilliseconds)
        // Defensive: no writable_schema, no journal_mode=OFF, no raw schema edits: SQL alone
        // cannot corrupt the file.
        _ = try connection.dbConfig(SQLITE_DBCONFIG_DEFENSIVE, 1)
        _ = try connection.dbConfig(SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0)
        _ = try connection.dbConfig(SQLITE_DBCONFIG_DQS_DML, 0)
        _ = try connection.dbConfig(SQLITE_DBCONFIG_DQS_DDL, 0)
        if !options.checkpointOnClose {
            _ = try connection.dbConfig(SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1)
        }
        // Must precede the first table of a new file (it is a no-op on an existing one, which
        // keeps the mode it was created with). This is also the first read of the file header,
        // so a foreign file fails here with SQLITE_NOTADB.
        try connection.execute("PRAGMA auto_vacuum = INCREMENTAL")
        let mode = try connection.scalarText("PRAGMA journal_mode = WAL")
        guard mode?.lowercased() == "wal" else {
            throw .sqlite("the store at \(path) could not switch to WAL (journal_mode is \(mode ?? "unknown"))")
        }
        // FULL: in WAL mode, NORMAL skips the fsync of the WAL at commit, so the last commits
        // can vanish on power loss. FULL fsyncs at each commit: acknowledged means durable.
        try connection.execute("PRAGMA synchronous = FULL")
        // Deleted content is overwritten with zeros, not left in free pages (erasure).
        try connection.execute("PRAGMA secure_delete = ON")
        try connection.execute("PRAGMA foreign_keys = ON")
        try connection.execute("PRAGMA journal_size_limit = \(options.walSizeLimitBytes)")
        try connection.execute("PRAGMA temp_store = MEMORY")
        try connection.execute("PRAGMA cache_size = -\(DeviceStore.pageCacheKibibytes)")
    }

    /// The page cache of the store's connection, in KiB: the most of the file it keeps in
    /// memory. It fills as the database grows past it and then stays there (2.1-2.2 MB of
    /// SQLite memory in the soak, docs/reliability.md); SQLite's default is about the same
    /// (2,000 KiB), set here so the bound is a decision. The queries that run over the whole
    /// log stream through it (`totalsQuery`), and `temp_store = MEMORY` holds only the small
    /// temporary structures left.
    static let pageCacheKibibytes = 2048

    /// Adds the path and a plain explanation to the open-time errors people will see.
    static func explain(_ error: StoreError, path: String) -> StoreError {
        switch error {
        case .notADatabase(""):
            return .sqlite(error.resultCode ?? .notadb,
                           "the file at \(path) is not a SQLite database (damaged or a different file); move it aside to start a fresh store (\(error.message))")
        case .corrupt(""):
            return .sqlite(error.resultCode ?? .corrupt,
                           "the store at \(path) is corrupt; move it aside to start a fresh store (\(error.message))")
        default:
            return error
        }
    }

    deinit { connection.close() }

    /// Closes the connection (a checkpoint folds the WAL into the database). Later calls throw `.closed`.
    public func close() { connection.close() }

    /// `PRAGMA integrity_check`: `["ok"]` for a healthy database, else the problems found.
    public func integrityCheck() throws(StoreError) -> [String] {
        try connection.integrityCheck()
    }

    /// Writes the WAL back into the database file and truncates it. Returns false when a
    /// reader's open snapshot kept the checkpoint from completing (nothing is lost either way).
    @discardableResult
    public func checkpoint() throws(StoreError) -> Bool {
        try connection.checkpointTruncate()
    }

    /// The current value of a PRAGMA (tests and status).
    func pragma(_ name: String) throws(StoreError) -> String? {
        try connection.scalarText("PRAGMA \(name)")
    }
}

extension SQLiteConnection {
    package func integrityCheck() throws(StoreError) -> [String] {
        let statement = try prepare("PRAGMA integrity_check", cached: false)
        var lines: [String] = []
        while try statement.step() { lines.append(statement.text(0)) }
        return lines
    }

    /// `sqlite3_wal_checkpoint_v2(TRUNCATE)`; false when readers kept it from completing.
    /// With `wait` false it does not wait for readers (busy timeout 0 for the call).
    func checkpointTruncate(wait: Bool = true) throws(StoreError) -> Bool {
        var logFrames: Int32 = 0
        var checkpointed: Int32 = 0
        let handle = try db()
        let timeout = busyTimeoutMilliseconds
        if !wait { sqlite3_busy_timeout(handle, 0) }
        defer { if !wait { sqlite3_busy_timeout(handle, timeout) } }
        let rc = sqlite3_wal_checkpoint_v2(handle, nil, SQLITE_CHECKPOINT_TRUNCATE, &logFrames, &checkpointed)
        if rc == SQLITE_BUSY || rc == SQLITE_LOCKED { return false }
        try check(rc, "checkpoint")
        return true
    }
}
