import CHearthKernels

extension ModelFile {
    /// Decodes a model file held in `bytes`. With `keepingMaster: false` the float32 master is
    /// checked but not kept (`Model.master` is nil): what a device that serves and trains from
    /// the int8 table loads.
    public static func decode(_ bytes: [UInt8], keepingMaster: Bool = true) throws(CoreError) -> Model {
        // `withUnsafeBytes` is only `rethrows`, so carry the typed error out in a Result.
        let result = bytes.withUnsafeBytes { (raw: UnsafeRawBufferPointer) -> Result<Model, CoreError> in
            do throws(CoreError) {
                return .success(try decode(raw, keepingMaster: keepingMaster))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    /// Decodes a model file from `bytes` (for instance a memory-mapped file).
    ///
    /// Checks, in order: magic, format version, length (a file shorter than its declared length
    /// is `truncatedFile`), header CRC, header fields, section bounds, alignment and overlap,
    /// zero gaps, section CRCs, section sizes against the header, and section contents (finite
    /// floats, valid UTF-8, unique ids, int8 values in [-127, 127], zero table padding).
    /// Sections of unknown kinds are checked for bounds and CRC, then skipped.
    public static func decode(_ bytes: UnsafeRawBufferPointer, keepingMaster: Bool = true) throws(CoreError) -> Model {
        let file = try FileLayout(bytes)
        var found = [UInt32: SectionEntry]()
        for entry in file.sections where SectionKind(rawValue: entry.kind) != nil {
            guard found[entry.kind] == nil else {
                throw .corruptFile("model file holds two sections of kind \(entry.kind)")
            }
            found[entry.kind] = entry
        }
        let n = file.itemCount, d = file.dimension

        /// The bytes of a required section whose length must be exactly `expected` (if given).
        func section(_ kind: SectionKind, _ name: String, expected: UInt64?) throws(CoreError) -> UnsafeRawBufferPointer? {
            guard let entry = found[kind.rawValue] else { return nil }
            if let expected, UInt64(entry.length) != expected {
                throw .corruptFile("model file \(name) section has \(entry.length) bytes, expected \(expected) for \(n) x \(d)")
            }
            return UnsafeRawBufferPointer(rebasing: bytes[entry.offset ..< entry.offset + entry.length])
        }
        /// A section that must be present.
        func required(_ kind: SectionKind, _ name: String, expected: UInt64?) throws(CoreError) -> UnsafeRawBufferPointer {
            guard let raw = try section(kind, name, expected: expected) else {
                throw .corruptFile("model file has no \(name) section")
            }
            return raw
        }

        // Sizes: n <= 2^28 and d <= 2^16, so none of these products can overflow a UInt64.
        let n64 = UInt64(n), d64 = UInt64(d)
        let packedSize = UInt64(hearth_block_count(Int32(n))) * UInt64(HEARTH_BLOCK_ROWS) * UInt64(file.dimensionPadded)
        let idsRaw = try required(.itemIDs, "item id", expected: nil)
        let attributesRaw = try section(.itemAttributes, "item attribute", expected: nil)
        let embeddingsRaw = try required(.embeddings, "embedding", expected: n64 * d64 * 4)
        let biasRaw = try required(.bias, "bias", expected: n64 * 4)
        let tableBiasRaw = try section(.tableBias, "table bias", expected: n64 * 4)
        let packedRaw = try required(.packedTable, "packed table", expected: packedSize)
        let rowScaleRaw = try required(.rowScale, "row scale", expected: n64 * 4)

        let ids = try readStrings(idsRaw, count: n, name: "item id")
        var attributes = [ItemAttributes]()
        if let attributesRaw {
            let strings = try readStrings(attributesRaw, count: 2 * n, name: "item attribute")
            attributes.reserveCapacity(n)
            for item in 0 ..< n {
                attributes.append(ItemAttributes(category: strings[2 * item], brand: strings[2 * item + 1]))
            }
        }
        var embeddings: [Float] = []
        if keepingMaster {
            embeddings = try readFloats(embeddingsRaw, name: "embedding", rowWidth: d)
        } else {
            try checkFloats(embeddingsRaw, name: "embedding", rowWidth: d)
        }
        let bias = try readFloats(biasRaw, name: "bias", rowWidth: 1)
        var tableBias = bias
        if let tableBiasRaw { tableBias = try readFloats(tableBiasRaw, name: "table bias", rowWidth: 1) }
        let rowScale = try readFloats(rowScaleRaw, name: "row scale", rowWidth: 1)
        for (row, scale) in rowScale.enumerated() where scale < 0 {
            throw .corruptFile("model file row scale of row \(row) is negative")
        }
        let packed = try readPackedTable(packedRaw, rows: n, dimension: d, dimensionPadded: file.dimensionPadded)

        do throws(CoreError) {
            let catalog = try Catalog(ids: ids, attributes: attributes)
            let table = try QuantizedTable(rows: n, dimension: d, packed: packed, rowScale: rowScale, bias: tableBias)
            guard keepingMaster else {
                return try Model(version: file.modelVersion, catalog: catalog, table: table, encoder: QueryEncoder(decay: file.decay))
            }
            let parameters = try GlobalParameters(itemCount: n, dimension: d, embeddings: embeddings, bias: bias)
            return try Model(version: file.modelVersion, catalog: catalog, parameters: parameters,
                             table: table, encoder: QueryEncoder(decay: file.decay))
        } catch {
            throw .corruptFile("model file content is invalid: " + error.message)
        }
    }

    // MARK: - Structure

    /// One validated section-table entry (offset and length lie inside the file).
    struct SectionEntry {
        var kind: UInt32
        var offset: Int
        var length: Int
    }

    /// The validated header and section table of a model file.
    struct FileLayout {
        var modelVersion: UInt64
        var itemCount: Int
        var dimension: Int
        var dimensionPadded: Int
        var decay: Float
        var sections: [SectionEntry]

        /// Checks everything but the section contents' meaning.
        init(_ raw: UnsafeRawBufferPointer) throws(CoreError) {
            let count = raw.count
            for i in 0 ..< min(count, magic.count) where raw[i] != magic[i] {
                throw .corruptFile("not a Hearth model file (bad magic)")
            }
            guard count >= Offset.formatVersion + 4 else {
                throw .truncatedFile("model file is \(count) bytes, shorter than its header")
            }
            let version = readU32(raw, Offset.formatVersion)
            guard version == ModelFile.formatVersion else {
                throw .unsupportedVersion("model file format version \(version); this build reads version \(ModelFile.formatVersion)")
            }
            guard count >= fixedHeaderSize else {
                throw .truncatedFile("model file is \(count) bytes, shorter than its \(fixedHeaderSize)-byte header")
            }
            let fileLength = readU64(raw, Offset.fileLength)
            guard UInt64(count) >= fileLength else {
                throw .truncatedFile("model file is \(count) bytes, its header declares \(fileLength)")
            }
            guard UInt64(count) == fileLength else {
                throw .corruptFile("model file is \(count) bytes, its header declares \(fileLength) (trailing bytes)")
            }
            let sectionCount = Int(readU32(raw, Offset.sectionCount))
            guard sectionCount <= maxSectionCount else {
                throw .corruptFile("model file declares \(sectionCount) sections (at most \(maxSectionCount))")
            }
            let headerLength = fixedHeaderSize + sectionEntrySize * sectionCount + 4
            guard UInt64(readU32(raw, Offset.headerLength)) == UInt64(headerLength), headerLength <= count else {
                throw .corruptFile("model file header length is inconsistent with its \(sectionCount) sections")
            }
            let storedCRC = readU32(raw, headerLength - 4)
            guard CRC32.checksum(UnsafeRawBufferPointer(rebasing: raw[0 ..< headerLength - 4])) == storedCRC else {
                throw .corruptFile("model file header checksum mismatch")
            }

            // Header fields (now known to be what the writer wrote).
            modelVersion = readU64(raw, Offset.modelVersion)
            let items = readU64(raw, Offset.itemCount)
            guard items <= UInt64(maxItemCount) else {
                throw .corruptFile("model file declares \(items) items (at most \(maxItemCount))")
            }
            let dim = readU32(raw, Offset.dimension)
            guard dim > 0, dim <= UInt32(maxDimension) else {
                throw .corruptFile("model file declares dimension \(dim) (must be 1 ... \(maxDimension))")
            }
            itemCount = Int(items)
            dimension = Int(dim)
            dimensionPadded = Int(hearth_dim_padded(Int32(dim)))
            guard readU32(raw, Offset.dimensionPadded) == UInt32(dimensionPadded),
                  readU32(raw, Offset.blockRows) == UInt32(HEARTH_BLOCK_ROWS),
                  readU32(raw, Offset.groupBytes) == UInt32(HEARTH_GROUP_BYTES) else {
                throw .corruptFile("model file table layout (padded dimension, block rows, group bytes) differs from this build's kernels")
            }
            decay = Float(bitPattern: readU32(raw, Offset.decay))
            guard decay.isFinite else { throw .corruptFile("model file encoder decay is not finite") }

            // Section table: bounds, alignment, CRCs.
            var entries = [SectionEntry]()
            entries.reserveCapacity(sectionCount)
            for index in 0 ..< sectionCount {
                let base = Offset.sectionTable + index * sectionEntrySize
                let kind = readU32(raw, base)
                let crc = readU32(raw, base + 4)
                let offset = readU64(raw, base + 8)
                let length = readU64(raw, base + 16)
                let (end, overflow) = offset.addingReportingOverflow(length)
                guard !overflow, end <= fileLength else {
                    throw .corruptFile("model file section \(index) (kind \(kind)) at offset \(offset), length \(length) lies outside the \(fileLength)-byte file")
                }
                guard offset >= UInt64(headerLength) else {
                    throw .corruptFile("model file section \(index) (kind \(kind)) overlaps the header")
                }
                guard offset % UInt64(sectionAlignment) == 0 else {
                    throw .corruptFile("model file section \(index) (kind \(kind)) at offset \(offset) is not \(sectionAlignment)-byte aligned")
                }
                let entry = SectionEntry(kind: kind, offset: Int(offset), length: Int(length))
                let body = UnsafeRawBufferPointer(rebasing: raw[entry.offset ..< entry.offset + entry.length])
                guard CRC32.checksum(body) == crc else {
                    throw .corruptFile("model file section \(index) (kind \(kind)) checksum mismatch")
                }
                entries.append(entry)
            }

            // No two sections share a byte; every byte outside header and sections is zero.
            let ordered = entries.sorted { ($0.offset, $0.length) < ($1.offset, $1.length) }
            var cursor = headerLength
            for entry in ordered {
                guard entry.offset >= cursor || entry.length == 0 else {
                    throw .corruptFile("model file sections overlap at offset \(entry.offset)")
                }
                try FileLayout.checkZero(raw, from: cursor, to: entry.offset)
                cursor = max(cursor, entry.offset + entry.length)
            }
            try FileLayout.checkZero(raw, from: cursor, to: count)
            sections = entries
        }

        /// Throws unless `raw[from ..< to]` is all zero (nothing to check when `to <= from`).
        private static func checkZero(_ raw: UnsafeRawBufferPointer, from: Int, to: Int) throws(CoreError) {
            guard from < to else { return }
            for i in from ..< to where raw[i] != 0 {
                throw .corruptFile("model file padding byte at offset \(i) is not zero")
            }
        }
    }

    // MARK: - Section contents

    /// Reads a string table of `count` strings (see `stringTable`), validating UTF-8.
    static func readStrings(_ raw: UnsafeRawBufferPointer, count: Int, name: String) throws(CoreError) -> [String] {
        // count <= 2 * 2^28, so the product cannot overflow.
        let tableBytes = UInt64(count + 1) * 8
        guard tableBytes <= UInt64(raw.count) else {
            throw .corruptFile("model file \(name) section is \(raw.count) bytes, too short for \(count) string offsets")
        }
        let blobStart = Int(tableBytes)
        let blobLength = UInt64(raw.count - blobStart)
        guard readU64(raw, 0) == 0 else {
            throw .corruptFile("model file \(name) string table does not start at offset 0")
        }
        var strings = [String]()
        strings.reserveCapacity(count)
        var start = 0
        for index in 0 ..< count {
            let end64 = readU64(raw, 8 * (index + 1))
            guard end64 >= UInt64(start), end64 <= blobLength else {
                throw .corruptFile("model file \(name) string \(index) has offsets out of order or out of range")
            }
            let end = Int(end64)
            let utf8 = UnsafeRawBufferPointer(rebasing: raw[blobStart + start ..< blobStart + end])
            guard isValidUTF8(utf8) else {
                throw .corruptFile("model file \(name) string \(index) is not valid UTF-8")
            }
            strings.append(String(decoding: utf8, as: UTF8.self))
            start = end
        }
        guard UInt64(start) == blobLength else {
            throw .corruptFile("model file \(name) section has \(blobLength - UInt64(start)) bytes after its last string")
        }
        return strings
    }

    /// Reads little-endian float32 values (`raw.count` is a multiple of 4), all finite.
    static func readFloats(_ raw: UnsafeRawBufferPointer, name: String, rowWidth: Int) throws(CoreError) -> [Float] {
        var values = [Float](repeating: 0, count: raw.count / 4)
        try forEachFloat(raw, name: name, rowWidth: rowWidth) { i, value in values[i] = value }
        return values
    }

    /// Checks that every little-endian float32 value is finite, without keeping them.
    static func checkFloats(_ raw: UnsafeRawBufferPointer, name: String, rowWidth: Int) throws(CoreError) {
        try forEachFloat(raw, name: name, rowWidth: rowWidth) { _, _ in }
    }

    /// Calls `body` with each little-endian float32 value and its index, refusing a non-finite one.
    @inline(__always)
    private static func forEachFloat(_ raw: UnsafeRawBufferPointer, name: String, rowWidth: Int,
                                     _ body: (Int, Float) -> Void) throws(CoreError) {
        for i in 0 ..< raw.count / 4 {
            let value = Float(bitPattern: readU32(raw, 4 * i))
            guard value.isFinite else {
                throw .corruptFile("model file \(name) section holds a non-finite value in row \(i / rowWidth)")
            }
            body(i, value)
        }
    }

    /// Copies the packed table, checking values in [-127, 127] and zero padding.
    static func readPackedTable(_ raw: UnsafeRawBufferPointer, rows: Int, dimension: Int, dimensionPadded: Int) throws(CoreError) -> [Int8] {
        let groups = dimensionPadded / Int(HEARTH_GROUP_BYTES)
        let blockRows = Int(HEARTH_BLOCK_ROWS), groupBytes = Int(HEARTH_GROUP_BYTES)
        var index = 0
        for block in 0 ..< Int(hearth_block_count(Int32(rows))) {
            for group in 0 ..< groups {
                for r in 0 ..< blockRows {
                    let row = block * blockRows + r
                    for b in 0 ..< groupBytes {
                        let value = raw[index]
                        if row >= rows || group * groupBytes + b >= dimension {
                            guard value == 0 else {
                                throw .corruptFile("model file packed table has a non-zero padding byte at offset \(index)")
                            }
                        } else if value == 0x80 {
                            throw .corruptFile("model file packed table holds -128 in row \(row); values must lie in [-127, 127]")
                        }
                        index += 1
                    }
                }
            }
        }
        var packed = [Int8](repeating: 0, count: raw.count)
        packed.withUnsafeMutableBytes { $0.copyMemory(from: raw) }
        return packed
    }

    /// Whether `bytes` is well-formed UTF-8 (no overlong forms, surrogates or values above
    /// U+10FFFF), per the Unicode standard's table 3-7.
    static func isValidUTF8(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var i = 0
        let n = bytes.count
        while i < n {
            let lead = bytes[i]
            if lead < 0x80 {
                i += 1
                continue
            }
            var low: UInt8 = 0x80, high: UInt8 = 0xBF
            let continuation: Int
            switch lead {
            case 0xC2 ... 0xDF: continuation = 1
            case 0xE0: continuation = 2; low = 0xA0
            case 0xE1 ... 0xEC, 0xEE ... 0xEF: continuation = 2
            case 0xED: continuation = 2; high = 0x9F
            case 0xF0: continuation = 3; low = 0x90
            case 0xF1 ... 0xF3: continuation = 3
            case 0xF4: continuation = 3; high = 0x8F
            default: return false
            }
            guard n - i > continuation else { return false }
            let second = bytes[i + 1]
            guard second >= low, second <= high else { return false }
            var k = 2
            while k <= continuation {
                guard bytes[i + k] & 0xC0 == 0x80 else { return false }
                k += 1
            }
            i += continuation + 1
        }
        return true
    }

    /// The little-endian u32 at `offset` (the caller has checked bounds).
    static func readU32(_ raw: UnsafeRawBufferPointer, _ offset: Int) -> UInt32 {
        UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }

    /// The little-endian u64 at `offset` (the caller has checked bounds).
    static func readU64(_ raw: UnsafeRawBufferPointer, _ offset: Int) -> UInt64 {
        UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }
}
