import CHearthMath

/// Double-precision helpers for the accountants (never used to draw noise).
///
/// The privacy engine imports neither Foundation nor Glibc so that it compiles as Embedded Swift;
/// libm comes through the `CHearthMath` C target.

@inlinable func expDouble(_ x: Double) -> Double { hearth_exp(x) }
@inlinable func logDouble(_ x: Double) -> Double { hearth_log(x) }
@inlinable func log1pDouble(_ x: Double) -> Double { hearth_log1p(x) }
@inlinable func expm1Double(_ x: Double) -> Double { hearth_expm1(x) }
@inlinable func hearthSqrt(_ x: Double) -> Double { hearth_sqrt(x) }
@inlinable func erfcDouble(_ x: Double) -> Double { hearth_erfc(x) }
@inlinable func lgammaDouble(_ x: Double) -> Double { hearth_lgamma(x) }

/// log(e^a + e^b) without overflow.
@inlinable
func logAdd(_ a: Double, _ b: Double) -> Double {
    if a == -Double.infinity { return b }
    if b == -Double.infinity { return a }
    let hi = a > b ? a : b
    let lo = a > b ? b : a
    return hi + log1pDouble(expDouble(lo - hi))
}

/// log(e^a - e^b) for a ≥ b; -∞ when equal.
@inlinable
func logSub(_ a: Double, _ b: Double) -> Double {
    if b == -Double.infinity { return a }
    if a <= b { return -Double.infinity }
    // log(e^a - e^b) = a + log(1 - e^{b-a})
    let d = b - a
    if d > -0.6931471805599453 {
        return a + logDouble(-expm1Double(d))
    }
    return a + log1pDouble(-expDouble(d))
}

/// log(erfc(x)), accurate far into the upper tail (asymptotic expansion once erfc underflows).
@inlinable
func logErfc(_ x: Double) -> Double {
    let r = erfcDouble(x)
    if r > 1e-300 { return logDouble(r) }
    // Asymptotic series as in TensorFlow Privacy's `_log_erfc`.
    let x2 = x * x
    return -0.5 * logDouble(Double.pi) - logDouble(x) - x2
        - 0.5 / x2 + 0.625 / (x2 * x2) - 37.0 / 24.0 / (x2 * x2 * x2) + 353.0 / 64.0 / (x2 * x2 * x2 * x2)
}

/// The standard normal upper tail P(Z > x) = erfc(x/√2)/2.
@inlinable
func normalSurvival(_ x: Double) -> Double {
    0.5 * erfcDouble(x * 0.7071067811865476)
}

/// The standard normal CDF Φ(x) = erfc(-x/√2)/2.
@inlinable
func normalCDF(_ x: Double) -> Double {
    0.5 * erfcDouble(-x * 0.7071067811865476)
}

/// log Φ(x), accurate in the lower tail.
@inlinable
func logNormalCDF(_ x: Double) -> Double {
    -0.6931471805599453 + logErfc(-x * 0.7071067811865476)
}
