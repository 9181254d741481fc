#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import HearthAggregation
import HearthConfig
import HearthCore
import HearthPrivacy
import HearthStore
import Logging
import NIOCore

/// What became of one upload.
public enum UploadOutcome: Sendable, Equatable {
    /// Validated, stored durably and folded into the buffer.
    case accepted(published: UInt64?)
    /// This idempotency key was already accepted from this device: counted once.
    case replayed
    /// Refused; `status` is the HTTP status, `reason` the stable token, `message` the sentence.
    case rejected(status: Int, reason: String, message: String, retryAfterSeconds: Int?)
}

/// The model version being served: file bytes, signature and ETag.
public struct ServedModel: Sendable {
    public var version: UInt64
    /// The model file, ready to send.
    public var body: ByteBuffer
    public var signature: [UInt8]
    public var etag: String { "\"v\(version)\"" }
}

/// The aggregator: validates uploads, folds them into the FedBuff buffer, publishes signed
/// model versions and keeps the central privacy ledger.
///
/// The single writer of the `AggregatorStore`. An accepted update is inserted (fsynced) before
/// it is folded and before the caller answers 2xx; after a restart `init` folds every stored,
/// not-yet-published update again, so the running sum is what it was. Publication writes the
/// new version and marks the folded updates in one transaction.
public actor Aggregator {
    private let configuration: AggregatorConfiguration
    private let store: AggregatorStore
    private let signer: ModelSigner
    private let logger: Logger
    private let clock: @Sendable () -> Int64
    private let metrics: AggregatorMetrics

    private let catalog: Catalog
    private let encoder: QueryEncoder
    private let dimension: Int
    private var federation: FedBuffAggregator
    private var plan: FederationPlan
    private var served: ServedModel
    private var roundStartedMilliseconds: Int64
    private var dataVersions: Int
    private var rateLimiter: RateLimiter

    /// Opens the state: the current version, its optimiser state and the pending updates.
    public init(configuration: AggregatorConfiguration, store: sending AggregatorStore, signer: ModelSigner,
                metrics: AggregatorMetrics, logger: Logger,
                clock: @escaping @Sendable () -> Int64 = wallClockMilliseconds) throws(AggregatorError) {
        self.configuration = configuration
        self.store = store
        self.signer = signer
        self.logger = logger
        self.clock = clock
        self.metrics = metrics
        rateLimiter = RateLimiter(perHour: configuration.updatesPerDevicePerHour)

        let current: UInt64?
        let stored: (model: [UInt8], signature: [UInt8], optimizer: [UInt8]?)?
        let versions: [VersionRecord]
        let pending: [PendingUpdate]
        let started: Int64?
        do throws(StoreError) {
            current = try store.currentVersion()
            stored = try current.flatMap { v throws(StoreError) in try store.versionContents(v) }
            versions = try store.versions()
            pending = try store.pendingUpdates()
            started = try store.roundStarted()
        } catch {
            throw .store(error.message)
        }
        guard let version = current, let contents = stored else {
            throw .notInitialized("no model yet in \(store.path): run `hearth-aggregator init` first")
        }
        roundStartedMilliseconds = started ?? clock()
        let model: Model
        do throws(CoreError) {
            model = try ModelFile.decode(contents.model)
        } catch {
            throw .internalFailure("stored model version \(version) does not decode: \(error.message)")
        }
        catalog = model.catalog
        encoder = model.encoder
        dimension = model.parameters.parameterCount
        served = ServedModel(version: version, body: ByteBuffer(bytes: contents.model), signature: contents.signature)
        dataVersions = versions.last(where: { $0.version == version })?.dataVersions ?? 0

        plan = try Aggregator.plan(configuration, version: version)
        let optimizerState = try contents.optimizer.map(OptimizerStateCoding.decode) ?? OptimizerState()
        do throws(AggregationError) {
            federation = try FedBuffAggregator(parameters: model.parameters, configuration: Aggregator.fedBuff(configuration),
                                               plan: plan, optimizerState: optimizerState)
        } catch {
            throw .configuration(error.message)
        }
        // Replay the accepted, unpublished updates: the running sum is rebuilt exactly.
        for update in pending {
            do throws(AggregationError) {
                let validated = try UpdateValidator.validate(update.payload, plan: plan, currentVersion: version, dimension: dimension)
                try federation.fold(update.payload, validated)
            } catch {
                throw .internalFailure("an accepted, unpublished update no longer validates (\(error)): was the [plan] section changed while updates were buffered? Restore it, or `rollback` to drop the buffer; otherwise the store at \(store.path) is damaged")
            }
        }
        metrics.modelVersion.set(Int64(version))
        metrics.bufferFill.set(Int64(federation.bufferedCount))
        metrics.epsilonSpent.set(versions.last(where: { $0.version == version })?.epsilon ?? 0)
        if !pending.isEmpty {
            logger.info("resumed the running sum", metadata: ["updates": "\(pending.count)", "version": "\(version)"])
        }
    }

    // MARK: - Configuration mapping

    static func plan(_ c: AggregatorConfiguration, version: UInt64) throws(AggregatorError) -> FederationPlan {
        let plan = FederationPlan(modelVersion: version, samplingRate: c.samplingRate, clipNorm: c.clipNorm,
                                  noiseMultiplier: c.noiseMultiplier, mode: c.privacyMode == "central" ? .central : .local,
                                  unit: c.privacyUnit == "session" ? .session : .device,
                                  maxSessionsPerUpdate: c.maxSessionsPerUpdate, bitWidth: c.bitWidth,
                                  headroom: c.headroom, maxStaleness: c.maxStaleness)
        do throws(AggregationError) {
            try plan.validate()
        } catch {
            throw .configuration(error.message)
        }
        return plan
    }

    static func fedBuff(_ c: AggregatorConfiguration) -> FedBuffConfiguration {
        let optimizer: ServerOptimizer
        switch c.optimizer {
        case "fedavgm": optimizer = .fedAvgM(momentum: c.momentum)
        case "fedadam": optimizer = .fedAdam(beta1: c.beta1, beta2: c.beta2, tau: c.tau)
        default: optimizer = .fedAvg
        }
        return FedBuffConfiguration(bufferSize: c.bufferSize, minimumUpdates: c.minimumUpdates,
                                    roundDeadlineSeconds: c.roundDeadlineSeconds,
                                    serverLearningRate: c.serverLearningRate, optimizer: optimizer,
                                    stalenessExponent: c.stalenessExponent)
    }

    /// Closes the store (at shutdown).
    public func close() { store.close() }

    // MARK: - Reading

    /// The model being served.
    public func currentModel() -> ServedModel { served }

    /// Whether the ε budget allows one more version that uses device data.
    public var budgetAllowsPublishing: Bool {
        CentralAccounting.canPublish(versionsSoFar: dataVersions, plan: plan, delta: configuration.delta,
                                     budget: configuration.epsilonBudget)
    }

    /// The plan for `device`, as `GET /v1/plan` serves it.
    public func planDocument(device: String) -> PlanDocument {
        let window = configuration.retryWindowSeconds
        // Pace steering: each device gets its own offset in the window for this version, so
        // devices spread out instead of all coming back at once.
        let retry = window == 0 ? 0 : Int(stableHash(device + "/" + String(plan.modelVersion)) % UInt64(window))
        let deadline = roundStartedMilliseconds + Int64(configuration.roundDeadlineSeconds * 1000)
        return PlanDocument(plan: plan, accepting: budgetAllowsPublishing, deadlineMilliseconds: deadline,
                            retryAfterSeconds: retry, bufferSize: configuration.bufferSize,
                            buffered: federation.bufferedCount)
    }

    /// The central ledger (`GET /v1/privacy`, `hearth-aggregator privacy`).
    public func privacyReport() throws(AggregatorError) -> PrivacyReport {
        let versions: [VersionRecord]
        do throws(StoreError) { versions = try store.versions() } catch { throw .store(error.message) }
        return PrivacyReport(configuration: configuration, plan: plan, versions: versions, currentVersion: served.version,
                             dataVersions: dataVersions, accepting: budgetAllowsPublishing)
    }

    /// A stored version's model file (nil when there is no such version).
    public func storedModel(version: UInt64) -> [UInt8]? {
        (try? store.versionContents(version))??.model
    }

    /// Updates waiting in the buffer.
    public var bufferedCount: Int { federation.bufferedCount }

    // MARK: - Uploads

    /// Handles one upload from an authenticated `device`.
    ///
    /// Order: idempotency (a replay answers as the first time did, before any other check, so a
    /// retry after a lost answer is never refused), budget, rate limit, full validation, one
    /// update per device per version, durable insert, fold, and publication when the buffer is full.
    public func accept(device: String, body: [UInt8], idempotencyKeyHeader: String?) -> UploadOutcome {
        let headerKey: IdempotencyKey
        do throws(PrivacyError) {
            headerKey = try IdempotencyKey(hex: idempotencyKeyHeader ?? "")
        } catch {
            return reject(400, "missing_idempotency_key", "the Idempotency-Key header must be 32 hex digits")
        }
        do throws(StoreError) {
            if let first = try store.update(key: headerKey.bytes) {
                guard first.device == device else {
                    return reject(409, "idempotency_key_conflict", "this idempotency key was used by another device")
                }
                metrics.replayed.increment()
                return .replayed
            }
        } catch {
            return storeFailure(error)
        }
        guard budgetAllowsPublishing else {
            return reject(403, "budget_exhausted",
                          "the model's privacy budget (epsilon \(configuration.epsilonBudget)) is spent; no more updates are taken")
        }
        // A full buffer means the last publication failed (store or signing trouble): try again,
        // and if it still fails ask the device to come back, rather than store an update that
        // could not be folded.
        if federation.bufferedCount >= configuration.bufferSize {
            _ = publishLogged()
            if federation.bufferedCount >= configuration.bufferSize {
                return UploadOutcome.rejected(status: 503, reason: "buffer_full",
                                              message: "the buffer is full and the next version could not be published yet",
                                              retryAfterSeconds: 60).counted(metrics)
            }
        }
        let now = clock()
        if let wait = rateLimiter.waitSeconds(device: device, now: now) {
            return .rejected(status: 429, reason: "rate_limited",
                             message: "at most \(configuration.updatesPerDevicePerHour) updates per hour per device",
                             retryAfterSeconds: wait).counted(metrics)
        }
        let validated: ValidatedUpdate
        do throws(AggregationError) {
            validated = try UpdateValidator.validate(body, plan: plan, currentVersion: served.version, dimension: dimension)
        } catch {
            let status: Int
            switch error.reason {
            case "stale_model_version", "unknown_model_version": status = 409
            case "malformed_update", "checksum_mismatch", "unsupported_format_version": status = 400
            default: status = 422
            }
            return reject(status, error.reason, error.message)
        }
        guard validated.idempotencyKey == headerKey else {
            return reject(400, "idempotency_key_mismatch", "the Idempotency-Key header differs from the key inside the update")
        }
        do throws(StoreError) {
            // One update per device per publication: the ledger's sensitivity is one device's
            // clipped update in each published version.
            if try store.hasPendingUpdate(device: device) {
                return reject(409, "already_contributed",
                              "this device already has an update in the buffer for version \(served.version); send the next one after a new version")
            }
            try store.insertUpdate(key: headerKey.bytes, device: device, modelVersion: validated.modelVersion,
                                   payload: body, now: now)
        } catch {
            return storeFailure(error)
        }
        do throws(AggregationError) {
            try federation.fold(body, validated)
        } catch {
            // Validated bytes always fold; if they did not, the stored row is replayed at restart.
            logger.critical("an accepted update did not fold", metadata: ["reason": "\(error)"])
        }
        rateLimiter.record(device: device, now: now)
        metrics.accepted.increment()
        metrics.bufferFill.set(Int64(federation.bufferedCount))
        logger.info("update accepted", metadata: [
            "device": "\(device)", "trained_from": "\(validated.modelVersion)", "staleness": "\(validated.staleness)",
            "buffered": "\(federation.bufferedCount)/\(configuration.bufferSize)",
        ])
        var published: UInt64? = nil
        if federation.shouldPublish(secondsSinceRoundStart: secondsSinceRoundStart(now)) {
            published = publishLogged()
        }
        return .accepted(published: published)
    }

    private func reject(_ status: Int, _ reason: String, _ message: String) -> UploadOutcome {
        UploadOutcome.rejected(status: status, reason: reason, message: message, retryAfterSeconds: nil).counted(metrics)
    }

    private func storeFailure(_ error: StoreError) -> UploadOutcome {
        logger.error("store failure on upload", metadata: ["error": "\(error)"])
        return UploadOutcome.rejected(status: 503, reason: "store_unavailable", message: "the aggregator cannot store updates right now",
                                      retryAfterSeconds: 30).counted(metrics)
    }

    private func secondsSinceRoundStart(_ now: Int64) -> Double {
        Double(max(0, now - roundStartedMilliseconds)) / 1000
    }

    // MARK: - Publishing

    /// Publishes when the round's deadline has passed with enough updates (called periodically).
    @discardableResult
    public func tick() -> UInt64? {
        guard federation.shouldPublish(secondsSinceRoundStart: secondsSinceRoundStart(clock())) else { return nil }
        return publishLogged()
    }

    private func publishLogged() -> UInt64? {
        do throws(AggregatorError) {
            return try publish()
        } catch {
            logger.error("publication failed", metadata: ["error": "\(error)"])
            return nil
        }
    }

    /// Averages the buffer into the next version, signs it and makes it current.
    public func publish() throws(AggregatorError) -> UInt64 {
        guard budgetAllowsPublishing else {
            throw .configuration("publishing another version would exceed the privacy budget (epsilon \(configuration.epsilonBudget))")
        }
        var rng = SystemRandomNumberGenerator()
        var next = federation
        let publication: Publication
        do throws(AggregationError) {
            publication = try next.publish(using: &rng)
        } catch {
            throw .configuration(error.message)
        }
        let version: UInt64
        do throws(StoreError) { version = try store.latestVersionNumber() + 1 } catch { throw .store(error.message) }
        let epsilon: Double
        do throws(AggregationError) {
            epsilon = try CentralAccounting.epsilon(versions: dataVersions + 1, plan: plan, delta: configuration.delta)
        } catch {
            throw .configuration(error.message)
        }
        let record = VersionRecord(version: version, createdMilliseconds: clock(), parent: served.version,
                                   updates: publication.updates, noiseStandardDeviation: publication.noiseStandardDeviation,
                                   epsilon: epsilon, delta: configuration.delta, dataVersions: dataVersions + 1, origin: "fedbuff")
        try commit(record, parameters: publication.parameters, optimizer: next.optimizerState, discardPending: false)
        federation = next
        dataVersions += 1
        metrics.epsilonSpent.set(epsilon)
        logger.notice("published a model version", metadata: [
            "version": "\(version)", "updates": "\(publication.updates)", "epsilon": "\(epsilon)",
            "noise_sd": "\(publication.noiseStandardDeviation)",
        ])
        return version
    }

    /// Serves `version`'s parameters again as a new version (so devices move forward to it);
    /// the buffered updates, trained from the abandoned line, are discarded. Spent privacy
    /// stays spent.
    public func rollback(to version: UInt64) throws(AggregatorError) -> UInt64 {
        let stored: (model: [UInt8], signature: [UInt8], optimizer: [UInt8]?)?
        let next: UInt64
        do throws(StoreError) {
            stored = try store.versionContents(version)
            next = try store.latestVersionNumber() + 1
        } catch {
            throw .store(error.message)
        }
        guard let contents = stored else { throw .notFound("no version \(version)") }
        let old: Model
        do throws(CoreError) { old = try ModelFile.decode(contents.model) } catch {
            throw .internalFailure("stored version \(version) does not decode: \(error.message)")
        }
        let optimizer = try contents.optimizer.map(OptimizerStateCoding.decode) ?? OptimizerState()
        let epsilon = try privacyReport().epsilonSpent
        let record = VersionRecord(version: next, createdMilliseconds: clock(), parent: version, updates: 0,
                                   noiseStandardDeviation: 0, epsilon: epsilon, delta: configuration.delta,
                                   dataVersions: dataVersions, origin: "rollback of \(version)")
        try commit(record, parameters: old.parameters, optimizer: optimizer, discardPending: true)
        do throws(AggregationError) {
            federation = try FedBuffAggregator(parameters: old.parameters, configuration: Aggregator.fedBuff(configuration),
                                               plan: plan, optimizerState: optimizer)
        } catch {
            throw .configuration(error.message)
        }
        logger.notice("rolled back", metadata: ["to": "\(version)", "as": "\(next)"])
        return next
    }

    /// Encodes, signs and stores a version, then serves it.
    private func commit(_ record: VersionRecord, parameters: GlobalParameters, optimizer: OptimizerState,
                        discardPending: Bool) throws(AggregatorError) {
        let model: Model
        do throws(CoreError) {
            model = try Model(version: record.version, catalog: catalog, parameters: parameters, encoder: encoder)
        } catch {
            throw .internalFailure("cannot build model version \(record.version): \(error.message)")
        }
        let bytes = ModelFile.encode(model)
        let signature = try signer.sign(bytes)
        do throws(StoreError) {
            try store.publish(record, model: bytes, signature: signature, optimizer: OptimizerStateCoding.encode(optimizer),
                              discardPending: discardPending)
        } catch {
            throw .store(error.message)
        }
        served = ServedModel(version: record.version, body: ByteBuffer(bytes: bytes), signature: signature)
        roundStartedMilliseconds = record.createdMilliseconds
        plan.modelVersion = record.version
        metrics.modelVersion.set(Int64(record.version))
        metrics.bufferFill.set(Int64(0))
    }
}

extension UploadOutcome {
    fileprivate func counted(_ metrics: AggregatorMetrics) -> UploadOutcome {
        if case .rejected(_, let reason, _, _) = self { metrics.rejected(reason: reason) }
        return self
    }
}

/// FNV-1a, 64-bit: a stable hash (Swift's `Hasher` is seeded per process).
func stableHash(_ text: String) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in text.utf8 {
        h ^= UInt64(b)
        h = h &* 0x100_0000_01b3
    }
    return h
}

/// Milliseconds since the Unix epoch, from the system clock.
@Sendable public func wallClockMilliseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
}

/// Per-device sliding one-hour window of accepted uploads (in memory: a restart forgets it,
/// which at worst lets a device send one more hour's worth).
struct RateLimiter {
    let perHour: Int
    private var accepted: [String: [Int64]] = [:]

    init(perHour: Int) { self.perHour = perHour }

    /// Seconds to wait before the next upload is allowed, or nil when it is allowed now.
    mutating func waitSeconds(device: String, now: Int64) -> Int? {
        let recent = (accepted[device] ?? []).filter { now - $0 < 3_600_000 }
        accepted[device] = recent
        guard recent.count >= perHour, let oldest = recent.first else { return nil }
        return Int((oldest + 3_600_000 - now + 999) / 1000)
    }

    mutating func record(device: String, now: Int64) {
        accepted[device, default: []].append(now)
    }
}
