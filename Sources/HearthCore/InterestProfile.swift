/// The device's local interest profile: which categories and brands its shoppers engage with,
/// weighted by event kind. Computed and kept on the device only; never uploaded.
public struct InterestProfile: Sendable, Equatable {
    /// One weighted attribute value.
    public struct Entry: Sendable, Equatable {
        public var name: String
        /// Sum of kind weights of the events on items with this value.
        public var weight: Float
        /// Share of the total weight, in [0, 1].
        public var share: Float
    }

    public var categories: [Entry]
    public var brands: [Entry]
    /// Events that contributed (their item is in the catalogue).
    public var events: Int

    /// The top `limit` categories and brands of `records` under `catalog`'s attributes.
    public init(records: [EventRecord], catalog: Catalog, limit: Int = 5) {
        var categoryWeights: [String: Float] = [:]
        var brandWeights: [String: Float] = [:]
        var total: Float = 0
        var events = 0
        for record in records {
            guard let index = catalog.index(of: record.item) else { continue }
            let attributes = catalog.attributes(at: Int(index))
            let weight = record.kind.weight
            events += 1
            total += weight
            if !attributes.category.isEmpty { categoryWeights[attributes.category, default: 0] += weight }
            if !attributes.brand.isEmpty { brandWeights[attributes.brand, default: 0] += weight }
        }
        func top(_ weights: [String: Float]) -> [Entry] {
            weights.sorted { $0.value > $1.value || ($0.value == $1.value && $0.key < $1.key) }
                .prefix(max(0, limit))
                .map { Entry(name: $0.key, weight: $0.value, share: total > 0 ? $0.value / total : 0) }
        }
        categories = top(categoryWeights)
        brands = top(brandWeights)
        self.events = events
    }
}
