/// The item catalogue: external item ids (SKUs, as strings) and dense indices.
///
/// Dense indices are rows of the model's tables. Attributes (category, brand) are optional and
/// feed the on-device interest profile; they are never needed for scoring.
///
/// Memory is kept close to the ids themselves, because a device holds the catalogue all the
/// time: the id → index lookup is an open-addressing table of `Int32` row numbers (at most
/// 8 bytes per item, against about 50 for a `[String: Int32]`), and attributes are stored only
/// once some item has any (100,000 items without attributes would otherwise hold 3.2 MB of
/// empty strings).
public struct Catalog: Sendable {
    /// External ids in index order.
    public private(set) var ids: [String]
    /// Attributes in index order, or empty while no item has any.
    private var storedAttributes: [ItemAttributes]
    /// Open addressing with linear probing: each slot holds a row number or −1. The slot count
    /// is a power of two at least twice the number of ids.
    private var slots: [Int32]

    /// An empty catalogue.
    public init() {
        ids = []
        storedAttributes = []
        slots = [Int32](repeating: -1, count: 16)
    }

    /// A catalogue of `ids` in this order; duplicates are an error.
    public init(ids: [String], attributes: [ItemAttributes] = []) throws(CoreError) {
        guard attributes.isEmpty || attributes.count == ids.count else {
            throw .shapeMismatch("catalogue has \(ids.count) ids but \(attributes.count) attribute rows")
        }
        self.init()
        self.ids.reserveCapacity(ids.count)
        rehash(capacity: Catalog.slotCount(for: ids.count))
        for (position, id) in ids.enumerated() {
            let index = insert(id)
            if Int(index) != position { throw .invalidArgument("duplicate item id '\(id)' in catalogue") }
        }
        if attributes.contains(where: { !$0.isEmpty }) { storedAttributes = attributes }
    }

    /// Number of items.
    public var count: Int { ids.count }

    /// The dense index of `id`, or nil when it is not in the catalogue.
    public func index(of id: String) -> Int32? {
        let mask = slots.count - 1
        var slot = id.hashValue & mask
        while true {
            let row = slots[slot]
            if row < 0 { return nil }
            if ids[Int(row)] == id { return row }
            slot = (slot + 1) & mask
        }
    }

    /// The attributes of the item at `index` (empty strings when unknown).
    public func attributes(at index: Int) -> ItemAttributes {
        storedAttributes.isEmpty ? ItemAttributes() : storedAttributes[index]
    }

    /// Every item's attributes in index order (builds the array: for whole-catalogue passes).
    public var attributes: [ItemAttributes] {
        storedAttributes.isEmpty ? Array(repeating: ItemAttributes(), count: ids.count) : storedAttributes
    }

    /// Whether any item has a category or a brand.
    public var hasAttributes: Bool { storedAttributes.contains { !$0.isEmpty } }

    /// The index of `id`, adding it at the end when it is new.
    @discardableResult
    public mutating func insert(_ id: String, attributes itemAttributes: ItemAttributes = ItemAttributes()) -> Int32 {
        if let existing = index(of: id) { return existing }
        if 2 * (ids.count + 1) > slots.count { rehash(capacity: slots.count * 2) }
        let index = Int32(ids.count)
        ids.append(id)
        if !storedAttributes.isEmpty || !itemAttributes.isEmpty {
            if storedAttributes.isEmpty { storedAttributes = Array(repeating: ItemAttributes(), count: ids.count - 1) }
            storedAttributes.append(itemAttributes)
        }
        place(index)
        return index
    }

    /// Sets the attributes of an existing item.
    public mutating func setAttributes(_ itemAttributes: ItemAttributes, at index: Int32) {
        if storedAttributes.isEmpty {
            if itemAttributes.isEmpty { return }
            storedAttributes = Array(repeating: ItemAttributes(), count: ids.count)
        }
        storedAttributes[Int(index)] = itemAttributes
    }

    /// The smallest power-of-two slot count that keeps `items` at most half full.
    private static func slotCount(for items: Int) -> Int {
        var capacity = 16
        while capacity < 2 * items { capacity *= 2 }
        return capacity
    }

    /// Puts row `row` (already in `ids`) into its slot.
    private mutating func place(_ row: Int32) {
        let mask = slots.count - 1
        var slot = ids[Int(row)].hashValue & mask
        while slots[slot] >= 0 { slot = (slot + 1) & mask }
        slots[slot] = row
    }

    /// Rebuilds the slots with `capacity` entries.
    private mutating func rehash(capacity: Int) {
        guard capacity > slots.count || ids.isEmpty else { return }
        slots = [Int32](repeating: -1, count: max(capacity, slots.count))
        for row in ids.indices { place(Int32(row)) }
    }
}

extension Catalog: Equatable {
    /// Catalogues are equal when they list the same ids and attributes in the same order.
    public static func == (lhs: Catalog, rhs: Catalog) -> Bool {
        lhs.ids == rhs.ids && (lhs.storedAttributes == rhs.storedAttributes
            || lhs.attributes == rhs.attributes)
    }
}

/// Descriptive attributes of an item, used for the local interest profile.
public struct ItemAttributes: Sendable, Hashable {
    public var category: String
    public var brand: String

    /// Neither a category nor a brand.
    public var isEmpty: Bool { category.isEmpty && brand.isEmpty }

    public init(category: String = "", brand: String = "") {
        self.category = category
        self.brand = brand
    }
}
