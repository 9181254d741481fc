@testable import HearthPrivacy
import Testing
@testable import HearthAggregation
import HearthTestSupport

/// The central ledger.
@Suite(.computeLane) struct CentralAccountingTests {
    @Test("ε after n versions equals PrivacyAccounting's RDP ε for the same z, q, steps", arguments: [
        (1.0, 0.01, 1000), (1.1, 0.01, 100), (4.0, 0.05, 10), (0.8, 1.0, 3),
    ])
    func matchesPrivacyAccounting(z: Double, q: Double, versions: Int) throws {
        var plan = Fixture.plan(noiseMultiplier: z)
        plan.samplingRate = q
        let epsilon = try CentralAccounting.epsilon(versions: versions, plan: plan, delta: 1e-5)
        let reference = try PrivacyAccounting.epsilon(noiseMultiplier: z, samplingRate: q, steps: versions, delta: 1e-5)
        #expect(epsilon == reference)
        #expect(epsilon > 0)
    }

    @Test("the dp_accounting reference value: z = 1, q = 0.01, 1000 versions, δ = 1e-5")
    func referenceValue() throws {
        var plan = Fixture.plan(noiseMultiplier: 1)
        plan.samplingRate = 0.01
        let epsilon = try CentralAccounting.epsilon(versions: 1000, plan: plan, delta: 1e-5)
        #expect(abs(epsilon - 2.101366525420273) < 1e-9)
    }

    @Test("no versions, no ε; ε grows with versions")
    func monotone() throws {
        let plan = Fixture.plan()
        #expect(try CentralAccounting.epsilon(versions: 0, plan: plan, delta: 1e-5) == 0)
        let e10 = try CentralAccounting.epsilon(versions: 10, plan: plan, delta: 1e-5)
        let e20 = try CentralAccounting.epsilon(versions: 20, plan: plan, delta: 1e-5)
        #expect(e10 < e20)
    }

    @Test("canPublish allows up to the budget and refuses past it")
    func budget() throws {
        let plan = Fixture.plan()
        let budget = try CentralAccounting.epsilon(versions: 10, plan: plan, delta: 1e-5)
        #expect(CentralAccounting.canPublish(versionsSoFar: 9, plan: plan, delta: 1e-5, budget: budget))
        #expect(!CentralAccounting.canPublish(versionsSoFar: 10, plan: plan, delta: 1e-5, budget: budget))
        #expect(!CentralAccounting.canPublish(versionsSoFar: 50, plan: plan, delta: 1e-5, budget: budget))
        #expect(!CentralAccounting.canPublish(versionsSoFar: 0, plan: plan, delta: 1e-5, budget: .nan))
        #expect(!CentralAccounting.canPublish(versionsSoFar: 0, plan: plan, delta: 2, budget: 100))
        #expect(Fixture.reason { () throws(AggregationError) in
            try CentralAccounting.checkBudget(versionsSoFar: 10, plan: plan, delta: 1e-5, budget: budget)
        } == "budget_exhausted")
        #expect(Fixture.reason { () throws(AggregationError) in
            try CentralAccounting.checkBudget(versionsSoFar: 9, plan: plan, delta: 1e-5, budget: budget)
        } == nil)
    }

    @Test("invalid inputs are reported, not answered", arguments: [(-1, 1e-5, 1.0), (5, 0.0, 1.0), (5, 1e-5, 0.0)])
    func invalid(versions: Int, delta: Double, z: Double) {
        let plan = Fixture.plan(noiseMultiplier: z)
        let reason = Fixture.reason { () throws(AggregationError) in
            _ = try CentralAccounting.epsilon(versions: versions, plan: plan, delta: delta)
        }
        #expect(reason == "invalid_configuration" || reason == "invalid_plan")
        #expect(reason != nil)
    }
}
