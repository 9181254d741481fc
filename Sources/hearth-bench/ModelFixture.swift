import ArgumentParser
import HearthCore
import HearthDatasets

/// Writes a random model file of a given shape, for footprint measurements of the agent.
struct ModelFixture: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model-file",
        abstract: "Write a random model file (items named item-0, item-1, ...) for footprint measurements."
    )

    @Option(help: "Catalogue size.") var items: Int = 3_000
    @Option(help: "Embedding width.") var dim: Int = 32
    @Option(help: "Model version to stamp.") var version: UInt64 = 1
    @Option(help: "Seed.") var seed: UInt64 = 1
    @Option(help: "Output path.") var output: String

    func validate() throws {
        guard items > 0, dim > 0 else { throw ValidationError("--items and --dim must be positive") }
    }

    func run() throws {
        var rng = Xoshiro256(seed: seed)
        let parameters = GlobalParameters(itemCount: items, dimension: dim, using: &rng)
        let model = try Model(version: version, catalog: try Catalog(ids: (0 ..< items).map { "item-\($0)" }), parameters: parameters)
        let bytes = ModelFile.encode(model)
        try writeFileAtomically(output, bytes: bytes)
        print("\(output): \(items) x \(dim), \(bytes.count) bytes")
    }
}
