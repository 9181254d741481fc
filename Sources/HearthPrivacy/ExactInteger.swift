/// Exact integer helpers for the samplers: uniform integers by rejection and a minimal
/// unsigned 128-bit integer.
///
/// Everything on the sampling path is integer arithmetic on words from the injected
/// `RandomNumberGenerator` (in production `SystemRandomNumberGenerator`, which on Linux reads the
/// kernel CSPRNG through `getrandom(2)`, and on Apple platforms `arc4random_buf`). No floating
/// point is used to draw noise (Mironov 2012 shows how float sampling leaks through the low bits).

/// A uniform integer in `0 ..< bound`, drawn exactly by masked rejection sampling.
///
/// Draws 64-bit words, masks them to the bit length of `bound - 1`, and rejects values
/// `>= bound`; the expected number of draws is below 2. `bound` must be positive.
@inlinable
func uniformBelow<R: RandomNumberGenerator>(_ bound: UInt64, using rng: inout R) -> UInt64 {
    if bound <= 1 { return 0 }
    let mask = UInt64.max >> UInt64((bound - 1).leadingZeroBitCount)
    while true {
        let x = rng.next() & mask
        if x < bound { return x }
    }
}

/// A minimal unsigned 128-bit integer (high and low words) for exact rational comparisons.
///
/// Only what the Bernoulli(exp(-γ)) sampler needs: full-width products of 64-bit words,
/// addition and subtraction, comparison, and uniform sampling below a bound. Written out
/// instead of using the stdlib `UInt128` so that it builds on every deployment target.
@usableFromInline
struct Word128: Comparable, Hashable, Sendable {
    @usableFromInline var high: UInt64
    @usableFromInline var low: UInt64

    @inlinable
    init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    @inlinable
    init(_ value: UInt64) {
        self.high = 0
        self.low = value
    }

    /// The exact product of two 64-bit words.
    @inlinable
    static func product(_ a: UInt64, _ b: UInt64) -> Word128 {
        let p = a.multipliedFullWidth(by: b)
        return Word128(high: p.high, low: p.low)
    }

    /// `self * factor`, or nil on overflow past 128 bits.
    @inlinable
    func multiplied(by factor: UInt64) -> Word128? {
        let lowProduct = low.multipliedFullWidth(by: factor)
        let highProduct = high.multipliedFullWidth(by: factor)
        if highProduct.high != 0 { return nil }
        let (h, overflow) = highProduct.low.addingReportingOverflow(lowProduct.high)
        if overflow { return nil }
        return Word128(high: h, low: lowProduct.low)
    }

    /// `self + other`, or nil on overflow.
    @inlinable
    func adding(_ other: Word128) -> Word128? {
        let (l, carry) = low.addingReportingOverflow(other.low)
        let (h1, o1) = high.addingReportingOverflow(other.high)
        let (h2, o2) = h1.addingReportingOverflow(carry ? 1 : 0)
        if o1 || o2 { return nil }
        return Word128(high: h2, low: l)
    }

    /// `self - other`; the caller guarantees `self >= other`.
    @inlinable
    func subtracting(_ other: Word128) -> Word128 {
        let (l, borrow) = low.subtractingReportingOverflow(other.low)
        let h = high &- other.high &- (borrow ? 1 : 0)
        return Word128(high: h, low: l)
    }

    /// `|self - other|`.
    @inlinable
    func distance(to other: Word128) -> Word128 {
        self >= other ? subtracting(other) : other.subtracting(self)
    }

    @inlinable
    var isZero: Bool { high == 0 && low == 0 }

    @inlinable
    static func < (a: Word128, b: Word128) -> Bool {
        a.high != b.high ? a.high < b.high : a.low < b.low
    }

    /// A uniform value in `0 ..< bound` by masked rejection; `bound` must be nonzero.
    @inlinable
    static func uniformBelow<R: RandomNumberGenerator>(_ bound: Word128, using rng: inout R) -> Word128 {
        if bound.high == 0 {
            return Word128(HearthPrivacy.uniformBelow(bound.low, using: &rng))
        }
        // bound > 2^64: draw a 128-bit value masked to the bit length of bound - 1.
        let top = bound.subtracting(Word128(1)).high
        let mask = UInt64.max >> UInt64(top.leadingZeroBitCount)
        while true {
            let x = Word128(high: rng.next() & mask, low: rng.next())
            if x < bound { return x }
        }
    }
}
