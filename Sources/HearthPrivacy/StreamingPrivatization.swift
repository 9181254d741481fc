/// The privacy path of `UpdatePrivatizer.privatize(sessions:)` without full-size copies.
///
/// `privatize(sessions:)` holds, for a d-coordinate update, a Double sum, a clipped Double copy,
/// the rounding floors and thresholds, the rounded vector and the integer total: six arrays of
/// 8·d bytes (about 300 MiB for 6.5 M coordinates). `UpdateAccumulator` does the same work, in
/// the same order, with the same random draws, reading the update in place:
///
/// - clipping: the L2 norm is computed over the caller's pieces (two passes, as
///   `Clipping.l2Norm`), and the clip factor is applied on the fly;
/// - rounding: the grid value `y = x·factor·scale` is recomputed from the input whenever it is
///   needed (a deterministic function of the data), so an attempt keeps only one bit per
///   coordinate (rounded up or not) until the exact integer norm check ‖k‖₂² ≤ ⌊Δ²⌋ passes;
/// - summing (session unit): each contribution is folded into an `Int32` total as soon as it is
///   rounded (|Σ| ≤ k·Δ ≤ 2^(b−1) − 1 by the grid's choice of scale, so it fits). The total is
///   kept in blocks of `SparseTotal.blockLength` coordinates, allocated when a non-zero value
///   first lands in them: a session's update from a training overlay is zero outside the rows it
///   touched (and zero rounds to zero), so the sum of a few sessions holds a few blocks, not d
///   integers;
/// - noise and saturation: added coordinate by coordinate while the result is handed to the
///   caller (for example straight into an `UpdateEnvelopeWriter`).
///
/// The clip bound, the conditional rounding and the discrete Gaussian noise are exactly those of
/// `privatize(sessions:)`: given the same generator the two produce identical values.
public struct UpdateAccumulator<F: BinaryFloatingPoint & Sendable>: Sendable {
    /// The privatizer whose grid, clip norm and noise are applied.
    public let privatizer: UpdatePrivatizer
    /// Clipped and rounded contributions added so far.
    public private(set) var contributions = 0
    /// Device unit: the one contribution, kept as the caller's coordinates plus its rounding bits
    /// (behind a closure, so any `UpdateCoordinates` source can be kept without a copy).
    private var single: (@Sendable (_ body: (Int64) -> Void) -> Void)?
    /// Session unit: the integer sum of the rounded contributions.
    private var total = SparseTotal(count: 0)

    /// An empty accumulator. Throws `modeNotSupported` for secure aggregation.
    public init(privatizer: UpdatePrivatizer) throws(PrivacyError) {
        if privatizer.configuration.mode == .secureAggregation { throw .modeNotSupported }
        self.privatizer = privatizer
    }

    /// Clips and rounds one contribution, given as consecutive pieces that together hold the
    /// update's d coordinates in order (for example the embedding table, then the biases).
    ///
    /// Device unit: exactly one contribution (the whole update); its pieces are kept (not
    /// copied) until `finish`, so the caller must not mutate them (that would copy them).
    /// Session unit: the contribution is folded into the integer total at once, and the caller
    /// may reuse its buffers. Throws `tooManySessions` beyond one contribution (device unit) or
    /// `maxSessionsPerUpdate` (session unit), `dimensionMismatch`, `nonFiniteUpdate`,
    /// `roundingFailed`.
    public mutating func add<R: RandomNumberGenerator>(_ pieces: [[F]], using rng: inout R) throws(PrivacyError) {
        try add(coordinates: UpdatePieces(pieces), using: &rng)
    }

    /// `add(_:using:)` for an update given as any `UpdateCoordinates` source, read in place (for
    /// example a sparse training overlay whose untouched rows are zero). Device unit: the source
    /// is kept until `finish`. Same values and draws as `add` with the same coordinates as pieces.
    public mutating func add<S: UpdateCoordinates, R: RandomNumberGenerator>(
        coordinates source: S, using rng: inout R
    ) throws(PrivacyError) where S.Value == F {
        let configuration = privatizer.configuration
        let limit = configuration.unit == .session ? configuration.maxSessionsPerUpdate : 1
        guard contributions < limit else { throw .tooManySessions }
        let rounded = try RoundedContribution(coordinates: source, grid: privatizer.grid, using: &rng)
        switch configuration.unit {
        case .device:
            single = { body in rounded.forEachValue(body) }
        case .session:
            if total.count == 0 { total = SparseTotal(count: privatizer.grid.dimension) }
            var index = 0
            var failed = false
            rounded.forEachValue { value in
                if value != 0, !total.add(value, at: index) { failed = true }
                index += 1
            }
            if failed { throw .valueOutOfRange }
        }
        contributions += 1
    }

    /// What `finish` produced besides the values.
    public struct Summary: Sendable, Equatable {
        /// Clipped contributions summed (1 for the device unit).
        public var contributions: Int
        /// Coordinates that hit the bit-width limit and were saturated.
        public var saturatedCoordinates: Int
        /// σ² = numerator/denominator of the discrete Gaussian added on the device (nil in central mode).
        public var deviceNoiseNumerator: UInt64?
        /// See `deviceNoiseNumerator`.
        public var deviceNoiseDenominator: UInt64?
        /// Grid steps per parameter unit.
        public var scale: Double
    }

    /// Adds the device's discrete Gaussian noise (local mode) to the sum, saturates to the bit
    /// width and hands every coordinate, in order, to `emit`. Throws `emptyUpdate` when nothing
    /// was added, or what `emit` throws.
    public func finish<R: RandomNumberGenerator>(
        using rng: inout R, emit: (Int64) throws(PrivacyError) -> Void
    ) throws(PrivacyError) -> Summary {
        guard contributions > 0 else { throw .emptyUpdate }
        let grid = privatizer.grid
        let addNoise = privatizer.configuration.mode == .local && !privatizer.sabotageDisableNoise
        let limit = grid.maxMagnitude
        var saturated = 0
        func output(_ sum: Int64, _ rng: inout R) throws(PrivacyError) {
            var v = sum
            if addNoise { v += privatizer.noise.sample(using: &rng) }
            if v > limit { v = limit; saturated += 1 } else if v < -limit { v = -limit; saturated += 1 }
            try emit(v)
        }
        if let single {
            var failure: PrivacyError?
            single { value in
                guard failure == nil else { return }
                do throws(PrivacyError) { try output(value, &rng) } catch { failure = error }
            }
            if let failure { throw failure }
        } else {
            try total.forEachValue { (sum) throws(PrivacyError) in try output(Int64(sum), &rng) }
        }
        let local = privatizer.configuration.mode == .local
        return Summary(contributions: contributions, saturatedCoordinates: saturated,
                       deviceNoiseNumerator: local ? privatizer.noise.varianceNumerator : nil,
                       deviceNoiseDenominator: local ? privatizer.noise.varianceDenominator : nil,
                       scale: grid.scale)
    }
}

/// An `Int32` sum over d coordinates stored in fixed-size blocks, each allocated when a non-zero
/// value first lands in it; an unallocated block reads as zeros.
///
/// At most d integers plus one array reference per block (the dense layout plus 1/32): the
/// saving comes from updates that are zero outside a few rows, which is what device training
/// produces.
struct SparseTotal: Sendable {
    /// Coordinates per block: 256 (1 KiB), four rows of a 64-wide embedding table.
    static let blockLength = 256
    /// Number of coordinates.
    let count: Int
    /// Block b holds coordinates b·blockLength ..< min((b+1)·blockLength, count), or is empty.
    private var blocks: [[Int32]]

    init(count: Int) {
        self.count = count
        blocks = [[Int32]](repeating: [], count: (count + Self.blockLength - 1) / Self.blockLength)
    }

    /// Adds `value` to coordinate `index`; false (and nothing changed) when the sum leaves `Int32`.
    mutating func add(_ value: Int64, at index: Int) -> Bool {
        let block = index / Self.blockLength
        let offset = index - block * Self.blockLength
        if blocks[block].isEmpty {
            blocks[block] = [Int32](repeating: 0, count: min(Self.blockLength, count - block * Self.blockLength))
        }
        guard let sum = Int32(exactly: Int64(blocks[block][offset]) + value) else { return false }
        blocks[block][offset] = sum
        return true
    }

    /// Number of blocks allocated (for tests and memory figures).
    var allocatedBlocks: Int { blocks.reduce(0) { $0 + ($1.isEmpty ? 0 : 1) } }

    /// Calls `body` with every coordinate's sum, in order.
    func forEachValue<E: Error>(_ body: (Int32) throws(E) -> Void) throws(E) {
        for (b, block) in blocks.enumerated() {
            if block.isEmpty {
                for _ in 0 ..< min(Self.blockLength, count - b * Self.blockLength) { try body(0) }
            } else {
                for v in block { try body(v) }
            }
        }
    }
}

/// One contribution clipped to C and rounded onto the grid, stored as the caller's coordinates,
/// the clip factor and one rounding bit per coordinate.
struct RoundedContribution<Source: UpdateCoordinates>: Sendable {
    typealias F = Source.Value
    let source: Source
    /// nil when the contribution is already within the clip norm (used as is, like `Clipping.clip`).
    let factor: Double?
    let scale: Double
    /// Bit i set: coordinate i rounds up.
    let up: [UInt64]

    /// Clips (norm over the coordinates in order, as `Clipping.l2Norm`) and rounds with the
    /// exact conditional norm check of `IntegerGrid.round`, drawing from `rng` in the same order.
    init<R: RandomNumberGenerator>(coordinates source: Source, grid: IntegerGrid, maxAttempts: Int = 1000,
                                   using rng: inout R) throws(PrivacyError) {
        let count = source.count
        guard count == grid.dimension else { throw .dimensionMismatch }
        let norm = try Clipping.l2Norm(coordinates: source)
        self.source = source
        let factor = norm <= grid.clipNorm ? nil : grid.clipNorm / norm * (1 - 1e-12)
        let scale = grid.scale
        self.factor = factor
        self.scale = scale
        // The grid values must be finite and small enough for exact floors (as `IntegerGrid.round`).
        let limit = Double(Int64(1) << 40)
        var representable = true
        source.forEachCoordinate { x in
            let y = RoundedContribution.gridValue(x, factor: factor, scale: scale)
            if !(y.isFinite && y.magnitude < limit) { representable = false }
        }
        guard representable else { throw .nonFiniteUpdate }
        var bits = [UInt64](repeating: 0, count: (count + 63) / 64)
        for _ in 0 ..< maxAttempts {
            var normSquared = Word128(0)
            var i = 0
            source.forEachCoordinate { x in
                let (floor, threshold) = RoundedContribution.split(x, factor: factor, scale: scale)
                let up = rng.next() < threshold
                let word = i >> 6
                let mask = UInt64(1) << UInt64(i & 63)
                if up { bits[word] |= mask } else { bits[word] &= ~mask }
                let k = floor + (up ? 1 : 0)
                let m = k.magnitude
                normSquared = normSquared.adding(Word128.product(m, m)) ?? Word128(high: UInt64.max, low: UInt64.max)
                i += 1
            }
            if normSquared <= grid.sensitivitySquaredBound {
                up = bits
                return
            }
        }
        throw .roundingFailed
    }

    /// The rounded integer of every coordinate, in order.
    func forEachValue(_ body: (Int64) -> Void) {
        var i = 0
        source.forEachCoordinate { x in
            let (floor, _) = RoundedContribution.split(x, factor: factor, scale: scale)
            let bit = (up[i >> 6] >> UInt64(i & 63)) & 1
            body(floor + Int64(bit))
            i += 1
        }
    }

    /// x·factor·scale, computed exactly as `Clipping.clip` then `IntegerGrid.round` compute it.
    @inline(__always)
    static func gridValue(_ x: F, factor: Double?, scale: Double) -> Double {
        let clipped = factor.map { Double(x) * $0 } ?? Double(x)
        return clipped * scale
    }

    /// The floor of the grid value and the 64-bit threshold of its fractional part.
    @inline(__always)
    static func split(_ x: F, factor: Double?, scale: Double) -> (Int64, UInt64) {
        let y = gridValue(x, factor: factor, scale: scale)
        let f = y.rounded(.down)
        let fraction = y - f  // exact for |y| < 2^52
        return (Int64(f), IntegerGrid.threshold(fraction: fraction))
    }
}

extension Clipping {
    /// The L2 norm of the concatenation of `pieces`, computed exactly as `l2Norm` computes it
    /// for the joined vector (same order, same scaling), without joining them.
    public static func l2Norm<F: BinaryFloatingPoint & Sendable>(pieces: [[F]]) throws(PrivacyError) -> Double {
        try l2Norm(coordinates: UpdatePieces(pieces))
    }

    /// The L2 norm of `source`'s coordinates, computed exactly as `l2Norm` computes it for the
    /// same values in an array (same order, same scaling), reading them in place.
    public static func l2Norm<S: UpdateCoordinates>(coordinates source: S) throws(PrivacyError) -> Double {
        if source.count == 0 { throw .emptyUpdate }
        var largest = 0.0
        var finite = true
        source.forEachCoordinate { x in
            let v = Double(x)
            if !v.isFinite { finite = false }
            let a = v.magnitude
            if a > largest { largest = a }
        }
        if !finite { throw .nonFiniteUpdate }
        if largest == 0 { return 0 }
        var sum = 0.0
        source.forEachCoordinate { x in
            let r = Double(x) / largest
            sum += r * r
        }
        return largest * hearthSqrt(sum)
    }
}

/// An update's coordinates, in order, read in place: what clipping and rounding need (they read
/// the update several times and never write it).
///
/// Training produces updates in different shapes (a dense buffer, pieces such as the embedding
/// table then the biases, a sparse overlay whose untouched rows are zero); each conforms and is
/// privatised without first being copied into one dense array.
public protocol UpdateCoordinates: Sendable {
    associatedtype Value: BinaryFloatingPoint & Sendable
    /// Number of coordinates (the update's dimension).
    var count: Int { get }
    /// Calls `body` with every coordinate in order; every call visits the same values.
    func forEachCoordinate(_ body: (Value) -> Void)
}

/// Consecutive arrays that together hold an update's coordinates in order.
public struct UpdatePieces<F: BinaryFloatingPoint & Sendable>: UpdateCoordinates {
    public let pieces: [[F]]

    public init(_ pieces: [[F]]) { self.pieces = pieces }

    public var count: Int {
        var total = 0
        for piece in pieces { total += piece.count }
        return total
    }

    public func forEachCoordinate(_ body: (F) -> Void) {
        for piece in pieces {
            for x in piece { body(x) }
        }
    }
}
