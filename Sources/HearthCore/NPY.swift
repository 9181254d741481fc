/// Writer for NumPy `.npy` files (format version 1.0), so NumPy users can read a model's tensors
/// with `numpy.load`.
///
/// A file is the magic `\x93NUMPY`, version bytes `1 0`, a little-endian u16 header length, and an
/// ASCII header dict padded with spaces and a final newline so that the data starts at a
/// multiple of 64 bytes; then the C-order data. The header is byte-identical to what NumPy 2
/// writes for the same array (including the spare spaces NumPy reserves for growing axis 0).
public enum NPY {
    /// The 6 magic bytes `\x93NUMPY`.
    public static let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]

    /// A float32 tensor (`'<f4'`) of `shape` (row-major) as `.npy` bytes.
    public static func float32(_ values: [Float], shape: [Int]) throws(CoreError) -> [UInt8] {
        try checkShape(shape, count: values.count)
        var out = header(descr: "<f4", shape: shape)
        out.reserveCapacity(out.count + 4 * values.count)
        for value in values { ModelFile.appendLE(value.bitPattern, to: &out) }
        return out
    }

    /// An int8 tensor (`'|i1'`) of `shape` (row-major) as `.npy` bytes.
    public static func int8(_ values: [Int8], shape: [Int]) throws(CoreError) -> [UInt8] {
        try checkShape(shape, count: values.count)
        var out = header(descr: "|i1", shape: shape)
        out.reserveCapacity(out.count + values.count)
        for value in values { out.append(UInt8(bitPattern: value)) }
        return out
    }

    /// The model's tensors as `.npy` files: `embeddings.npy` (float32 `[N, d]`), `bias.npy`
    /// (float32 `[N]`), `table_int8.npy` (int8 `[N, d]`, row-major, unpacked from the kernel
    /// layout) and `row_scale.npy` (float32 `[N]`; `embeddings ≈ table_int8 * row_scale[:, None]`).
    public static func export(_ model: Model) -> [(name: String, bytes: [UInt8])] {
        let parameters = model.parameters
        let n = parameters.itemCount, d = parameters.dimension
        var int8 = [Int8]()
        int8.reserveCapacity(n * d)
        for row in 0 ..< n { int8.append(contentsOf: model.table.quantizedRow(row)) }
        return [
            (name: "embeddings.npy", bytes: file(descr: "<f4", shape: [n, d], data: ModelFile.float32Bytes(parameters.embeddings))),
            (name: "bias.npy", bytes: file(descr: "<f4", shape: [n], data: ModelFile.float32Bytes(parameters.bias))),
            (name: "table_int8.npy", bytes: file(descr: "|i1", shape: [n, d], data: int8.map { UInt8(bitPattern: $0) })),
            (name: "row_scale.npy", bytes: file(descr: "<f4", shape: [n], data: ModelFile.float32Bytes(model.table.rowScale))),
        ]
    }

    /// Magic, version, header length and the padded header dict for a C-order array.
    ///
    /// As NumPy's `_write_array_header`: the dict `{'descr': …, 'fortran_order': False,
    /// 'shape': (…), }`, then `21 - digits(shape[0])` spaces (room to grow axis 0), then spaces
    /// and `\n` up to the next multiple of 64 bytes counted from the start of the file (a full 64
    /// spaces when it is already aligned, as NumPy does).
    public static func header(descr: String, shape: [Int]) -> [UInt8] {
        var dict = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': ("
        for (i, extent) in shape.enumerated() {
            if i > 0 { dict += ", " }
            dict += "\(extent)"
        }
        if shape.count == 1 { dict += "," }
        dict += "), }"
        var text = Array(dict.utf8)
        if let first = shape.first {
            let digits = Array("\(first)".utf8).count
            text.append(contentsOf: repeatElement(0x20, count: max(0, growthAxisMaxDigits - digits)))
        }
        let prefixLength = magic.count + 2 + 2
        let withNewline = text.count + 1
        let padding = alignment - (prefixLength + withNewline) % alignment
        let headerLength = withNewline + padding
        var out = magic
        out.append(1)
        out.append(0)
        out.append(UInt8(truncatingIfNeeded: headerLength))
        out.append(UInt8(truncatingIfNeeded: headerLength >> 8))
        out.append(contentsOf: text)
        out.append(contentsOf: repeatElement(0x20, count: padding))
        out.append(0x0A)
        return out
    }

    /// NumPy's `ARRAY_ALIGN`: the data offset is a multiple of this.
    static let alignment = 64
    /// NumPy's `GROWTH_AXIS_MAX_DIGITS`.
    static let growthAxisMaxDigits = 21
    /// Most dimensions accepted (keeps the version 1.0 header under its 65535-byte limit).
    static let maxRank = 32

    /// Header plus raw data (shape already known to match).
    private static func file(descr: String, shape: [Int], data: [UInt8]) -> [UInt8] {
        var out = header(descr: descr, shape: shape)
        out.append(contentsOf: data)
        return out
    }

    /// Throws unless every extent is non-negative and their product is `count`.
    private static func checkShape(_ shape: [Int], count: Int) throws(CoreError) {
        guard shape.count <= maxRank else {
            throw .invalidArgument("npy tensor of rank \(shape.count) (at most \(maxRank))")
        }
        var product = 1
        for extent in shape {
            guard extent >= 0 else { throw .invalidArgument("npy shape has a negative extent \(extent)") }
            let (next, overflow) = product.multipliedReportingOverflow(by: extent)
            guard !overflow else { throw .invalidArgument("npy shape overflows") }
            product = next
        }
        guard product == count else {
            throw .shapeMismatch("npy shape holds \(product) values, got \(count)")
        }
    }
}
