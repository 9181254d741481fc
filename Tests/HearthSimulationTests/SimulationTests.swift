import Foundation
import HearthAggregation
import HearthCore
import HearthDatasets
import HearthPrivacy
import Testing
@testable import HearthSimulation
import HearthTestSupport

/// A tiny synthetic shop: 16 shoppers, 32 items, 12 events each.
private func tinyData(grouping: DeviceGrouping = .user) throws -> SimulationData {
    let dataset = SyntheticShop.dataset(users: 16, itemsPerAisle: 4, eventsPerUser: 12, seed: 3)
    return try SimulationData(dataset: dataset, grouping: grouping)
}

/// A small configuration for the tiny shop.
private func tinyConfiguration(mode: SimulationMode, epsilon: Double = 8, rounds: Int = 3, seed: UInt64 = 7) -> SimulationConfiguration {
    SimulationConfiguration(mode: mode, epsilon: epsilon, delta: 1e-5, rounds: rounds, samplingRate: 0.5, clipNorm: 0.5,
                            bitWidth: 16, dimension: 8, localEpochs: 1, serverLearningRate: 1, centralEpochs: 2, seed: seed)
}

/// A CSV table from text.
private func table(_ text: String) throws -> CSVTable {
    try CSVTable(bytes: Array(text.utf8), source: "test")
}

@Suite(.computeLane) struct SplitTests {
    @Test func splitIsChronologicalAndKeepsTheLastTwoEventsOut() throws {
        // Rows out of time order in the file: the split must follow the timestamps.
        let csv = """
        user_id,item_id,timestamp
        u1,d,400
        u1,a,100
        u1,e,500
        u1,b,200
        u1,c,300
        u2,c,50
        u2,a,10
        u2,b,20
        u3,a,5
        """
        let dataset = try InteractionDataset(table: try table(csv))
        let data = try SimulationData(dataset: dataset)
        let u1 = try #require(data.userIDs.firstIndex(of: "u1"))
        let u2 = try #require(data.userIDs.firstIndex(of: "u2"))
        let u3 = try #require(data.userIDs.firstIndex(of: "u3"))
        func ids(_ events: [Event]) -> [String] { events.map { data.catalog.ids[Int($0.item)] } }
        #expect(ids(data.devices[data.deviceOfUser[u1]].training) == ["a", "b", "c"])
        #expect(data.split.validation[u1].map { data.catalog.ids[Int($0.item)] } == "d")
        #expect(data.split.test[u1].map { data.catalog.ids[Int($0.item)] } == "e")
        #expect(ids(data.devices[data.deviceOfUser[u2]].training) == ["a"])
        #expect(data.split.test[u2].map { data.catalog.ids[Int($0.item)] } == "c")
        // Too short to split: no targets, nothing held out.
        #expect(data.split.test[u3] == nil)
        // Every device's training events precede its users' validation and test events.
        for device in data.devices {
            for user in device.users {
                guard let validation = data.split.validation[user] else { continue }
                for event in device.training { #expect(event.timestamp < validation.timestamp) }
            }
        }
        // The records a device trains on are exactly its training events.
        let records = try data.records(ofDevice: data.deviceOfUser[u1])
        #expect(records.map(\.item) == ["a", "b", "c"])
        #expect(records.map(\.timestampMilliseconds) == [100_000, 200_000, 300_000])
    }

    @Test func syntheticDevicesHoldNoValidationOrTestEvent() throws {
        let data = try tinyData()
        let dataset = SyntheticShop.dataset(users: 16, itemsPerAisle: 4, eventsPerUser: 12, seed: 3)
        for user in data.userIDs.indices {
            let device = data.devices[data.deviceOfUser[user]]
            #expect(device.training == Array(dataset.sequences[user].dropLast(2)))
            #expect(!device.training.isEmpty)
        }
    }

    @Test func storeGroupingPutsEachEventAtItsStoreWithoutLeakage() throws {
        let csv = """
        user_id,item_id,store_id,basket,timestamp
        u1,a,s1,1,100
        u1,b,s2,2,200
        u1,c,s1,3,300
        u1,d,s1,3,301
        u1,e,s2,4,400
        u2,a,s2,5,150
        u2,c,s2,5,151
        u2,b,s2,6,250
        u2,e,s1,7,350
        """
        let (dataset, stores) = try SimulationDataset.load(csvAt: try writeTemporary(csv, name: "stores.csv"), options: .init())
        let data = try SimulationData(dataset: dataset, grouping: .store, stores: stores)
        #expect(data.devices.count == 2)
        let s1 = try #require(data.devices.firstIndex { $0.id == "s1" })
        let s2 = try #require(data.devices.firstIndex { $0.id == "s2" })
        func ids(_ events: [Event]) -> [String] { events.map { data.catalog.ids[Int($0.item)] } }
        // u1 trains on a (s1), b (s2), c (s1); d and e are held out. u2 trains on a (s2), c (s2).
        #expect(ids(data.devices[s1].training) == ["a", "c"])
        #expect(ids(data.devices[s2].training) == ["a", "c", "b"])
        #expect(data.devices[s2].training.map(\.timestamp) == [150, 151, 200])
        #expect(data.trainingEvents == 5)
        // u1 is served by the store of its last training event (s1), u2 by s2.
        let u1 = try #require(data.userIDs.firstIndex(of: "u1"))
        let u2 = try #require(data.userIDs.firstIndex(of: "u2"))
        #expect(data.deviceOfUser[u1] == s1)
        #expect(data.deviceOfUser[u2] == s2)
    }

    @Test func storeGroupingWithoutStoresIsRefused() throws {
        let dataset = SyntheticShop.dataset(users: 4, itemsPerAisle: 2, eventsPerUser: 5, seed: 1)
        #expect(throws: SimulationError.invalidArgument("")) { try SimulationData(dataset: dataset, grouping: .store) }
    }
}

/// Writes `text` to a fresh file under the system temporary directory (never under ../shared).
private func writeTemporary(_ text: String, name: String) throws -> String {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("hearth-sim-tests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    let url = directory.appendingPathComponent(name)
    try text.write(to: url, atomically: true, encoding: .utf8)
    return url.path
}

@Suite(.computeLane) struct MetricTests {
    /// Three users over five items, cutoff 2, scores chosen so the ranks are known by hand:
    /// - A: history {0}, target 3, scores [9, 1, 5, 4, 2]: item 0 excluded, order 2, 3, 4, 1 → rank 2 (hit, DCG 1/log2 3);
    /// - B: history {4}, target 1, scores [5, 1, 3, 2, 9]: order 0, 2, 3, 1 → rank 4 (miss);
    /// - C: no history, target 2, all scores equal: ties by index, order 0, 1, 2 → rank 3 (miss).
    /// HR@2 = 1/3, NDCG@2 = (1/log2 3)/3 = 0.210310…; top-2 lists {2, 3}, {0, 2}, {0, 1} cover 4 of 5 items.
    @Test func handComputedHitRateAndNDCG() {
        let cases = [
            EvaluationCase(user: 0, history: [Event(item: 0)], target: 3),
            EvaluationCase(user: 1, history: [Event(item: 4)], target: 1),
            EvaluationCase(user: 2, history: [], target: 2),
        ]
        let scores: [[Float]] = [[9, 1, 5, 4, 2], [5, 1, 3, 2, 9], [1, 1, 1, 1, 1]]
        let result = RankingEvaluator(cutoff: 2, sampledNegatives: 100, seed: 1)
            .evaluate(cases: cases, itemCount: 5) { scores[$0.user] }
        #expect(result.users == 3)
        #expect(abs(result.hitRate - 1.0 / 3.0) < 1e-12)
        #expect(abs(result.ndcg - 0.210_309_917_857_346_6) < 1e-12)
        #expect(abs(result.coverage - 0.8) < 1e-12)
        // With fewer than 100 unseen items every one is drawn: the sampled ranking is the full one.
        #expect(abs(result.sampledHitRate - 1.0 / 3.0) < 1e-12)
        #expect(abs(result.sampledNDCG - result.ndcg) < 1e-12)
    }

    @Test func fullCatalogueRankingExcludesTrainingItems() {
        // Items 0–2 are in the history and score highest; the target (3) is next: rank 1.
        var scores = [Float](repeating: 0, count: 50)
        scores[0] = 100; scores[1] = 90; scores[2] = 80; scores[3] = 50
        for i in 4 ..< 50 { scores[i] = Float(i) / 100 }
        let question = EvaluationCase(user: 0, history: [Event(item: 0), Event(item: 1), Event(item: 2)], target: 3)
        let result = RankingEvaluator(cutoff: 1, sampledNegatives: 10, seed: 2).evaluate(cases: [question], itemCount: 50) { _ in scores }
        #expect(result.hitRate == 1)
        #expect(result.ndcg == 1)
        #expect(result.sampledHitRate == 1)
        let top = RankingEvaluator.topK(scores: scores, k: 3, excluding: ExclusionSet(itemCount: 50, items: [0, 1, 2]))
        #expect(top == [3, 49, 48])
        // Without the exclusion the same target would rank 4th: a miss at 1.
        let unexcluded = EvaluationCase(user: 0, history: [], target: 3)
        let missed = RankingEvaluator(cutoff: 1, sampledNegatives: 10, seed: 2).evaluate(cases: [unexcluded], itemCount: 50) { _ in scores }
        #expect(missed.hitRate == 0)
    }

    @Test func aRepeatedTargetIsAMiss() {
        let question = EvaluationCase(user: 0, history: [Event(item: 1)], target: 1)
        let result = RankingEvaluator(cutoff: 10).evaluate(cases: [question], itemCount: 5) { _ in [0, 9, 0, 0, 0] }
        #expect(result.users == 1)
        #expect(result.hitRate == 0)
        #expect(result.sampledHitRate == 0)
    }
}

@Suite(.computeLane) struct PrivacyPathTests {
    @Test func localUploadsAreNoisedAndNoneUploadsAreNot() throws {
        let data = try tinyData()
        let simulation = Simulation(data: data)
        let none = tinyConfiguration(mode: .none)
        var local = tinyConfiguration(mode: .local, epsilon: 4)
        local.bitWidth = 20
        var central = tinyConfiguration(mode: .central, epsilon: 4)
        central.bitWidth = 20
        let model = try Model(version: 0, catalog: data.catalog, parameters: simulation.initialParameters(none))
        let records = try data.records(ofDevice: 0)
        // Same seed: the device trains identically in every mode.
        let trainedNone = simulation.train(device: 0, records: records, local: [], model: model, round: 0, configuration: none)
        let trainedLocal = simulation.train(device: 0, records: records, local: [], model: model, round: 0, configuration: local)
        #expect(trainedNone.update == trainedLocal.update)
        let d = trainedNone.update.count
        let clipped = try Clipping.clip(trainedNone.update, to: local.clipNorm)

        let zLocal = try Simulation.noiseMultiplier(for: local)
        let localPlan = Simulation.plan(local, noiseMultiplier: zLocal, devices: data.devices.count)
        let localPrivatizer = try UpdatePrivatizer(configuration: localPlan.privacyConfiguration, dimension: d)
        let (localBytes, localUpdate) = try Simulation.upload(update: trainedLocal.update, privatizer: localPrivatizer, samplingRate: 0.5,
                                                              modelVersion: 0, seed: 7, round: 0, device: 0)
        #expect(localUpdate.mode == .local)
        // The aggregator accepts it.
        _ = try UpdateValidator.validate(localBytes, plan: localPlan, currentVersion: 0, dimension: d)
        // Local: the upload differs from the clipped update by noise of σ = z·Δ grid steps.
        let sigma = zLocal * localUpdate.sensitivity / localUpdate.scale
        let residual = zip(localUpdate.dequantized(), clipped).map { $0 - $1 }
        let measured = (residual.reduce(0) { $0 + $1 * $1 } / Double(d)).squareRoot()
        #expect(abs(measured / sigma - 1) < 0.15, "noise std \(measured) vs expected \(sigma) over \(d) coordinates")
        #expect(zLocal > 0.5)

        // Central: the device adds no noise; the upload is the clipped update up to rounding.
        let zCentral = try Simulation.noiseMultiplier(for: central)
        let centralPlan = Simulation.plan(central, noiseMultiplier: zCentral, devices: data.devices.count)
        let centralPrivatizer = try UpdatePrivatizer(configuration: centralPlan.privacyConfiguration, dimension: d)
        let (_, centralUpdate) = try Simulation.upload(update: trainedNone.update, privatizer: centralPrivatizer, samplingRate: 0.5,
                                                       modelVersion: 0, seed: 7, round: 0, device: 0)
        for (value, reference) in zip(centralUpdate.dequantized(), clipped) {
            #expect(abs(value - reference) <= 1 / centralUpdate.scale + 1e-12)
        }
    }

    @Test func noneAndLocalRunsDifferOnTheSameSeed() throws {
        let simulation = Simulation(data: try tinyData())
        let none = try simulation.runFederated(tinyConfiguration(mode: .none, rounds: 2))
        let local = try simulation.runFederated(tinyConfiguration(mode: .local, epsilon: 8, rounds: 2))
        #expect(none.noiseMultiplier == 0)
        #expect(local.noiseMultiplier > 0)
        #expect(none.deviceRounds == local.deviceRounds)  // same coins
        #expect(none.parameters != local.parameters)
        #expect(none.deviceRounds > 0)
    }

    @Test(arguments: [(SimulationMode.central, 0.5), (SimulationMode.central, 1.0), (SimulationMode.local, 0.5)])
    func calibrationGivesTheRequestedEpsilon(mode: SimulationMode, q: Double) throws {
        for epsilon in [1.0, 8.0] {
            var configuration = tinyConfiguration(mode: mode, epsilon: epsilon, rounds: 20)
            configuration.samplingRate = q
            let z = try Simulation.noiseMultiplier(for: configuration)
            let achieved: Double
            if mode == .central {
                let plan = Simulation.plan(configuration, noiseMultiplier: z, devices: 10)
                achieved = try CentralAccounting.epsilon(versions: 20, plan: plan, delta: 1e-5)
            } else {
                achieved = try PrivacyAccounting.epsilon(noiseMultiplier: z, samplingRate: 1, steps: 20, delta: 1e-5)
            }
            #expect(achieved <= epsilon)
            #expect(achieved >= epsilon * 0.99, "ε \(achieved) for target \(epsilon) at z \(z)")
            #expect(try Simulation.achievedEpsilon(for: configuration, noiseMultiplier: z) == achieved)
        }
    }

    @Test func infiniteEpsilonRunsWithoutNoise() throws {
        let configuration = tinyConfiguration(mode: .central, epsilon: .infinity)
        #expect(configuration.effectiveMode == .none)
        #expect(try Simulation.noiseMultiplier(for: configuration) == 0)
    }
}

@Suite(.computeLane) struct OutputTests {
    @Test func jsonHasTheRequiredKeys() throws {
        let runner = SimulationRunner(data: try tinyData())
        let records = try runner.run(tinyConfiguration(mode: .central, epsilon: 8, rounds: 2))
        #expect(records.map(\.name) == ["federated", "popularity", "centralised", "federated-no-noise"])
        for record in records {
            let line = record.json()
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            for key in ["mode", "epsilon", "delta", "hr10", "ndcg10", "hr10_sampled100", "rounds", "devices", "seconds", "coverage10"] {
                #expect(object[key] != nil, "\(record.name) lacks \(key)")
            }
            let hr = try #require(object["hr10"] as? Double)
            #expect(hr >= 0 && hr <= 1)
        }
        let federated = try #require(JSONSerialization.jsonObject(with: Data(records[0].json().utf8)) as? [String: Any])
        #expect(federated["mode"] as? String == "central")
        #expect(federated["epsilon"] as? Double == 8)
        #expect(federated["rounds"] as? Int == 2)
        #expect(federated["devices"] as? Int == 16)
        let noNoise = try #require(JSONSerialization.jsonObject(with: Data(records[3].json().utf8)) as? [String: Any])
        #expect(noNoise["epsilon"] is NSNull)
    }

    @Test func reportWritesTableCSVAndChart() throws {
        let runner = SimulationRunner(data: try tinyData())
        let records = try runner.sweep(tinyConfiguration(mode: .central, rounds: 2), epsilons: [.infinity, 8, 2], modes: [.central, .local])
        #expect(records.count == 3 + 4)
        let report = SweepReport(records: records, description: "tiny")
        let csv = report.csv().split(separator: "\n")
        #expect(csv.count == 8)
        #expect(csv[0].hasPrefix("name,mode,epsilon,delta"))
        #expect(report.markdown().split(separator: "\n").count == 9)
        let svg = report.svg()
        #expect(svg.hasPrefix("<svg"))
        #expect(svg.contains("<polyline"))
        #expect(svg.components(separatedBy: "stroke-dasharray").count - 1 >= 6)  // 3 baselines + their legend entries
        #expect(svg.hasSuffix("</svg>\n"))
        // No non-finite number leaked into a coordinate or a label.
        for bad in ["\"nan", "nan\"", ">nan", "\"inf", "inf\"", ">inf"] { #expect(!svg.contains(bad), "\(bad)") }
    }

    @Test func fixedFormatsWithoutFoundation() {
        #expect(fixed(0.08999, 4) == "0.0900")
        #expect(fixed(-1.25, 1) == "-1.3")
        #expect(fixed(3, 0) == "3")
        #expect(fixed(.infinity, 2) == "∞")
    }
}

@Suite(.computeLane) struct DeterminismTests {
    @Test func sameSeedSameModelDifferentSeedDifferentModel() throws {
        let simulation = Simulation(data: try tinyData())
        let a = try simulation.runFederated(tinyConfiguration(mode: .central, rounds: 2, seed: 11))
        let b = try simulation.runFederated(tinyConfiguration(mode: .central, rounds: 2, seed: 11))
        let c = try simulation.runFederated(tinyConfiguration(mode: .central, rounds: 2, seed: 12))
        #expect(a.parameters == b.parameters)
        #expect(a.locals == b.locals)
        #expect(a.parameters != c.parameters)
        let runner = SimulationRunner(data: simulation.data)
        let r1 = try runner.federated(tinyConfiguration(mode: .local, rounds: 2, seed: 5))
        let r2 = try runner.federated(tinyConfiguration(mode: .local, rounds: 2, seed: 5))
        #expect(r1.test == r2.test)
        #expect(r1.validation == r2.validation)
    }

    @Test func storeDevicesRunEndToEnd() throws {
        // A kiosk per aisle-group: stores derived from the user index.
        let dataset = SyntheticShop.dataset(users: 12, itemsPerAisle: 3, eventsPerUser: 10, seed: 9)
        let stores = dataset.sequences.indices.map { user in [String](repeating: "store-\(user % 3)", count: dataset.sequences[user].count) }
        let data = try SimulationData(dataset: dataset, grouping: .store, stores: stores)
        #expect(data.devices.count == 3)
        let record = try SimulationRunner(data: data).federated(tinyConfiguration(mode: .central, rounds: 2))
        #expect(record.devices == 3)
        #expect(record.test.users == 12)
    }
}
