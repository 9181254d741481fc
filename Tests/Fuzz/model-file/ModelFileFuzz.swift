@testable import HearthCore

/// The agent's model file decoder (`ModelFile.decode`), fed what a download or a corrupted disk
/// could hold, plus the base64 decoder of the download's `X-Hearth-Signature` header.
///
/// Each input is decoded twice: as given (magic, lengths and CRCs must stop most mutants), and
/// "resealed": file length, header length, section CRCs and header CRC recomputed, so mutated
/// section tables and contents reach the checks behind the checksums. Properties, beyond not
/// crashing: a file that decodes with its master also decodes without it (and the reverse), and
/// re-encoding a decoded model gives a file that decodes to the same model.
enum FuzzTarget {
    static func run(_ bytes: [UInt8]) {
        decodeAndCheck(bytes)
        let resealed = reseal(bytes)
        if resealed != bytes { decodeAndCheck(resealed) }
        checkSignatureText(bytes)
    }

    static func decodeAndCheck(_ bytes: [UInt8]) {
        let withMaster = try? ModelFile.decode(bytes, keepingMaster: true)
        let withoutMaster = try? ModelFile.decode(bytes, keepingMaster: false)
        require((withMaster == nil) == (withoutMaster == nil),
                "decode with and without the master disagree on acceptance")
        if let withMaster {
            require(withMaster.master != nil, "decode(keepingMaster: true) dropped the master")
            let again = try? ModelFile.decode(ModelFile.encode(withMaster), keepingMaster: true)
            require(again == withMaster, "encode(decode(file)) does not decode to the same model")
        }
        if let withoutMaster {
            require(withoutMaster.master == nil, "decode(keepingMaster: false) kept a master")
            let again = try? ModelFile.decode(ModelFile.encode(withoutMaster), keepingMaster: false)
            require(again == withoutMaster, "encode(decode(file, keepingMaster: false)) does not decode to the same model")
        }
    }

    /// `bytes` with the lengths and checksums a writer computes made consistent with the rest.
    static func reseal(_ bytes: [UInt8]) -> [UInt8] {
        var out = bytes
        let count = out.count
        guard count >= ModelFile.fixedHeaderSize else { return out }
        putLE(UInt64(count), into: &out, at: ModelFile.Offset.fileLength, width: 8)
        let sectionCount = Int(getLE(out, at: ModelFile.Offset.sectionCount, width: 4))
        guard sectionCount <= ModelFile.maxSectionCount else { return out }
        let headerLength = ModelFile.fixedHeaderSize + ModelFile.sectionEntrySize * sectionCount + 4
        guard headerLength <= count else { return out }
        putLE(UInt64(headerLength), into: &out, at: ModelFile.Offset.headerLength, width: 4)
        for index in 0 ..< sectionCount {
            let base = ModelFile.Offset.sectionTable + index * ModelFile.sectionEntrySize
            let offset = getLE(out, at: base + 8, width: 8)
            let length = getLE(out, at: base + 16, width: 8)
            let (end, overflow) = offset.addingReportingOverflow(length)
            guard !overflow, end <= UInt64(count) else { continue }
            let crc = CRC32.checksum(Array(out[Int(offset) ..< Int(end)]))
            putLE(UInt64(crc), into: &out, at: base + 4, width: 4)
        }
        putLE(UInt64(CRC32.checksum(Array(out[0 ..< headerLength - 4]))), into: &out, at: headerLength - 4, width: 4)
        return out
    }

    /// The signature header's base64: decoding is strict, so what decodes must re-encode to
    /// text that decodes to the same bytes.
    static func checkSignatureText(_ bytes: [UInt8]) {
        guard bytes.count <= 256 else { return }
        let text = String(decoding: bytes, as: UTF8.self)
        guard let decoded = Base64.decode(text) else { return }
        require(Base64.decode(Base64.encode(decoded)) == decoded, "base64 decode(encode(x)) != x")
    }

    /// Valid model files from the real encoder: empty, one item, attributes and Unicode ids, a
    /// separate table bias, and a width that needs table padding.
    static func seeds() -> [(String, [UInt8])] {
        func model(items: Int, dimension: Int, seed: UInt64, ids: [String]? = nil,
                   attributes: [ItemAttributes] = [], decay: Float = 0.85) -> Model? {
            var rng = Xoshiro256(seed: seed)
            var parameters = GlobalParameters(itemCount: items, dimension: dimension, using: &rng)
            for i in 0 ..< items { parameters.bias[i] = rng.nextUnitFloat() - 0.5 }
            guard let catalog = try? Catalog(ids: ids ?? (0 ..< items).map { "item-\($0)" }, attributes: attributes) else { return nil }
            return try? Model(version: seed, catalog: catalog, parameters: parameters, encoder: QueryEncoder(decay: decay))
        }
        var seeds: [(String, [UInt8])] = []
        if let empty = model(items: 0, dimension: 3, seed: 1) { seeds.append(("empty-0x3.hrth", ModelFile.encode(empty))) }
        if let one = model(items: 1, dimension: 1, seed: 2) { seeds.append(("one-1x1.hrth", ModelFile.encode(one))) }
        if let small = model(items: 3, dimension: 5, seed: 3, ids: ["café", "日本-商品", "e\u{301}x"], attributes: [
            ItemAttributes(category: "shoes", brand: "Acme"), ItemAttributes(),
            ItemAttributes(category: "thé", brand: "Ωmega"),
        ], decay: 0.5) {
            seeds.append(("attributes-3x5.hrth", ModelFile.encode(small)))
        }
        if var padded = model(items: 9, dimension: 17, seed: 4) {
            // A table bias that differs from the item bias adds the optional table-bias section.
            padded.version = UInt64.max
            var parameters = padded.parameters
            parameters.bias[0] += 1
            if let retrained = try? Model(version: padded.version, catalog: padded.catalog, parameters: parameters,
                                          table: padded.table, encoder: padded.encoder) {
                seeds.append(("table-bias-9x17.hrth", ModelFile.encode(retrained)))
            }
            seeds.append(("padded-9x17.hrth", ModelFile.encode(padded)))
            // Regression (docs/reliability.md): a finite row scale whose dequantised row overflows.
            var sections = ModelFile.sections(of: padded)
            if let index = sections.firstIndex(where: { $0.kind == ModelFile.SectionKind.rowScale.rawValue }) {
                let huge = Float(4.210451e36).bitPattern
                for i in 0 ..< 4 { sections[index].bytes[4 * 7 + i] = UInt8(truncatingIfNeeded: huge >> UInt32(8 * i)) }
                seeds.append(("regression-row-scale-overflow.hrth", ModelFile.assemble(ModelFile.Header(padded), sections)))
            }
        }
        seeds.append(("signature.b64", Array(Base64.encode((0 ..< 64).map { UInt8($0 * 3 & 0xFF) }).utf8)))
        return seeds
    }
}
