/// Writes an `UpdateEnvelope` (format version 1, byte for byte what `UpdateEnvelope.encode`
/// writes) from values handed over one at a time, so that a large update never exists as an
/// `[Int64]` next to its encoding.
///
/// The header is made by `UpdateEnvelope.encode` itself (for a one-value envelope with the same
/// fields, which runs the same field checks), then given the real dimension; the values are
/// packed LSB-first as `encode` packs them and the CRC-32 is written by `finish`.
public struct UpdateEnvelopeWriter: Sendable {
    /// Number of values the envelope holds.
    public let dimension: Int
    /// Bits per value.
    public let bitWidth: Int
    private var out: [UInt8]
    private var accumulator: UInt64 = 0
    private var bits = 0
    private var position = UpdateEnvelope.headerSize
    private var written = 0
    private let mask: UInt64
    private let limit: Int64

    /// A writer for `dimension` values with the given header fields.
    ///
    /// Throws what `UpdateEnvelope.encode` throws for these fields, and `malformedEnvelope` for
    /// a dimension outside 1...`maxDimension` (or above 2^32 − 1).
    public init(modelVersion: UInt64, mode: UpdateMode, unit: PrivacyUnit, contributions: Int,
                noiseMultiplier: Double, samplingRate: Double, clipNorm: Double, bitWidth: Int,
                scale: Double, dimension: Int, idempotencyKey: IdempotencyKey,
                maxDimension: Int = UpdateEnvelope.defaultMaxDimension) throws(PrivacyError) {
        guard dimension > 0, dimension <= maxDimension, dimension <= Int(UInt32.max) else { throw .malformedEnvelope }
        let probe = UpdateEnvelope(modelVersion: modelVersion, mode: mode, unit: unit, contributions: contributions,
                                   noiseMultiplier: noiseMultiplier, samplingRate: samplingRate, clipNorm: clipNorm,
                                   bitWidth: bitWidth, scale: scale, values: [0], idempotencyKey: idempotencyKey)
        let header = try probe.encode(maxDimension: max(1, maxDimension))
        var out = [UInt8](repeating: 0, count: UpdateEnvelope.encodedSize(dimension: dimension, bitWidth: bitWidth))
        for i in 0 ..< UpdateEnvelope.headerSize { out[i] = header[i] }
        for i in 0 ..< 4 { out[24 + i] = UInt8(truncatingIfNeeded: UInt64(dimension) >> UInt64(8 * i)) }
        self.out = out
        self.dimension = dimension
        self.bitWidth = bitWidth
        self.mask = (UInt64(1) << UInt64(bitWidth)) - 1
        self.limit = (Int64(1) << Int64(bitWidth - 1)) - 1
    }

    /// Values written so far.
    public var count: Int { written }

    /// Appends the next value. Throws `valueOutOfRange` outside ±(2^(b−1) − 1) and
    /// `malformedEnvelope` past `dimension` values.
    public mutating func append(_ value: Int64) throws(PrivacyError) {
        guard value <= limit, value >= -limit else { throw .valueOutOfRange }
        guard written < dimension else { throw .malformedEnvelope }
        accumulator |= (UInt64(bitPattern: value) & mask) << UInt64(bits)
        bits += bitWidth
        while bits >= 8 {
            out[position] = UInt8(truncatingIfNeeded: accumulator)
            accumulator >>= 8
            bits -= 8
            position += 1
        }
        written += 1
    }

    /// The encoded envelope. Throws `malformedEnvelope` unless exactly `dimension` values were appended.
    /// The writer is left empty (a second call throws `malformedEnvelope`).
    public mutating func finish() throws(PrivacyError) -> [UInt8] {
        guard written == dimension, !out.isEmpty else { throw .malformedEnvelope }
        // Move the buffer out of the writer before writing into it, so it is uniquely referenced:
        // a `consuming` finish copied the whole envelope (megabytes for a large model) when the
        // caller's variable could not be moved from (measured: +13 MB for 6.5 M coordinates).
        var bytes: [UInt8] = []
        swap(&bytes, &out)
        if bits > 0 {
            bytes[position] = UInt8(truncatingIfNeeded: accumulator)
            position += 1
        }
        let crcOffset = bytes.count - UpdateEnvelope.checksumSize
        let crc = UpdateEnvelope.crc32(bytes, count: crcOffset)
        for i in 0 ..< 4 { bytes[crcOffset + i] = UInt8(truncatingIfNeeded: crc >> UInt32(8 * i)) }
        return bytes
    }
}

/// A device update finished into its wire envelope (what the device uploads).
public struct SealedUpdate: Sendable {
    /// The encoded `UpdateEnvelope`, the body of `POST /v1/updates`.
    public var payload: [UInt8]
    /// The key inside the envelope (also the `Idempotency-Key` header).
    public var idempotencyKey: IdempotencyKey
    /// Contributions, saturation, device noise and scale, as `UpdateAccumulator.finish` reports them.
    public var summary: UpdateAccumulator<Float>.Summary
}

extension UpdateAccumulator where F == Float {
    /// The device's upload: the device noise (local mode), saturation and encoding of
    /// `finish`, streamed straight into an `UpdateEnvelopeWriter` whose header carries this
    /// accumulator's privacy configuration, `modelVersion`, the plan's `samplingRate` and
    /// `idempotencyKey`.
    ///
    /// The agent's training round and the simulator's over-HTTP devices both build their uploads
    /// here. Draws from `rng` exactly as `finish` does (the key is the caller's, so the caller
    /// chooses where it comes from). Throws what `finish` and the writer throw.
    public consuming func seal<R: RandomNumberGenerator>(modelVersion: UInt64, samplingRate: Double,
                                                         idempotencyKey: IdempotencyKey,
                                                         using rng: inout R) throws(PrivacyError) -> SealedUpdate {
        let configuration = privatizer.configuration
        let grid = privatizer.grid
        var writer = try UpdateEnvelopeWriter(
            modelVersion: modelVersion, mode: configuration.mode, unit: configuration.unit, contributions: contributions,
            noiseMultiplier: configuration.noiseMultiplier, samplingRate: samplingRate, clipNorm: configuration.clipNorm,
            bitWidth: configuration.bitWidth, scale: grid.scale, dimension: grid.dimension, idempotencyKey: idempotencyKey)
        let summary = try finish(using: &rng) { (value: Int64) throws(PrivacyError) in try writer.append(value) }
        return SealedUpdate(payload: try writer.finish(), idempotencyKey: idempotencyKey, summary: summary)
    }
}
