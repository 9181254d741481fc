import HearthConfig
import HearthCore
import HearthPrivacy
import HearthSystemd
import HearthUploader
import Logging
import ServiceLifecycle

/// Sleeps `duration`; false when the sleep was cut short by cancellation or graceful shutdown.
private func pause(_ duration: Duration) async -> Bool {
    do {
        try await cancelWhenGracefulShutdown { try await Task.sleep(for: duration) }
        return !Task.isCancelled && !Task.isShuttingDownGracefully
    } catch {
        return false
    }
}

/// Idles until graceful shutdown (services must not return early: the group would stop).
private func idleUntilShutdown() async {
    try? await gracefulShutdown()
}

/// Asks the training scheduler every `interval` whether to train, and runs a round when it
/// says so.
public struct TrainingService: Service {
    let runtime: AgentRuntime
    let configuration: AgentConfiguration
    let probes: SystemProbes
    let interval: Duration
    let logger: Logger

    /// - Parameter logger: label `hearth.agent.training`.
    public init(runtime: AgentRuntime, configuration: AgentConfiguration, probes: SystemProbes = SystemProbes(),
                interval: Duration = .seconds(60), logger: Logger) {
        self.runtime = runtime
        self.configuration = configuration
        self.probes = probes
        self.interval = interval
        self.logger = logger
    }

    /// The scheduler configured from `configuration`.
    public var scheduler: TrainingScheduler {
        let window = TrainingWindow(configuration.trainingWindow)
        return TrainingScheduler(windowStartMinute: window?.startMinute ?? 0, windowEndMinute: window?.endMinute ?? 1440,
                                 maxLoadAverage: configuration.maxLoadAverage,
                                 requireMainsPower: configuration.requireMainsPower,
                                 minNewEvents: configuration.minNewEvents)
    }

    public func run() async throws {
        var participation = ParticipationLog()
        let plans: PlanClient? = configuration.aggregatorURL.isEmpty ? nil : PlanClient(
            configuration: configuration,
            client: aggregatorClient(configuration),
            logger: logger)
        while await pause(interval) {
            await check(plans: plans, participation: &participation)
        }
    }

    /// Whether the aggregator's plan selects this device for the model version it serves, and
    /// at which sampling rate q. Without an aggregator (or when its plan cannot be fetched) the
    /// device trains with q = 1: the update waits in the outbox and the accountant assumes no
    /// amplification by sampling.
    func selection(plans: PlanClient?, participation: inout ParticipationLog) async -> (selected: Bool, samplingRate: Double, reason: String?) {
        guard let plans, let credential = readCredential(configuration.credentialFile, logger: logger),
              let plan = await plans.fetch(credential: credential) else { return (true, 1, nil) }
        guard plan.accepting else { return (false, plan.samplingRate, "the aggregator's privacy budget is spent") }
        if let mismatch = plan.mismatch(with: configuration) { return (false, plan.samplingRate, mismatch) }
        var rng = SystemRandomNumberGenerator()
        guard participation.participates(version: plan.modelVersion, samplingRate: plan.samplingRate, using: &rng) else {
            return (false, plan.samplingRate, nil)
        }
        return (true, plan.samplingRate, nil)
    }

    /// One scheduler check (and round, when it says train).
    func check(plans: PlanClient?, participation: inout ParticipationLog) async {
        let now = unixMilliseconds()
        let newEvents: Int
        do {
            newEvents = try await runtime.newEventCount()
        } catch {
            logger.error("cannot count new events", metadata: ["error": "\(error)"])
            return
        }
        let plan = newEvents >= configuration.minNewEvents
            ? await selection(plans: plans, participation: &participation) : (selected: true, samplingRate: 1.0, reason: nil)
        if let reason = plan.reason {
            await runtime.noteDecision("wait: " + reason)
            logger.debug("not training", metadata: ["reason": "\(reason)"])
            return
        }
        let conditions = TrainingScheduler.Conditions(
            minuteOfDay: SystemProbes.minuteOfDay(unixSeconds: Int(now / 1000)),
            loadAverage: probes.loadAverage() ?? 0, onMainsPower: probes.onMainsPower(),
            newEvents: newEvents, selectedByPlan: plan.selected)
        switch scheduler.decide(conditions) {
        case .wait(let reason):
            await runtime.noteDecision("wait: " + reason)
            logger.debug("not training", metadata: ["reason": "\(reason)"])
        case .train:
            await runtime.noteDecision("train")
            do {
                let outcome = try await runtime.trainRound(now: now, samplingRate: plan.samplingRate)
                logger.debug("training round", metadata: ["outcome": "\(outcome)"])
            } catch {
                logger.error("training round failed", metadata: ["error": "\(error)"])
            }
        }
    }
}

/// Drains the outbox to the aggregator every `interval`.
///
/// Each update goes out as `POST /v1/updates` with its idempotency key (as `UpdateUploader`
/// sends it); how each exchange went feeds the `aggregator_*` conditions: no connection
/// (`aggregator_unreachable`), no answer within `upload.timeout_ms` (`aggregator_slow`), 5xx,
/// 408 or 429 (`aggregator_error`); any answer clears the first two. A failed attempt stays in
/// the outbox with its retry time from `Backoff` (at most `backoffCap`), so nothing queued is
/// lost and nothing is sent twice under two keys.
public struct UploadService: Service {
    let runtime: AgentRuntime
    let configuration: AgentConfiguration
    let interval: Duration
    let backoff: Backoff
    let logger: Logger

    /// - Parameter backoffCap: the longest wait between two attempts of one update.
    /// - Parameter logger: label `hearth.agent.upload`.
    public init(runtime: AgentRuntime, configuration: AgentConfiguration, interval: Duration = .seconds(5),
                backoffCap: Duration = .seconds(15 * 60), logger: Logger) {
        self.runtime = runtime
        self.configuration = configuration
        self.interval = interval
        self.backoff = Backoff(cap: backoffCap)
        self.logger = logger
    }

    public func run() async throws {
        guard !configuration.aggregatorURL.isEmpty else {
            logger.info("no upload.aggregator_url: updates stay in the outbox")
            return await idleUntilShutdown()
        }
        var uploader = UpdateUploader(baseURL: configuration.aggregatorURL, client: aggregatorClient(configuration), logger: logger)
        uploader.onExchange = { [runtime] result in
            await runtime.noteAggregator(AggregatorExchange(result), operation: "POST /v1/updates")
        }
        let outbox = RuntimeOutbox(runtime: runtime, backoff: backoff)
        while await pause(interval) {
            guard let credential = readCredential(configuration.credentialFile, logger: logger) else { continue }
            do {
                let report = try await uploader.drain(outbox: outbox, deviceCredential: credential)
                if !report.accepted.isEmpty || !report.duplicates.isEmpty || !report.rejected.isEmpty {
                    logger.info("outbox drained", metadata: [
                        "accepted": "\(report.accepted.count)", "duplicates": "\(report.duplicates.count)",
                        "rejected": "\(report.rejected.count)", "retry_later": "\(report.stoppedForRetry)",
                    ])
                }
            } catch {
                logger.error("draining the outbox failed", metadata: ["error": "\(error)"])
            }
        }
    }
}

/// Runs `AgentRuntime.healthCheck` every `interval`: the clock watch, reopening a store that
/// could not be opened, the disk probe while a write condition is set (docs/agent.md, "Faults").
public struct HealthService: Service {
    let runtime: AgentRuntime
    let interval: Duration
    let clockOffsetFile: String?
    let logger: Logger

    /// - Parameter clockOffsetFile: tests only: a file holding milliseconds added to the wall
    ///   clock the agent reads (re-read at every check), to make the clock jump.
    /// - Parameter logger: label `hearth.agent.health`.
    public init(runtime: AgentRuntime, interval: Duration = .seconds(5), clockOffsetFile: String? = nil, logger: Logger) {
        self.runtime = runtime
        self.interval = interval
        self.clockOffsetFile = clockOffsetFile
        self.logger = logger
    }

    public func run() async throws {
        repeat {
            if let clockOffsetFile {
                let text = FileSupport.readSmallText(clockOffsetFile) ?? "0"
                let offset = Int64(text.split(whereSeparator: { $0 == "\n" || $0 == " " }).first ?? "0") ?? 0
                WallClockOffset.milliseconds.store(offset, ordering: .relaxed)
            }
            await runtime.healthCheck()
        } while await pause(interval)
    }
}

/// The client for the aggregator: the configured CA file and timeouts; each request runs in a
/// `hearth-fetch` process (`FetchHelperTransport`), so the agent never maps libcurl. The helper
/// is `upload.fetch_helper`, else `$HEARTH_FETCH_HELPER`, else next to the agent (or in `../lib/hearth/`).
func aggregatorClient(_ configuration: AgentConfiguration) -> CurlClient {
    let helper = configuration.fetchHelper.isEmpty ? FetchHelperTransport.configuredHelperPath() : configuration.fetchHelper
    return CurlClient(configuration: CurlClient.Configuration(
        caFile: configuration.caFile.isEmpty ? nil : configuration.caFile,
        connectTimeoutMilliseconds: configuration.connectTimeoutMilliseconds,
        timeoutMilliseconds: configuration.timeoutMilliseconds),
        transport: FetchHelperTransport(helperPath: helper))
}

/// The device credential (first line of `path`), or nil when unset or unreadable.
func readCredential(_ path: String, logger: Logger) -> String? {
    guard !path.isEmpty else {
        logger.warning("no upload.credential_file: not uploading")
        return nil
    }
    do {
        guard let bytes = try FileSupport.read(path, maxBytes: 4096) else {
            logger.warning("credential file missing", metadata: ["path": "\(path)"])
            return nil
        }
        let line = String(decoding: bytes, as: UTF8.self).split(whereSeparator: { $0 == "\n" || $0 == "\r" || $0 == " " }).first
        return line.map(String.init)
    } catch {
        logger.warning("credential file unreadable", metadata: ["error": "\(error)"])
        return nil
    }
}

/// Fetches the newest signed model every `interval` and swaps it in.
public struct ModelRefreshService: Service {
    let runtime: AgentRuntime
    let configuration: AgentConfiguration
    let interval: Duration
    let logger: Logger

    /// - Parameter logger: label `hearth.agent.model`.
    public init(runtime: AgentRuntime, configuration: AgentConfiguration, interval: Duration = .seconds(600), logger: Logger) {
        self.runtime = runtime
        self.configuration = configuration
        self.interval = interval
        self.logger = logger
    }

    public func run() async throws {
        guard !configuration.aggregatorURL.isEmpty, !configuration.modelPublicKey.isEmpty else {
            logger.info("model refresh off (needs upload.aggregator_url and upload.model_public_key)")
            return await idleUntilShutdown()
        }
        guard let key = decodeBase64(configuration.modelPublicKey), key.count == 32 else {
            logger.error("upload.model_public_key is not the base64 of a 32-byte Ed25519 key; model refresh off")
            return await idleUntilShutdown()
        }
        let client = aggregatorClient(configuration)
        var fetcher: ModelFetcher
        do {
            fetcher = try ModelFetcher(baseURL: configuration.aggregatorURL, directory: runtime.modelDirectory,
                                       publicKey: key, client: client, logger: logger)
            fetcher.keepsFloatMaster = false  // the agent serves and trains from the int8 table
            // A kill during a download leaves its temporary file behind; this service is the
            // directory's only fetcher, and no fetch has started yet.
            let abandoned = fetcher.removeAbandonedDownloads()
            if abandoned > 0 {
                logger.notice("removed unfinished model downloads of an earlier run", metadata: ["files": "\(abandoned)"])
            }
        } catch {
            logger.error("model refresh off", metadata: ["error": "\(error)"])
            return await idleUntilShutdown()
        }
        var etag: String?
        repeat {
            let credential = configuration.credentialFile.isEmpty ? nil : readCredential(configuration.credentialFile, logger: logger)
            do {
                switch try await fetcher.fetch(currentETag: etag, deviceCredential: credential) {
                case .notModified:
                    break
                case .downloaded(let package):
                    etag = package.etag
                    await runtime.swapModel(package.model)
                }
            } catch {
                // A bad model is rejected (never installed) and reported; keep serving the old one.
                logger.error("model refresh failed", metadata: ["error": "\(error)"])
                let exchange = AggregatorExchange(error: error)
                await runtime.noteAggregator(exchange, operation: "GET /v1/model")
                if exchange == .answered, error == .badSignature("") || error == .missingSignature("") || error == .corruptModel("") {
                    await runtime.noteRejectedModel(error)
                }
                continue
            }
            await runtime.noteAggregator(.answered, operation: "GET /v1/model")
        } while await pause(interval)
    }
}

/// Applies the retention caps every `interval` (and once at start).
public struct RetentionService: Service {
    let runtime: AgentRuntime
    let interval: Duration
    let logger: Logger

    /// - Parameter logger: label `hearth.agent.retention`.
    public init(runtime: AgentRuntime, interval: Duration = .seconds(3600), logger: Logger) {
        self.runtime = runtime
        self.interval = interval
        self.logger = logger
    }

    public func run() async throws {
        repeat {
            do {
                try await runtime.enforceRetention(now: unixMilliseconds())
            } catch {
                logger.error("retention failed", metadata: ["error": "\(error)"])
            }
        } while await pause(interval)
    }
}

/// Pings the systemd watchdog at half `WatchdogUSec` (idle when no watchdog is enabled).
public struct WatchdogService: Service {
    let notifier: SystemdNotifier
    let logger: Logger

    /// - Parameter logger: label `hearth.agent.systemd`.
    public init(notifier: SystemdNotifier, logger: Logger) {
        self.notifier = notifier
        self.logger = logger
    }

    public func run() async throws {
        guard let micros = notifier.pingIntervalMicroseconds, micros > 0 else { return await idleUntilShutdown() }
        repeat {
            do { try notifier.watchdog() } catch { logger.warning("watchdog ping failed", metadata: ["error": "\(error)"]) }
        } while await pause(.microseconds(Int64(clamping: micros)))
    }
}

/// Sends `READY=1` once `waitUntilReady` returns, and `STOPPING=1` when shutdown begins.
public struct ReadinessService: Service {
    let notifier: SystemdNotifier
    let waitUntilReady: @Sendable () async throws -> Void
    let logger: Logger

    /// - Parameter logger: label `hearth.agent.systemd`.
    public init(notifier: SystemdNotifier, logger: Logger, waitUntilReady: @escaping @Sendable () async throws -> Void) {
        self.notifier = notifier
        self.waitUntilReady = waitUntilReady
        self.logger = logger
    }

    public func run() async throws {
        try await cancelWhenGracefulShutdown { try await waitUntilReady() }
        if !Task.isShuttingDownGracefully {
            do { try notifier.ready(status: "serving") } catch { logger.warning("READY=1 failed", metadata: ["error": "\(error)"]) }
            logger.info("serving")
            await idleUntilShutdown()
        }
        do { try notifier.stopping() } catch { logger.warning("STOPPING=1 failed", metadata: ["error": "\(error)"]) }
        logger.info("shutting down")
    }
}
