import ArgumentParser
import HearthCore
import HearthDatasets
import HearthProcess
import HearthSimulation
import Logging

/// `hearth-sim`: federated simulation on a dataset CSV with the real training, privacy and
/// aggregation code (in process, or against a real aggregator over HTTP), and the
/// privacy–utility report.
@main
struct HearthSim: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hearth-sim",
        abstract: "Simulate Hearth's federation on a dataset CSV and measure how much personalisation survives a privacy budget.",
        subcommands: [Run.self, Report.self],
        defaultSubcommand: Run.self
    )
}

/// Options shared by `run` and `report`.
struct SharedOptions: ParsableArguments {
    @Option(help: "Interactions CSV with user_id,item_id,timestamp (optional rating, basket, store_id).")
    var dataset: String = "../shared/datasets/movielens-small-dslabs/ratings.csv"
    @Option(help: "Items CSV (item_id plus attributes).") var items: String?
    @Option(help: "Keep rows with rating >= this as positives (omit: every row counts).") var ratingThreshold: Double?
    @Option(help: "Keep only the N most frequent items.") var maxItems: Int?
    @Option(help: "Keep only the first N users (file order).") var maxUsers: Int?
    @Option(help: "Devices: one per user, or one per store (needs store_id).") var devicesBy: String = "user"
    @Option(help: "δ (device-level).") var delta: Double = 1e-5
    @Option(help: "Published versions (rounds).") var rounds: Int = 10
    @Option(help: "Sampling rate q (each device's own coin per round).") var samplingRate: Double = 1
    @Option(help: "Sampling rate in local mode (default: --sampling-rate); local ε is accounted per upload at q = 1 either way.")
    var localSamplingRate: Double?
    @Option(help: "L2 clip norm C of one device update.") var clipNorm: Double = 0.5
    @Option(help: "Bits per uploaded coordinate.") var bitWidth: Int = 16
    @Option(help: "Embedding width.") var dim: Int = 16
    @Option(help: "Local epochs per round.") var localEpochs: Int = 1
    @Option(help: "Learning rate of the global parameters on the device.") var learningRate: Float = 0.05
    @Option(help: "Learning rate of the local embedding.") var localLearningRate: Float = 0.05
    @Option(help: "Server step along the mean participating update.") var serverLr: Double = 100
    @Option(help: "Epochs of the centralised baseline.") var centralEpochs: Int = 5
    @Option(help: "Seed.") var seed: UInt64 = 1

    func configuration(mode: SimulationMode, epsilon: Double) -> SimulationConfiguration {
        var training = TrainingConfiguration()
        training.learningRate = learningRate
        training.localLearningRate = localLearningRate
        var configuration = SimulationConfiguration(
            mode: mode, epsilon: epsilon, delta: delta, rounds: rounds, samplingRate: samplingRate, clipNorm: clipNorm,
            bitWidth: bitWidth, dimension: dim, localEpochs: localEpochs, training: training, serverLearningRate: serverLr,
            centralEpochs: centralEpochs, seed: seed)
        configuration.localSamplingRate = localSamplingRate
        return configuration
    }

    func load() throws -> SimulationData {
        guard let grouping = DeviceGrouping(rawValue: devicesBy) else {
            throw ValidationError("--devices-by must be user or store")
        }
        let (dataset, stores) = try SimulationDataset.load(
            csvAt: self.dataset, options: .init(ratingThreshold: ratingThreshold, maxItems: maxItems), itemsCSV: items)
        return try SimulationData(dataset: dataset, grouping: grouping, stores: stores, maxUsers: maxUsers)
    }

    func describe(_ data: SimulationData) -> String {
        "\(dataset): \(data.userIDs.count) users, \(data.catalog.count) items, \(data.trainingEvents) training events, \(data.devices.count) devices (by \(data.grouping.rawValue)), \(data.testUsers) test users"
    }
}

/// Parses an ε: a positive number or `inf`.
func parseEpsilon(_ text: String) throws -> Double {
    if text == "inf" || text == "∞" { return .infinity }
    guard let value = Double(text), value > 0 else { throw ValidationError("ε must be a positive number or inf, got \(text)") }
    return value
}

/// One configuration plus the baselines.
struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run one configuration and the baselines on the same split.",
        discussion: """
            With --over-http the federated configuration runs against a real hearth-aggregator process \
            on 127.0.0.1 (plain HTTP), started with the same plan (mode, C, z from the ε calibration, q, \
            K = devices, η = --server-lr / q) and this run's seeded initial model. Every virtual device \
            goes through the agent's own code: GET /v1/plan and the participation coin, GET /v1/model \
            with Ed25519 verification, the agent's envelope writer, POST /v1/updates with its credential \
            and idempotency key (libcurl). The devices run in this process, not as hearth-agent \
            processes. Mode none is refused (the aggregator only runs private plans). With q < 1 the \
            aggregator publishes a round at its deadline: give --round-deadline longer than a round's \
            training. The baselines run in process; the JSON has "transport": "http" and the \
            aggregator's own figures (aggregator_epsilon, aggregator_accepted_updates, ...).
            """)

    @OptionGroup var options: SharedOptions
    @Option(help: "none, local or central.") var mode: String = "central"
    @Option(help: "Target ε (or inf).") var epsilon: String = "8"
    @Flag(help: "Skip the baselines.") var noBaselines = false
    @Flag(help: "Print one JSON object per configuration, one per line.") var json = false
    @Flag(help: "Run the federated configuration against a real hearth-aggregator on loopback.") var overHttp = false
    @Option(help: "With --over-http: the hearth-aggregator executable (default: next to hearth-sim).") var aggregator: String?
    @Option(help: "With --over-http and q < 1: the aggregator's round deadline in seconds.") var roundDeadline: Double?
    @Option(help: "With --over-http: where the working directory is made (default /dev/shm, else $TMPDIR or /tmp).")
    var workDirectory: String?
    @Flag(help: "With --over-http: keep the working directory (aggregator log and store).") var keepWorkDirectory = false
    @Option(help: "With --over-http: devices exchanging with the aggregator at once.") var httpConcurrency: Int = 4

    func run() async throws {
        guard let mode = SimulationMode(rawValue: mode) else { throw ValidationError("--mode must be none, local or central") }
        let configuration = options.configuration(mode: mode, epsilon: try parseEpsilon(epsilon))
        let data = try options.load()
        if !json { print(options.describe(data)) }
        let runner = SimulationRunner(data: data)
        let show: (ConfigurationRecord) -> Void = { record in
            if json {
                print(record.json())
            } else {
                print(Run.line(record))
            }
        }
        guard overHttp else {
            _ = try runner.run(configuration, baselines: !noBaselines, report: show)
            return
        }
        var logger = Logger(label: "hearth.sim.http")
        logger.logLevel = .warning
        var http = OverHTTPOptions(aggregatorBinary: try aggregator ?? builtExecutable("hearth-aggregator"), logger: logger)
        if let workDirectory { http.workBase = workDirectory }
        http.keepDirectory = keepWorkDirectory
        http.roundDeadlineSeconds = roundDeadline
        http.concurrency = max(1, httpConcurrency)
        _ = try await runner.runOverHTTP(configuration, options: http, baselines: !noBaselines, report: show)
    }

    static func line(_ record: ConfigurationRecord) -> String {
        var text = "\(record.name) (\(record.mode), ε \(fixed(record.epsilon, 2)), z \(fixed(record.noiseMultiplier, 3))): HR@10 \(fixed(record.test.hitRate, 4)) NDCG@10 \(fixed(record.test.ndcg, 4)) HR@10/100 \(fixed(record.test.sampledHitRate, 4)) coverage \(fixed(record.test.coverage, 3)) | val HR@10 \(fixed(record.validation.hitRate, 4)) NDCG@10 \(fixed(record.validation.ndcg, 4)) | median update norm \(fixed(record.medianUpdateNorm, 3)), clipped \(fixed(record.clippedFraction, 2)) | \(fixed(record.seconds, 1)) s"
        if let server = record.server {
            text += " | over HTTP: aggregator ε \(fixed(server.epsilon, 4)), \(server.versions) versions, \(server.acceptedUpdates) updates accepted, \(server.rejectedUpdates) rejected, \(server.modelDownloads) model downloads, set-up \(fixed(server.setupSeconds, 1)) s"
        }
        return text
    }
}

/// The ε sweep: CSV, Markdown table and SVG chart.
struct Report: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Sweep ε in both modes; write results.csv, results.md and results.svg.")

    @OptionGroup var options: SharedOptions
    @Option(help: "Comma-separated ε values (inf = federated without noise).") var epsilons: String = "inf,16,8,4,2,1"
    @Option(help: "Comma-separated modes.") var modes: String = "central,local"
    @Option(help: "Output directory (must exist).") var output: String = "out"
    @Flag(help: "Also print one JSON object per configuration.") var json = false

    func run() throws {
        let epsilonValues = try epsilons.split(separator: ",").map { try parseEpsilon(String($0)) }
        var modeValues: [SimulationMode] = []
        for name in modes.split(separator: ",") {
            guard let mode = SimulationMode(rawValue: String(name)) else { throw ValidationError("unknown mode \(name)") }
            modeValues.append(mode)
        }
        let data = try options.load()
        let description = options.describe(data)
        print(description)
        let runner = SimulationRunner(data: data)
        let start = ContinuousClock.now
        let records = try runner.sweep(options.configuration(mode: .central, epsilon: 8), epsilons: epsilonValues, modes: modeValues) { record in
            if json { print(record.json()) } else { print(record.csvRow()) }
        }
        let elapsed = ContinuousClock.now - start
        let report = SweepReport(records: records, description: description)
        try writeFileAtomically(output + "/results.csv", bytes: Array(report.csv().utf8))
        try writeFileAtomically(output + "/results.md", bytes: Array((description + "\n\n" + report.markdown()).utf8))
        try writeFileAtomically(output + "/results.svg", bytes: Array(report.svg().utf8))
        print("wrote \(output)/results.csv, results.md, results.svg in \(elapsed.components.seconds) s")
    }
}
