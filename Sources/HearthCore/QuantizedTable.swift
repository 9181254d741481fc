import CHearthKernels

/// The int8 item table the kernels score: per-row symmetric scales, values in [-127, 127],
/// stored in the kernels' packed layout (blocks of 8 rows, groups of 4 bytes), so that a model
/// file holds it as is and loading is a read.
public struct QuantizedTable: Sendable, Equatable {
    /// Number of items.
    public let rows: Int
    /// Embedding width before padding.
    public let dimension: Int
    /// Packed int8 values (`hearth_packed_size(rows, dimension)` bytes, padding zero).
    public let packed: [Int8]
    /// One scale per row: `float ≈ int8 * scale`.
    public let rowScale: [Float]
    /// One float32 bias per row.
    public let bias: [Float]

    /// Width after padding to the kernels' group size.
    public var dimensionPadded: Int { Int(hearth_dim_padded(Int32(dimension))) }

    /// A table from already-packed data (as read from a model file).
    public init(rows: Int, dimension: Int, packed: [Int8], rowScale: [Float], bias: [Float]) throws(CoreError) {
        guard rows >= 0, dimension > 0, rows <= Int(Int32.max / 8), dimension <= 65_536 else {
            throw .invalidArgument("table shape \(rows) x \(dimension) out of range")
        }
        let expected = hearth_packed_size(Int32(rows), Int32(dimension))
        guard packed.count == expected, rowScale.count == rows, bias.count == rows else {
            throw .shapeMismatch("packed table needs \(expected) bytes, \(rows) scales and biases; got \(packed.count), \(rowScale.count), \(bias.count)")
        }
        for value in packed where value == Int8.min {
            throw .invalidArgument("packed table holds -128; values must lie in [-127, 127]")
        }
        for s in rowScale where !s.isFinite || s < 0 { throw .nonFinite("row scale \(s) is not a finite non-negative number") }
        // The float view (`dequantizedRow`: value × scale, |value| ≤ 127) must be finite too.
        for s in rowScale where !(127 * s).isFinite {
            throw .nonFinite("row scale \(s) overflows when dequantised (127 × scale is not finite)")
        }
        for b in bias where !b.isFinite { throw .nonFinite("bias is not finite") }
        self.rows = rows
        self.dimension = dimension
        self.packed = packed
        self.rowScale = rowScale
        self.bias = bias
    }

    /// Quantises float parameters: each row gets scale `max|row| / 127` and values
    /// `round(x / scale)` (ties to even), clamped to [-127, 127].
    public init(quantizing parameters: GlobalParameters) throws(CoreError) {
        let n = parameters.itemCount, d = parameters.dimension
        var rowMajor = [Int8](repeating: 0, count: n * d)
        var scales = [Float](repeating: 0, count: n)
        for row in 0 ..< n {
            var maxAbs: Float = 0
            for c in 0 ..< d {
                let x = parameters.embeddings[row * d + c]
                guard x.isFinite else { throw .nonFinite("embedding row \(row) holds a non-finite value") }
                maxAbs = max(maxAbs, abs(x))
            }
            let scale = maxAbs / 127
            scales[row] = scale
            guard scale > 0 else { continue }
            for c in 0 ..< d {
                rowMajor[row * d + c] = QuantizedTable.quantize(parameters.embeddings[row * d + c], scale: scale)
            }
        }
        for b in parameters.bias where !b.isFinite { throw .nonFinite("bias holds a non-finite value") }
        var packed = [Int8](repeating: 0, count: hearth_packed_size(Int32(n), Int32(d)))
        rowMajor.withUnsafeBufferPointer { source in
            packed.withUnsafeMutableBufferPointer { target in
                if let s = source.baseAddress, let t = target.baseAddress { hearth_pack(s, Int32(n), Int32(d), t) }
            }
        }
        try self.init(rows: n, dimension: d, packed: packed, rowScale: scales, bias: parameters.bias)
    }

    /// `round(x / scale)` clamped to [-127, 127].
    @inlinable
    static func quantize(_ x: Float, scale: Float) -> Int8 {
        let q = (x / scale).rounded(.toNearestOrEven)
        return Int8(max(-127, min(127, q)))
    }

    /// Row `row` as int8 values (unpacked).
    public func quantizedRow(_ row: Int) -> [Int8] {
        var out = [Int8](repeating: 0, count: dimension)
        packed.withUnsafeBufferPointer { source in
            out.withUnsafeMutableBufferPointer { target in
                if let s = source.baseAddress, let t = target.baseAddress {
                    hearth_unpack_row(s, Int32(dimension), Int32(row), t)
                }
            }
        }
        return out
    }

    /// Row `row` dequantised back to float32.
    public func dequantizedRow(_ row: Int) -> [Float] {
        let scale = rowScale[row]
        return quantizedRow(row).map { Float($0) * scale }
    }

    /// All rows dequantised, as global parameters (the float view of this table).
    public func dequantized() -> GlobalParameters {
        var embeddings = [Float]()
        embeddings.reserveCapacity(rows * dimension)
        for row in 0 ..< rows { embeddings.append(contentsOf: dequantizedRow(row)) }
        return GlobalParameters(validatedItemCount: rows, dimension: dimension, embeddings: embeddings, bias: bias)
    }
}

/// A query vector quantised for the kernels: padded int8 values and one scale.
public struct QuantizedQuery: Sendable, Equatable {
    /// `dimensionPadded` values in [-127, 127], padding zero.
    public let values: [Int8]
    /// `float ≈ int8 * scale`.
    public let scale: Float

    /// Quantises `query` (non-finite values are treated as zero) to the padded width.
    public init(_ query: [Float]) {
        let padded = Int(hearth_dim_padded(Int32(query.count)))
        var maxAbs: Float = 0
        for x in query where x.isFinite { maxAbs = max(maxAbs, abs(x)) }
        let scale = maxAbs / 127
        var values = [Int8](repeating: 0, count: padded)
        if scale > 0 {
            for (i, x) in query.enumerated() where x.isFinite { values[i] = QuantizedTable.quantize(x, scale: scale) }
        }
        self.values = values
        self.scale = scale
    }
}
