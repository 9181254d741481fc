import HearthCore
import HearthTestSupport
import Testing

@Suite("Ranking", .computeLane)
struct RankingTests {
    let kernel = ScoringKernel.scalar

    @Test("int8 top-K agrees with a full float sort of the int8 scores", arguments: [1, 5, 10, 50])
    func topKMatchesFullSort(k: Int) throws {
        let model = try Fixtures.randomModel(items: 203, dimension: 24, seed: 9)
        var state = LocalState(dimension: 24)
        state.embedding = (0 ..< 24).map { Float($0 % 5) - 2 }
        let query = QuantizedQuery(model.query(for: state))
        let scores = try model.table.scores(query: query, kernel: kernel)
        let expected = scores.indices.sorted { scores[$0] > scores[$1] || (scores[$0] == scores[$1] && $0 < $1) }.prefix(k)
        for candidate in ScoringKernel.all where candidate.isSupported {
            let top = try model.table.topK(query: query, k: k, kernel: candidate)
            #expect(top.map { Int($0.item) } == Array(expected), "kernel \(candidate.name)")
        }
    }

    @Test("excluded items never come back, and k larger than the catalogue returns every eligible item")
    func exclusions() throws {
        let model = try Fixtures.randomModel(items: 20, dimension: 8, seed: 3)
        let excluded = ExclusionSet(itemCount: 20, items: [0, 3, 19, 7])
        let state = LocalState(dimension: 8)
        let top = try model.recommend(state: state, k: 100, excluding: excluded, kernel: kernel)
        #expect(top.count == 16)
        #expect(Set(top.map { $0.item }).isDisjoint(with: [0, 3, 19, 7]))
        #expect(try model.recommend(state: state, k: 0, kernel: kernel).isEmpty)
        // An exclusion set for another catalogue, or a query of the wrong width, is refused.
        #expect(throws: CoreError.shapeMismatch("")) {
            try model.recommend(state: state, k: 5, excluding: ExclusionSet(itemCount: 21), kernel: kernel)
        }
        #expect(throws: CoreError.shapeMismatch("")) {
            try model.table.topK(query: QuantizedQuery([1, 2, 3, 4, 5, 6, 7, 8, 9]), k: 5, kernel: kernel)
        }
    }

    @Test("rank() orders the caller's candidates by score, once each, and refuses unknown items")
    func rankCandidates() throws {
        let model = try Fixtures.randomModel(items: 50, dimension: 16, seed: 4)
        var state = LocalState(dimension: 16)
        state.observe(Event(item: 3, kind: .purchase))
        let ranked = try model.rank(state: state, candidates: [10, 4, 10, 33, 2])
        #expect(ranked.map { $0.item }.sorted() == [2, 4, 10, 33])
        for (a, b) in zip(ranked, ranked.dropFirst()) { #expect(rankedBefore(a, b)) }
        let all = try model.table.scores(query: QuantizedQuery(model.query(for: state)), kernel: kernel)
        for r in ranked { #expect(r.score == all[Int(r.item)]) }
        #expect(throws: CoreError.unknownItem("")) { try model.rank(state: state, candidates: [1, 50]) }
        #expect(throws: CoreError.unknownItem("")) { try model.rank(state: state, candidates: [-1]) }
    }

    @Test("int8 scores stay close to float32 scores of the same model")
    func int8CloseToFloat() throws {
        let model = try Fixtures.randomModel(items: 100, dimension: 32, seed: 5)
        var state = LocalState(dimension: 32)
        for item: Int32 in [1, 2, 3] { state.observe(Event(item: item, kind: .cart)) }
        let query = model.query(for: state)
        let int8 = try model.table.scores(query: QuantizedQuery(query), kernel: kernel)
        for item in 0 ..< 100 {
            var exact = model.parameters.bias[item]
            for c in 0 ..< 32 { exact += query[c] * model.parameters.embeddings[item * 32 + c] }
            #expect(abs(int8[item] - exact) < 0.05 * (1 + abs(exact)))
        }
    }

    @Test("kernel selection: unknown names and unsupported kernels are clear errors")
    func kernelSelection() throws {
        #expect(try ScoringKernel.select(override: nil) == ScoringKernel.best)
        #expect(try ScoringKernel.select(override: "scalar") == ScoringKernel.scalar)
        #expect(throws: CoreError.unknownKernel("")) { try ScoringKernel.select(override: "avx9000") }
        for kernel in ScoringKernel.all where !kernel.isSupported {
            #expect(throws: CoreError.unsupportedKernel("")) { try ScoringKernel.named(kernel.name) }
        }
        #expect(ScoringKernel.all.first == ScoringKernel.scalar)
        #expect(ScoringKernel.best.isSupported)
    }

    @Test("the query weighs recent and stronger events more")
    func queryWeights() {
        let encoder = QueryEncoder(decay: 0.5)
        let events = [Event(item: 0, kind: .purchase), Event(item: 1, kind: .view), Event(item: 2, kind: .purchase)]
        let w = encoder.weights(for: events[...])
        #expect(w == [0.25, 0.125, 1.0])
    }
}
