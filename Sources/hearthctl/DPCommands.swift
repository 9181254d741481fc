import ArgumentParser
import HearthPrivacy

/// `hearthctl dp ...`: query the privacy engine.
struct DP: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dp",
        abstract: "Differential privacy: epsilon, noise calibration and the audit.",
        subcommands: [Epsilon.self, Sigma.self, Audit.self]
    )
}

extension AccountantKind: ExpressibleByArgument {
    public init?(argument: String) {
        switch argument {
        case "rdp": self = .rdp
        case "pld": self = .pld
        default: return nil
        }
    }

    public static var allValueStrings: [String] { ["rdp", "pld"] }
}

/// A privacy-engine error as the CLI reports it: its message, without the usage text.
struct DPFailure: Error, CustomStringConvertible {
    let description: String
}

/// Maps a PrivacyError to a CLI failure carrying its message.
func fail(_ error: PrivacyError) -> DPFailure {
    DPFailure(description: error.message)
}

/// A JSON number (finite) or null.
func jsonNumber(_ x: Double) -> String {
    x.isFinite ? "\(x)" : "null"
}

extension DP {
    struct Epsilon: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Epsilon spent by T rounds of the Poisson-subsampled Gaussian (add/remove one device)."
        )

        @Option(name: .long, help: "Noise multiplier z (noise std / L2 sensitivity).")
        var noiseMultiplier: Double
        @Option(name: .long, help: "Poisson sampling rate q in (0, 1].")
        var samplingRate: Double
        @Option(name: .long, help: "Number of rounds T.")
        var steps: Int
        @Option(name: .long, help: "Target delta.")
        var delta: Double
        @Option(name: .long, help: "Accountant: rdp or pld.")
        var accountant: AccountantKind = .rdp
        @Flag(name: .long, help: "Print a JSON object.")
        var json = false

        func run() throws {
            let eps: Double
            do {
                eps = try PrivacyAccounting.epsilon(noiseMultiplier: noiseMultiplier, samplingRate: samplingRate,
                                                    steps: steps, delta: delta, accountant: accountant)
            } catch {
                throw fail(error)
            }
            if json {
                print("{\"epsilon\": \(jsonNumber(eps)), \"delta\": \(jsonNumber(delta)), \"noise_multiplier\": \(jsonNumber(noiseMultiplier)), \"sampling_rate\": \(jsonNumber(samplingRate)), \"steps\": \(steps), \"accountant\": \"\(accountant.name)\"}")
            } else {
                print(eps)
            }
        }
    }

    struct Sigma: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Smallest noise multiplier meeting (epsilon, delta) for T rounds at rate q."
        )

        @Option(name: .long, help: "Target epsilon.")
        var epsilon: Double
        @Option(name: .long, help: "Target delta.")
        var delta: Double
        @Option(name: .long, help: "Poisson sampling rate q in (0, 1].")
        var samplingRate: Double
        @Option(name: .long, help: "Number of rounds T.")
        var steps: Int
        @Option(name: .long, help: "Accountant: rdp or pld.")
        var accountant: AccountantKind = .rdp
        @Flag(name: .long, help: "Print a JSON object.")
        var json = false

        func run() throws {
            let z: Double
            do {
                z = try PrivacyAccounting.noiseMultiplier(epsilon: epsilon, delta: delta, samplingRate: samplingRate,
                                                          steps: steps, accountant: accountant)
            } catch {
                throw fail(error)
            }
            if json {
                print("{\"noise_multiplier\": \(jsonNumber(z)), \"epsilon\": \(jsonNumber(epsilon)), \"delta\": \(jsonNumber(delta)), \"sampling_rate\": \(jsonNumber(samplingRate)), \"steps\": \(steps), \"accountant\": \"\(accountant.name)\"}")
            } else {
                print(z)
            }
        }
    }

    struct Audit: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Empirical audit: run the real clip + round + noise path with and without a canary device and report a Clopper-Pearson lower bound on epsilon."
        )

        @Option(name: .long, help: "Noise multiplier z.")
        var noiseMultiplier: Double = 2
        @Option(name: .long, help: "L2 clip norm C.")
        var clipNorm: Double = 1
        @Option(name: .long, help: "Number of parameters d.")
        var dimension: Int = 16
        @Option(name: .long, help: "Bits per uploaded coordinate.")
        var bits: Int = 16
        @Option(name: .long, help: "Mode: local or central.")
        var mode: String = "central"
        @Option(name: .long, help: "Background devices in every aggregate.")
        var otherDevices: Int = 2
        @Option(name: .long, help: "Trials per world (half pick the threshold, half measure).")
        var trials: Int = 2000
        @Option(name: .long, help: "Confidence of the lower bound.")
        var confidence: Double = 0.95
        @Option(name: .long, help: "Delta of the audited guarantee.")
        var delta: Double = 1e-5
        @Option(name: .long, help: "Seed for a reproducible run (default: the system's secure generator).")
        var seed: UInt64?
        @Flag(name: .long, help: "Print a JSON object.")
        var json = false

        func run() throws {
            let updateMode: UpdateMode
            switch mode {
            case "local": updateMode = .local
            case "central": updateMode = .central
            default: throw ValidationError("--mode must be local or central")
            }
            let privacy = PrivacyConfiguration(clipNorm: clipNorm, noiseMultiplier: noiseMultiplier, bitWidth: bits,
                                               mode: updateMode, unit: .device)
            let config = AuditConfiguration(privacy: privacy, dimension: dimension, otherDevices: otherDevices,
                                            trialsPerWorld: trials, confidence: confidence, delta: delta)
            let result: AuditResult
            do {
                if let seed {
                    var rng = SeededGenerator(seed: seed)
                    result = try PrivacyAudit.run(config, using: &rng)
                } else {
                    var rng = SystemRandomNumberGenerator()
                    result = try PrivacyAudit.run(config, using: &rng)
                }
            } catch {
                throw fail(error)
            }
            let passed = result.epsilonLowerBound <= result.accountantEpsilon
            if json {
                print("{\"epsilon_lower_bound\": \(jsonNumber(result.epsilonLowerBound)), \"epsilon_point_estimate\": \(jsonNumber(result.epsilonPointEstimate)), \"accountant_epsilon\": \(jsonNumber(result.accountantEpsilon)), \"false_positives\": \(result.falsePositives), \"false_negatives\": \(result.falseNegatives), \"evaluation_trials\": \(result.evaluationTrials), \"fpr_upper\": \(jsonNumber(result.falsePositiveRateUpper)), \"fnr_upper\": \(jsonNumber(result.falseNegativeRateUpper)), \"confidence\": \(jsonNumber(confidence)), \"delta\": \(jsonNumber(delta)), \"passed\": \(passed)}")
            } else {
                print("empirical epsilon lower bound (\(confidence) confidence): \(result.epsilonLowerBound)")
                print("point estimate: \(result.epsilonPointEstimate)")
                print("accountant epsilon (one round, delta \(delta)): \(result.accountantEpsilon)")
                print("false positives \(result.falsePositives)/\(result.evaluationTrials), false negatives \(result.falseNegatives)/\(result.evaluationTrials)")
                print(passed ? "PASS: lower bound below the accountant's epsilon" : "FAIL: the mechanism leaks more than the accountant claims")
            }
            if !passed { throw ExitCode(2) }
        }
    }
}
