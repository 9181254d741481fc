import Testing
@testable import HearthPrivacy
import HearthTestSupport

/// The update wire format: round trips, strict rejection of every malformed envelope.
@Suite(.computeLane) struct UpdateEnvelopeTests {
    static func key(_ seed: UInt64 = 7) -> IdempotencyKey {
        var rng = SeededGenerator(seed: seed)
        return IdempotencyKey(using: &rng)
    }

    static func envelope(dimension: Int = 37, bitWidth: Int = 12, seed: UInt64 = 3) -> UpdateEnvelope {
        var rng = SeededGenerator(seed: seed)
        let limit = (Int64(1) << Int64(bitWidth - 1)) - 1
        var values = (0 ..< dimension).map { _ in Int64.random(in: -limit ... limit, using: &rng) }
        values[0] = limit
        if dimension > 1 { values[1] = -limit }
        return UpdateEnvelope(modelVersion: 42, mode: .local, unit: .device, contributions: 1,
                              noiseMultiplier: 1.1, samplingRate: 0.05, clipNorm: 0.8, bitWidth: bitWidth,
                              scale: 1234.5, values: values, idempotencyKey: key())
    }

    static func decodeError(_ bytes: [UInt8]) -> PrivacyError? {
        do throws(PrivacyError) {
            _ = try UpdateEnvelope.decode(bytes)
            return nil
        } catch {
            return error
        }
    }

    /// Replaces the CRC so that a deliberately bad field reaches the field checks.
    static func resealed(_ bytes: [UInt8]) -> [UInt8] {
        var out = bytes
        let offset = out.count - 4
        let crc = UpdateEnvelope.crc32(out, count: offset)
        for i in 0 ..< 4 { out[offset + i] = UInt8(truncatingIfNeeded: crc >> UInt32(8 * i)) }
        return out
    }

    @Test("round trip at every bit width 4...32, dimensions including 1")
    func roundTrip() throws {
        for b in 4 ... 32 {
            for d in [1, 2, 7, 64, 301] {
                let e = Self.envelope(dimension: d, bitWidth: b, seed: UInt64(b * 1000 + d))
                let bytes = try e.encode()
                #expect(bytes.count == UpdateEnvelope.encodedSize(dimension: d, bitWidth: b))
                #expect(bytes.count == 84 + (d * b + 7) / 8)
                let back = try UpdateEnvelope.decode(bytes)
                #expect(back == e)
            }
        }
    }

    @Test("central mode and session unit round trip; layout fields sit at their documented offsets")
    func layout() throws {
        var e = Self.envelope(dimension: 3, bitWidth: 8)
        e.mode = .central
        e.unit = .session
        e.contributions = 3
        e.noiseMultiplier = 0
        e.values = [1, -1, 127]
        let bytes = try e.encode()
        #expect(Array(bytes[0 ..< 8]) == Array("HRTHUPDT".utf8))
        #expect(bytes[8] == 1 && bytes[9] == 0)
        #expect(bytes[10] == 2 && bytes[11] == 2 && bytes[12] == 8)
        #expect(bytes[16] == 42)
        #expect(bytes[24] == 3 && bytes[28] == 3)
        #expect(Array(bytes[64 ..< 80]) == Self.key().bytes)
        // Packed two's complement, 8 bits: 0x01, 0xFF, 0x7F.
        #expect(Array(bytes[80 ..< 83]) == [0x01, 0xFF, 0x7F])
        #expect(UpdateEnvelope.crc32(Array("123456789".utf8), count: 9) == 0xCBF4_3926)
        #expect(try UpdateEnvelope.decode(bytes) == e)
    }

    @Test("envelope built from a privatized update carries its grid and configuration")
    func fromPrivatizedUpdate() throws {
        let configuration = PrivacyConfiguration(clipNorm: 1, noiseMultiplier: 1.2, bitWidth: 16)
        let privatizer = try UpdatePrivatizer(configuration: configuration, dimension: 50)
        var rng = SeededGenerator(seed: 5)
        let update = try privatizer.privatize(update: (0 ..< 50).map { Double($0) / 100 }, using: &rng)
        let e = UpdateEnvelope(update: update, configuration: configuration, modelVersion: 9, samplingRate: 0.1,
                               idempotencyKey: Self.key())
        let back = try UpdateEnvelope.decode(try e.encode())
        #expect(back.values == update.values)
        #expect(back.scale == update.scale)
        #expect(back.bitWidth == 16 && back.samplingRate == 0.1 && back.modelVersion == 9)
    }

    @Test("every truncation and every extension fails")
    func truncations() throws {
        let bytes = try Self.envelope(dimension: 29, bitWidth: 11).encode()
        for n in 0 ..< bytes.count {
            #expect(Self.decodeError(Array(bytes[0 ..< n])) != nil, "prefix of \(n) bytes decoded")
        }
        #expect(Self.decodeError(bytes + [0]) == .truncatedEnvelope)
        #expect(Self.decodeError(bytes) == nil)
    }

    @Test("every single flipped bit fails")
    func flippedBits() throws {
        let bytes = try Self.envelope(dimension: 13, bitWidth: 9).encode()
        for i in 0 ..< bytes.count {
            for bit in 0 ..< 8 {
                var copy = bytes
                copy[i] ^= UInt8(1) << UInt8(bit)
                #expect(Self.decodeError(copy) != nil, "flip of byte \(i) bit \(bit) decoded")
            }
        }
    }

    @Test("values outside the declared bit width are refused on encode and on decode")
    func outOfRange() throws {
        var e = Self.envelope(dimension: 4, bitWidth: 8)
        e.values[2] = 128
        #expect(throws: PrivacyError.valueOutOfRange) { try e.encode() }
        e.values[2] = -128
        #expect(throws: PrivacyError.valueOutOfRange) { try e.encode() }
        e.values[2] = -127
        var bytes = try e.encode()
        // Hand-pack −128 (0x80) into coordinate 2 and reseal: decode must still refuse it.
        bytes[82] = 0x80
        #expect(Self.decodeError(Self.resealed(bytes)) == .valueOutOfRange)
        // Non-zero padding bits in the last value byte.
        var odd = try Self.envelope(dimension: 3, bitWidth: 5).encode()  // 15 bits: 1 padding bit
        odd[81] |= 0x80
        #expect(Self.decodeError(Self.resealed(odd)) == .malformedEnvelope)
    }

    @Test("field validation: dims, floats, mode, unit, version, reserved bytes, size limit")
    func fieldValidation() throws {
        let good = try Self.envelope(dimension: 4, bitWidth: 8).encode()
        func patched(_ offset: Int, _ values: [UInt8]) -> [UInt8] {
            var b = good
            for (i, v) in values.enumerated() { b[offset + i] = v }
            return Self.resealed(b)
        }
        func f64(_ x: Double) -> [UInt8] { (0 ..< 8).map { UInt8(truncatingIfNeeded: x.bitPattern >> UInt64(8 * $0)) } }
        #expect(Self.decodeError(patched(0, [0x58])) == .malformedEnvelope)
        #expect(Self.decodeError(patched(8, [2, 0])) == .unsupportedEnvelopeVersion)
        #expect(Self.decodeError(patched(10, [0])) == .malformedEnvelope)
        #expect(Self.decodeError(patched(10, [3])) == .modeNotSupported)
        #expect(Self.decodeError(patched(11, [9])) == .malformedEnvelope)
        #expect(Self.decodeError(patched(12, [3])) == .invalidBitWidth)
        #expect(Self.decodeError(patched(12, [33])) == .invalidBitWidth)
        #expect(Self.decodeError(patched(13, [1])) == .malformedEnvelope)
        #expect(Self.decodeError(patched(24, [0, 0, 0, 0])) == .malformedEnvelope)
        // A huge declared dimension is refused by the limit before any allocation.
        #expect(Self.decodeError(patched(24, [0xFF, 0xFF, 0xFF, 0xFF])) == .malformedEnvelope)
        #expect(Self.decodeError(patched(24, [5, 0, 0, 0])) == .truncatedEnvelope)
        #expect(Self.decodeError(patched(28, [2, 0, 0, 0])) == .tooManySessions)
        #expect(Self.decodeError(patched(32, f64(.nan))) == .invalidNoiseMultiplier)
        #expect(Self.decodeError(patched(32, f64(0))) == .invalidNoiseMultiplier)  // local mode needs z > 0
        #expect(Self.decodeError(patched(40, f64(.infinity))) == .invalidSamplingRate)
        #expect(Self.decodeError(patched(40, f64(1.5))) == .invalidSamplingRate)
        #expect(Self.decodeError(patched(48, f64(-1))) == .invalidClipNorm)
        #expect(Self.decodeError(patched(56, f64(.nan))) == .malformedEnvelope)
        #expect(throws: PrivacyError.envelopeChecksumMismatch) {
            var b = good
            b[good.count - 1] ^= 1
            _ = try UpdateEnvelope.decode(b)
        }
        #expect(throws: PrivacyError.malformedEnvelope) {
            _ = try UpdateEnvelope.decode(good, maxDimension: 3)
        }
        var empty = Self.envelope(dimension: 4, bitWidth: 8)
        empty.values = []
        #expect(throws: PrivacyError.malformedEnvelope) { try empty.encode() }
        var nonFinite = Self.envelope(dimension: 4, bitWidth: 8)
        nonFinite.clipNorm = .infinity
        #expect(throws: PrivacyError.invalidClipNorm) { try nonFinite.encode() }
    }

    @Test("idempotency key: hex round trip, strict parsing")
    func idempotencyKey() throws {
        let k = Self.key(99)
        #expect(k.hex.utf8.count == 32)
        #expect(try IdempotencyKey(hex: k.hex) == k)
        #expect(try IdempotencyKey(hex: k.hex.uppercased()) == k)
        #expect(throws: PrivacyError.invalidIdempotencyKey) { try IdempotencyKey(hex: "00") }
        #expect(throws: PrivacyError.invalidIdempotencyKey) { try IdempotencyKey(hex: String(repeating: "g", count: 32)) }
        #expect(throws: PrivacyError.invalidIdempotencyKey) { try IdempotencyKey(bytes: [1, 2, 3]) }
        #expect(Self.key(1) != Self.key(2))
    }
}
