#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import HearthConfig
import HearthCore
import HearthFiles
import HearthStore
import Logging
import ServiceLifecycle

/// Creating and opening an aggregator's state directory.
public enum AggregatorSetup {
    /// The store file inside the state directory.
    public static let databaseFileName = "aggregator.db"

    /// Opens the store of `configuration` (creating the directory, mode 0700, if needed).
    public static func openStore(_ configuration: AggregatorConfiguration) throws(AggregatorError) -> AggregatorStore {
        if mkdir(configuration.stateDirectory, 0o700) != 0 && errno != EEXIST {
            throw .configuration("cannot create server.state_directory \(configuration.stateDirectory): \(String(cString: strerror(errno)))")
        }
        do {
            return try AggregatorStore(path: configuration.stateDirectory + "/" + databaseFileName)
        } catch {
            throw .store(error.description)
        }
    }

    /// The signing key named by the configuration.
    public static func loadSigner(_ configuration: AggregatorConfiguration) throws(AggregatorError) -> ModelSigner {
        guard let bytes = readSmallFile(configuration.signingKeyFile) else {
            throw .configuration("cannot read server.signing_key \(configuration.signingKeyFile) (run `hearth-aggregator init` first)")
        }
        return try ModelSigner(keyFileText: String(decoding: bytes, as: UTF8.self))
    }

    /// Creates the first model version: random parameters (from the system's secure generator)
    /// for `catalog` at `dimension`, signed with the configured key, which is generated (mode
    /// 0600) when the file does not exist yet. Returns the signer (its public key goes into the
    /// agents' configuration). Refuses a state directory that already has a model.
    public static func initialize(_ configuration: AggregatorConfiguration, catalog: Catalog, dimension: Int,
                                  now: Int64 = wallClockMilliseconds()) throws(AggregatorError) -> ModelSigner {
        guard (1 ... 1024).contains(dimension) else { throw .configuration("--dim must be in 1...1024, got \(dimension)") }
        var rng = SystemRandomNumberGenerator()
        let parameters = GlobalParameters(itemCount: catalog.count, dimension: dimension, scale: 0.1, using: &rng)
        let model: Model
        do throws(CoreError) {
            model = try Model(version: 1, catalog: catalog, parameters: parameters)
        } catch {
            throw .configuration("cannot build the first model: \(error.message)")
        }
        return try initialize(configuration, firstModel: model, now: now)
    }

    /// Creates the first model version from `model` (its catalogue, parameters and query
    /// encoder; its version number becomes 1): for example a model trained centrally beforehand
    /// (`hearth-demo central --save-model`), or the seeded initial model of a simulation that
    /// must start where its in-process twin starts (`hearth-sim --over-http`). Otherwise as
    /// `initialize(_:catalog:dimension:now:)`.
    public static func initialize(_ configuration: AggregatorConfiguration, firstModel model: Model,
                                  now: Int64 = wallClockMilliseconds()) throws(AggregatorError) -> ModelSigner {
        guard (1 ... 1024).contains(model.parameters.dimension) else {
            throw .configuration("the model's dimension must be in 1...1024, got \(model.parameters.dimension)")
        }
        let store = try openStore(configuration)
        defer { store.close() }
        do {
            if let version = try store.currentVersion() {
                throw AggregatorError.alreadyInitialized("\(store.path) already serves model version \(version)")
            }
        } catch let error as AggregatorError {
            throw error
        } catch {
            throw .store("\(error)")
        }
        let signer: ModelSigner
        if readSmallFile(configuration.signingKeyFile) != nil {
            signer = try loadSigner(configuration)
        } else {
            signer = ModelSigner()
            do throws(FileError) {
                // Created exclusively, fsynced with its directory: the key survives a power cut.
                try DurableFile.create(configuration.signingKeyFile, with: Array(signer.keyFileText.utf8), mode: 0o600)
            } catch {
                throw .configuration(error.description)
            }
        }
        let first: Model
        do throws(CoreError) {
            first = try Model(version: 1, catalog: model.catalog, parameters: model.parameters, encoder: model.encoder)
        } catch {
            throw .configuration("cannot build the first model: \(error.message)")
        }
        let bytes = ModelFile.encode(first)
        let record = VersionRecord(version: 1, createdMilliseconds: now, parent: nil, updates: 0, noiseStandardDeviation: 0,
                                   epsilon: 0, delta: configuration.delta, dataVersions: 0, origin: "init")
        do {
            try store.publish(record, model: bytes, signature: try signer.sign(bytes), optimizer: nil)
        } catch let error as AggregatorError {
            throw error
        } catch {
            throw .store("\(error)")
        }
        return signer
    }

    /// The file at `path` (up to 64 KiB: keys and configuration files), or nil.
    public static func readSmallFile(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while out.count <= 1 << 16 {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 { if errno == EINTR { continue }; return nil }
            if n == 0 { return out }
            out.append(contentsOf: chunk[0 ..< n])
        }
        return nil
    }
}

/// Publishes when a round's deadline passes with enough updates (FedBuff's timeout path):
/// asks the aggregator every `interval` until graceful shutdown.
public struct PublicationService: Service {
    let aggregator: Aggregator
    let interval: Duration
    let logger: Logger

    public init(aggregator: Aggregator, interval: Duration, logger: Logger) {
        self.aggregator = aggregator
        self.interval = interval
        self.logger = logger
    }

    public func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
            } catch {
                return
            }
            await aggregator.tick()
        }
    }
}
