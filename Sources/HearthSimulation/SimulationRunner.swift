import HearthCore

/// Runs configurations and baselines on one split and turns them into `ConfigurationRecord`s,
/// timing each with the monotonic clock.
public struct SimulationRunner: Sendable {
    /// The federation.
    public let simulation: Simulation
    /// Evaluation settings (same negatives for every configuration).
    public var evaluator: RankingEvaluator
    /// The test and validation questions.
    public let testCases: [EvaluationCase]
    public let validationCases: [EvaluationCase]

    public init(data: SimulationData, evaluator: RankingEvaluator = RankingEvaluator()) {
        self.simulation = Simulation(data: data)
        self.evaluator = evaluator
        self.testCases = EvaluationCase.test(data.split)
        self.validationCases = EvaluationCase.validation(data.split)
    }

    private var data: SimulationData { simulation.data }

    static func seconds(since start: ContinuousClock.Instant) -> Double {
        let elapsed = ContinuousClock.now - start
        return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
    }

    /// The popularity baseline.
    public func popularity(_ configuration: SimulationConfiguration) -> ConfigurationRecord {
        let start = ContinuousClock.now
        let test = simulation.evaluatePopularity(cases: testCases, evaluator: evaluator)
        let validation = simulation.evaluatePopularity(cases: validationCases, evaluator: evaluator)
        return ConfigurationRecord(name: "popularity", mode: "none", epsilon: .infinity, delta: configuration.delta,
                                   noiseMultiplier: 0, achievedEpsilon: .infinity, samplingRate: 1, clipNorm: 0, rounds: 0,
                                   devices: data.devices.count, deviceRounds: 0, seconds: SimulationRunner.seconds(since: start),
                                   test: test, validation: validation)
    }

    /// The same model trained centrally without privacy (`rounds` in the record = epochs).
    public func centralised(_ configuration: SimulationConfiguration) -> ConfigurationRecord {
        let start = ContinuousClock.now
        let (parameters, locals) = simulation.runCentral(configuration)
        let local: (Int) -> [Float] = { user in user < locals.count ? locals[user] : [] }
        let historyLength = configuration.training.historyLength
        let test = simulation.evaluate(parameters: parameters, cases: testCases, evaluator: evaluator, historyLength: historyLength, local: local)
        let validation = simulation.evaluate(parameters: parameters, cases: validationCases, evaluator: evaluator,
                                             historyLength: historyLength, local: local)
        return ConfigurationRecord(name: "centralised", mode: "none", epsilon: .infinity, delta: configuration.delta,
                                   noiseMultiplier: 0, achievedEpsilon: .infinity, samplingRate: 1, clipNorm: 0,
                                   rounds: configuration.centralEpochs, devices: 1, deviceRounds: 0,
                                   seconds: SimulationRunner.seconds(since: start), test: test, validation: validation)
    }

    /// One federated configuration (`name` defaults to `federated`, or `federated-no-noise` for mode none / ε = ∞).
    public func federated(_ configuration: SimulationConfiguration, name: String? = nil,
                          progress: (Int) -> Void = { _ in }) throws(SimulationError) -> ConfigurationRecord {
        let start = ContinuousClock.now
        let outcome = try simulation.runFederated(configuration, progress: progress)
        return record(outcome, configuration, name: name, start: start)
    }

    /// One federated configuration against a real aggregator process (`Simulation.runOverHTTP`),
    /// evaluated like `federated` on the final model the aggregator published; `transport` is
    /// `http` and `server` holds what the aggregator reported. `seconds` includes starting it.
    public func federatedOverHTTP(_ configuration: SimulationConfiguration, options: OverHTTPOptions, name: String? = nil,
                                  progress: @Sendable (Int) -> Void = { _ in }) async throws(SimulationError) -> ConfigurationRecord {
        let start = ContinuousClock.now
        let outcome = try await simulation.runOverHTTP(configuration, options: options, progress: progress)
        var result = record(outcome.federated, configuration, name: name, start: start)
        result.transport = "http"
        result.server = ServerFigures(epsilon: outcome.aggregatorEpsilon, versions: outcome.aggregatorVersions,
                                      acceptedUpdates: outcome.acceptedUpdates, rejectedUpdates: outcome.rejectedUpdates,
                                      modelDownloads: outcome.modelDownloads, setupSeconds: outcome.setupSeconds)
        return result
    }

    /// The record of a federated outcome, evaluated on the test and validation targets.
    private func record(_ outcome: FederatedOutcome, _ configuration: SimulationConfiguration, name: String?,
                        start: ContinuousClock.Instant) -> ConfigurationRecord {
        let deviceOfUser = data.deviceOfUser
        let local: (Int) -> [Float] = { user in outcome.locals[deviceOfUser[user]] }
        let historyLength = configuration.training.historyLength
        let test = simulation.evaluate(parameters: outcome.parameters, cases: testCases, evaluator: evaluator,
                                       historyLength: historyLength, local: local)
        let validation = simulation.evaluate(parameters: outcome.parameters, cases: validationCases, evaluator: evaluator,
                                             historyLength: historyLength, local: local)
        let mode = configuration.effectiveMode
        var record = ConfigurationRecord(name: name ?? (mode == .none ? "federated-no-noise" : "federated"), mode: mode.rawValue,
                                   epsilon: mode == .none ? .infinity : configuration.epsilon, delta: configuration.delta,
                                   noiseMultiplier: outcome.noiseMultiplier, achievedEpsilon: outcome.achievedEpsilon,
                                   samplingRate: configuration.effectiveSamplingRate, clipNorm: mode == .none ? 0 : configuration.clipNorm,
                                   rounds: outcome.publishedVersions, devices: data.devices.count,
                                   deviceRounds: outcome.deviceRounds, seconds: SimulationRunner.seconds(since: start),
                                   test: test, validation: validation)
        record.medianUpdateNorm = outcome.medianUpdateNorm
        if mode != .none, outcome.deviceRounds > 0 {
            record.clippedFraction = Double(outcome.clippedUploads) / Double(outcome.deviceRounds)
        }
        return record
    }

    /// The requested configuration plus the baselines (popularity, centralised, federated without
    /// noise), all on the same split. With `baselines: false` only the configuration.
    public func run(_ configuration: SimulationConfiguration, baselines: Bool = true,
                    report: (ConfigurationRecord) -> Void = { _ in }) throws(SimulationError) -> [ConfigurationRecord] {
        var out: [ConfigurationRecord] = []
        let first = try federated(configuration)
        out.append(first)
        report(first)
        if baselines { out += try self.baselines(configuration, report: report) }
        return out
    }

    /// `run` with the requested configuration over HTTP (`federatedOverHTTP`); the baselines
    /// run in process as in `run`.
    public func runOverHTTP(_ configuration: SimulationConfiguration, options: OverHTTPOptions, baselines: Bool = true,
                            report: (ConfigurationRecord) -> Void = { _ in }) async throws(SimulationError) -> [ConfigurationRecord] {
        var out: [ConfigurationRecord] = []
        let first = try await federatedOverHTTP(configuration, options: options)
        out.append(first)
        report(first)
        if baselines { out += try self.baselines(configuration, report: report) }
        return out
    }

    /// Popularity, centralised and (for a private configuration) federated without noise.
    private func baselines(_ configuration: SimulationConfiguration,
                           report: (ConfigurationRecord) -> Void) throws(SimulationError) -> [ConfigurationRecord] {
        var out: [ConfigurationRecord] = []
        func add(_ r: ConfigurationRecord) { out.append(r); report(r) }
        add(popularity(configuration))
        add(centralised(configuration))
        if configuration.effectiveMode != .none {
            var plain = configuration
            plain.mode = .none
            add(try federated(plain))
        }
        return out
    }

    /// The ε sweep: baselines, federated without noise (ε = ∞), then every finite ε in each mode.
    public func sweep(_ configuration: SimulationConfiguration, epsilons: [Double], modes: [SimulationMode],
                      report: (ConfigurationRecord) -> Void = { _ in }) throws(SimulationError) -> [ConfigurationRecord] {
        var out: [ConfigurationRecord] = []
        func add(_ r: ConfigurationRecord) { out.append(r); report(r) }
        add(popularity(configuration))
        add(centralised(configuration))
        var plain = configuration
        plain.mode = .none
        add(try federated(plain))
        for mode in modes where mode != .none {
            for epsilon in epsilons where epsilon.isFinite {
                var c = configuration
                c.mode = mode
                c.epsilon = epsilon
                add(try federated(c))
            }
        }
        return out
    }
}
