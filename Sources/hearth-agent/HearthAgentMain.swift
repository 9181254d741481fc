#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import ArgumentParser
import HearthAgent
import HearthConfig
import HearthLocalAPI
import HearthSystemd
import Logging
import ServiceLifecycle

/// `hearth-agent`: the on-device service (local API, training, uploads, model sync).
@main
struct HearthAgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hearth-agent",
        abstract: "Hearth's on-device agent: local recommendations API, private training and uploads.")

    static let defaultConfigPath = "/etc/hearth/agent.toml"

    @Option(name: .long, help: "The TOML configuration file (default /etc/hearth/agent.toml; a missing default file means defaults).")
    var config: String?

    @Option(name: .customLong("set"), help: "Override a setting: section.key=value (repeatable).")
    var overrides: [String] = []

    @Flag(name: .customLong("check-config"), help: "Validate the configuration and exit (0 valid, 2 invalid).")
    var checkConfig = false

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    @Option(name: .customLong("training-check-interval"), help: .hidden)
    var trainingCheckInterval: Double = 60

    @Option(name: .customLong("upload-interval"), help: .hidden)
    var uploadInterval: Double = 5

    @Option(name: .customLong("model-refresh-interval"), help: .hidden)
    var modelRefreshInterval: Double = 600

    @Option(name: .customLong("health-check-interval"), help: .hidden)
    var healthCheckInterval: Double = 5

    @Option(name: .customLong("upload-backoff-cap"), help: .hidden)
    var uploadBackoffCap: Double = 900

    /// Tests only: a file holding milliseconds added to the wall clock (a clock jump without
    /// touching the system's clock).
    @Option(name: .customLong("clock-offset-file"), help: .hidden)
    var clockOffsetFile: String?

    func run() async throws {
        let configuration: AgentConfiguration
        do {
            configuration = try loadConfiguration()
        } catch let error as ConfigurationError {
            writeStderr("hearth-agent: invalid configuration: \(error.message)\n")
            throw ExitCode(2)
        }
        if checkConfig {
            print("configuration OK")
            return
        }
        JournaldLogHandler.bootstrap(levelName: logLevel)
        let logger = Logger(label: "hearth.agent")
        do {
            try await serve(configuration: configuration, logger: logger)
        } catch {
            logger.critical("hearth-agent failed", metadata: ["error": "\(error)"])
            throw ExitCode(1)
        }
    }

    private func loadConfiguration() throws -> AgentConfiguration {
        let path = config ?? Self.defaultConfigPath
        let text: String
        if let bytes = readWholeFile(path) {
            text = String(decoding: bytes, as: UTF8.self)
        } else if config == nil {
            text = ""
        } else {
            throw ConfigurationError.invalid(key: "--config", "cannot read \(path)")
        }
        return try AgentConfiguration(toml: text, overrides: overrides)
    }

    private func serve(configuration: AgentConfiguration, logger: Logger) async throws {
        let environment = SystemdNotifier.processEnvironment()
        let notifier = SystemdNotifier(environment: environment)
        let runtime = try AgentRuntime(configuration: configuration, logger: Logger(label: "hearth.agent.runtime"))

        let listener: LocalAPIListener
        if let descriptor = try LocalAPIServer.listeningSocket(fromEnvironment: environment) {
            unsetenv("LISTEN_PID")
            unsetenv("LISTEN_FDS")
            unsetenv("LISTEN_FDNAMES")
            listener = .inheritedSocket(descriptor: descriptor)
            logger.info("using the socket passed by systemd", metadata: ["fd": "\(descriptor)"])
        } else {
            let group: LocalAPISocketGroup? = configuration.socketGroup.isEmpty ? nil : .name(configuration.socketGroup)
            listener = .unixSocket(path: configuration.socketPath, mode: 0o660, group: group)
            logger.info("listening", metadata: ["socket": "\(configuration.socketPath)"])
        }
        var apiLimits = LocalAPILimits()
        apiLimits.requestTimeoutMilliseconds = Int64(configuration.apiRequestTimeoutMilliseconds)
        apiLimits.idleTimeoutMilliseconds = Int64(configuration.apiIdleTimeoutMilliseconds)
        apiLimits.maxConnections = configuration.apiMaxConnections
        apiLimits.maxBodyBytes = configuration.apiMaxBodyBytes
        let server = LocalAPIServer(configuration: LocalAPIConfiguration(listener: listener, limits: apiLimits), backend: runtime,
                                    logger: Logger(label: "hearth.agent.api"))
        let services: [any Service] = [
            server,
            RetentionService(runtime: runtime, logger: Logger(label: "hearth.agent.retention")),
            TrainingService(runtime: runtime, configuration: configuration,
                            interval: seconds(trainingCheckInterval), logger: Logger(label: "hearth.agent.training")),
            UploadService(runtime: runtime, configuration: configuration, interval: seconds(uploadInterval),
                          backoffCap: seconds(uploadBackoffCap), logger: Logger(label: "hearth.agent.upload")),
            HealthService(runtime: runtime, interval: seconds(healthCheckInterval), clockOffsetFile: clockOffsetFile,
                          logger: Logger(label: "hearth.agent.health")),
            ModelRefreshService(runtime: runtime, configuration: configuration, interval: seconds(modelRefreshInterval),
                                logger: Logger(label: "hearth.agent.model")),
            WatchdogService(notifier: notifier, logger: Logger(label: "hearth.agent.systemd")),
            ReadinessService(notifier: notifier, logger: Logger(label: "hearth.agent.systemd")) {
                try await server.waitUntilListening()
            },
        ]
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: services.map { ServiceGroupConfiguration.ServiceConfiguration(service: $0) },
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        do {
            try await group.run()
        } catch {
            await runtime.close()
            throw error
        }
        await runtime.close()
    }

    private func seconds(_ value: Double) -> Duration {
        .milliseconds(Int64(max(0.05, value) * 1000))
    }
}

/// The file at `path`, or nil when it cannot be read.
func readWholeFile(_ path: String) -> [UInt8]? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 16 * 1024)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 { if errno == EINTR { continue }; return nil }
        if n == 0 { return bytes }
        bytes.append(contentsOf: chunk[0 ..< n])
        if bytes.count > 1 << 20 { return nil }
    }
}
