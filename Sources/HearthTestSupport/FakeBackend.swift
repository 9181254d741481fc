import HearthCore
import HearthLocalAPI
import Synchronization

/// A backend that records every call and answers with canned data.
public final class FakeBackend: LocalAPIBackend {
    public struct Calls {
        public var ingested: [[EventRecord]] = []
        public var recommendations: [(session: String, k: Int, exclude: [String])] = []
        public var ranks: [(session: String, candidates: [String])] = []
        public var erased = 0
        public var ingestStarted = 0
    }

    public let calls = Mutex(Calls())
    public let ingestDelayMilliseconds: Int
    public let failWith: LocalAPIError?
    public let lastUpload: Int64?

    public init(ingestDelayMilliseconds: Int = 0, failWith: LocalAPIError? = nil, lastUpload: Int64? = nil) {
        self.ingestDelayMilliseconds = ingestDelayMilliseconds
        self.failWith = failWith
        self.lastUpload = lastUpload
    }

    public func ingest(_ events: [EventRecord]) async throws -> IngestResult {
        calls.withLock { $0.ingestStarted += 1 }
        if ingestDelayMilliseconds > 0 { try await Task.sleep(for: .milliseconds(ingestDelayMilliseconds)) }
        if let failWith { throw failWith }
        let total = calls.withLock { calls in
            calls.ingested.append(events)
            return calls.ingested.reduce(0) { $0 + $1.count }
        }
        return IngestResult(accepted: events.count, eventsTotal: Int64(total))
    }

    public func recommendations(session: String, k: Int, exclude: [String]) async throws -> [RankedItem] {
        calls.withLock { $0.recommendations.append((session, k, exclude)) }
        return (0 ..< min(k, 3)).map { RankedItem(item: "item-\($0)", score: 1.5 - Double($0)) }
    }

    public func rank(session: String, candidates: [String]) async throws -> [RankedItem] {
        calls.withLock { $0.ranks.append((session, candidates)) }
        return candidates.reversed().enumerated().map { RankedItem(item: $1, score: Double(-$0)) }
    }

    public func status() async throws -> StatusReport {
        StatusReport(
            modelVersion: "7", kernel: "avx2", eventsTotal: 42, outboxPending: 1, lastUploadMilliseconds: lastUpload,
            privacy: PrivacySummary(epsilonSpent: 0.5, delta: 1e-6, epsilonBudget: 8), extra: ["retention": ["max_events": 100]]
        )
    }

    public func privacy() async throws -> PrivacyReport {
        PrivacyReport(summary: PrivacySummary(epsilonSpent: 0.5, delta: 1e-6, epsilonBudget: 8), entries: [["round": 1, "epsilon": 0.5]])
    }

    public func profile() async throws -> ProfileReport {
        ProfileReport(topCategories: [WeightedLabel(name: "shoes", weight: 0.7)], topBrands: [WeightedLabel(name: "acme", weight: 0.3)])
    }

    public func eraseAll() async throws -> EraseResult {
        calls.withLock { $0.erased += 1 }
        return EraseResult(eventsErased: 42)
    }
}
