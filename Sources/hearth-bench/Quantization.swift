import ArgumentParser
import CHearthBench
import HearthCore
import HearthDatasets

/// Quantisation cost: HR@10 / NDCG@10 of the same trained model scored in int8 and in float32.
struct Quantization: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train on a leave-last-out split, then compare int8 and float32 scoring of the same model."
    )

    @Option(help: "Interactions CSV (user_id,item_id,timestamp[,rating]).")
    var dataset: String = "../shared/datasets/movielens-small-dslabs/ratings.csv"
    @Option(help: "Keep rows with rating >= this (omit: every row is a positive).") var ratingThreshold: Double?
    @Option(help: "Embedding width.") var dim: Int = 32
    @Option(help: "Training epochs.") var epochs: Int = 10
    @Option(help: "Seed.") var seed: UInt64 = 1
    @Flag(help: "Print one JSON object.") var json = false

    func run() throws {
        let data = try InteractionDataset(csvAt: dataset, options: .init(ratingThreshold: ratingThreshold))
        let split = LeaveLastOutSplit(sequences: data.sequences)
        var rng = Xoshiro256(seed: seed)
        var parameters = GlobalParameters(itemCount: data.catalog.count, dimension: dim, using: &rng)
        var locals: [[Float]] = []
        let t0 = hearth_bench_now_ns()
        Trainer().train(sequences: split.training, parameters: &parameters, locals: &locals, epochs: epochs, using: &rng)
        let trainSeconds = Double(hearth_bench_now_ns() - t0) / 1e9
        let model = try Model(version: 0, catalog: data.catalog, parameters: parameters)
        let kernel = try ScoringKernel.preferred.get()
        let (float32, int8) = try OfflineEvaluation.compareScoring(model: model, locals: locals, split: split, kernel: kernel)
        let popularity = OfflineEvaluation.popularity(itemCount: data.catalog.count, split: split)
        let gap = abs(float32.hitRate - int8.hitRate)
        if json {
            print("{\"benchmark\": \"quantization\", \"dataset\": \"\(dataset)\", \"users\": \(int8.users), \"items\": \(data.catalog.count), \"events\": \(data.eventCount), \"dim\": \(dim), \"epochs\": \(epochs), \"kernel\": \"\(kernel.name)\", \"hr10_float32\": \(rounded(float32.hitRate, places: 1e5)), \"hr10_int8\": \(rounded(int8.hitRate, places: 1e5)), \"ndcg10_float32\": \(rounded(float32.ndcg, places: 1e5)), \"ndcg10_int8\": \(rounded(int8.ndcg, places: 1e5)), \"hr10_gap\": \(rounded(gap, places: 1e5)), \"hr10_popularity\": \(rounded(popularity.hitRate, places: 1e5)), \"train_seconds\": \(rounded(trainSeconds))}")
        } else {
            print("\(dataset): \(data.sequences.count) users, \(data.catalog.count) items, \(data.eventCount) events; leave-last-out, \(int8.users) test users")
            print("  trained \(epochs) epochs, dim \(dim), in \(rounded(trainSeconds)) s")
            print("  HR@10   float32 \(rounded(float32.hitRate, places: 1e4))  int8 (\(kernel.name)) \(rounded(int8.hitRate, places: 1e4))  gap \(rounded(gap, places: 1e4))")
            print("  NDCG@10 float32 \(rounded(float32.ndcg, places: 1e4))  int8 \(rounded(int8.ndcg, places: 1e4))")
            print("  popularity HR@10 \(rounded(popularity.hitRate, places: 1e4))  NDCG@10 \(rounded(popularity.ndcg, places: 1e4))")
        }
        if gap > 0.005 { throw ExitCode(2) }
    }
}
