import Testing
@testable import HearthAggregation

@Test func errorDescriptionNamesReasonAndMessage() {
    let error = AggregationError(reason: "buffer_empty", message: "nothing to publish")
    #expect(error.description == "buffer_empty: nothing to publish")
}
