#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import HearthAgent
import HearthAggregation
import HearthConfig
import HearthCore
import HearthDatasets
import HearthLocalAPI
import HearthPrivacy
import HearthProcess
import HearthCurl
import HearthUploader
import Logging

/// How a federated configuration runs over HTTP (`hearth-sim --over-http`).
public struct OverHTTPOptions: Sendable {
    /// The `hearth-aggregator` executable.
    public var aggregatorBinary: String
    /// Where the run's working directory is made (aggregator store and logs, one model directory
    /// per device). The default is /dev/shm when writable (the aggregator fsyncs every accepted
    /// update and every device fsyncs every model it installs; on tmpfs that costs nothing),
    /// else $TMPDIR or /tmp.
    public var workBase: String = OverHTTPOptions.defaultWorkBase()
    /// Keep the working directory (logs, store) instead of removing it.
    public var keepDirectory = false
    /// The aggregator's round deadline in seconds, required when q < 1 (see `Simulation.runOverHTTP`).
    public var roundDeadlineSeconds: Double?
    /// Devices whose HTTP exchanges and training run at the same time.
    public var concurrency = 4
    /// For the libcurl clients (`UpdateUploader`, `ModelFetcher`, `PlanClient`).
    public var logger: Logger

    public init(aggregatorBinary: String, logger: Logger) {
        self.aggregatorBinary = aggregatorBinary
        self.logger = logger
    }

    /// /dev/shm when it is a writable directory, else $TMPDIR, else /tmp.
    public static func defaultWorkBase() -> String {
        if access("/dev/shm", W_OK | X_OK) == 0 { return "/dev/shm" }
        if let tmp = getenv("TMPDIR") { return String(cString: tmp) }
        return "/tmp"
    }
}

/// What an over-HTTP run produced: the federated outcome (its parameters are those of the last
/// version the aggregator published, as fetched and verified over HTTP) and what the aggregator
/// itself reports.
public struct OverHTTPOutcome: Sendable {
    /// Parameters from the final published model; locals, z, ε and counts as in process.
    public var federated: FederatedOutcome
    /// `epsilon_spent` of `GET /v1/privacy` (the aggregator's central ledger).
    public var aggregatorEpsilon: Double
    /// `data_versions` of `GET /v1/privacy`: versions published with device data.
    public var aggregatorVersions: Int
    /// `hearth_updates_accepted_total` of `GET /metrics`.
    public var acceptedUpdates: Int
    /// Sum of `hearth_updates_rejected_total{reason}` of `GET /metrics`.
    public var rejectedUpdates: Int
    /// Sum of `updates` over the published versions in `GET /v1/privacy`.
    public var updatesInVersions: Int
    /// `noise_sd` of every version published from updates (grid units; 0 in local mode).
    public var noiseStandardDeviations: [Double]
    /// The version the final model carries (1 is the initial model).
    public var finalVersion: UInt64
    /// Models downloaded and verified by the devices (`GET /v1/model` answered 200).
    public var modelDownloads: Int
    /// Seconds to enrol the fleet, create version 1 and start the server.
    public var setupSeconds: Double
}

/// One participant's round over HTTP, as it comes back to the coordinator.
private struct DeviceRound: Sendable {
    var device: Int
    var local: [Float]
    var updateNorm: Double
    var saturated: Int
    var etag: String?
    var downloaded: Bool
}

/// A virtual device's connection to the aggregator: its credential and the agent's clients.
private struct DeviceLink: Sendable {
    var credential: String
    var fetcher: ModelFetcher
}

extension Simulation {
    /// Runs the federation of `configuration` against a real `hearth-aggregator` process on
    /// 127.0.0.1, every virtual device going through the agent's own code:
    ///
    /// - the aggregator is started with `LoopbackAggregator` (`devices add --count N`, `init
    ///   --model` with this run's seeded initial model, `serve`), configured with the plan of
    ///   the in-process run: mode, C, z from the ε calibration, q, bit width, headroom, no
    ///   staleness, K = N, FedAvg with η = serverLearningRate / q, and a privacy budget of the
    ///   run's ε;
    /// - in every round each device asks for the plan (`PlanClient`, `GET /v1/plan` with its
    ///   credential), refuses it as the agent does if it does not accept updates or does not
    ///   match the device's privacy settings (`ServerPlan.mismatch`), and flips its
    ///   `ParticipationLog` coin at the plan's q; a participant fetches the current model with the
    ///   agent's `ModelFetcher` (`GET /v1/model`, `If-None-Match`, Ed25519 signature verified,
    ///   CRCs checked, installed atomically in its own model directory), trains from it
    ///   (`DeviceTraining`, as in process), builds its envelope with the agent's
    ///   `UpdateAccumulator.seal` and uploads it with `UpdateUploader` (`POST /v1/updates`,
    ///   bearer credential, idempotency key);
    /// - the aggregator validates, stores (fsynced) and folds each update and publishes a signed
    ///   version: with q = 1 when the N-th update of the round arrives (no timing involved); with
    ///   q < 1, when `options.roundDeadlineSeconds` has passed since the last version with at
    ///   least one update buffered, so a round's training and uploads must fit in that deadline
    ///   (a version published before the round's last upload is detected: that upload is refused
    ///   as stale and the run stops with an error saying so);
    /// - at the end the final model is fetched and verified like any device's, and the ledger
    ///   (`GET /v1/privacy`) and counters (`GET /metrics`) are read.
    ///
    /// Coins, training and device noise are seeded exactly as in `runFederated`, and the
    /// aggregator's FedBuff sums integers, so in local mode (no server noise) the final
    /// parameters equal the in-process run's bit for bit. In central mode the aggregator draws
    /// its noise from the system's CSPRNG, as in production. Mode `none` is refused: the
    /// aggregator takes only clipped, noised plans (`FederationPlan` refuses z = 0).
    public func runOverHTTP(_ configuration: SimulationConfiguration, options: OverHTTPOptions,
                            progress: @Sendable (Int) -> Void = { _ in }) async throws(SimulationError) -> OverHTTPOutcome {
        try configuration.validate()
        let mode = configuration.effectiveMode
        guard mode != .none else {
            throw .invalidArgument("--over-http needs --mode local or central with a finite ε: the aggregator only runs private plans (it refuses z = 0), so the no-noise federation is simulated in process only")
        }
        let deviceCount = data.devices.count
        guard deviceCount > 0 else { throw .invalidArgument("no devices") }
        guard deviceCount <= 100_000 else { throw .invalidArgument("--over-http takes at most 100000 devices (the aggregator's largest buffer), got \(deviceCount)") }
        let q = configuration.effectiveSamplingRate
        if q < 1 {
            guard let deadline = options.roundDeadlineSeconds, deadline >= 1, deadline.isFinite else {
                throw .invalidArgument("--over-http with q < 1 needs --round-deadline SECONDS (>= 1): the aggregator publishes a round that does not fill its buffer (K = \(deviceCount) devices) when that deadline passes, so it must exceed a round's training and uploads")
            }
        }
        let z = try Simulation.noiseMultiplier(for: configuration)
        let plan = Simulation.plan(configuration, noiseMultiplier: z, devices: deviceCount)
        let budget: Double
        do {
            budget = try CentralAccounting.epsilon(versions: configuration.rounds, plan: plan, delta: configuration.delta)
        } catch {
            throw .aggregation(error.message)
        }
        let logger = options.logger
        let started = ContinuousClock.now

        let work: String
        do { work = try makeTemporaryDirectory(prefix: "hearth-sim-", base: options.workBase) } catch { throw .transport(error.message) }
        defer { if !options.keepDirectory { removeTree(work) } }

        // The aggregator starts from this run's seeded initial model, as the in-process run does.
        let initialModel: Model
        do {
            initialModel = try Model(version: 1, catalog: data.catalog, parameters: initialParameters(configuration))
        } catch {
            throw .invalidArgument("initial model: \(error)")
        }
        do {
            try writeFileAtomically(work + "/initial.hrth", bytes: ModelFile.encode(initialModel))
        } catch {
            throw .transport("cannot write the initial model: \(error)")
        }
        let sections = """
            [plan]
            sampling_rate = \(q)
            clip_norm = \(configuration.clipNorm)
            noise_multiplier = \(z)
            mode = "\(mode == .local ? "local" : "central")"
            unit = "device"
            max_sessions_per_update = 1
            bit_width = \(configuration.bitWidth)
            headroom = \(plan.headroom)
            max_staleness = 0
            [fedbuff]
            buffer_size = \(deviceCount)
            minimum_updates = 1
            round_deadline_seconds = \(q < 1 ? options.roundDeadlineSeconds ?? 1 : 86_400)
            server_learning_rate = \(configuration.serverLearningRate / q)
            optimizer = "fedavg"
            staleness_exponent = 0
            [privacy]
            delta = \(configuration.delta)
            epsilon_budget = \(budget * (1 + 1e-9))
            """
        // The aggregator's own validation, before any process starts: it names the key out of range.
        do {
            _ = try AggregatorConfiguration(toml: sections)
        } catch {
            throw .invalidArgument("--over-http: the aggregator refuses this plan: \(error.message) (fedbuff.server_learning_rate is --server-lr / q)")
        }
        var setup = LoopbackAggregator.Setup(binary: options.aggregatorBinary, directory: work, sections: sections,
                                             initArguments: ["--model", work + "/initial.hrth"], fleetName: "sim-device",
                                             fleetSize: deviceCount)
        setup.serverSettings = ["updates_per_device_per_hour = 3600", "retry_window_seconds = 0"]
        setup.tickIntervalSeconds = 0.05
        let aggregator: LoopbackAggregator
        do {
            aggregator = try await LoopbackAggregator.start(setup)
        } catch {
            throw .transport(error.message)
        }
        defer { aggregator.stop() }
        let setupSeconds = SimulationRunner.seconds(since: started)
        let base = aggregator.baseURL
        guard let publicKey = Base64.decode(aggregator.modelPublicKey), publicKey.count == 32 else {
            throw .transport("the aggregator's model_public_key is not a 32-byte Ed25519 key")
        }

        // The clients every agent builds: plain HTTP on loopback, the agent's default timeouts.
        let client = CurlClient(configuration: CurlClient.Configuration(connectTimeoutMilliseconds: 5_000, timeoutMilliseconds: 60_000))
        let plans = PlanClient(baseURL: base, client: client, logger: logger)
        let uploader = UpdateUploader(baseURL: base, client: client, logger: logger)
        var deviceLinks: [DeviceLink] = []
        deviceLinks.reserveCapacity(deviceCount)
        for device in 0 ..< deviceCount {
            let directory = work + "/devices/\(device)"
            do {
                try makeDirectories(directory)
                deviceLinks.append(DeviceLink(credential: aggregator.credentials[device],
                                        fetcher: try ModelFetcher(baseURL: base, directory: directory, publicKey: publicKey,
                                                                  client: client, logger: logger)))
            } catch {
                throw .transport("device \(device): \(error)")
            }
        }
        let links = deviceLinks
        // The device's own privacy settings, checked against the server's plan as the agent does.
        var deviceSettings = AgentConfiguration()
        deviceSettings.privacyMode = mode == .local ? "local" : "central"
        deviceSettings.privacyUnit = "device"
        deviceSettings.clipNorm = configuration.clipNorm
        deviceSettings.bitWidth = configuration.bitWidth
        deviceSettings.noiseMultiplier = z
        deviceSettings.delta = configuration.delta
        let privacy = plan.privacyConfiguration
        let privatizer: UpdatePrivatizer
        do {
            privatizer = try UpdatePrivatizer(configuration: privacy, dimension: initialModel.parameters.parameterCount)
        } catch {
            throw .privacy(error.message)
        }

        var deviceRecords: [[EventRecord]] = []
        for device in 0 ..< deviceCount { deviceRecords.append(try data.records(ofDevice: device)) }
        let records = deviceRecords
        var locals = [[Float]](repeating: [Float](repeating: 0, count: configuration.dimension), count: deviceCount)
        var etags = [String?](repeating: nil, count: deviceCount)
        var participation = [ParticipationLog](repeating: ParticipationLog(), count: deviceCount)
        var version: UInt64 = 1
        var deviceRounds = 0
        var published = 0
        var saturated = 0
        var clipped = 0
        var downloads = 0
        var norms: [Double] = []
        let width = max(1, options.concurrency)

        for round in 0 ..< configuration.rounds {
            // Every device asks for the plan, then flips its coin in device order (the same
            // sequence of coins as in process).
            let fetched = try await Simulation.concurrently(Array(0 ..< deviceCount), width: width) { device throws(SimulationError) -> ServerPlan in
                guard let answer = await plans.fetch(credential: links[device].credential) else {
                    throw .transport("device \(device): GET /v1/plan failed (see the aggregator log)")
                }
                return answer
            }
            var coinRNG = Xoshiro256(seed: Simulation.derivedSeed(configuration.seed, 3, round))
            var participants: [Int] = []
            for device in 0 ..< deviceCount {
                guard let serverPlan = fetched[device] else { continue }
                guard serverPlan.accepting else {
                    throw .aggregation("round \(round): the aggregator's privacy budget is spent (plan not accepting)")
                }
                if let mismatch = serverPlan.mismatch(with: deviceSettings) {
                    throw .aggregation("round \(round), device \(device): the server's plan does not match the device: \(mismatch)")
                }
                guard serverPlan.modelVersion == version else {
                    throw .aggregation("round \(round), device \(device): the plan is for version \(serverPlan.modelVersion), expected \(version)")
                }
                if participation[device].participates(version: serverPlan.modelVersion, samplingRate: serverPlan.samplingRate,
                                                       using: &coinRNG) {
                    participants.append(device)
                }
            }

            // Each participant: fetch and verify the model, train, seal, upload.
            let roundLocals = locals
            let roundETags = etags
            let expected = version
            let results = try await Simulation.concurrently(participants, width: width) { device throws(SimulationError) -> DeviceRound in
                let link = links[device]
                let model: Model
                var etag = roundETags[device]
                var downloaded = false
                do {
                    switch try await link.fetcher.fetch(currentETag: etag, deviceCredential: link.credential) {
                    case .downloaded(let package):
                        model = package.model
                        etag = package.etag
                        downloaded = true
                    case .notModified:
                        model = try ModelFile.decode(try readFile(link.fetcher.currentPath))
                    }
                } catch {
                    throw .transport("round \(round), device \(device): model fetch failed: \(error)")
                }
                guard model.version == expected else {
                    throw .transport("round \(round), device \(device): fetched model version \(model.version), expected \(expected)")
                }
                let result = train(device: device, records: records[device], local: roundLocals[device], model: model,
                                   round: round, configuration: configuration)
                var squared: Double = 0
                for v in result.update { squared += Double(v) * Double(v) }
                // Device noise and rounding from the in-process stream (seed, 2, round, device);
                // the idempotency key from its own stream.
                var rng = SeededGenerator(seed: Simulation.derivedSeed(configuration.seed, 2, round, device))
                var keyRNG = SeededGenerator(seed: Simulation.derivedSeed(configuration.seed, 6, round, device))
                let sealed: SealedUpdate
                do throws(PrivacyError) {
                    var accumulator = try UpdateAccumulator<Float>(privatizer: privatizer)
                    try accumulator.add([result.update], using: &rng)
                    sealed = try accumulator.seal(modelVersion: model.version, samplingRate: q,
                                                  idempotencyKey: IdempotencyKey(using: &keyRNG), using: &rng)
                } catch {
                    throw .privacy("round \(round), device \(device): \(error.message)")
                }
                let outcome = await uploader.upload(sealed.payload, idempotencyKey: sealed.idempotencyKey,
                                                    deviceCredential: link.credential)
                switch outcome {
                case .accepted:
                    break
                case .duplicate:
                    throw .aggregation("round \(round), device \(device): the aggregator had already counted this update's key")
                case .retryLater:
                    throw .transport("round \(round), device \(device): the aggregator asked to retry later (see its log)")
                case .rejected(let status, let reason):
                    let hint = reason.hasPrefix("stale_model_version")
                        ? " (the aggregator published before the round's last upload: raise --round-deadline above a round's training time)" : ""
                    throw .aggregation("round \(round), device \(device): upload refused (\(status) \(reason))\(hint)")
                }
                return DeviceRound(device: device, local: result.local, updateNorm: squared.squareRoot(),
                                   saturated: sealed.summary.saturatedCoordinates, etag: etag, downloaded: downloaded)
            }
            for device in participants {
                guard let result = results[device] else { continue }
                locals[device] = result.local
                etags[device] = result.etag
                norms.append(result.updateNorm)
                if result.updateNorm > configuration.clipNorm { clipped += 1 }
                saturated += result.saturated
                if result.downloaded { downloads += 1 }
            }
            deviceRounds += participants.count
            if !participants.isEmpty {
                version = try await Simulation.waitForVersion(after: version, plans: plans, credential: links[0].credential,
                                                              seconds: (options.roundDeadlineSeconds ?? 0) + 60, logPath: aggregator.log)
                published += 1
            }
            progress(round)
        }

        // The final model, fetched and verified like any device's, and what the server reports.
        let evaluatorDirectory = work + "/evaluator"
        let finalModel: Model
        do {
            try makeDirectories(evaluatorDirectory)
            let fetcher = try ModelFetcher(baseURL: base, directory: evaluatorDirectory, publicKey: publicKey, client: client, logger: logger)
            guard case .downloaded(let package) = try await fetcher.fetch(currentETag: nil, deviceCredential: links[0].credential) else {
                throw SimulationError.transport("GET /v1/model without an ETag answered 304")
            }
            finalModel = package.model
        } catch let error as SimulationError {
            throw error
        } catch {
            throw .transport("final model fetch failed: \(error)")
        }
        guard finalModel.version == version else {
            throw .transport("the final model is version \(finalModel.version), expected \(version)")
        }
        let ledger = try await Simulation.getJSON(base + "/v1/privacy", credential: links[0].credential, client: client)
        let metrics = try await Simulation.getText(base + "/metrics", client: client)
        guard let object = ledger.objectValue, let epsilon = object["epsilon_spent"].flatMap(Simulation.number),
              let versions = object["data_versions"].flatMap(Simulation.number) else {
            throw .transport("GET /v1/privacy lacks epsilon_spent or data_versions")
        }
        var updatesInVersions = 0
        var noise: [Double] = []
        for entry in object["versions"]?.arrayValue ?? [] where entry.objectValue?["origin"]?.stringValue == "fedbuff" {
            updatesInVersions += Int(entry.objectValue?["updates"].flatMap(Simulation.number) ?? 0)
            noise.append(entry.objectValue?["noise_sd"].flatMap(Simulation.number) ?? .nan)
        }
        norms.sort()
        let outcome = FederatedOutcome(parameters: finalModel.parameters, locals: locals, noiseMultiplier: z,
                                       achievedEpsilon: try Simulation.achievedEpsilon(for: configuration, noiseMultiplier: z),
                                       deviceRounds: deviceRounds, publishedVersions: published, saturatedCoordinates: saturated,
                                       clippedUploads: clipped, medianUpdateNorm: norms.isEmpty ? 0 : norms[norms.count / 2])
        return OverHTTPOutcome(federated: outcome, aggregatorEpsilon: epsilon, aggregatorVersions: Int(versions),
                               acceptedUpdates: Int(Simulation.metric("hearth_updates_accepted_total", in: metrics)),
                               rejectedUpdates: Int(Simulation.metric("hearth_updates_rejected_total", in: metrics)),
                               updatesInVersions: updatesInVersions, noiseStandardDeviations: noise, finalVersion: finalModel.version,
                               modelDownloads: downloads, setupSeconds: setupSeconds)
    }

    /// Runs `body` for every index, at most `width` at a time; the results by index.
    static func concurrently<T: Sendable>(_ indices: [Int], width: Int,
                                          _ body: @escaping @Sendable (Int) async throws(SimulationError) -> T) async throws(SimulationError) -> [Int: T] {
        do {
            return try await withThrowingTaskGroup(of: (Int, T).self) { group in
                var results: [Int: T] = [:]
                var next = 0
                while next < min(width, indices.count) {
                    let index = indices[next]
                    group.addTask { (index, try await body(index)) }
                    next += 1
                }
                while let (index, value) = try await group.next() {
                    results[index] = value
                    if next < indices.count {
                        let index = indices[next]
                        group.addTask { (index, try await body(index)) }
                        next += 1
                    }
                }
                return results
            }
        } catch let error as SimulationError {
            throw error
        } catch {
            throw .transport("\(error)")
        }
    }

    /// Polls the plan until the aggregator serves a version after `version`; the new version.
    static func waitForVersion(after version: UInt64, plans: PlanClient, credential: String, seconds: Double,
                               logPath: String) async throws(SimulationError) -> UInt64 {
        let clock = ContinuousClock()
        let deadline = clock.now + .milliseconds(Int64(seconds * 1000))
        while clock.now < deadline {
            if let plan = await plans.fetch(credential: credential), plan.modelVersion > version {
                guard plan.modelVersion == version + 1 else {
                    throw .aggregation("the aggregator published version \(plan.modelVersion) after \(version): more than one version in a round")
                }
                return plan.modelVersion
            }
            try? await Task.sleep(for: .milliseconds(10))
        }
        throw .transport("the aggregator did not publish a version after \(version) within \(Int(seconds)) s; see \(logPath)")
    }

    static func getJSON(_ url: String, credential: String, client: CurlClient) async throws(SimulationError) -> JSONValue {
        let response: HTTPResponse
        do {
            response = try await client.perform(HTTPRequest(method: .get, url: url,
                                                            headers: [HTTPField("Authorization", "Bearer " + credential)]))
        } catch {
            throw .transport("GET \(url): \(error.message)")
        }
        guard response.status == 200, let json = try? JSONParser().parse(response.body) else {
            throw .transport("GET \(url) answered \(response.status)")
        }
        return json
    }

    static func getText(_ url: String, client: CurlClient) async throws(SimulationError) -> String {
        do {
            let response = try await client.perform(HTTPRequest(method: .get, url: url, maxResponseBytes: 1 << 20))
            guard response.status == 200 else { throw SimulationError.transport("GET \(url) answered \(response.status)") }
            return String(decoding: response.body, as: UTF8.self)
        } catch let error as SimulationError {
            throw error
        } catch {
            throw .transport("GET \(url): \(error)")
        }
    }

    static func number(_ value: JSONValue) -> Double? {
        switch value {
        case .integer(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }

    /// The sum over every series of the Prometheus metric `name` (labels or not).
    static func metric(_ name: String, in text: String) -> Double {
        var total = 0.0
        for line in text.split(separator: "\n") where line.hasPrefix(name) {
            let rest = line.dropFirst(name.count)
            guard rest.first == " " || rest.first == "{", let value = rest.split(separator: " ").last.flatMap({ Double($0) }) else { continue }
            total += value
        }
        return total
    }
}

/// Creates `path` and its missing parents (mode 0700).
func makeDirectories(_ path: String) throws(SimulationError) {
    var current = path.hasPrefix("/") ? "" : "."
    for component in path.split(separator: "/") {
        current += "/" + component
        if mkdir(current, 0o700) != 0 && errno != EEXIST {
            throw .transport("cannot create \(current): \(String(cString: strerror(errno)))")
        }
    }
}
