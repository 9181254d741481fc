/// The item catalogue: external item ids (SKUs, as strings) and dense indices.
///
/// Dense indices are rows of the model's tables. Attributes (category, brand) are optional and
/// feed the on-device interest profile; they are never needed for scoring.
public struct Catalog: Sendable, Equatable {
    /// External ids in index order.
    public private(set) var ids: [String]
    /// Optional attributes in index order (empty strings when unknown).
    public private(set) var attributes: [ItemAttributes]
    private var indexByID: [String: Int32]

    /// An empty catalogue.
    public init() {
        ids = []
        attributes = []
        indexByID = [:]
    }

    /// A catalogue of `ids` in this order; duplicates are an error.
    public init(ids: [String], attributes: [ItemAttributes] = []) throws(CoreError) {
        guard attributes.isEmpty || attributes.count == ids.count else {
            throw .shapeMismatch("catalogue has \(ids.count) ids but \(attributes.count) attribute rows")
        }
        self.init()
        for (position, id) in ids.enumerated() {
            let index = insert(id)
            if Int(index) != position { throw .invalidArgument("duplicate item id '\(id)' in catalogue") }
        }
        self.attributes = attributes.isEmpty ? Array(repeating: ItemAttributes(), count: ids.count) : attributes
    }

    /// Number of items.
    public var count: Int { ids.count }

    /// The dense index of `id`, or nil when it is not in the catalogue.
    public func index(of id: String) -> Int32? { indexByID[id] }

    /// The index of `id`, adding it at the end when it is new.
    @discardableResult
    public mutating func insert(_ id: String, attributes itemAttributes: ItemAttributes = ItemAttributes()) -> Int32 {
        if let existing = indexByID[id] { return existing }
        let index = Int32(ids.count)
        ids.append(id)
        attributes.append(itemAttributes)
        indexByID[id] = index
        return index
    }

    /// Catalogues are equal when they list the same ids and attributes in the same order.
    public static func == (lhs: Catalog, rhs: Catalog) -> Bool {
        lhs.ids == rhs.ids && lhs.attributes == rhs.attributes
    }

    /// Sets the attributes of an existing item.
    public mutating func setAttributes(_ itemAttributes: ItemAttributes, at index: Int32) {
        attributes[Int(index)] = itemAttributes
    }
}

/// Descriptive attributes of an item, used for the local interest profile.
public struct ItemAttributes: Sendable, Hashable {
    public var category: String
    public var brand: String

    public init(category: String = "", brand: String = "") {
        self.category = category
        self.brand = brand
    }
}
