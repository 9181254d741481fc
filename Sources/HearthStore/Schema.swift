/// The store's schema as numbered migrations. Migration `n` moves `PRAGMA user_version` from
/// `n - 1` to `n`; all pending migrations run in one transaction at open. Never edit a shipped
/// migration: add a new one.
enum Schema {
    /// The migrations, in order; `migrations[i]` is version `i + 1`.
    static let migrations: [String] = [
        // 1: event log, outbox, privacy ledger, local state, upload status.
        """
        CREATE TABLE events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            item TEXT NOT NULL CHECK (length(CAST(item AS BLOB)) BETWEEN 1 AND 128),
            kind INTEGER NOT NULL CHECK (kind BETWEEN 0 AND 3),
            session TEXT NOT NULL CHECK (length(CAST(session AS BLOB)) BETWEEN 1 AND 128),
            quantity INTEGER CHECK (quantity IS NULL OR quantity BETWEEN 1 AND 10000),
            ts_ms INTEGER NOT NULL CHECK (ts_ms >= 0)
        );
        CREATE INDEX events_by_session ON events (session, seq);
        CREATE INDEX events_by_time ON events (ts_ms);

        CREATE TABLE outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            idempotency_key TEXT NOT NULL UNIQUE CHECK (length(idempotency_key) BETWEEN 1 AND 256),
            model_version INTEGER NOT NULL,
            payload BLOB NOT NULL,
            created_ms INTEGER NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
            next_attempt_ms INTEGER NOT NULL,
            last_attempt_ms INTEGER,
            last_error TEXT
        );
        CREATE INDEX outbox_by_due ON outbox (next_attempt_ms, id);

        CREATE TABLE upload_status (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            idempotency_key TEXT NOT NULL,
            model_version INTEGER NOT NULL,
            delivered_ms INTEGER NOT NULL
        );

        CREATE TABLE privacy_ledger (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            round INTEGER NOT NULL,
            mechanism TEXT NOT NULL CHECK (mechanism IN ('discreteGaussian', 'gaussian')),
            noise_multiplier REAL NOT NULL,
            sampling_rate REAL,
            clip_norm REAL NOT NULL,
            mode TEXT NOT NULL CHECK (mode IN ('local', 'central', 'secureAggregation')),
            unit TEXT NOT NULL CHECK (unit IN ('device', 'session')),
            participated INTEGER NOT NULL CHECK (participated IN (0, 1))
        );
        -- Spent privacy is never forgotten: the ledger is append-only.
        CREATE TRIGGER privacy_ledger_no_delete BEFORE DELETE ON privacy_ledger
            BEGIN SELECT RAISE(ABORT, 'the privacy ledger is append-only'); END;
        CREATE TRIGGER privacy_ledger_no_update BEFORE UPDATE ON privacy_ledger
            BEGIN SELECT RAISE(ABORT, 'the privacy ledger is append-only'); END;

        CREATE TABLE local_state (
            key TEXT PRIMARY KEY CHECK (length(key) BETWEEN 1 AND 256),
            value BLOB NOT NULL,
            updated_ms INTEGER
        ) WITHOUT ROWID;
        """,
        // 2: upload payloads in their own table, as its last column. A blob that is not a row's
        // last column is built in memory whole (a zeroblob insert then holds two copies of a
        // megabytes-large update), and updating a row rewrites all of it: recording an upload
        // attempt rewrote the payload. Now an attempt touches a small row, and a payload goes in
        // as a trailing zeroblob and is written in place (`writeBlob`).
        """
        CREATE TABLE outbox_payloads (
            id INTEGER PRIMARY KEY REFERENCES outbox (id) ON DELETE CASCADE,
            payload BLOB NOT NULL
        );
        INSERT INTO outbox_payloads (id, payload) SELECT id, payload FROM outbox;
        ALTER TABLE outbox DROP COLUMN payload;
        """,
    ]

    /// The newest schema version this build knows.
    static var latestVersion: Int64 { Int64(migrations.count) }

    /// Applies pending migrations in one transaction; refuses a schema newer than this build.
    static func migrate(_ connection: SQLiteConnection) throws(StoreError) {
        try connection.migrate(migrations)
    }

    /// Checks the version for a read-only connection (which cannot migrate).
    static func checkReadable(_ connection: SQLiteConnection) throws(StoreError) {
        let current = try connection.scalarInt("PRAGMA user_version") ?? 0
        if current > latestVersion {
            throw .schemaTooNew("the store at \(connection.path) has schema version \(current); this build knows versions up to \(latestVersion)")
        }
        if current < latestVersion {
            throw .invalidArgument("the store at \(connection.path) has schema version \(current), not \(latestVersion): open it for writing (DeviceStore) first so it is migrated")
        }
    }
}
