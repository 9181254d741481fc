import Foundation
import HearthAggregation
import HearthCore
import HearthDatasets
import HearthPrivacy
import HearthProcess
import Logging
import Testing
@testable import HearthSimulation

/// `hearth-sim --over-http`: the federation against the built `hearth-aggregator` on loopback,
/// every virtual device going through the agent's plan, model and upload code (libcurl).
@Suite("Simulation over HTTP", .serialized)
struct OverHTTPTests {
    /// 40 shoppers (40 devices), 40 items, 12 events each.
    static func data() throws -> SimulationData {
        try SimulationData(dataset: SyntheticShop.dataset(users: 40, itemsPerAisle: 5, eventsPerUser: 12, seed: 4))
    }

    static func configuration(mode: SimulationMode, epsilon: Double = 8, rounds: Int, samplingRate: Double = 1) -> SimulationConfiguration {
        SimulationConfiguration(mode: mode, epsilon: epsilon, delta: 1e-5, rounds: rounds, samplingRate: samplingRate, clipNorm: 0.5,
                                bitWidth: 16, dimension: 8, localEpochs: 1, serverLearningRate: 5, centralEpochs: 2, seed: 13)
    }

    static func options() throws -> OverHTTPOptions {
        var logger = Logger(label: "hearth.sim.test")
        logger.logLevel = .warning
        return OverHTTPOptions(aggregatorBinary: try builtExecutable("hearth-aggregator"), logger: logger)
    }

    @Test("local mode: the published model is the in-process run's bit for bit; the aggregator counts every device-round")
    func localModeMatchesInProcess() async throws {
        let simulation = Simulation(data: try Self.data())
        let configuration = Self.configuration(mode: .local, rounds: 3)
        let inProcess = try simulation.runFederated(configuration)
        let http = try await simulation.runOverHTTP(configuration, options: Self.options())

        #expect(inProcess.deviceRounds == 40 * 3)  // q = 1: every device in every round
        #expect(http.federated.deviceRounds == inProcess.deviceRounds)
        // The server published one version per round on top of version 1, from every upload.
        #expect(http.finalVersion == 4)
        #expect(http.aggregatorVersions == 3)
        #expect(http.federated.publishedVersions == 3)
        #expect(http.acceptedUpdates == inProcess.deviceRounds)
        #expect(http.updatesInVersions == inProcess.deviceRounds)
        #expect(http.rejectedUpdates == 0)
        #expect(http.modelDownloads == inProcess.deviceRounds)
        // Local mode: no server noise, integer sums: the same parameters and local embeddings.
        #expect(http.federated.parameters == inProcess.parameters)
        #expect(http.federated.locals == inProcess.locals)
        #expect(http.federated.parameters != simulation.initialParameters(configuration))
        #expect(http.noiseStandardDeviations == [0, 0, 0])
        // The aggregator's ledger says what the simulator's accountant says (q = 1).
        let z = try Simulation.noiseMultiplier(for: configuration)
        #expect(http.aggregatorEpsilon == (try Simulation.achievedEpsilon(for: configuration, noiseMultiplier: z)))
        #expect(http.aggregatorEpsilon <= 8 && http.aggregatorEpsilon > 7.9)
        #expect(http.federated.medianUpdateNorm == inProcess.medianUpdateNorm)
    }

    @Test("central mode: the runner's record says http, its metrics are in [0, 1], and ε, versions and counts match the aggregator's")
    func centralModeRecord() async throws {
        let runner = SimulationRunner(data: try Self.data())
        let configuration = Self.configuration(mode: .central, epsilon: 4, rounds: 2)
        let records = try await runner.runOverHTTP(configuration, options: Self.options(), baselines: false)
        #expect(records.count == 1)
        let record = try #require(records.first)
        let server = try #require(record.server)
        #expect(record.transport == "http")
        #expect(record.mode == "central")
        #expect(record.rounds == 2)
        #expect(record.deviceRounds == 80)
        #expect(server.versions == 2)
        #expect(server.acceptedUpdates == record.deviceRounds)
        #expect(server.rejectedUpdates == 0)
        #expect(server.epsilon == record.achievedEpsilon)
        #expect(server.epsilon <= 4 && server.epsilon > 3.9)
        for value in [record.test.hitRate, record.test.ndcg, record.test.sampledHitRate, record.test.coverage,
                      record.validation.hitRate, record.validation.ndcg] {
            #expect(value >= 0 && value <= 1)
        }
        let object = try #require(try JSONSerialization.jsonObject(with: Data(record.json().utf8)) as? [String: Any])
        #expect(object["transport"] as? String == "http")
        // Foundation's JSON reader may be one ulp off the shortest round-trip text.
        let printed = try #require(object["aggregator_epsilon"] as? Double)
        #expect(abs(printed - server.epsilon) <= 1e-15 * server.epsilon)
        #expect(object["aggregator_accepted_updates"] as? Int == 80)
        for key in ["mode", "epsilon", "delta", "hr10", "ndcg10", "hr10_sampled100", "rounds", "devices", "seconds"] {
            #expect(object[key] != nil, "lacks \(key)")
        }
    }

    @Test("central mode: the published version differs from the in-process one by the two runs' central noise of σ = z·Δ only")
    func centralNoiseIsTheCalibratedOne() async throws {
        let simulation = Simulation(data: try Self.data())
        let configuration = Self.configuration(mode: .central, epsilon: 4, rounds: 1)
        let inProcess = try simulation.runFederated(configuration)
        let http = try await simulation.runOverHTTP(configuration, options: Self.options())
        let z = try Simulation.noiseMultiplier(for: configuration)
        let plan = Simulation.plan(configuration, noiseMultiplier: z, devices: 40)
        let grid = try UpdatePrivatizer(configuration: plan.privacyConfiguration, dimension: inProcess.parameters.parameterCount).grid
        // The server reports σ = z·Δ in grid units for its one version.
        #expect(http.noiseStandardDeviations.count == 1)
        let sigma = try #require(http.noiseStandardDeviations.first)
        #expect(abs(sigma / (z * grid.sensitivity) - 1) < 1e-3, "σ \(sigma) vs z·Δ \(z * grid.sensitivity)")
        // Same devices, coins and clipped updates; independent noise of σ in each run, so the
        // difference is noise of √2·η·σ/(K·scale) per coordinate, and nothing else.
        let a = inProcess.parameters.embeddings + inProcess.parameters.bias
        let b = http.federated.parameters.embeddings + http.federated.parameters.bias
        let squared = zip(a, b).reduce(0.0) { $0 + Double($1.0 - $1.1) * Double($1.0 - $1.1) }
        let measured = (squared / Double(a.count)).squareRoot()
        let expected = 2.0.squareRoot() * configuration.serverLearningRate * sigma / (40 * grid.scale)
        #expect(abs(measured / expected - 1) < 0.15, "difference std \(measured) vs \(expected) over \(a.count) coordinates")
        #expect(http.federated.locals == inProcess.locals)  // trained from the same version 1
    }

    @Test("q < 1: the aggregator publishes each round at its deadline, from the same participants as in process")
    func samplingBelowOneFollowsTheDeadline() async throws {
        let simulation = Simulation(data: try Self.data())
        let configuration = Self.configuration(mode: .local, rounds: 2, samplingRate: 0.5)
        let inProcess = try simulation.runFederated(configuration)
        var options = try Self.options()
        options.roundDeadlineSeconds = 5
        let http = try await simulation.runOverHTTP(configuration, options: options)
        #expect(inProcess.deviceRounds > 0 && inProcess.deviceRounds < 80)
        #expect(http.acceptedUpdates == inProcess.deviceRounds)
        #expect(http.aggregatorVersions == 2)
        #expect(http.federated.parameters == inProcess.parameters)
        // The aggregator's ledger counts amplification by sampling at q = 0.5; the simulator's
        // local-mode accountant does not (the aggregator sees who uploads): its ε is smaller.
        #expect(http.aggregatorEpsilon < http.federated.achievedEpsilon)
    }

    @Test("mode none, ε = ∞, q < 1 without a deadline and a plan the aggregator refuses: refused before any process starts")
    func refusals() async throws {
        let simulation = Simulation(data: try Self.data())
        var options = try Self.options()
        options.aggregatorBinary = "/nonexistent/hearth-aggregator"
        await #expect(throws: SimulationError.invalidArgument("")) {
            try await simulation.runOverHTTP(Self.configuration(mode: .none, rounds: 1), options: options)
        }
        await #expect(throws: SimulationError.invalidArgument("")) {
            try await simulation.runOverHTTP(Self.configuration(mode: .central, epsilon: .infinity, rounds: 1), options: options)
        }
        await #expect(throws: SimulationError.invalidArgument("")) {
            try await simulation.runOverHTTP(Self.configuration(mode: .local, rounds: 1, samplingRate: 0.5), options: options)
        }
        // A plan the aggregator's configuration refuses (η = 5 / 0.01 = 500 > 100) is refused
        // by its own validation, naming the key, before anything starts.
        var deadline = options
        deadline.roundDeadlineSeconds = 2
        do {
            _ = try await simulation.runOverHTTP(Self.configuration(mode: .local, rounds: 3, samplingRate: 0.01), options: deadline)
            Issue.record("a server step of 500 was accepted")
        } catch {
            #expect(error == .invalidArgument(""))
            #expect(error.message.contains("fedbuff.server_learning_rate"), "\(error.message)")
        }
        // A missing binary is a transport error, not a crash.
        await #expect(throws: SimulationError.transport("")) {
            try await simulation.runOverHTTP(Self.configuration(mode: .local, rounds: 1), options: options)
        }
    }
}
