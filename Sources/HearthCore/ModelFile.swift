import CHearthKernels

/// The on-disk model file: versioned, little-endian, checksummed, memory-mappable.
///
/// Layout (all integers little-endian; the full table is in `docs/formats.md`):
/// - a 64-byte fixed header: magic `HRTHMODL`, format version, header length, file length,
///   model version, item count, dimension, padded dimension, block rows, group bytes, encoder
///   decay, section count;
/// - a section table, one 24-byte entry per section: kind, CRC-32, offset, length;
/// - the CRC-32 of everything before it (the header CRC);
/// - the sections, each at a 64-byte-aligned offset, gaps zero-filled. The packed int8 table is
///   stored exactly in the kernels' layout, so a memory-mapped file can be scored in place and
///   loading is a copy, not a transform.
///
/// `decode` rejects every malformed file with a `CoreError` (`truncatedFile`, `corruptFile` or
/// `unsupportedVersion`) before allocating more than the file's own size.
public enum ModelFile {
    /// The 8 magic bytes, ASCII `HRTHMODL`.
    public static let magic: [UInt8] = [0x48, 0x52, 0x54, 0x48, 0x4D, 0x4F, 0x44, 0x4C]
    /// The format version this build writes and reads.
    public static let formatVersion: UInt32 = 1
    /// Alignment of every section offset (a cache line; lets the table be mapped in place).
    public static let sectionAlignment = 64

    /// Encodes `model` as model-file bytes.
    public static func encode(_ model: Model) -> [UInt8] {
        assemble(Header(model), sections(of: model))
    }

    // MARK: - Layout (internal: the tests build deliberately malformed files with it)

    /// Byte offsets of the fixed header fields.
    enum Offset {
        static let magic = 0
        static let formatVersion = 8
        static let headerLength = 12
        static let fileLength = 16
        static let modelVersion = 24
        static let itemCount = 32
        static let dimension = 40
        static let dimensionPadded = 44
        static let blockRows = 48
        static let groupBytes = 52
        static let decay = 56
        static let sectionCount = 60
        /// The section table starts here.
        static let sectionTable = 64
    }

    /// Size of the fixed header.
    static let fixedHeaderSize = 64
    /// Size of one section-table entry: kind u32, CRC-32 u32, offset u64, length u64.
    static let sectionEntrySize = 24
    /// Upper bound on the section count a reader accepts.
    static let maxSectionCount = 1024
    /// Largest item count the kernels' table can hold (`rows * 8` must fit an int32).
    static let maxItemCount = Int(Int32.max / 8)
    /// Largest embedding width accepted.
    static let maxDimension = 65_536

    /// Section kinds. Readers skip kinds they do not know.
    enum SectionKind: UInt32, Sendable {
        /// Item ids in index order: a string table of `itemCount` strings.
        case itemIDs = 1
        /// Optional: category and brand of each item, a string table of `2 * itemCount` strings.
        case itemAttributes = 2
        /// float32 `[itemCount x dimension]`, row-major.
        case embeddings = 3
        /// float32 `[itemCount]`: item bias (also the table's bias unless `tableBias` is present).
        case bias = 4
        /// int8, `hearth_packed_size(itemCount, dimension)` bytes in the kernels' packed layout.
        case packedTable = 5
        /// float32 `[itemCount]`: per-row scale of the packed table.
        case rowScale = 6
        /// Optional float32 `[itemCount]`: the table's bias when it differs from `bias`.
        case tableBias = 7
    }

    /// The fixed-header fields other than the lengths, which `assemble` computes.
    struct Header: Equatable {
        var formatVersion: UInt32
        var modelVersion: UInt64
        var itemCount: UInt64
        var dimension: UInt32
        var dimensionPadded: UInt32
        var blockRows: UInt32
        var groupBytes: UInt32
        var decayBits: UInt32

        /// The header describing `model`.
        init(_ model: Model) {
            formatVersion = ModelFile.formatVersion
            modelVersion = model.version
            itemCount = UInt64(model.table.rows)
            dimension = UInt32(model.table.dimension)
            dimensionPadded = UInt32(model.table.dimensionPadded)
            blockRows = UInt32(HEARTH_BLOCK_ROWS)
            groupBytes = UInt32(HEARTH_GROUP_BYTES)
            decayBits = model.encoder.decay.bitPattern
        }
    }

    /// One section's kind and contents.
    struct Section {
        var kind: UInt32
        var bytes: [UInt8]

        init(kind: UInt32, bytes: [UInt8]) {
            self.kind = kind
            self.bytes = bytes
        }

        init(_ kind: SectionKind, _ bytes: [UInt8]) {
            self.init(kind: kind.rawValue, bytes: bytes)
        }
    }

    /// The sections that store `model`, in file order.
    static func sections(of model: Model) -> [Section] {
        let catalog = model.catalog
        var sections = [Section(.itemIDs, stringTable(catalog.ids))]
        if catalog.hasAttributes {
            var strings = [String]()
            strings.reserveCapacity(2 * catalog.count)
            for attributes in catalog.attributes {
                strings.append(attributes.category)
                strings.append(attributes.brand)
            }
            sections.append(Section(.itemAttributes, stringTable(strings)))
        }
        let parameters = model.parameters  // without a master: the table dequantised
        sections.append(Section(.embeddings, float32Bytes(parameters.embeddings)))
        sections.append(Section(.bias, float32Bytes(parameters.bias)))
        if !sameBits(model.table.bias, parameters.bias) {
            sections.append(Section(.tableBias, float32Bytes(model.table.bias)))
        }
        sections.append(Section(.packedTable, model.table.packed.map { UInt8(bitPattern: $0) }))
        sections.append(Section(.rowScale, float32Bytes(model.table.rowScale)))
        return sections
    }

    /// The complete file for `header` and `sections`: header, section table, header CRC, then
    /// each section at the next 64-byte boundary, gaps zero.
    static func assemble(_ header: Header, _ sections: [Section]) -> [UInt8] {
        let headerLength = fixedHeaderSize + sectionEntrySize * sections.count + 4
        var offsets = [Int]()
        var end = headerLength
        for section in sections {
            let offset = alignUp(end)
            offsets.append(offset)
            end = offset + section.bytes.count
        }
        let fileLength = end

        var out = [UInt8]()
        out.reserveCapacity(fileLength)
        out.append(contentsOf: magic)
        appendLE(header.formatVersion, to: &out)
        appendLE(UInt32(headerLength), to: &out)
        appendLE(UInt64(fileLength), to: &out)
        appendLE(header.modelVersion, to: &out)
        appendLE(header.itemCount, to: &out)
        appendLE(header.dimension, to: &out)
        appendLE(header.dimensionPadded, to: &out)
        appendLE(header.blockRows, to: &out)
        appendLE(header.groupBytes, to: &out)
        appendLE(header.decayBits, to: &out)
        appendLE(UInt32(sections.count), to: &out)
        for (section, offset) in zip(sections, offsets) {
            appendLE(section.kind, to: &out)
            appendLE(CRC32.checksum(section.bytes), to: &out)
            appendLE(UInt64(offset), to: &out)
            appendLE(UInt64(section.bytes.count), to: &out)
        }
        appendLE(CRC32.checksum(out), to: &out)
        for (section, offset) in zip(sections, offsets) {
            out.append(contentsOf: repeatElement(0, count: offset - out.count))
            out.append(contentsOf: section.bytes)
        }
        return out
    }

    /// A string table: `count + 1` u64 offsets into the blob (first 0, non-decreasing, last the
    /// blob length), then the UTF-8 blob. String `i` is `blob[offset[i] ..< offset[i + 1]]`.
    static func stringTable(_ strings: [String]) -> [UInt8] {
        var blob = [UInt8]()
        var out = [UInt8]()
        out.reserveCapacity(8 * (strings.count + 1))
        appendLE(UInt64(0), to: &out)
        for string in strings {
            blob.append(contentsOf: string.utf8)
            appendLE(UInt64(blob.count), to: &out)
        }
        out.append(contentsOf: blob)
        return out
    }

    /// float32 values as little-endian bytes.
    static func float32Bytes(_ values: [Float]) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(4 * values.count)
        for value in values { appendLE(value.bitPattern, to: &out) }
        return out
    }

    /// Appends `value` least significant byte first.
    static func appendLE<T: FixedWidthInteger & UnsignedInteger>(_ value: T, to out: inout [UInt8]) {
        var v = value
        for _ in 0 ..< T.bitWidth / 8 {
            out.append(UInt8(truncatingIfNeeded: v))
            v >>= 8
        }
    }

    /// `value` rounded up to the section alignment.
    static func alignUp(_ value: Int) -> Int {
        (value + sectionAlignment - 1) / sectionAlignment * sectionAlignment
    }

    /// Whether two float arrays hold the same bit patterns.
    private static func sameBits(_ a: [Float], _ b: [Float]) -> Bool {
        guard a.count == b.count else { return false }
        for i in a.indices where a[i].bitPattern != b[i].bitPattern { return false }
        return true
    }
}
