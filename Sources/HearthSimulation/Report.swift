import HearthCore

/// What the aggregator reported after an over-HTTP run (`GET /v1/privacy`, `GET /metrics`).
public struct ServerFigures: Sendable, Equatable {
    /// ε its central ledger spent (`epsilon_spent`).
    public var epsilon: Double
    /// Versions it published with device data (`data_versions`).
    public var versions: Int
    /// `hearth_updates_accepted_total`.
    public var acceptedUpdates: Int
    /// All `hearth_updates_rejected_total{reason}`.
    public var rejectedUpdates: Int
    /// Models the devices downloaded and verified.
    public var modelDownloads: Int
    /// Seconds to enrol the fleet, create version 1 and start the server (included in `seconds`).
    public var setupSeconds: Double

    public init(epsilon: Double, versions: Int, acceptedUpdates: Int, rejectedUpdates: Int, modelDownloads: Int, setupSeconds: Double) {
        self.epsilon = epsilon
        self.versions = versions
        self.acceptedUpdates = acceptedUpdates
        self.rejectedUpdates = rejectedUpdates
        self.modelDownloads = modelDownloads
        self.setupSeconds = setupSeconds
    }
}

/// One configuration's figures: what `--json` prints and what the report tabulates.
public struct ConfigurationRecord: Sendable, Equatable {
    /// What was run: `federated`, or a baseline (`popularity`, `centralised`, `federated-no-noise`).
    public var name: String
    /// `none`, `local` or `central` (baselines without federation: `none`).
    public var mode: String
    /// Target ε (∞: no noise).
    public var epsilon: Double
    /// Target δ.
    public var delta: Double
    /// z used (0 without noise).
    public var noiseMultiplier: Double
    /// ε the accountant gives for the run (∞ without noise).
    public var achievedEpsilon: Double
    /// q.
    public var samplingRate: Double
    /// C.
    public var clipNorm: Double
    /// Published versions (federated), epochs (centralised) or 0 (popularity).
    public var rounds: Int
    /// Virtual devices.
    public var devices: Int
    /// Device training rounds run.
    public var deviceRounds: Int
    /// Wall-clock seconds of training and evaluation.
    public var seconds: Double
    /// Metrics on the test targets.
    public var test: RankingResult
    /// Metrics on the validation targets (what tuning looks at).
    public var validation: RankingResult
    /// Median L2 norm of the device updates before clipping (0 for baselines): what C is chosen against.
    public var medianUpdateNorm: Double = 0
    /// Fraction of device updates whose norm exceeded C (0 for baselines and mode none).
    public var clippedFraction: Double = 0
    /// `in-process`, or `http` for a federation run against a real aggregator (`--over-http`).
    public var transport = "in-process"
    /// Over HTTP: what the aggregator itself reported (nil in process).
    public var server: ServerFigures?

    public init(name: String, mode: String, epsilon: Double, delta: Double, noiseMultiplier: Double, achievedEpsilon: Double,
                samplingRate: Double, clipNorm: Double, rounds: Int, devices: Int, deviceRounds: Int, seconds: Double,
                test: RankingResult, validation: RankingResult) {
        self.name = name
        self.mode = mode
        self.epsilon = epsilon
        self.delta = delta
        self.noiseMultiplier = noiseMultiplier
        self.achievedEpsilon = achievedEpsilon
        self.samplingRate = samplingRate
        self.clipNorm = clipNorm
        self.rounds = rounds
        self.devices = devices
        self.deviceRounds = deviceRounds
        self.seconds = seconds
        self.test = test
        self.validation = validation
    }

    /// Device rounds per second (0 when none were run).
    public var deviceRoundsPerSecond: Double { seconds > 0 ? Double(deviceRounds) / seconds : 0 }

    /// One JSON object on one line. ∞ is written as `null` (JSON has no infinity).
    public func json() -> String {
        let fields: [(String, String)] = [
            ("name", quoted(name)), ("mode", quoted(mode)),
            ("epsilon", jsonNumber(epsilon)), ("delta", jsonNumber(delta)),
            ("noise_multiplier", jsonNumber(noiseMultiplier)), ("epsilon_achieved", jsonNumber(achievedEpsilon)),
            ("sampling_rate", jsonNumber(samplingRate)), ("clip_norm", jsonNumber(clipNorm)),
            ("hr10", jsonNumber(test.hitRate)), ("ndcg10", jsonNumber(test.ndcg)),
            ("hr10_sampled100", jsonNumber(test.sampledHitRate)), ("ndcg10_sampled100", jsonNumber(test.sampledNDCG)),
            ("coverage10", jsonNumber(test.coverage)), ("test_users", String(test.users)),
            ("validation_hr10", jsonNumber(validation.hitRate)), ("validation_ndcg10", jsonNumber(validation.ndcg)),
            ("rounds", String(rounds)), ("devices", String(devices)), ("device_rounds", String(deviceRounds)),
            ("seconds", jsonNumber(seconds)), ("device_rounds_per_second", jsonNumber(deviceRoundsPerSecond)),
            ("median_update_norm", jsonNumber(medianUpdateNorm)), ("clipped_fraction", jsonNumber(clippedFraction)),
            ("transport", quoted(transport)),
        ] + (server.map { server in
            [
                ("aggregator_epsilon", jsonNumber(server.epsilon)), ("aggregator_versions", String(server.versions)),
                ("aggregator_accepted_updates", String(server.acceptedUpdates)),
                ("aggregator_rejected_updates", String(server.rejectedUpdates)),
                ("model_downloads", String(server.modelDownloads)), ("setup_seconds", jsonNumber(server.setupSeconds)),
            ]
        } ?? [])
        return "{" + fields.map { "\"\($0.0)\": \($0.1)" }.joined(separator: ", ") + "}"
    }

    /// The CSV header matching `csvRow`.
    public static let csvHeader = "name,mode,epsilon,delta,noise_multiplier,epsilon_achieved,sampling_rate,clip_norm,rounds,devices,device_rounds,seconds,hr10,ndcg10,hr10_sampled100,ndcg10_sampled100,coverage10,validation_hr10,validation_ndcg10"

    /// One CSV row (∞ written as `inf`).
    public func csvRow() -> String {
        [name, mode, plain(epsilon), plain(delta), plain(noiseMultiplier), plain(achievedEpsilon), plain(samplingRate),
         plain(clipNorm), String(rounds), String(devices), String(deviceRounds), fixed(seconds, 2),
         fixed(test.hitRate, 4), fixed(test.ndcg, 4), fixed(test.sampledHitRate, 4), fixed(test.sampledNDCG, 4),
         fixed(test.coverage, 4), fixed(validation.hitRate, 4), fixed(validation.ndcg, 4)].joined(separator: ",")
    }
}

private func quoted(_ s: String) -> String {
    var out = "\""
    for scalar in s.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        default: out.unicodeScalars.append(scalar)
        }
    }
    return out + "\""
}

/// A double for JSON: `null` for ∞/NaN, Swift's shortest round-trip form otherwise.
func jsonNumber(_ x: Double) -> String { x.isFinite ? String(describing: x) : "null" }

/// A double for CSV: `inf` for ∞, shortest round-trip otherwise.
func plain(_ x: Double) -> String { x.isFinite ? String(describing: x) : (x > 0 ? "inf" : (x < 0 ? "-inf" : "nan")) }

/// `x` with exactly `digits` decimals (half away from zero), without Foundation.
public func fixed(_ x: Double, _ digits: Int) -> String {
    guard x.isFinite else { return x.isNaN ? "nan" : (x > 0 ? "∞" : "-∞") }
    var factor: Double = 1
    for _ in 0 ..< digits { factor *= 10 }
    let scaled = (abs(x) * factor).rounded(.toNearestOrAwayFromZero)
    guard scaled < 9e15 else { return String(describing: x) }
    let n = Int64(scaled)
    let whole = n / Int64(factor)
    var fraction = String(n % Int64(factor))
    while fraction.count < digits { fraction = "0" + fraction }
    let sign = x < 0 && n != 0 ? "-" : ""
    return digits > 0 ? "\(sign)\(whole).\(fraction)" : "\(sign)\(whole)"
}

/// The privacy–utility report: a table, a CSV and an SVG chart of HR@10 against ε.
public struct SweepReport: Sendable {
    /// Every configuration of the sweep, baselines first.
    public var records: [ConfigurationRecord]
    /// Free text describing the run (dataset, split, options), printed above the table.
    public var description: String

    public init(records: [ConfigurationRecord], description: String) {
        self.records = records
        self.description = description
    }

    /// The CSV file.
    public func csv() -> String {
        ([ConfigurationRecord.csvHeader] + records.map { $0.csvRow() }).joined(separator: "\n") + "\n"
    }

    /// The Markdown table.
    public func markdown() -> String {
        var lines = [
            "| configuration | mode | ε (target) | ε (accountant) | z | HR@10 | NDCG@10 | HR@10 (100 sampled) | NDCG@10 (100 sampled) | coverage@10 | val HR@10 | device-rounds/s | s |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in records {
            let isFederated = r.name.hasPrefix("federated")
            lines.append("| \(r.name) | \(r.mode) | \(isFederated ? fixed(r.epsilon, 0) : "—") | \(isFederated ? fixed(r.achievedEpsilon, 2) : "—") | \(isFederated ? fixed(r.noiseMultiplier, 3) : "—") | \(fixed(r.test.hitRate, 4)) | \(fixed(r.test.ndcg, 4)) | \(fixed(r.test.sampledHitRate, 4)) | \(fixed(r.test.sampledNDCG, 4)) | \(fixed(r.test.coverage, 3)) | \(fixed(r.validation.hitRate, 4)) | \(r.deviceRounds > 0 ? fixed(r.deviceRoundsPerSecond, 1) : "—") | \(fixed(r.seconds, 1)) |")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// An SVG line chart of test HR@10 against ε (log-spaced, ∞ at the right), one line per mode,
    /// the baselines as horizontal dashed lines. Hand-written SVG 1.1, no dependencies.
    public func svg(width: Int = 760, height: Int = 420) -> String {
        let federated = records.filter { $0.name == "federated" && $0.epsilon.isFinite }
        let epsilons = Array(Set(federated.map { $0.epsilon })).sorted()
        // x positions: finite ε in order, then ∞.
        let slots = epsilons.count + 1
        let left = 70.0, right = Double(width) - 230, top = 40.0, bottom = Double(height) - 60
        func x(_ epsilon: Double) -> Double {
            let index = epsilon.isInfinite ? epsilons.count : (epsilons.firstIndex(of: epsilon) ?? 0)
            return left + (right - left) * Double(index) / Double(max(1, slots - 1))
        }
        let allValues = records.map { $0.test.hitRate }
        let maxValue = max(0.01, (allValues.max() ?? 0.01) * 1.1)
        func y(_ v: Double) -> Double { bottom - (bottom - top) * v / maxValue }
        var out = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(width)\" height=\"\(height)\" viewBox=\"0 0 \(width) \(height)\" font-family=\"sans-serif\" font-size=\"12\">\n"
        out += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        out += "<text x=\"\(fixed(Double(width) / 2, 1))\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">HR@10 (full catalogue) against ε</text>\n"
        // Axes and grid.
        out += "<line x1=\"\(left)\" y1=\"\(bottom)\" x2=\"\(right)\" y2=\"\(bottom)\" stroke=\"black\"/>\n"
        out += "<line x1=\"\(left)\" y1=\"\(top)\" x2=\"\(left)\" y2=\"\(bottom)\" stroke=\"black\"/>\n"
        for tick in 0 ... 5 {
            let v = maxValue * Double(tick) / 5
            let ty = fixed(y(v), 1)
            out += "<line x1=\"\(left)\" y1=\"\(ty)\" x2=\"\(right)\" y2=\"\(ty)\" stroke=\"#e0e0e0\"/>\n"
            out += "<text x=\"\(fixed(left - 6, 1))\" y=\"\(ty)\" text-anchor=\"end\" dominant-baseline=\"middle\">\(fixed(v, 3))</text>\n"
        }
        for epsilon in epsilons + [Double.infinity] {
            let tx = fixed(x(epsilon), 1)
            out += "<line x1=\"\(tx)\" y1=\"\(bottom)\" x2=\"\(tx)\" y2=\"\(fixed(bottom + 5, 1))\" stroke=\"black\"/>\n"
            out += "<text x=\"\(tx)\" y=\"\(fixed(bottom + 20, 1))\" text-anchor=\"middle\">\(epsilon.isInfinite ? "∞" : fixed(epsilon, epsilon < 1 ? 2 : 0))</text>\n"
        }
        out += "<text x=\"\(fixed((left + right) / 2, 1))\" y=\"\(fixed(bottom + 42, 1))\" text-anchor=\"middle\">ε (device-level, δ = \(plain(records.first?.delta ?? 0)))</text>\n"
        out += "<text x=\"18\" y=\"\(fixed((top + bottom) / 2, 1))\" text-anchor=\"middle\" transform=\"rotate(-90 18 \(fixed((top + bottom) / 2, 1)))\">HR@10</text>\n"
        // Baselines.
        let baselines: [(String, String)] = [("centralised", "#2ca02c"), ("federated-no-noise", "#7f7f7f"), ("popularity", "#d62728")]
        var legend: [(String, String, Bool)] = []
        for (name, colour) in baselines {
            guard let r = records.first(where: { $0.name == name }) else { continue }
            let by = fixed(y(r.test.hitRate), 1)
            out += "<line x1=\"\(left)\" y1=\"\(by)\" x2=\"\(right)\" y2=\"\(by)\" stroke=\"\(colour)\" stroke-width=\"1.5\" stroke-dasharray=\"6 4\"/>\n"
            legend.append(("\(name) \(fixed(r.test.hitRate, 4))", colour, true))
        }
        // Federated lines, ∞ = federated without noise.
        let noNoise = records.first(where: { $0.name == "federated-no-noise" })
        for (mode, colour) in [("central", "#1f77b4"), ("local", "#ff7f0e")] {
            var points = federated.filter { $0.mode == mode }.sorted { $0.epsilon < $1.epsilon }.map { (x($0.epsilon), y($0.test.hitRate)) }
            guard !points.isEmpty else { continue }
            if let noNoise { points.append((x(.infinity), y(noNoise.test.hitRate))) }
            out += "<polyline fill=\"none\" stroke=\"\(colour)\" stroke-width=\"2\" points=\"\(points.map { "\(fixed($0.0, 1)),\(fixed($0.1, 1))" }.joined(separator: " "))\"/>\n"
            for p in points { out += "<circle cx=\"\(fixed(p.0, 1))\" cy=\"\(fixed(p.1, 1))\" r=\"3.5\" fill=\"\(colour)\"/>\n" }
            legend.insert(("\(mode) DP", colour, false), at: 0)
        }
        for (i, entry) in legend.enumerated() {
            let ly = top + 10 + Double(i) * 20
            let lx = right + 15
            out += "<line x1=\"\(fixed(lx, 1))\" y1=\"\(fixed(ly, 1))\" x2=\"\(fixed(lx + 24, 1))\" y2=\"\(fixed(ly, 1))\" stroke=\"\(entry.1)\" stroke-width=\"2\"\(entry.2 ? " stroke-dasharray=\"6 4\"" : "")/>\n"
            out += "<text x=\"\(fixed(lx + 30, 1))\" y=\"\(fixed(ly, 1))\" dominant-baseline=\"middle\">\(entry.0)</text>\n"
        }
        out += "</svg>\n"
        return out
    }
}
