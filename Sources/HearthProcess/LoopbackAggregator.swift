#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A real `hearth-aggregator` process serving plain HTTP on 127.0.0.1 (which it allows only on
/// loopback), set up the way an operator does it: `devices add NAME --count N` (a fleet and its
/// credentials), `init` (the first signed model version and the signing key), then `serve`.
///
/// Used by `hearth-demo` (with `hearth-agent` processes) and by `hearth-sim --over-http` (with
/// in-process virtual devices driving the agent's upload code).
public final class LoopbackAggregator: @unchecked Sendable {
    /// What to start.
    public struct Setup: Sendable {
        /// The `hearth-aggregator` executable.
        public var binary: String
        /// Working directory (must exist): configuration, store, signing key and logs go here.
        public var directory: String
        /// Extra `[server]` lines (`key = value`) after host, port, state directory and signing key.
        public var serverSettings: [String] = []
        /// The other sections of `aggregator.toml` (`[plan]`, `[fedbuff]`, `[privacy]`), as TOML text.
        public var sections: String
        /// What `init` starts from: `["--catalog", CSV, "--dim", D]` or `["--model", FILE]`.
        public var initArguments: [String]
        /// Devices are enrolled as `fleetName-0` ... `fleetName-(fleetSize-1)`.
        public var fleetName: String
        public var fleetSize: Int
        /// How often the server checks the round deadline (`serve --tick-interval`).
        public var tickIntervalSeconds: Double = 0.2
        /// Longest wait for the server to listen.
        public var startupTimeoutSeconds: Double = 60

        public init(binary: String, directory: String, sections: String, initArguments: [String], fleetName: String, fleetSize: Int) {
            self.binary = binary
            self.directory = directory
            self.sections = sections
            self.initArguments = initArguments
            self.fleetName = fleetName
            self.fleetSize = fleetSize
        }
    }

    /// `http://127.0.0.1:PORT`.
    public let baseURL: String
    /// One bearer credential per enrolled device, in fleet order.
    public let credentials: [String]
    /// Base64 of the Ed25519 key that verifies the published models (`upload.model_public_key`).
    public let modelPublicKey: String
    /// The configuration file written.
    public let configurationPath: String
    /// The `serve` process.
    public let process: Subprocess

    /// The server's log (stderr and stdout of `serve`).
    public var log: String { process.log }

    private init(baseURL: String, credentials: [String], modelPublicKey: String, configurationPath: String, process: Subprocess) {
        self.baseURL = baseURL
        self.credentials = credentials
        self.modelPublicKey = modelPublicKey
        self.configurationPath = configurationPath
        self.process = process
    }

    /// Writes `aggregator.toml`, enrols the fleet, creates version 1 and starts `serve`; returns
    /// once the server listens. The set-up commands log to `commands.log`, the server to
    /// `aggregator.log`, both in `setup.directory`.
    public static func start(_ setup: Setup) async throws(ProcessError) -> LoopbackAggregator {
        let directory = setup.directory
        let configuration = directory + "/aggregator.toml"
        let server = ["[server]", "host = \"127.0.0.1\"", "port = 0", "state_directory = \"\(directory)/aggregator\"",
                      "signing_key = \"\(directory)/signing.key\""] + setup.serverSettings
        try writeTextFile(configuration, server.joined(separator: "\n") + "\n" + setup.sections + "\n")
        let commands = directory + "/commands.log"

        // Enrol first and initialise last, so version 1 (whose time starts the first round's
        // deadline) is created just before the server starts.
        let enrolled = try await Subprocess.output(setup.binary, ["devices", "add", setup.fleetName, "--count", String(setup.fleetSize),
                                                                  "--config", configuration], log: commands)
        let credentials = enrolled.split(separator: "\n").compactMap { $0.split(separator: "\t").last.map(String.init) }
        guard credentials.count == setup.fleetSize else {
            throw .failed("devices add --count \(setup.fleetSize) printed \(credentials.count) credentials; see \(commands)")
        }
        let initialized = try await Subprocess.output(setup.binary, ["init", "--config", configuration] + setup.initArguments, log: commands)
        guard let keyLine = initialized.split(separator: "\n").first(where: { $0.hasPrefix("model_public_key") }),
              let publicKey = keyLine.split(separator: "\"").dropFirst().first else {
            throw .failed("hearth-aggregator init printed no model_public_key; see \(commands)\(logTail(commands))")
        }

        let portFile = directory + "/port"
        unlink(portFile)
        let process = try Subprocess(setup.binary, ["serve", "--config", configuration, "--port-file", portFile,
                                                    "--tick-interval", String(setup.tickIntervalSeconds)],
                                     log: directory + "/aggregator.log")
        let deadline = monotonicSeconds() + setup.startupTimeoutSeconds
        while monotonicSeconds() < deadline {
            if let line = readTextFile(portFile)?.split(separator: "\n").first, let port = Int(line) {
                return LoopbackAggregator(baseURL: "http://127.0.0.1:\(port)", credentials: credentials,
                                          modelPublicKey: String(publicKey), configurationPath: configuration, process: process)
            }
            if !process.isRunning {
                throw .failed("hearth-aggregator serve exited early; see \(process.log)\(logTail(process.log))")
            }
            try? await Task.sleep(for: .milliseconds(20))
        }
        process.stop()
        throw .timedOut("hearth-aggregator did not listen within \(setup.startupTimeoutSeconds) s; see \(process.log)\(logTail(process.log))")
    }

    /// SIGTERM (the server drains and exits), SIGKILL after 10 s.
    public func stop() { process.stop() }
}

/// Seconds on the monotonic clock.
func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}
