/// A model version: the catalogue, the float32 master parameters and the int8 table derived
/// from them (for scoring).
///
/// A device need not keep the float master: it serves from the int8 table (queries from its
/// dequantised rows) and trains from it (`DeviceTraining.stream` over a `ParameterOverlay`), so
/// the agent drops the master (`droppingMaster()`, or `ModelFile.decode(_:keepingMaster: false)`)
/// and holds a quarter of the bytes. The aggregator, the simulator and central training keep it.
public struct Model: Sendable, Equatable {
    /// Monotonic version assigned by the aggregator (0 = a locally initialised model).
    public var version: UInt64
    public var catalog: Catalog
    /// The float32 master, or nil when this model was loaded without it.
    public private(set) var master: GlobalParameters?
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
        self.master = parameters
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
        self.master = parameters
        self.table = table
        self.encoder = encoder
    }

    /// A model without the float master: it serves and trains from `table` alone.
    public init(version: UInt64, catalog: Catalog, table: QuantizedTable, encoder: QueryEncoder) throws(CoreError) {
        guard catalog.count == table.rows else {
            throw .shapeMismatch("catalogue (\(catalog.count)) and table (\(table.rows) rows) disagree")
        }
        self.version = version
        self.catalog = catalog
        self.master = nil
        self.table = table
        self.encoder = encoder
    }

    /// This model without its float master.
    public func droppingMaster() -> Model {
        var copy = self
        copy.master = nil
        return copy
    }

    /// The float32 parameters: the master, or, for a model without one, the table dequantised
    /// (built on every call: a full-size allocation).
    public var parameters: GlobalParameters { master ?? table.dequantized() }

    /// Embedding width.
    public var dimension: Int { table.dimension }
    /// Coordinates of a dense update (embeddings then biases).
    public var parameterCount: Int { table.rows * table.dimension + table.rows }

    /// Replaces the parameters (after training or aggregation) and re-quantises.
    public mutating func update(parameters newParameters: GlobalParameters) throws(CoreError) {
        guard newParameters.itemCount == table.rows, newParameters.dimension == table.dimension else {
            throw .shapeMismatch("new parameters have a different shape")
        }
        table = try QuantizedTable(quantizing: newParameters)
        master = newParameters
    }

    /// The query vector for a device's local state: from the float master when the model keeps
    /// it, from the int8 table's dequantised rows otherwise.
    public func query(for state: LocalState) -> [Float] {
        if let master { return encoder.query(parameters: master, state: state) }
        return encoder.query(parameters: table, state: state)
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
