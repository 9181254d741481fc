import CHearthMath
import HearthCore

/// One ranking question: a user's history (what the device knew) and the held-out item.
public struct EvaluationCase: Sendable, Equatable {
    /// The user (index into the split).
    public var user: Int
    /// Events known before the target, chronological; their items are excluded from the ranking.
    public var history: [Event]
    /// The held-out item.
    public var target: Int32

    public init(user: Int, history: [Event], target: Int32) {
        self.user = user
        self.history = history
        self.target = target
    }

    /// The test questions of a split: history = training prefix + validation event, target = last event.
    public static func test(_ split: LeaveLastOutSplit) -> [EvaluationCase] {
        split.test.indices.compactMap { user in
            split.test[user].map { EvaluationCase(user: user, history: split.historyBeforeTest(user: user), target: $0.item) }
        }
    }

    /// The validation questions (for tuning): history = training prefix, target = second-to-last event.
    public static func validation(_ split: LeaveLastOutSplit) -> [EvaluationCase] {
        split.validation.indices.compactMap { user in
            split.validation[user].map { EvaluationCase(user: user, history: split.training[user], target: $0.item) }
        }
    }
}

/// Metrics of one configuration on one set of questions.
public struct RankingResult: Sendable, Equatable {
    /// Questions evaluated.
    public var users: Int
    /// HR@K ranking the full catalogue minus the user's history.
    public var hitRate: Double
    /// NDCG@K on the same ranking (one relevant item: 1 / log2(rank + 1)).
    public var ndcg: Double
    /// HR@K ranking the target among `sampledNegatives` random items the user has not seen.
    public var sampledHitRate: Double
    /// NDCG@K on the sampled ranking.
    public var sampledNDCG: Double
    /// Distinct items in any user's full-catalogue top K, over the catalogue size.
    public var coverage: Double

    public init(users: Int, hitRate: Double, ndcg: Double, sampledHitRate: Double, sampledNDCG: Double, coverage: Double) {
        self.users = users
        self.hitRate = hitRate
        self.ndcg = ndcg
        self.sampledHitRate = sampledHitRate
        self.sampledNDCG = sampledNDCG
        self.coverage = coverage
    }
}

/// Leave-last-out ranking metrics.
///
/// Ordering everywhere is `rankedBefore` (higher score first, then lower item index), so ties
/// are broken the same way in the full and sampled rankings. The target's full-catalogue rank is
/// 1 + the number of items outside the history that rank before it. A target that is itself in
/// the history (a repeat purchase) is excluded with the history and counts as a miss.
public struct RankingEvaluator: Sendable {
    /// Cutoff K.
    public var cutoff: Int
    /// Negatives drawn per question for the sampled variant (100 as in NCF-style papers).
    public var sampledNegatives: Int
    /// Seed for the sampled negatives: the same seed gives every configuration the same negatives.
    public var seed: UInt64

    public init(cutoff: Int = 10, sampledNegatives: Int = 100, seed: UInt64 = 0x5EED) {
        self.cutoff = cutoff
        self.sampledNegatives = sampledNegatives
        self.seed = seed
    }

    /// Evaluates `cases` over `itemCount` items with `scores(case)` giving one score per item.
    public func evaluate(cases: [EvaluationCase], itemCount: Int,
                         scores: (EvaluationCase) -> [Float]) -> RankingResult {
        var full = RankingMetrics(cutoff: cutoff)
        var sampled = RankingMetrics(cutoff: cutoff)
        var recommended = [Bool](repeating: false, count: itemCount)
        var rng = Xoshiro256(seed: seed)
        for question in cases {
            let s = scores(question)
            let excluded = ExclusionSet(itemCount: itemCount, items: question.history.map { $0.item })
            let target = Int(question.target)
            // Top K for coverage.
            for item in RankingEvaluator.topK(scores: s, k: cutoff, excluding: excluded) { recommended[Int(item)] = true }
            // Full-catalogue rank.
            if target < 0 || target >= itemCount || excluded.contains(question.target) {
                full.record(rank: nil)
            } else {
                let t = Recommendation(item: question.target, score: s[target])
                var before = 0
                for item in 0 ..< itemCount where item != target && !excluded.contains(Int32(item)) {
                    if rankedBefore(Recommendation(item: Int32(item), score: s[item]), t) { before += 1 }
                }
                full.record(rank: before + 1)
            }
            // Sampled: negatives uniformly without replacement from unseen items other than the target.
            var available = itemCount
            for item in 0 ..< itemCount where excluded.contains(Int32(item)) { available -= 1 }
            let targetValid = target >= 0 && target < itemCount && !excluded.contains(question.target)
            if targetValid { available -= 1 }
            let draws = min(sampledNegatives, max(0, available))
            var chosen = Set<Int>()
            while chosen.count < draws {
                let item = rng.nextIndex(below: itemCount)
                if item == target || excluded.contains(Int32(item)) { continue }
                chosen.insert(item)
            }
            if !targetValid {
                sampled.record(rank: nil)
            } else {
                let t = Recommendation(item: question.target, score: s[target])
                var before = 0
                for item in chosen where rankedBefore(Recommendation(item: Int32(item), score: s[item]), t) { before += 1 }
                sampled.record(rank: before + 1)
            }
        }
        let covered = recommended.reduce(0) { $0 + ($1 ? 1 : 0) }
        return RankingResult(users: full.users, hitRate: full.hitRate, ndcg: full.ndcg,
                             sampledHitRate: sampled.hitRate, sampledNDCG: sampled.ndcg,
                             coverage: itemCount > 0 ? Double(covered) / Double(itemCount) : 0)
    }

    /// The best `k` items by `rankedBefore`, skipping `excluding`.
    public static func topK(scores: [Float], k: Int, excluding: ExclusionSet) -> [Int32] {
        var best: [Recommendation] = []
        for item in scores.indices where !excluding.contains(Int32(item)) {
            let candidate = Recommendation(item: Int32(item), score: scores[item])
            if best.count == k, let last = best.last, !rankedBefore(candidate, last) { continue }
            var position = best.count
            while position > 0 && rankedBefore(candidate, best[position - 1]) { position -= 1 }
            best.insert(candidate, at: position)
            if best.count > k { best.removeLast() }
        }
        return best.map { $0.item }
    }

    /// Scores of every item for a model: `q · E[i] + b[i]` in float32, the query built from the
    /// local embedding and the most recent `historyLength` events, exactly as serving builds it.
    public static func modelScores(parameters: GlobalParameters, encoder: QueryEncoder = QueryEncoder(),
                                   local: [Float], history: [Event], historyLength: Int = 20) -> [Float] {
        let embedding = local.count == parameters.dimension ? local : [Float](repeating: 0, count: parameters.dimension)
        let query = encoder.query(parameters: parameters, local: embedding, recent: history.suffix(historyLength))
        let d = parameters.dimension
        var out = [Float](repeating: 0, count: parameters.itemCount)
        parameters.embeddings.withUnsafeBufferPointer { e in
            for item in 0 ..< parameters.itemCount {
                var s: Float = 0
                let base = item * d
                for c in 0 ..< d { s += query[c] * e[base + c] }
                out[item] = s + parameters.bias[item]
            }
        }
        return out
    }

    /// Popularity scores: training-event counts per item.
    public static func popularityScores(itemCount: Int, training: [[Event]]) -> [Float] {
        var counts = [Float](repeating: 0, count: itemCount)
        for events in training { for event in events where event.item >= 0 && Int(event.item) < itemCount { counts[Int(event.item)] += 1 } }
        return counts
    }
}
