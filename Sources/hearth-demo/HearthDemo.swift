#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import HearthCore
import HearthDatasets
import HearthDemoRunner

/// `hearth-demo`: the federation end to end on loopback (default), or the model trained
/// centrally on one machine (`central`).
@main
struct HearthDemo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hearth-demo",
        abstract: "Hearth end to end: an aggregator and kiosks on loopback, or central training.",
        subcommands: [Federated.self, Central.self],
        defaultSubcommand: Federated.self
    )
}

/// `hearth-demo federated`: one aggregator and a few agents (kiosks) as real processes.
struct Federated: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run hearth-aggregator and a few hearth-agents on loopback, fed from a dataset; print HR@10 per version and the epsilon spent.")

    @Option(help: "Interactions CSV (default: the built-in example shop).") var dataset: String?
    @Option(help: "Kiosks (agents).") var agents: Int = 16
    @Option(help: "Rounds (published versions).") var rounds: Int = 8
    @Option(help: "Embedding width.") var dim: Int = 8
    @Option(name: .customLong("max-items"), help: "Keep the most frequent items only.") var maxItems: Int = 100
    @Option(name: .customLong("max-users"), help: "Keep the first shoppers only.") var maxUsers: Int = 400
    @Option(help: "Privacy mode: central (the aggregator adds the noise) or local (each kiosk does).") var mode: String = "central"
    @Option(help: "Noise multiplier z.") var noise: Double = 0.5
    @Option(help: "Clip norm C of each kiosk's update.") var clip: Double = 1.0
    @Option(help: "Local training epochs per round.") var epochs: Int = 4
    @Option(name: .customLong("server-lr"), help: "FedAvg server learning rate (default: the number of kiosks).") var serverLR: Double = 0
    @Flag(help: "Keep the working directory (logs, databases).") var keep = false

    func validate() throws {
        guard agents >= 1, agents <= 32, rounds >= 1, dim > 0 else { throw ValidationError("--agents 1...32, --rounds and --dim positive") }
        guard ["central", "local"].contains(mode) else { throw ValidationError("--mode is central or local") }
    }

    func run() async throws {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        let exe = n > 0 ? String(decoding: buffer[0 ..< n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : ""
        var options = FederatedDemo.Options(binaryDirectory: String(exe[..<(exe.lastIndex(of: "/") ?? exe.startIndex)]))
        options.datasetPath = dataset
        options.agents = agents
        options.rounds = rounds
        options.dimension = dim
        options.maxItems = maxItems
        options.maxUsers = maxUsers
        options.mode = mode
        options.noiseMultiplier = noise
        options.clipNorm = clip
        options.epochs = epochs
        options.serverLearningRate = serverLR
        options.keepDirectory = keep
        try await FederatedDemo(options: options, print: { Swift.print($0) }).run()
    }
}

/// `hearth-demo central`: trains the recommender on one machine (no federation, no privacy),
/// measures it on held-out events and prints one shopper's recommendations.
struct Central: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train on the built-in example shop (or a dataset CSV) centrally and print recommendations."
    )

    @Option(help: "Interactions CSV (user_id,item_id,timestamp[,rating]); default: the built-in example shop.")
    var dataset: String?
    @Option(help: "Items CSV with titles or categories (default: items.csv beside --dataset, if present).")
    var items: String?
    @Option(help: "Keep rows with rating >= this (omit: every row is a positive).") var ratingThreshold: Double?
    @Option(help: "Embedding width.") var dim: Int = 32
    @Option(help: "Training epochs.") var epochs: Int = 8
    @Option(help: "Recommendations to print.") var k: Int = 10
    @Option(help: "User whose recommendations are printed (default: the first).") var user: String?
    @Option(help: "Seed for training.") var seed: UInt64 = 1
    @Option(help: "Write the trained model file here.") var saveModel: String?
    @Option(help: "Write the tensors as .npy files into this existing directory.") var exportNpy: String?

    func validate() throws {
        guard dim > 0, epochs > 0, k > 0 else { throw ValidationError("--dim, --epochs and --k must be positive") }
    }

    func run() throws {
        let data: InteractionDataset
        var labels: [String: String] = [:]
        if let dataset {
            data = try InteractionDataset(csvAt: dataset, options: .init(ratingThreshold: ratingThreshold))
            let itemsPath = items ?? (dataset.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/") + "/items.csv")
            if let table = try? CSVTable(contentsOf: itemsPath), let id = table.column("item_id") {
                let title = table.column("title") ?? table.column("product_category")
                for row in table.rows { labels[row[id]] = title.map { row[$0] } ?? "" }
            }
            print("dataset: \(dataset)")
        } else {
            data = SyntheticShop.dataset()
            for (index, id) in data.catalog.ids.enumerated() { labels[id] = data.catalog.attributes(at: index).category }
            print("dataset: built-in example shop (\(SyntheticShop.aisles.count) aisles; pass --dataset PATH for real data)")
        }
        let kernel = try ScoringKernel.preferred.get()
        print("  \(data.sequences.count) users, \(data.catalog.count) items, \(data.eventCount) events; scoring kernel: \(kernel.name)")

        let split = LeaveLastOutSplit(sequences: data.sequences)
        var rng = Xoshiro256(seed: seed)
        var parameters = GlobalParameters(itemCount: data.catalog.count, dimension: dim, using: &rng)
        var locals: [[Float]] = []
        Trainer().train(sequences: split.training, parameters: &parameters, locals: &locals, epochs: epochs, using: &rng)
        let model = try Model(version: 1, catalog: data.catalog, parameters: parameters)

        let (float32, int8) = try OfflineEvaluation.compareScoring(model: model, locals: locals, split: split, kernel: kernel)
        let popularity = OfflineEvaluation.popularity(itemCount: data.catalog.count, split: split)
        print("held-out last event per user (\(int8.users) users), full-catalogue ranking:")
        print("  popularity      HR@10 \(format(popularity.hitRate))  NDCG@10 \(format(popularity.ndcg))")
        print("  hearth float32  HR@10 \(format(float32.hitRate))  NDCG@10 \(format(float32.ndcg))")
        print("  hearth int8     HR@10 \(format(int8.hitRate))  NDCG@10 \(format(int8.ndcg))")

        if let saveModel {
            let bytes = ModelFile.encode(model)
            try writeFileAtomically(saveModel, bytes: bytes)
            // Read it back through the real decoder: what was written is what serving loads.
            let loaded = try ModelFile.decode(try readFile(saveModel))
            print("model file: \(saveModel) (\(bytes.count) bytes, version \(loaded.version), read back \(loaded == model ? "identical" : "DIFFERENT"))")
        }
        if let exportNpy {
            for (name, bytes) in NPY.export(model) {
                try writeFileAtomically(exportNpy + "/" + name, bytes: bytes)
            }
            print("tensors: \(exportNpy)/{embeddings,bias,table_int8,row_scale}.npy")
        }

        let chosen = user.flatMap { data.userIDs.firstIndex(of: $0) } ?? 0
        if let user, data.userIDs.firstIndex(of: user) == nil {
            throw ValidationError("no user '\(user)' in the dataset")
        }
        let history = split.historyBeforeTest(user: chosen)
        let state = OfflineEvaluation.localState(model: model, local: locals[chosen], history: history)
        let excluded = ExclusionSet(itemCount: model.catalog.count, items: history.map { $0.item })
        print("user \(data.userIDs[chosen]): last events")
        for event in history.suffix(5) {
            print("  \(event.kind.name.padding(8))\(describe(event.item, model: model, labels: labels))")
        }
        print("top \(k) recommendations:")
        for (rank, recommendation) in try model.recommend(state: state, k: k, excluding: excluded, kernel: kernel).enumerated() {
            let mark = recommendation.item == split.test[chosen]?.item ? "   <- the held-out next event" : ""
            print("  \(String(rank + 1).padding(3))\(describe(recommendation.item, model: model, labels: labels))  score \(format(Double(recommendation.score)))\(mark)")
        }
    }

    private func describe(_ item: Int32, model: Model, labels: [String: String]) -> String {
        let id = model.catalog.ids[Int(item)]
        guard let label = labels[id], !label.isEmpty else { return id }
        return "\(id) (\(label))"
    }
}

func format(_ x: Double) -> String {
    let scaled = (x * 10_000).rounded() / 10_000
    return "\(scaled)"
}

extension String {
    func padding(_ width: Int) -> String { count >= width ? self + " " : self + String(repeating: " ", count: width - count) }
}
