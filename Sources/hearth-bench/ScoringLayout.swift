import ArgumentParser
import CHearthBench
import HearthCore

/// The table-layout experiment: the shipped layout (packed blocks, row scales, biases: three
/// streams) against each block's scales and biases interleaved into the block (one stream).
///
/// Five cold passes alternate in a rotating order, each after evicting both layouts from every
/// cache: the library's `avx2` top-K, the benchmark's copy of it on each layout (`layout.c`:
/// the same scan and top-K, only where the floats are read differs), and the roofline of each
/// layout (streaming its bytes once). Every top-K must equal the library's, indices and scores.
struct ScoringLayout: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scoring-layout",
        abstract: "Cold top-K on the separate vs the interleaved table layout (AVX2), alternating, against each layout's roofline."
    )

    @Option(help: "Catalogue size (a multiple of 8).") var items: Int = 100_000
    @Option(help: "Embedding width.") var dim: Int = 64
    @Option(help: "Results per query.") var k: Int = 10
    @Option(help: "Cold passes of each of the five measurements.") var passes: Int = 300
    @Option(help: "Seed for the random table and queries.") var seed: UInt64 = 42

    func validate() throws {
        guard items > 0, items % 8 == 0, dim > 0, k > 0, passes > 0 else {
            throw ValidationError("--items must be a positive multiple of 8; --dim, --k and --passes positive")
        }
    }

    /// One alternated measurement.
    enum Measurement: Int, CaseIterable {
        case library, separate, interleaved, separateRoofline, interleavedRoofline

        var label: String {
            switch self {
            case .library: "library avx2 (separate)"
            case .separate: "bench copy, separate"
            case .interleaved: "bench copy, interleaved"
            case .separateRoofline: "roofline, separate"
            case .interleavedRoofline: "roofline, interleaved"
            }
        }

        /// The roofline a query measurement is divided by (its own layout's).
        var roofline: Measurement? {
            switch self {
            case .library, .separate: .separateRoofline
            case .interleaved: .interleavedRoofline
            case .separateRoofline, .interleavedRoofline: nil
            }
        }
    }

    func run() throws {
        let avx2 = try ScoringKernel.named("avx2")
        guard avx2.isSupported else { throw ValidationError("this CPU has no AVX2: the experiment compares AVX2 scans") }
        var rng = Xoshiro256(seed: seed)
        var parameters = GlobalParameters(itemCount: items, dimension: dim, scale: 1, using: &rng)
        for i in 0 ..< items { parameters.bias[i] = (rng.nextUnitFloat() - 0.5) * 0.1 }
        let table = try QuantizedTable(quantizing: parameters)
        let queries = (0 ..< 64).map { _ in QuantizedQuery((0 ..< dim).map { _ in rng.nextUnitFloat() * 2 - 1 }) }
        let rows = Int32(items), dimPadded = Int32(table.dimensionPadded)
        var interleaved = [UInt8](repeating: 0, count: hearth_bench_interleaved_size(rows, dimPadded))
        table.packed.withUnsafeBufferPointer { packed in
            table.rowScale.withUnsafeBufferPointer { scales in
                table.bias.withUnsafeBufferPointer { bias in
                    interleaved.withUnsafeMutableBufferPointer { out in
                        hearth_bench_interleave(packed.baseAddress, scales.baseAddress, bias.baseAddress, rows, dimPadded, out.baseAddress)
                    }
                }
            }
        }
        let expected = try queries.map { try table.topK(query: $0, k: k, kernel: avx2) }

        var times = [[Double]](repeating: [], count: Measurement.allCases.count)
        var sink: UInt64 = 0
        var mismatches = 0
        for pass in -3 ..< passes {  // three warm-up rounds, not recorded
            let queryIndex = (pass + 3) % queries.count
            let query = queries[queryIndex]
            for slot in 0 ..< Measurement.allCases.count {
                let measurement = Measurement.allCases[(slot + max(pass, 0)) % Measurement.allCases.count]
                evictAll(table, interleaved)
                let start = hearth_bench_now_ns()
                var result: [Recommendation]?
                switch measurement {
                case .library: result = try table.topK(query: query, k: k, kernel: avx2)
                case .separate: result = topKSeparate(table, query)
                case .interleaved: result = topKInterleaved(interleaved, dimensionPadded: table.dimensionPadded, query)
                case .separateRoofline: sink ^= streamSeparate(table)
                case .interleavedRoofline: sink ^= interleaved.withUnsafeBytes { hearth_bench_stream($0.baseAddress, $0.count) }
                }
                let end = hearth_bench_now_ns()
                if let result, result != expected[queryIndex] { mismatches += 1 }
                if pass >= 0 { times[measurement.rawValue].append(Double(end - start) / 1000) }
            }
        }
        print("scoring-layout: \(items) items x \(dim) dims, top-\(k), \(passes) cold passes each, alternating; separate \(table.packed.count + 8 * items) bytes, interleaved \(interleaved.count) bytes")
        for measurement in Measurement.allCases {
            let t = times[measurement.rawValue]
            var line = "  \(measurement.label): median \(rounded(median(t), places: 10)) us (p10 \(rounded(percentile(t, 0.1), places: 10)), p90 \(rounded(percentile(t, 0.9), places: 10)))"
            if let roofline = measurement.roofline {
                let r = times[roofline.rawValue]
                let paired = zip(t, r).map { $0 / $1 }
                line += "; ratio \(rounded(median(t) / median(r))) (per pass: median \(rounded(median(paired))), p25 \(rounded(percentile(paired, 0.25))), p75 \(rounded(percentile(paired, 0.75))))"
            }
            print(line)
        }
        print("  top-K different from the library's: \(mismatches)")
        if sink == 0x5eed_5eed { print("") }  // keeps the streamed bytes observable
        if mismatches > 0 { throw ExitCode.failure }
    }

    private func topKSeparate(_ table: QuantizedTable, _ query: QuantizedQuery) -> [Recommendation] {
        var index = [Int32](repeating: 0, count: k), score = [Float](repeating: 0, count: k)
        let count = table.packed.withUnsafeBufferPointer { packed in
            table.rowScale.withUnsafeBufferPointer { scales in
                table.bias.withUnsafeBufferPointer { bias in
                    query.values.withUnsafeBufferPointer { q in
                        hearth_bench_topk_separate(packed.baseAddress, scales.baseAddress, bias.baseAddress, Int32(table.rows),
                                                   Int32(table.dimensionPadded), q.baseAddress, query.scale, Int32(k), &index, &score)
                    }
                }
            }
        }
        return (0 ..< max(0, Int(count))).map { Recommendation(item: index[$0], score: score[$0]) }
    }

    private func topKInterleaved(_ interleaved: [UInt8], dimensionPadded: Int, _ query: QuantizedQuery) -> [Recommendation] {
        var index = [Int32](repeating: 0, count: k), score = [Float](repeating: 0, count: k)
        let count = interleaved.withUnsafeBufferPointer { blocks in
            query.values.withUnsafeBufferPointer { q in
                hearth_bench_topk_interleaved(blocks.baseAddress, Int32(items), Int32(dimensionPadded), q.baseAddress,
                                              query.scale, Int32(k), &index, &score)
            }
        }
        return (0 ..< max(0, Int(count))).map { Recommendation(item: index[$0], score: score[$0]) }
    }

    private func evictAll(_ table: QuantizedTable, _ interleaved: [UInt8]) {
        table.packed.withUnsafeBytes { _ = hearth_bench_evict($0.baseAddress, $0.count) }
        table.rowScale.withUnsafeBytes { _ = hearth_bench_evict($0.baseAddress, $0.count) }
        table.bias.withUnsafeBytes { _ = hearth_bench_evict($0.baseAddress, $0.count) }
        interleaved.withUnsafeBytes { _ = hearth_bench_evict($0.baseAddress, $0.count) }
    }

    private func streamSeparate(_ table: QuantizedTable) -> UInt64 {
        var acc: UInt64 = 0
        table.packed.withUnsafeBytes { acc ^= hearth_bench_stream($0.baseAddress, $0.count) }
        table.rowScale.withUnsafeBytes { acc ^= hearth_bench_stream($0.baseAddress, $0.count) }
        table.bias.withUnsafeBytes { acc ^= hearth_bench_stream($0.baseAddress, $0.count) }
        return acc
    }
}

/// The `p`-quantile (0...1) of `values` by the nearest rank.
func percentile(_ values: [Double], _ p: Double) -> Double {
    let sorted = values.sorted()
    guard !sorted.isEmpty else { return 0 }
    return sorted[Int((p * Double(sorted.count - 1)).rounded())]
}
