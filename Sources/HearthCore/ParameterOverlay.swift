/// Read access to item embedding rows: what building a query needs.
public protocol EmbeddingRows {
    /// Embedding width.
    var dimension: Int { get }
    /// Number of items (rows).
    var itemCount: Int { get }
    /// `accumulator[c] += weight * row[c]` for every column `c` of row `item`.
    func accumulate(row item: Int, weight: Float, into accumulator: inout [Float])
}

/// Global parameters a training step can update in place: item rows in `embeddings` at the
/// offsets `writableRow` gives, and one bias per item.
///
/// `GlobalParameters` keeps every row (offset `item * dimension`); `ParameterOverlay` keeps only
/// the rows a round touched, so a device trains a large catalogue without a full-size copy.
public protocol TrainableParameters: EmbeddingRows {
    /// Row storage; a row's values are `embeddings[writableRow(item) ..< writableRow(item) + dimension]`.
    var embeddings: [Float] { get set }
    /// One bias per item.
    var bias: [Float] { get set }
    /// The offset of `item`'s row in `embeddings`, making the row writable first if needed.
    mutating func writableRow(_ item: Int) -> Int
    /// Calls `body` with `embeddings` and `bias` as mutable buffers (one access for a whole
    /// training step, instead of an accessor call per value in generic code).
    mutating func withMutableStorage<T>(
        _ body: (UnsafeMutableBufferPointer<Float>, UnsafeMutableBufferPointer<Float>) -> T
    ) -> T
}

extension GlobalParameters: TrainableParameters {
    @inline(__always)
    public mutating func writableRow(_ item: Int) -> Int { item * dimension }

    public mutating func withMutableStorage<T>(
        _ body: (UnsafeMutableBufferPointer<Float>, UnsafeMutableBufferPointer<Float>) -> T
    ) -> T {
        embeddings.withUnsafeMutableBufferPointer { rows in
            bias.withUnsafeMutableBufferPointer { biases in body(rows, biases) }
        }
    }

    public func accumulate(row item: Int, weight: Float, into accumulator: inout [Float]) {
        let base = item * dimension
        for c in 0 ..< dimension { accumulator[c] += weight * embeddings[base + c] }
    }
}

extension QuantizedTable: EmbeddingRows {
    public var itemCount: Int { rows }

    /// Adds the dequantised row (`Float(q) * rowScale`, as `dequantizedRow`).
    public func accumulate(row item: Int, weight: Float, into accumulator: inout [Float]) {
        let values = dequantizedRow(item)
        for c in 0 ..< dimension { accumulator[c] += weight * values[c] }
    }
}

/// The global parameters of one training round as changes over an int8 table: only the rows
/// the round touches are held in float32.
///
/// A device trains from the model it serves, the int8 table dequantised (`Float(q) * rowScale`;
/// biases are float32 in the table). Rows are copied into `embeddings` the first time a step
/// writes them, so memory grows with the rows a round touches (its events and sampled
/// negatives), not with the catalogue; the biases are one dense array. The update is
/// `trained − start`: exactly zero on every untouched row, and `update` reads it in place, as
/// dense coordinates (embeddings row-major, then biases), so clipping, rounding and noise see
/// every coordinate and the upload stays dense (it never reveals which rows were touched).
public struct ParameterOverlay: TrainableParameters, Sendable {
    /// The table the round starts from.
    public let base: QuantizedTable
    /// Touched rows, in the order they were first written.
    public var embeddings: [Float]
    /// Every item's bias (starts as the table's).
    public var bias: [Float]
    /// Row slot per item (its values start at `slot * dimension` in `embeddings`), −1 when untouched.
    private var offsets: [Int32]
    /// Items in the order they were first written.
    public private(set) var touchedItems: [Int32]

    /// An overlay with no row touched yet, with room for `reservingRows` rows (clamped to the
    /// table), so a round that stays within it never reallocates (a growing array briefly holds
    /// its old and new storage: up to three times the rows' bytes at the peak).
    public init(base: QuantizedTable, reservingRows: Int = 0) {
        self.base = base
        embeddings = []
        embeddings.reserveCapacity(max(0, min(reservingRows, base.rows)) * base.dimension)
        bias = base.bias
        offsets = [Int32](repeating: -1, count: base.rows)
        touchedItems = []
    }

    public var dimension: Int { base.dimension }
    public var itemCount: Int { base.rows }
    /// Number of coordinates of the update (embeddings then biases).
    public var parameterCount: Int { base.rows * base.dimension + base.rows }

    public mutating func writableRow(_ item: Int) -> Int {
        let slot = offsets[item]
        if slot >= 0 { return Int(slot) * base.dimension }
        let offset = embeddings.count
        embeddings.append(contentsOf: base.dequantizedRow(item))
        offsets[item] = Int32(offset / base.dimension)
        touchedItems.append(Int32(item))
        return offset
    }

    public mutating func withMutableStorage<T>(
        _ body: (UnsafeMutableBufferPointer<Float>, UnsafeMutableBufferPointer<Float>) -> T
    ) -> T {
        embeddings.withUnsafeMutableBufferPointer { rows in
            bias.withUnsafeMutableBufferPointer { biases in body(rows, biases) }
        }
    }

    public func accumulate(row item: Int, weight: Float, into accumulator: inout [Float]) {
        let slot = offsets[item]
        if slot < 0 {
            base.accumulate(row: item, weight: weight, into: &accumulator)
            return
        }
        let start = Int(slot) * base.dimension
        for c in 0 ..< base.dimension { accumulator[c] += weight * embeddings[start + c] }
    }

    /// Back to the starting point, keeping the storage for the next session.
    public mutating func reset() {
        for item in touchedItems { offsets[Int(item)] = -1 }
        touchedItems.removeAll(keepingCapacity: true)
        embeddings.removeAll(keepingCapacity: true)
        for i in bias.indices { bias[i] = base.bias[i] }
    }

    /// The dense update `trained − start`, read in place.
    public var update: Update { Update(overlay: self) }

    /// `trained − start` over every coordinate, embeddings row-major then biases; zero on every
    /// untouched row. Holds the overlay (copy-on-write: no copy unless the overlay changes).
    public struct Update: Sendable {
        let overlay: ParameterOverlay

        /// Number of coordinates.
        public var count: Int { overlay.parameterCount }

        /// Calls `body` with every coordinate in order.
        public func forEachCoordinate(_ body: (Float) -> Void) {
            let table = overlay.base
            let d = table.dimension
            for item in 0 ..< table.rows {
                let slot = overlay.offsets[item]
                if slot < 0 {
                    for _ in 0 ..< d { body(0) }
                    continue
                }
                let start = table.dequantizedRow(item)  // the values `writableRow` copied in
                let offset = Int(slot) * d
                for c in 0 ..< d { body(overlay.embeddings[offset + c] - start[c]) }
            }
            for item in 0 ..< table.rows { body(overlay.bias[item] - table.bias[item]) }
        }

        /// The update as one dense array (tests and small models).
        public func dense() -> [Float] {
            var out: [Float] = []
            out.reserveCapacity(count)
            forEachCoordinate { out.append($0) }
            return out
        }
    }
}
