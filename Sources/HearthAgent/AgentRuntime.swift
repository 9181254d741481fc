import HearthConfig
import HearthCore
import HearthLocalAPI
import HearthPrivacy
import HearthStore
import HearthUploader
import Logging

/// The agent's state and the backend of the local API.
///
/// The runtime is the single writer of the device store: every event, ledger entry, outbox
/// item and local-state value goes through this actor. Serving (`recommendations`, `rank`)
/// reads the current model held here; a training round trains on its own thread at the lowest
/// CPU priority (`TrainingThread`) so serving is never blocked by it, and only comes back to the
/// actor to record its result. A round that runs past `training.max_seconds` (measured with the
/// injected clock) is abandoned: nothing is recorded, no budget is spent, and the next round
/// takes half as many events.
public actor AgentRuntime: LocalAPIBackend {
    /// Local-state key: the highest event sequence already used by a training round.
    public static let lastTrainedSequenceKey = "last_trained_sequence"
    /// The store file inside the state directory.
    public static let databaseFileName = "hearth.db"

    let configuration: AgentConfiguration
    let logger: Logger
    /// The open store; nil while it cannot be opened (read-only or full state directory), in
    /// which case events are refused and `healthCheck` retries.
    var store: DeviceStore?
    let retentionPolicy: RetentionPolicy
    /// The active fault conditions (`status.conditions`).
    var health = AgentHealth()
    var clockWatch = ClockWatch()
    /// Set when the open store reported corruption: the next `healthCheck` verifies it.
    var suspectCorruption = false
    private let kernel: ScoringKernel
    private let clock: @Sendable () -> Int64
    /// The most events the next round takes: halved after a round overran its time, restored
    /// (doubling) after rounds that finish.
    private var roundEventLimit = AgentRuntime.maxEventsPerRound
    var model: Model?
    var embedding: [Float]?
    var ledger: PrivacyLedger
    private var lastDecision: String?
    private var lastRound: [String: JSONValue] = [:]
    private var lastRetention: [String: JSONValue] = [:]
    private var training = false
    /// Bumped by `eraseAll`, so a round that was training during an erasure drops its result.
    private var erasures = 0
    /// Stable small ids for outbox items, for the uploader's `UploadOutbox` protocol.
    private var outboxIDs: [String: Int64] = [:]
    private var outboxKeys: [Int64: String] = [:]
    private var nextOutboxID: Int64 = 1

    /// Where models live: `<state>/models` (`current.hrth`, `previous.hrth`).
    public nonisolated let modelDirectory: String

    /// Opens (or creates) the store under `configuration.stateDirectory`, loads
    /// `models/current.hrth` if present (falling back to `previous.hrth` when it does not
    /// decode), picks the kernel and rebuilds the ledger.
    ///
    /// Faults do not stop the start: a read-only or full state directory leaves the store
    /// closed (`state_read_only` / `disk_full`; `healthCheck` retries), a damaged database is
    /// moved aside as `hearth.db.corrupt-<ms>` and a fresh one started (`database_corrupt`; the
    /// privacy ledger is copied over when it can still be read). Only a bad kernel name, a
    /// store written by a newer Hearth or a state directory that cannot be made are fatal.
    ///
    /// - Parameter clock: monotonic milliseconds, for the training deadline (tests inject one).
    public init(configuration: AgentConfiguration, logger: Logger,
                clock: @escaping @Sendable () -> Int64 = AgentClock.monotonicMilliseconds) throws(AgentError) {
        self.configuration = configuration
        self.logger = logger
        self.clock = clock
        let state = configuration.stateDirectory
        modelDirectory = state + "/models"
        do throws(AgentError) {
            try FileSupport.makeDirectories(modelDirectory)
        } catch {
            // A read-only state directory that already has its models directory is usable for serving.
            guard FileSupport.isDirectory(modelDirectory) else { throw error }
        }

        do throws(CoreError) {
            kernel = configuration.kernel == "auto"
                ? try ScoringKernel.select(override: ScoringKernel.environmentOverride)
                : try ScoringKernel.named(configuration.kernel)
        } catch {
            throw .startup("model.kernel: \(error.message)")
        }

        retentionPolicy = RetentionPolicy(
            maxAgeMilliseconds: Int64(configuration.maxEventAgeDays) * 86_400_000,
            maxEvents: configuration.maxEvents,
            maxDatabaseBytes: Int64(configuration.maxDatabaseMegabytes) * 1024 * 1024)
        let opening = AgentRuntime.openStore(state: state, policy: retentionPolicy, quarantine: false, logger: logger)
        if let fatal = opening.fatal { throw fatal }
        store = opening.store
        embedding = opening.embedding
        do throws(PrivacyError) {
            ledger = try PrivacyLedger(delta: configuration.delta, epsilonBudget: configuration.epsilonBudget, entries: opening.ledgerEntries)
        } catch {
            throw .startup("cannot rebuild the privacy ledger: \(error.message)")
        }
        for (condition, detail) in opening.conditions {
            AgentRuntime.raise(condition, detail, in: &health, logger: logger)
        }

        let loaded = ModelLoader(directory: modelDirectory, logger: logger).loadAtStart()
        model = loaded.model
        if let problem = loaded.problem {
            AgentRuntime.raise(.modelInvalid, problem, in: &health, logger: logger)
        }
        FileSupport.returnFreeMemory()  // the file's bytes and the decoder's scratch
        let versionText = model.map { String($0.version) } ?? "none"
        let ledgerCount = ledger.entries.count
        let healthText = health.summary
        logger.info("runtime ready", metadata: [
            "kernel": "\(kernel.name)", "model_version": "\(versionText)", "ledger_entries": "\(ledgerCount)",
            "health": "\(healthText)",
        ])
    }

    // MARK: - Local API

    public func ingest(_ events: [EventRecord]) async throws -> IngestResult {
        let result = try storeWrite { (store) throws(StoreError) in try store.append(events) }
        return IngestResult(accepted: result.count)
    }

    public func recommendations(session: String, k: Int, exclude: [String]) async throws -> [RankedItem] {
        guard let model else { throw LocalAPIError.serviceUnavailable("no model yet") }
        let (state, purchased) = try localState(session: session, model: model)
        var exclusions = ExclusionSet(itemCount: model.catalog.count, items: purchased)
        for id in exclude {
            if let index = model.catalog.index(of: id) { exclusions.insert(index) }
        }
        let ranked = try model.recommend(state: state, k: k, excluding: exclusions, kernel: kernel)
        return ranked.map { RankedItem(item: model.catalog.ids[Int($0.item)], score: Double($0.score)) }
    }

    public func rank(session: String, candidates: [String]) async throws -> [RankedItem] {
        guard let model else { throw LocalAPIError.serviceUnavailable("no model yet") }
        let (state, _) = try localState(session: session, model: model)
        // Unknown ids are dropped (the model has no score for them).
        let indices = candidates.compactMap { model.catalog.index(of: $0) }
        let ranked = try model.rank(state: state, candidates: indices)
        return ranked.map { RankedItem(item: model.catalog.ids[Int($0.item)], score: Double($0.score)) }
    }

    public func status() async throws -> StatusReport {
        let now = unixMilliseconds()
        // Status answers whatever the store's state: a store that is closed or failing shows as
        // `store: unavailable` with zero counts, next to the condition that explains it.
        var figures: (totals: EventTotals, pending: Int, delivery: OutboxDelivery?, retention: RetentionState)?
        if let store {
            do throws(StoreError) {
                figures = (try store.totals(), try store.pendingCount(), try store.lastDelivery(), try store.retentionState(now: now))
            } catch {
                noteStoreFailure(error)
            }
        }
        let totals = figures?.totals
        let pending = figures?.pending ?? 0
        let delivery = figures?.delivery
        let retention = figures?.retention
        var extra: [String: JSONValue] = [
            "health": .string(health.summary),
            "conditions": health.conditionsJSON,
            "condition_counts": health.countsJSON,
            "store": .string(figures == nil ? "unavailable" : "ok"),
            "retention": [
                "events": .int(retention?.events ?? 0),
                "database_bytes": .integer(retention?.databaseBytes ?? 0),
                "free_bytes": .integer(retention?.freeBytes ?? 0),
                "exceeded": .array((retention?.exceeded ?? []).map { .string($0.rawValue) }),
                "max_events": .int(configuration.maxEvents),
                "max_event_age_days": .int(configuration.maxEventAgeDays),
                "max_database_mb": .int(configuration.maxDatabaseMegabytes),
            ],
            "training": [
                "last_decision": .optional(lastDecision),
                "in_progress": .bool(training),
                "last_trained_sequence": .integer(Int64(clamping: lastTrainedSequence())),
                "max_seconds": .int(configuration.maxTrainingSeconds),
                "event_limit": .int(roundEventLimit),
            ],
        ]
        if !lastRound.isEmpty { extra["last_round"] = .object(lastRound) }
        if !lastRetention.isEmpty { extra["last_retention"] = .object(lastRetention) }
        return StatusReport(
            modelVersion: model.map { String($0.version) }, kernel: kernel.name,
            eventsTotal: Int64(totals?.eventsTotal ?? 0), outboxPending: pending,
            lastUploadMilliseconds: delivery?.deliveredMilliseconds, privacy: privacySummary(), extra: extra)
    }

    public func privacy() async throws -> PrivacyReport {
        let entries: [JSONValue] = ledger.entries.map { entry in
            [
                "round": .int(entry.round),
                "mechanism": .string(entry.mechanism.name),
                "noise_multiplier": .double(entry.noiseMultiplier),
                "sampling_rate": entry.samplingRate.map { JSONValue.double($0) } ?? .null,
                "clip_norm": .double(entry.clipNorm),
                "mode": .string(entry.mode.name),
                "unit": .string(entry.unit.name),
                "participated": .bool(entry.participated),
            ]
        }
        return PrivacyReport(summary: privacySummary(), entries: entries)
    }

    public func profile() async throws -> ProfileReport {
        guard let model else { throw LocalAPIError.serviceUnavailable("no model yet") }
        let records = try storeRead { (store) throws(StoreError) in try AgentRuntime.recentRecords(store, limit: 1_000) }
        let profile = InterestProfile(records: records, catalog: model.catalog)
        return ProfileReport(
            topCategories: profile.categories.map { WeightedLabel(name: $0.name, weight: Double($0.weight)) },
            topBrands: profile.brands.map { WeightedLabel(name: $0.name, weight: Double($0.weight)) },
            extra: ["events": .int(profile.events)])
    }

    public func eraseAll() async throws -> EraseResult {
        let report = try storeWrite { (store) throws(StoreError) in try store.eraseAll() }
        embedding = nil
        erasures += 1
        outboxIDs = [:]
        outboxKeys = [:]
        logger.notice("all events and local state erased", metadata: ["events": "\(report.events)", "outbox": "\(report.outbox)"])
        return EraseResult(eventsErased: Int64(report.events))
    }

    // MARK: - Shutdown

    /// Closes the store after the services have stopped (a graceful stop: SIGTERM, SIGINT).
    ///
    /// Closing the last connection checkpoints the write-ahead log into `hearth.db` and removes
    /// `hearth.db-wal`, so a cleanly stopped agent leaves one self-contained file (backups,
    /// `sqlite3` by hand). Nothing depends on it for durability: every acknowledged write was
    /// already fsynced, and a `kill -9` simply leaves the log for the next open to replay.
    /// Requests after this find no store and are refused like during a read-only fault.
    public func close() {
        guard let store else { return }
        store.close()
        self.store = nil
        logger.info("event store closed")
    }

    // MARK: - Model

    /// Serves `newModel` from now on (the fetcher has already installed its file).
    public func swapModel(_ newModel: Model) {
        let old = model?.version
        model = newModel
        clear(.modelInvalid)
        FileSupport.returnFreeMemory()  // the previous model
        logger.info("serving a new model", metadata: ["version": "\(newModel.version)", "previous": "\(old.map { String($0) } ?? "none")"])
    }

    /// The version of the served model, if any.
    public var modelVersion: UInt64? { model?.version }

    // MARK: - Training

    /// What `trainRound` did.
    public enum RoundOutcome: Sendable, Equatable {
        /// An update was recorded in the ledger and queued for upload.
        case queued(idempotencyKey: String, events: Int, epsilonAfter: Double)
        /// Nothing to do (no model, no new events, a round already running).
        case skipped(String)
        /// The privacy budget refuses another upload.
        case refused(String)
        /// The round ran past `training.max_seconds` and was dropped (nothing recorded).
        case abandoned(String)
    }

    /// Events logged since the last round.
    public func newEventCount() throws(AgentError) -> Int {
        guard let store else { return 0 }
        do throws(StoreError) {
            return try store.eventCount(after: Int64(clamping: lastTrainedSequence()))
        } catch {
            throw .training("cannot read the event log: \(error.message)")
        }
    }

    /// Records the scheduler's latest decision (shown in status).
    public func noteDecision(_ text: String) { lastDecision = text }

    /// One training round: train on the events since the last round (off the actor), clip and
    /// noise the dense update, and record ledger entry + outbox item in one transaction.
    /// The served model is not changed; only the device embedding is. `samplingRate` is the
    /// plan's q this device was sampled with; it goes into the envelope (the aggregator checks
    /// it against its plan). The device's own ledger does not count the amplification.
    public func trainRound(now: Int64, samplingRate: Double = 1) async throws(AgentError) -> RoundOutcome {
        guard let model else { return .skipped("no model yet") }
        guard !training else { return .skipped("a round is already running") }
        guard let store else { return .skipped("the event store is unavailable") }
        if FileSupport.exists(ledgerLostMarker) {
            let reason = "the privacy ledger was lost with a corrupt database (remove \(ledgerLostMarker) to accept that)"
            lastDecision = "refused: " + reason
            return .refused(reason)
        }
        let privacy = try privacyConfiguration()
        let entry = LedgerEntry(round: Int(clamping: model.version), noiseMultiplier: configuration.noiseMultiplier,
                                samplingRate: nil, clipNorm: configuration.clipNorm, mode: privacy.mode,
                                unit: privacy.unit, participated: true)
        let decision = ledger.canSpend(entry)
        guard case .allowed = decision else {
            let reason: String
            if case .refused(let why, _) = decision { reason = why } else { reason = "refused" }
            lastDecision = "refused: " + reason
            logger.warning("training round refused by the privacy ledger", metadata: ["reason": "\(reason)"])
            return .refused(reason)
        }
        let since = lastTrainedSequence()
        let stored: [StoredEvent]
        do throws(StoreError) {
            stored = try store.events(after: Int64(clamping: since), limit: roundEventLimit)
        } catch {
            throw .training("cannot read the event log: \(error.message)")
        }
        guard let lastSequence = stored.last?.sequence else { return .skipped("no new events") }

        training = true
        defer { training = false }
        let generation = erasures
        let records = stored.map(\.record)
        let local = configuration.deviceEmbedding ? embedding ?? [] : []
        // Without a device embedding its learning rate is 0, so it stays zero in training as in serving.
        let trainer = Trainer(configuration: TrainingConfiguration(
            learningRate: Float(configuration.learningRate),
            localLearningRate: configuration.deviceEmbedding ? Float(configuration.learningRate) : 0,
            historyLength: configuration.historyLength))
        let rounds = DeviceTraining(trainer: trainer, epochs: configuration.epochs)
        let started = unixMilliseconds()
        let clock = self.clock
        let limitMilliseconds = Int64(configuration.maxTrainingSeconds) * 1000
        let work = await TrainingThread.run { () -> Result<TrainedUpdate, AgentError> in
            AgentRuntime.train(model: model, records: records, local: local, rounds: rounds, privacy: privacy,
                               samplingRate: samplingRate, clock: clock, limitMilliseconds: limitMilliseconds)
        }
        let trained: TrainedUpdate
        switch work {
        case .none:
            throw .training("training round failed: cannot start the training thread")
        case .failure(let error)?:
            throw error
        case .success(let value)?:
            trained = value
        }
        if let overrun = trained.abandoned {
            let previousLimit = roundEventLimit
            roundEventLimit = max(AgentRuntime.minEventsPerRound, roundEventLimit / 2)
            let reason = "exceeded training.max_seconds (\(configuration.maxTrainingSeconds) s) \(overrun)"
            lastDecision = "abandoned: " + reason
            lastRound = [
                "finished": .integer(unixMilliseconds()), "abandoned": .string(reason),
                "events": .int(records.count), "next_event_limit": .int(roundEventLimit),
                "thread_nice": trained.priority.map { JSONValue.int($0.nice) } ?? .null,
                "thread_policy": trained.priority.map { JSONValue.string($0.policyName) } ?? .null,
            ]
            logger.warning("training round abandoned: it exceeded training.max_seconds; nothing recorded, no budget spent", metadata: [
                "max_seconds": "\(configuration.maxTrainingSeconds)", "where": "\(overrun)", "events": "\(records.count)",
                "event_limit": "\(previousLimit) -> \(roundEventLimit)",
            ])
            return .abandoned(reason)
        }
        guard generation == erasures else { return .skipped("the data was erased during the round") }

        do throws(StoreError) {
            // One transaction: a kill between separate writes left the update queued with its
            // events unmarked, and the restarted agent trained them into a second update.
            try store.appendLedgerEntry(entry, enqueueing: trained.payload, idempotencyKey: trained.key,
                                        modelVersion: model.version, createdAt: now, state: [
                                            (LocalStateKey.deviceEmbedding, DeviceStore.stateBytes(trained.local)),
                                            (AgentRuntime.lastTrainedSequenceKey, DeviceStore.stateBytes(UInt64(lastSequence))),
                                        ])
        } catch {
            noteStoreFailure(error)
            throw .training("cannot record the round: \(error.message)")
        }
        clearWriteConditions()
        FileSupport.returnFreeMemory()  // the round's overlay and envelope
        do throws(PrivacyError) {
            try ledger.record(entry)
        } catch {
            // The store holds the truth; rebuild from it.
            if let entries = try? self.store?.ledgerEntries(),
               let rebuilt = try? PrivacyLedger(delta: configuration.delta, epsilonBudget: configuration.epsilonBudget, entries: entries) {
                ledger = rebuilt
            }
        }
        embedding = trained.local
        roundEventLimit = min(AgentRuntime.maxEventsPerRound, roundEventLimit * 2)
        let epsilon = ledger.epsilonSpent
        lastRound = [
            "finished": .integer(unixMilliseconds()), "duration_ms": .integer(unixMilliseconds() - started),
            "events": .int(records.count), "events_used": .int(trained.eventsUsed),
            "saturated_coordinates": .int(trained.saturated), "model_version": .string(String(model.version)),
            "thread_nice": trained.priority.map { JSONValue.int($0.nice) } ?? .null,
            "thread_policy": trained.priority.map { JSONValue.string($0.policyName) } ?? .null,
        ]
        logger.info("training round queued an update", metadata: [
            "events": "\(records.count)", "used": "\(trained.eventsUsed)", "epsilon_spent": "\(epsilon)",
            "idempotency_key": "\(trained.key)",
        ])
        return .queued(idempotencyKey: trained.key, events: records.count, epsilonAfter: epsilon)
    }

    /// The most events one round trains on (bounds its time and memory).
    public static let maxEventsPerRound = 20_000
    /// The least events a round is cut down to after overrunning its time.
    public static let minEventsPerRound = 100

    /// The work of a round, on the training thread: train in place, clip + round + noise
    /// streamed into the envelope (`UpdateAccumulator`, sealed by `UpdateAccumulator.seal` into an
    /// `UpdateEnvelopeWriter`, as the simulator's over-HTTP devices do).
    ///
    /// Memory beyond the served model: the rows the round touches in float32 and a float32 copy of
    /// the biases (`ParameterOverlay`; training starts from the int8 table, the agent keeps no
    /// float master), one bit per coordinate for the rounding, the encoded envelope (b bits per
    /// coordinate) and, for the session unit, an `Int32` sum.
    private static func train(model: Model, records: [EventRecord], local: [Float], rounds: DeviceTraining,
                              privacy: PrivacyConfiguration, samplingRate: Double, clock: @Sendable () -> Int64,
                              limitMilliseconds: Int64) -> Result<TrainedUpdate, AgentError> {
        let priority = ThreadPriority.current()
        let deadline = clock() + limitMilliseconds
        var trainingRNG = BufferedSecureRandom()
        var privacyRNG = BufferedSecureRandom()
        do throws(PrivacyError) {
            let privatizer = try UpdatePrivatizer(configuration: privacy, dimension: model.parameterCount)
            var accumulator = try UpdateAccumulator<Float>(privatizer: privatizer)
            let summary = try rounds.stream(
                model: model, records: records, local: local, perSession: privacy.unit == .session,
                maxContributions: privacy.maxSessionsPerUpdate, using: &trainingRNG,
                shouldStop: { clock() >= deadline }
            ) { (delta: ParameterOverlay.Update) throws(PrivacyError) in
                try accumulator.add(coordinates: delta, using: &privacyRNG)
            }
            guard summary.completed else {
                return .success(TrainedUpdate(abandoned: "while training", priority: priority))
            }
            if accumulator.contributions == 0 {
                // Session unit without a trainable session: one zero contribution, as `privatize` would get.
                let zero = [Float](repeating: 0, count: privatizer.grid.dimension)
                try accumulator.add([zero], using: &privacyRNG)
            }
            let key = IdempotencyKey(using: &privacyRNG)
            let sealed = try accumulator.seal(modelVersion: model.version, samplingRate: samplingRate, idempotencyKey: key,
                                              using: &privacyRNG)
            if clock() >= deadline {
                return .success(TrainedUpdate(abandoned: "while privatizing", priority: priority))
            }
            return .success(TrainedUpdate(payload: sealed.payload, key: key.hex, local: summary.local,
                                          eventsUsed: summary.eventsUsed, saturated: sealed.summary.saturatedCoordinates,
                                          priority: priority))
        } catch {
            return .failure(.training("training round failed: \(error.message)"))
        }
    }

    // MARK: - Retention

    /// Applies the retention caps; returns the number of events deleted.
    @discardableResult
    public func enforceRetention(now: Int64) throws(AgentError) -> Int {
        guard let store else { return 0 }
        do throws(StoreError) {
            let report = try store.enforceRetention(now: now)
            lastRetention = [
                "at": .integer(now), "deleted": .int(report.deleted), "remaining": .int(report.remainingEvents),
                "within_policy": .bool(report.withinPolicy),
            ]
            if report.deleted > 0 {
                logger.info("retention deleted old events", metadata: ["deleted": "\(report.deleted)", "remaining": "\(report.remainingEvents)"])
            }
            return report.deleted
        } catch {
            noteStoreFailure(error)
            throw .training("retention failed: \(error.message)")
        }
    }

    // MARK: - Outbox (for the uploader)

    /// Outbox items due now, with stable ids for this process.
    func dueOutbox(limit: Int) throws(StoreError) -> [OutboxEntry] {
        guard let store else { return [] }
        let items = try store.due(now: unixMilliseconds(), limit: limit)
        var entries: [OutboxEntry] = []
        for item in items {
            guard let key = try? IdempotencyKey(hex: item.idempotencyKey) else {
                logger.error("outbox item with a malformed idempotency key skipped", metadata: ["key": "\(item.idempotencyKey)"])
                continue
            }
            entries.append(OutboxEntry(id: outboxID(item.idempotencyKey), idempotencyKey: key, body: item.payload, attempts: item.attempts))
        }
        return entries
    }

    /// Records a failed upload attempt with the retry time chosen by `backoff`.
    func recordUploadAttempt(id: Int64, outcome: UploadOutcome, backoff: Backoff) throws(StoreError) {
        guard let key = outboxKeys[id], let store else { return }
        let attempts = try store.attempts(idempotencyKey: key) ?? 0
        var rng = SystemRandomNumberGenerator()
        var retryAfter: Duration?
        var error: String
        switch outcome {
        case .retryLater(let after):
            retryAfter = after
            error = "retry later"
        case .rejected(let status, let reason):
            error = "rejected \(status): \(reason)"
        case .accepted, .duplicate:
            return
        }
        let delay = backoff.delay(attempt: attempts, retryAfter: retryAfter, using: &rng)
        let now = unixMilliseconds()
        let (seconds, attoseconds) = delay.components
        let delayMilliseconds = seconds * 1000 + attoseconds / 1_000_000_000_000_000
        try store.recordAttempt(idempotencyKey: key, at: now, nextAttemptAt: now + delayMilliseconds, error: error)
    }

    /// The server acknowledged the upload.
    func markUploaded(id: Int64) throws(StoreError) {
        guard let key = outboxKeys[id], let store else { return }
        try store.markDelivered(idempotencyKey: key, at: unixMilliseconds())
        outboxKeys[id] = nil
        outboxIDs[key] = nil
    }

    // MARK: - Private

    private struct TrainedUpdate: Sendable {
        var payload: [UInt8] = []
        var key = ""
        var local: [Float] = []
        var eventsUsed = 0
        var saturated = 0
        /// The training thread's scheduling, as the kernel reported it.
        var priority: ThreadPriority?
        /// Set when the round ran out of time (where it was).
        var abandoned: String?

        init(payload: [UInt8], key: String, local: [Float], eventsUsed: Int, saturated: Int, priority: ThreadPriority?) {
            self.payload = payload
            self.key = key
            self.local = local
            self.eventsUsed = eventsUsed
            self.saturated = saturated
            self.priority = priority
        }

        init(abandoned: String, priority: ThreadPriority?) {
            self.abandoned = abandoned
            self.priority = priority
        }
    }

    private func outboxID(_ key: String) -> Int64 {
        if let id = outboxIDs[key] { return id }
        let id = nextOutboxID
        nextOutboxID += 1
        outboxIDs[key] = id
        outboxKeys[id] = key
        return id
    }

    private func privacyConfiguration() throws(AgentError) -> PrivacyConfiguration {
        let mode: UpdateMode = configuration.privacyMode == "central" ? .central : .local
        let unit: PrivacyUnit = configuration.privacyUnit == "session" ? .session : .device
        return PrivacyConfiguration(clipNorm: configuration.clipNorm, noiseMultiplier: configuration.noiseMultiplier,
                                    bitWidth: configuration.bitWidth, mode: mode, unit: unit,
                                    maxSessionsPerUpdate: unit == .session ? 16 : 1)
    }

    private func lastTrainedSequence() -> UInt64 {
        (try? store?.uint64(AgentRuntime.lastTrainedSequenceKey)) ?? 0
    }

    private func privacySummary() -> PrivacySummary {
        PrivacySummary(epsilonSpent: ledger.epsilonSpent, delta: ledger.delta, epsilonBudget: ledger.epsilonBudget)
    }

    /// The serving query state of `session` and the items purchased in it.
    private func localState(session: String, model: Model) throws -> (LocalState, [Int32]) {
        let dimension = model.dimension
        // Serving never fails for the store: without it (or when it fails) the session has no
        // history and the model ranks from its prior.
        var stored: [StoredEvent] = []
        if let store {
            do throws(StoreError) {
                stored = try store.recentEvents(session: session, limit: max(configuration.historyLength, 1_000))
            } catch {
                noteStoreFailure(error)
                logger.warning("serving without the session's history: the store failed", metadata: ["error": "\(error.message)"])
            }
        }
        var state = LocalState(dimension: dimension, capacity: configuration.historyLength)
        if configuration.deviceEmbedding, let embedding, embedding.count == dimension { state.embedding = embedding }
        var purchased: [Int32] = []
        for event in stored {
            guard let index = model.catalog.index(of: event.record.item) else { continue }
            if event.record.kind == .purchase { purchased.append(index) }
        }
        for event in stored.suffix(configuration.historyLength) {
            guard let index = model.catalog.index(of: event.record.item) else { continue }
            state.observe(Event(item: index, kind: event.record.kind, session: DeviceTraining.sessionKey(session),
                                timestamp: event.record.timestampMilliseconds / 1000))
        }
        return (state, purchased)
    }

    /// The last `limit` events of the whole log, oldest first.
    private static func recentRecords(_ store: DeviceStore, limit: Int) throws(StoreError) -> [EventRecord] {
        let totals = try store.totals()
        guard let last = totals.lastSequence else { return [] }
        return try store.events(after: max(0, last - Int64(limit)), limit: limit).map(\.record)
    }

    /// Runs a write on the store: a success clears `disk_full` and `state_read_only`; a
    /// failure raises the condition it shows and becomes the API error for it.
    private func storeWrite<T>(_ body: (DeviceStore) throws(StoreError) -> T) throws(LocalAPIError) -> T {
        let value = try storeRead(body)
        clearWriteConditions()
        return value
    }

    /// Runs an operation on the store; its failure raises the condition it shows and becomes
    /// the API error for it (`apiError(for:)`).
    private func storeRead<T>(_ body: (DeviceStore) throws(StoreError) -> T) throws(LocalAPIError) -> T {
        guard let store else { throw unavailableError() }
        do {
            return try body(store)
        } catch {
            if error.resultCode == nil { throw .badRequest(error.message) }
            let kind = noteStoreFailure(error)
            logger.error("store error", metadata: ["error": "\(error.message)"])
            switch kind {
            case .diskFull: throw .insufficientStorage("the disk is full: nothing was stored (\(error.message))")
            case .readOnly: throw .serviceUnavailable("the state directory is read-only: nothing was stored")
            case .corrupt: throw .serviceUnavailable("the event store is corrupt: nothing was stored")
            case .other: throw .serviceUnavailable("event store unavailable")
            }
        }
    }

    /// The error for a request that needs the store while it is closed.
    private func unavailableError() -> LocalAPIError {
        if let full = health.active[.diskFull] {
            return .insufficientStorage("the disk is full: nothing was stored (\(full.detail))")
        }
        if health.isActive(.stateReadOnly) {
            return .serviceUnavailable("the state directory is read-only: nothing was stored")
        }
        return .serviceUnavailable("event store unavailable")
    }
}

/// The runtime's outbox as the uploader sees it.
public struct RuntimeOutbox: UploadOutbox {
    let runtime: AgentRuntime
    let backoff: Backoff

    /// The outbox of `runtime`, retrying failed uploads after `backoff`.
    public init(runtime: AgentRuntime, backoff: Backoff = Backoff()) {
        self.runtime = runtime
        self.backoff = backoff
    }

    public func pending(limit: Int) async throws -> [OutboxEntry] {
        try await runtime.dueOutbox(limit: limit)
    }

    public func recordAttempt(id: Int64, outcome: UploadOutcome) async throws {
        try await runtime.recordUploadAttempt(id: id, outcome: outcome, backoff: backoff)
    }

    public func markDelivered(id: Int64) async throws {
        try await runtime.markUploaded(id: id)
    }
}

/// A round's update is privatised in place, read from the training overlay: clipping, rounding
/// and noise see every coordinate (zero on untouched rows) without a dense copy.
extension ParameterOverlay.Update: UpdateCoordinates {}
