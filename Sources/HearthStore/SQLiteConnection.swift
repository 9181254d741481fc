import CHearthSQLite

/// A thin owner of one `sqlite3*`: open with flags, prepared-statement cache, transactions with
/// rollback on error. Used by one isolation domain at a time (opened with `SQLITE_OPEN_NOMUTEX`).
package final class SQLiteConnection {
    private var handle: OpaquePointer?
    private var cache: [String: Statement] = [:]
    package let path: String

    /// Opens `path` with `flags` through the VFS named `vfsName` (nil: SQLite's default VFS;
    /// the power-loss tests pass their recording VFS).
    package init(path: String, flags: Int32, vfsName: String? = nil) throws(StoreError) {
        self.path = path
        var db: OpaquePointer?
        let rc = sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_NOMUTEX, vfsName)
        guard rc == SQLITE_OK, let db else {
            let message = db.flatMap { sqlite3_errmsg($0) }.map { String(cString: $0) } ?? "cannot open"
            let code = db.map { sqlite3_extended_errcode($0) } ?? rc
            sqlite3_close_v2(db)
            throw .sqlite(SQLiteResultCode(rawValue: code), "cannot open the store at \(path): \(message)")
        }
        handle = db
        sqlite3_extended_result_codes(db, 1)
    }

    deinit { close() }

    /// Finalizes cached statements and closes (idempotent).
    package func close() {
        cache.removeAll()
        if let handle { sqlite3_close_v2(handle) }
        handle = nil
    }

    package func db() throws(StoreError) -> OpaquePointer {
        guard let handle else { throw .closed("the store at \(path) is closed") }
        return handle
    }

    /// The error for a failed call on this connection.
    package func error(_ rc: Int32, _ context: String) -> StoreError {
        let code: Int32
        let message: String
        if let handle {
            let ext = sqlite3_extended_errcode(handle)
            code = (ext & 0xFF) == (rc & 0xFF) ? ext : rc
            message = String(cString: sqlite3_errmsg(handle))
        } else {
            code = rc
            message = sqlite3_errstr(rc).map { String(cString: $0) } ?? "error"
        }
        return .sqlite(SQLiteResultCode(rawValue: code), "\(context): \(message)")
    }

    package func check(_ rc: Int32, _ context: @autoclosure () -> String) throws(StoreError) {
        guard rc == SQLITE_OK else { throw error(rc, context()) }
    }

    /// The configured busy timeout (restored after no-wait operations).
    package private(set) var busyTimeoutMilliseconds: Int32 = 0

    package func busyTimeout(milliseconds: Int32) throws(StoreError) {
        try check(sqlite3_busy_timeout(try db(), milliseconds), "busy_timeout")
        busyTimeoutMilliseconds = milliseconds
    }

    package func dbConfig(_ op: Int32, _ value: Int32) throws(StoreError) -> Int32 {
        var result: Int32 = -1
        try check(hearth_sqlite3_db_config_int(try db(), op, value, &result), "db_config(\(op))")
        return result
    }

    /// Runs one or more statements without results.
    /// Writes `bytes` into the blob at (`table`, `column`, `rowid`), which must already hold
    /// exactly `bytes.count` bytes (insert it as `zeroblob(N)`), in chunks through SQLite's
    /// incremental blob I/O.
    ///
    /// Binding a large blob to an INSERT makes SQLite copy it (a transient bind) and then build
    /// the whole record in memory: two more copies of the payload at the peak. A `zeroblob`
    /// insert followed by this writes the same bytes through the page cache instead. Call it
    /// inside the inserting transaction so the row is never visible with zeros.
    package func writeBlob(table: String, column: String, rowid: Int64, bytes: [UInt8],
                           chunkBytes: Int = 256 * 1024) throws(StoreError) {
        var blob: OpaquePointer?
        try check(sqlite3_blob_open(try db(), "main", table, column, rowid, 1, &blob), "open blob \(table).\(column)")
        defer { sqlite3_blob_close(blob) }
        var written = 0
        while written < bytes.count {
            let count = min(chunkBytes, bytes.count - written)
            let rc = bytes.withUnsafeBytes { raw -> Int32 in
                guard let base = raw.baseAddress else { return SQLITE_MISUSE }
                return sqlite3_blob_write(blob, base + written, Int32(count), Int32(written))
            }
            try check(rc, "write blob \(table).\(column) at \(written)")
            written += count
        }
    }

    package func execute(_ sql: String) throws(StoreError) {
        let rc = sqlite3_exec(try db(), sql, nil, nil, nil)
        guard rc == SQLITE_OK else { throw error(rc, "executing \(sql.prefix(60))") }
    }

    /// A prepared statement, cached by SQL text when `cached`.
    package func prepare(_ sql: String, cached: Bool = true) throws(StoreError) -> Statement {
        if cached, let statement = cache[sql] {
            statement.reset()
            return statement
        }
        var pointer: OpaquePointer?
        let rc = sqlite3_prepare_v3(try db(), sql, -1, cached ? UInt32(SQLITE_PREPARE_PERSISTENT) : 0, &pointer, nil)
        guard rc == SQLITE_OK, let pointer else {
            sqlite3_finalize(pointer)
            throw error(rc, "preparing \(sql.prefix(60))")
        }
        let statement = Statement(pointer, connection: self)
        if cached { cache[sql] = statement }
        return statement
    }

    /// First column of the first row as an integer (for PRAGMAs and counts).
    package func scalarInt(_ sql: String) throws(StoreError) -> Int64? {
        let statement = try prepare(sql, cached: false)
        guard try statement.step() else { return nil }
        return statement.isNull(0) ? nil : statement.int64(0)
    }

    /// First column of the first row as text.
    package func scalarText(_ sql: String) throws(StoreError) -> String? {
        let statement = try prepare(sql, cached: false)
        guard try statement.step() else { return nil }
        return statement.isNull(0) ? nil : statement.text(0)
    }

    package var lastInsertRowID: Int64 { handle.map { sqlite3_last_insert_rowid($0) } ?? 0 }
    package var changes: Int { handle.map { Int(sqlite3_changes($0)) } ?? 0 }
    package var isInTransaction: Bool { handle.map { sqlite3_get_autocommit($0) == 0 } ?? false }

    /// Runs `body` in a transaction (`BEGIN IMMEDIATE` for writers: the write lock is taken up
    /// front, so a writer never fails half-way on lock upgrade). Any error rolls back.
    package func transaction<T>(immediate: Bool = true, _ body: () throws(StoreError) -> T) throws(StoreError) -> T {
        try execute(immediate ? "BEGIN IMMEDIATE" : "BEGIN DEFERRED")
        let result: T
        do {
            result = try body()
        } catch {
            rollback()
            throw error
        }
        do {
            try execute("COMMIT")
        } catch {
            rollback()
            throw error
        }
        return result
    }

    /// Rolls back if a transaction is still open (SQLite may already have rolled back itself
    /// after SQLITE_FULL or an I/O error).
    package func rollback() {
        cache.values.forEach { $0.reset() }
        if isInTransaction, let handle { sqlite3_exec(handle, "ROLLBACK", nil, nil, nil) }
    }
}

extension SQLiteConnection {
    /// Applies numbered migrations (`migrations[i]` moves `PRAGMA user_version` from `i` to
    /// `i + 1`) in one write transaction, and refuses a database newer than `migrations`.
    package func migrate(_ migrations: [String]) throws(StoreError) {
        let latest = Int64(migrations.count)
        // Read inside the write transaction so two processes cannot both migrate.
        try transaction { () throws(StoreError) in
            let current = try scalarInt("PRAGMA user_version") ?? 0
            if current > latest {
                throw .schemaTooNew("the store at \(path) has schema version \(current); this build knows versions up to \(latest) (written by a newer Hearth?)")
            }
            if current < 0 { throw .corrupt("the store at \(path) has a negative schema version \(current)") }
            guard current < latest else { return }
            for version in Int(current) ..< migrations.count {
                try execute(migrations[version])
            }
            try execute("PRAGMA user_version = \(latest)")
        }
    }
}

/// One prepared statement. Binding indices start at 1, column indices at 0 (as in SQLite).
package final class Statement {
    private let pointer: OpaquePointer
    private unowned let connection: SQLiteConnection

    init(_ pointer: OpaquePointer, connection: SQLiteConnection) {
        self.pointer = pointer
        self.connection = connection
    }

    deinit { sqlite3_finalize(pointer) }

    package func reset() {
        sqlite3_reset(pointer)
        sqlite3_clear_bindings(pointer)
    }

    private func check(_ rc: Int32, _ index: Int32) throws(StoreError) {
        guard rc == SQLITE_OK else { throw connection.error(rc, "binding parameter \(index)") }
    }

    package func bind(_ index: Int32, _ value: Int64) throws(StoreError) {
        try check(sqlite3_bind_int64(pointer, index, value), index)
    }

    package func bind(_ index: Int32, _ value: Int64?) throws(StoreError) {
        if let value { try bind(index, value) } else { try bindNull(index) }
    }

    package func bind(_ index: Int32, _ value: Double) throws(StoreError) {
        try check(sqlite3_bind_double(pointer, index, value), index)
    }

    package func bind(_ index: Int32, _ value: Double?) throws(StoreError) {
        if let value { try bind(index, value) } else { try bindNull(index) }
    }

    package func bind(_ index: Int32, _ value: String) throws(StoreError) {
        try check(sqlite3_bind_text(pointer, index, value, -1, hearth_sqlite3_transient()), index)
    }

    package func bind(_ index: Int32, _ value: String?) throws(StoreError) {
        if let value { try bind(index, value) } else { try bindNull(index) }
    }

    package func bind(_ index: Int32, blob: [UInt8]) throws(StoreError) {
        let rc = blob.withUnsafeBytes { raw -> Int32 in
            // An empty buffer may have no base address, which SQLite would bind as NULL.
            guard let base = raw.baseAddress, raw.count > 0 else { return sqlite3_bind_zeroblob(pointer, index, 0) }
            return sqlite3_bind_blob64(pointer, index, base, sqlite3_uint64(raw.count), hearth_sqlite3_transient())
        }
        try check(rc, index)
    }

    package func bindNull(_ index: Int32) throws(StoreError) {
        try check(sqlite3_bind_null(pointer, index), index)
    }

    /// Advances; true when a row is available, false when done. Errors reset the statement.
    package func step() throws(StoreError) -> Bool {
        let rc = sqlite3_step(pointer)
        switch rc {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        default:
            let error = connection.error(rc, "executing \(sqlite3_sql(pointer).map { String(cString: $0).prefix(60) } ?? "")")
            sqlite3_reset(pointer)
            throw error
        }
    }

    /// Steps to completion (statements without rows).
    package func run() throws(StoreError) {
        while try step() {}
    }

    package func isNull(_ column: Int32) -> Bool { sqlite3_column_type(pointer, column) == SQLITE_NULL }
    package func int64(_ column: Int32) -> Int64 { sqlite3_column_int64(pointer, column) }
    package func double(_ column: Int32) -> Double { sqlite3_column_double(pointer, column) }

    package func text(_ column: Int32) -> String {
        guard let bytes = sqlite3_column_text(pointer, column) else { return "" }
        let count = Int(sqlite3_column_bytes(pointer, column))
        return String(decoding: UnsafeBufferPointer(start: bytes, count: count), as: UTF8.self)
    }

    package func blob(_ column: Int32) -> [UInt8] {
        guard let raw = sqlite3_column_blob(pointer, column) else { return [] }
        let count = Int(sqlite3_column_bytes(pointer, column))
        return Array(UnsafeRawBufferPointer(start: raw, count: count))
    }
}
