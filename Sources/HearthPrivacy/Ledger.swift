/// One round in the device ledger: what the device did for one model version.
public struct LedgerEntry: Sendable, Hashable {
    /// The model version (round) this entry is for.
    public var round: Int
    /// The noise distribution.
    public var mechanism: NoiseMechanism
    /// Noise multiplier z (σ / sensitivity).
    public var noiseMultiplier: Double
    /// The Poisson sampling rate q of the device's own coin, or nil if the device did not flip a
    /// coin (it was told to participate): then no amplification is claimed (q = 1).
    public var samplingRate: Double?
    /// The clip norm C.
    public var clipNorm: Double
    /// Who added the noise.
    public var mode: UpdateMode
    /// The unit of privacy.
    public var unit: PrivacyUnit
    /// Whether the device actually uploaded in this round.
    public var participated: Bool

    /// An entry.
    public init(round: Int, mechanism: NoiseMechanism = .discreteGaussian, noiseMultiplier: Double,
                samplingRate: Double?, clipNorm: Double, mode: UpdateMode, unit: PrivacyUnit, participated: Bool) {
        self.round = round
        self.mechanism = mechanism
        self.noiseMultiplier = noiseMultiplier
        self.samplingRate = samplingRate
        self.clipNorm = clipNorm
        self.mode = mode
        self.unit = unit
        self.participated = participated
    }
}

/// Whether the device may spend privacy on one more round, and why not.
public enum LedgerDecision: Sendable, Hashable {
    /// The round fits in the budget; ε after it (at the ledger's δ) is given.
    case allowed(epsilonAfter: Double)
    /// The round would exceed the budget (or is otherwise refused); `reason` says why.
    case refused(reason: String, epsilonAfter: Double)

    /// True for `.allowed`.
    public var isAllowed: Bool {
        if case .allowed = self { return true }
        return false
    }
}

/// The device's privacy ledger: every round it took part in the lottery for, ε spent so far at
/// the configured δ, and the budget ε_max it enforces.
///
/// Accounting rules (see docs/privacy.md):
/// - With the device's own Poisson coin (`samplingRate` set), *every* round in which the coin
///   was flipped counts, participated or not, at rate q: that is what amplification by
///   sampling is paid with. Without a coin only rounds actually uploaded count, at q = 1.
/// - Against the released model (`.releasedModel`) all such rounds compose via RDP.
/// - Against the aggregator (`.aggregator`) the aggregator sees who uploaded, so there is no
///   amplification: only uploaded `local` rounds count, at q = 1; any uploaded `central` round
///   makes the aggregator's view unprotected (ε = ∞).
/// - The enforced figure (`epsilonSpent`) is the release view for central mode and the
///   aggregator view for local mode (which is what local mode promises).
/// The budget check is made *before* a round's coin is flipped, assuming it participates, so
/// refusals depend only on public parameters and the past, never on the data.
public struct PrivacyLedger: Sendable, Hashable {
    /// Who is looking.
    public enum Observer: Sendable, Hashable {
        /// Anyone who sees the released (aggregated, noised) model.
        case releasedModel
        /// The aggregator, which sees individual uploads.
        case aggregator
    }

    /// The δ at which ε is reported (choose well below 1/number of devices).
    public let delta: Double
    /// The budget ε_max.
    public let epsilonBudget: Double
    /// All rounds so far, oldest first.
    public private(set) var entries: [LedgerEntry]
    /// Running RDP curves of both views (updated incrementally, so a check costs one round).
    private var releaseCurve = RDPAccountant()
    private var aggregatorCurve = RDPAccountant()
    private var aggregatorUnprotected = false
    private var anyLocal = false

    /// A ledger, optionally restored from persisted entries.
    public init(delta: Double, epsilonBudget: Double, entries: [LedgerEntry] = []) throws(PrivacyError) {
        guard delta.isFinite, delta > 0, delta < 1 else { throw .invalidDelta }
        guard epsilonBudget.isFinite, epsilonBudget > 0 else { throw .invalidEpsilon }
        self.delta = delta
        self.epsilonBudget = epsilonBudget
        self.entries = []
        for e in entries {
            try PrivacyLedger.add(e, release: &releaseCurve, aggregator: &aggregatorCurve,
                                  unprotected: &aggregatorUnprotected, anyLocal: &anyLocal)
            self.entries.append(e)
        }
    }

    /// ε spent so far against `observer` at the ledger's δ (RDP accountant).
    public func epsilon(against observer: Observer) throws(PrivacyError) -> Double {
        switch observer {
        case .releasedModel:
            return try releaseCurve.epsilon(delta: delta).epsilon
        case .aggregator:
            if aggregatorUnprotected { return .infinity }
            return try aggregatorCurve.epsilon(delta: delta).epsilon
        }
    }

    /// The enforced figure: the aggregator view if any round was local, else the release view.
    public var epsilonSpent: Double {
        (try? epsilon(against: anyLocal ? .aggregator : .releasedModel)) ?? .infinity
    }

    /// Whether one more round described by `next` (assumed to participate) fits in the budget.
    public func canSpend(_ next: LedgerEntry) -> LedgerDecision {
        if next.mode == .secureAggregation {
            return .refused(reason: "secure aggregation is not implemented yet; refusing to upload", epsilonAfter: epsilonSpent)
        }
        var proposed = next
        proposed.participated = true
        var copy = self
        let after: Double
        do {
            try PrivacyLedger.add(proposed, release: &copy.releaseCurve, aggregator: &copy.aggregatorCurve,
                                  unprotected: &copy.aggregatorUnprotected, anyLocal: &copy.anyLocal)
            after = copy.epsilonSpent
        } catch {
            return .refused(reason: "invalid round parameters: " + error.message, epsilonAfter: .infinity)
        }
        if after > epsilonBudget {
            return .refused(reason: "privacy budget exhausted: the next upload would bring epsilon above the budget epsilon_max at the configured delta; the device stops training and uploading",
                            epsilonAfter: after)
        }
        return .allowed(epsilonAfter: after)
    }

    /// Records a round after checking the budget (as if it participated); throws `budgetExceeded`
    /// (and records nothing) if it would exceed it.
    public mutating func record(_ entry: LedgerEntry) throws(PrivacyError) {
        guard canSpend(entry).isAllowed else { throw .budgetExceeded }
        try PrivacyLedger.add(entry, release: &releaseCurve, aggregator: &aggregatorCurve,
                              unprotected: &aggregatorUnprotected, anyLocal: &anyLocal)
        entries.append(entry)
    }

    static func add(_ e: LedgerEntry, release: inout RDPAccountant, aggregator: inout RDPAccountant,
                    unprotected: inout Bool, anyLocal: inout Bool) throws(PrivacyError) {
        if e.mode == .local { anyLocal = true }
        // Released model: every coin flip at rate q, or every upload at q = 1 without a coin.
        if let q = e.samplingRate {
            try release.compose(noiseMultiplier: e.noiseMultiplier, samplingRate: q)
        } else if e.participated {
            try release.compose(noiseMultiplier: e.noiseMultiplier, samplingRate: 1)
        }
        // Aggregator: sees each upload; only device-side (local) noise protects it.
        if e.participated {
            if e.mode == .local {
                try aggregator.compose(noiseMultiplier: e.noiseMultiplier, samplingRate: 1)
            } else {
                unprotected = true
            }
        }
    }
}
