import Testing
@testable import HearthPrivacy
import HearthTestSupport

/// The streaming reader (`readHeader`, `decodeHeader`, `PackedValues`) agrees with `decode`.
@Suite(.computeLane) struct UpdateEnvelopeReaderTests {
    static func readError(_ bytes: [UInt8]) -> PrivacyError? {
        do throws(PrivacyError) {
            _ = try UpdateEnvelope.decodeHeader(bytes)
            return nil
        } catch {
            return error
        }
    }

    @Test("header fields and streamed values equal decode's at every bit width 4...32", arguments: Array(4 ... 32))
    func streamEqualsDecode(bitWidth: Int) throws {
        for d in [1, 2, 7, 301] {
            let e = UpdateEnvelopeTests.envelope(dimension: d, bitWidth: bitWidth, seed: UInt64(bitWidth * 7 + d))
            let bytes = try e.encode()
            let header = try UpdateEnvelope.decodeHeader(bytes)
            #expect(header.modelVersion == e.modelVersion && header.mode == e.mode && header.unit == e.unit)
            #expect(header.contributions == e.contributions && header.noiseMultiplier == e.noiseMultiplier)
            #expect(header.samplingRate == e.samplingRate && header.clipNorm == e.clipNorm && header.scale == e.scale)
            #expect(header.bitWidth == bitWidth && header.dimension == d && header.idempotencyKey == e.idempotencyKey)
            #expect(header.checksum == UpdateEnvelope.crc32(bytes, count: bytes.count - 4))
            var reader = try UpdateEnvelope.PackedValues(bytes, header: header)
            #expect(!reader.paddingIsZero)
            var streamed = [Int64]()
            while let v = reader.next() { streamed.append(v) }
            #expect(streamed == e.values)
            #expect(reader.paddingIsZero)
            #expect(reader.next() == nil)
            #expect(reader.limit == (Int64(1) << Int64(bitWidth - 1)) - 1)
        }
    }

    @Test("decodeHeader rejects what decode rejects, with the same error")
    func sameErrorsAsDecode() throws {
        let bytes = try UpdateEnvelopeTests.envelope(dimension: 9, bitWidth: 12).encode()
        var cases: [[UInt8]] = [Array(bytes.dropLast()), bytes + [0], Array(bytes.prefix(40))]
        var flipped = bytes; flipped[bytes.count - 1] ^= 1; cases.append(flipped)
        var version = bytes; version[8] = 2; cases.append(UpdateEnvelopeTests.resealed(version))
        var reserved = bytes; reserved[14] = 1; cases.append(UpdateEnvelopeTests.resealed(reserved))
        var mode = bytes; mode[10] = 3; cases.append(UpdateEnvelopeTests.resealed(mode))
        var clip = bytes
        let nan = Double.nan.bitPattern
        for i in 0 ..< 8 { clip[48 + i] = UInt8(truncatingIfNeeded: nan >> UInt64(8 * i)) }
        cases.append(UpdateEnvelopeTests.resealed(clip))
        var width = bytes; width[12] = 3; cases.append(width)
        for c in cases {
            let expected = UpdateEnvelopeTests.decodeError(c)
            #expect(expected != nil)
            #expect(Self.readError(c) == expected)
        }
    }

    @Test("readHeader returns unchecked fields; checkFields applies decode's checks")
    func readHeaderLeavesFieldsUnchecked() throws {
        var bytes = try UpdateEnvelopeTests.envelope(dimension: 5, bitWidth: 8).encode()
        let nan = Double.nan.bitPattern
        for i in 0 ..< 8 { bytes[48 + i] = UInt8(truncatingIfNeeded: nan >> UInt64(8 * i)) }
        bytes = UpdateEnvelopeTests.resealed(bytes)
        let header = try UpdateEnvelope.readHeader(bytes)
        #expect(header.clipNorm.isNaN)
        #expect(throws: PrivacyError.invalidClipNorm) { try header.checkFields() }
    }

    @Test("PackedValues exposes -2^(b-1) and non-zero padding for the caller to refuse")
    func valueAndPaddingChecks() throws {
        // d = 3 at b = 4: 12 bits, so 4 padding bits in the second value byte.
        var e = UpdateEnvelopeTests.envelope(dimension: 3, bitWidth: 4)
        e.values = [0, 1, -7]
        var bytes = try e.encode()
        bytes[80] = 0x18  // value 0 = 8 → sign-extends to -8 = -2^3; value 1 = 1
        bytes[81] |= 0x20  // a padding bit
        bytes = UpdateEnvelopeTests.resealed(bytes)
        #expect(UpdateEnvelopeTests.decodeError(bytes) == .valueOutOfRange)
        var reader = try UpdateEnvelope.PackedValues(bytes, header: UpdateEnvelope.readHeader(bytes))
        #expect(reader.next() == -8)
        #expect(reader.next() == 1)
        #expect(reader.next() == -7)
        #expect(reader.next() == nil)
        #expect(!reader.paddingIsZero)
    }

    @Test("PackedValues refuses a length other than the encoded size")
    func readerChecksLength() throws {
        let bytes = try UpdateEnvelopeTests.envelope(dimension: 9, bitWidth: 12).encode()
        #expect(throws: PrivacyError.truncatedEnvelope) { try UpdateEnvelope.PackedValues(bytes, dimension: 10, bitWidth: 12) }
        #expect(throws: PrivacyError.invalidBitWidth) { try UpdateEnvelope.PackedValues(bytes, dimension: 9, bitWidth: 33) }
    }
}
