import HearthUploader
import Testing
@testable import HearthAgent

/// How a failed exchange with the aggregator is classified into a status condition.
@Suite("Aggregator exchange classification")
struct AggregatorExchangeTests {
    @Test("statuses: 5xx, 408 and 429 are server errors; other answers are answers")
    func statuses() {
        #expect(AggregatorExchange(status: 500) == .serverError(status: 500))
        #expect(AggregatorExchange(status: 503) == .serverError(status: 503))
        #expect(AggregatorExchange(status: 408) == .serverError(status: 408))
        #expect(AggregatorExchange(status: 429) == .serverError(status: 429))
        #expect(AggregatorExchange(status: 200) == .answered)
        #expect(AggregatorExchange(status: 409) == .answered)
        #expect(AggregatorExchange(error: .unexpectedStatus(502, "bad gateway")) == .serverError(status: 502))
        #expect(AggregatorExchange(error: .unexpectedStatus(401, "unauthorised")) == .answered)
    }

    @Test("transport failures and a failed fetch helper are unreachable; a timeout is timed out")
    func transport() {
        let timeout = UploaderError.transport(.operationTimedOut)
        #expect(AggregatorExchange(error: timeout) == .timedOut(timeout.message))
        let refused = UploaderError.transport(.couldntConnect)
        #expect(AggregatorExchange(error: refused) == .unreachable(refused.message))
        let killed = UploaderError.helperFailed("hearth-fetch was killed by signal 9")
        #expect(AggregatorExchange(error: killed) == .unreachable(killed.message))
    }

    @Test("failures on the device's side are not aggregator conditions")
    func local() {
        #expect(AggregatorExchange(error: .badSignature("signature does not verify")) == .answered)
        #expect(AggregatorExchange(error: .fileSystem("rename failed")) == .answered)
        #expect(AggregatorExchange(error: .corruptModel("truncated")) == .answered)
    }
}
