/// A privacy loss distribution on a grid, discretised pessimistically (losses rounded *up*).
///
/// For a pair (P, Q) of output distributions the privacy loss is L(x) = log(P(x)/Q(x)) with
/// x ~ P, and δ(ε) = P(L = ∞) + E[(1 - e^{ε - L})₊] (the hockey-stick divergence). Rounding every
/// loss up to the grid k·Δ can only increase δ(ε) for every ε, so all figures are upper bounds
/// (Meiser & Mohammadi 2018; Koskela, Jälkö, Honkela 2020; Google `dp_accounting` "pessimistic
/// estimate"). Composition convolves the PMFs; T-fold self-composition raises the DFT to the
/// power T (one FFT each way, written in `FFT.swift`). Mass falling outside the computed window
/// (bounded by a Chernoff bound) is added to δ, so truncation is pessimistic too. Floating-point
/// rounding in the FFT is of order 1e-13 absolute in δ and is not bounded rigorously.
public struct PrivacyLossDistribution: Sendable {
    /// Grid interval Δ of the loss values.
    public let interval: Double
    /// Loss of `probabilities[0]` in grid steps: probabilities[i] sits at (lowerIndex + i)·Δ.
    public let lowerIndex: Int
    /// Probability mass at each finite grid loss.
    public let probabilities: [Double]
    /// Mass at loss +∞ (plus pessimistically added truncated tails).
    public let infinityMass: Double

    /// A PLD from its parts.
    public init(interval: Double, lowerIndex: Int, probabilities: [Double], infinityMass: Double) {
        self.interval = interval
        self.lowerIndex = lowerIndex
        self.probabilities = probabilities
        self.infinityMass = infinityMass
    }

    /// δ(ε) = p_∞ + Σ_{l > ε} p_l (1 - e^{ε - l}).
    public func delta(epsilon: Double) -> Double {
        DeltaCurve(self).delta(epsilon: epsilon)
    }

    /// The smallest ε ≥ 0 with δ(ε) ≤ `delta` (∞ if the infinity mass alone exceeds δ).
    public func epsilon(delta target: Double) -> Double {
        DeltaCurve(self).epsilon(delta: target)
    }

    /// The T-fold composition with itself, by FFT.
    ///
    /// The window [a, b] of composed losses is chosen by Chernoff bounds so that the mass outside
    /// each side is at most `tailMass`; 2·`tailMass` is added to the infinity mass to cover
    /// wrap-around. If the window needs more than `maxBins` bins, fails with `invalidDiscretization`
    /// (use a coarser interval).
    public func selfComposed(_ steps: Int, tailMass: Double = 1e-15, maxBins: Int = 1 << 22) throws(PrivacyError) -> PrivacyLossDistribution {
        try PrivacyLossDistribution.selfCompose(self, nil, steps: steps, tailMass: tailMass, maxBins: maxBins).0
    }

    /// T-fold self-composition of one or two PLDs with a single complex FFT pair: the second
    /// (real) PMF rides in the imaginary part and the two spectra are separated by conjugate symmetry.
    static func selfCompose(_ first: PrivacyLossDistribution, _ second: PrivacyLossDistribution?, steps: Int,
                            tailMass: Double, maxBins: Int) throws(PrivacyError) -> (PrivacyLossDistribution, PrivacyLossDistribution?) {
        guard steps >= 1 else { throw .invalidSteps }
        if steps == 1 { return (first, second) }
        guard tailMass > 0, tailMass < 1e-3 else { throw .invalidDiscretization }
        let w1 = first.compositionWindow(steps: steps, tailMass: tailMass)
        let w2 = second?.compositionWindow(steps: steps, tailMass: tailMass) ?? w1
        let width = max(w1.1 - w1.0, w2.1 - w2.0) + 1
        guard width <= maxBins else { throw .invalidDiscretization }
        var n = 2
        while n < width { n <<= 1 }
        var re = [Double](repeating: 0, count: n)
        var im = [Double](repeating: 0, count: n)
        for i in 0..<first.probabilities.count { re[i & (n - 1)] += first.probabilities[i] }
        if let second {
            for i in 0..<second.probabilities.count { im[i & (n - 1)] += second.probabilities[i] }
        }
        FFT.transform(re: &re, im: &im, inverse: false)
        @inline(__always) func power(_ r: Double, _ i: Double) -> (Double, Double) {
            var br = r, bi = i
            var rr = 1.0, ri = 0.0
            var e = steps
            while e > 0 {
                if e & 1 == 1 {
                    let t = rr * br - ri * bi
                    ri = rr * bi + ri * br
                    rr = t
                }
                e >>= 1
                if e > 0 {
                    let t = br * br - bi * bi
                    bi = 2 * br * bi
                    br = t
                }
            }
            return (rr, ri)
        }
        if second == nil {
            for j in 0..<n {
                let (r, i) = power(re[j], im[j])
                re[j] = r
                im[j] = i
            }
        } else {
            // X = FFT(a + i·b): A[k] = (X[k] + conj X[-k])/2, B[k] = (X[k] - conj X[-k])/(2i).
            // The output spectrum is A^T + i·B^T, whose inverse has a^{*T} in re and b^{*T} in im.
            for k in 0...(n / 2) {
                let k2 = (n - k) & (n - 1)
                let xr = re[k], xi = im[k], yr = re[k2], yi = im[k2]
                // At k: A = ((xr + yr)/2, (xi - yi)/2), B = ((xi + yi)/2, -(xr - yr)/2).
                let (ar, ai) = power((xr + yr) / 2, (xi - yi) / 2)
                let (br, bi) = power((xi + yi) / 2, -(xr - yr) / 2)
                re[k] = ar - bi
                im[k] = ai + br
                if k2 != k {
                    // At -k the spectra are the conjugates: A[-k] = conj A[k], B[-k] = conj B[k].
                    re[k2] = ar + bi
                    im[k2] = -ai + br
                }
            }
        }
        FFT.transform(re: &re, im: &im, inverse: true)
        func unfold(_ pld: PrivacyLossDistribution, _ values: [Double], _ window: (Int, Int)) -> PrivacyLossDistribution {
            var out = [Double](repeating: 0, count: n)
            let base = steps * pld.lowerIndex
            for j in 0..<n {
                var pos = (base + j - window.0) % n
                if pos < 0 { pos += n }
                let v = values[j]
                out[pos] = v > 0 ? v : 0
            }
            var last = n - 1
            while last > 0 && out[last] == 0 { last -= 1 }
            out.removeSubrange((last + 1)...)
            var finite = 1.0
            for _ in 0..<steps { finite *= 1 - pld.infinityMass }
            return PrivacyLossDistribution(interval: pld.interval, lowerIndex: window.0, probabilities: out,
                                           infinityMass: 1 - finite + 2 * tailMass)
        }
        let composedFirst = unfold(first, re, w1)
        let composedSecond = second.map { unfold($0, im, w2) }
        return (composedFirst, composedSecond)
    }

    /// Grid indices [low, high] outside of which the T-fold composition has at most `tailMass`
    /// on each side (Chernoff), intersected with the support.
    ///
    /// The moment generating function is evaluated on a coarsened copy of the PMF (at most 4096
    /// blocks): for the upper tail each block's mass sits at its highest loss, for the lower tail
    /// at its lowest, which can only enlarge the moments, so the bounds stay valid.
    func compositionWindow(steps: Int, tailMass: Double) -> (Int, Int) {
        let t = Double(steps)
        let supportLow = steps * lowerIndex
        let supportHigh = steps * (lowerIndex + probabilities.count - 1)
        let blockSize = max(1, (probabilities.count + 4095) / 4096)
        var blockMass = [Double]()
        var blockHigh = [Double]()
        var blockLow = [Double]()
        var start = 0
        while start < probabilities.count {
            let end = min(start + blockSize, probabilities.count)
            var m = 0.0
            for i in start..<end { m += probabilities[i] }
            if m > 0 {
                blockMass.append(m)
                blockLow.append(Double(lowerIndex + start) * interval)
                blockHigh.append(Double(lowerIndex + end - 1) * interval)
            }
            start = end
        }
        func logMoment(_ s: Double, _ losses: [Double]) -> Double {
            var top = -Double.infinity
            for l in losses where s * l > top { top = s * l }
            var sum = 0.0
            for i in 0..<losses.count { sum += blockMass[i] * expDouble(s * losses[i] - top) }
            return top + logDouble(sum)
        }
        let logEta = logDouble(tailMass)
        var upper = Double.infinity
        var lower = -Double.infinity
        if !blockMass.isEmpty {
            var j = -8
            while j <= 5 {
                let s = expDouble(Double(j) * 0.6931471805599453)
                let up = (t * logMoment(s, blockHigh) - logEta) / s
                if up < upper { upper = up }
                let lo = (logEta - t * logMoment(-s, blockLow)) / s
                if lo > lower { lower = lo }
                j += 1
            }
        }
        var highK = upper.isFinite ? Int((upper / interval).rounded(.up)) + 1 : supportHigh
        var lowK = lower.isFinite ? Int((lower / interval).rounded(.down)) - 1 : supportLow
        if highK > supportHigh { highK = supportHigh }
        if lowK < supportLow { lowK = supportLow }
        if lowK > highK { lowK = highK }
        return (lowK, highK)
    }

    /// One pessimistic PLD per neighbouring direction for one round of the Poisson-subsampled
    /// Gaussian mechanism (sensitivity 1, noise multiplier z, rate q).
    ///
    /// Direction "add": P = (1-q)·N(0,z²) + q·N(1,z²), Q = N(0,z²); direction "remove": P and Q
    /// swapped. With g(x) = log(1 - q + q·e^{(2x-1)/(2z²)}) the losses are g(x) and -g(x). For
    /// q = 1 both directions are the same Gaussian PLD. `tailMass` bounds the x-tails cut off
    /// (sent to +∞ if they carry high loss, to the lowest kept bucket otherwise).
    public static func subsampledGaussian(noiseMultiplier z: Double, samplingRate q: Double, interval: Double,
                                          tailMass: Double = 1e-16) throws(PrivacyError) -> (add: PrivacyLossDistribution, remove: PrivacyLossDistribution) {
        guard z.isFinite, z > 0 else { throw .invalidNoiseMultiplier }
        guard q.isFinite, q > 0, q <= 1 else { throw .invalidSamplingRate }
        guard interval.isFinite, interval > 0, tailMass > 0, tailMass < 1e-3 else { throw .invalidDiscretization }
        // Tail cut: |x - mean| > k·z with Φ(-k) ≤ tailMass.
        var k = 1.0
        while normalSurvival(k) > tailMass { k += 0.25 }
        let xLow = -k * z
        let xHigh = 1 + k * z
        let s2 = z * z
        let log1mq = log1pDouble(-q)
        func g(_ x: Double) -> Double {
            let e = (2 * x - 1) / (2 * s2)
            if q >= 1 { return e }
            return logAdd(log1mq, logDouble(q) + e)
        }
        // x with g(x) = l: z²·log((e^l - (1-q))/q) + 1/2; -∞ if l ≤ log(1-q).
        func gInverse(_ l: Double) -> Double {
            if q >= 1 { return l * s2 + 0.5 }
            if l <= log1mq { return -Double.infinity }
            return s2 * (logSub(l, log1mq) - logDouble(q)) + 0.5
        }
        // Mass of (a, b] under N(mean, z²).
        func normalMass(_ a: Double, _ b: Double, mean: Double) -> Double {
            if !(b > a) { return 0 }
            let za = (a - mean) / z
            let zb = (b - mean) / z
            if zb <= 0 { return normalCDF(zb) - normalCDF(za) }
            if za >= 0 { return normalSurvival(za) - normalSurvival(zb) }
            return 1 - normalCDF(za) - normalSurvival(zb)
        }
        func mixtureMass(_ a: Double, _ b: Double) -> Double {
            q >= 1 ? normalMass(a, b, mean: 1) : (1 - q) * normalMass(a, b, mean: 0) + q * normalMass(a, b, mean: 1)
        }
        func clampX(_ x: Double) -> Double { x < xLow ? xLow : (x > xHigh ? xHigh : x) }

        // Direction add: L = g(x), x ~ mixture; increasing in x.
        let addLow = Int((g(xLow) / interval).rounded(.up))
        let addHigh = Int((g(xHigh) / interval).rounded(.up))
        var addProbs = [Double](repeating: 0, count: addHigh - addLow + 1)
        var previous = -Double.infinity  // bucket addLow also takes the x < xLow tail
        for kk in addLow...addHigh {
            let x = clampX(gInverse(Double(kk) * interval))
            let upperX = kk == addHigh ? xHigh : x
            addProbs[kk - addLow] = mixtureMass(previous, upperX)
            previous = upperX
        }
        let addInfinity = mixtureMass(xHigh, .infinity)

        // Direction remove: L = -g(x), x ~ N(0, z²); decreasing in x. For q < 1, L ≤ -log(1-q).
        let removeLowX = q >= 1 ? xLow : -Double.infinity
        let removeTop = q >= 1 ? -g(xLow) : -log1mq
        let removeLow = Int((-g(xHigh) / interval).rounded(.up))
        let removeHigh = Int((removeTop / interval).rounded(.up))
        var removeProbs = [Double](repeating: 0, count: removeHigh - removeLow + 1)
        // Bucket kk: L ∈ ((kk-1)Δ, kkΔ]  ⇔  x ∈ [g⁻¹(-kkΔ), g⁻¹(-(kk-1)Δ)).
        var upperX = Double.infinity  // bucket removeLow also takes the x > xHigh tail
        for kk in removeLow...removeHigh {
            var x = gInverse(-Double(kk) * interval)
            if x < removeLowX { x = removeLowX }
            if x > xHigh { x = xHigh }
            let lowerX = kk == removeHigh ? removeLowX : x
            removeProbs[kk - removeLow] = normalMass(lowerX, upperX, mean: 0)
            upperX = lowerX
        }
        let removeInfinity = q >= 1 ? normalMass(-.infinity, xLow, mean: 0) : 0
        return (PrivacyLossDistribution(interval: interval, lowerIndex: addLow, probabilities: addProbs, infinityMass: addInfinity),
                PrivacyLossDistribution(interval: interval, lowerIndex: removeLow, probabilities: removeProbs, infinityMass: removeInfinity))
    }
}

/// δ(ε) of a PLD in O(log n) per query from suffix sums.
///
/// With S[i] = Σ_{j≥i} p_j and R[i] = Σ_{j≥i} p_j e^{-(j-i)Δ} (all exponents ≤ 0, so no overflow),
/// for ε in [l_{i-1}, l_i): δ(ε) = p_∞ + S[i] - e^{ε - l_i}·R[i].
struct DeltaCurve {
    let pld: PrivacyLossDistribution
    var suffixMass: [Double]
    var suffixWeighted: [Double]

    init(_ pld: PrivacyLossDistribution) {
        self.pld = pld
        let n = pld.probabilities.count
        suffixMass = [Double](repeating: 0, count: n + 1)
        suffixWeighted = [Double](repeating: 0, count: n + 1)
        let decay = expDouble(-pld.interval)
        var i = n - 1
        while i >= 0 {
            suffixMass[i] = suffixMass[i + 1] + pld.probabilities[i]
            suffixWeighted[i] = pld.probabilities[i] + decay * suffixWeighted[i + 1]
            i -= 1
        }
    }

    func delta(epsilon: Double) -> Double {
        let n = pld.probabilities.count
        // First index i with (lowerIndex + i)·Δ > ε.
        let k = (epsilon / pld.interval).rounded(.down)
        var i = Int(k) + 1 - pld.lowerIndex
        if i < 0 { i = 0 }
        if i >= n { return pld.infinityMass }
        // Guard against k·Δ rounding: step until the loss at i is strictly above ε.
        while i < n && Double(pld.lowerIndex + i) * pld.interval <= epsilon { i += 1 }
        while i > 0 && Double(pld.lowerIndex + i - 1) * pld.interval > epsilon { i -= 1 }
        if i >= n { return pld.infinityMass }
        let li = Double(pld.lowerIndex + i) * pld.interval
        let d = suffixMass[i] - expDouble(epsilon - li) * suffixWeighted[i]
        return pld.infinityMass + (d > 0 ? d : 0)
    }

    func epsilon(delta target: Double) -> Double {
        if pld.infinityMass > target { return .infinity }
        if delta(epsilon: 0) <= target { return 0 }
        let top = Double(pld.lowerIndex + pld.probabilities.count) * pld.interval
        if top <= 0 { return 0 }
        var low = 0.0
        var high = top
        for _ in 0..<200 {
            let mid = 0.5 * (low + high)
            if delta(epsilon: mid) > target { low = mid } else { high = mid }
            if high - low <= 1e-12 * (1 + high) { break }
        }
        return high
    }
}

/// The PLD accountant: ε for T rounds of the Poisson-subsampled Gaussian, worst case over the
/// add and remove directions.
public enum PLDAccountant {
    /// The default discretisation interval: 0.02/T clamped to [1e-6, 1e-3], so the pessimistic
    /// rounding costs at most about 0.02 in ε (T·Δ); `epsilon` coarsens it further if the composed
    /// window would need more than 2^20 bins.
    public static func defaultInterval(steps: Int) -> Double {
        let dx = 0.02 / Double(steps)
        return dx > 1e-3 ? 1e-3 : (dx < 1e-6 ? 1e-6 : dx)
    }

    /// ε at δ for T rounds, via both neighbouring directions.
    ///
    /// `interval` is the loss grid Δ (pessimistic error at most T·Δ in ε); when nil, `defaultInterval` is
    /// used (0.02/T clamped to [1e-6, 1e-3]) and coarsened if the composed distribution would need more than 2^20 bins.
    public static func epsilon(noiseMultiplier: Double, samplingRate: Double, steps: Int, delta: Double,
                               interval: Double? = nil) throws(PrivacyError) -> Double {
        guard delta.isFinite, delta > 0, delta < 1 else { throw .invalidDelta }
        guard steps >= 1 else { throw .invalidSteps }
        let maxBins = 1 << 20
        var dx = interval ?? defaultInterval(steps: steps)
        for attempt in 0..<2 {
            let plds = try PrivacyLossDistribution.subsampledGaussian(noiseMultiplier: noiseMultiplier,
                                                                      samplingRate: samplingRate, interval: dx)
            let (aLow, aHigh) = plds.add.compositionWindow(steps: steps, tailMass: 1e-15)
            let (rLow, rHigh) = plds.remove.compositionWindow(steps: steps, tailMass: 1e-15)
            let widest = max(aHigh - aLow, rHigh - rLow) + 1
            if widest > maxBins {
                if interval != nil || attempt == 1 { throw .invalidDiscretization }
                dx = dx * Double(widest) / Double(maxBins) * 1.05
                continue
            }
            if samplingRate >= 1 {
                // For q = 1 the two directions have the same PLD (the Gaussian is symmetric).
                return try plds.add.selfComposed(steps, maxBins: maxBins).epsilon(delta: delta)
            }
            let (add, removeOptional) = try PrivacyLossDistribution.selfCompose(plds.add, plds.remove, steps: steps,
                                                                                tailMass: 1e-15, maxBins: maxBins)
            let a = add.epsilon(delta: delta)
            let r = removeOptional?.epsilon(delta: delta) ?? a
            return a > r ? a : r
        }
        throw .invalidDiscretization
    }

    /// δ at ε for T rounds (worst case of both directions).
    public static func delta(noiseMultiplier: Double, samplingRate: Double, steps: Int, epsilon: Double,
                             interval: Double = 1e-4) throws(PrivacyError) -> Double {
        guard steps >= 1 else { throw .invalidSteps }
        let plds = try PrivacyLossDistribution.subsampledGaussian(noiseMultiplier: noiseMultiplier,
                                                                  samplingRate: samplingRate, interval: interval)
        let (add, removeOptional) = try PrivacyLossDistribution.selfCompose(plds.add, plds.remove, steps: steps,
                                                                            tailMass: 1e-15, maxBins: 1 << 22)
        let a = add.delta(epsilon: epsilon)
        let r = removeOptional?.delta(epsilon: epsilon) ?? a
        return a > r ? a : r
    }
}
