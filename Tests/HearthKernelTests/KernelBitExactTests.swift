import CHearthKernels
import Testing
import HearthTestSupport

// Every kernel in the C kernel list must agree bit for bit with the scalar oracle, and the oracle
// with an independent row-major reference written here. Kernels this CPU cannot run are skipped
// (cancelled with a note). Cross-architecture runs (NEON, NEON dotprod under qemu) use the C
// driver cross/kernel_check.c; see docs/kernels.md.

// MARK: - Fixtures

/// SplitMix64 (Steele, Lea, Flood 2014): a small seeded generator, so every run sees the same data.
struct SplitMix64 {
    private var state: UInt64
    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [-127, 127] (never -128, which the kernels exclude).
    mutating func int8() -> Int8 { Int8(Int(next() % 255) - 127) }

    /// Uniform in [0, bound).
    mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(bound)) }

    /// Uniform in [low, high).
    mutating func float(_ low: Float, _ high: Float) -> Float {
        low + (high - low) * Float(next() >> 40) / Float(1 << 24)
    }
}

/// Sizes around the block (8) and group (4) boundaries and the 256-row scoring chunk.
private let awkwardSizes: [Int] = [1, 2, 3, 5, 7, 8, 15, 16, 17, 31, 33, 63, 64, 65, 127, 129, 255, 257]

/// Names of every kernel compiled into this binary, worst first.
private let kernelNames: [String] = (0 ..< hearth_kernel_count()).map { String(cString: hearth_kernel_at($0)!.pointee.name) }

/// The kernel called `name`; nil (after cancelling the test case with a note, on Swift 6.3+) when
/// this CPU cannot run it, so callers skip with `guard let … else { return }`.
private func runnableKernel(_ name: String) throws -> UnsafePointer<hearth_kernel>? {
    let kernel = try #require(hearth_kernel_named(name), "kernel \(name) is in the list but not found by name")
    guard hearth_kernel_is_supported(kernel) != 0 else {
        let note = "kernel \(name) is not supported by this CPU; skipped (cross/check-kernels-aarch64.sh covers other CPUs)"
        print("note: \(Test.current?.displayName ?? Test.current?.name ?? ""): \(note)")
        #if compiler(>=6.3)
        try Test.cancel(Comment(rawValue: note))
        #else
        return nil
        #endif
    }
    return kernel
}

/// How test matrices are filled; the extremes sit at the int16 and sign-trick edges of the SIMD
/// kernels (two products of ±127 are ±32258, just below the int16 limit).
enum Fill: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case random, allPlus127, allMinus127, plusTimesMinus, alternating, randomSign
    var testDescription: String { rawValue }

    func item(_ row: Int, _ column: Int, _ rng: inout SplitMix64) -> Int8 {
        switch self {
        case .random: return rng.int8()
        case .allPlus127, .plusTimesMinus: return 127
        case .allMinus127: return -127
        case .alternating: return (row + column) % 2 == 0 ? 127 : -127
        case .randomSign: return rng.next() & 1 == 0 ? 127 : -127
        }
    }

    func query(_ column: Int, _ rng: inout SplitMix64) -> Int8 {
        switch self {
        case .random: return rng.int8()
        case .allPlus127: return 127
        case .allMinus127, .plusTimesMinus: return -127
        case .alternating: return column % 2 == 0 ? 127 : -127
        case .randomSign: return rng.next() & 1 == 0 ? 127 : -127
        }
    }
}

/// A row-major matrix, its packed form and a padded query.
private struct Problem {
    let rows: Int
    let dim: Int
    var rowMajor: [Int8]
    var packed: [Int8]
    var query: [Int8]  // dim_padded values, padding zero

    var dimPadded: Int { Int(hearth_dim_padded(Int32(dim))) }
    var blocks: Int { Int(hearth_block_count(Int32(rows))) }

    init(rows: Int, dim: Int, rowMajor: [Int8], query: [Int8]) {
        self.rows = rows
        self.dim = dim
        self.rowMajor = rowMajor
        packed = [Int8](repeating: 0x55, count: hearth_packed_size(Int32(rows), Int32(dim)))
        packed.withUnsafeMutableBufferPointer { out in
            rowMajor.withUnsafeBufferPointer { hearth_pack($0.baseAddress, Int32(rows), Int32(dim), out.baseAddress) }
        }
        self.query = query + [Int8](repeating: 0, count: Int(hearth_dim_padded(Int32(dim))) - dim)
    }

    init(rows: Int, dim: Int, fill: Fill, rng: inout SplitMix64) {
        var matrix = [Int8](repeating: 0, count: rows * dim)
        for r in 0 ..< rows { for c in 0 ..< dim { matrix[r * dim + c] = fill.item(r, c, &rng) } }
        let query = (0 ..< dim).map { fill.query($0, &rng) }
        self.init(rows: rows, dim: dim, rowMajor: matrix, query: query)
    }

    /// Independent reference: dot of row `row` with the query, straight from the row-major matrix.
    func referenceDot(_ row: Int) -> Int32 {
        var acc = 0
        for c in 0 ..< dim { acc += Int(rowMajor[row * dim + c]) * Int(query[c]) }
        return Int32(acc)
    }

    /// Runs `kernel.dot` over `count` blocks starting at block `first`; `canary` extra slots
    /// after the outputs must stay untouched.
    func dot(_ kernel: UnsafePointer<hearth_kernel>, first: Int = 0, count: Int? = nil, canary: Int = 8) -> (values: [Int32], canaryIntact: Bool) {
        let count = count ?? blocks - first
        let outputs = count * Int(HEARTH_BLOCK_ROWS)
        var out = [Int32](repeating: 0x5A5A_5A5A, count: outputs + canary)
        packed.withUnsafeBufferPointer { packed in
            query.withUnsafeBufferPointer { query in
                out.withUnsafeMutableBufferPointer { out in
                    kernel.pointee.dot(packed.baseAddress.map { $0 + first * Int(HEARTH_BLOCK_ROWS) * dimPadded }, query.baseAddress,
                                       Int32(dimPadded), Int32(count), out.baseAddress)
                }
            }
        }
        return (Array(out[..<outputs]), out[outputs...].allSatisfy { $0 == 0x5A5A_5A5A })
    }
}

/// A scored table: problem plus per-row scale and bias and a query scale.
private struct ScoredProblem {
    var problem: Problem
    var rowScale: [Float]
    var bias: [Float]
    var queryScale: Float

    func withTable<T>(_ body: (hearth_table) -> T) -> T {
        problem.packed.withUnsafeBufferPointer { packed in
            rowScale.withUnsafeBufferPointer { scale in
                bias.withUnsafeBufferPointer { bias in
                    body(hearth_table(packed: packed.baseAddress, row_scale: scale.baseAddress, bias: bias.baseAddress,
                                      rows: Int32(problem.rows), dim_padded: Int32(problem.dimPadded)))
                }
            }
        }
    }

    /// Reference scores from the library's scalar per-row path (`hearth_score_rows`).
    func referenceScores() -> [Float] {
        var scores = [Float](repeating: .nan, count: problem.rows)
        let rows = (0 ..< problem.rows).map { Int32($0) }
        withTable { table in
            var table = table
            problem.query.withUnsafeBufferPointer { query in
                rows.withUnsafeBufferPointer { rows in
                    scores.withUnsafeMutableBufferPointer { out in
                        hearth_score_rows(&table, query.baseAddress, queryScale, rows.baseAddress, Int32(rows.count), out.baseAddress)
                    }
                }
            }
        }
        return scores
    }

    func scoreAll(_ kernel: UnsafePointer<hearth_kernel>) -> [Float] {
        var scores = [Float](repeating: .nan, count: problem.rows)
        withTable { table in
            var table = table
            problem.query.withUnsafeBufferPointer { query in
                scores.withUnsafeMutableBufferPointer { out in
                    hearth_score_all(kernel, &table, query.baseAddress, queryScale, out.baseAddress)
                }
            }
        }
        return scores
    }

    func topK(_ kernel: UnsafePointer<hearth_kernel>, k: Int, excluded: [UInt64]?) -> [hearth_scored] {
        // One spare slot past k filled with a marker: the call must never write it.
        var out = [hearth_scored](repeating: hearth_scored(index: -7, score: -7), count: k + 1)
        let written = withTable { table -> Int32 in
            var table = table
            return problem.query.withUnsafeBufferPointer { query in
                out.withUnsafeMutableBufferPointer { out in
                    if let excluded {
                        return excluded.withUnsafeBufferPointer {
                            hearth_score_topk(kernel, &table, query.baseAddress, queryScale, $0.baseAddress, Int32(k), out.baseAddress)
                        }
                    }
                    return hearth_score_topk(kernel, &table, query.baseAddress, queryScale, nil, Int32(k), out.baseAddress)
                }
            }
        }
        #expect(out[k].index == -7, "hearth_score_topk wrote past k = \(k)")
        return Array(out[..<Int(written)])
    }
}

/// Data shapes for the ranking tests.
enum RankingData: String, CaseIterable, Sendable, CustomTestStringConvertible {
    /// Random rows, scales and biases.
    case random
    /// Rows, scales and biases drawn from a pool of three: many exact ties.
    case ties
    /// Every row identical (+127): the order is by index alone.
    case allEqual
    /// Every score negative (bias about -1000): a zero padding row that leaked would rank first.
    case negative
    var testDescription: String { rawValue }
}

private func makeScored(_ kind: RankingData, rows: Int, dim: Int, rng: inout SplitMix64) -> ScoredProblem {
    var matrix = [Int8](repeating: 0, count: rows * dim)
    var scale = [Float](repeating: 0, count: rows)
    var bias = [Float](repeating: 0, count: rows)
    let poolRows = (0 ..< 3).map { _ in (0 ..< dim).map { _ in rng.int8() } }
    let poolScale = (0 ..< 3).map { _ in rng.float(0.001, 0.05) }
    let poolBias = (0 ..< 3).map { _ in rng.float(-1, 1) }
    for r in 0 ..< rows {
        switch kind {
        case .random, .negative:
            for c in 0 ..< dim { matrix[r * dim + c] = rng.int8() }
            scale[r] = rng.float(0.001, 0.05)
            bias[r] = kind == .negative ? rng.float(-1001, -1000) : rng.float(-1, 1)
        case .ties:
            let p = rng.below(3)
            for c in 0 ..< dim { matrix[r * dim + c] = poolRows[p][c] }
            scale[r] = poolScale[p]
            bias[r] = poolBias[p]
        case .allEqual:
            for c in 0 ..< dim { matrix[r * dim + c] = 127 }
            scale[r] = 0.01
            bias[r] = 0.25
        }
    }
    let query = (0 ..< dim).map { _ in kind == .allEqual ? Int8(127) : rng.int8() }
    return ScoredProblem(problem: Problem(rows: rows, dim: dim, rowMajor: matrix, query: query),
                         rowScale: scale, bias: bias, queryScale: rng.float(0.001, 0.05))
}

/// The expected ranking: a full sort of the eligible rows by (score descending, index ascending).
private func fullSort(scores: [Float], excluded: [UInt64]?) -> [(index: Int32, score: Float)] {
    var eligible: [(index: Int32, score: Float)] = []
    for (row, score) in scores.enumerated() {
        if let excluded, excluded[row / 64] >> UInt64(row % 64) & 1 == 1 { continue }
        eligible.append((Int32(row), score))
    }
    eligible.sort { $0.score != $1.score ? $0.score > $1.score : $0.index < $1.index }
    return eligible
}

/// The first index where `a` and `b` differ (or the shorter length), nil when equal. Used
/// instead of `#expect(a == b)` on big arrays, whose failure diff is slow and unreadable.
private func firstMismatch<T: Equatable>(_ a: [T], _ b: [T]) -> Int? {
    if let i = zip(a, b).enumerated().first(where: { $0.element.0 != $0.element.1 })?.offset { return i }
    return a.count == b.count ? nil : min(a.count, b.count)
}

/// Where a top-K result departs from the expected ranking (count, index, score bits, or a row
/// outside [0, rows) such as a padding row), or nil when they are identical.
private func firstDifference(_ actual: [hearth_scored], _ expected: ArraySlice<(index: Int32, score: Float)>, rows: Int) -> String? {
    if let bad = actual.firstIndex(where: { $0.index < 0 || $0.index >= Int32(rows) }) {
        return "result \(bad) is row \(actual[bad].index), outside the table's \(rows) rows (padding?)"
    }
    for (i, (got, want)) in zip(actual, expected).enumerated() where got.index != want.index || got.score.bitPattern != want.score.bitPattern {
        return "result \(i) is (row \(got.index), \(got.score)), a full sort says (row \(want.index), \(want.score))"
    }
    if actual.count != expected.count { return "\(actual.count) results, expected \(expected.count)" }
    return nil
}

// MARK: - Tests

@Suite("Kernel bit-exactness", .computeLane)
struct KernelBitExactTests {
    @Test("Kernel list: scalar first, names unique and found by name, best is the last supported")
    func kernelList() throws {
        #expect(kernelNames.first == "scalar")
        #expect(Set(kernelNames).count == kernelNames.count)
        #if arch(x86_64)
        #expect(kernelNames == ["scalar", "avx2", "avxvnni"])
        #elseif arch(arm64)
        #expect(kernelNames == ["scalar", "neon", "neondot"])
        #endif
        for (i, name) in kernelNames.enumerated() {
            let kernel = try #require(hearth_kernel_named(name))
            #expect(kernel == hearth_kernel_at(Int32(i)))
        }
        #expect(hearth_kernel_named("no-such-kernel") == nil)
        #expect(hearth_kernel_at(-1) == nil && hearth_kernel_at(hearth_kernel_count()) == nil)
        let scalar = try #require(hearth_kernel_named("scalar"))
        #expect(hearth_kernel_is_supported(scalar) != 0)
        let best = hearth_kernel_best()
        let lastSupported = try #require((0 ..< hearth_kernel_count()).last { hearth_kernel_is_supported(hearth_kernel_at($0)) != 0 })
        #expect(best == hearth_kernel_at(lastSupported))
    }

    @Test("Oracle equals the row-major reference; padding rows are zero", arguments: Fill.allCases)
    func oracle(fill: Fill) throws {
        var rng = SplitMix64(seed: 0x0AC1E ^ UInt64(Fill.allCases.firstIndex(of: fill)!))
        let scalar = try #require(hearth_kernel_named("scalar"))
        for rows in awkwardSizes {
            for dim in awkwardSizes {
                let problem = Problem(rows: rows, dim: dim, fill: fill, rng: &rng)
                let (values, canaryIntact) = problem.dot(scalar)
                let expected = (0 ..< problem.blocks * 8).map { $0 < rows ? problem.referenceDot($0) : 0 }
                if let i = firstMismatch(values, expected) {
                    Issue.record("\(fill) N=\(rows) d=\(dim): output \(i)\(i >= rows ? " (padding row)" : ""): oracle \(i < values.count ? String(values[i]) : "-"), reference \(i < expected.count ? String(expected[i]) : "-")")
                    return
                }
                #expect(canaryIntact, "N=\(rows) d=\(dim)")
            }
        }
    }

    @Test("Dot products are bit-exact with the oracle", arguments: kernelNames, Fill.allCases)
    func dotBitExact(kernelName: String, fill: Fill) throws {
        guard let kernel = try runnableKernel(kernelName) else { return }
        let scalar = try #require(hearth_kernel_named("scalar"))
        var rng = SplitMix64(seed: 0xD07 ^ UInt64(Fill.allCases.firstIndex(of: fill)!))
        var mismatches = 0
        for rows in awkwardSizes {
            for dim in awkwardSizes {
                let problem = Problem(rows: rows, dim: dim, fill: fill, rng: &rng)
                let oracle = problem.dot(scalar).values
                let whole = problem.dot(kernel)
                if let i = firstMismatch(whole.values, oracle) {
                    mismatches += 1
                    Issue.record("\(kernelName) \(fill) N=\(rows) d=\(dim): output \(i)\(i >= rows ? " (padding row)" : ""): \(kernelName) \(whole.values[i]), oracle \(oracle[i])")
                }
                if !whole.canaryIntact {
                    mismatches += 1
                    Issue.record("\(kernelName) \(fill) N=\(rows) d=\(dim): wrote past its \(oracle.count) outputs")
                }
                // A chunk that does not start at the table's first block, as the scorer calls it.
                if problem.blocks > 1 {
                    let tail = problem.dot(kernel, first: 1)
                    if firstMismatch(tail.values, Array(oracle[8...])) != nil || !tail.canaryIntact {
                        mismatches += 1
                        Issue.record("\(kernelName) \(fill) N=\(rows) d=\(dim): wrong when started at block 1")
                    }
                }
                if mismatches > 10 { return }
            }
        }
    }

    @Test("Scores are bit-exact with the scalar per-row reference", arguments: kernelNames, RankingData.allCases)
    func scoresBitExact(kernelName: String, data: RankingData) throws {
        guard let kernel = try runnableKernel(kernelName) else { return }
        var rng = SplitMix64(seed: 0x5C0E ^ UInt64(RankingData.allCases.firstIndex(of: data)!))
        for rows in awkwardSizes + [511, 513, 1000] {
            for dim in [1, 3, 8, 17, 64, 129] {
                let scored = makeScored(data, rows: rows, dim: dim, rng: &rng)
                let expected = scored.referenceScores()
                let actual = scored.scoreAll(kernel)
                if let row = (0 ..< rows).first(where: { actual[$0].bitPattern != expected[$0].bitPattern }) {
                    Issue.record("\(kernelName) \(data) N=\(rows) d=\(dim): row \(row) scored \(actual[row]), reference \(expected[row])")
                    return
                }
            }
        }
    }

    @Test("Top-K equals a full sort by (score desc, index asc), with ties and exclusions",
          arguments: kernelNames, RankingData.allCases)
    func topKEqualsFullSort(kernelName: String, data: RankingData) throws {
        guard let kernel = try runnableKernel(kernelName) else { return }
        var rng = SplitMix64(seed: 0x70_9C ^ UInt64(RankingData.allCases.firstIndex(of: data)!))
        var failures = 0
        for rows in awkwardSizes + [513, 1000] {
            for dim in [1, 5, 17, 64] {
                let scored = makeScored(data, rows: rows, dim: dim, rng: &rng)
                let scores = scored.referenceScores()
                let words = (rows + 63) / 64
                var random = [UInt64](repeating: 0, count: words)
                for row in 0 ..< rows where rng.below(100) < 30 { random[row / 64] |= 1 << UInt64(row % 64) }
                var allButOne = [UInt64](repeating: 0, count: words)
                let keep = rng.below(rows)
                for row in 0 ..< rows where row != keep { allButOne[row / 64] |= 1 << UInt64(row % 64) }
                let all = (0 ..< words).map { w in w == words - 1 && rows % 64 != 0 ? (UInt64(1) << UInt64(rows % 64)) - 1 : ~UInt64(0) }
                let exclusions: [(String, [UInt64]?)] = [("none", nil), ("empty", [UInt64](repeating: 0, count: words)),
                                                         ("random", random), ("all-but-one", allButOne), ("all", all)]
                for (exclusionName, excluded) in exclusions {
                    let ranking = fullSort(scores: scores, excluded: excluded)
                    for k in Set([0, 1, 2, 8, rows / 2, rows - 1, rows, rows + 1, rows + 9]).sorted() {
                        let expected = ranking.prefix(k)
                        let actual = scored.topK(kernel, k: k, excluded: excluded)
                        if let difference = firstDifference(actual, expected, rows: rows) {
                            Issue.record("\(kernelName) \(data) N=\(rows) d=\(dim) k=\(k) excluded=\(exclusionName): \(difference)")
                            failures += 1
                            if failures >= 5 { return } // enough to diagnose; keep the log readable
                        }
                    }
                }
            }
        }
    }

    @Test("Top-K edge cases: k = 0, k > rows, padding rows never returned", arguments: kernelNames)
    func topKEdges(kernelName: String) throws {
        guard let kernel = try runnableKernel(kernelName) else { return }
        var rng = SplitMix64(seed: 0xED6E)
        for rows in [1, 3, 7, 9, 15] { // every size leaves padding rows in the last block
            let scored = makeScored(.negative, rows: rows, dim: 6, rng: &rng)
            #expect(scored.topK(kernel, k: 0, excluded: nil).isEmpty, "k = 0 must return nothing (N=\(rows))")
            let many = scored.topK(kernel, k: rows + 20, excluded: nil)
            #expect(many.count == rows, "k > rows returns every row once (N=\(rows))")
            #expect(Set(many.map(\.index)) == Set(0 ..< Int32(rows)), "N=\(rows)")
            // Padding rows score 0 * scale + (no bias) = 0 and real rows about -1000: a leak would lead.
            #expect(many.allSatisfy { $0.score < -900 }, "a padding row leaked into the results (N=\(rows))")
        }
        // No rows at all.
        let empty = ScoredProblem(problem: Problem(rows: 0, dim: 4, rowMajor: [], query: [1, 2, 3, 4]),
                                  rowScale: [], bias: [], queryScale: 1)
        #expect(empty.topK(kernel, k: 5, excluded: nil).isEmpty)
        #expect(empty.scoreAll(kernel).isEmpty)
    }

    @Test("hearth_pack / hearth_unpack_row round-trip; padding is zero; layout matches the header")
    func packRoundTrip() {
        var rng = SplitMix64(seed: 0x9AC4)
        for rows in awkwardSizes {
            for dim in awkwardSizes {
                let matrix = (0 ..< rows * dim).map { _ in rng.int8() }
                let problem = Problem(rows: rows, dim: dim, rowMajor: matrix, query: [Int8](repeating: 0, count: dim))
                let dimPadded = problem.dimPadded
                #expect(problem.packed.count == problem.blocks * 8 * dimPadded)
                var expectedPacked = [Int8](repeating: 0, count: problem.packed.count)
                for r in 0 ..< rows {
                    for c in 0 ..< dim {
                        // block r/8, group c/4 (32 bytes: 8 rows x 4 bytes), row r%8, byte c%4
                        expectedPacked[(r / 8) * 8 * dimPadded + (c / 4) * 32 + (r % 8) * 4 + c % 4] = matrix[r * dim + c]
                    }
                }
                if let i = firstMismatch(problem.packed, expectedPacked) {
                    Issue.record("layout N=\(rows) d=\(dim): packed byte \(i) is \(problem.packed[i]), the header's layout says \(expectedPacked[i])")
                }
                var row = [Int8](repeating: 0, count: dim)
                var roundTrip = true
                for r in 0 ..< rows {
                    problem.packed.withUnsafeBufferPointer { packed in
                        row.withUnsafeMutableBufferPointer { hearth_unpack_row(packed.baseAddress, Int32(dim), Int32(r), $0.baseAddress) }
                    }
                    roundTrip = roundTrip && row[...] == matrix[(r * dim) ..< ((r + 1) * dim)]
                }
                #expect(roundTrip, "round trip N=\(rows) d=\(dim)")
            }
        }
    }
}
