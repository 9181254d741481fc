/// Rényi-DP accountant for the (Poisson-subsampled) Gaussian and discrete Gaussian mechanisms.
///
/// RDP of the Poisson-subsampled Gaussian with noise multiplier z and rate q at order α is
/// log(A_α)/(α - 1) (Mironov, Talwar, Zhang 2019, "Rényi Differential Privacy of the Sampled
/// Gaussian Mechanism", arXiv:1908.10530):
/// - integer α: A_α = Σ_{k=0}^{α} C(α,k) (1-q)^{α-k} q^k exp((k²-k)/(2z²)), exactly (Sec. 3.2);
/// - fractional α: the two-sided series of Sec. 3.3, summed as in Google's `dp_accounting`
///   (absolute values of the generalised binomial coefficients, which can only overestimate);
/// - q = 1: α/(2z²).
///
/// The discrete Gaussian on ℤ^d with L2 sensitivity Δ and parameter σ has RDP at most αΔ²/(2σ²),
/// the continuous value (Canonne, Kamath, Steinke 2020, Prop. 1.6/Thm. 15 — it is ½(Δ/σ)²-zCDP).
/// For the Poisson-subsampled discrete Gaussian at integer α, A_α = Σ_k C(α,k) (1-q)^{α-k} q^k
/// E_P[(Q/P)^k] and every term is nonnegative, so bounding each moment
/// E_P[(Q/P)^k] = exp((k-1)·D_k(Q‖P)) ≤ exp(k(k-1)Δ²/(2σ²)) by the discrete Gaussian's RDP gives
/// exactly the continuous formula; the accountant therefore uses the subsampled-Gaussian curve
/// with z = σ/Δ for both mechanisms. For the other neighbouring direction (removing a device)
/// we rely, as `dp_accounting` and Opacus do for the continuous Gaussian, on Mironov et al.'s
/// argument that the add direction dominates; for the discrete Gaussian this is an assumption,
/// documented in docs/privacy.md.
///
/// Composition adds RDP curves order by order; conversion to (ε, δ) uses the tight bound of
/// Canonne, Kamath, Steinke 2020 (Prop. 12) / Asoodeh et al. 2020 (Eq. 20), as `dp_accounting`:
/// ε = min_α  rdp(α) + log((α-1)/α) - (log δ + log α)/(α - 1).
public struct RDPAccountant: Sendable, Hashable {
    /// The orders α at which RDP is tracked.
    public let orders: [Double]
    /// Accumulated RDP at each order.
    public private(set) var rdp: [Double]

    /// The default orders of Google's `dp_accounting` (1.1, 1.2, …, 10.9, 11, …, 63, 128, 256, 512, 1024).
    public static let defaultOrders: [Double] = {
        var o = [Double]()
        for x in 1..<100 { o.append(1 + Double(x) / 10) }
        for x in 11..<64 { o.append(Double(x)) }
        o.append(contentsOf: [128, 256, 512, 1024])
        return o
    }()

    /// An empty accountant (no privacy spent) over `orders` (all must be > 1).
    public init(orders: [Double] = RDPAccountant.defaultOrders) {
        self.orders = orders
        self.rdp = [Double](repeating: 0, count: orders.count)
    }

    /// Adds `steps` rounds of the Poisson-subsampled Gaussian (or discrete Gaussian, see the
    /// type's documentation) with noise multiplier z and sampling rate q.
    public mutating func compose(noiseMultiplier: Double, samplingRate: Double, steps: Int = 1) throws(PrivacyError) {
        guard noiseMultiplier.isFinite, noiseMultiplier > 0 else { throw .invalidNoiseMultiplier }
        guard samplingRate.isFinite, samplingRate > 0, samplingRate <= 1 else { throw .invalidSamplingRate }
        guard steps >= 1 else { throw .invalidSteps }
        for i in 0..<orders.count {
            let r = RDPAccountant.subsampledGaussianRDP(noiseMultiplier: noiseMultiplier, samplingRate: samplingRate, order: orders[i])
            rdp[i] += Double(steps) * r
        }
    }

    /// Adds a zero-concentrated DP guarantee ρ (RDP αρ at every order), e.g. the distributed
    /// discrete Gaussian bound of `distributedDiscreteGaussianEpsilon`.
    public mutating func compose(zCDP rho: Double, steps: Int = 1) throws(PrivacyError) {
        guard rho.isFinite, rho >= 0 else { throw .invalidNoiseMultiplier }
        guard steps >= 1 else { throw .invalidSteps }
        for i in 0..<orders.count { rdp[i] += Double(steps) * rho * orders[i] }
    }

    /// Adds another accountant's curve (same orders).
    public mutating func compose(_ other: RDPAccountant) throws(PrivacyError) {
        guard other.orders == orders else { throw .dimensionMismatch }
        for i in 0..<orders.count { rdp[i] += other.rdp[i] }
    }

    /// The smallest ε such that the composition is (ε, δ)-DP, and the order achieving it.
    public func epsilon(delta: Double) throws(PrivacyError) -> (epsilon: Double, order: Double) {
        guard delta.isFinite, delta > 0, delta < 1 else { throw .invalidDelta }
        var best = Double.infinity
        var bestOrder = orders.first ?? 0
        for i in 0..<orders.count {
            let a = orders[i]
            let r = rdp[i]
            var eps: Double
            if r < 0 || !(a >= 1) {
                eps = 0
            } else if delta * delta + expm1Double(-r) > 0 {
                eps = 0  // KL bound: δ ≤ √(1 - e^{-KL})
            } else if a > 1.01 {
                eps = r + log1pDouble(-1 / a) - logDouble(delta * a) / (a - 1)
            } else {
                eps = .infinity
            }
            if eps.isNaN { eps = .infinity }
            if eps < best {
                best = eps
                bestOrder = a
            }
        }
        return (best > 0 ? best : 0, bestOrder)
    }

    /// ε for T rounds of the Poisson-subsampled Gaussian at (z, q), at δ.
    public static func epsilon(noiseMultiplier: Double, samplingRate: Double, steps: Int, delta: Double,
                               orders: [Double] = RDPAccountant.defaultOrders) throws(PrivacyError) -> Double {
        var a = RDPAccountant(orders: orders)
        try a.compose(noiseMultiplier: noiseMultiplier, samplingRate: samplingRate, steps: steps)
        return try a.epsilon(delta: delta).epsilon
    }

    /// RDP of one round of the Poisson-subsampled Gaussian at order α (> 1).
    public static func subsampledGaussianRDP(noiseMultiplier z: Double, samplingRate q: Double, order alpha: Double) -> Double {
        if q <= 0 { return 0 }
        if !alpha.isFinite || z <= 0 { return .infinity }
        if q >= 1 { return alpha / (2 * z * z) }
        let logA: Double
        if alpha == alpha.rounded(.down), alpha < 1e6 {
            logA = logAInteger(q: q, sigma: z, alpha: Int(alpha))
        } else {
            logA = logAFractional(q: q, sigma: z, alpha: alpha)
        }
        return logA / (alpha - 1)
    }

    /// log of the binomial coefficient C(n, k) via lgamma (absolute value for fractional n).
    static func logBinomial(_ n: Double, _ k: Double) -> Double {
        lgammaDouble(n + 1) - lgammaDouble(k + 1) - lgammaDouble(n - k + 1)
    }

    /// log A_α for integer α and 0 < q < 1 (Mironov et al. 2019, Sec. 3.2).
    static func logAInteger(q: Double, sigma: Double, alpha: Int) -> Double {
        var logA = -Double.infinity
        let logQ = logDouble(q)
        let log1mq = log1pDouble(-q)
        let a = Double(alpha)
        for i in 0...alpha {
            let k = Double(i)
            let coef = logBinomial(a, k) + k * logQ + (a - k) * log1mq
            let s = coef + (k * k - k) / (2 * sigma * sigma)
            logA = logAdd(logA, s)
        }
        return logA
    }

    /// log A_α for fractional α and 0 < q < 1 (Mironov et al. 2019, Sec. 3.3), as in dp_accounting.
    static func logAFractional(q: Double, sigma: Double, alpha: Double) -> Double {
        var logA0 = -Double.infinity
        var logA1 = -Double.infinity
        let z0 = sigma * sigma * logDouble(1 / q - 1) + 0.5
        let log1mq = log1pDouble(-q)
        let logQ = logDouble(q)
        let sqrt2Sigma = 1.4142135623730951 * sigma
        var lastS0 = -Double.infinity
        var lastS1 = -Double.infinity
        for step in 0..<1000 {
            let i = Double(step)
            let logCoef = logBinomial(alpha, i)
            let j = alpha - i
            let logT0 = logCoef + i * logQ + j * log1mq
            let logT1 = logCoef + j * logQ + i * log1mq
            let logE0 = -0.6931471805599453 + logErfc((i - z0) / sqrt2Sigma)
            let logE1 = -0.6931471805599453 + logErfc((z0 - j) / sqrt2Sigma)
            let logS0 = logT0 + (i * i - i) / (2 * sigma * sigma) + logE0
            let logS1 = logT1 + (j * j - j) / (2 * sigma * sigma) + logE1
            logA0 = logAdd(logA0, logS0)
            logA1 = logAdd(logA1, logS1)
            let total = logAdd(logA0, logA1)
            if logS0 < lastS0 && logS1 < lastS1 && (logS0 > logS1 ? logS0 : logS1) < total - 30 {
                return total
            }
            lastS0 = logS0
            lastS1 = logS1
        }
        return .infinity  // did not converge: this order is excluded (ε = ∞ there)
    }
}

/// The zero-concentrated DP parameter ε (ρ = ε²/2) of the sum of n devices' independent discrete
/// Gaussians N_ℤ(0, σ²) per coordinate (secure aggregation, distributed noise), for one device's
/// contribution with L2 norm ≤ Δ₂ and L1 norm ≤ Δ₁ in d coordinates.
///
/// Kairouz, Liu, Steinke 2021 (ICML), Theorem 1:
/// ε = min( √(Δ₂²/(nσ²) + ½·τ·d),  Δ₁/(√n·σ) + τ·d ),  τ = 10 Σ_{k=1}^{n-1} exp(-2π²σ² k/(k+1)).
/// The sum of discrete Gaussians is not itself a discrete Gaussian; τ measures the gap.
public func distributedDiscreteGaussianEpsilon(l2Sensitivity: Double, l1Sensitivity: Double,
                                               sigma: Double, devices n: Int, dimension d: Int) -> Double {
    var tau = 0.0
    if n > 1 {
        for k in 1..<n {
            let kd = Double(k)
            tau += 10 * expDouble(-2 * Double.pi * Double.pi * sigma * sigma * kd / (kd + 1))
        }
    }
    let nd = Double(n)
    let a = hearthSqrt(l2Sensitivity * l2Sensitivity / (nd * sigma * sigma) + 0.5 * tau * Double(d))
    let b = l1Sensitivity / (hearthSqrt(nd) * sigma) + tau * Double(d)
    return a < b ? a : b
}
