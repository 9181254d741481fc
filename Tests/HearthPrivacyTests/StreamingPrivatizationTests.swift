import Testing
@testable import HearthPrivacy
import HearthTestSupport

/// The streaming privacy path (`UpdateAccumulator`, `UpdateEnvelopeWriter`) against the
/// reference path (`UpdatePrivatizer.privatize(sessions:)`, `UpdateEnvelope.encode`).
@Suite("Streaming privatization", .computeLane)
struct StreamingPrivatizationTests {
    /// A vector split into pieces at the given cut points.
    func pieces(_ v: [Float], cuts: [Int]) -> [[Float]] {
        var out: [[Float]] = []
        var start = 0
        for cut in cuts + [v.count] {
            out.append(Array(v[start ..< cut]))
            start = cut
        }
        return out
    }

    func randomVector(_ d: Int, magnitude: Double, _ rng: inout SeededGenerator) -> [Float] {
        (0 ..< d).map { _ in Float((uniform(&rng) * 2 - 1) * magnitude) }
    }

    func stream(_ privatizer: UpdatePrivatizer, _ contributions: [[[Float]]], seed: UInt64) throws
        -> (values: [Int64], summary: UpdateAccumulator<Float>.Summary) {
        var rng = SeededGenerator(seed: seed)
        var accumulator = try UpdateAccumulator<Float>(privatizer: privatizer)
        for c in contributions { try accumulator.add(c, using: &rng) }
        var values: [Int64] = []
        let summary = try accumulator.finish(using: &rng) { (v: Int64) throws(PrivacyError) in values.append(v) }
        return (values, summary)
    }

    @Test("device unit: the same values as privatize, draw for draw", arguments: [UpdateMode.local, .central])
    func deviceUnitMatchesReference(mode: UpdateMode) throws {
        var data = SeededGenerator(seed: 5)
        for (d, magnitude) in [(1, 0.3), (7, 10.0), (300, 0.01), (1000, 5.0)] {
            let v = randomVector(d, magnitude: magnitude, &data)
            let p = try UpdatePrivatizer(configuration: PrivacyConfiguration(clipNorm: 1, noiseMultiplier: 1.3, bitWidth: 16, mode: mode), dimension: d)
            var rng = SeededGenerator(seed: UInt64(d))
            let reference = try p.privatize(update: v, using: &rng)
            let cuts = d > 3 ? [d / 3, d / 2] : []
            let streamed = try stream(p, [pieces(v, cuts: cuts)], seed: UInt64(d))
            #expect(streamed.values == reference.values)
            #expect(streamed.summary.saturatedCoordinates == reference.saturatedCoordinates)
            #expect(streamed.summary.contributions == 1)
            #expect(streamed.summary.scale == reference.scale)
            #expect(streamed.summary.deviceNoiseNumerator == reference.deviceNoiseVariance?.numerator)
        }
    }

    /// An update held as its non-zero coordinates only, like a training overlay.
    struct SparseUpdate: UpdateCoordinates {
        var count: Int
        var nonZero: [Int: Float]
        func forEachCoordinate(_ body: (Float) -> Void) {
            for i in 0 ..< count { body(nonZero[i] ?? 0) }
        }
    }

    @Test("any UpdateCoordinates source (a sparse one here) gives privatize's values, draw for draw",
          arguments: [UpdateMode.local, .central], [PrivacyUnit.device, .session])
    func sparseSourceMatchesReference(mode: UpdateMode, unit: PrivacyUnit) throws {
        var data = SeededGenerator(seed: 11)
        let d = 2_000
        var nonZero: [Int: Float] = [:]
        for _ in 0 ..< 40 { nonZero[Int(uniform(&data) * Double(d))] = Float((uniform(&data) * 2 - 1) * 3) }
        let sparse = SparseUpdate(count: d, nonZero: nonZero)
        var dense = [Float](repeating: 0, count: d)
        for (i, v) in nonZero { dense[i] = v }
        let p = try UpdatePrivatizer(configuration: PrivacyConfiguration(clipNorm: 1, noiseMultiplier: 1.1, bitWidth: 16,
                                                                         mode: mode, unit: unit), dimension: d)
        var rng = SeededGenerator(seed: 3)
        let reference = try p.privatize(sessions: [dense], using: &rng)
        rng = SeededGenerator(seed: 3)
        var accumulator = try UpdateAccumulator<Float>(privatizer: p)
        try accumulator.add(coordinates: sparse, using: &rng)
        var values: [Int64] = []
        _ = try accumulator.finish(using: &rng) { (v: Int64) throws(PrivacyError) in values.append(v) }
        #expect(values == reference.values)
        // The check can fail: a different update gives different values.
        var other = sparse
        other.nonZero[0, default: 0] += 0.5
        rng = SeededGenerator(seed: 3)
        var changed = try UpdateAccumulator<Float>(privatizer: p)
        try changed.add(coordinates: other, using: &rng)
        var otherValues: [Int64] = []
        _ = try changed.finish(using: &rng) { (v: Int64) throws(PrivacyError) in otherValues.append(v) }
        #expect(otherValues != values)
    }

    @Test("session unit: each session clipped and rounded on its own, summed, same as privatize")
    func sessionUnitMatchesReference() throws {
        var data = SeededGenerator(seed: 9)
        let d = 257
        let sessions = (0 ..< 5).map { k in randomVector(d, magnitude: [0.001, 3, 0.2, 50, 1][k], &data) }
        let p = try UpdatePrivatizer(configuration: PrivacyConfiguration(
            clipNorm: 0.5, noiseMultiplier: 0.8, bitWidth: 20, unit: .session, maxSessionsPerUpdate: 5), dimension: d)
        var rng = SeededGenerator(seed: 77)
        let reference = try p.privatize(sessions: sessions, using: &rng)
        let streamed = try stream(p, sessions.map { pieces($0, cuts: [100]) }, seed: 77)
        #expect(streamed.values == reference.values)
        #expect(streamed.summary.contributions == 5)
        #expect(streamed.summary.saturatedCoordinates == reference.saturatedCoordinates)
        // One more session than configured is refused, as by privatize.
        var accumulator = try UpdateAccumulator<Float>(privatizer: p)
        for s in sessions { try accumulator.add([s], using: &rng) }
        #expect(throws: PrivacyError.tooManySessions) { try accumulator.add([sessions[0]], using: &rng) }
    }

    @Test("session unit with sparse sessions over an awkward dimension: same values and draws as privatize",
          arguments: [UpdateMode.local, .central])
    func sparseSessionsMatchReference(mode: UpdateMode) throws {
        var data = SeededGenerator(seed: 31)
        // Not a multiple of the block length; sessions touch the first, a middle and the short last block.
        let d = SparseTotal.blockLength * 40 + 77
        var sessions: [SparseUpdate] = []
        for k in 0 ..< 4 {
            var nonZero: [Int: Float] = [:]
            for _ in 0 ..< 30 { nonZero[Int(uniform(&data) * 64)] = Float((uniform(&data) * 2 - 1) * 2) }
            let middle = SparseTotal.blockLength * (7 + k % 2)
            for i in middle ..< middle + 64 { nonZero[i] = Float((uniform(&data) * 2 - 1) * 0.5) }
            for i in d - 10 ..< d { nonZero[i] = Float(k + 1) * 0.25 }
            sessions.append(SparseUpdate(count: d, nonZero: nonZero))
        }
        let dense = sessions.map { s in (0 ..< d).map { s.nonZero[$0] ?? 0 } }
        let p = try UpdatePrivatizer(configuration: PrivacyConfiguration(
            clipNorm: 0.8, noiseMultiplier: 1.2, bitWidth: 16, mode: mode, unit: .session, maxSessionsPerUpdate: 4), dimension: d)
        var rng = SeededGenerator(seed: 5)
        let reference = try p.privatize(sessions: dense, using: &rng)
        rng = SeededGenerator(seed: 5)
        var accumulator = try UpdateAccumulator<Float>(privatizer: p)
        for s in sessions { try accumulator.add(coordinates: s, using: &rng) }
        var values: [Int64] = []
        let summary = try accumulator.finish(using: &rng) { (v: Int64) throws(PrivacyError) in values.append(v) }
        #expect(values == reference.values)
        #expect(summary.contributions == 4)
        #expect(summary.saturatedCoordinates == reference.saturatedCoordinates)
    }

    @Test("the blocked total: adds, reads zeros where nothing landed, refuses Int32 overflow")
    func sparseTotal() {
        let d = SparseTotal.blockLength * 3 + 5
        var total = SparseTotal(count: d)
        #expect(total.allocatedBlocks == 0)
        var added = total.add(7, at: 1)
        #expect(added)
        added = total.add(-3, at: d - 1)
        #expect(added)
        added = total.add(-4, at: d - 1)
        #expect(added)
        #expect(total.allocatedBlocks == 2)
        var read: [Int32] = []
        total.forEachValue { read.append($0) }
        var expected = [Int32](repeating: 0, count: d)
        expected[1] = 7
        expected[d - 1] = -7
        #expect(read == expected)
        added = total.add(Int64(Int32.max) - 7, at: 1)
        #expect(added)
        added = total.add(1, at: 1)
        #expect(!added)
        read = []
        total.forEachValue { read.append($0) }
        #expect(read[1] == Int32.max)
    }

    @Test("without noise the streamed update is clipped and rounded within the sensitivity")
    func sensitivityBound() throws {
        var data = SeededGenerator(seed: 3)
        let d = 2000
        // Norm far above C: clipping must bring it back to C, rounding to at most Δ.
        let v = randomVector(d, magnitude: 1e4, &data)
        let p = try UpdatePrivatizer(configuration: PrivacyConfiguration(clipNorm: 2, noiseMultiplier: 1, bitWidth: 24, mode: .central), dimension: d)
        let streamed = try stream(p, [pieces(v, cuts: [1500])], seed: 4)
        var squared = 0.0
        for x in streamed.values { squared += Double(x) * Double(x) }
        #expect(squared.squareRoot() <= p.grid.sensitivity)
        // Unbiased direction: the dequantized update is close to the clipped vector.
        let clipped = try Clipping.clip(v, to: 2)
        var error = 0.0
        for i in 0 ..< d { error += (Double(streamed.values[i]) / p.grid.scale - clipped[i]) * (Double(streamed.values[i]) / p.grid.scale - clipped[i]) }
        #expect(error.squareRoot() <= Double(d).squareRoot() / p.grid.scale)
    }

    @Test("bad input is refused: wrong dimension, non-finite, empty")
    func refusals() throws {
        let p = try UpdatePrivatizer(configuration: PrivacyConfiguration(clipNorm: 1, noiseMultiplier: 1), dimension: 4)
        var rng = SeededGenerator(seed: 1)
        var accumulator = try UpdateAccumulator<Float>(privatizer: p)
        #expect(throws: PrivacyError.dimensionMismatch) { try accumulator.add([[1, 2], [3]], using: &rng) }
        #expect(throws: PrivacyError.nonFiniteUpdate) { try accumulator.add([[1, 2], [.nan, 4]], using: &rng) }
        #expect(throws: PrivacyError.emptyUpdate) { _ = try accumulator.finish(using: &rng) { (_: Int64) throws(PrivacyError) in } }
        try accumulator.add([[1, 2], [3, 4]], using: &rng)
        #expect(throws: PrivacyError.tooManySessions) { try accumulator.add([[1, 2, 3, 4]], using: &rng) }
    }

    @Test("the norm over pieces is the norm of the joined vector")
    func piecewiseNorm() throws {
        var data = SeededGenerator(seed: 12)
        let v = randomVector(999, magnitude: 3, &data)
        #expect(try Clipping.l2Norm(pieces: pieces(v, cuts: [1, 500, 998])) == Clipping.l2Norm(v))
        #expect(throws: PrivacyError.emptyUpdate) { try Clipping.l2Norm(pieces: [[Float](), []]) }
    }

    @Test("the envelope writer writes exactly what encode writes", arguments: [4, 13, 16, 20, 32])
    func writerMatchesEncode(bitWidth: Int) throws {
        var rng = SeededGenerator(seed: UInt64(bitWidth))
        let limit = (Int64(1) << Int64(bitWidth - 1)) - 1
        for d in [1, 2, 3, 9, 1001] {
            let values = (0 ..< d).map { _ in Int64(bitPattern: rng.next() % UInt64(2 * limit + 1)) - limit }
            let key = IdempotencyKey(using: &rng)
            let envelope = UpdateEnvelope(modelVersion: 42, mode: .local, unit: .session, contributions: 3,
                                          noiseMultiplier: 1.1, samplingRate: 0.5, clipNorm: 0.7, bitWidth: bitWidth,
                                          scale: 123.5, values: values, idempotencyKey: key)
            var writer = try UpdateEnvelopeWriter(modelVersion: 42, mode: .local, unit: .session, contributions: 3,
                                                  noiseMultiplier: 1.1, samplingRate: 0.5, clipNorm: 0.7, bitWidth: bitWidth,
                                                  scale: 123.5, dimension: d, idempotencyKey: key)
            for v in values { try writer.append(v) }
            let bytes = try writer.finish()
            #expect(bytes == (try envelope.encode()))
            #expect(try UpdateEnvelope.decode(bytes) == envelope)
        }
    }

    @Test("seal: the same envelope as privatize then encode, draw for draw", arguments: [UpdateMode.local, .central])
    func sealMatchesPrivatizeThenEncode(mode: UpdateMode) throws {
        var data = SeededGenerator(seed: 21)
        let d = 513
        let v = randomVector(d, magnitude: 0.4, &data)
        let p = try UpdatePrivatizer(configuration: PrivacyConfiguration(clipNorm: 0.5, noiseMultiplier: 1.7, bitWidth: 16, mode: mode),
                                     dimension: d)
        var keys = SeededGenerator(seed: 8)
        let key = IdempotencyKey(using: &keys)
        var referenceRNG = SeededGenerator(seed: 99)
        let reference = try p.privatize(update: v, using: &referenceRNG)
        let envelope = UpdateEnvelope(update: reference, configuration: p.configuration, modelVersion: 7, samplingRate: 0.25,
                                      idempotencyKey: key)
        var rng = SeededGenerator(seed: 99)
        var accumulator = try UpdateAccumulator<Float>(privatizer: p)
        try accumulator.add(pieces(v, cuts: [200]), using: &rng)
        let sealed = try accumulator.seal(modelVersion: 7, samplingRate: 0.25, idempotencyKey: key, using: &rng)
        #expect(sealed.payload == (try envelope.encode()))
        #expect(sealed.idempotencyKey == key)
        #expect(sealed.summary.saturatedCoordinates == reference.saturatedCoordinates)
        // Both generators are at the same point afterwards: no extra or missing draw.
        #expect(rng.next() == referenceRNG.next())
    }

    @Test("the envelope writer refuses what encode refuses")
    func writerRefusals() throws {
        var rng = SeededGenerator(seed: 1)
        let key = IdempotencyKey(using: &rng)
        func writer(mode: UpdateMode = .local, unit: PrivacyUnit = .device, contributions: Int = 1, z: Double = 1,
                    bitWidth: Int = 8, dimension: Int = 2) throws(PrivacyError) -> UpdateEnvelopeWriter {
            try UpdateEnvelopeWriter(modelVersion: 1, mode: mode, unit: unit, contributions: contributions, noiseMultiplier: z,
                                     samplingRate: 1, clipNorm: 1, bitWidth: bitWidth, scale: 1, dimension: dimension,
                                     idempotencyKey: key)
        }
        #expect(throws: PrivacyError.modeNotSupported) { try writer(mode: .secureAggregation) }
        #expect(throws: PrivacyError.invalidBitWidth) { try writer(bitWidth: 3) }
        #expect(throws: PrivacyError.invalidNoiseMultiplier) { try writer(z: 0) }
        #expect(throws: PrivacyError.tooManySessions) { try writer(contributions: 2) }
        #expect(throws: PrivacyError.malformedEnvelope) { try writer(dimension: 0) }
        var w = try writer()
        #expect(throws: PrivacyError.valueOutOfRange) { try w.append(128) }
        #expect(throws: PrivacyError.valueOutOfRange) { try w.append(-128) }
        try w.append(127)
        var short = w
        #expect(throws: PrivacyError.malformedEnvelope) { try short.finish() }
        try w.append(-127)
        #expect(throws: PrivacyError.malformedEnvelope) { try w.append(0) }
        let bytes = try w.finish()
        #expect(try UpdateEnvelope.decode(bytes).values == [127, -127])
        #expect(throws: PrivacyError.malformedEnvelope) { try w.finish() }
    }
}
