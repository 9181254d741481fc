import CHearthSQLite
import HearthPrivacy

extension DeviceStore {
    /// Appends one round to the persisted privacy ledger (durable when it returns). The table
    /// is append-only (triggers refuse UPDATE and DELETE) and `eraseAll()` keeps it.
    public func appendLedgerEntry(_ entry: LedgerEntry) throws(StoreError) {
        try connection.transaction { () throws(StoreError) in try insertLedger(entry) }
    }

    /// Records a round in the ledger and queues its upload in ONE transaction, so an update can
    /// never be uploaded without its privacy cost on record.
    public func appendLedgerEntry(_ entry: LedgerEntry, enqueueing payload: [UInt8], idempotencyKey: String,
                                  modelVersion: UInt64, createdAt: Int64) throws(StoreError) {
        try connection.transaction { () throws(StoreError) in
            try insertLedger(entry)
            try insertOutbox(payload: payload, idempotencyKey: idempotencyKey, modelVersion: modelVersion, createdAt: createdAt)
        }
    }

    /// Records a round in ONE transaction: its ledger entry, its queued upload and the local
    /// state the round leaves (`state`, written with `updated_ms = createdAt`: the last trained
    /// event sequence, the device embedding). A crash keeps all of it or none, so the events
    /// of a queued update are never trained into a second one after a restart.
    public func appendLedgerEntry(_ entry: LedgerEntry, enqueueing payload: [UInt8], idempotencyKey: String,
                                  modelVersion: UInt64, createdAt: Int64, state: [(key: String, value: [UInt8])]) throws(StoreError) {
        try connection.transaction { () throws(StoreError) in
            try insertLedger(entry)
            try insertOutbox(payload: payload, idempotencyKey: idempotencyKey, modelVersion: modelVersion, createdAt: createdAt)
            for item in state { try insertState(item.key, item.value, now: createdAt) }
        }
    }

    /// All ledger entries, oldest first: feed them to `PrivacyLedger(delta:epsilonBudget:entries:)`.
    public func ledgerEntries() throws(StoreError) -> [LedgerEntry] {
        try connection.ledgerEntries()
    }

    private func insertLedger(_ entry: LedgerEntry) throws(StoreError) {
        for (name, value) in [("noise_multiplier", entry.noiseMultiplier), ("clip_norm", entry.clipNorm),
                              ("sampling_rate", entry.samplingRate ?? 0)] where value.isNaN {
            // SQLite stores NaN as NULL: refuse rather than lose the value.
            throw .invalidArgument("ledger \(name) is NaN")
        }
        let insert = try connection.prepare("""
            INSERT INTO privacy_ledger (round, mechanism, noise_multiplier, sampling_rate, clip_norm, mode, unit, participated)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?)
            """)
        try insert.bind(1, Int64(entry.round))
        try insert.bind(2, entry.mechanism.name)
        try insert.bind(3, entry.noiseMultiplier)
        try insert.bind(4, entry.samplingRate)
        try insert.bind(5, entry.clipNorm)
        try insert.bind(6, entry.mode.name)
        try insert.bind(7, entry.unit.name)
        try insert.bind(8, Int64(entry.participated ? 1 : 0))
        try insert.run()
    }
}

extension SQLiteConnection {
    func ledgerEntries() throws(StoreError) -> [LedgerEntry] {
        let statement = try prepare("""
            SELECT round, mechanism, noise_multiplier, sampling_rate, clip_norm, mode, unit, participated, seq
            FROM privacy_ledger ORDER BY seq
            """)
        var entries: [LedgerEntry] = []
        while try statement.step() {
            let seq = statement.int64(8)
            guard let round = Int(exactly: statement.int64(0)) else { throw .corrupt("ledger row \(seq): round out of range") }
            let mechanism: NoiseMechanism
            switch statement.text(1) {
            case NoiseMechanism.discreteGaussian.name: mechanism = .discreteGaussian
            case NoiseMechanism.gaussian.name: mechanism = .gaussian
            case let other: throw .corrupt("ledger row \(seq): unknown mechanism \(other)")
            }
            let mode: UpdateMode
            switch statement.text(5) {
            case UpdateMode.local.name: mode = .local
            case UpdateMode.central.name: mode = .central
            case UpdateMode.secureAggregation.name: mode = .secureAggregation
            case let other: throw .corrupt("ledger row \(seq): unknown mode \(other)")
            }
            let unit: PrivacyUnit
            switch statement.text(6) {
            case PrivacyUnit.device.name: unit = .device
            case PrivacyUnit.session.name: unit = .session
            case let other: throw .corrupt("ledger row \(seq): unknown unit \(other)")
            }
            entries.append(LedgerEntry(round: round, mechanism: mechanism, noiseMultiplier: statement.double(2),
                                       samplingRate: statement.isNull(3) ? nil : statement.double(3),
                                       clipNorm: statement.double(4), mode: mode, unit: unit,
                                       participated: statement.int64(7) != 0))
        }
        return entries
    }
}

extension DeviceStore {
    /// The privacy ledger of a damaged store file, read through a read-only connection without
    /// migrating or configuring anything; nil when it cannot be read (not a database, the
    /// ledger's pages damaged, a row that does not parse). The agent copies it into the fresh
    /// store it starts after moving a corrupt one aside, so the device does not spend its
    /// privacy budget a second time.
    public static func salvageLedger(path: String) -> [LedgerEntry]? {
        guard let connection = try? SQLiteConnection(path: path, flags: SQLITE_OPEN_READONLY) else { return nil }
        defer { connection.close() }
        return try? connection.ledgerEntries()
    }
}
