/// The parameters every device shares: the item embedding table and item biases (float32
/// master copy). Device updates are differences of these, dense over every coordinate.
public struct GlobalParameters: Sendable, Equatable {
    /// Number of items (rows).
    public let itemCount: Int
    /// Embedding width.
    public let dimension: Int
    /// Row-major `[itemCount x dimension]`.
    public var embeddings: [Float]
    /// One bias per item.
    public var bias: [Float]

    /// Parameters from existing tensors.
    public init(itemCount: Int, dimension: Int, embeddings: [Float], bias: [Float]) throws(CoreError) {
        guard itemCount >= 0, dimension > 0 else {
            throw .invalidArgument("need itemCount >= 0 and dimension > 0, got \(itemCount) x \(dimension)")
        }
        guard embeddings.count == itemCount * dimension, bias.count == itemCount else {
            throw .shapeMismatch("expected \(itemCount * dimension) embedding and \(itemCount) bias values, got \(embeddings.count) and \(bias.count)")
        }
        self.itemCount = itemCount
        self.dimension = dimension
        self.embeddings = embeddings
        self.bias = bias
    }

    /// Parameters whose shapes the caller has already checked.
    init(validatedItemCount itemCount: Int, dimension: Int, embeddings: [Float], bias: [Float]) {
        self.itemCount = itemCount
        self.dimension = dimension
        self.embeddings = embeddings
        self.bias = bias
    }

    /// Small random embeddings (uniform in ±`scale`) and zero biases.
    public init<R: RandomNumberGenerator>(itemCount: Int, dimension: Int, scale: Float = 0.1, using rng: inout R) {
        precondition(itemCount >= 0 && dimension > 0, "invalid parameter shape")
        self.itemCount = itemCount
        self.dimension = dimension
        var values = [Float](repeating: 0, count: itemCount * dimension)
        for i in values.indices { values[i] = (rng.nextUnitFloat() * 2 - 1) * scale }
        embeddings = values
        bias = [Float](repeating: 0, count: itemCount)
    }

    /// Number of scalar parameters (the length of a dense update).
    public var parameterCount: Int { embeddings.count + bias.count }

    /// Row `item` of the embedding table.
    @inlinable
    public func row(_ item: Int) -> ArraySlice<Float> {
        embeddings[item * dimension ..< (item + 1) * dimension]
    }

    /// The parameters as one flat vector: embeddings then biases.
    public func flattened() -> [Float] { embeddings + bias }

    /// `a − b` over every parameter, in the `flattened()` layout, without building the flat
    /// copies (same shapes required).
    public static func difference(_ a: GlobalParameters, _ b: GlobalParameters) -> [Float] {
        precondition(a.itemCount == b.itemCount && a.dimension == b.dimension, "parameter shapes differ")
        var out = [Float](repeating: 0, count: a.parameterCount)
        for i in a.embeddings.indices { out[i] = a.embeddings[i] - b.embeddings[i] }
        let offset = a.embeddings.count
        for i in a.bias.indices { out[offset + i] = a.bias[i] - b.bias[i] }
        return out
    }

    /// Parameters from a flat vector laid out as `flattened()`.
    public init(flattened values: [Float], itemCount: Int, dimension: Int) throws(CoreError) {
        guard values.count == itemCount * dimension + itemCount else {
            throw .shapeMismatch("flat vector has \(values.count) values, expected \(itemCount * dimension + itemCount)")
        }
        try self.init(itemCount: itemCount, dimension: dimension,
                      embeddings: Array(values[0 ..< itemCount * dimension]),
                      bias: Array(values[(itemCount * dimension)...]))
    }
}
