import CHearthKernels

/// Ranking with the int8 table and a scoring kernel.
extension Model {
    /// The top `k` items for `state`, best first, skipping `excluding`; ties go to the lower index.
    public func recommend(state: LocalState, k: Int, excluding: ExclusionSet? = nil, kernel: ScoringKernel) throws(CoreError) -> [Recommendation] {
        try table.topK(query: QuantizedQuery(query(for: state)), k: k, excluding: excluding, kernel: kernel)
    }

    /// Re-ranks caller-given `candidates` (promotions, ads) for `state`, best first.
    ///
    /// Every candidate must be a catalogue index; duplicates are ranked once.
    public func rank(state: LocalState, candidates: [Int32]) throws(CoreError) -> [Recommendation] {
        try table.rank(query: QuantizedQuery(query(for: state)), candidates: candidates)
    }
}

extension QuantizedTable {
    /// Calls `body` with the C view of this table.
    func withView<T>(_ body: (hearth_table) -> T) -> T {
        packed.withUnsafeBufferPointer { packed in
            rowScale.withUnsafeBufferPointer { scales in
                bias.withUnsafeBufferPointer { bias in
                    body(hearth_table(packed: packed.baseAddress, row_scale: scales.baseAddress, bias: bias.baseAddress,
                                      rows: Int32(rows), dim_padded: Int32(dimensionPadded)))
                }
            }
        }
    }

    /// The top `k` rows for `query`, best first (higher score, then lower index).
    ///
    /// A query of the wrong width or an exclusion set over a different catalogue size is an
    /// error: silently ignoring either would serve items the caller meant to exclude.
    public func topK(query: QuantizedQuery, k: Int, excluding: ExclusionSet? = nil, kernel: ScoringKernel) throws(CoreError) -> [Recommendation] {
        try checkQuery(query)
        if let excluding, excluding.itemCount != rows {
            throw .shapeMismatch("exclusion set covers \(excluding.itemCount) items, the table has \(rows)")
        }
        let limit = max(0, min(k, rows))
        guard limit > 0 else { return [] }
        var out = [hearth_scored](repeating: hearth_scored(index: 0, score: 0), count: limit)
        let written: Int32 = withView { view in
            var view = view
            return query.values.withUnsafeBufferPointer { q in
                out.withUnsafeMutableBufferPointer { results in
                    if let excluding {
                        return excluding.words.withUnsafeBufferPointer { words in
                            hearth_score_topk(kernel.entry, &view, q.baseAddress, query.scale, words.baseAddress, Int32(limit), results.baseAddress)
                        }
                    }
                    return hearth_score_topk(kernel.entry, &view, q.baseAddress, query.scale, nil, Int32(limit), results.baseAddress)
                }
            }
        }
        return out.prefix(Int(written)).map { Recommendation(item: $0.index, score: $0.score) }
    }

    /// Scores of every row for `query` (in row order).
    public func scores(query: QuantizedQuery, kernel: ScoringKernel) throws(CoreError) -> [Float] {
        try checkQuery(query)
        var scores = [Float](repeating: 0, count: rows)
        guard rows > 0 else { return scores }
        withView { view in
            var view = view
            query.values.withUnsafeBufferPointer { q in
                scores.withUnsafeMutableBufferPointer { out in
                    hearth_score_all(kernel.entry, &view, q.baseAddress, query.scale, out.baseAddress)
                }
            }
        }
        return scores
    }

    private func checkQuery(_ query: QuantizedQuery) throws(CoreError) {
        guard query.values.count == dimensionPadded else {
            throw .shapeMismatch("query has \(query.values.count) values, the table needs \(dimensionPadded)")
        }
    }

    /// Scores `candidates` and returns them best first (higher score, then lower index).
    public func rank(query: QuantizedQuery, candidates: [Int32]) throws(CoreError) -> [Recommendation] {
        var unique: [Int32] = []
        var seen = ExclusionSet(itemCount: rows)
        for item in candidates {
            guard item >= 0, Int(item) < rows else { throw .unknownItem("candidate index \(item) is not in the catalogue") }
            if !seen.contains(item) {
                seen.insert(item)
                unique.append(item)
            }
        }
        try checkQuery(query)
        var scores = [Float](repeating: 0, count: unique.count)
        withView { view in
            var view = view
            query.values.withUnsafeBufferPointer { q in
                unique.withUnsafeBufferPointer { items in
                    scores.withUnsafeMutableBufferPointer { out in
                        hearth_score_rows(&view, q.baseAddress, query.scale, items.baseAddress, Int32(items.count), out.baseAddress)
                    }
                }
            }
        }
        return zip(unique, scores).map { Recommendation(item: $0.0, score: $0.1) }.sorted(by: rankedBefore)
    }
}

/// The ranking order everywhere: higher score first, then lower index.
@inlinable
public func rankedBefore(_ a: Recommendation, _ b: Recommendation) -> Bool {
    a.score > b.score || (a.score == b.score && a.item < b.item)
}

/// Float32 reference scoring of the master parameters, for measuring what quantisation costs.
extension GlobalParameters {
    /// The top `k` items for `query` in float32 (same order rules as the int8 path).
    public func topK(query: [Float], k: Int, excluding: ExclusionSet? = nil) -> [Recommendation] {
        let limit = max(0, min(k, itemCount))
        guard limit > 0, query.count == dimension else { return [] }
        var best: [Recommendation] = []
        best.reserveCapacity(limit + 1)
        for item in 0 ..< itemCount {
            if let excluding, excluding.contains(Int32(item)) { continue }
            var s: Float = 0
            let base = item * dimension
            for c in 0 ..< dimension { s += query[c] * embeddings[base + c] }
            let candidate = Recommendation(item: Int32(item), score: s + bias[item])
            if best.count == limit, let last = best.last, !rankedBefore(candidate, last) { continue }
            var position = best.count
            while position > 0 && rankedBefore(candidate, best[position - 1]) { position -= 1 }
            best.insert(candidate, at: position)
            if best.count > limit { best.removeLast() }
        }
        return best
    }
}
