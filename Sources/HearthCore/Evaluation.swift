import CHearthMath

/// Chronological leave-last-out split: per user, the last event is the test target, the one
/// before it the validation target, and everything earlier is training data. Nothing later than
/// a target is ever used to predict it.
public struct LeaveLastOutSplit: Sendable {
    /// Per user, the training prefix (all but the last two events).
    public let training: [[Event]]
    /// Per user, the validation target (second to last event), nil for users with < 3 events.
    public let validation: [Event?]
    /// Per user, the test target (last event), nil for users with < 3 events.
    public let test: [Event?]

    public init(sequences: [[Event]]) {
        var training: [[Event]] = []
        var validation: [Event?] = []
        var test: [Event?] = []
        for events in sequences {
            if events.count < 3 {
                training.append(events)
                validation.append(nil)
                test.append(nil)
            } else {
                training.append(Array(events.dropLast(2)))
                validation.append(events[events.count - 2])
                test.append(events[events.count - 1])
            }
        }
        self.training = training
        self.validation = validation
        self.test = test
    }

    /// Events known before the test target: training plus the validation event.
    public func historyBeforeTest(user: Int) -> [Event] {
        guard let validation = validation[user] else { return training[user] }
        return training[user] + [validation]
    }
}

/// Hit rate and NDCG at a cutoff, accumulated over users.
public struct RankingMetrics: Sendable, Equatable {
    /// Cutoff K.
    public let cutoff: Int
    /// Users evaluated.
    public private(set) var users: Int = 0
    /// Users whose target was in the top K.
    public private(set) var hits: Int = 0
    /// Sum of `1 / log2(rank + 1)` over hits (rank is 1-based).
    public private(set) var dcg: Double = 0

    public init(cutoff: Int = 10) { self.cutoff = cutoff }

    /// Records one user's ranked list (best first) against its single target.
    public mutating func record(ranked: [Int32], target: Int32) {
        users += 1
        for (position, item) in ranked.prefix(cutoff).enumerated() where item == target {
            hits += 1
            dcg += 1 / (hearth_log(Double(position + 2)) / hearth_log(2))
            return
        }
    }

    /// Records the hit directly from the target's 1-based rank (nil: not ranked).
    public mutating func record(rank: Int?) {
        users += 1
        if let rank, rank <= cutoff {
            hits += 1
            dcg += 1 / (hearth_log(Double(rank + 1)) / hearth_log(2))
        }
    }

    /// HR@K: fraction of users with a hit.
    public var hitRate: Double { users > 0 ? Double(hits) / Double(users) : 0 }
    /// NDCG@K with one relevant item per user (ideal DCG = 1).
    public var ndcg: Double { users > 0 ? dcg / Double(users) : 0 }
}
