import Testing
@testable import HearthPrivacy
import HearthTestSupport

/// A reference (ε) for T rounds of the Poisson-subsampled Gaussian.
struct Reference: Sendable, CustomTestStringConvertible {
    let z: Double, q: Double, steps: Int, delta: Double, epsilon: Double
    var testDescription: String { "z=\(z) q=\(q) T=\(steps) δ=\(delta)" }
}

@Suite("Accountants", .computeLane)
struct AccountantTests {
    /// RDP ε computed offline with Google's dp_accounting 0.4.x (pip `dp-accounting`):
    ///   RdpAccountant() (default orders) composed with
    ///   SelfComposedDpEvent(PoissonSampledDpEvent(q, GaussianDpEvent(z)), T); get_epsilon(δ).
    static let rdpReferences: [Reference] = [
        Reference(z: 1.1, q: 0.01, steps: 10_000, delta: 1e-5, epsilon: 5.632010670081592),
        Reference(z: 1.0, q: 0.01, steps: 1_000, delta: 1e-5, epsilon: 2.101366525420273),
        Reference(z: 4.0, q: 0.01, steps: 10_000, delta: 1e-5, epsilon: 1.0354900660362436),
        Reference(z: 0.8, q: 0.05, steps: 500, delta: 1e-6, epsilon: 14.919412001048531),
        Reference(z: 2.0, q: 1.0, steps: 10, delta: 1e-5, epsilon: 8.079406222420491),
        Reference(z: 1.5, q: 0.001, steps: 100_000, delta: 1e-8, epsilon: 1.3017334195944321),
        Reference(z: 10.0, q: 0.2, steps: 50, delta: 1e-5, epsilon: 0.5604010973270788),
        Reference(z: 0.6, q: 0.003, steps: 3_000, delta: 1e-5, epsilon: 4.953161676234091),
    ]

    @Test("RDP matches Google dp_accounting", arguments: rdpReferences)
    func rdpMatchesReference(ref: Reference) throws {
        let eps = try RDPAccountant.epsilon(noiseMultiplier: ref.z, samplingRate: ref.q, steps: ref.steps, delta: ref.delta)
        #expect(abs(eps - ref.epsilon) <= 1e-8 * ref.epsilon, "got \(eps)")
    }

    @Test("Abadi et al. 2016: q=0.01, σ=4, δ=1e-5, T=10000 gives ε ≤ 1.26 (their moments accountant)")
    func abadi() throws {
        // Abadi et al., "Deep Learning with Differential Privacy" (CCS 2016), Sec. 3.1/5: the moments
        // accountant gives ε ≈ 1.26 for these parameters; the tighter RDP conversion (Canonne et al.
        // 2020) gives 1.035 (dp_accounting, above), so ours must be below 1.26 and above 1.0.
        let eps = try RDPAccountant.epsilon(noiseMultiplier: 4, samplingRate: 0.01, steps: 10_000, delta: 1e-5)
        #expect(eps < 1.26 && eps > 1.0)
    }

    /// Exact ε of T-fold Gaussian composition (q = 1), μ = √T/z, computed offline with scipy:
    /// brentq on Φ(-ε/μ + μ/2) - exp(ε + logΦ(-ε/μ - μ/2)) = δ (Balle & Wang 2018, Thm. 8).
    static let exactReferences: [Reference] = [
        Reference(z: 1.0, q: 1, steps: 1, delta: 1e-5, epsilon: 4.377178095681223),
        Reference(z: 2.0, q: 1, steps: 10, delta: 1e-5, epsilon: 7.5112759007447805),
        Reference(z: 0.5, q: 1, steps: 1, delta: 1e-6, epsilon: 10.997151214220652),
        Reference(z: 5.0, q: 1, steps: 100, delta: 1e-5, epsilon: 9.997256146434305),
        Reference(z: 1.0, q: 1, steps: 1000, delta: 1e-5, epsilon: 633.9298513356147),
    ]

    @Test("exact Gaussian ε matches the Balle–Wang closed form", arguments: exactReferences)
    func exactGaussian(ref: Reference) throws {
        let eps = try ExactGaussian.epsilon(noiseMultiplier: ref.z, steps: ref.steps, delta: ref.delta)
        #expect(abs(eps - ref.epsilon) <= 1e-7 * ref.epsilon, "got \(eps)")
        // And the closed form evaluated at the answer returns δ.
        let mu = Double(ref.steps).squareRoot() / ref.z
        #expect(abs(ExactGaussian.delta(epsilon: eps, mu: mu) / ref.delta - 1) < 1e-6)
    }

    @Test("RDP is never below the exact value (q = 1)", arguments: exactReferences)
    func rdpAboveExact(ref: Reference) throws {
        let rdp = try RDPAccountant.epsilon(noiseMultiplier: ref.z, samplingRate: 1, steps: ref.steps, delta: ref.delta)
        #expect(rdp >= ref.epsilon)
        #expect(rdp <= ref.epsilon * 1.2 + 0.5)  // and not absurdly loose
    }

    @Test("PLD is close to the exact value, from above (q = 1)", arguments: exactReferences.filter { $0.steps <= 100 })
    func pldAboveExact(ref: Reference) throws {
        let interval = 1e-3
        let eps = try PLDAccountant.epsilon(noiseMultiplier: ref.z, samplingRate: 1, steps: ref.steps, delta: ref.delta,
                                            interval: interval)
        #expect(eps >= ref.epsilon - 1e-9)
        // Pessimistic rounding moves each step's loss up by < Δ, so ε grows by at most about T·Δ.
        #expect(eps <= ref.epsilon + Double(ref.steps) * interval + 1e-6, "got \(eps)")
    }

    /// Pessimistic PLD ε computed offline with dp_accounting:
    ///   privacy_loss_distribution.from_gaussian_mechanism(z, value_discretization_interval=Δ,
    ///   pessimistic_estimate=True, sampling_prob=q, use_connect_dots=False).self_compose(T)
    ///   .get_epsilon_for_delta(δ).
    static let pldReferences: [(Reference, Double)] = [
        (Reference(z: 1.1, q: 0.01, steps: 100, delta: 1e-5, epsilon: 0.5998018455786933), 1e-3),
        (Reference(z: 0.8, q: 0.05, steps: 50, delta: 1e-6, epsilon: 5.346367363137698), 1e-3),
        (Reference(z: 2.0, q: 1.0, steps: 10, delta: 1e-5, epsilon: 7.511775912017283), 1e-4),
    ]

    @Test("PLD (pessimistic) matches dp_accounting's pessimistic PLD", arguments: pldReferences)
    func pldMatchesReference(ref: Reference, interval: Double) throws {
        let eps = try PLDAccountant.epsilon(noiseMultiplier: ref.z, samplingRate: ref.q, steps: ref.steps,
                                            delta: ref.delta, interval: interval)
        #expect(abs(eps - ref.epsilon) <= 1e-6 * ref.epsilon + 1e-7, "got \(eps)")
    }

    @Test("PLD is tighter than RDP for the subsampled Gaussian")
    func pldBelowRdp() throws {
        for (z, q, t) in [(1.0, 0.01, 300), (0.8, 0.05, 50), (2.0, 0.1, 100)] {
            let rdp = try RDPAccountant.epsilon(noiseMultiplier: z, samplingRate: q, steps: t, delta: 1e-5)
            let pld = try PLDAccountant.epsilon(noiseMultiplier: z, samplingRate: q, steps: t, delta: 1e-5)
            #expect(pld < rdp)
            #expect(pld > 0.6 * rdp)
        }
    }

    @Test("ε is monotone: decreasing in σ, increasing in q and T", arguments: [AccountantKind.rdp, .pld])
    func monotone(kind: AccountantKind) throws {
        func eps(_ z: Double, _ q: Double, _ t: Int) throws -> Double {
            try PrivacyAccounting.epsilon(noiseMultiplier: z, samplingRate: q, steps: t, delta: 1e-5, accountant: kind)
        }
        var last = Double.infinity
        for z in [0.7, 1.0, 1.5, 3.0] {
            let e = try eps(z, 0.02, 100)
            #expect(e < last)
            last = e
        }
        last = 0
        for q in [0.001, 0.01, 0.05, 0.2] {
            let e = try eps(1.0, q, 100)
            #expect(e > last)
            last = e
        }
        last = 0
        for t in [1, 10, 50, 200] {
            let e = try eps(1.0, 0.02, t)
            #expect(e > last)
            last = e
        }
    }

    /// Calibrated z, computed offline by brentq on dp_accounting's RDP ε (default orders).
    static let calibrationReferences: [(Double, Double, Double, Int, Double)] = [
        (1.0, 1e-5, 0.01, 1000, 1.5131221626132765),
        (3.0, 1e-6, 0.05, 500, 2.05183046567915),
        (8.0, 1e-5, 1.0, 1, 0.6376701852069718),
    ]

    @Test("calibration round-trips and matches the reference noise multiplier", arguments: calibrationReferences)
    func calibration(epsilon: Double, delta: Double, q: Double, steps: Int, reference: Double) throws {
        let z = try PrivacyAccounting.noiseMultiplier(epsilon: epsilon, delta: delta, samplingRate: q, steps: steps)
        let achieved = try RDPAccountant.epsilon(noiseMultiplier: z, samplingRate: q, steps: steps, delta: delta)
        #expect(achieved <= epsilon)
        let slightlyLess = try RDPAccountant.epsilon(noiseMultiplier: z * (1 - 2e-4), samplingRate: q, steps: steps, delta: delta)
        #expect(slightlyLess > epsilon)
        #expect(abs(z / reference - 1) < 2e-4, "got \(z)")
    }

    @Test("PLD calibration needs less noise than RDP calibration")
    func calibrationPld() throws {
        let rdp = try PrivacyAccounting.noiseMultiplier(epsilon: 2, delta: 1e-5, samplingRate: 0.05, steps: 20, accountant: .rdp)
        let pld = try PrivacyAccounting.noiseMultiplier(epsilon: 2, delta: 1e-5, samplingRate: 0.05, steps: 20, accountant: .pld, tolerance: 1e-2)
        #expect(pld < rdp)
        let check = try PLDAccountant.epsilon(noiseMultiplier: pld, samplingRate: 0.05, steps: 20, delta: 1e-5)
        #expect(check <= 2)
    }

    @Test("invalid accountant arguments are errors")
    func invalid() {
        #expect(throws: PrivacyError.invalidDelta) { try PrivacyAccounting.epsilon(noiseMultiplier: 1, samplingRate: 0.1, steps: 1, delta: 0) }
        #expect(throws: PrivacyError.invalidSamplingRate) { try PrivacyAccounting.epsilon(noiseMultiplier: 1, samplingRate: 0, steps: 1, delta: 1e-5) }
        #expect(throws: PrivacyError.invalidSteps) { try PrivacyAccounting.epsilon(noiseMultiplier: 1, samplingRate: 0.1, steps: 0, delta: 1e-5) }
        #expect(throws: PrivacyError.invalidNoiseMultiplier) { try PrivacyAccounting.epsilon(noiseMultiplier: -1, samplingRate: 0.1, steps: 1, delta: 1e-5) }
        #expect(throws: PrivacyError.invalidEpsilon) { try PrivacyAccounting.noiseMultiplier(epsilon: 0, delta: 1e-5, samplingRate: 0.1, steps: 1) }
    }

    @Test("distributed discrete Gaussian: one device has no τ term")
    func distributedDiscreteGaussian() {
        let eps = distributedDiscreteGaussianEpsilon(l2Sensitivity: 2, l1Sensitivity: 10, sigma: 4, devices: 1, dimension: 100)
        #expect(abs(eps - 0.5) < 1e-12)
        // With many devices and σ ≥ 1 the τ term is negligible: ε ≈ Δ/(√n σ).
        let many = distributedDiscreteGaussianEpsilon(l2Sensitivity: 2, l1Sensitivity: 10, sigma: 2, devices: 100, dimension: 100)
        #expect(abs(many - 0.1) < 1e-6)
        // Tiny σ per device: τ dominates and the bound degrades.
        let tiny = distributedDiscreteGaussianEpsilon(l2Sensitivity: 2, l1Sensitivity: 10, sigma: 0.2, devices: 100, dimension: 100)
        #expect(tiny > 1)
    }

    @Test("FFT matches a naive DFT and inverts", arguments: [1, 2, 8, 64])
    func fft(n: Int) {
        var rng = SeededGenerator(seed: UInt64(n))
        let xr = (0..<n).map { _ in uniform(&rng) - 0.5 }
        let xi = (0..<n).map { _ in uniform(&rng) - 0.5 }
        var re = xr, im = xi
        FFT.transform(re: &re, im: &im, inverse: false)
        for k in 0..<n {
            var sr = 0.0, si = 0.0
            for j in 0..<n {
                let (c, s) = FFT.cosSin(2 * Double.pi * Double((j * k) % n) / Double(n))
                sr += xr[j] * c + xi[j] * s
                si += xi[j] * c - xr[j] * s
            }
            #expect(abs(re[k] - sr) < 1e-12 && abs(im[k] - si) < 1e-12)
        }
        FFT.transform(re: &re, im: &im, inverse: true)
        for j in 0..<n { #expect(abs(re[j] - xr[j]) < 1e-13 && abs(im[j] - xi[j]) < 1e-13) }
        // The series sine/cosine is accurate.
        let (c, s) = FFT.cosSin(1.0)
        #expect(abs(c - 0.5403023058681398) < 1e-15 && abs(s - 0.8414709848078965) < 1e-15)
    }
}
