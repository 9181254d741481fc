import HearthAggregation
import HearthCore
import HearthPrivacy

/// Who adds noise in a simulated federation.
public enum SimulationMode: String, Sendable, CaseIterable {
    /// Federated averaging of the raw device updates: no clipping, no noise.
    case none
    /// Each device clips, rounds and adds discrete Gaussian noise before upload.
    case local
    /// Devices clip and round; the aggregator adds the noise once per published version.
    case central
}

/// Everything that defines one simulated configuration.
public struct SimulationConfiguration: Sendable, Equatable {
    /// Who adds noise.
    public var mode: SimulationMode
    /// Target ε (device-level, add/remove one device); `.infinity` means no noise (run as `none`).
    public var epsilon: Double
    /// Target δ.
    public var delta: Double
    /// Published model versions (one per round).
    public var rounds: Int
    /// q: each device flips its own coin per round and takes part with this probability.
    public var samplingRate: Double
    /// q in local mode, if different (local noise is costly to simulate; local ε does not depend
    /// on q, see `Simulation.noiseMultiplier(for:)`). Nil: `samplingRate`.
    public var localSamplingRate: Double? = nil
    /// L2 clip norm C of one device update (parameter units).
    public var clipNorm: Double
    /// Bits per uploaded coordinate.
    public var bitWidth: Int
    /// Embedding width.
    public var dimension: Int
    /// Passes over its own events a device makes per round.
    public var localEpochs: Int
    /// The agent's training hyper-parameters (also used by the centralised baseline).
    public var training: TrainingConfiguration
    /// Step along the mean participating update: the FedBuff η is this over q (with K = devices).
    public var serverLearningRate: Double
    /// Epochs of the centralised non-private baseline.
    public var centralEpochs: Int
    /// Seed for initialisation, training, sampling and (simulated) noise.
    public var seed: UInt64
    /// Initial embeddings are uniform in ±initScale.
    public var initScale: Float

    public init(mode: SimulationMode = .central, epsilon: Double = 8, delta: Double = 1e-5, rounds: Int = 20,
                samplingRate: Double = 1, clipNorm: Double = 1, bitWidth: Int = 16, dimension: Int = 32,
                localEpochs: Int = 1, training: TrainingConfiguration = TrainingConfiguration(),
                serverLearningRate: Double = 1, centralEpochs: Int = 10, seed: UInt64 = 1, initScale: Float = 0.1) {
        self.mode = mode
        self.epsilon = epsilon
        self.delta = delta
        self.rounds = rounds
        self.samplingRate = samplingRate
        self.clipNorm = clipNorm
        self.bitWidth = bitWidth
        self.dimension = dimension
        self.localEpochs = localEpochs
        self.training = training
        self.serverLearningRate = serverLearningRate
        self.centralEpochs = centralEpochs
        self.seed = seed
        self.initScale = initScale
    }

    /// The mode actually run: `none` when ε is infinite.
    public var effectiveMode: SimulationMode { epsilon.isInfinite ? .none : mode }

    /// The sampling rate of the mode run.
    public var effectiveSamplingRate: Double { effectiveMode == .local ? (localSamplingRate ?? samplingRate) : samplingRate }

    /// Checks the ranges.
    public func validate() throws(SimulationError) {
        guard rounds >= 1 else { throw .invalidArgument("rounds must be >= 1, got \(rounds)") }
        for q in [samplingRate, localSamplingRate ?? samplingRate] {
            guard q.isFinite, q > 0, q <= 1 else { throw .invalidArgument("sampling rate must be in (0, 1], got \(q)") }
        }
        guard epsilon > 0, !epsilon.isNaN else { throw .invalidArgument("epsilon must be > 0 (or inf), got \(epsilon)") }
        guard delta.isFinite, delta > 0, delta < 1 else { throw .invalidArgument("delta must be in (0, 1), got \(delta)") }
        guard clipNorm.isFinite, clipNorm > 0 else { throw .invalidArgument("clip norm must be > 0, got \(clipNorm)") }
        guard dimension >= 1 else { throw .invalidArgument("dimension must be >= 1, got \(dimension)") }
        guard localEpochs >= 1, centralEpochs >= 1 else { throw .invalidArgument("epochs must be >= 1") }
        guard serverLearningRate.isFinite, serverLearningRate > 0 else {
            throw .invalidArgument("server learning rate must be > 0, got \(serverLearningRate)")
        }
    }
}

/// What a federated run produced.
public struct FederatedOutcome: Sendable {
    /// The final global parameters.
    public var parameters: GlobalParameters
    /// Per device, its local embedding (never uploaded).
    public var locals: [[Float]]
    /// z used (0 without noise).
    public var noiseMultiplier: Double
    /// ε the accountant gives for the rounds run at z and q (∞ without noise).
    public var achievedEpsilon: Double
    /// Device updates trained (and uploaded) over the run.
    public var deviceRounds: Int
    /// Published versions.
    public var publishedVersions: Int
    /// Coordinates saturated at the bit width, over all uploads.
    public var saturatedCoordinates: Int
    /// Uploads whose L2 norm exceeded C before clipping, and the median norm before clipping.
    public var clippedUploads: Int
    public var medianUpdateNorm: Double
}

/// The in-process federation: virtual devices running the agent's trainer and privacy engine,
/// and the aggregator's validation and FedBuff on their encoded uploads.
public struct Simulation: Sendable {
    /// The split data and devices.
    public let data: SimulationData

    public init(data: SimulationData) { self.data = data }

    /// The noise multiplier for a configuration, by the accountant (RDP):
    /// - central: Poisson-subsampled Gaussian at q over `rounds` published versions (the release);
    /// - local: each upload is seen by the aggregator, which knows who took part, so no
    ///   amplification: q = 1 over `rounds` uploads (the most one device can make);
    /// - none, or ε = ∞: 0.
    public static func noiseMultiplier(for configuration: SimulationConfiguration) throws(SimulationError) -> Double {
        try configuration.validate()
        switch configuration.effectiveMode {
        case .none: return 0
        case .central, .local:
            let q = configuration.effectiveMode == .central ? configuration.samplingRate : 1
            do {
                return try PrivacyAccounting.noiseMultiplier(epsilon: configuration.epsilon, delta: configuration.delta,
                                                             samplingRate: q, steps: configuration.rounds)
            } catch {
                throw .privacy("calibration failed for ε = \(configuration.epsilon), δ = \(configuration.delta), q = \(q), T = \(configuration.rounds): \(error.message)")
            }
        }
    }

    /// ε at δ for `z` over the run (central: via the aggregator's `CentralAccounting`; local: q = 1).
    public static func achievedEpsilon(for configuration: SimulationConfiguration, noiseMultiplier z: Double) throws(SimulationError) -> Double {
        switch configuration.effectiveMode {
        case .none: return .infinity
        case .central:
            do {
                return try CentralAccounting.epsilon(versions: configuration.rounds, plan: plan(configuration, noiseMultiplier: z, devices: 1),
                                                     delta: configuration.delta)
            } catch {
                throw .aggregation(error.message)
            }
        case .local:
            do {
                return try PrivacyAccounting.epsilon(noiseMultiplier: z, samplingRate: 1, steps: configuration.rounds, delta: configuration.delta)
            } catch {
                throw .privacy(error.message)
            }
        }
    }

    /// The aggregator's plan for a configuration.
    static func plan(_ configuration: SimulationConfiguration, noiseMultiplier z: Double, devices: Int) -> FederationPlan {
        FederationPlan(modelVersion: 0, samplingRate: configuration.effectiveSamplingRate, clipNorm: configuration.clipNorm,
                       noiseMultiplier: z, mode: configuration.effectiveMode == .local ? .local : .central, unit: .device,
                       maxSessionsPerUpdate: 1, bitWidth: configuration.bitWidth, headroom: 4, maxStaleness: 0)
    }

    /// The initial global parameters for a seed (shared by every configuration of a run).
    public func initialParameters(_ configuration: SimulationConfiguration) -> GlobalParameters {
        var rng = Xoshiro256(seed: configuration.seed)
        return GlobalParameters(itemCount: data.catalog.count, dimension: configuration.dimension,
                                scale: configuration.initScale, using: &rng)
    }

    /// A deterministic seed for (seed, stream, a, b).
    static func derivedSeed(_ seed: UInt64, _ stream: UInt64, _ a: Int, _ b: Int = 0) -> UInt64 {
        var mixer = SplitMix64(seed: seed ^ (stream &* 0x9E37_79B9_7F4A_7C15))
        var x = mixer.next()
        x ^= UInt64(truncatingIfNeeded: a) &* 0xBF58_476D_1CE4_E5B9
        x ^= UInt64(truncatingIfNeeded: b) &* 0x94D0_49BB_1331_11EB
        var finisher = SplitMix64(seed: x)
        return finisher.next()
    }

    /// One device's training round from `model` with its own records and local embedding
    /// (`DeviceTraining.run`, the agent's trainer). Deterministic for (seed, round, device).
    public func train(device: Int, records: [EventRecord], local: [Float], model: Model, round: Int,
                      configuration: SimulationConfiguration) -> DeviceTraining.Result {
        var rng = Xoshiro256(seed: Simulation.derivedSeed(configuration.seed, 1, round, device))
        let training = DeviceTraining(trainer: Trainer(configuration: configuration.training), epochs: configuration.localEpochs)
        return training.run(model: model, records: records, local: local, using: &rng)
    }

    /// A device's upload for `update`: clip, round and (local mode) noise with `UpdatePrivatizer`,
    /// then the wire envelope. Deterministic for (seed, round, device) (simulated noise only).
    public static func upload(update: [Float], privatizer: UpdatePrivatizer, samplingRate: Double, modelVersion: UInt64,
                              seed: UInt64, round: Int, device: Int) throws(SimulationError) -> (bytes: [UInt8], update: PrivatizedUpdate) {
        var rng = SeededGenerator(seed: derivedSeed(seed, 2, round, device))
        do {
            let privatized = try privatizer.privatize(update: update, using: &rng)
            let envelope = UpdateEnvelope(update: privatized, configuration: privatizer.configuration, modelVersion: modelVersion,
                                          samplingRate: samplingRate, idempotencyKey: IdempotencyKey(using: &rng))
            return (try envelope.encode(), privatized)
        } catch {
            throw .privacy("device \(device), round \(round): \(error.message)")
        }
    }

    /// Runs the federation for `configuration.rounds` rounds.
    ///
    /// Per round: every device flips its own participation coin (q); each participant trains
    /// from the current version on its own records and local embedding; in `local`/`central` mode
    /// it privatizes its update (`UpdatePrivatizer`), encodes it (`UpdateEnvelope`), and the
    /// aggregator validates it (`UpdateValidator`) and folds it (`FedBuffAggregator`); at the end
    /// of the round the aggregator publishes one version (central noise in central mode) with
    /// the fixed denominator K = number of devices and η = serverLearningRate / q. In `none`
    /// mode the raw float updates are averaged the same way (K = devices, η / q), unclipped.
    public func runFederated(_ configuration: SimulationConfiguration,
                             progress: (Int) -> Void = { _ in }) throws(SimulationError) -> FederatedOutcome {
        try configuration.validate()
        let z = try Simulation.noiseMultiplier(for: configuration)
        let mode = configuration.effectiveMode
        let deviceCount = data.devices.count
        guard deviceCount > 0 else { throw .invalidArgument("no devices") }
        var records: [[EventRecord]] = []
        for device in 0 ..< deviceCount { records.append(try data.records(ofDevice: device)) }
        var parameters = initialParameters(configuration)
        var locals = [[Float]](repeating: [Float](repeating: 0, count: configuration.dimension), count: deviceCount)
        let d = parameters.parameterCount
        let coin: ParticipationCoin
        let q = configuration.effectiveSamplingRate
        do { coin = try ParticipationCoin(samplingRate: q) } catch { throw .privacy(error.message) }

        var aggregator: FedBuffAggregator? = nil
        var privatizer: UpdatePrivatizer? = nil
        if mode != .none {
            let plan = Simulation.plan(configuration, noiseMultiplier: z, devices: deviceCount)
            let fedBuff = FedBuffConfiguration(bufferSize: deviceCount, minimumUpdates: 1,
                                               serverLearningRate: configuration.serverLearningRate / q,
                                               optimizer: .fedAvg, stalenessExponent: 0)
            do {
                aggregator = try FedBuffAggregator(parameters: parameters, configuration: fedBuff, plan: plan)
            } catch {
                throw .aggregation(error.message)
            }
            do {
                privatizer = try UpdatePrivatizer(configuration: plan.privacyConfiguration, dimension: d)
            } catch {
                throw .privacy(error.message)
            }
        }
        var deviceRounds = 0
        var published = 0
        var saturated = 0
        var clipped = 0
        var norms: [Double] = []
        for round in 0 ..< configuration.rounds {
            let version = aggregator?.plan.modelVersion ?? UInt64(published)
            let model: Model
            do {
                model = try Model(version: version, catalog: data.catalog, parameters: aggregator?.parameters ?? parameters)
            } catch {
                throw .invalidArgument("model: \(error)")
            }
            var coinRNG = Xoshiro256(seed: Simulation.derivedSeed(configuration.seed, 3, round))
            var plainSum = mode == .none ? [Double](repeating: 0, count: d) : []
            var participants = 0
            for device in 0 ..< deviceCount {
                guard coin.flip(using: &coinRNG) else { continue }
                let result = train(device: device, records: records[device], local: locals[device], model: model,
                                   round: round, configuration: configuration)
                locals[device] = result.local
                participants += 1
                var squared: Double = 0
                for v in result.update { squared += Double(v) * Double(v) }
                let norm = squared.squareRoot()
                norms.append(norm)
                if norm > configuration.clipNorm { clipped += 1 }
                if mode == .none {
                    for i in 0 ..< d { plainSum[i] += Double(result.update[i]) }
                    continue
                }
                guard let currentPrivatizer = privatizer, var currentAggregator = aggregator else { continue }
                let (bytes, privatized) = try Simulation.upload(update: result.update, privatizer: currentPrivatizer,
                                                                samplingRate: q,
                                                                modelVersion: version, seed: configuration.seed,
                                                                round: round, device: device)
                saturated += privatized.saturatedCoordinates
                aggregator = nil  // unique ownership while folding in place
                do {
                    let validated = try UpdateValidator.validate(bytes, plan: currentAggregator.plan,
                                                                 currentVersion: currentAggregator.plan.modelVersion, dimension: d)
                    try currentAggregator.fold(bytes, validated)
                } catch {
                    throw .aggregation("device \(device), round \(round): \(error.message)")
                }
                aggregator = currentAggregator
            }
            deviceRounds += participants
            if participants > 0 {
                if mode == .none {
                    let step = configuration.serverLearningRate / (q * Double(deviceCount))
                    let embeddingCount = parameters.embeddings.count
                    for i in 0 ..< embeddingCount { parameters.embeddings[i] = Float(Double(parameters.embeddings[i]) + step * plainSum[i]) }
                    for i in 0 ..< parameters.bias.count {
                        parameters.bias[i] = Float(Double(parameters.bias[i]) + step * plainSum[embeddingCount + i])
                    }
                } else if var currentAggregator = aggregator {
                    aggregator = nil
                    var noiseRNG = SeededGenerator(seed: Simulation.derivedSeed(configuration.seed, 4, round))
                    do {
                        _ = try currentAggregator.publish(using: &noiseRNG)
                    } catch {
                        throw .aggregation("round \(round): \(error.message)")
                    }
                    aggregator = currentAggregator
                }
                published += 1
            }
            progress(round)
        }
        if let aggregator { parameters = aggregator.parameters }
        norms.sort()
        return FederatedOutcome(parameters: parameters, locals: locals, noiseMultiplier: z,
                                achievedEpsilon: try Simulation.achievedEpsilon(for: configuration, noiseMultiplier: z),
                                deviceRounds: deviceRounds, publishedVersions: published, saturatedCoordinates: saturated,
                                clippedUploads: clipped, medianUpdateNorm: norms.isEmpty ? 0 : norms[norms.count / 2])
    }

    /// The same model trained centrally without privacy: `Trainer.train(sequences:)` over every
    /// user's training prefix for `centralEpochs`, from the same initial parameters. Returns the
    /// parameters and one local embedding per user.
    public func runCentral(_ configuration: SimulationConfiguration) -> (parameters: GlobalParameters, locals: [[Float]]) {
        var parameters = initialParameters(configuration)
        var locals: [[Float]] = []
        var rng = Xoshiro256(seed: Simulation.derivedSeed(configuration.seed, 5, 0))
        Trainer(configuration: configuration.training).train(sequences: data.split.training, parameters: &parameters,
                                                             locals: &locals, epochs: configuration.centralEpochs, using: &rng)
        return (parameters, locals)
    }

    /// Metrics of a model on `cases`, each user's query built with `local(user)`.
    public func evaluate(parameters: GlobalParameters, cases: [EvaluationCase], evaluator: RankingEvaluator = RankingEvaluator(),
                         historyLength: Int = 20, local: (Int) -> [Float]) -> RankingResult {
        evaluator.evaluate(cases: cases, itemCount: parameters.itemCount) { question in
            RankingEvaluator.modelScores(parameters: parameters, local: local(question.user), history: question.history,
                                         historyLength: historyLength)
        }
    }

    /// Metrics of the popularity baseline (training-event counts) on `cases`.
    public func evaluatePopularity(cases: [EvaluationCase], evaluator: RankingEvaluator = RankingEvaluator()) -> RankingResult {
        let scores = RankingEvaluator.popularityScores(itemCount: data.catalog.count, training: data.split.training)
        return evaluator.evaluate(cases: cases, itemCount: data.catalog.count) { _ in scores }
    }
}
