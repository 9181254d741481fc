import Testing
@testable import HearthPrivacy
import HearthTestSupport

/// Coordinates just below zero: in double, y − ⌊y⌋ = y + 1 rounds to exactly 1, whose coin
/// threshold 2^64 does not fit a UInt64. The conversion trapped, and a `hearth-agent` whose
/// round produced such a delta died in the round (found by the kill -9 crash-consistency test:
/// the restarted agent crashed in its next round).
@Suite("Rounding thresholds", .computeLane)
struct RoundingThresholdTests {
    static let tiny: [Float] = [-1e-30, 0.25, -0.5, 1e-30, -Float.leastNonzeroMagnitude, 0, -1e-20, 0.125]

    @Test("the threshold of a fractional part that rounded to 1 is the largest, not a trap")
    func thresholdOfOne() {
        #expect(IntegerGrid.threshold(fraction: 1) == UInt64.max)
        #expect(IntegerGrid.threshold(fraction: 0) == 0)
        #expect(IntegerGrid.threshold(fraction: -0.0) == 0)
        #expect(IntegerGrid.threshold(fraction: 0.5) == 1 << 63)
        let y = -1e-30
        let fraction = y - y.rounded(.down)
        #expect(fraction == 1)  // the double arithmetic that produced the trap
        #expect(IntegerGrid.threshold(fraction: fraction) == UInt64.max)
    }

    @Test("a tiny negative coordinate rounds to 0 (or -1), in the reference and the streaming path alike")
    func tinyNegativeCoordinates() throws {
        let grid = try IntegerGrid(scale: 100, clipNorm: 1, dimension: 2, bitWidth: 16)
        var rng = SeededGenerator(seed: 1)
        for _ in 0 ..< 64 {
            let rounded = try grid.round([-1e-300, 0.5], using: &rng)
            #expect(rounded[0] == 0 || rounded[0] == -1)
            #expect(rounded[1] == 50)
        }

        let privacy = PrivacyConfiguration(clipNorm: 1, noiseMultiplier: 1, bitWidth: 16, mode: .local, unit: .device)
        let privatizer = try UpdatePrivatizer(configuration: privacy, dimension: Self.tiny.count)
        var reference = SeededGenerator(seed: 9)
        var streaming = SeededGenerator(seed: 9)
        let update = try privatizer.privatize(sessions: [Self.tiny], using: &reference)
        var accumulator = try UpdateAccumulator<Float>(privatizer: privatizer)
        try accumulator.add([Self.tiny], using: &streaming)
        #expect(update.values.count == Self.tiny.count)
        #expect(accumulator.contributions == 1)
    }
}
