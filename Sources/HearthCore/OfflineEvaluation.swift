/// Offline evaluation of a trained model on a leave-last-out split.
public enum OfflineEvaluation {
    /// HR/NDCG of the test targets, ranking the full catalogue minus each user's history, with
    /// the int8 kernel path and with float32 scoring of the same master parameters.
    ///
    /// Both paths build the query the same way (float, from the master parameters); only the
    /// scoring differs, so the gap is what quantisation costs.
    public static func compareScoring(
        model: Model, locals: [[Float]], split: LeaveLastOutSplit, cutoff: Int = 10, kernel: ScoringKernel
    ) throws(CoreError) -> (float32: RankingMetrics, int8: RankingMetrics) {
        var float32 = RankingMetrics(cutoff: cutoff)
        var int8 = RankingMetrics(cutoff: cutoff)
        let parameters = model.parameters
        for user in split.test.indices {
            guard let target = split.test[user] else { continue }
            let history = split.historyBeforeTest(user: user)
            let state = localState(model: model, local: user < locals.count ? locals[user] : nil, history: history)
            let excluded = ExclusionSet(itemCount: model.catalog.count, items: history.map { $0.item })
            let query = model.query(for: state)
            int8.record(ranked: try model.table.topK(query: QuantizedQuery(query), k: cutoff, excluding: excluded, kernel: kernel).map { $0.item },
                        target: target.item)
            float32.record(ranked: parameters.topK(query: query, k: cutoff, excluding: excluded).map { $0.item },
                           target: target.item)
        }
        return (float32, int8)
    }

    /// HR/NDCG of recommending the most frequent training items (the popularity baseline).
    public static func popularity(itemCount: Int, split: LeaveLastOutSplit, cutoff: Int = 10) -> RankingMetrics {
        var counts = [Int](repeating: 0, count: itemCount)
        for events in split.training { for event in events { counts[Int(event.item)] += 1 } }
        let byPopularity = counts.indices.sorted { counts[$0] > counts[$1] || (counts[$0] == counts[$1] && $0 < $1) }
        var metrics = RankingMetrics(cutoff: cutoff)
        for user in split.test.indices {
            guard let target = split.test[user] else { continue }
            let excluded = ExclusionSet(itemCount: itemCount, items: split.historyBeforeTest(user: user).map { $0.item })
            var ranked: [Int32] = []
            for item in byPopularity where !excluded.contains(Int32(item)) {
                ranked.append(Int32(item))
                if ranked.count == cutoff { break }
            }
            metrics.record(ranked: ranked, target: target.item)
        }
        return metrics
    }

    /// The serving state after `history`: the local embedding and the most recent events.
    public static func localState(model: Model, local: [Float]?, history: [Event]) -> LocalState {
        var state = LocalState(dimension: model.dimension)
        if let local, local.count == model.dimension { state.embedding = local }
        for event in history.suffix(state.capacity) { state.observe(event) }
        return state
    }
}
