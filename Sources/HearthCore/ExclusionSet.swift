/// A set of item indices excluded from recommendations (already bought, out of stock), as the
/// bitset the kernels read: bit `i % 64` of word `i / 64`.
public struct ExclusionSet: Sendable, Equatable {
    /// `(itemCount + 63) / 64` words.
    public private(set) var words: [UInt64]
    /// Number of items the set covers.
    public let itemCount: Int

    /// An empty set over `itemCount` items.
    public init(itemCount: Int) {
        self.itemCount = itemCount
        words = [UInt64](repeating: 0, count: (itemCount + 63) / 64)
    }

    /// A set holding `items` (indices outside [0, itemCount) are ignored).
    public init<S: Sequence>(itemCount: Int, items: S) where S.Element == Int32 {
        self.init(itemCount: itemCount)
        for item in items { insert(item) }
    }

    /// Adds `item`; out-of-range indices are ignored.
    public mutating func insert(_ item: Int32) {
        guard item >= 0, Int(item) < itemCount else { return }
        words[Int(item) >> 6] |= 1 << UInt64(item & 63)
    }

    /// Whether `item` is excluded.
    public func contains(_ item: Int32) -> Bool {
        guard item >= 0, Int(item) < itemCount else { return false }
        return words[Int(item) >> 6] & (1 << UInt64(item & 63)) != 0
    }
}
