import CHearthMath
import HearthCore
import HearthPrivacy

/// The server optimiser applied to the averaged update Δ̄ (Reddi et al. 2021, "Adaptive
/// Federated Optimization", Algorithm 2; momentum as Hsu, Qi, Brown 2019). η is
/// `FedBuffConfiguration.serverLearningRate`; Δ̄ is the devices' mean (new − old) parameters, so
/// every rule moves the model *along* Δ̄.
public enum ServerOptimizer: Sendable, Hashable {
    /// x ← x + η·Δ̄.
    case fedAvg
    /// m ← β·m + Δ̄; x ← x + η·m (m starts at 0).
    case fedAvgM(momentum: Double)
    /// m ← β₁·m + (1 − β₁)·Δ̄; v ← β₂·v + (1 − β₂)·Δ̄²; x ← x + η·m / (√v + τ), per coordinate,
    /// without bias correction, m starting at 0 and v at τ² (v₋₁ ≥ τ² in Reddi et al.).
    case fedAdam(beta1: Double, beta2: Double, tau: Double)
}

/// How the buffered asynchronous aggregator (FedBuff) publishes.
public struct FedBuffConfiguration: Sendable, Hashable {
    /// K: publish when this many updates are buffered; also the fixed averaging denominator.
    public var bufferSize: Int
    /// Publish at the deadline only with at least this many updates (1...K).
    public var minimumUpdates: Int
    /// Seconds after a round starts (the last publication) at which a partial buffer is published.
    public var roundDeadlineSeconds: Double
    /// η, the server learning rate.
    public var serverLearningRate: Double
    /// The server optimiser.
    public var optimizer: ServerOptimizer
    /// a in the staleness weight (1 + s)^−a (FedBuff's polynomial weight); 0 weighs all updates 1.
    public var stalenessExponent: Double

    /// A configuration; `FedBuffAggregator.init` validates it.
    public init(bufferSize: Int, minimumUpdates: Int = 1, roundDeadlineSeconds: Double = 3600,
                serverLearningRate: Double = 1, optimizer: ServerOptimizer = .fedAvg, stalenessExponent: Double = 0.5) {
        self.bufferSize = bufferSize
        self.minimumUpdates = minimumUpdates
        self.roundDeadlineSeconds = roundDeadlineSeconds
        self.serverLearningRate = serverLearningRate
        self.optimizer = optimizer
        self.stalenessExponent = stalenessExponent
    }

    /// Checks the fields: 1 ≤ minimumUpdates ≤ bufferSize, deadline and learning rate finite and
    /// > 0, exponent finite and ≥ 0, momentum and betas in [0, 1), τ finite and > 0.
    public func validate() throws(AggregationError) {
        guard bufferSize >= 1 else { throw .invalidConfiguration("bufferSize must be >= 1, got \(bufferSize)") }
        guard minimumUpdates >= 1, minimumUpdates <= bufferSize else {
            throw .invalidConfiguration("minimumUpdates must be in 1...\(bufferSize), got \(minimumUpdates)")
        }
        guard roundDeadlineSeconds.isFinite, roundDeadlineSeconds > 0 else {
            throw .invalidConfiguration("roundDeadlineSeconds must be finite and > 0, got \(roundDeadlineSeconds)")
        }
        guard serverLearningRate.isFinite, serverLearningRate > 0 else {
            throw .invalidConfiguration("serverLearningRate must be finite and > 0, got \(serverLearningRate)")
        }
        guard stalenessExponent.isFinite, stalenessExponent >= 0 else {
            throw .invalidConfiguration("stalenessExponent must be finite and >= 0, got \(stalenessExponent)")
        }
        func unitInterval(_ x: Double, _ name: String) throws(AggregationError) {
            guard x.isFinite, x >= 0, x < 1 else { throw .invalidConfiguration("\(name) must be in [0, 1), got \(x)") }
        }
        switch optimizer {
        case .fedAvg: break
        case .fedAvgM(let momentum): try unitInterval(momentum, "momentum")
        case .fedAdam(let beta1, let beta2, let tau):
            try unitInterval(beta1, "beta1")
            try unitInterval(beta2, "beta2")
            guard tau.isFinite, tau > 0 else { throw .invalidConfiguration("tau must be finite and > 0, got \(tau)") }
        }
    }
}

/// The server optimiser's state, persisted with each model version so a restart resumes it.
public struct OptimizerState: Sendable, Hashable {
    /// m (FedAvgM, FedAdam), one per parameter in the `flattened()` layout; nil until first used.
    public var firstMoment: [Float]?
    /// v (FedAdam), one per parameter; nil until first used.
    public var secondMoment: [Float]?
    /// Optimiser steps taken (publications).
    public var steps: Int

    /// A state; the default is the fresh one.
    public init(firstMoment: [Float]? = nil, secondMoment: [Float]? = nil, steps: Int = 0) {
        self.firstMoment = firstMoment
        self.secondMoment = secondMoment
        self.steps = steps
    }
}

/// One published model version.
public struct Publication: Sendable {
    /// The new model version (the previous one + 1).
    public var modelVersion: UInt64
    /// The new parameters.
    public var parameters: GlobalParameters
    /// Updates folded into this version.
    public var updates: Int
    /// The fixed denominator K the weighted sum was divided by.
    public var denominator: Int
    /// Σ of the updates' staleness weights (each a multiple of 1/16 in (0, 1]).
    public var weightSum: Double
    /// σ of the central noise added to each coordinate of the sum, in grid steps of one update
    /// (z·Δ, rounded up as the exact sampler's rational parameter); 0 in local mode.
    public var noiseStandardDeviation: Double
    /// The same σ on the averaged update Δ̄, in parameter units (σ / (K·scale)); 0 in local mode.
    public var averageNoiseStandardDeviation: Double
    /// The plan's noise multiplier z (what the central ledger accounts).
    public var noiseMultiplier: Double
    /// The grid scale the sum was on (grid steps per parameter unit).
    public var scale: Double
}

/// Buffered asynchronous federated averaging (FedBuff, Nguyen et al. 2022, AISTATS) over
/// integer grid updates, with central discrete Gaussian noise in central mode.
///
/// State: one `Int64` running sum of d coordinates (in sixteenths of a grid step), the Float
/// parameters and the optimiser moments; nothing per upload (the server keeps the accepted
/// bytes durable and deduplicates idempotency keys; after a restart it re-folds them in any
/// order and gets the same sum, because integer addition is exact and commutative).
///
/// Staleness weights: an update trained s versions ago counts with w(s) = m(s)/16, where
/// m(s) = clamp(round(16·(1 + s)^−a), 1, 16), so w is (1 + s)^−a quantised to sixteenths (never
/// 0: a stale update still counts a little, never more than 1). The running sum is Σ m·v, an
/// integer, and one unit changes it by at most 16·Δ in L2 (‖m·v‖ ≤ 16‖v‖ ≤ 16·k·Δ; k = 1 for the
/// device unit): the central noise is therefore drawn with σ = 16·z·Δ on this sum, the same
/// noise multiplier z relative to the (exact, integer) sensitivity. Weights ≤ 1 only lower a
/// unit's influence, so the accountant's z is conservative.
public struct FedBuffAggregator: Sendable {
    /// Weights and the running sum are in units of 1/16.
    public static let weightDenominator: Int64 = 16

    /// The current parameters (the last published version).
    public private(set) var parameters: GlobalParameters
    /// The server optimiser's state.
    public private(set) var optimizerState: OptimizerState
    /// The configuration.
    public let configuration: FedBuffConfiguration
    /// The plan; `modelVersion` is the current version and advances by one per publication.
    public private(set) var plan: FederationPlan
    /// The plan's grid (device noise: the plan's z in local mode, none in central mode).
    public let grid: IntegerGrid
    /// Updates folded since the last publication.
    public private(set) var bufferedCount: Int = 0
    /// Σ of the buffered updates' weights, in sixteenths.
    public private(set) var bufferedWeight: Int64 = 0
    /// Central mode: the discrete Gaussian with σ² ≥ (16·z·Δ)² added to the sixteenths sum.
    private let centralNoise: DiscreteGaussian?
    /// Σ m·v, in sixteenths of a grid step.
    private var sum: [Int64]

    /// An aggregator resuming from `parameters` (the model at `plan.modelVersion`) and `optimizerState`.
    ///
    /// Throws `invalid_plan` (including a central σ = 16·z·Δ beyond the exact sampler's range
    /// — use a smaller bit width), `invalid_configuration`, `dimension_mismatch` for moments of
    /// the wrong length, and `invalid_configuration` when K·16·(2^(b−1) − 1) could overflow the
    /// Int64 sum.
    public init(parameters: GlobalParameters, configuration: FedBuffConfiguration, plan: FederationPlan,
                optimizerState: OptimizerState = OptimizerState()) throws(AggregationError) {
        try plan.validate()
        try configuration.validate()
        let d = parameters.parameterCount
        guard d > 0 else { throw .dimensionMismatch("the model has no parameters") }
        if let m = optimizerState.firstMoment, m.count != d {
            throw .dimensionMismatch("first moment has \(m.count) values, the model \(d) parameters")
        }
        if let v = optimizerState.secondMoment, v.count != d {
            throw .dimensionMismatch("second moment has \(v.count) values, the model \(d) parameters")
        }
        guard optimizerState.steps >= 0 else { throw .invalidConfiguration("optimizer steps are negative") }
        let grid = try plan.grid(dimension: d)
        // |sum| ≤ K·16·(2^(b−1) − 1) + noise; keep the data part below 2^62.
        let perUpdate = FedBuffAggregator.weightDenominator * grid.maxMagnitude
        guard Int64(configuration.bufferSize) <= (Int64(1) << 62) / perUpdate else {
            throw .invalidConfiguration("bufferSize \(configuration.bufferSize) could overflow the Int64 sum at \(plan.bitWidth) bits")
        }
        if plan.mode == .central {
            let sigma = Double(FedBuffAggregator.weightDenominator) * plan.noiseMultiplier * grid.sensitivity
            do {
                centralNoise = try DiscreteGaussian(varianceAtLeast: sigma * sigma)
            } catch {
                throw .invalidPlan("central noise σ = 16·z·Δ = \(sigma) is out of the exact sampler's range (\(error.message)); lower the bit width or z")
            }
        } else {
            centralNoise = nil
        }
        self.parameters = parameters
        self.optimizerState = optimizerState
        self.configuration = configuration
        self.plan = plan
        self.grid = grid
        self.sum = [Int64](repeating: 0, count: d)
    }

    /// The number of parameters d (the length of every update).
    public var dimension: Int { sum.count }

    /// The running sum Σ m·v in sixteenths (for tests; a copy of d values).
    var runningSum: [Int64] { sum }

    /// The weight of an update `staleness` versions old, in sixteenths: clamp(round(16·(1 + s)^−a), 1, 16).
    public static func weightSixteenths(staleness: Int, exponent: Double) -> Int64 {
        guard staleness > 0, exponent > 0 else { return weightDenominator }
        let w = hearth_exp(-exponent * hearth_log(1 + Double(staleness)))
        let m = Int64((Double(weightDenominator) * w).rounded(.toNearestOrEven))
        return m < 1 ? 1 : (m > weightDenominator ? weightDenominator : m)
    }

    /// Folds one validated upload into the running integer sum without materialising it (the
    /// packed values are streamed from `bytes`).
    ///
    /// `update` must be what `UpdateValidator.validate` returned for these `bytes` against this
    /// aggregator's plan; the length, CRC field and idempotency key are cross-checked
    /// (`update_mismatch`). The staleness is recomputed against the aggregator's current version
    /// (`stale_model_version` if it is now too old). Throws `buffer_full` once K are buffered:
    /// publish first. Nothing is changed when it throws. Deterministic: the same bytes folded
    /// into the same state give the same sum.
    public mutating func fold(_ bytes: [UInt8], _ update: ValidatedUpdate) throws(AggregationError) {
        guard bufferedCount < configuration.bufferSize else {
            throw .bufferFull("\(bufferedCount) updates are buffered (K = \(configuration.bufferSize)); publish first")
        }
        guard update.dimension == dimension else {
            throw .dimensionMismatch("update has \(update.dimension) values, the model has \(dimension) parameters")
        }
        guard update.mode == plan.mode, update.bitWidth == plan.bitWidth, update.unit == plan.unit else {
            throw .updateMismatch("update (\(update.mode.name), \(update.unit.name), \(update.bitWidth) bits) was not validated against this plan")
        }
        guard update.modelVersion <= plan.modelVersion else {
            throw .unknownModelVersion("update trained from model version \(update.modelVersion), but the newest is \(plan.modelVersion)")
        }
        let behind = plan.modelVersion - update.modelVersion
        guard behind <= UInt64(plan.maxStaleness) else {
            throw .staleModelVersion("update trained from model version \(update.modelVersion) is \(behind) versions behind \(plan.modelVersion); at most \(plan.maxStaleness) accepted")
        }
        var reader: UpdateEnvelope.PackedValues
        do {
            reader = try UpdateEnvelope.PackedValues(bytes, dimension: update.dimension, bitWidth: update.bitWidth)
        } catch {
            throw .updateMismatch("bytes are not an envelope of \(update.dimension) values at \(update.bitWidth) bits")
        }
        let n = bytes.count
        let storedChecksum = UInt32(bytes[n - 4]) | UInt32(bytes[n - 3]) << 8 | UInt32(bytes[n - 2]) << 16 | UInt32(bytes[n - 1]) << 24
        guard storedChecksum == update.checksum, Array(bytes[64 ..< 80]) == update.idempotencyKey.bytes else {
            throw .updateMismatch("bytes do not carry the checksum and idempotency key of the validated update")
        }
        let sameGrid = UpdateValidator.scalesMatch(update.scale, grid.scale)
        if !sameGrid && plan.mode == .central {
            throw .planMismatch("grid scale is \(update.scale), the plan implies \(grid.scale)")
        }
        let m = FedBuffAggregator.weightSixteenths(staleness: Int(behind), exponent: configuration.stalenessExponent)
        let limit = grid.maxMagnitude
        if sameGrid {
            var i = 0
            while let v = reader.next() {
                // Validated values are within ±limit; clamp anyway so that the bound on the sum holds.
                let c = v < -limit ? -limit : v
                sum[i] += m * c
                i += 1
            }
        } else {
            // Local mode, a device that chose more noise than the plan (so a smaller scale): its
            // values are re-expressed on the plan's grid, rounded to nearest and saturated to the
            // plan's bit width (post-processing of an already private upload).
            let ratio = grid.scale / update.scale
            let top = Double(limit)
            var i = 0
            while let v = reader.next() {
                var x = (Double(v) * ratio).rounded(.toNearestOrEven)
                x = x > top ? top : (x < -top ? -top : x)
                sum[i] += m * Int64(x)
                i += 1
            }
        }
        bufferedCount += 1
        bufferedWeight += m
    }

    /// Whether to publish now: K updates are buffered, or the round's deadline has passed with at
    /// least `minimumUpdates`.
    public func shouldPublish(secondsSinceRoundStart: Double) -> Bool {
        if bufferedCount >= configuration.bufferSize { return true }
        return secondsSinceRoundStart >= configuration.roundDeadlineSeconds && bufferedCount >= configuration.minimumUpdates
    }

    /// Drops the buffered updates without publishing (e.g. after a rollback).
    public mutating func discardBuffer() {
        for i in 0 ..< sum.count { sum[i] = 0 }
        bufferedCount = 0
        bufferedWeight = 0
    }

    /// Publishes the next model version and resets the buffer.
    ///
    /// 1. Central mode: adds discrete Gaussian noise (HearthPrivacy's exact sampler, σ = 16·z·Δ
    ///    on the sixteenths sum) to every coordinate of the integer sum, once.
    /// 2. Averages with the FIXED denominator K: Δ̄ = (Σ m·v + noise) / (16·K·scale), whatever the
    ///    number of buffered updates n ≤ K. Dividing by n would make the released value depend
    ///    on a count that is itself private (n changes by one when a unit is added or removed)
    ///    and would scale the noise by 1/n, so the privacy analysis of the noised sum — which
    ///    the accountant covers — would no longer apply; with public K the average is
    ///    post-processing of the noised sum (McMahan et al. 2018, DP-FedAvg's fixed-denominator
    ///    estimator; FedBuff also divides by K). A deadline round with n < K takes a
    ///    proportionally shorter step.
    /// 3. Applies the server optimiser with the server learning rate.
    ///
    /// Throws `buffer_empty` when nothing is buffered. The caller checks the budget first
    /// (`CentralAccounting.canPublish`).
    public mutating func publish<R: RandomNumberGenerator>(using rng: inout R) throws(AggregationError) -> Publication {
        guard bufferedCount > 0 else { throw .bufferEmpty("no updates are buffered for model version \(plan.modelVersion + 1)") }
        let d = dimension
        if let noise = centralNoise {
            for i in 0 ..< d { sum[i] += noise.sample(using: &rng) }
        }
        let k = configuration.bufferSize
        let factor = 1 / (Double(FedBuffAggregator.weightDenominator) * Double(k) * grid.scale)
        let eta = configuration.serverLearningRate
        let embeddingCount = parameters.embeddings.count
        switch configuration.optimizer {
        case .fedAvg:
            for i in 0 ..< d {
                apply(eta * Double(sum[i]) * factor, at: i, embeddingCount: embeddingCount)
            }
        case .fedAvgM(let beta):
            var m = optimizerState.firstMoment ?? [Float](repeating: 0, count: d)
            optimizerState.firstMoment = nil  // unique ownership while updating in place
            for i in 0 ..< d {
                let mi = beta * Double(m[i]) + Double(sum[i]) * factor
                m[i] = Float(mi)
                apply(eta * mi, at: i, embeddingCount: embeddingCount)
            }
            optimizerState.firstMoment = m
        case .fedAdam(let beta1, let beta2, let tau):
            var m = optimizerState.firstMoment ?? [Float](repeating: 0, count: d)
            var v = optimizerState.secondMoment ?? [Float](repeating: Float(tau * tau), count: d)
            optimizerState.firstMoment = nil
            optimizerState.secondMoment = nil
            for i in 0 ..< d {
                let g = Double(sum[i]) * factor
                let mi = beta1 * Double(m[i]) + (1 - beta1) * g
                let vi = beta2 * Double(v[i]) + (1 - beta2) * g * g
                m[i] = Float(mi)
                v[i] = Float(vi)
                apply(eta * mi / (vi.squareRoot() + tau), at: i, embeddingCount: embeddingCount)
            }
            optimizerState.firstMoment = m
            optimizerState.secondMoment = v
        }
        let sigma = centralNoise.map { $0.variance.squareRoot() / Double(FedBuffAggregator.weightDenominator) } ?? 0
        let publication = Publication(modelVersion: plan.modelVersion + 1, parameters: parameters, updates: bufferedCount,
                                      denominator: k,
                                      weightSum: Double(bufferedWeight) / Double(FedBuffAggregator.weightDenominator),
                                      noiseStandardDeviation: sigma,
                                      averageNoiseStandardDeviation: sigma / (Double(k) * grid.scale),
                                      noiseMultiplier: plan.noiseMultiplier, scale: grid.scale)
        optimizerState.steps += 1
        plan.modelVersion += 1
        discardBuffer()
        return publication
    }

    /// x_i ← x_i + step, in the `flattened()` layout (embeddings, then biases).
    private mutating func apply(_ step: Double, at i: Int, embeddingCount: Int) {
        if i < embeddingCount {
            parameters.embeddings[i] = Float(Double(parameters.embeddings[i]) + step)
        } else {
            parameters.bias[i - embeddingCount] = Float(Double(parameters.bias[i - embeddingCount]) + step)
        }
    }
}
