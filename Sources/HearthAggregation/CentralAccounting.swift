import HearthPrivacy

/// The central ledger: ε of the released model after n published versions at the plan's noise
/// multiplier z and sampling rate q, by HearthPrivacy's RDP accountant (Poisson-subsampled
/// discrete Gaussian, add/remove one unit), and whether one more version fits a budget.
///
/// One published version is one step: every unit's contribution to it is at most one update of
/// sensitivity Δ (weighted by ≤ 1), noised once with σ = z·Δ. The server must admit at most one
/// update per device (unit) per publication; see docs/aggregation.md for what this assumes.
public enum CentralAccounting {
    /// ε at δ after `versions` published versions (0 for none).
    ///
    /// Throws `invalid_plan` for a plan the accountant cannot evaluate (z ≤ 0, q outside (0, 1])
    /// or `invalid_configuration` for a negative count or δ outside (0, 1).
    public static func epsilon(versions: Int, plan: FederationPlan, delta: Double) throws(AggregationError) -> Double {
        guard versions >= 0 else { throw .invalidConfiguration("versions must be >= 0, got \(versions)") }
        guard delta.isFinite, delta > 0, delta < 1 else { throw .invalidConfiguration("delta must be in (0, 1), got \(delta)") }
        try plan.validate()
        if versions == 0 { return 0 }
        do {
            return try PrivacyAccounting.epsilon(noiseMultiplier: plan.noiseMultiplier, samplingRate: plan.samplingRate,
                                                 steps: versions, delta: delta, accountant: .rdp)
        } catch {
            throw .invalidPlan("accountant refused z = \(plan.noiseMultiplier), q = \(plan.samplingRate): \(error.message)")
        }
    }

    /// Whether publishing version `versionsSoFar + 1` keeps ε at δ within `budget`. False for
    /// any invalid input (a non-finite or negative budget included): refusing is the safe answer.
    public static func canPublish(versionsSoFar: Int, plan: FederationPlan, delta: Double, budget: Double) -> Bool {
        guard budget.isFinite, budget >= 0, versionsSoFar >= 0 else { return false }
        do {
            return try epsilon(versions: versionsSoFar + 1, plan: plan, delta: delta) <= budget
        } catch {
            return false
        }
    }

    /// `canPublish` as a throwing check: `budget_exhausted` naming ε after the next version.
    public static func checkBudget(versionsSoFar: Int, plan: FederationPlan, delta: Double, budget: Double) throws(AggregationError) {
        let next = try epsilon(versions: versionsSoFar + 1, plan: plan, delta: delta)
        guard budget.isFinite, next <= budget else {
            throw .budgetExhausted("version \(versionsSoFar + 1) would bring ε to \(next) at δ = \(delta), above the budget \(budget)")
        }
    }
}
