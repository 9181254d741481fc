import HearthCore
@testable import HearthPrivacy
import Testing
@testable import HearthAggregation
import HearthTestSupport

/// Folding, publishing, optimisers, staleness weights and central noise.
@Suite(.computeLane) struct FedBuffTests {
    static func aggregator(plan: FederationPlan, bufferSize: Int = 2, minimum: Int = 1, learningRate: Double = 1,
                           optimizer: ServerOptimizer = .fedAvg, exponent: Double = 0.5,
                           parameters: GlobalParameters = Fixture.parameters()) throws(AggregationError) -> FedBuffAggregator {
        try FedBuffAggregator(parameters: parameters,
                              configuration: FedBuffConfiguration(bufferSize: bufferSize, minimumUpdates: minimum,
                                                                  roundDeadlineSeconds: 60, serverLearningRate: learningRate,
                                                                  optimizer: optimizer, stalenessExponent: exponent),
                              plan: plan)
    }

    /// Validates and folds.
    static func fold(_ bytes: [UInt8], into aggregator: inout FedBuffAggregator) throws {
        let update = try UpdateValidator.validate(bytes, plan: aggregator.plan, currentVersion: aggregator.plan.modelVersion,
                                                  dimension: aggregator.dimension)
        try aggregator.fold(bytes, update)
    }

    static func reason(_ body: () throws(AggregationError) -> Void) -> String? { Fixture.reason(body) }

    // MARK: - Folding

    @Test("folding streams the same sum as decode-then-sum (×16 at staleness 0), in any order", arguments: [UpdateMode.central, .local])
    func foldEqualsDecodeThenSum(mode: UpdateMode) throws {
        let plan = Fixture.plan(mode: mode, bitWidth: 16)
        let uploads = try (UInt64(1) ... 5).map { try Fixture.privatizedBytes(plan: plan, seed: $0) }
        var expected = [Int64](repeating: 0, count: Fixture.dimension)
        for bytes in uploads {
            let values = try UpdateEnvelope.decode(bytes).values
            for i in 0 ..< values.count { expected[i] += 16 * values[i] }
        }
        var forward = try Self.aggregator(plan: plan, bufferSize: 5)
        for bytes in uploads { try Self.fold(bytes, into: &forward) }
        #expect(forward.runningSum == expected)
        #expect(forward.bufferedCount == 5 && forward.bufferedWeight == 80)
        // A restart re-folds the stored bytes, here in reverse order: the same sum.
        var restarted = try Self.aggregator(plan: plan, bufferSize: 5)
        for bytes in uploads.reversed() { try Self.fold(bytes, into: &restarted) }
        #expect(restarted.runningSum == forward.runningSum)
        #expect(expected.contains { $0 != 0 })
    }

    @Test("staleness weight (1 + s)^−a quantised to sixteenths, clamped to [1/16, 1]", arguments: [
        (0, 0.5, 16), (1, 0.5, 11), (2, 0.5, 9), (3, 0.5, 8), (3, 1.0, 4), (1, 0.0, 16), (1000, 1.0, 1), (0, 3.0, 16),
    ])
    func weights(staleness: Int, exponent: Double, sixteenths: Int64) {
        #expect(FedBuffAggregator.weightSixteenths(staleness: staleness, exponent: exponent) == sixteenths)
    }

    @Test("a stale update is folded with its weight: s = 2, a = 1 gives 5/16")
    func staleFold() throws {
        let plan = Fixture.plan()
        let values: [Int64] = [3, -2, 0, 1, 5, -4, 0, 2, -1]
        var aggregator = try Self.aggregator(plan: plan, exponent: 1)
        try Self.fold(try Fixture.envelope(values, plan: plan, modelVersion: 8).encode(), into: &aggregator)
        #expect(aggregator.runningSum == values.map { 5 * $0 })  // round(16/3) = 5
        #expect(aggregator.bufferedWeight == 5)
    }

    @Test("fold refuses bytes that are not the validated update's, and changes nothing")
    func foldCrossChecks() throws {
        let plan = Fixture.plan()
        var aggregator = try Self.aggregator(plan: plan)
        let first = try Fixture.envelope([1, 1, 1, 1, 1, 1, 1, 1, 1], plan: plan, seed: 1).encode()
        let second = try Fixture.envelope([2, 2, 2, 2, 2, 2, 2, 2, 2], plan: plan, seed: 2).encode()
        let validatedFirst = try UpdateValidator.validate(first, plan: plan, currentVersion: 10, dimension: 9)
        #expect(Self.reason { () throws(AggregationError) in try aggregator.fold(second, validatedFirst) } == "update_mismatch")
        #expect(Self.reason { () throws(AggregationError) in try aggregator.fold(Array(first.dropLast()), validatedFirst) } == "update_mismatch")
        #expect(aggregator.bufferedCount == 0 && aggregator.runningSum.allSatisfy { $0 == 0 })
        var other = validatedFirst
        other.dimension = 10
        #expect(Self.reason { () throws(AggregationError) in try aggregator.fold(first, other) } == "dimension_mismatch")
    }

    @Test("fold refuses a (K+1)-th update with buffer_full")
    func bufferFull() throws {
        let plan = Fixture.plan()
        var aggregator = try Self.aggregator(plan: plan, bufferSize: 2)
        for seed in UInt64(1) ... 2 {
            try Self.fold(try Fixture.envelope([1, 0, 0, 0, 0, 0, 0, 0, 0], plan: plan, seed: seed).encode(), into: &aggregator)
        }
        let third = try Fixture.envelope([1, 0, 0, 0, 0, 0, 0, 0, 0], plan: plan, seed: 3).encode()
        let update = try UpdateValidator.validate(third, plan: plan, currentVersion: 10, dimension: 9)
        #expect(Self.reason { () throws(AggregationError) in try aggregator.fold(third, update) } == "buffer_full")
        #expect(aggregator.bufferedCount == 2)
    }

    @Test("an update validated before a publication is re-weighed, or refused once too stale")
    func stalenessAtFoldTime() throws {
        let plan = Fixture.plan(mode: .local)
        var aggregator = try Self.aggregator(plan: plan, bufferSize: 1, exponent: 1)
        let old = try Fixture.envelope([4, 0, 0, 0, 0, 0, 0, 0, 0], plan: plan, modelVersion: 8, seed: 9).encode()
        let validated = try UpdateValidator.validate(old, plan: plan, currentVersion: 10, dimension: 9)
        try Self.fold(try Fixture.envelope([1, 0, 0, 0, 0, 0, 0, 0, 0], plan: plan).encode(), into: &aggregator)
        var rng = SeededGenerator(seed: 1)
        _ = try aggregator.publish(using: &rng)
        #expect(aggregator.plan.modelVersion == 11)
        #expect(Self.reason { () throws(AggregationError) in try aggregator.fold(old, validated) } == "stale_model_version")
    }

    @Test("local mode: a device with more noise (smaller scale) is re-expressed on the plan's grid")
    func localRescale() throws {
        let plan = Fixture.plan(mode: .local)
        var aggregator = try Self.aggregator(plan: plan)
        let envelope = try Fixture.envelope([100, -100, 7, 0, 0, 0, 0, 0, 0], plan: plan, deviceNoiseMultiplier: 2)
        try Self.fold(try envelope.encode(), into: &aggregator)
        let ratio = aggregator.grid.scale / envelope.scale
        #expect(ratio > 1.5)
        let expected = envelope.values.map { 16 * Int64((Double($0) * ratio).rounded(.toNearestOrEven)) }
        #expect(aggregator.runningSum == expected)
    }

    // MARK: - Publishing

    @Test("shouldPublish: K reached, or the deadline passed with at least the minimum", arguments: [
        (0, 10.0, false), (0, 100.0, false), (1, 10.0, false), (1, 60.0, false), (2, 60.0, true), (2, 59.9, false), (3, 1.0, true),
    ])
    func shouldPublish(buffered: Int, seconds: Double, expected: Bool) throws {
        let plan = Fixture.plan(mode: .local)
        var aggregator = try Self.aggregator(plan: plan, bufferSize: 3, minimum: 2)
        for seed in 0 ..< UInt64(buffered) {
            try Self.fold(try Fixture.envelope([1, 0, 0, 0, 0, 0, 0, 0, 0], plan: plan, seed: seed).encode(), into: &aggregator)
        }
        #expect(aggregator.shouldPublish(secondsSinceRoundStart: seconds) == expected)
    }

    @Test("FedAvg with a fixed denominator K: one update, K = 4, η = 0.5 moves x by 0.5·v/(4·s)")
    func fedAvgFixedDenominator() throws {
        let plan = Fixture.plan(mode: .local)
        let start = Fixture.parameters()
        var aggregator = try Self.aggregator(plan: plan, bufferSize: 4, learningRate: 0.5, parameters: start)
        let values: [Int64] = [40, -20, 0, 10, 50, -40, 0, 20, -10]
        try Self.fold(try Fixture.envelope(values, plan: plan).encode(), into: &aggregator)
        var rng = SeededGenerator(seed: 3)
        let publication = try aggregator.publish(using: &rng)
        let s = aggregator.grid.scale
        let flat = start.flattened()
        let published = publication.parameters.flattened()
        for i in 0 ..< 9 {
            let expected = Float(Double(flat[i]) + 0.5 * Double(values[i]) / (4 * s))
            #expect(published[i] == expected)
        }
        // Dividing by the count (1) instead of K would have moved x four times as far.
        let moved = (0 ..< 9).map { Double(published[$0]) - Double(flat[$0]) }
        #expect(abs(moved[0] - 0.5 * 40 / (4 * s)) < 1e-6)
        #expect(abs(moved[0] - 0.5 * 40 / s) > 1e-3)
        #expect(publication.updates == 1 && publication.denominator == 4 && publication.weightSum == 1)
        #expect(publication.noiseStandardDeviation == 0 && publication.modelVersion == 11)
        #expect(aggregator.parameters == publication.parameters)
        #expect(aggregator.bufferedCount == 0 && aggregator.runningSum.allSatisfy { $0 == 0 })
        #expect(aggregator.optimizerState.steps == 1)
    }

    @Test("weighted average: fresh and stale updates, Δ̄ = (1·v₁ + w·v₂)/K")
    func weightedAverage() throws {
        let plan = Fixture.plan(mode: .local)
        let start = Fixture.parameters()
        var aggregator = try Self.aggregator(plan: plan, bufferSize: 2, exponent: 1, parameters: start)
        let v1: [Int64] = [16, 0, 0, 0, 0, 0, 0, 0, 32]
        let v2: [Int64] = [16, 48, 0, 0, 0, 0, 0, 0, 0]
        try Self.fold(try Fixture.envelope(v1, plan: plan, seed: 1).encode(), into: &aggregator)
        try Self.fold(try Fixture.envelope(v2, plan: plan, modelVersion: 9, seed: 2).encode(), into: &aggregator)  // w = 8/16
        var rng = SeededGenerator(seed: 3)
        let publication = try aggregator.publish(using: &rng)
        let s = aggregator.grid.scale
        let flat = start.flattened()
        let published = publication.parameters.flattened()
        for i in 0 ..< 9 {
            let average = (Double(v1[i]) + 0.5 * Double(v2[i])) / (2 * s)
            #expect(published[i] == Float(Double(flat[i]) + average))
        }
        #expect(publication.weightSum == 1.5)
    }

    /// Two publications of one update each (K = 1), hand-computed with the optimiser's formulas.
    static func twoSteps(_ optimizer: ServerOptimizer) throws -> (start: [Float], after: [Float], g1: [Double], g2: [Double], state: OptimizerState) {
        let plan = Fixture.plan(mode: .local)
        let start = Fixture.parameters()
        var aggregator = try Self.aggregator(plan: plan, bufferSize: 1, learningRate: 0.1, optimizer: optimizer, parameters: start)
        let v1: [Int64] = [100, -50, 0, 25, 10, -10, 5, 0, 1]
        let v2: [Int64] = [-100, -50, 20, 0, 10, 10, -5, 3, 0]
        var rng = SeededGenerator(seed: 1)
        try Self.fold(try Fixture.envelope(v1, plan: plan, seed: 1).encode(), into: &aggregator)
        _ = try aggregator.publish(using: &rng)
        try Self.fold(try Fixture.envelope(v2, plan: plan, modelVersion: 11, seed: 2).encode(), into: &aggregator)
        let publication = try aggregator.publish(using: &rng)
        let s = aggregator.grid.scale
        return (start.flattened(), publication.parameters.flattened(), v1.map { Double($0) / s }, v2.map { Double($0) / s },
                aggregator.optimizerState)
    }

    @Test("FedAvgM matches the hand computation over two steps (m ← βm + Δ̄; x ← x + ηm)")
    func fedAvgM() throws {
        let r = try Self.twoSteps(.fedAvgM(momentum: 0.9))
        for i in 0 ..< 9 {
            let m1 = r.g1[i]
            let x1 = Double(Float(Double(r.start[i]) + 0.1 * m1))
            let m2 = 0.9 * Double(Float(m1)) + r.g2[i]
            let x2 = Float(x1 + 0.1 * m2)
            #expect(r.after[i] == x2)
            #expect(r.state.firstMoment?[i] == Float(m2))
        }
        #expect(r.state.secondMoment == nil && r.state.steps == 2)
        // Momentum makes the second step differ from plain FedAvg's.
        let plain = try Self.twoSteps(.fedAvg)
        #expect(plain.after != r.after)
    }

    @Test("FedAdam matches the hand computation over two steps (v₋₁ = τ², no bias correction)")
    func fedAdam() throws {
        let (b1, b2, tau) = (0.9, 0.99, 1e-3)
        let r = try Self.twoSteps(.fedAdam(beta1: b1, beta2: b2, tau: tau))
        for i in 0 ..< 9 {
            let v0 = Double(Float(tau * tau))
            let m1 = (1 - b1) * r.g1[i]
            let v1 = b2 * v0 + (1 - b2) * r.g1[i] * r.g1[i]
            let x1 = Double(Float(Double(r.start[i]) + 0.1 * m1 / (Double(Float(v1)).squareRoot() * 0 + v1.squareRoot() + tau)))
            let m2 = b1 * Double(Float(m1)) + (1 - b1) * r.g2[i]
            let v2 = b2 * Double(Float(v1)) + (1 - b2) * r.g2[i] * r.g2[i]
            let x2 = Float(x1 + 0.1 * m2 / (v2.squareRoot() + tau))
            #expect(abs(r.after[i] - x2) <= 1e-6 * max(1, abs(x2)))
            #expect(r.state.firstMoment?[i] == Float(m2))
            #expect(r.state.secondMoment?[i] == Float(v2))
        }
        // First step of Adam moves every touched coordinate by about η·(1 − β₁)/√(1 − β₂) in sign.
        #expect(r.state.steps == 2)
    }

    @Test("publish with nothing buffered is buffer_empty")
    func bufferEmpty() throws {
        var aggregator = try Self.aggregator(plan: Fixture.plan())
        var rng = SeededGenerator(seed: 1)
        #expect(Self.reason { () throws(AggregationError) in _ = try aggregator.publish(using: &rng) } == "buffer_empty")
    }

    // MARK: - Central noise

    @Test("central mode adds discrete Gaussian noise with σ = 16·z·Δ on the sum, once per publication")
    func centralNoise() throws {
        let plan = Fixture.plan(bitWidth: 16, noiseMultiplier: 2)
        let start = Fixture.parameters(items: 400, width: 4)
        let d = start.parameterCount
        var aggregator = try Self.aggregator(plan: plan, bufferSize: 3, parameters: start)
        let zero = try Fixture.envelope([Int64](repeating: 0, count: d), plan: plan).encode()
        try Self.fold(zero, into: &aggregator)
        var rng = SeededGenerator(seed: 42)
        let publication = try aggregator.publish(using: &rng)
        let s = aggregator.grid.scale
        let delta = aggregator.grid.sensitivity
        // Recover the noise in sixteenths: (x' − x)·16·K·s.
        let before = start.flattened()
        let after = publication.parameters.flattened()
        let noise = (0 ..< d).map { (Double(after[$0]) - Double(before[$0])) * 16 * 3 * s }
        let mean = noise.reduce(0, +) / Double(d)
        let sd = (noise.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(d - 1)).squareRoot()
        #expect(abs(sd / (16 * 2 * delta) - 1) < 0.1)
        #expect(abs(mean) < 4 * 16 * 2 * delta / Double(d).squareRoot())
        #expect(abs(publication.noiseStandardDeviation / (2 * delta) - 1) < 1e-6)
        #expect(abs(publication.averageNoiseStandardDeviation - publication.noiseStandardDeviation / (3 * s)) < 1e-12)
        // Seeded: reproducible, and a different seed gives different noise.
        var again = try Self.aggregator(plan: plan, bufferSize: 3, parameters: start)
        try Self.fold(zero, into: &again)
        var same = SeededGenerator(seed: 42)
        #expect(try again.publish(using: &same).parameters == publication.parameters)
        var third = try Self.aggregator(plan: plan, bufferSize: 3, parameters: start)
        try Self.fold(zero, into: &third)
        var other = SeededGenerator(seed: 43)
        #expect(try third.publish(using: &other).parameters != publication.parameters)
    }

    @Test("local mode adds no central noise: a zero update publishes the same parameters")
    func localNoNoise() throws {
        let plan = Fixture.plan(mode: .local)
        let start = Fixture.parameters()
        var aggregator = try Self.aggregator(plan: plan, parameters: start)
        try Self.fold(try Fixture.envelope([Int64](repeating: 0, count: 9), plan: plan).encode(), into: &aggregator)
        var rng = SeededGenerator(seed: 1)
        #expect(try aggregator.publish(using: &rng).parameters == start)
    }

    @Test("z = 0 is refused: no plan releases an un-noised central sum", arguments: [UpdateMode.central, .local])
    func zeroNoiseRefused(mode: UpdateMode) {
        let plan = Fixture.plan(mode: mode, noiseMultiplier: 0)
        #expect(Self.reason { () throws(AggregationError) in _ = try Self.aggregator(plan: plan) } == "invalid_plan")
    }

    @Test("bad configurations and state are refused")
    func configurationRefused() {
        let plan = Fixture.plan()
        let p = Fixture.parameters()
        func initReason(_ c: FedBuffConfiguration, _ state: OptimizerState = OptimizerState()) -> String? {
            Self.reason { () throws(AggregationError) in _ = try FedBuffAggregator(parameters: p, configuration: c, plan: plan, optimizerState: state) }
        }
        #expect(initReason(FedBuffConfiguration(bufferSize: 0)) == "invalid_configuration")
        #expect(initReason(FedBuffConfiguration(bufferSize: 2, minimumUpdates: 3)) == "invalid_configuration")
        #expect(initReason(FedBuffConfiguration(bufferSize: 2, serverLearningRate: .nan)) == "invalid_configuration")
        #expect(initReason(FedBuffConfiguration(bufferSize: 2, optimizer: .fedAvgM(momentum: 1))) == "invalid_configuration")
        #expect(initReason(FedBuffConfiguration(bufferSize: 2, optimizer: .fedAdam(beta1: 0.9, beta2: 0.99, tau: 0))) == "invalid_configuration")
        #expect(initReason(FedBuffConfiguration(bufferSize: 2, stalenessExponent: -1)) == "invalid_configuration")
        #expect(initReason(FedBuffConfiguration(bufferSize: 1 << 50)) == "invalid_configuration")
        #expect(initReason(FedBuffConfiguration(bufferSize: 2), OptimizerState(firstMoment: [0, 0])) == "dimension_mismatch")
        #expect(initReason(FedBuffConfiguration(bufferSize: 2)) == nil)
    }

    @Test("a central σ beyond the exact sampler's range is refused at init (32-bit grid)")
    func centralSigmaOutOfRange() {
        let plan = Fixture.plan(bitWidth: 32, noiseMultiplier: 1)
        #expect(Self.reason { () throws(AggregationError) in _ = try Self.aggregator(plan: plan) } == "invalid_plan")
    }
}
