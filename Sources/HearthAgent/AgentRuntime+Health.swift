#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import HearthCore
import HearthFiles
import HearthPrivacy
import HearthStore
import HearthUploader
import Logging

/// The runtime's fault conditions: raising and clearing them (with one log line each), the
/// periodic `healthCheck` that retries what failed, and the start-up policies for a damaged
/// database and a damaged model file (docs/agent.md, "Faults").
extension AgentRuntime {
    /// Marker file: the privacy ledger could not be recovered from a corrupt database. Training
    /// is refused while it exists (the device would otherwise spend its budget a second time).
    nonisolated var ledgerLostMarker: String { configuration.stateDirectory + "/" + AgentRuntime.ledgerLostFileName }
    /// The name of `ledgerLostMarker` inside the state directory.
    public static let ledgerLostFileName = "ledger-lost"
    /// Prefix of a damaged database moved aside (`hearth.db.corrupt-<unix ms>`).
    public static let corruptDatabasePrefix = AgentRuntime.databaseFileName + ".corrupt-"

    /// The active conditions, sorted by name (tests, tools).
    public var activeConditions: [AgentCondition] { health.active.keys.sorted() }

    /// Sets `condition` and logs `condition raised: <name>` (warning) the first time.
    func raise(_ condition: AgentCondition, _ detail: String) {
        AgentRuntime.raise(condition, detail, in: &health, logger: logger)
    }

    /// `raise` for a health record the actor does not own yet (its initializer).
    static func raise(_ condition: AgentCondition, _ detail: String, in health: inout AgentHealth, logger: Logger) {
        if health.raise(condition, detail: detail, now: unixMilliseconds()) {
            logger.warning("condition raised: \(condition.rawValue)", metadata: ["condition": "\(condition.rawValue)", "detail": "\(detail)"])
        }
    }

    /// Clears `condition` and logs `condition cleared: <name>` (notice) when it was set.
    func clear(_ condition: AgentCondition) {
        guard let entry = health.clear(condition) else { return }
        let lasted = max(0, unixMilliseconds() - entry.since)
        logger.notice("condition cleared: \(condition.rawValue)", metadata: [
            "condition": "\(condition.rawValue)", "lasted_ms": "\(lasted)", "detail": "\(entry.detail)",
        ])
    }

    /// A write reached the disk: clears `state_read_only`, and `disk_full` once the file
    /// system has room again (a write can still fit in pages SQLite already holds while the
    /// disk is full, which is no sign of recovery).
    func clearWriteConditions() {
        guard health.isActive(.diskFull) || health.isActive(.stateReadOnly) else { return }
        let probe = FileSystemProbe(configuration.stateDirectory)
        if !probe.readOnly { clear(.stateReadOnly) }
        if let free = probe.freeBytes, free >= FileSystemProbe.nearlyFullBytes { clear(.diskFull) }
    }

    /// Raises the condition a failed store operation shows; returns its kind.
    @discardableResult
    func noteStoreFailure(_ error: StoreError) -> StoreFailureKind {
        let kind = StoreFailureKind.classify(error, directory: configuration.stateDirectory)
        switch kind {
        case .diskFull: raise(.diskFull, "a write failed: \(error.message)")
        case .readOnly: raise(.stateReadOnly, "a write failed: \(error.message)")
        case .corrupt:
            raise(.databaseCorrupt, "the store reported corruption: \(error.message); checking it")
            suspectCorruption = true
        case .other: break
        }
        return kind
    }

    // MARK: - Periodic check

    /// One health check (`HealthService`, every few seconds): watches the wall clock against
    /// the monotonic one, reopens a store that could not be opened, probes the disk with a
    /// small write while `disk_full` or `state_read_only` is set, verifies a store that reported
    /// corruption, and clears `database_corrupt` once the operator has removed the moved-aside
    /// file (and the ledger-lost marker).
    public func healthCheck() {
        checkClock(wall: unixMilliseconds(), monotonic: AgentClock.monotonicMilliseconds())
        let now = unixMilliseconds()
        if store == nil {
            reopenStore(quarantine: false)
        } else if suspectCorruption {
            verifyStore()
        } else if health.isActive(.diskFull) || health.isActive(.stateReadOnly), let store {
            do throws(StoreError) {
                try store.putUInt64(AgentRuntime.healthProbeKey, UInt64(clamping: now), now: now)
                clearWriteConditions()
            } catch {
                noteStoreFailure(error)
            }
        }
        if health.isActive(.databaseCorrupt), !suspectCorruption, store != nil,
           FileSupport.names(in: configuration.stateDirectory, prefix: AgentRuntime.corruptDatabasePrefix).isEmpty,
           !FileSupport.exists(ledgerLostMarker) {
            clear(.databaseCorrupt)
        }
    }

    /// Local-state key the disk probe writes.
    static let healthProbeKey = "health_probe"

    /// Reports a backwards jump of the wall clock, and moves the outbox's pending retry times
    /// back by the jump (a retry scheduled before it would otherwise wait the jump's length on
    /// top of its backoff). The condition clears when the clock is back where it was.
    func checkClock(wall: Int64, monotonic: Int64) {
        if let jump = clockWatch.observe(wall: wall, monotonic: monotonic) {
            raise(.clockBackwards, "the wall clock went back by \(jump / 1000) s")
            if let store {
                do throws(StoreError) {
                    let moved = try store.shiftAttempts(by: -jump, notBefore: wall)
                    if moved > 0 { logger.notice("outbox retries rescheduled after the clock went back", metadata: ["items": "\(moved)"]) }
                } catch {
                    noteStoreFailure(error)
                }
            }
        } else if !clockWatch.isBehind {
            clear(.clockBackwards)
        }
    }

    /// `PRAGMA integrity_check` on the open store after it reported corruption; a damaged one is
    /// moved aside and replaced by a fresh one (as at start).
    private func verifyStore() {
        guard let store else { return }
        suspectCorruption = false
        let problems: [String]
        do throws(StoreError) {
            problems = try store.integrityCheck()
        } catch {
            problems = [error.message]
        }
        if problems == ["ok"] {
            logger.notice("the store passed integrity_check after an error that looked like corruption")
            if FileSupport.names(in: configuration.stateDirectory, prefix: AgentRuntime.corruptDatabasePrefix).isEmpty {
                clear(.databaseCorrupt)
            }
            return
        }
        logger.error("the store fails integrity_check; moving it aside", metadata: ["problems": "\(problems.prefix(3))"])
        store.close()
        self.store = nil
        reopenStore(quarantine: true)
    }

    /// Opens the store again (after a read-only or full state directory cleared, or to replace
    /// a damaged one) and rebuilds the ledger and the embedding from it.
    private func reopenStore(quarantine: Bool) {
        let opening = AgentRuntime.openStore(state: configuration.stateDirectory, policy: retentionPolicy,
                                             quarantine: quarantine, logger: logger)
        for (condition, detail) in opening.conditions { raise(condition, detail) }
        guard let opened = opening.store else { return }
        do throws(PrivacyError) {
            ledger = try PrivacyLedger(delta: configuration.delta, epsilonBudget: configuration.epsilonBudget,
                                       entries: opening.ledgerEntries)
        } catch {
            logger.error("cannot rebuild the privacy ledger from the reopened store; keeping the store closed",
                         metadata: ["error": "\(error.message)"])
            opened.close()
            return
        }
        store = opened
        embedding = opening.embedding
        logger.notice("event store open", metadata: ["ledger_entries": "\(opening.ledgerEntries.count)"])
        if !opening.conditions.contains(where: { $0.0 == .diskFull || $0.0 == .stateReadOnly }) {
            clearWriteConditions()
        }
    }

    // MARK: - Aggregator

    /// Records how an exchange with the aggregator went: the `aggregator_*` conditions
    /// describe the latest exchange (the matching one raised, the others cleared; all cleared
    /// when it answered).
    func noteAggregator(_ exchange: AggregatorExchange, operation: String) {
        switch exchange {
        case .answered:
            for condition in AgentCondition.aggregator { clear(condition) }
        case .serverError(let status):
            clear(.aggregatorUnreachable)
            clear(.aggregatorSlow)
            raise(.aggregatorError, "\(operation) answered \(status)")
        case .timedOut(let message):
            clear(.aggregatorUnreachable)
            clear(.aggregatorError)
            raise(.aggregatorSlow, "\(operation): no answer within upload.timeout_ms (\(configuration.timeoutMilliseconds) ms): \(message)")
        case .unreachable(let message):
            clear(.aggregatorSlow)
            clear(.aggregatorError)
            raise(.aggregatorUnreachable, "\(operation): \(message)")
        }
    }

    /// A downloaded model was refused (bad signature, does not decode): the served one stays.
    func noteRejectedModel(_ error: UploaderError) {
        raise(.modelInvalid, "a downloaded model was rejected: \(error.message)")
    }

    // MARK: - Opening the store

    /// What opening the store found.
    struct StoreOpening {
        var store: DeviceStore?
        var ledgerEntries: [LedgerEntry] = []
        var embedding: [Float]?
        /// Conditions to raise, with their details.
        var conditions: [(AgentCondition, String)] = []
        /// Set when the agent cannot run at all.
        var fatal: AgentError?
    }

    /// Opens `<state>/hearth.db` and reads the ledger and the embedding.
    ///
    /// - A damaged file (`SQLITE_CORRUPT`, `SQLITE_NOTADB`, at open or on those first reads), or
    ///   any file when `quarantine` is set, is renamed `hearth.db.corrupt-<ms>` (with its `-wal`
    ///   and `-shm`) and a fresh store is made. The ledger is read back from the moved file when
    ///   it still can be and copied into the new store; when not, `ledger-lost` is written and
    ///   training is refused until an operator removes it.
    /// - A read-only or full state directory leaves the store closed with `state_read_only` or
    ///   `disk_full` (not fatal; the health check retries).
    /// - Anything else (a store from a newer Hearth, an unknown I/O error) is fatal at start.
    static func openStore(state: String, policy: RetentionPolicy, quarantine: Bool, logger: Logger) -> StoreOpening {
        let path = state + "/" + AgentRuntime.databaseFileName
        var opening = StoreOpening()
        var damage: String? = quarantine ? "it failed integrity_check" : nil
        if damage == nil {
            switch attemptOpen(path: path, policy: policy) {
            case .success(let opened):
                (opening.store, opening.ledgerEntries, opening.embedding) = opened
                return opening
            case .failure(let error):
                switch StoreFailureKind.classify(error, directory: state) {
                case .corrupt:
                    damage = error.message
                case .readOnly:
                    opening.conditions.append((.stateReadOnly, "cannot open the event store: \(error.message)"))
                    return opening
                case .diskFull:
                    opening.conditions.append((.diskFull, "cannot open the event store: \(error.message)"))
                    return opening
                case .other:
                    opening.fatal = .startup("cannot open the event store: \(error.message)")
                    return opening
                }
            }
        }
        let why = damage ?? "damaged"
        let moved = state + "/" + AgentRuntime.corruptDatabasePrefix + String(unixMilliseconds())
        for suffix in ["", "-wal", "-shm"] where FileSupport.exists(path + suffix) {
            guard rename(path + suffix, moved + suffix) == 0 else {
                opening.fatal = .startup("the event store at \(path) is damaged (\(why)) and cannot be moved aside: \(FileSupport.errnoText())")
                return opening
            }
        }
        // The renames reach the disk before the fresh store does: after a power cut the state
        // directory holds either the damaged store (moved again at the next start) or both.
        do throws(FileError) {
            try DurableFile.syncDirectory(containing: path)
        } catch {
            logger.warning("the damaged event store was moved aside, but the move may not survive a power cut", metadata: ["error": "\(error)"])
        }
        logger.error("the event store is damaged; moved aside, starting a fresh one", metadata: ["moved_to": "\(moved)", "error": "\(why)"])
        let salvaged = DeviceStore.salvageLedger(path: moved)
        switch attemptOpen(path: path, policy: policy) {
        case .failure(let error):
            opening.fatal = .startup("cannot create a fresh event store after moving the damaged one aside: \(error.message)")
            return opening
        case .success(let opened):
            (opening.store, opening.ledgerEntries, opening.embedding) = opened
        }
        var ledgerNote = "privacy ledger not recoverable"
        var recovered = false
        if let salvaged, let store = opening.store {
            do throws(StoreError) {
                for entry in salvaged { try store.appendLedgerEntry(entry) }
                opening.ledgerEntries = salvaged
                ledgerNote = "privacy ledger recovered (\(salvaged.count) entries)"
                recovered = true
            } catch {
                ledgerNote = "privacy ledger not recovered (\(error.message))"
            }
        }
        if !recovered {
            let marker = state + "/" + AgentRuntime.ledgerLostFileName
            do throws(FileError) {
                // Replaced through a synced temporary file and a directory fsync: after a power
                // cut the marker is whole or absent, never an empty file beside the fresh store.
                try DurableFile.replace(marker, with: Array("\(ledgerNote) from \(moved) (\(why))\n".utf8), mode: 0o640)
            } catch {
                logger.error("cannot write the ledger-lost marker", metadata: ["error": "\(error)"])
            }
            ledgerNote += "; training refused until \(marker) is removed"
        }
        opening.conditions.append((.databaseCorrupt, "\(why); moved to \(moved), started a fresh store; \(ledgerNote)"))
        return opening
    }

    private static func attemptOpen(path: String, policy: RetentionPolicy)
        -> Result<(DeviceStore, [LedgerEntry], [Float]?), StoreError> {
        do throws(StoreError) {
            let store = try DeviceStore(path: path, options: StoreOptions(retention: policy))
            do throws(StoreError) {
                return .success((store, try store.ledgerEntries(), try store.floats(LocalStateKey.deviceEmbedding)))
            } catch {
                store.close()
                throw error
            }
        } catch {
            return .failure(error)
        }
    }
}

/// Loads the served model at start: `current.hrth`, or `previous.hrth` when the current file is
/// missing or does not decode (the damaged file is moved aside as `current.hrth.corrupt-<ms>`
/// and the previous one copied back as current, so the fetcher's next install keeps a good
/// `previous.hrth`).
struct ModelLoader {
    let directory: String
    let logger: Logger

    /// The model to serve and, when the current file was not usable, what happened.
    func loadAtStart() -> (model: Model?, problem: String?) {
        let current = directory + "/" + ModelFetcher.currentFileName
        let previous = directory + "/" + ModelFetcher.previousFileName
        let currentFailure: String
        switch decode(current) {
        case .success(let model?):
            return (model, nil)
        case .success(nil):
            // No model installed yet (first start), unless a previous one was left.
            guard FileSupport.exists(previous) else { return (nil, nil) }
            currentFailure = "current.hrth is missing"
        case .failure(let message):
            currentFailure = "current.hrth is invalid (\(message))"
        }
        logger.error("the current model file is not usable", metadata: ["error": "\(currentFailure)"])
        switch decode(previous) {
        case .success(let model?):
            restore(current: current, previous: previous)
            return (model, "\(currentFailure); serving previous.hrth (version \(model.version))")
        case .success(nil):
            return (nil, "\(currentFailure) and there is no previous.hrth: no model until the next download")
        case .failure(let message):
            return (nil, "\(currentFailure) and previous.hrth is invalid too (\(message)): no model until the next download")
        }
    }

    /// The decoded model at `path`, nil when there is no file, or why it is unusable.
    private func decode(_ path: String) -> Result<Model?, ModelLoadFailure> {
        let bytes: [UInt8]?
        do throws(AgentError) {
            bytes = try FileSupport.read(path)
        } catch {
            return .failure(ModelLoadFailure(error.message))
        }
        guard let bytes else { return .success(nil) }
        do throws(CoreError) {
            // The float master is checked, not kept: the agent serves and trains from the int8 table.
            return .success(try ModelFile.decode(bytes, keepingMaster: false))
        } catch {
            return .failure(ModelLoadFailure(error.message))
        }
    }

    /// Moves the damaged current file aside and links the previous one in its place (best
    /// effort: on a read-only directory the files stay and only the served model changes).
    private func restore(current: String, previous: String) {
        if FileSupport.exists(current) {
            let aside = current + ".corrupt-" + String(unixMilliseconds())
            if rename(current, aside) != 0 {
                logger.warning("cannot move the damaged model file aside", metadata: ["error": "\(FileSupport.errnoText())"])
                return
            }
        }
        let temporary = directory + "/.current.hrth.restore"
        unlink(temporary)
        guard link(previous, temporary) == 0, rename(temporary, current) == 0 else {
            logger.warning("cannot restore previous.hrth as current.hrth", metadata: ["error": "\(FileSupport.errnoText())"])
            unlink(temporary)
            return
        }
        do throws(FileError) {
            try DurableFile.syncDirectory(containing: current)
        } catch {
            logger.warning("previous.hrth restored, but the rename may not survive a power cut", metadata: ["error": "\(error)"])
        }
        logger.notice("previous.hrth restored as current.hrth")
    }
}

/// Why a model file is unusable.
struct ModelLoadFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
