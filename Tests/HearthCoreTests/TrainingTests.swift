import HearthCore
import HearthDatasets
import HearthTestSupport
import Testing

@Suite("Training", .computeLane)
struct TrainingTests {
    @Test("training is deterministic for a seed and changes with it")
    func deterministic() {
        let data = SyntheticShop.dataset(users: 20, itemsPerAisle: 4, eventsPerUser: 10, seed: 1)
        func run(seed: UInt64) -> GlobalParameters {
            var rng = Xoshiro256(seed: seed)
            var parameters = GlobalParameters(itemCount: data.catalog.count, dimension: 8, using: &rng)
            var locals: [[Float]] = []
            Trainer().train(sequences: data.sequences, parameters: &parameters, locals: &locals, epochs: 1, using: &rng)
            return parameters
        }
        #expect(run(seed: 5) == run(seed: 5))
        #expect(run(seed: 5) != run(seed: 6))
    }

    @Test("the loss falls over epochs and the model beats popularity on held-out events")
    func learns() throws {
        let data = SyntheticShop.dataset(users: 120, itemsPerAisle: 8, eventsPerUser: 25, seed: 2)
        let split = LeaveLastOutSplit(sequences: data.sequences)
        var rng = Xoshiro256(seed: 3)
        var parameters = GlobalParameters(itemCount: data.catalog.count, dimension: 16, using: &rng)
        var locals = Array(repeating: [Float](repeating: 0, count: 16), count: split.training.count)
        let trainer = Trainer()
        func epochLoss() -> Float {
            var total: Float = 0
            for user in split.training.indices {
                total += trainer.train(sequence: split.training[user][...], parameters: &parameters, local: &locals[user], using: &rng)
            }
            return total / Float(split.training.count)
        }
        let first = epochLoss()
        var last = first
        for _ in 0 ..< 5 { last = epochLoss() }
        #expect(last < first * 0.9, "loss \(first) -> \(last)")
        let model = try Model(version: 0, catalog: data.catalog, parameters: parameters)
        let (float32, int8) = try OfflineEvaluation.compareScoring(model: model, locals: locals, split: split, kernel: .scalar)
        let popularity = OfflineEvaluation.popularity(itemCount: data.catalog.count, split: split)
        #expect(int8.users == 120)
        #expect(float32.hitRate > popularity.hitRate, "model \(float32.hitRate) vs popularity \(popularity.hitRate)")
        #expect(abs(float32.hitRate - int8.hitRate) <= 0.02)
    }

    @Test("the local state keeps only the most recent events")
    func localStateCapacity() {
        var state = LocalState(dimension: 4, capacity: 3)
        for item: Int32 in 0 ..< 5 { state.observe(Event(item: item)) }
        #expect(state.recent.map { $0.item } == [2, 3, 4])
        state.startNewSession()
        #expect(state.recent.isEmpty)
    }
}

@Suite("Evaluation", .computeLane)
struct EvaluationTests {
    @Test("HR and NDCG by rank", arguments: [(1, 1.0), (3, 0.5), (10, 0.28906482631788766)])
    func ndcg(rank: Int, expected: Double) {
        var metrics = RankingMetrics(cutoff: 10)
        metrics.record(rank: rank)
        #expect(metrics.hitRate == 1)
        #expect(abs(metrics.ndcg - expected) < 1e-12)
        metrics.record(rank: 11)
        metrics.record(rank: nil)
        #expect(abs(metrics.hitRate - 1.0 / 3) < 1e-12)
    }

    @Test("ranked lists: the target's position counts, later positions do not")
    func rankedList() {
        var metrics = RankingMetrics(cutoff: 2)
        metrics.record(ranked: [5, 6, 7], target: 6)
        metrics.record(ranked: [5, 6, 7], target: 7)
        #expect(metrics.hits == 1)
        #expect(abs(metrics.ndcg - 0.5 * (1 / 1.584962500721156)) < 1e-12)
    }

    @Test("leave-last-out keeps the last event for test and the one before for validation")
    func split() {
        let events = (0 ..< 5).map { Event(item: Int32($0), timestamp: Int64($0)) }
        let split = LeaveLastOutSplit(sequences: [events, Array(events.prefix(2))])
        #expect(split.training[0].map { $0.item } == [0, 1, 2])
        #expect(split.validation[0]?.item == 3)
        #expect(split.test[0]?.item == 4)
        #expect(split.historyBeforeTest(user: 0).map { $0.item } == [0, 1, 2, 3])
        #expect(split.test[1] == nil)
        #expect(split.training[1].count == 2)
    }
}
