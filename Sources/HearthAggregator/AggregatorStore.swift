import CHearthSQLite
import HearthStore

/// An enrolled device as listed by `hearth-aggregator devices list`.
public struct DeviceRecord: Sendable, Hashable {
    public var name: String
    public var createdMilliseconds: Int64
    public var revokedMilliseconds: Int64?
    public var acceptedUpdates: Int
}

/// A published model version with its provenance.
public struct VersionRecord: Sendable, Hashable {
    public var version: UInt64
    public var createdMilliseconds: Int64
    /// The version whose parameters this one started from (nil for the first).
    public var parent: UInt64?
    /// Device updates averaged into it (0 for the first version and for rollbacks).
    public var updates: Int
    /// Standard deviation of the central noise added, in grid steps (0 in local mode).
    public var noiseStandardDeviation: Double
    /// ε of the released model after this version (δ below), by the accountant.
    public var epsilon: Double
    public var delta: Double
    /// Versions that used device data so far, including this one (what ε was computed for).
    public var dataVersions: Int
    /// "init", "fedbuff" or "rollback of N".
    public var origin: String
}

/// A pending (accepted, not yet published) update, for replay after a restart.
public struct PendingUpdate: Sendable {
    public var key: [UInt8]
    public var device: String
    public var modelVersion: UInt64
    public var payload: [UInt8]
}

/// The aggregator's durable state in one SQLite database (WAL, `synchronous=FULL`).
///
/// - `devices`: name and SHA-256 of the credential (the credential itself is never stored).
/// - `updates`: every accepted upload by idempotency key; the payload is kept until the update
///   is folded into a published version (then dropped, the row stays as provenance).
/// - `versions`: every published model file, its signature, the optimiser state after it and
///   its provenance; `state.current_version` names the one served (rollback moves it).
///
/// Not `Sendable`: owned by the aggregator actor; every call is synchronous and durable when it
/// returns.
public final class AggregatorStore {
    /// Package-visible so the power-loss tests can weaken `synchronous` to show what they catch.
    package let connection: SQLiteConnection
    public let path: String

    static let migrations: [String] = [
        """
        CREATE TABLE devices (
            name TEXT PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 64),
            token_hash BLOB NOT NULL UNIQUE CHECK (length(token_hash) = 32),
            created_ms INTEGER NOT NULL,
            revoked_ms INTEGER
        );
        CREATE TABLE versions (
            version INTEGER PRIMARY KEY CHECK (version >= 1),
            created_ms INTEGER NOT NULL,
            parent INTEGER,
            updates INTEGER NOT NULL CHECK (updates >= 0),
            noise_sd REAL NOT NULL,
            epsilon REAL NOT NULL,
            delta REAL NOT NULL,
            data_versions INTEGER NOT NULL,
            origin TEXT NOT NULL,
            model BLOB NOT NULL,
            signature BLOB NOT NULL CHECK (length(signature) = 64),
            optimizer BLOB
        );
        CREATE TABLE updates (
            idempotency_key BLOB PRIMARY KEY CHECK (length(idempotency_key) = 16),
            device TEXT NOT NULL,
            received_ms INTEGER NOT NULL,
            model_version INTEGER NOT NULL,
            size INTEGER NOT NULL,
            payload BLOB,
            published_in INTEGER
        );
        CREATE INDEX updates_pending ON updates (published_in);
        CREATE INDEX updates_by_device ON updates (device, received_ms);
        CREATE TABLE state (
            key TEXT PRIMARY KEY,
            value INTEGER NOT NULL
        ) WITHOUT ROWID;
        """,
    ]

    /// Opens (creating if needed) and migrates the store at `path`, through the SQLite VFS
    /// named `vfsName` (nil: the default VFS; the power-loss tests pass a recording one).
    public init(path: String, vfsName: String? = nil) throws(StoreError) {
        self.path = path
        connection = try SQLiteConnection(path: path, flags: SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfsName: vfsName)
        do throws(StoreError) {
            try connection.busyTimeout(milliseconds: 5_000)
            _ = try connection.dbConfig(SQLITE_DBCONFIG_DEFENSIVE, 1)
            _ = try connection.dbConfig(SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0)
            let mode = try connection.scalarText("PRAGMA journal_mode = WAL")
            guard mode?.lowercased() == "wal" else {
                throw .sqlite("the aggregator store at \(path) could not switch to WAL")
            }
            // FULL: an accepted update is fsynced before the 2xx.
            try connection.execute("PRAGMA synchronous = FULL")
            try connection.execute("PRAGMA temp_store = MEMORY")
            try connection.migrate(AggregatorStore.migrations)
        } catch {
            connection.close()
            throw error
        }
    }

    deinit { connection.close() }

    /// Closes the connection.
    public func close() { connection.close() }

    /// `PRAGMA integrity_check` (`["ok"]` when healthy).
    public func integrityCheck() throws(StoreError) -> [String] { try connection.integrityCheck() }

    // MARK: - Devices

    /// Enrols a device; fails with `.constraint` if the name exists.
    public func addDevice(name: String, tokenHash: [UInt8], now: Int64) throws(StoreError) {
        let s = try connection.prepare("INSERT INTO devices (name, token_hash, created_ms) VALUES (?, ?, ?)")
        try s.bind(1, name)
        try s.bind(2, blob: tokenHash)
        try s.bind(3, now)
        try s.run()
    }

    /// Enrols several devices in one transaction: all or none (a taken name fails the batch).
    public func addDevices(_ devices: [(name: String, tokenHash: [UInt8])], now: Int64) throws(StoreError) {
        try connection.transaction { () throws(StoreError) in
            for device in devices { try addDevice(name: device.name, tokenHash: device.tokenHash, now: now) }
        }
    }

    /// Revokes a device; false when no such (unrevoked) device exists.
    public func revokeDevice(name: String, now: Int64) throws(StoreError) -> Bool {
        let s = try connection.prepare("UPDATE devices SET revoked_ms = ? WHERE name = ? AND revoked_ms IS NULL")
        try s.bind(1, now)
        try s.bind(2, name)
        try s.run()
        return connection.changes == 1
    }

    /// The device a credential hash belongs to, and whether it is revoked.
    public func device(tokenHash: [UInt8]) throws(StoreError) -> (name: String, revoked: Bool)? {
        let s = try connection.prepare("SELECT name, revoked_ms FROM devices WHERE token_hash = ?")
        defer { s.reset() }  // a statement left on a row keeps its read snapshot (see `update(key:)`)
        try s.bind(1, blob: tokenHash)
        guard try s.step() else { return nil }
        return (s.text(0), !s.isNull(1))
    }

    /// Every device, by name.
    public func devices() throws(StoreError) -> [DeviceRecord] {
        let s = try connection.prepare("""
            SELECT d.name, d.created_ms, d.revoked_ms, (SELECT count(*) FROM updates u WHERE u.device = d.name)
            FROM devices d ORDER BY d.name
            """)
        var out: [DeviceRecord] = []
        while try s.step() {
            out.append(DeviceRecord(name: s.text(0), createdMilliseconds: s.int64(1),
                                    revokedMilliseconds: s.isNull(2) ? nil : s.int64(2), acceptedUpdates: Int(s.int64(3))))
        }
        return out
    }

    // MARK: - Updates

    /// The device and model version an idempotency key was first accepted with, if any.
    public func update(key: [UInt8]) throws(StoreError) -> (device: String, modelVersion: UInt64)? {
        let s = try connection.prepare("SELECT device, model_version FROM updates WHERE idempotency_key = ?")
        // Reset once read: a cached statement left on a row holds its WAL read snapshot, and after
        // another process writes (`hearth-aggregator devices revoke` while serving) the next
        // BEGIN IMMEDIATE on this connection fails with SQLITE_BUSY_SNAPSHOT: no upload could be stored.
        defer { s.reset() }
        try s.bind(1, blob: key)
        guard try s.step() else { return nil }
        return (s.text(0), UInt64(bitPattern: s.int64(1)))
    }

    /// Whether `device` already has an update waiting for the next publication.
    public func hasPendingUpdate(device: String) throws(StoreError) -> Bool {
        let s = try connection.prepare("SELECT 1 FROM updates WHERE device = ? AND published_in IS NULL LIMIT 1")
        defer { s.reset() }
        try s.bind(1, device)
        return try s.step()
    }

    /// Stores an accepted update durably (fsynced when this returns).
    ///
    /// The payload (13 MB at 16 bits for 6.5 M coordinates) is inserted as a `zeroblob` and
    /// written in place in the same transaction (`writeBlob`): binding it would make SQLite copy
    /// it and then build the record around the copy, two more copies at the peak.
    public func insertUpdate(key: [UInt8], device: String, modelVersion: UInt64, payload: [UInt8], now: Int64) throws(StoreError) {
        try connection.transaction { () throws(StoreError) in
            let s = try connection.prepare("""
                INSERT INTO updates (idempotency_key, device, received_ms, model_version, size, payload)
                VALUES (?, ?, ?, ?, ?, zeroblob(?))
                """)
            try s.bind(1, blob: key)
            try s.bind(2, device)
            try s.bind(3, now)
            try s.bind(4, Int64(bitPattern: modelVersion))
            try s.bind(5, Int64(payload.count))
            try s.bind(6, Int64(payload.count))
            try s.run()
            if !payload.isEmpty {
                try connection.writeBlob(table: "updates", column: "payload", rowid: connection.lastInsertRowID, bytes: payload)
            }
        }
    }

    /// Accepted updates not yet in a published version, in arrival order.
    public func pendingUpdates() throws(StoreError) -> [PendingUpdate] {
        let s = try connection.prepare("""
            SELECT idempotency_key, device, model_version, payload FROM updates
            WHERE published_in IS NULL ORDER BY rowid
            """)
        var out: [PendingUpdate] = []
        while try s.step() {
            out.append(PendingUpdate(key: s.blob(0), device: s.text(1), modelVersion: UInt64(bitPattern: s.int64(2)), payload: s.blob(3)))
        }
        return out
    }

    /// Number of pending updates.
    public func pendingCount() throws(StoreError) -> Int {
        Int(try connection.scalarInt("SELECT count(*) FROM updates WHERE published_in IS NULL") ?? 0)
    }

    // MARK: - Versions

    /// Publishes a version: inserts it, marks every pending update as folded into it (dropping
    /// payloads; with `discardPending` they are marked with version 0 instead: a rollback),
    /// makes it current and resets the round clock, all in one transaction.
    public func publish(_ record: VersionRecord, model: [UInt8], signature: [UInt8], optimizer: [UInt8]?,
                        discardPending: Bool = false) throws(StoreError) {
        try connection.transaction { () throws(StoreError) in
            let s = try connection.prepare("""
                INSERT INTO versions (version, created_ms, parent, updates, noise_sd, epsilon, delta, data_versions,
                                      origin, model, signature, optimizer)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """)
            try s.bind(1, Int64(bitPattern: record.version))
            try s.bind(2, record.createdMilliseconds)
            try s.bind(3, record.parent.map { Int64(bitPattern: $0) })
            try s.bind(4, Int64(record.updates))
            try s.bind(5, record.noiseStandardDeviation)
            try s.bind(6, record.epsilon)
            try s.bind(7, record.delta)
            try s.bind(8, Int64(record.dataVersions))
            try s.bind(9, record.origin)
            try s.bind(10, blob: model)
            try s.bind(11, blob: signature)
            if let optimizer { try s.bind(12, blob: optimizer) } else { try s.bindNull(12) }
            try s.run()
            let mark = try connection.prepare("UPDATE updates SET published_in = ?, payload = NULL WHERE published_in IS NULL")
            try mark.bind(1, discardPending ? 0 : Int64(bitPattern: record.version))
            try mark.run()
            try setState("current_version", Int64(bitPattern: record.version))
            try setState("round_started_ms", record.createdMilliseconds)
        }
    }

    /// The served version (nil before `init`).
    public func currentVersion() throws(StoreError) -> UInt64? {
        try state("current_version").map { UInt64(bitPattern: $0) }
    }

    /// When the current round started (the last publication).
    public func roundStarted() throws(StoreError) -> Int64? { try state("round_started_ms") }

    /// Highest version number ever published (0 when none).
    public func latestVersionNumber() throws(StoreError) -> UInt64 {
        UInt64(bitPattern: try connection.scalarInt("SELECT coalesce(max(version), 0) FROM versions") ?? 0)
    }

    /// A version's model file, signature and optimiser state.
    public func versionContents(_ version: UInt64) throws(StoreError) -> (model: [UInt8], signature: [UInt8], optimizer: [UInt8]?)? {
        let s = try connection.prepare("SELECT model, signature, optimizer FROM versions WHERE version = ?")
        defer { s.reset() }
        try s.bind(1, Int64(bitPattern: version))
        guard try s.step() else { return nil }
        return (s.blob(0), s.blob(1), s.isNull(2) ? nil : s.blob(2))
    }

    /// Every version's provenance, oldest first.
    public func versions() throws(StoreError) -> [VersionRecord] {
        let s = try connection.prepare("""
            SELECT version, created_ms, parent, updates, noise_sd, epsilon, delta, data_versions, origin
            FROM versions ORDER BY version
            """)
        var out: [VersionRecord] = []
        while try s.step() {
            out.append(VersionRecord(version: UInt64(bitPattern: s.int64(0)), createdMilliseconds: s.int64(1),
                                     parent: s.isNull(2) ? nil : UInt64(bitPattern: s.int64(2)),
                                     updates: Int(s.int64(3)), noiseStandardDeviation: s.double(4),
                                     epsilon: s.double(5), delta: s.double(6), dataVersions: Int(s.int64(7)),
                                     origin: s.text(8)))
        }
        return out
    }

    // MARK: - State

    private func state(_ key: String) throws(StoreError) -> Int64? {
        let s = try connection.prepare("SELECT value FROM state WHERE key = ?")
        defer { s.reset() }
        try s.bind(1, key)
        guard try s.step() else { return nil }
        return s.int64(0)
    }

    private func setState(_ key: String, _ value: Int64) throws(StoreError) {
        let s = try connection.prepare("INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
        try s.bind(1, key)
        try s.bind(2, value)
        try s.run()
    }
}
