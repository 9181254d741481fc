/// The configuration of an empirical privacy audit.
public struct AuditConfiguration: Sendable, Hashable {
    /// The privacy configuration under test (mode `local` or `central`).
    public var privacy: PrivacyConfiguration
    /// Number of global parameters.
    public var dimension: Int
    /// Number of other (background) devices in every aggregate.
    public var otherDevices: Int
    /// Trials per world (with / without the canary); half choose the threshold, half measure.
    public var trialsPerWorld: Int
    /// Confidence of the reported lower bound (e.g. 0.95).
    public var confidence: Double
    /// δ of the guarantee being audited.
    public var delta: Double

    /// A configuration.
    public init(privacy: PrivacyConfiguration, dimension: Int = 16, otherDevices: Int = 2,
                trialsPerWorld: Int = 2000, confidence: Double = 0.95, delta: Double = 1e-5) {
        self.privacy = privacy
        self.dimension = dimension
        self.otherDevices = otherDevices
        self.trialsPerWorld = trialsPerWorld
        self.confidence = confidence
        self.delta = delta
    }
}

/// What the audit found.
public struct AuditResult: Sendable, Hashable {
    /// The lower bound on ε that holds with probability `confidence` (from Clopper–Pearson upper
    /// bounds on both error rates).
    public var epsilonLowerBound: Double
    /// The same bound computed from the point estimates (no confidence correction).
    public var epsilonPointEstimate: Double
    /// The distinguisher's threshold (grid units, along the canary direction).
    public var threshold: Double
    /// Measured false-positive and false-negative counts on the evaluation half.
    public var falsePositives: Int
    public var falseNegatives: Int
    /// Evaluation trials per world.
    public var evaluationTrials: Int
    /// Clopper–Pearson upper bounds on the false-positive and false-negative rates.
    public var falsePositiveRateUpper: Double
    public var falseNegativeRateUpper: Double
    /// The accountant's ε for one round of this mechanism at the audited δ (RDP, q = 1; rigorous for
    /// the discrete Gaussian, which is ½(Δ/σ)²-zCDP).
    public var accountantEpsilon: Double
}

/// Empirical privacy audit of the real clip → round → discrete-Gaussian path.
///
/// Two worlds: the aggregate of `otherDevices` fixed background updates (world 0), and the same
/// plus a canary device whose update is a huge spike on the first coordinate, clipped to C (world 1).
/// In central mode the canary device is absent from world 0 (add/remove one device). In local
/// mode it uploads a zero update in world 0: a local-mode upload reveals participation, and
/// what local mode protects is the content of the upload (the device's data vs none).
/// Each trial runs the real `UpdatePrivatizer` on every device (in central mode the aggregator's
/// `addCentralNoise` on the sum) and keeps the first coordinate of the aggregate. The best
/// threshold distinguisher is chosen on half the trials; its false-positive rate α and
/// false-negative rate β are measured on the other half. Any (ε, δ)-DP mechanism has
/// α + e^ε β ≥ 1 - δ and β + e^ε α ≥ 1 - δ (Kairouz, Oh, Viswanath 2015), so with Clopper–Pearson
/// upper bounds ᾱ, β̄ (each at confidence 1 - (1-c)/2, jointly c):
///
///     ε ≥ max( log((1 - δ - ᾱ)/β̄), log((1 - δ - β̄)/ᾱ) )
///
/// (Jagielski, Ullman, Oprea 2020, "Auditing Differentially Private Machine Learning").
/// The lower bound must stay below the accountant's ε; if it exceeds it, the implementation
/// leaks more than claimed.
public enum PrivacyAudit {
    /// Runs the audit on the real mechanism.
    public static func run<R: RandomNumberGenerator>(_ configuration: AuditConfiguration,
                                                     using rng: inout R) throws(PrivacyError) -> AuditResult {
        try run(configuration, sabotageNoise: false, using: &rng)
    }

    /// Runs the audit, optionally with the noise switched off (test-only sabotage).
    package static func run<R: RandomNumberGenerator>(_ configuration: AuditConfiguration, sabotageNoise: Bool,
                                                      using rng: inout R) throws(PrivacyError) -> AuditResult {
        let c = configuration
        guard c.trialsPerWorld >= 20, c.confidence > 0.5, c.confidence < 1, c.dimension >= 1, c.otherDevices >= 0,
              c.privacy.mode != .secureAggregation
        else { throw .invalidAuditConfiguration }
        guard c.delta > 0, c.delta < 1 else { throw .invalidDelta }
        var privatizer = try UpdatePrivatizer(configuration: c.privacy, dimension: c.dimension)
        privatizer.sabotageDisableNoise = sabotageNoise
        // Fixed background updates (random directions, norms around C).
        var background = [[Double]]()
        for _ in 0..<c.otherDevices {
            var v = [Double](repeating: 0, count: c.dimension)
            for i in 0..<c.dimension {
                v[i] = (Double(rng.next() >> 11) * 0x1p-53 * 2 - 1) * c.privacy.clipNorm
            }
            background.append(v)
        }
        var canary = [Double](repeating: 0, count: c.dimension)
        canary[0] = 1e6 * c.privacy.clipNorm  // clipped to exactly C on coordinate 0

        func observe(withCanary: Bool) throws(PrivacyError) -> Double {
            var sum = [Int64](repeating: 0, count: c.dimension)
            var devices = background
            if withCanary {
                devices.append(canary)
            } else if c.privacy.mode == .local {
                // A local-mode upload reveals that the device took part (its noise travels with it),
                // so the neighbour of "canary device with its data" is "canary device with no data".
                devices.append([Double](repeating: 0, count: c.dimension))
            }
            for update in devices {
                let p = try privatizer.privatize(update: update, using: &rng)
                for i in 0..<c.dimension { sum[i] += p.values[i] }
            }
            if c.privacy.mode == .central {
                sum = privatizer.addCentralNoise(to: sum, using: &rng)
            }
            return Double(sum[0])
        }

        let half = c.trialsPerWorld / 2
        let evalCount = c.trialsPerWorld - half
        var train0 = [Double](), train1 = [Double]()
        var eval0 = [Double](), eval1 = [Double]()
        for t in 0..<c.trialsPerWorld {
            let x0 = try observe(withCanary: false)
            let x1 = try observe(withCanary: true)
            if t < half { train0.append(x0); train1.append(x1) } else { eval0.append(x0); eval1.append(x1) }
        }

        // Choose the threshold τ (predict "canary" iff x ≥ τ) maximising the point-estimate bound
        // on the training half, with add-one smoothing so empty tails do not win by accident.
        var candidates = train0 + train1
        candidates.sort()
        var bestTau = candidates.first ?? 0
        var bestScore = -Double.infinity
        let n = Double(half)
        train0.sort()
        train1.sort()
        var i0 = 0, i1 = 0
        var previous = -Double.infinity
        for tau in candidates where tau != previous {
            previous = tau
            while i0 < train0.count && train0[i0] < tau { i0 += 1 }
            while i1 < train1.count && train1[i1] < tau { i1 += 1 }
            let fp = Double(train0.count - i0)  // world 0 at or above τ
            let fn = Double(i1)                 // world 1 below τ
            let a = (fp + 1) / (n + 2)
            let b = (fn + 1) / (n + 2)
            let score = PrivacyAudit.epsilonBound(fpr: a, fnr: b, delta: c.delta)
            if score > bestScore {
                bestScore = score
                bestTau = tau
            }
        }
        var fp = 0, fn = 0
        for x in eval0 where x >= bestTau { fp += 1 }
        for x in eval1 where x < bestTau { fn += 1 }
        let eachConfidence = 1 - (1 - c.confidence) / 2
        let fprUpper = BinomialConfidence.clopperPearsonUpper(successes: fp, trials: evalCount, confidence: eachConfidence)
        let fnrUpper = BinomialConfidence.clopperPearsonUpper(successes: fn, trials: evalCount, confidence: eachConfidence)
        let lower = PrivacyAudit.epsilonBound(fpr: fprUpper, fnr: fnrUpper, delta: c.delta)
        let point = PrivacyAudit.epsilonBound(fpr: Double(fp) / Double(evalCount), fnr: Double(fn) / Double(evalCount),
                                              delta: c.delta)
        let claimed = try RDPAccountant.epsilon(noiseMultiplier: c.privacy.noiseMultiplier, samplingRate: 1, steps: 1,
                                                delta: c.delta)
        return AuditResult(epsilonLowerBound: lower > 0 ? lower : 0, epsilonPointEstimate: point > 0 ? point : 0,
                           threshold: bestTau, falsePositives: fp, falseNegatives: fn, evaluationTrials: evalCount,
                           falsePositiveRateUpper: fprUpper, falseNegativeRateUpper: fnrUpper,
                           accountantEpsilon: claimed)
    }

    /// max(log((1-δ-α)/β), log((1-δ-β)/α)), with 0 rates giving +∞ and negative logs clamped to 0.
    static func epsilonBound(fpr a: Double, fnr b: Double, delta: Double) -> Double {
        var best = 0.0
        if 1 - delta - a > 0 {
            let e = b > 0 ? logDouble((1 - delta - a) / b) : .infinity
            if e > best { best = e }
        }
        if 1 - delta - b > 0 {
            let e = a > 0 ? logDouble((1 - delta - b) / a) : .infinity
            if e > best { best = e }
        }
        return best
    }
}
