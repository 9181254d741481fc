import CHearthMath

/// Hyper-parameters of local training.
public struct TrainingConfiguration: Sendable, Equatable {
    /// SGD step for the global parameters (item embeddings and biases).
    public var learningRate: Float
    /// SGD step for the local embedding.
    public var localLearningRate: Float
    /// Sampled negatives per positive.
    public var negatives: Int
    /// Recent events that form the query, as in serving.
    public var historyLength: Int
    /// L2 weight decay on the rows a step touches.
    public var l2: Float
    /// Query construction, shared with serving.
    public var encoder: QueryEncoder

    public init(learningRate: Float = 0.05, localLearningRate: Float = 0.05, negatives: Int = 32,
                historyLength: Int = 20, l2: Float = 1e-5, encoder: QueryEncoder = QueryEncoder()) {
        self.learningRate = learningRate
        self.localLearningRate = localLearningRate
        self.negatives = negatives
        self.historyLength = historyLength
        self.l2 = l2
        self.encoder = encoder
    }
}

/// Next-event training with sampled softmax.
///
/// For each event `t` of a chronological sequence, the query is built from the events before it
/// (exactly as serving builds it) and the target is `t`'s item. The loss is the softmax cross
/// entropy of the target against `negatives` items drawn uniformly from the catalogue. With a
/// uniform proposal the logQ correction of sampled softmax is the same constant for every item
/// and cancels, so none is applied. The loss is weighted by the target event's kind
/// (a purchase teaches more than a view). Plain SGD, deterministic for a given generator.
public struct Trainer: Sendable {
    public var configuration: TrainingConfiguration

    public init(configuration: TrainingConfiguration = TrainingConfiguration()) {
        self.configuration = configuration
    }

    /// One pass over one chronological `sequence` of a single user or device.
    ///
    /// Updates `parameters` (global) and `local` (the device embedding) in place and returns the
    /// mean loss over the steps taken.
    @discardableResult
    public func train<P: TrainableParameters, R: RandomNumberGenerator>(
        sequence: ArraySlice<Event>, parameters: inout P, local: inout [Float], using rng: inout R
    ) -> Float {
        train(sequence: sequence, parameters: &parameters, local: &local, using: &rng, shouldStop: { false })
    }

    /// As `train(sequence:parameters:local:using:)`, asking `shouldStop` before every step and
    /// returning early (the steps taken so far stay applied) when it answers true. This is how a
    /// device bounds a round's time.
    /// `parameters` is the full float master or a round's `ParameterOverlay`: given the same
    /// starting values the two compute the same steps, bit for bit.
    @discardableResult
    public func train<P: TrainableParameters, R: RandomNumberGenerator>(
        sequence: ArraySlice<Event>, parameters: inout P, local: inout [Float], using rng: inout R,
        shouldStop: () -> Bool
    ) -> Float {
        let d = parameters.dimension
        let n = parameters.itemCount
        guard n > 1, local.count == d, !sequence.isEmpty else { return 0 }
        let config = configuration
        let candidates = config.negatives + 1
        var items = [Int](repeating: 0, count: candidates)
        var rowOffsets = [Int](repeating: 0, count: candidates)
        var logits = [Float](repeating: 0, count: candidates)
        var gradQuery = [Float](repeating: 0, count: d)
        var historyOffsets: [Int] = []
        historyOffsets.reserveCapacity(config.historyLength)
        var totalLoss: Float = 0
        var steps = 0
        for t in sequence.indices {
            if shouldStop() { break }
            let historyStart = max(sequence.startIndex, t - config.historyLength)
            let history = sequence[historyStart ..< t]
            let target = Int(sequence[t].item)
            guard target >= 0, target < n else { continue }
            let query = config.encoder.query(parameters: parameters, local: local, recent: history)
            items[0] = target
            for m in 1 ..< candidates {
                var negative = rng.nextIndex(below: n)
                if negative == target { negative = (negative + 1) % n }
                items[m] = negative
            }
            for m in 0 ..< candidates { rowOffsets[m] = parameters.writableRow(items[m]) }
            // The history rows the step writes back into (made writable first: storage may grow).
            let weights = config.encoder.weights(for: history)
            var total: Float = 0
            for w in weights { total += w }
            historyOffsets.removeAll(keepingCapacity: true)
            for event in history {
                historyOffsets.append(event.item >= 0 && Int(event.item) < n ? parameters.writableRow(Int(event.item)) : -1)
            }
            let weight = sequence[t].kind.weight
            let lr = config.learningRate
            let l2 = config.l2
            // The arithmetic runs on the storage's buffers, taken once per step: element by
            // element through the protocol, a generic caller pays an accessor call per value.
            let loss = parameters.withMutableStorage { embeddings, bias -> Float in
                // Logits and softmax.
                var maxLogit = -Float.greatestFiniteMagnitude
                for m in 0 ..< candidates {
                    let base = rowOffsets[m]
                    var s = bias[items[m]]
                    for c in 0 ..< d { s += query[c] * embeddings[base + c] }
                    logits[m] = s
                    if s > maxLogit { maxLogit = s }
                }
                var sum: Float = 0
                for m in 0 ..< candidates {
                    logits[m] = hearth_expf(logits[m] - maxLogit)
                    sum += logits[m]
                }
                let stepLoss = -weight * hearth_logf(max(logits[0] / sum, 1e-30))
                // Gradients: dL/ds_m = weight * (p_m - [m == 0]).
                for c in 0 ..< d { gradQuery[c] = 0 }
                for m in 0 ..< candidates {
                    let g = weight * (logits[m] / sum - (m == 0 ? 1 : 0))
                    let base = rowOffsets[m]
                    for c in 0 ..< d {
                        let e = embeddings[base + c]
                        gradQuery[c] += g * e
                        embeddings[base + c] = e - lr * (g * query[c] + l2 * e)
                    }
                    bias[items[m]] -= lr * g
                }
                // Back through the query: the history rows (the local embedding below).
                if total > 0 {
                    for (position, base) in historyOffsets.enumerated() where base >= 0 {
                        let a = weights[position] / total
                        for c in 0 ..< d { embeddings[base + c] -= lr * a * gradQuery[c] }
                    }
                }
                return stepLoss
            }
            totalLoss += loss
            steps += 1
            for c in 0 ..< d { local[c] -= config.localLearningRate * gradQuery[c] }
        }
        return steps > 0 ? totalLoss / Float(steps) : 0
    }

    /// Centralised training over many users' sequences for `epochs` passes, users shuffled each
    /// pass. `locals` holds one embedding per sequence (created when empty).
    public func train<R: RandomNumberGenerator>(
        sequences: [[Event]], parameters: inout GlobalParameters, locals: inout [[Float]], epochs: Int, using rng: inout R
    ) {
        if locals.count != sequences.count {
            locals = Array(repeating: [Float](repeating: 0, count: parameters.dimension), count: sequences.count)
        }
        var order = Array(sequences.indices)
        for _ in 0 ..< epochs {
            order.shuffle(using: &rng)
            for user in order {
                train(sequence: sequences[user][...], parameters: &parameters, local: &locals[user], using: &rng)
            }
        }
    }
}
