import Testing
@testable import HearthCore
import HearthTestSupport

/// Model file encode/decode, corruption handling, CRC-32 and `.npy` export.
@Suite(.computeLane) struct ModelFileTests {
    // MARK: - Helpers

    /// A model of `n` items and width `d` with random embeddings and biases.
    static func makeModel(_ n: Int, _ d: Int, seed: UInt64 = 1, ids: [String]? = nil,
                          attributes: [ItemAttributes] = [], decay: Float = 0.85) throws -> Model {
        var rng = Xoshiro256(seed: seed)
        var parameters = GlobalParameters(itemCount: n, dimension: d, using: &rng)
        for i in 0 ..< n { parameters.bias[i] = rng.nextUnitFloat() - 0.5 }
        let catalog = try Catalog(ids: ids ?? (0 ..< n).map { "item-\($0)" }, attributes: attributes)
        return try Model(version: 7, catalog: catalog, parameters: parameters, encoder: QueryEncoder(decay: decay))
    }

    /// A small model with attributes: the subject of the exhaustive corruption tests.
    static func smallModel() throws -> Model {
        try makeModel(3, 5, attributes: [
            ItemAttributes(category: "shoes", brand: "Acme"),
            ItemAttributes(category: "", brand: ""),
            ItemAttributes(category: "thé", brand: "Ωmega"),
        ])
    }

    /// The error `decode` throws for `bytes`, or nil when it succeeds.
    static func decodeError(_ bytes: [UInt8]) -> CoreError? {
        do throws(CoreError) {
            _ = try ModelFile.decode(bytes)
            return nil
        } catch {
            return error
        }
    }

    /// Little-endian reads and writes, byte by byte (independent of the implementation's).
    static func le(_ bytes: [UInt8], _ offset: Int, width: Int) -> UInt64 {
        var value: UInt64 = 0
        for i in (0 ..< width).reversed() { value = value << 8 | UInt64(bytes[offset + i]) }
        return value
    }

    static func put(_ value: UInt64, _ bytes: inout [UInt8], _ offset: Int, width: Int) {
        for i in 0 ..< width { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
    }

    /// Recomputes the header CRC after a deliberate header edit.
    static func refreshHeaderCRC(_ bytes: inout [UInt8]) {
        let headerLength = Int(le(bytes, 12, width: 4))
        put(UInt64(CRC32.checksum(Array(bytes[0 ..< headerLength - 4]))), &bytes, headerLength - 4, width: 4)
    }

    /// One section-table entry as stored.
    struct Entry {
        var kind: UInt32
        var crc: UInt32
        var offset: Int
        var length: Int
        /// Where the entry itself sits in the file.
        var entryOffset: Int
    }

    static func entries(_ bytes: [UInt8]) -> [Entry] {
        let count = Int(le(bytes, 60, width: 4))
        return (0 ..< count).map { i in
            let base = 64 + 24 * i
            return Entry(kind: UInt32(le(bytes, base, width: 4)), crc: UInt32(le(bytes, base + 4, width: 4)),
                         offset: Int(le(bytes, base + 8, width: 8)), length: Int(le(bytes, base + 16, width: 8)),
                         entryOffset: base)
        }
    }

    static func section(_ kind: ModelFile.SectionKind, in bytes: [UInt8]) -> [UInt8]? {
        guard let entry = entries(bytes).first(where: { $0.kind == kind.rawValue }) else { return nil }
        return Array(bytes[entry.offset ..< entry.offset + entry.length])
    }

    /// The small model's file with section `kind` replaced by `transform(bytes)` (CRCs valid).
    static func fileWithSection(_ kind: ModelFile.SectionKind, _ transform: ([UInt8]) -> [UInt8]) throws -> [UInt8] {
        let model = try smallModel()
        var sections = ModelFile.sections(of: model)
        let index = try #require(sections.firstIndex { $0.kind == kind.rawValue })
        sections[index].bytes = transform(sections[index].bytes)
        return ModelFile.assemble(ModelFile.Header(model), sections)
    }

    static func float32LE(_ value: Float) -> [UInt8] {
        (0 ..< 4).map { UInt8(truncatingIfNeeded: value.bitPattern >> (8 * UInt32($0))) }
    }

    // MARK: - CRC-32

    @Test func crc32KnownValues() {
        #expect(CRC32.checksum(Array("123456789".utf8)) == 0xCBF4_3926)
        #expect(CRC32.checksum([UInt8]()) == 0)
        #expect(CRC32.checksum(Array("The quick brown fox jumps over the lazy dog".utf8)) == 0x414F_A339)
        var crc = CRC32()
        crc.update(Array("1234".utf8))
        crc.update(Array("56789".utf8))
        #expect(crc.checksum == 0xCBF4_3926)
    }

    // MARK: - Round trips

    @Test(arguments: [(0, 3), (1, 1), (3, 5), (8, 4), (17, 33), (9, 64)])
    func roundTrip(items: Int, dimension: Int) throws {
        let model = try Self.makeModel(items, dimension, seed: UInt64(items * 100 + dimension))
        let bytes = ModelFile.encode(model)
        let decoded = try ModelFile.decode(bytes)
        #expect(decoded == model)
        #expect(decoded.table.packed == model.table.packed)
        #expect(ModelFile.encode(decoded) == bytes)
        // Without attributes there is no attribute section.
        #expect(Self.section(.itemAttributes, in: bytes) == nil)
    }

    @Test func roundTripWithAttributesAndUnicodeIDs() throws {
        let ids = ["café", "日本語-商品", "🍕 pizza", "", "a\u{0}b", "e\u{301}x", "ASCII-42"]
        let attributes = ids.indices.map { ItemAttributes(category: "κατηγορία \($0)", brand: $0 % 2 == 0 ? "Brand™" : "") }
        var model = try Self.makeModel(ids.count, 6, ids: ids, attributes: attributes, decay: 0.5)
        model.version = UInt64.max
        let bytes = ModelFile.encode(model)
        #expect(Self.section(.itemAttributes, in: bytes) != nil)
        let decoded = try ModelFile.decode(bytes)
        #expect(decoded == model)
        #expect(decoded.version == UInt64.max)
        #expect(decoded.encoder.decay == 0.5)
        #expect(decoded.catalog.ids == ids)
        #expect(decoded.catalog.attributes == attributes)
        #expect(decoded.catalog.index(of: "🍕 pizza") == 2)
    }

    @Test func tableBiasThatDiffersFromParametersIsKept() throws {
        let base = try Self.makeModel(5, 7)
        let table = try QuantizedTable(rows: 5, dimension: 7, packed: base.table.packed,
                                       rowScale: base.table.rowScale, bias: [1, 2, 3, 4, 5])
        let model = try Model(version: 3, catalog: base.catalog, parameters: base.parameters, table: table, encoder: base.encoder)
        let bytes = ModelFile.encode(model)
        #expect(Self.section(.tableBias, in: bytes) != nil)
        #expect(try ModelFile.decode(bytes) == model)
    }

    @Test func unknownSectionsAreSkipped() throws {
        let model = try Self.smallModel()
        var sections = ModelFile.sections(of: model)
        sections.insert(ModelFile.Section(kind: 0xFFFF_FFFF, bytes: [1, 2, 3]), at: 0)
        sections.append(ModelFile.Section(kind: 99, bytes: Array(repeating: 0xAB, count: 100)))
        sections.append(ModelFile.Section(kind: 100, bytes: []))
        let bytes = ModelFile.assemble(ModelFile.Header(model), sections)
        #expect(try ModelFile.decode(bytes) == model)
    }

    // MARK: - Layout

    @Test func headerFieldsAndAlignment() throws {
        let model = try Self.makeModel(17, 33)
        let bytes = ModelFile.encode(model)
        #expect(Array(bytes[0 ..< 8]) == Array("HRTHMODL".utf8))
        #expect(Self.le(bytes, 8, width: 4) == 1)
        #expect(Self.le(bytes, 16, width: 8) == UInt64(bytes.count))
        #expect(Self.le(bytes, 24, width: 8) == 7)
        #expect(Self.le(bytes, 32, width: 8) == 17)
        #expect(Self.le(bytes, 40, width: 4) == 33)
        #expect(Self.le(bytes, 44, width: 4) == 36)
        #expect(Self.le(bytes, 48, width: 4) == 8)
        #expect(Self.le(bytes, 52, width: 4) == 4)
        #expect(UInt32(Self.le(bytes, 56, width: 4)) == Float(0.85).bitPattern)
        let entries = Self.entries(bytes)
        #expect(entries.map(\.kind) == [1, 3, 4, 5, 6])
        let headerLength = Int(Self.le(bytes, 12, width: 4))
        #expect(headerLength == 64 + 24 * entries.count + 4)
        for entry in entries {
            #expect(entry.offset % 64 == 0)
            #expect(entry.offset >= headerLength)
            #expect(CRC32.checksum(Array(bytes[entry.offset ..< entry.offset + entry.length])) == entry.crc)
        }
    }

    @Test(arguments: [(1, 1), (3, 5), (17, 33), (9, 64)])
    func packedTableIsStoredInKernelLayout(items: Int, dimension: Int) throws {
        let model = try Self.makeModel(items, dimension)
        let bytes = ModelFile.encode(model)
        let stored = try #require(Self.section(.packedTable, in: bytes))
        #expect(stored == model.table.packed.map { UInt8(bitPattern: $0) })
        let embeddings = try #require(Self.section(.embeddings, in: bytes))
        #expect(embeddings == model.parameters.embeddings.flatMap(Self.float32LE))
        let scales = try #require(Self.section(.rowScale, in: bytes))
        #expect(scales == model.table.rowScale.flatMap(Self.float32LE))
    }

    // MARK: - Corruption

    @Test func everyTruncationIsATruncatedFileError() throws {
        let bytes = ModelFile.encode(try Self.smallModel())
        var wrong = [Int]()
        for length in 0 ..< bytes.count where Self.decodeError(Array(bytes[0 ..< length])) != .truncatedFile("") {
            wrong.append(length)
        }
        #expect(wrong.isEmpty, "prefix lengths not reported as truncated: \(wrong)")
    }

    @Test func everySingleByteChangeIsDetected() throws {
        let bytes = ModelFile.encode(try Self.smallModel())
        var undetected = [Int]()
        for position in bytes.indices {
            for mask: UInt8 in [0x01, 0x80, 0xFF] {
                var copy = bytes
                copy[position] ^= mask
                if Self.decodeError(copy) == nil { undetected.append(position) }
            }
        }
        #expect(undetected.isEmpty, "changes not detected at offsets \(undetected)")
    }

    @Test func trailingBytesAreRejected() throws {
        let bytes = ModelFile.encode(try Self.smallModel())
        #expect(Self.decodeError(bytes + [0]) == .corruptFile(""))
    }

    @Test func badMagicAndVersion() throws {
        let bytes = ModelFile.encode(try Self.smallModel())
        var badMagic = bytes
        badMagic[3] = UInt8(ascii: "X")
        #expect(throws: CoreError.corruptFile("")) { try ModelFile.decode(badMagic) }
        #expect(throws: CoreError.corruptFile("")) { try ModelFile.decode(Array("PK\u{3}\u{4}".utf8)) }
        #expect(throws: CoreError.truncatedFile("")) { try ModelFile.decode([UInt8]()) }
        for version: UInt64 in [0, 2, 0xFFFF_FFFF] {
            var copy = bytes
            Self.put(version, &copy, 8, width: 4)
            #expect(throws: CoreError.unsupportedVersion("")) { try ModelFile.decode(copy) }
        }
    }

    /// Header edits with a valid header CRC: (field offset, field width, new value).
    @Test(arguments: [
        (32, 8, UInt64.max),                 // item count
        (32, 8, UInt64(1) << 40),            // item count beyond the kernels' limit
        (32, 8, UInt64(Int32.max / 8)),      // item count the file cannot hold
        (32, 8, 4),                          // one item more than stored
        (40, 4, 0),                          // dimension
        (40, 4, 1 << 20),                    // dimension beyond the limit
        (40, 4, 65_536),                     // dimension × items far beyond the file
        (44, 4, 12),                         // padded dimension
        (48, 4, 16),                         // block rows
        (52, 4, 8),                          // group bytes
        (56, 4, UInt64(Float.nan.bitPattern)),      // decay
        (56, 4, UInt64(Float.infinity.bitPattern)), // decay
        (60, 4, 5_000),                      // section count
        (60, 4, 3),                          // section count inconsistent with header length
        (12, 4, 64),                         // header length
        (16, 8, UInt64.max),                 // file length (beyond the file: truncated)
    ] as [(Int, Int, UInt64)])
    func absurdHeaderFieldsAreRejected(offset: Int, width: Int, value: UInt64) throws {
        var bytes = ModelFile.encode(try Self.smallModel())
        Self.put(value, &bytes, offset, width: width)
        if offset != 60 && offset != 12 { Self.refreshHeaderCRC(&bytes) }
        let error = Self.decodeError(bytes)
        #expect(error != nil)
        #expect(error == (offset == 16 ? .truncatedFile("") : .corruptFile("")), "\(error?.message ?? "decoded")")
    }

    enum SectionEdit: CaseIterable, Sendable {
        case offsetAtEnd, offsetBeyondEnd, lengthOverflow, lengthBeyondEnd, misaligned, overlapsNext, overlapsHeader, wrongCRC
    }

    @Test(arguments: SectionEdit.allCases)
    func badSectionTablesAreRejected(edit: SectionEdit) throws {
        var bytes = ModelFile.encode(try Self.smallModel())
        let entries = Self.entries(bytes)
        let first = entries[0], second = entries[1]
        let base = first.entryOffset
        switch edit {
        case .offsetAtEnd: Self.put(UInt64(bytes.count), &bytes, base + 8, width: 8)
        case .offsetBeyondEnd: Self.put(UInt64.max - 63, &bytes, base + 8, width: 8)
        case .lengthOverflow: Self.put(UInt64.max, &bytes, base + 16, width: 8)
        case .lengthBeyondEnd: Self.put(UInt64(bytes.count), &bytes, base + 16, width: 8)
        case .misaligned: Self.put(UInt64(first.offset + 8), &bytes, base + 8, width: 8)
        case .overlapsNext:
            // The second section now claims the start of the first, with a matching CRC.
            let crc = CRC32.checksum(Array(bytes[first.offset ..< first.offset + second.length]))
            Self.put(UInt64(first.offset), &bytes, second.entryOffset + 8, width: 8)
            Self.put(UInt64(crc), &bytes, second.entryOffset + 4, width: 4)
        case .overlapsHeader: Self.put(0, &bytes, base + 8, width: 8)
        case .wrongCRC: Self.put(UInt64(first.crc ^ 1), &bytes, base + 4, width: 4)
        }
        Self.refreshHeaderCRC(&bytes)
        let error = try #require(Self.decodeError(bytes))
        #expect(error == .corruptFile(""))
        let expected: String = switch edit {
        case .offsetAtEnd, .offsetBeyondEnd, .lengthOverflow, .lengthBeyondEnd: "outside"
        case .misaligned: "aligned"
        case .overlapsNext: "overlap"
        case .overlapsHeader: "overlaps the header"
        case .wrongCRC: "checksum"
        }
        #expect(error.message.contains(expected), "\(error.message)")
    }

    @Test(arguments: [ModelFile.SectionKind.itemIDs, .embeddings, .bias, .packedTable, .rowScale])
    func missingOrDuplicateRequiredSectionsAreRejected(kind: ModelFile.SectionKind) throws {
        let model = try Self.smallModel()
        let sections = ModelFile.sections(of: model)
        let without = ModelFile.assemble(ModelFile.Header(model), sections.filter { $0.kind != kind.rawValue })
        #expect(throws: CoreError.corruptFile("")) { try ModelFile.decode(without) }
        let duplicated = try #require(sections.first { $0.kind == kind.rawValue })
        let twice = ModelFile.assemble(ModelFile.Header(model), sections + [duplicated])
        #expect(throws: CoreError.corruptFile("")) { try ModelFile.decode(twice) }
    }

    @Test(arguments: [ModelFile.SectionKind.embeddings, .bias, .packedTable, .rowScale, .itemIDs])
    func wrongSectionLengthsAreRejected(kind: ModelFile.SectionKind) throws {
        let shorter = try Self.fileWithSection(kind) { Array($0.dropLast(4)) }
        #expect(throws: CoreError.corruptFile("")) { try ModelFile.decode(shorter) }
        let longer = try Self.fileWithSection(kind) { $0 + [0, 0, 0, 0] }
        #expect(throws: CoreError.corruptFile("")) { try ModelFile.decode(longer) }
    }

    @Test(arguments: [Float.nan, .infinity, -.infinity, .signalingNaN])
    func nonFiniteFloatsAreRejected(value: Float) throws {
        for (kind, position) in [(ModelFile.SectionKind.embeddings, 7), (.bias, 2), (.rowScale, 0)] {
            let bytes = try Self.fileWithSection(kind) { section in
                var copy = section
                copy.replaceSubrange(4 * position ..< 4 * position + 4, with: Self.float32LE(value))
                return copy
            }
            #expect(throws: CoreError.corruptFile("")) { try ModelFile.decode(bytes) }
        }
    }

    @Test func negativeRowScaleIsRejected() throws {
        let bytes = try Self.fileWithSection(.rowScale) { section in
            var copy = section
            copy.replaceSubrange(4 ..< 8, with: Self.float32LE(-0.5))
            return copy
        }
        #expect(throws: CoreError.corruptFile("")) { try ModelFile.decode(bytes) }
    }

    /// Found by the model-file fuzz target (docs/reliability.md, "Parsers under fuzzing"): a
    /// finite row scale so large that 127 × scale overflows was accepted, and the table's float
    /// view, which a device without the master serves and trains from, held infinities.
    @Test(arguments: [Float(4.210451e36), .greatestFiniteMagnitude / 127, .greatestFiniteMagnitude])
    func rowScaleWhoseDequantisedRowsOverflowIsRejected(scale: Float) throws {
        let bytes = try Self.fileWithSection(.rowScale) { section in
            var copy = section
            copy.replaceSubrange(4 ..< 8, with: Self.float32LE(scale))
            return copy
        }
        for keepingMaster in [true, false] {
            #expect(throws: CoreError.corruptFile("")) { try ModelFile.decode(bytes, keepingMaster: keepingMaster) }
        }
    }

    @Test func largestRowScaleWithFiniteDequantisedRowsIsAccepted() throws {
        let scale = (Float.greatestFiniteMagnitude / 127).nextDown
        let bytes = try Self.fileWithSection(.rowScale) { section in
            var copy = section
            copy.replaceSubrange(4 ..< 8, with: Self.float32LE(scale))
            return copy
        }
        let model = try ModelFile.decode(bytes, keepingMaster: false)
        #expect(model.table.rowScale[1] == scale)
        #expect(model.parameters.embeddings.allSatisfy { $0.isFinite })
    }

    @Test func minus128AndNonZeroPaddingInTheTableAreRejected() throws {
        // 3 x 5: padded width 8, so group 1 holds column 4 and padding columns 5...7, and rows
        // 3...7 of the single block are padding.
        let minus128 = try Self.fileWithSection(.packedTable) { section in
            var copy = section
            copy[4 * 1 + 2] = 0x80 // row 1, column 2
            return copy
        }
        #expect(throws: CoreError.corruptFile("")) { try ModelFile.decode(minus128) }
        for position in [32 + 1, 32 + 4 * 2 + 3, 4 * 3, 4 * 7 + 3, 32 + 4 * 5] {
            let padding = try Self.fileWithSection(.packedTable) { section in
                var copy = section
                copy[position] = 1
                return copy
            }
            #expect(throws: CoreError.corruptFile("")) { try ModelFile.decode(padding) }
        }
    }

    @Test(arguments: [
        [0xFF], [0xC0, 0x80], [0xE0, 0x80, 0x80], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80],
        [0xE2, 0x82], [0x80], [0xF8, 0x88, 0x80, 0x80, 0x80], [0x61, 0xC3],
    ] as [[UInt8]])
    func invalidUTF8IsRejected(utf8: [UInt8]) throws {
        #expect(!utf8.withUnsafeBytes(ModelFile.isValidUTF8))
        let model = try Self.smallModel()
        var sections = ModelFile.sections(of: model)
        sections[0].bytes = ModelFile.stringTable(["a", "b", "c"])
        // Replace the blob of "b" with the invalid sequence.
        var table = [UInt8]()
        for end: UInt64 in [0, 1, UInt64(1 + utf8.count), UInt64(2 + utf8.count)] { ModelFile.appendLE(end, to: &table) }
        table += [UInt8(ascii: "a")] + utf8 + [UInt8(ascii: "c")]
        sections[0].bytes = table
        let bytes = ModelFile.assemble(ModelFile.Header(model), sections)
        #expect(throws: CoreError.corruptFile("")) { try ModelFile.decode(bytes) }
    }

    @Test func validUTF8IsAccepted() {
        for string in ["", "plain", "é", "€", "𝄞", "\u{10FFFF}", "\u{D7FF}\u{E000}", "日本語🍕"] {
            #expect(Array(string.utf8).withUnsafeBytes(ModelFile.isValidUTF8), "\(string)")
        }
    }

    @Test func duplicateIDsAreRejected() throws {
        let bytes = try Self.fileWithSection(.itemIDs) { _ in ModelFile.stringTable(["x", "y", "x"]) }
        #expect(throws: CoreError.corruptFile("")) { try ModelFile.decode(bytes) }
    }

    @Test func badStringTablesAreRejected() throws {
        var offsetsOutOfOrder = [UInt8]()
        for end: UInt64 in [0, 2, 1, 3] { ModelFile.appendLE(end, to: &offsetsOutOfOrder) }
        offsetsOutOfOrder += Array("abc".utf8)
        var firstNotZero = [UInt8]()
        for end: UInt64 in [1, 1, 2, 3] { ModelFile.appendLE(end, to: &firstNotZero) }
        firstNotZero += Array("abc".utf8)
        var offsetBeyondBlob = [UInt8]()
        for end: UInt64 in [0, 1, 2, UInt64.max] { ModelFile.appendLE(end, to: &offsetBeyondBlob) }
        offsetBeyondBlob += Array("abc".utf8)
        let trailingBytes = ModelFile.stringTable(["a", "b", "c"]) + [0x64]
        for table in [offsetsOutOfOrder, firstNotZero, offsetBeyondBlob, trailingBytes, [0, 0, 0]] {
            let bytes = try Self.fileWithSection(.itemIDs) { _ in table }
            #expect(throws: CoreError.corruptFile("")) { try ModelFile.decode(bytes) }
        }
    }

    // MARK: - NPY

    /// `numpy.save` of a float32 array of shape (3, 5), header only (NumPy 2.4).
    static let numpyHeaderFloat32x3x5: [UInt8] = [
        0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 0x01, 0x00, 0x76, 0x00, 0x7B, 0x27, 0x64, 0x65, 0x73, 0x63,
        0x72, 0x27, 0x3A, 0x20, 0x27, 0x3C, 0x66, 0x34, 0x27, 0x2C, 0x20, 0x27, 0x66, 0x6F, 0x72, 0x74,
        0x72, 0x61, 0x6E, 0x5F, 0x6F, 0x72, 0x64, 0x65, 0x72, 0x27, 0x3A, 0x20, 0x46, 0x61, 0x6C, 0x73,
        0x65, 0x2C, 0x20, 0x27, 0x73, 0x68, 0x61, 0x70, 0x65, 0x27, 0x3A, 0x20, 0x28, 0x33, 0x2C, 0x20,
        0x35, 0x29, 0x2C, 0x20, 0x7D, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
        0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
        0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
        0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x0A,
    ]

    /// `numpy.save` of an int8 array of shape (4,), header only (NumPy 2.4).
    static let numpyHeaderInt8x4: [UInt8] = [
        0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 0x01, 0x00, 0x76, 0x00, 0x7B, 0x27, 0x64, 0x65, 0x73, 0x63,
        0x72, 0x27, 0x3A, 0x20, 0x27, 0x7C, 0x69, 0x31, 0x27, 0x2C, 0x20, 0x27, 0x66, 0x6F, 0x72, 0x74,
        0x72, 0x61, 0x6E, 0x5F, 0x6F, 0x72, 0x64, 0x65, 0x72, 0x27, 0x3A, 0x20, 0x46, 0x61, 0x6C, 0x73,
        0x65, 0x2C, 0x20, 0x27, 0x73, 0x68, 0x61, 0x70, 0x65, 0x27, 0x3A, 0x20, 0x28, 0x34, 0x2C, 0x29,
        0x2C, 0x20, 0x7D, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
        0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
        0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
        0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x0A,
    ]

    @Test func npyHeadersMatchNumPyByteForByte() throws {
        #expect(NPY.header(descr: "<f4", shape: [3, 5]) == Self.numpyHeaderFloat32x3x5)
        #expect(NPY.header(descr: "|i1", shape: [4]) == Self.numpyHeaderInt8x4)
        let file = try NPY.float32([1, -2.5, 0, 0.5, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, -0.0], shape: [3, 5])
        #expect(Array(file[0 ..< 128]) == Self.numpyHeaderFloat32x3x5)
        #expect(Array(file[128 ..< 136]) == [0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x20, 0xC0])
        #expect(file.count == 128 + 60)
        let int8 = try NPY.int8([-127, 0, 1, 127], shape: [4])
        #expect(int8 == Self.numpyHeaderInt8x4 + [0x81, 0x00, 0x01, 0x7F])
    }

    @Test(arguments: [[Int](), [0], [7], [0, 3], [100_000, 64], [1, 2, 3, 4], [Int(Int32.max), 1]])
    func npyHeadersAreAligned(shape: [Int]) {
        let header = NPY.header(descr: "<f4", shape: shape)
        #expect(header.count % 64 == 0)
        #expect(Int(header[8]) | Int(header[9]) << 8 == header.count - 10)
        #expect(header.last == 0x0A)
    }

    @Test func npyHeaderAlreadyAlignedGetsAFullPad() {
        // NumPy pads with 64 spaces (not 0) when the dict already ends on the boundary.
        let header = NPY.header(descr: "<f4", shape: [1, 1_000_000_000_000_000_000, 1_000_000_000_000_000_000])
        #expect(header.count == 192)
        #expect(Array(header.suffix(65)) == Array(repeating: 0x20, count: 64) + [0x0A])
    }

    @Test func npyShapeMismatchIsAnError() {
        #expect(throws: CoreError.shapeMismatch("")) { try NPY.float32([1, 2, 3], shape: [2, 2]) }
        #expect(throws: CoreError.invalidArgument("")) { try NPY.int8([], shape: [-1, 0]) }
        #expect(throws: CoreError.invalidArgument("")) { try NPY.int8([], shape: [Int.max, 2, 0]) }
    }

    @Test func exportGivesTheFourTensors() throws {
        let model = try Self.makeModel(3, 5)
        let files = NPY.export(model)
        #expect(files.map(\.name) == ["embeddings.npy", "bias.npy", "table_int8.npy", "row_scale.npy"])
        #expect(files[0].bytes == (try NPY.float32(model.parameters.embeddings, shape: [3, 5])))
        #expect(files[1].bytes == (try NPY.float32(model.parameters.bias, shape: [3])))
        let rows = (0 ..< 3).flatMap { model.table.quantizedRow($0) }
        #expect(files[2].bytes == (try NPY.int8(rows, shape: [3, 5])))
        #expect(Array(files[2].bytes[0 ..< 128]) == NPY.header(descr: "|i1", shape: [3, 5]))
        #expect(files[3].bytes == (try NPY.float32(model.table.rowScale, shape: [3])))
    }
}
