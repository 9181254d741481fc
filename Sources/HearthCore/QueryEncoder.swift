/// Builds the query vector a ranking scores items against.
///
/// `query = u + Σ_j w_j · E[item_j] / Σ_j w_j` over the recent events `j`, where
/// `w_j = kind weight · decay^age` (age 0 = most recent) and `u` is the local embedding. With no
/// recent events the query is `u` alone. Training and serving use this same function.
public struct QueryEncoder: Sendable, Equatable {
    /// Per-step recency decay in (0, 1].
    public var decay: Float

    public init(decay: Float = 0.85) { self.decay = decay }

    /// Weight of each of `recent` (oldest first) in the query.
    public func weights(for recent: ArraySlice<Event>) -> [Float] {
        var weights = [Float](repeating: 0, count: recent.count)
        var factor: Float = 1
        var position = weights.count - 1
        for event in recent.reversed() {
            weights[position] = event.kind.weight * factor
            factor *= decay
            position -= 1
        }
        return weights
    }

    /// The query for `recent` events and local embedding `local` (length `parameters.dimension`).
    ///
    /// `parameters` is the float master (`GlobalParameters`), a training round's overlay, or the
    /// int8 table itself (dequantised rows: how a device without the float master serves).
    public func query<P: EmbeddingRows>(parameters: P, local: [Float], recent: ArraySlice<Event>) -> [Float] {
        var query = local
        let weights = self.weights(for: recent)
        var total: Float = 0
        for w in weights { total += w }
        guard total > 0 else { return query }
        var index = 0
        for event in recent {
            let w = weights[index] / total
            parameters.accumulate(row: Int(event.item), weight: w, into: &query)
            index += 1
        }
        return query
    }

    /// The query for a device's local state.
    public func query<P: EmbeddingRows>(parameters: P, state: LocalState) -> [Float] {
        query(parameters: parameters, local: state.embedding, recent: state.recent[...])
    }
}
