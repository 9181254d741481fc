/// Compares two smoke reports (native x86-64 and aarch64): the same keys in the same order,
/// `text` and `int` lines identical, `f32`/`f64` lines within `Tolerance`, `info` lines shown.
///
/// `derived` lines are integers computed from earlier float results (stochastic rounding of the
/// training update onto the privacy grid, whose scale and noise variance come from a libm `log`).
/// They must be identical while every float line before them is bit-identical: the rest of
/// their computation is exact (integer sampling, IEEE arithmetic). Once a float result has
/// differed, even by an ulp, a derived value may legitimately differ by anything (the noise
/// variance is a rational rounded up from σ², and a different variance draws different noise),
/// so derived lines are then only checked for their count, and the summary says so.
struct Comparison {
    /// Lines that differ beyond what their kind allows; empty when the reports agree.
    private(set) var failures: [String] = []
    /// One line per compared key: `identical`, or how far apart the floats were.
    private(set) var summary: [String] = []
    /// Whether every float line so far was bit-identical.
    private var floatsIdentical = true

    init(reference: [String], candidate: [String]) {
        let left = reference.filter { !$0.isEmpty }
        let right = candidate.filter { !$0.isEmpty }
        if left.count != right.count {
            failures.append("the reports have \(left.count) and \(right.count) lines")
        }
        for (a, b) in zip(left, right) {
            compare(ReportLine(a), ReportLine(b))
        }
    }

    private mutating func compare(_ a: ReportLine, _ b: ReportLine) {
        guard a.key == b.key, a.kind == b.kind else {
            failures.append("line order differs: '\(a.key) \(a.kind)' against '\(b.key) \(b.kind)'")
            return
        }
        switch a.kind {
        case "info":
            summary.append("\(a.key): \(a.values) | \(b.values) (not compared)")
        case "text", "int":
            if a.values == b.values {
                summary.append("\(a.key): identical (\(a.kind), \(a.count) value\(a.count == 1 ? "" : "s"))")
            } else {
                failures.append("\(a.key): \(a.kind) values differ (they must be identical)")
            }
        case "derived":
            compareDerived(a, b)
        case "f32", "f64":
            compareFloats(a, b, tolerance: a.kind == "f32" ? Tolerance.float32 : Tolerance.float64)
        default:
            failures.append("\(a.key): unknown kind '\(a.kind)'")
        }
    }

    private mutating func compareDerived(_ a: ReportLine, _ b: ReportLine) {
        if a.values == b.values {
            summary.append("\(a.key): identical (derived, \(a.count) value\(a.count == 1 ? "" : "s"))")
            return
        }
        guard !floatsIdentical else {
            failures.append("\(a.key): derived values differ although every float result before them is bit-identical")
            return
        }
        guard a.count == b.count else {
            failures.append("\(a.key): \(a.count) against \(b.count) derived values")
            return
        }
        summary.append("\(a.key): differs, NOT COMPARED: it is computed from float results above that differ "
            + "(within tolerance)")
    }

    private mutating func compareFloats(_ a: ReportLine, _ b: ReportLine, tolerance: Tolerance) {
        let x = a.floats(), y = b.floats()
        guard let x, let y, x.count == y.count else {
            failures.append("\(a.key): unreadable or differently sized \(a.kind) values")
            return
        }
        var differing = 0
        var worst = 0.0
        var worstIndex = 0
        for i in x.indices where x[i].bitPattern != y[i].bitPattern {
            differing += 1
            let excess = tolerance.excess(x[i], y[i])
            if excess > worst || differing == 1 {
                worst = excess
                worstIndex = i
            }
        }
        if differing > 0 { floatsIdentical = false }
        if differing == 0 {
            summary.append("\(a.key): bit-identical (\(a.kind), \(x.count) value\(x.count == 1 ? "" : "s"))")
        } else if worst <= 1 {
            summary.append("\(a.key): \(differing) of \(x.count) \(a.kind) values differ, all within tolerance "
                + "(worst at [\(worstIndex)]: \(x[worstIndex]) vs \(y[worstIndex]), \(worst) of the allowance)")
        } else {
            failures.append("\(a.key): \(differing) of \(x.count) \(a.kind) values differ; [\(worstIndex)] is "
                + "\(x[worstIndex]) vs \(y[worstIndex]), \(worst) times the allowance \(tolerance.description)")
        }
    }
}

/// How far apart a float result may be between two platforms: |a − b| ≤ absolute + relative·max(|a|, |b|).
///
/// Why there is any tolerance, and why these values: `docs/cross.md`. In short, every operation
/// of the float paths is IEEE-754 basic arithmetic or `sqrt` (correctly rounded on both ISAs;
/// Swift never contracts `a * b + c` into an FMA, and the C kernels are built with
/// `-ffp-contract=off`), except the libm calls: `expf`/`logf` in the training softmax, `exp`,
/// `log`, `log1p`, `expm1`, `erfc`, `lgamma` in the accountants and the privacy grid. glibc does
/// not promise correctly rounded results for those, and its x86-64 and AArch64 builds differ:
/// measured on 200,000 arguments each, `erfc` differs in 0.9% of them (at most 2 ulp) and
/// `lgamma` in 24% (1 ulp); the others agreed on every argument.
struct Tolerance {
    var absolute: Double
    var relative: Double

    /// float32 (training, scores): the update is `trained − start`, so an error in a trained
    /// parameter (|θ| ≤ 0.2 here, ulp ≈ 1.5e-8) appears unscaled in a small update coordinate.
    /// A few-ulp libm difference in one softmax probability moves the trajectory by about an
    /// ulp of the parameters it touches, and SGD at learning rate 0.05 does not amplify it much
    /// over 70 steps. 2e-7 absolute is about 13 ulps of the largest parameters; 1e-5 relative
    /// is about 80 float32 ulps. A wrong kernel, layout, seed or learning rule moves values by
    /// percent, 1,000× more.
    static let float32 = Tolerance(absolute: 2e-7, relative: 1e-5)

    /// float64 (ε, noise calibration, the privacy grid): measured 4e-11 relative for the PLD ε
    /// (`erfc` ulps, then the pessimistic discretisation rounds each privacy loss up to a grid
    /// point, so a loss that moves across a grid point moves its whole bin). 1e-7 relative
    /// leaves 2,500× margin and is still 10,000× below the 1e-3 that ε is ever reported to.
    static let float64 = Tolerance(absolute: 1e-300, relative: 1e-7)

    /// |a − b| over the allowance: ≤ 1 is within tolerance. NaNs with the same bits never reach
    /// here (bit-identical values are skipped); any other NaN fails.
    func excess(_ a: Double, _ b: Double) -> Double {
        if a.isNaN || b.isNaN || a.isInfinite || b.isInfinite { return .infinity }
        let allowance = absolute + relative * max(a.magnitude, b.magnitude)
        return (a - b).magnitude / allowance
    }

    var description: String { "(absolute \(absolute), relative \(relative))" }
}

/// One parsed report line.
struct ReportLine {
    var key: String
    var kind: String
    /// The values field, without the human-readable ` # ...` comment.
    var values: String

    init(_ line: String) {
        let fields = line.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
        key = fields.count > 0 ? String(fields[0]) : ""
        kind = fields.count > 1 ? String(fields[1]) : ""
        let rest = fields.count > 2 ? String(fields[2]) : ""
        if kind == "info" || kind == "text" {
            values = rest
        } else {
            // Numbers contain no spaces: the values end at the first one.
            values = rest.split(separator: " ", maxSplits: 1).first.map(String.init) ?? ""
        }
    }

    var count: Int { values.isEmpty ? 0 : values.split(separator: ",").count }

    /// The float values as Doubles (f32 widened exactly), or nil if a field is not hex.
    func floats() -> [Double]? {
        var out: [Double] = []
        for field in values.split(separator: ",") {
            guard field.hasPrefix("0x"), let bits = UInt64(field.dropFirst(2), radix: 16) else { return nil }
            if kind == "f32" {
                guard bits <= UInt64(UInt32.max) else { return nil }
                out.append(Double(Float(bitPattern: UInt32(bits))))
            } else {
                out.append(Double(bitPattern: bits))
            }
        }
        return out
    }
}
