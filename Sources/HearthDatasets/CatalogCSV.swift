import HearthCore

extension Catalog {
    /// A catalogue from an items CSV: an `item_id` column, plus a category (`product_category`,
    /// `genres` (first genre) or `department`) and a `brand` when present. Duplicate ids keep
    /// their first row; `maxItems` keeps the first rows only.
    public init(itemsCSVAt path: String, maxItems: Int? = nil) throws(DatasetError) {
        let table = try CSVTable(contentsOf: path)
        guard let itemColumn = table.column("item_id") else { throw .missingColumn("\(path): no item_id column") }
        let categoryColumn = table.column("product_category") ?? table.column("genres") ?? table.column("department")
        let brandColumn = table.column("brand")
        var catalog = Catalog()
        for fields in table.rows {
            if let maxItems, catalog.count >= maxItems { break }
            let id = fields[itemColumn]
            guard !id.isEmpty, catalog.index(of: id) == nil else { continue }
            var category = categoryColumn.map { fields[$0] } ?? ""
            if let bar = category.firstIndex(of: "|") { category = String(category[..<bar]) }
            _ = catalog.insert(id, attributes: ItemAttributes(category: category, brand: brandColumn.map { fields[$0] } ?? ""))
        }
        guard catalog.count > 0 else { throw .empty("\(path): no items") }
        self = catalog
    }
}
