import HearthCore
import HearthTestSupport
import Testing

@Suite("Quantisation", .computeLane)
struct QuantizationTests {
    @Test("every value is within half a step of its float, and -128 never appears",
          arguments: [(1, 1), (3, 5), (17, 33), (64, 64), (129, 7)])
    func roundTripError(items: Int, dimension: Int) throws {
        let model = try Fixtures.randomModel(items: items, dimension: dimension, seed: UInt64(items * 1000 + dimension))
        for row in 0 ..< items {
            let scale = model.table.rowScale[row]
            let quantized = model.table.quantizedRow(row)
            let original = model.parameters.row(row)
            #expect(!quantized.contains(Int8.min))
            // The largest magnitude maps to exactly ±127.
            #expect(quantized.map { abs(Int($0)) }.max() == 127)
            for (q, x) in zip(quantized, original) {
                #expect(abs(Float(q) * scale - x) <= scale / 2 * 1.0001)
            }
        }
    }

    @Test("an all-zero row gets scale 0 and zero values")
    func zeroRow() throws {
        let parameters = try GlobalParameters(itemCount: 2, dimension: 3, embeddings: [0, 0, 0, 1, -2, 3], bias: [0.5, -0.5])
        let table = try QuantizedTable(quantizing: parameters)
        #expect(table.rowScale[0] == 0)
        #expect(table.quantizedRow(0) == [0, 0, 0])
        #expect(table.quantizedRow(1) == [42, -85, 127])
    }

    @Test("non-finite parameters are rejected with a clear error")
    func nonFinite() throws {
        let parameters = try GlobalParameters(itemCount: 1, dimension: 2, embeddings: [.nan, 1], bias: [0])
        #expect(throws: CoreError.nonFinite("")) { try QuantizedTable(quantizing: parameters) }
        let infinite = try GlobalParameters(itemCount: 1, dimension: 2, embeddings: [1, 1], bias: [.infinity])
        #expect(throws: CoreError.nonFinite("")) { try QuantizedTable(quantizing: infinite) }
    }

    @Test("a packed table holding -128 is refused")
    func rejectsMinus128() throws {
        var packed = [Int8](repeating: 0, count: 32)
        packed[5] = -128
        #expect(throws: CoreError.invalidArgument("")) {
            try QuantizedTable(rows: 1, dimension: 4, packed: packed, rowScale: [1], bias: [0])
        }
    }

    @Test("the query keeps its largest value at ±127 and pads with zeros")
    func query() {
        let q = QuantizedQuery([0.5, -1, 0.25, 0, .nan])
        #expect(q.values.count == 8)
        #expect(q.values == [64, -127, 32, 0, 0, 0, 0, 0])
        #expect(q.scale == Float(1) / 127)
    }
}
