/// A 16-byte idempotency key: one per outbox entry, chosen once when the update is made and sent
/// with every attempt, so that the aggregator counts a retried upload once.
public struct IdempotencyKey: Sendable, Hashable {
    /// Number of bytes in a key.
    public static let byteCount = 16

    /// The 16 key bytes.
    public let bytes: [UInt8]

    /// A key from exactly 16 bytes.
    public init(bytes: [UInt8]) throws(PrivacyError) {
        guard bytes.count == IdempotencyKey.byteCount else { throw .invalidIdempotencyKey }
        self.bytes = bytes
    }

    /// A fresh key from `rng` (pass the system's secure generator in production).
    public init<R: RandomNumberGenerator>(using rng: inout R) {
        var bytes = [UInt8](repeating: 0, count: IdempotencyKey.byteCount)
        for i in stride(from: 0, to: IdempotencyKey.byteCount, by: 8) {
            let word = rng.next()
            for j in 0 ..< 8 { bytes[i + j] = UInt8(truncatingIfNeeded: word >> UInt64(8 * j)) }
        }
        self.bytes = bytes
    }

    /// A key from 32 hex digits (either case).
    public init(hex: String) throws(PrivacyError) {
        let utf8 = Array(hex.utf8)
        guard utf8.count == 2 * IdempotencyKey.byteCount else { throw .invalidIdempotencyKey }
        var bytes = [UInt8](repeating: 0, count: IdempotencyKey.byteCount)
        for i in 0 ..< IdempotencyKey.byteCount {
            guard let high = IdempotencyKey.nibble(utf8[2 * i]), let low = IdempotencyKey.nibble(utf8[2 * i + 1]) else {
                throw .invalidIdempotencyKey
            }
            bytes[i] = high << 4 | low
        }
        self.bytes = bytes
    }

    /// The key as 32 lowercase hex digits: the value of the `Idempotency-Key` header.
    public var hex: String {
        let digits: [UInt8] = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(2 * bytes.count)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30 ... 0x39: return c - 0x30
        case 0x61 ... 0x66: return c - 0x61 + 10
        case 0x41 ... 0x46: return c - 0x41 + 10
        default: return nil
        }
    }
}

/// One device update on the wire (`POST /v1/updates`, `Content-Type: application/vnd.hearth.update`).
///
/// Versioned little-endian binary, pure (no I/O; compiles as Embedded Swift). Layout, format
/// version 1 (the table is also in `docs/formats.md`):
///
/// | Offset | Size | Field |
/// |---|---|---|
/// | 0 | 8 | magic `HRTHUPDT` |
/// | 8 | 2 | format version (u16) = 1 |
/// | 10 | 1 | mode: 1 = local, 2 = central (3 = secure aggregation, reserved, rejected) |
/// | 11 | 1 | unit: 1 = device, 2 = session |
/// | 12 | 1 | bit width b, 4...32 |
/// | 13 | 3 | reserved, zero |
/// | 16 | 8 | model version the update was trained from (u64) |
/// | 24 | 4 | dimension d (u32), 1...`maxDimension` |
/// | 28 | 4 | contributions (u32): clipped units summed; 1 for the device unit |
/// | 32 | 8 | noise multiplier z (f64; > 0 in local mode, ≥ 0 in central) |
/// | 40 | 8 | sampling rate q (f64, in (0, 1]) |
/// | 48 | 8 | clip norm C (f64, > 0) |
/// | 56 | 8 | grid scale (f64, > 0): grid steps per parameter unit |
/// | 64 | 16 | idempotency key |
/// | 80 | ⌈d·b/8⌉ | values: d two's-complement b-bit integers, packed LSB-first (value i occupies bits i·b ..< (i+1)·b of the little-endian bit stream); padding bits of the last byte zero |
/// | end−4 | 4 | CRC-32 (IEEE, as the model file) of every byte before it |
///
/// Every value lies in ±(2^(b−1) − 1) (the grid's saturation limit; −2^(b−1) is rejected). The
/// update is DENSE: every coordinate is present, always, because a sparse update would reveal
/// which items the device touched. `decode` checks the total length against the header before
/// allocating anything.
public struct UpdateEnvelope: Sendable, Hashable {
    /// The 8 magic bytes, ASCII `HRTHUPDT`.
    public static let magic: [UInt8] = [0x48, 0x52, 0x54, 0x48, 0x55, 0x50, 0x44, 0x54]
    /// The format version this build writes and reads.
    public static let formatVersion: UInt16 = 1
    /// Size of the fixed header (values start here).
    public static let headerSize = 80
    /// Size of the trailing checksum.
    public static let checksumSize = 4
    /// Largest dimension accepted by default (2^26 coordinates; 256 MiB at 32 bits).
    public static let defaultMaxDimension = 1 << 26
    /// The media type of an encoded envelope.
    public static let contentType = "application/vnd.hearth.update"

    /// Model version the update was trained from.
    public var modelVersion: UInt64
    /// Who adds the noise (`.local` or `.central`).
    public var mode: UpdateMode
    /// What the guarantee protects.
    public var unit: PrivacyUnit
    /// Number of clipped contributions summed (1 for the device unit).
    public var contributions: Int
    /// Noise multiplier z.
    public var noiseMultiplier: Double
    /// The sampling rate q in force for this model version.
    public var samplingRate: Double
    /// Clip norm C.
    public var clipNorm: Double
    /// Bits per coordinate.
    public var bitWidth: Int
    /// Grid steps per parameter unit.
    public var scale: Double
    /// Grid values, one per global parameter (dense).
    public var values: [Int64]
    /// The idempotency key.
    public var idempotencyKey: IdempotencyKey

    /// Number of coordinates.
    public var dimension: Int { values.count }

    /// An envelope from its fields; `encode` validates them.
    public init(modelVersion: UInt64, mode: UpdateMode, unit: PrivacyUnit, contributions: Int,
                noiseMultiplier: Double, samplingRate: Double, clipNorm: Double, bitWidth: Int,
                scale: Double, values: [Int64], idempotencyKey: IdempotencyKey) {
        self.modelVersion = modelVersion
        self.mode = mode
        self.unit = unit
        self.contributions = contributions
        self.noiseMultiplier = noiseMultiplier
        self.samplingRate = samplingRate
        self.clipNorm = clipNorm
        self.bitWidth = bitWidth
        self.scale = scale
        self.values = values
        self.idempotencyKey = idempotencyKey
    }

    /// The envelope of a privatized update made with `configuration`.
    public init(update: PrivatizedUpdate, configuration: PrivacyConfiguration, modelVersion: UInt64,
                samplingRate: Double, idempotencyKey: IdempotencyKey) {
        self.init(modelVersion: modelVersion, mode: update.mode, unit: update.unit,
                  contributions: update.contributions, noiseMultiplier: configuration.noiseMultiplier,
                  samplingRate: samplingRate, clipNorm: configuration.clipNorm,
                  bitWidth: configuration.bitWidth, scale: update.scale, values: update.values,
                  idempotencyKey: idempotencyKey)
    }

    /// Encoded size of an envelope of `dimension` values at `bitWidth` bits.
    public static func encodedSize(dimension: Int, bitWidth: Int) -> Int {
        headerSize + (dimension * bitWidth + 7) / 8 + checksumSize
    }

    // MARK: - Encoding

    /// The envelope as bytes. Throws if a field is out of range (the same checks as `decode`).
    public func encode(maxDimension: Int = UpdateEnvelope.defaultMaxDimension) throws(PrivacyError) -> [UInt8] {
        guard mode != .secureAggregation else { throw .modeNotSupported }
        guard bitWidth >= 4, bitWidth <= 32 else { throw .invalidBitWidth }
        guard values.count > 0, values.count <= maxDimension, values.count <= Int(UInt32.max) else {
            throw .malformedEnvelope
        }
        try UpdateEnvelope.validate(mode: mode, unit: unit, contributions: contributions,
                                    noiseMultiplier: noiseMultiplier, samplingRate: samplingRate,
                                    clipNorm: clipNorm, scale: scale)
        let limit = (Int64(1) << Int64(bitWidth - 1)) - 1
        for v in values where v > limit || v < -limit { throw .valueOutOfRange }

        let size = UpdateEnvelope.encodedSize(dimension: values.count, bitWidth: bitWidth)
        var out = [UInt8](repeating: 0, count: size)
        for i in 0 ..< 8 { out[i] = UpdateEnvelope.magic[i] }
        put(&out, 8, UInt64(UpdateEnvelope.formatVersion), width: 2)
        out[10] = mode == .local ? 1 : 2
        out[11] = unit == .device ? 1 : 2
        out[12] = UInt8(bitWidth)
        put(&out, 16, modelVersion, width: 8)
        put(&out, 24, UInt64(values.count), width: 4)
        put(&out, 28, UInt64(contributions), width: 4)
        put(&out, 32, noiseMultiplier.bitPattern, width: 8)
        put(&out, 40, samplingRate.bitPattern, width: 8)
        put(&out, 48, clipNorm.bitPattern, width: 8)
        put(&out, 56, scale.bitPattern, width: 8)
        for i in 0 ..< IdempotencyKey.byteCount { out[64 + i] = idempotencyKey.bytes[i] }

        let b = bitWidth
        let mask: UInt64 = (UInt64(1) << UInt64(b)) - 1
        var acc: UInt64 = 0
        var bits = 0
        var pos = UpdateEnvelope.headerSize
        for v in values {
            acc |= (UInt64(bitPattern: v) & mask) << UInt64(bits)
            bits += b
            while bits >= 8 {
                out[pos] = UInt8(truncatingIfNeeded: acc)
                acc >>= 8
                bits -= 8
                pos += 1
            }
        }
        if bits > 0 {
            out[pos] = UInt8(truncatingIfNeeded: acc)
            pos += 1
        }
        let crcOffset = size - UpdateEnvelope.checksumSize
        let crc = UpdateEnvelope.crc32(out, count: crcOffset)
        put(&out, crcOffset, UInt64(crc), width: 4)
        return out
    }

    // MARK: - Decoding

    /// Decodes and validates an envelope. Throws `truncatedEnvelope`, `malformedEnvelope`,
    /// `unsupportedEnvelopeVersion`, `envelopeChecksumMismatch`, `invalidBitWidth`,
    /// `valueOutOfRange`, `modeNotSupported` or a field error (`invalidClipNorm`, ...).
    public static func decode(_ bytes: [UInt8], maxDimension: Int = UpdateEnvelope.defaultMaxDimension) throws(PrivacyError) -> UpdateEnvelope {
        guard bytes.count >= headerSize + checksumSize else { throw .truncatedEnvelope }
        for i in 0 ..< 8 where bytes[i] != magic[i] { throw .malformedEnvelope }
        guard get(bytes, 8, width: 2) == UInt64(formatVersion) else { throw .unsupportedEnvelopeVersion }
        let bitWidth = Int(bytes[12])
        guard bitWidth >= 4, bitWidth <= 32 else { throw .invalidBitWidth }
        let dimension = Int(get(bytes, 24, width: 4))
        guard dimension > 0, dimension <= maxDimension else { throw .malformedEnvelope }
        // Exact length before anything is allocated.
        let size = encodedSize(dimension: dimension, bitWidth: bitWidth)
        guard bytes.count == size else { throw .truncatedEnvelope }
        let crcOffset = size - checksumSize
        guard crc32(bytes, count: crcOffset) == UInt32(get(bytes, crcOffset, width: 4)) else {
            throw .envelopeChecksumMismatch
        }
        guard bytes[13] == 0, bytes[14] == 0, bytes[15] == 0 else { throw .malformedEnvelope }
        let mode: UpdateMode
        switch bytes[10] {
        case 1: mode = .local
        case 2: mode = .central
        case 3: throw .modeNotSupported
        default: throw .malformedEnvelope
        }
        let unit: PrivacyUnit
        switch bytes[11] {
        case 1: unit = .device
        case 2: unit = .session
        default: throw .malformedEnvelope
        }
        let contributions = Int(get(bytes, 28, width: 4))
        let noiseMultiplier = Double(bitPattern: get(bytes, 32, width: 8))
        let samplingRate = Double(bitPattern: get(bytes, 40, width: 8))
        let clipNorm = Double(bitPattern: get(bytes, 48, width: 8))
        let scale = Double(bitPattern: get(bytes, 56, width: 8))
        try validate(mode: mode, unit: unit, contributions: contributions, noiseMultiplier: noiseMultiplier,
                     samplingRate: samplingRate, clipNorm: clipNorm, scale: scale)
        let key = try IdempotencyKey(bytes: Array(bytes[64 ..< 80]))

        let b = bitWidth
        let mask: UInt64 = (UInt64(1) << UInt64(b)) - 1
        let shift = UInt64(64 - b)
        let limit = (Int64(1) << Int64(b - 1)) - 1
        var values = [Int64](repeating: 0, count: dimension)
        var acc: UInt64 = 0
        var bits = 0
        var pos = headerSize
        for i in 0 ..< dimension {
            while bits < b {
                acc |= UInt64(bytes[pos]) << UInt64(bits)
                bits += 8
                pos += 1
            }
            let raw = acc & mask
            acc >>= UInt64(b)
            bits -= b
            let v = Int64(bitPattern: raw << shift) >> Int64(shift)
            guard v >= -limit else { throw .valueOutOfRange }
            values[i] = v
        }
        // Padding bits of the last byte must be zero, and the values must end at the checksum.
        guard acc == 0, pos == crcOffset else { throw .malformedEnvelope }
        return UpdateEnvelope(modelVersion: get(bytes, 16, width: 8), mode: mode, unit: unit,
                              contributions: contributions, noiseMultiplier: noiseMultiplier,
                              samplingRate: samplingRate, clipNorm: clipNorm, bitWidth: bitWidth,
                              scale: scale, values: values, idempotencyKey: key)
    }

    // MARK: - Helpers

    private static func validate(mode: UpdateMode, unit: PrivacyUnit, contributions: Int,
                                 noiseMultiplier: Double, samplingRate: Double, clipNorm: Double,
                                 scale: Double) throws(PrivacyError) {
        guard noiseMultiplier.isFinite, noiseMultiplier >= 0 else { throw .invalidNoiseMultiplier }
        if mode == .local && noiseMultiplier == 0 { throw .invalidNoiseMultiplier }
        guard samplingRate.isFinite, samplingRate > 0, samplingRate <= 1 else { throw .invalidSamplingRate }
        guard clipNorm.isFinite, clipNorm > 0 else { throw .invalidClipNorm }
        guard scale.isFinite, scale > 0 else { throw .malformedEnvelope }
        guard contributions >= 1, contributions <= Int(UInt32.max) else { throw .tooManySessions }
        if unit == .device && contributions != 1 { throw .tooManySessions }
    }

    private func put(_ out: inout [UInt8], _ offset: Int, _ value: UInt64, width: Int) {
        for i in 0 ..< width { out[offset + i] = UInt8(truncatingIfNeeded: value >> UInt64(8 * i)) }
    }

    private static func get(_ bytes: [UInt8], _ offset: Int, width: Int) -> UInt64 {
        var v: UInt64 = 0
        for i in (0 ..< width).reversed() { v = v << 8 | UInt64(bytes[offset + i]) }
        return v
    }

    /// CRC-32 (IEEE 802.3 / zlib, reflected 0xEDB88320) of the first `count` bytes, bitwise
    /// (HearthPrivacy does not depend on HearthCore; the check value of "123456789" is 0xCBF43926).
    static func crc32(_ bytes: [UInt8], count: Int) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for i in 0 ..< count {
            crc = crc32Table[Int((crc ^ UInt32(bytes[i])) & 0xFF)] ^ (crc >> 8)
        }
        return ~crc
    }

    private static let crc32Table: [UInt32] = {
        var table = [UInt32](repeating: 0, count: 256)
        for i in 0 ..< 256 {
            var c = UInt32(i)
            for _ in 0 ..< 8 { c = (c & 1) != 0 ? (0xEDB8_8320 ^ (c >> 1)) : (c >> 1) }
            table[i] = c
        }
        return table
    }()
}

// MARK: - Streaming reader

extension UpdateEnvelope {
    /// The fixed 80-byte header of an encoded envelope, without the values.
    ///
    /// Lets a reader (the aggregator) check an upload and stream its packed values without
    /// materialising a `[Int64]` of `dimension` entries: `readHeader` or `decodeHeader`, then a
    /// `PackedValues` iterator over the same bytes.
    public struct Header: Sendable, Hashable {
        /// Model version the update was trained from.
        public var modelVersion: UInt64
        /// Who adds the noise (`.secureAggregation` only from `readHeader`; `decodeHeader` refuses it).
        public var mode: UpdateMode
        /// What the guarantee protects.
        public var unit: PrivacyUnit
        /// Number of clipped contributions summed.
        public var contributions: Int
        /// Noise multiplier z, as sent (may be NaN from `readHeader`).
        public var noiseMultiplier: Double
        /// Sampling rate q, as sent.
        public var samplingRate: Double
        /// Clip norm C, as sent.
        public var clipNorm: Double
        /// Bits per coordinate, 4...32.
        public var bitWidth: Int
        /// Grid steps per parameter unit, as sent.
        public var scale: Double
        /// Number of coordinates d.
        public var dimension: Int
        /// The idempotency key.
        public var idempotencyKey: IdempotencyKey
        /// The CRC-32 stored in (and verified against) the last four bytes.
        public var checksum: UInt32

        /// Checks the field ranges `decode` checks (z, q, C, scale, contributions for the unit,
        /// mode not secure aggregation), throwing the same errors.
        public func checkFields() throws(PrivacyError) {
            guard mode != .secureAggregation else { throw .modeNotSupported }
            try UpdateEnvelope.validate(mode: mode, unit: unit, contributions: contributions,
                                        noiseMultiplier: noiseMultiplier, samplingRate: samplingRate,
                                        clipNorm: clipNorm, scale: scale)
        }
    }

    /// Reads the header structurally: total length against the header, magic, format version,
    /// bit width, dimension, CRC, reserved bytes, mode and unit codes. Field values (z, q, C,
    /// scale, contributions) are returned as sent, unchecked, so that a caller can name what is
    /// wrong with them; `Header.checkFields()` applies `decode`'s checks. Allocates nothing
    /// proportional to the dimension.
    ///
    /// Throws `truncatedEnvelope`, `malformedEnvelope`, `unsupportedEnvelopeVersion`,
    /// `invalidBitWidth` or `envelopeChecksumMismatch`, in the order `decode` checks them.
    /// Mode code 3 (secure aggregation) is returned as `.secureAggregation`.
    public static func readHeader(_ bytes: [UInt8], maxDimension: Int = UpdateEnvelope.defaultMaxDimension) throws(PrivacyError) -> Header {
        guard bytes.count >= headerSize + checksumSize else { throw .truncatedEnvelope }
        for i in 0 ..< 8 where bytes[i] != magic[i] { throw .malformedEnvelope }
        guard get(bytes, 8, width: 2) == UInt64(formatVersion) else { throw .unsupportedEnvelopeVersion }
        let bitWidth = Int(bytes[12])
        guard bitWidth >= 4, bitWidth <= 32 else { throw .invalidBitWidth }
        let dimension = Int(get(bytes, 24, width: 4))
        guard dimension > 0, dimension <= maxDimension else { throw .malformedEnvelope }
        let size = encodedSize(dimension: dimension, bitWidth: bitWidth)
        guard bytes.count == size else { throw .truncatedEnvelope }
        let crcOffset = size - checksumSize
        let checksum = UInt32(get(bytes, crcOffset, width: 4))
        guard crc32(bytes, count: crcOffset) == checksum else { throw .envelopeChecksumMismatch }
        guard bytes[13] == 0, bytes[14] == 0, bytes[15] == 0 else { throw .malformedEnvelope }
        let mode: UpdateMode
        switch bytes[10] {
        case 1: mode = .local
        case 2: mode = .central
        case 3: mode = .secureAggregation
        default: throw .malformedEnvelope
        }
        let unit: PrivacyUnit
        switch bytes[11] {
        case 1: unit = .device
        case 2: unit = .session
        default: throw .malformedEnvelope
        }
        return Header(modelVersion: get(bytes, 16, width: 8), mode: mode, unit: unit,
                      contributions: Int(get(bytes, 28, width: 4)),
                      noiseMultiplier: Double(bitPattern: get(bytes, 32, width: 8)),
                      samplingRate: Double(bitPattern: get(bytes, 40, width: 8)),
                      clipNorm: Double(bitPattern: get(bytes, 48, width: 8)),
                      bitWidth: bitWidth, scale: Double(bitPattern: get(bytes, 56, width: 8)),
                      dimension: dimension, idempotencyKey: try IdempotencyKey(bytes: Array(bytes[64 ..< 80])),
                      checksum: checksum)
    }

    /// `readHeader` followed by `Header.checkFields()`: every check `decode` makes except the
    /// per-value range check and the padding bits (see `PackedValues`).
    public static func decodeHeader(_ bytes: [UInt8], maxDimension: Int = UpdateEnvelope.defaultMaxDimension) throws(PrivacyError) -> Header {
        let header = try readHeader(bytes, maxDimension: maxDimension)
        try header.checkFields()
        return header
    }

    /// Streams the packed b-bit values of an encoded envelope, one `Int64` at a time, without
    /// allocating. Sign-extends each value exactly as `decode` does; does not range-check them:
    /// compare with `-limit` (the reader's `limit` is 2^(b−1) − 1) as `decode` does, and check
    /// `paddingIsZero` after the last value.
    public struct PackedValues: IteratorProtocol, Sendable {
        private let bytes: [UInt8]
        private let bitWidth: Int
        private let mask: UInt64
        private let shift: UInt64
        private var remaining: Int
        private var accumulator: UInt64 = 0
        private var bits = 0
        private var position: Int

        /// The saturation limit 2^(b−1) − 1; a value below `-limit` is out of range.
        public let limit: Int64

        /// A reader over `bytes`, which must be exactly `encodedSize(dimension:bitWidth:)` long
        /// (else `truncatedEnvelope`) with a bit width in 4...32 (else `invalidBitWidth`).
        /// Does not check the header or the CRC: use `readHeader` / `decodeHeader` first.
        public init(_ bytes: [UInt8], dimension: Int, bitWidth: Int) throws(PrivacyError) {
            guard bitWidth >= 4, bitWidth <= 32 else { throw .invalidBitWidth }
            guard dimension > 0, bytes.count == UpdateEnvelope.encodedSize(dimension: dimension, bitWidth: bitWidth) else {
                throw .truncatedEnvelope
            }
            self.bytes = bytes
            self.bitWidth = bitWidth
            self.mask = (UInt64(1) << UInt64(bitWidth)) - 1
            self.shift = UInt64(64 - bitWidth)
            self.limit = (Int64(1) << Int64(bitWidth - 1)) - 1
            self.remaining = dimension
            self.position = UpdateEnvelope.headerSize
        }

        /// A reader over the values of an envelope whose header is `header`.
        public init(_ bytes: [UInt8], header: Header) throws(PrivacyError) {
            try self.init(bytes, dimension: header.dimension, bitWidth: header.bitWidth)
        }

        /// Number of values not yet read.
        public var remainingCount: Int { remaining }

        /// After the last value: whether the padding bits of the last byte are zero (as `decode`
        /// requires). Before it, false.
        public var paddingIsZero: Bool { remaining == 0 && accumulator == 0 }

        /// The next value, sign-extended, or nil after the last one.
        public mutating func next() -> Int64? {
            guard remaining > 0 else { return nil }
            while bits < bitWidth {
                accumulator |= UInt64(bytes[position]) << UInt64(bits)
                bits += 8
                position += 1
            }
            let raw = accumulator & mask
            accumulator >>= UInt64(bitWidth)
            bits -= bitWidth
            remaining -= 1
            return Int64(bitPattern: raw << shift) >> Int64(shift)
        }
    }
}
