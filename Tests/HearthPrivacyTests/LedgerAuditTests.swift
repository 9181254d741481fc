import Testing
@testable import HearthPrivacy
import HearthTestSupport

@Suite("Device ledger", .computeLane)
struct LedgerTests {
    func entry(_ round: Int, q: Double? = 0.05, mode: UpdateMode = .central, participated: Bool = true) -> LedgerEntry {
        LedgerEntry(round: round, noiseMultiplier: 2.0, samplingRate: q, clipNorm: 1, mode: mode, unit: .device,
                    participated: participated)
    }

    @Test("the ledger refuses past the budget and says why")
    func refusesPastBudget() throws {
        var ledger = try PrivacyLedger(delta: 1e-6, epsilonBudget: 1.0)
        var recorded = 0
        while true {
            let next = entry(recorded)
            let decision = ledger.canSpend(next)
            if !decision.isAllowed {
                if case .refused(let reason, let after) = decision {
                    #expect(reason.contains("budget"))
                    #expect(after > 1.0)
                }
                #expect(throws: PrivacyError.budgetExceeded) { try ledger.record(next) }
                break
            }
            try ledger.record(next)
            recorded += 1
            #expect(ledger.epsilonSpent <= 1.0)
            if recorded > 10_000 { Issue.record("never refused"); break }
        }
        #expect(recorded > 1)
        #expect(ledger.entries.count == recorded)
        // The same figure from the accountant directly.
        let direct = try RDPAccountant.epsilon(noiseMultiplier: 2, samplingRate: 0.05, steps: recorded, delta: 1e-6)
        #expect(abs(ledger.epsilonSpent - direct) < 1e-9)
    }

    @Test("with the device's coin every round counts; without it only uploads count, at q = 1")
    func whatCounts() throws {
        var withCoin = try PrivacyLedger(delta: 1e-6, epsilonBudget: 100)
        try withCoin.record(entry(0, participated: false))
        try withCoin.record(entry(1, participated: true))
        let two = try RDPAccountant.epsilon(noiseMultiplier: 2, samplingRate: 0.05, steps: 2, delta: 1e-6)
        #expect(abs(withCoin.epsilonSpent - two) < 1e-12)
        var noCoin = try PrivacyLedger(delta: 1e-6, epsilonBudget: 100)
        try noCoin.record(entry(0, q: nil, participated: false))
        #expect(noCoin.epsilonSpent == 0)
        try noCoin.record(entry(1, q: nil, participated: true))
        let one = try RDPAccountant.epsilon(noiseMultiplier: 2, samplingRate: 1, steps: 1, delta: 1e-6)
        #expect(abs(noCoin.epsilonSpent - one) < 1e-12)
    }

    @Test("views: central mode does not protect against the aggregator; local mode does, without amplification")
    func observers() throws {
        var central = try PrivacyLedger(delta: 1e-6, epsilonBudget: 100)
        try central.record(entry(0, mode: .central))
        #expect(try central.epsilon(against: .aggregator) == .infinity)
        #expect(try central.epsilon(against: .releasedModel) < 1)
        var local = try PrivacyLedger(delta: 1e-6, epsilonBudget: 100)
        try local.record(entry(0, mode: .local))
        let aggregatorView = try local.epsilon(against: .aggregator)
        #expect(aggregatorView > (try local.epsilon(against: .releasedModel)))
        #expect(local.epsilonSpent == aggregatorView)
        #expect(!local.canSpend(entry(1, mode: .secureAggregation)).isAllowed)
    }
}

@Suite("Empirical audit", .computeLane)
struct AuditTests {
    @Test("Clopper–Pearson bounds and the incomplete beta match scipy")
    func statistics() {
        // scipy.special.betainc(2.5, 3.5, 0.3), betainc(10, 990, 0.01), betainc(0.5, 0.5, 0.9)
        #expect(abs(BinomialConfidence.regularizedIncompleteBeta(0.3, a: 2.5, b: 3.5) - 0.29675298929566646) < 1e-12)
        #expect(abs(BinomialConfidence.regularizedIncompleteBeta(0.01, a: 10, b: 990) - 0.5414420057138459) < 1e-10)
        #expect(abs(BinomialConfidence.regularizedIncompleteBeta(0.9, a: 0.5, b: 0.5) - 0.7951672353008665) < 1e-12)
        // scipy.stats.beta.ppf(0.975, 1, 1000), ppf(0.975, 6, 995), ppf(0.025, 5, 996)
        #expect(abs(BinomialConfidence.clopperPearsonUpper(successes: 0, trials: 1000, confidence: 0.975) - 0.003682083896865671) < 1e-12)
        #expect(abs(BinomialConfidence.clopperPearsonUpper(successes: 5, trials: 1000, confidence: 0.975) - 0.011629470559812147) < 1e-12)
        #expect(abs(BinomialConfidence.clopperPearsonLower(successes: 5, trials: 1000, confidence: 0.975) - 0.00162541951756276) < 1e-12)
        #expect(BinomialConfidence.clopperPearsonUpper(successes: 10, trials: 10, confidence: 0.95) == 1)
    }

    static let modes: [UpdateMode] = [.central, .local]

    @Test("the audit lower bound stays below the accountant's ε for the real mechanism", arguments: modes)
    func realMechanism(mode: UpdateMode) throws {
        let privacy = PrivacyConfiguration(clipNorm: 1, noiseMultiplier: 1, bitWidth: 16, mode: mode)
        let config = AuditConfiguration(privacy: privacy, dimension: 8, otherDevices: 1, trialsPerWorld: 2000)
        var rng = SeededGenerator(seed: 2024)
        let result = try PrivacyAudit.run(config, using: &rng)
        #expect(result.epsilonLowerBound < result.accountantEpsilon)
        #expect(result.epsilonLowerBound > 0.5)  // the distinguisher does find the canary's signal
    }

    @Test("with the noise sabotaged the audit exceeds the claimed ε (the audit can fail)", arguments: modes)
    func sabotage(mode: UpdateMode) throws {
        let privacy = PrivacyConfiguration(clipNorm: 1, noiseMultiplier: 1, bitWidth: 16, mode: mode)
        let config = AuditConfiguration(privacy: privacy, dimension: 8, otherDevices: 1, trialsPerWorld: 2000)
        var rng = SeededGenerator(seed: 2024)
        let result = try PrivacyAudit.run(config, sabotageNoise: true, using: &rng)
        #expect(result.falsePositives == 0 && result.falseNegatives == 0)
        #expect(result.epsilonLowerBound > result.accountantEpsilon)
    }
}
