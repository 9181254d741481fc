/// A model version as a device holds it: the catalogue, the float32 master parameters (for
/// training and for building queries) and the int8 table derived from them (for scoring).
public struct Model: Sendable, Equatable {
    /// Monotonic version assigned by the aggregator (0 = a locally initialised model).
    public var version: UInt64
    public var catalog: Catalog
    public private(set) var parameters: GlobalParameters
    public private(set) var table: QuantizedTable
    /// How queries are built from local state; stored with the model.
    public var encoder: QueryEncoder

    /// A model from float parameters; the int8 table is quantised from them.
    public init(version: UInt64, catalog: Catalog, parameters: GlobalParameters, encoder: QueryEncoder = QueryEncoder()) throws(CoreError) {
        guard catalog.count == parameters.itemCount else {
            throw .shapeMismatch("catalogue has \(catalog.count) items, parameters \(parameters.itemCount)")
        }
        self.version = version
        self.catalog = catalog
        self.parameters = parameters
        self.table = try QuantizedTable(quantizing: parameters)
        self.encoder = encoder
    }

    /// A model whose int8 table was stored alongside the parameters (read from a file).
    public init(version: UInt64, catalog: Catalog, parameters: GlobalParameters, table: QuantizedTable, encoder: QueryEncoder) throws(CoreError) {
        guard catalog.count == parameters.itemCount, table.rows == parameters.itemCount, table.dimension == parameters.dimension else {
            throw .shapeMismatch("catalogue (\(catalog.count)), parameters (\(parameters.itemCount) x \(parameters.dimension)) and table (\(table.rows) x \(table.dimension)) disagree")
        }
        self.version = version
        self.catalog = catalog
        self.parameters = parameters
        self.table = table
        self.encoder = encoder
    }

    /// Replaces the parameters (after training or aggregation) and re-quantises.
    public mutating func update(parameters newParameters: GlobalParameters) throws(CoreError) {
        guard newParameters.itemCount == parameters.itemCount, newParameters.dimension == parameters.dimension else {
            throw .shapeMismatch("new parameters have a different shape")
        }
        table = try QuantizedTable(quantizing: newParameters)
        parameters = newParameters
    }

    /// The query vector for a device's local state.
    public func query(for state: LocalState) -> [Float] {
        encoder.query(parameters: parameters, state: state)
    }
}

/// One ranked item.
public struct Recommendation: Sendable, Equatable {
    /// Dense item index (look the id up in the catalogue).
    public var item: Int32
    public var score: Float

    public init(item: Int32, score: Float) {
        self.item = item
        self.score = score
    }
}
