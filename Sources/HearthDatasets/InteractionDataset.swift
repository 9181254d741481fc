import HearthCore

/// Interactions grouped into one chronological event sequence per user (or per device).
public struct InteractionDataset: Sendable {
    /// Items that occur in the data (after any catalogue cap), indexed densely.
    public var catalog: Catalog
    /// External user ids, one per sequence.
    public var userIDs: [String]
    /// Per user, events sorted by time (file order breaks ties).
    public var sequences: [[Event]]

    public init(catalog: Catalog, userIDs: [String], sequences: [[Event]]) {
        self.catalog = catalog
        self.userIDs = userIDs
        self.sequences = sequences
    }

    /// Total number of events.
    public var eventCount: Int { sequences.reduce(0) { $0 + $1.count } }

    /// Options for reading an interactions CSV.
    public struct Options: Sendable {
        /// Keep only rows with `rating >= ratingThreshold` (nil: every row is a positive).
        public var ratingThreshold: Double?
        /// Keep only the `maxItems` most frequent items (nil: all).
        public var maxItems: Int?

        public init(ratingThreshold: Double? = nil, maxItems: Int? = nil) {
            self.ratingThreshold = ratingThreshold
            self.maxItems = maxItems
        }
    }

    /// Reads a CSV with at least `user_id,item_id,timestamp` (optional `rating`, `basket`).
    ///
    /// Each row becomes a purchase event; the basket (if any) becomes the session id.
    public init(csvAt path: String, options: Options = Options()) throws(DatasetError) {
        try self.init(table: try CSVTable(contentsOf: path), source: path, options: options)
    }

    /// Builds the dataset from a parsed table.
    public init(table: CSVTable, source: String = "csv", options: Options = Options()) throws(DatasetError) {
        guard let userColumn = table.column("user_id") else { throw .missingColumn("\(source): no user_id column") }
        guard let itemColumn = table.column("item_id") else { throw .missingColumn("\(source): no item_id column") }
        guard let timeColumn = table.column("timestamp") else { throw .missingColumn("\(source): no timestamp column") }
        let ratingColumn = table.column("rating")
        let basketColumn = table.column("basket")
        if options.ratingThreshold != nil && ratingColumn == nil {
            throw .missingColumn("\(source): a rating threshold was given but there is no rating column")
        }
        struct Row { var user: String; var item: String; var time: Int64; var session: UInt64; var order: Int }
        var kept: [Row] = []
        kept.reserveCapacity(table.rows.count)
        for (offset, fields) in table.rows.enumerated() {
            guard let time = Int64(fields[timeColumn]) else {
                throw .malformedRow("\(source): row \(offset + 2): timestamp '\(fields[timeColumn])' is not an integer")
            }
            if let threshold = options.ratingThreshold, let ratingColumn {
                guard let rating = Double(fields[ratingColumn]) else {
                    throw .malformedRow("\(source): row \(offset + 2): rating '\(fields[ratingColumn])' is not a number")
                }
                if rating < threshold { continue }
            }
            var session: UInt64 = 0
            if let basketColumn {
                guard let basket = UInt64(fields[basketColumn]) else {
                    throw .malformedRow("\(source): row \(offset + 2): basket '\(fields[basketColumn])' is not an integer")
                }
                session = basket
            }
            kept.append(Row(user: fields[userColumn], item: fields[itemColumn], time: time, session: session, order: offset))
        }
        // Catalogue: by frequency (ties by id) when capped, else by first appearance.
        var counts: [String: Int] = [:]
        for row in kept { counts[row.item, default: 0] += 1 }
        var catalog = Catalog()
        if let cap = options.maxItems {
            let ranked = counts.sorted { $0.value > $1.value || ($0.value == $1.value && $0.key < $1.key) }
            for (item, _) in ranked.prefix(cap) { catalog.insert(item) }
        } else {
            for row in kept { catalog.insert(row.item) }
        }
        var userIndex: [String: Int] = [:]
        var userIDs: [String] = []
        var sequences: [[Event]] = []
        var orders: [[Int]] = []
        for row in kept {
            guard let item = catalog.index(of: row.item) else { continue }
            let user: Int
            if let existing = userIndex[row.user] {
                user = existing
            } else {
                user = userIDs.count
                userIndex[row.user] = user
                userIDs.append(row.user)
                sequences.append([])
                orders.append([])
            }
            sequences[user].append(Event(item: item, kind: .purchase, session: row.session, timestamp: row.time))
            orders[user].append(row.order)
        }
        for user in sequences.indices {
            let order = orders[user]
            let events = sequences[user]
            let sorted = events.indices.sorted {
                (events[$0].timestamp, order[$0]) < (events[$1].timestamp, order[$1])
            }
            sequences[user] = sorted.map { events[$0] }
        }
        guard !sequences.isEmpty else { throw .empty("\(source): no interactions left after filtering") }
        self.init(catalog: catalog, userIDs: userIDs, sequences: sequences)
    }

    /// Reads item attributes (`item_id` plus `genres`/`product_category` and `brand` columns when
    /// present) into the catalogue; unknown items are ignored.
    public mutating func loadAttributes(csvAt path: String) throws(DatasetError) {
        let table = try CSVTable(contentsOf: path)
        guard let itemColumn = table.column("item_id") else { throw .missingColumn("\(path): no item_id column") }
        let categoryColumn = table.column("product_category") ?? table.column("genres") ?? table.column("department")
        let brandColumn = table.column("brand")
        for fields in table.rows {
            guard let index = catalog.index(of: fields[itemColumn]) else { continue }
            var category = categoryColumn.map { fields[$0] } ?? ""
            if let bar = category.firstIndex(of: "|") { category = String(category[..<bar]) }
            catalog.setAttributes(ItemAttributes(category: category, brand: brandColumn.map { fields[$0] } ?? ""), at: index)
        }
    }
}
