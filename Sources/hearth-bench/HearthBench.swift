import ArgumentParser
import CHearthBench
import HearthCore
import HearthDatasets

/// `hearth-bench`: benchmarks that print figures, each against a reference measured in the same run.
@main
struct HearthBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hearth-bench",
        abstract: "Hearth benchmarks: scoring kernels against the memory roofline, quantisation cost, aggregator load.",
        subcommands: [Scoring.self, ScoringLayout.self, Quantization.self, ModelFixture.self, AggregatorLoad.self]
    )
}

/// Scoring: one query = score every item with a kernel + top-K with exclusions.
struct Scoring: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Time one query (score all items + top-K) per kernel against streaming the same bytes once."
    )

    @Option(help: "Catalogue size.") var items: Int = 100_000
    @Option(help: "Embedding width.") var dim: Int = 64
    @Option(help: "Results per query.") var k: Int = 10
    @Option(help: "Timed queries per kernel (0: enough for about half a second).") var iterations: Int = 0
    @Option(help: "Only this kernel (default: every kernel this CPU supports).") var kernel: String?
    @Option(help: "Seed for the random table and queries.") var seed: UInt64 = 42
    @Flag(help: "Print one JSON object.") var json = false

    func validate() throws {
        guard items > 0, dim > 0, k > 0, iterations >= 0 else {
            throw ValidationError("--items, --dim and --k must be positive")
        }
    }

    func run() throws {
        var rng = Xoshiro256(seed: seed)
        let parameters = GlobalParameters(itemCount: items, dimension: dim, scale: 1, using: &rng)
        var withBias = parameters
        for i in 0 ..< items { withBias.bias[i] = (rng.nextUnitFloat() - 0.5) * 0.1 }
        let table = try QuantizedTable(quantizing: withBias)
        let queries = (0 ..< 64).map { _ in
            QuantizedQuery((0 ..< dim).map { _ in rng.nextUnitFloat() * 2 - 1 })
        }
        // 1% of the catalogue excluded (already bought, out of stock).
        var excluded = ExclusionSet(itemCount: items)
        for _ in 0 ..< max(1, items / 100) { excluded.insert(Int32(rng.nextIndex(below: items))) }

        let kernels: [ScoringKernel]
        if let kernel {
            kernels = [try ScoringKernel.named(kernel)]
        } else {
            kernels = ScoringKernel.all.filter { $0.isSupported }
        }
        let preferred = try ScoringKernel.preferred.get()
        let bytes = table.packed.count + 4 * table.rowScale.count + 4 * table.bias.count
        var results: [KernelResult] = []
        var sink: UInt64 = 0
        for scoring in kernels {
            let count = iterations > 0 ? iterations : calibrateIterations(table: table, query: queries[0], kernel: scoring)
            // Warm up both paths.
            for q in queries.prefix(4) { sink &+= UInt64(try table.topK(query: q, k: k, excluding: excluded, kernel: scoring).count) }
            sink &+= stream(table)
            // Cold: the table is evicted from every cache before each timed pass, so both the
            // query and the roofline stream it from memory (a query arriving after other work).
            // Hot: the table stays cache-resident between passes. The two passes alternate, so
            // they share clock and cache conditions.
            var cold = Timings(), hot = Timings()
            for i in 0 ..< count {
                let q = queries[i % queries.count]
                evict(table)
                let t0 = hearth_bench_now_ns()
                sink &+= UInt64(try table.topK(query: q, k: k, excluding: excluded, kernel: scoring).count)
                let t1 = hearth_bench_now_ns()
                evict(table)
                let t2 = hearth_bench_now_ns()
                sink &+= stream(table)
                let t3 = hearth_bench_now_ns()
                sink &+= UInt64(try table.topK(query: q, k: k, excluding: excluded, kernel: scoring).count)
                let t4 = hearth_bench_now_ns()
                sink &+= stream(table)
                let t5 = hearth_bench_now_ns()
                cold.query.append(Double(t1 - t0) / 1000)
                cold.roofline.append(Double(t3 - t2) / 1000)
                hot.query.append(Double(t4 - t3) / 1000)
                hot.roofline.append(Double(t5 - t4) / 1000)
            }
            results.append(KernelResult(kernel: scoring.name, iterations: count, cold: cold.summary, hot: hot.summary))
        }
        let scalar = results.first { $0.kernel == "scalar" }
        let headline = results.first { $0.kernel == preferred.name } ?? results[results.count - 1]
        if json {
            var fields: [String] = [
                "\"benchmark\": \"scoring\"", "\"items\": \(items)", "\"dim\": \(dim)", "\"k\": \(k)",
                "\"bytes\": \(bytes)", "\"kernel\": \"\(headline.kernel)\"", "\"cache\": \"cold\"",
                "\"median_us\": \(rounded(headline.cold.median))", "\"roofline_us\": \(rounded(headline.cold.roofline))",
                "\"ratio\": \(rounded(headline.cold.ratio))",
                "\"hot\": {\"median_us\": \(rounded(headline.hot.median)), \"roofline_us\": \(rounded(headline.hot.roofline)), \"ratio\": \(rounded(headline.hot.ratio))}",
            ]
            let rows = results.map { r in
                var row = "{\"kernel\": \"\(r.kernel)\", \"iterations\": \(r.iterations), \"median_us\": \(rounded(r.cold.median)), \"roofline_us\": \(rounded(r.cold.roofline)), \"ratio\": \(rounded(r.cold.ratio)), \"hot_median_us\": \(rounded(r.hot.median)), \"hot_roofline_us\": \(rounded(r.hot.roofline)), \"hot_ratio\": \(rounded(r.hot.ratio))"
                if let scalar {
                    row += ", \"speedup_vs_scalar\": \(rounded(scalar.cold.median / r.cold.median)), \"hot_speedup_vs_scalar\": \(rounded(scalar.hot.median / r.hot.median))"
                }
                return row + "}"
            }
            fields.append("\"kernels\": [" + rows.joined(separator: ", ") + "]")
            print("{" + fields.joined(separator: ", ") + "}")
        } else {
            print("scoring: \(items) items x \(dim) dims, top-\(k), \(bytes) bytes per query; serving kernel: \(preferred.name)")
            for r in results {
                var line = "  \(r.kernel): cold \(rounded(r.cold.median)) us (roofline \(rounded(r.cold.roofline)), ratio \(rounded(r.cold.ratio)))"
                line += "; hot \(rounded(r.hot.median)) us (roofline \(rounded(r.hot.roofline)), ratio \(rounded(r.hot.ratio)))"
                if let scalar { line += "; \(rounded(scalar.cold.median / r.cold.median))x / \(rounded(scalar.hot.median / r.hot.median))x scalar" }
                print(line)
            }
        }
        if sink == 0x5eed_5eed { print("") }  // keeps the measured work observable
    }

    private func evict(_ table: QuantizedTable) {
        table.packed.withUnsafeBytes { _ = hearth_bench_evict($0.baseAddress, $0.count) }
        table.rowScale.withUnsafeBytes { _ = hearth_bench_evict($0.baseAddress, $0.count) }
        table.bias.withUnsafeBytes { _ = hearth_bench_evict($0.baseAddress, $0.count) }
    }

    private func stream(_ table: QuantizedTable) -> UInt64 {
        var acc: UInt64 = 0
        table.packed.withUnsafeBytes { acc ^= hearth_bench_stream($0.baseAddress, $0.count) }
        table.rowScale.withUnsafeBytes { acc ^= hearth_bench_stream($0.baseAddress, $0.count) }
        table.bias.withUnsafeBytes { acc ^= hearth_bench_stream($0.baseAddress, $0.count) }
        return acc
    }

    private func calibrateIterations(table: QuantizedTable, query: QuantizedQuery, kernel: ScoringKernel) -> Int {
        let t0 = hearth_bench_now_ns()
        _ = try? table.topK(query: query, k: k, kernel: kernel)
        let once = max(1, hearth_bench_now_ns() - t0)
        return max(31, min(5_001, Int(500_000_000 / once)))
    }
}

/// Raw per-pass times in microseconds.
struct Timings {
    var query: [Double] = []
    var roofline: [Double] = []
    var summary: Summary { Summary(median: median(query), roofline: median(roofline)) }
}

/// Medians of one condition.
struct Summary {
    var median: Double
    var roofline: Double
    var ratio: Double { median / roofline }
}

struct KernelResult {
    var kernel: String
    var iterations: Int
    var cold: Summary
    var hot: Summary
}

func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    guard !sorted.isEmpty else { return 0 }
    return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
}

func rounded(_ x: Double, places: Double = 1000) -> Double { (x * places).rounded() / places }
