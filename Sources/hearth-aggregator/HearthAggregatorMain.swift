#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import ArgumentParser
import HearthAggregator
import HearthConfig
import HearthCore
import HearthDatasets
import HearthLocalAPI
import HearthSystemd
import Hummingbird
import Logging
import ServiceLifecycle

/// `hearth-aggregator`: merges device updates into signed model versions.
@main
struct HearthAggregatorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hearth-aggregator",
        abstract: "Hearth's aggregator: authenticated uploads, buffered federated averaging, signed models.",
        subcommands: [Initialize.self, Serve.self, Devices.self, Privacy.self, Rollback.self])
}

/// Options every subcommand takes.
struct ConfigOptions: ParsableArguments {
    @Option(name: .long, help: "The TOML configuration file.")
    var config: String = "/etc/hearth-aggregator/aggregator.toml"

    @Option(name: .customLong("set"), help: "Override a setting: section.key=value (repeatable).")
    var overrides: [String] = []

    func load() throws -> AggregatorConfiguration {
        guard let bytes = AggregatorSetup.readSmallFile(config) else {
            writeStderr("hearth-aggregator: cannot read the configuration \(config)\n")
            throw ExitCode(2)
        }
        do {
            return try AggregatorConfiguration(toml: String(decoding: bytes, as: UTF8.self), overrides: overrides)
        } catch {
            writeStderr("hearth-aggregator: invalid configuration: \(error.message)\n")
            throw ExitCode(2)
        }
    }
}

/// Runs `body`, turning aggregator errors into a message on stderr and exit code 1.
func reportingErrors<T>(_ body: () async throws -> T) async throws -> T {
    do {
        return try await body()
    } catch let error as AggregatorError {
        writeStderr("hearth-aggregator: \(error.message)\n")
        throw ExitCode(1)
    }
}

struct Initialize: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "init", abstract: "Create the first model version and the signing key.")

    @OptionGroup var options: ConfigOptions

    @Option(help: "Items CSV with an item_id column (and optional category/genres and brand); random initial parameters.")
    var catalog: String?

    @Option(help: "Embedding dimension (with --catalog).")
    var dim: Int = 32

    @Option(name: .customLong("max-items"), help: "Keep only the first N items of the catalogue (with --catalog).")
    var maxItems: Int?

    @Option(help: "Start from this model file instead (catalogue and parameters; docs/formats.md), e.g. one trained centrally.")
    var model: String?

    func validate() throws {
        guard (catalog == nil) != (model == nil) else { throw ValidationError("give exactly one of --catalog and --model") }
    }

    func run() async throws {
        let configuration = try options.load()
        let signer: ModelSigner
        let first: (items: Int, dimension: Int)
        if let model {
            let initial: Model
            do {
                initial = try ModelFile.decode(try readFile(model))
            } catch {
                writeStderr("hearth-aggregator: --model \(model): \(error)\n")
                throw ExitCode(2)
            }
            signer = try await reportingErrors { try AggregatorSetup.initialize(configuration, firstModel: initial) }
            first = (initial.catalog.count, initial.parameters.dimension)
        } else {
            let items: Catalog
            do {
                items = try Catalog(itemsCSVAt: catalog ?? "", maxItems: maxItems)
            } catch {
                writeStderr("hearth-aggregator: \(error.message)\n")
                throw ExitCode(2)
            }
            let dimension = dim
            signer = try await reportingErrors { try AggregatorSetup.initialize(configuration, catalog: items, dimension: dimension) }
            first = (items.count, dim)
        }
        print("created model version 1: \(first.items) items x \(first.dimension)")
        print("model_public_key = \"\(signer.publicKeyBase64)\"   # for the agents' [upload] section")
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Serve devices (until SIGTERM).")

    @OptionGroup var options: ConfigOptions

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    @Option(name: .customLong("port-file"), help: .hidden)
    var portFile: String?

    @Option(name: .customLong("tick-interval"), help: .hidden)
    var tickInterval: Double = 5

    func run() async throws {
        let configuration = try options.load()
        JournaldLogHandler.bootstrap(levelName: logLevel)
        let logger = Logger(label: "hearth.aggregator")
        try await reportingErrors {
            let metrics = AggregatorMetrics()
            let aggregator = try Aggregator(configuration: configuration, store: try AggregatorSetup.openStore(configuration),
                                            signer: try AggregatorSetup.loadSigner(configuration), metrics: metrics,
                                            logger: Logger(label: "hearth.aggregator.fedbuff"))
            let router = AggregatorHTTP.router(aggregator: aggregator, devices: DeviceDirectory(store: try AggregatorSetup.openStore(configuration), logger: logger),
                                               metrics: metrics, maxBodyBytes: configuration.maxBodyBytes)
            let portFile = self.portFile
            let app = Application(
                router: router, server: try AggregatorHTTP.serverBuilder(configuration, metrics: metrics, logger: Logger(label: "hearth.aggregator.http")),
                configuration: ApplicationConfiguration(address: .hostname(configuration.host, port: configuration.port),
                                                        serverName: "hearth-aggregator"),
                onServerRunning: { channel in
                    let port = channel.localAddress?.port ?? 0
                    logger.info("listening", metadata: ["host": "\(configuration.host)", "port": "\(port)",
                                                        "tls": "\(!configuration.tlsCertificate.isEmpty)"])
                    if let portFile { _ = writeWholeFile(portFile, Array("\(port)\n".utf8)) }
                },
                logger: Logger(label: "hearth.aggregator.http"))
            let publication = PublicationService(aggregator: aggregator, interval: .milliseconds(Int64(max(0.05, tickInterval) * 1000)),
                                                 logger: Logger(label: "hearth.aggregator.fedbuff"))
            let group = ServiceGroup(configuration: ServiceGroupConfiguration(
                services: [ServiceGroupConfiguration.ServiceConfiguration(service: app),
                           ServiceGroupConfiguration.ServiceConfiguration(service: publication)],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
            try await group.run()
            await aggregator.close()
            logger.info("stopped")
        }
    }
}

struct Devices: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Enrol, list and revoke devices.",
                                                    subcommands: [Add.self, List.self, Revoke.self])

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Enrol a device; prints its credential once.",
            discussion: """
                With --count N, enrols a fleet NAME-0 ... NAME-(N-1) through one store connection \
                and prints one `name<TAB>credential` line per device.
                """)
        @OptionGroup var options: ConfigOptions
        @Argument(help: "Device name (1-64 bytes); with --count, the prefix of the names.") var name: String
        @Option(help: "Enrol this many devices, NAME-0 ... NAME-(N-1).") var count: Int?

        func validate() throws {
            if let count, !(1 ... 1_000_000).contains(count) {
                throw ValidationError("--count must be in 1...1000000")
            }
        }

        func run() async throws {
            let configuration = try options.load()
            if let count {
                try await reportingErrors { try enrolFleet(configuration, count: count) }
                return
            }
            let credential = DeviceCredential.generate()
            try await reportingErrors {
                let store = try AggregatorSetup.openStore(configuration)
                defer { store.close() }
                do {
                    try store.addDevice(name: name, tokenHash: DeviceCredential.hash(credential), now: wallClockMilliseconds())
                } catch {
                    throw AggregatorError.configuration("cannot enrol '\(name)': \(error) (is the name taken?)")
                }
            }
            // The credential is shown once and never stored: only its SHA-256 is kept.
            print(credential)
        }

        /// Enrols `name-0` ... `name-(count-1)` in one transaction (all or none), then prints one
        /// `name<TAB>credential` line per device. Refuses the whole fleet if any name is taken.
        private func enrolFleet(_ configuration: AggregatorConfiguration, count: Int) throws(AggregatorError) {
            let store = try AggregatorSetup.openStore(configuration)
            defer { store.close() }
            let fleet = (0 ..< count).map { ("\(name)-\($0)", DeviceCredential.generate()) }
            do {
                try store.addDevices(fleet.map { (name: $0.0, tokenHash: DeviceCredential.hash($0.1)) }, now: wallClockMilliseconds())
            } catch {
                throw .configuration("cannot enrol the fleet (is a name taken?): \(error); nothing was enrolled")
            }
            for (device, credential) in fleet { print("\(device)\t\(credential)") }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List enrolled devices.")
        @OptionGroup var options: ConfigOptions
        @Flag var json = false

        func run() async throws {
            let configuration = try options.load()
            let devices = try await reportingErrors {
                let store = try AggregatorSetup.openStore(configuration)
                defer { store.close() }
                do { return try store.devices() } catch { throw AggregatorError.store("\(error)") }
            }
            if json {
                let rows: [JSONValue] = devices.map { d -> JSONValue in
                    let revoked: JSONValue = d.revokedMilliseconds.map { JSONValue.integer($0) } ?? .null
                    return .object(["name": .string(d.name), "created_ms": .integer(d.createdMilliseconds),
                                    "revoked_ms": revoked, "accepted_updates": .int(d.acceptedUpdates)])
                }
                print(JSONValue.array(rows).serialized())
                return
            }
            for d in devices {
                print("\(d.name)\t\(d.revokedMilliseconds == nil ? "active" : "revoked")\t\(d.acceptedUpdates) updates")
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke a device: its credential is refused from now on.")
        @OptionGroup var options: ConfigOptions
        @Argument var name: String

        func run() async throws {
            let configuration = try options.load()
            let revoked = try await reportingErrors {
                let store = try AggregatorSetup.openStore(configuration)
                defer { store.close() }
                do { return try store.revokeDevice(name: name, now: wallClockMilliseconds()) } catch { throw AggregatorError.store("\(error)") }
            }
            guard revoked else {
                writeStderr("hearth-aggregator: no active device named '\(name)'\n")
                throw ExitCode(1)
            }
            print("revoked \(name)")
        }
    }
}

/// Opens the aggregator state offline (no server) for the report and rollback commands.
func openOffline(_ configuration: AggregatorConfiguration) throws -> Aggregator {
    var logger = Logger(label: "hearth.aggregator")
    logger.logLevel = .warning
    return try Aggregator(configuration: configuration, store: try AggregatorSetup.openStore(configuration),
                          signer: try AggregatorSetup.loadSigner(configuration), metrics: AggregatorMetrics(), logger: logger)
}

struct Privacy: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The central privacy ledger: epsilon after each version.")
    @OptionGroup var options: ConfigOptions
    @Flag var json = false

    func run() async throws {
        let configuration = try options.load()
        let report = try await reportingErrors {
            let aggregator = try openOffline(configuration)
            let report = try await aggregator.privacyReport()
            await aggregator.close()
            return report
        }
        if json {
            print(report.json.serialized())
            return
        }
        print("mode \(report.mode), q = \(report.samplingRate), z = \(report.noiseMultiplier), delta = \(report.delta)")
        print("epsilon spent \(report.epsilonSpent) of \(report.epsilonBudget) over \(report.dataVersions) versions with device data\(report.accepting ? "" : " (budget spent: not accepting)")")
        print("version\tupdates\tnoise_sd\tepsilon\torigin")
        for v in report.versions {
            print("\(v.version)\t\(v.updates)\t\(v.noiseStandardDeviation)\t\(v.epsilon)\t\(v.origin)")
        }
    }
}

struct Rollback: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve an earlier version's parameters again, as a new version (run while the server is stopped).")
    @OptionGroup var options: ConfigOptions
    @Argument var version: UInt64

    func run() async throws {
        let configuration = try options.load()
        let published = try await reportingErrors {
            let aggregator = try openOffline(configuration)
            let published = try await aggregator.rollback(to: version)
            await aggregator.close()
            return published
        }
        print("version \(published) now serves the parameters of version \(version)")
    }
}

/// Writes `bytes` to `path` (replacing it); false on failure.
func writeWholeFile(_ path: String, _ bytes: [UInt8]) -> Bool {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    return bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } == bytes.count
}
