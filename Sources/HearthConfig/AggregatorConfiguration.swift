/// The aggregator's settings, from a TOML file (`hearth-aggregator serve --config FILE`).
///
/// Sections: `[server]` (listening address, TLS, state, signing key, limits), `[plan]` (what
/// devices must do: sampling rate, clipping, noise, bit width, staleness), `[fedbuff]` (buffered
/// asynchronous averaging and the server optimiser) and `[privacy]` (δ and the ε budget of the
/// released model). Every key is validated; the error names it.
public struct AggregatorConfiguration: Sendable, Equatable {
    // [server]
    public var host = "127.0.0.1"
    public var port = 8443
    /// PEM certificate chain; empty serves plain HTTP (loopback, or behind a TLS proxy).
    public var tlsCertificate = ""
    /// PEM private key of `tlsCertificate`.
    public var tlsKey = ""
    public var stateDirectory = "/var/lib/hearth-aggregator"
    /// Base64 of the 32-byte Ed25519 signing key (raw), written by `hearth-aggregator init`.
    public var signingKeyFile = "/var/lib/hearth-aggregator/signing.key"
    /// Largest request body accepted (bytes).
    public var maxBodyBytes = 64 << 20
    /// Accepted updates per device per hour (a token bucket).
    public var updatesPerDevicePerHour = 12
    /// Devices are asked to spread their next contact over this many seconds.
    public var retryWindowSeconds = 600
    /// A connection with no request in progress (silent, or a request head still arriving) is
    /// closed after this many seconds (Hummingbird's idle timeout).
    public var idleTimeoutSeconds = 60
    /// A request (head and body) must arrive within this many seconds of its first byte, however
    /// steadily it trickles in; otherwise it is answered 408 and the connection is closed.
    public var requestTimeoutSeconds = 300
    /// Most simultaneous connections; more are answered 503 (`too_many_connections`) and closed
    /// at once (closed without an answer under TLS), while the admitted ones keep being served.
    public var maxConnections = 1024

    // [plan]
    public var samplingRate = 0.1
    public var clipNorm = 1.0
    public var noiseMultiplier = 1.0
    public var privacyMode = "local"
    public var privacyUnit = "device"
    public var maxSessionsPerUpdate = 1
    public var bitWidth = 16
    public var headroom = 4.0
    public var maxStaleness = 4

    // [fedbuff]
    public var bufferSize = 10
    public var minimumUpdates = 3
    public var roundDeadlineSeconds = 3_600.0
    public var serverLearningRate = 1.0
    public var optimizer = "fedavg"
    public var momentum = 0.9
    public var beta1 = 0.9
    public var beta2 = 0.99
    public var tau = 1e-3
    public var stalenessExponent = 0.5

    // [privacy]
    public var delta = 1e-6
    public var epsilonBudget = 8.0

    public init() {}

    /// Reads a TOML document, then applies `overrides` (`section.key=value`).
    public init(toml text: String, overrides: [String] = []) throws(ConfigurationError) {
        let toml = try TOMLReader.parse(text, overrides: overrides)
        try toml.checkKnown([
            "server": ["host", "port", "tls_certificate", "tls_key", "state_directory", "signing_key",
                       "max_body_bytes", "updates_per_device_per_hour", "retry_window_seconds",
                       "idle_timeout_seconds", "request_timeout_seconds", "max_connections"],
            "plan": ["sampling_rate", "clip_norm", "noise_multiplier", "mode", "unit", "max_sessions_per_update",
                     "bit_width", "headroom", "max_staleness"],
            "fedbuff": ["buffer_size", "minimum_updates", "round_deadline_seconds", "server_learning_rate",
                        "optimizer", "momentum", "beta1", "beta2", "tau", "staleness_exponent"],
            "privacy": ["delta", "epsilon_budget"],
        ])
        try toml.string("server", "host", &host)
        try toml.integer("server", "port", &port)
        try toml.string("server", "tls_certificate", &tlsCertificate)
        try toml.string("server", "tls_key", &tlsKey)
        try toml.string("server", "state_directory", &stateDirectory)
        try toml.string("server", "signing_key", &signingKeyFile)
        try toml.integer("server", "max_body_bytes", &maxBodyBytes)
        try toml.integer("server", "updates_per_device_per_hour", &updatesPerDevicePerHour)
        try toml.integer("server", "retry_window_seconds", &retryWindowSeconds)
        try toml.integer("server", "idle_timeout_seconds", &idleTimeoutSeconds)
        try toml.integer("server", "request_timeout_seconds", &requestTimeoutSeconds)
        try toml.integer("server", "max_connections", &maxConnections)
        try toml.double("plan", "sampling_rate", &samplingRate)
        try toml.double("plan", "clip_norm", &clipNorm)
        try toml.double("plan", "noise_multiplier", &noiseMultiplier)
        try toml.string("plan", "mode", &privacyMode)
        try toml.string("plan", "unit", &privacyUnit)
        try toml.integer("plan", "max_sessions_per_update", &maxSessionsPerUpdate)
        try toml.integer("plan", "bit_width", &bitWidth)
        try toml.double("plan", "headroom", &headroom)
        try toml.integer("plan", "max_staleness", &maxStaleness)
        try toml.integer("fedbuff", "buffer_size", &bufferSize)
        try toml.integer("fedbuff", "minimum_updates", &minimumUpdates)
        try toml.double("fedbuff", "round_deadline_seconds", &roundDeadlineSeconds)
        try toml.double("fedbuff", "server_learning_rate", &serverLearningRate)
        try toml.string("fedbuff", "optimizer", &optimizer)
        try toml.double("fedbuff", "momentum", &momentum)
        try toml.double("fedbuff", "beta1", &beta1)
        try toml.double("fedbuff", "beta2", &beta2)
        try toml.double("fedbuff", "tau", &tau)
        try toml.double("fedbuff", "staleness_exponent", &stalenessExponent)
        try toml.double("privacy", "delta", &delta)
        try toml.double("privacy", "epsilon_budget", &epsilonBudget)
        try validate()
    }

    /// Checks every setting's range; the error names the key.
    public func validate() throws(ConfigurationError) {
        func require(_ condition: Bool, _ key: String, _ message: String) throws(ConfigurationError) {
            if !condition { throw .invalid(key: key, message) }
        }
        try require(!host.isEmpty, "server.host", "must not be empty")
        try require((0 ... 65_535).contains(port), "server.port", "must be in 0...65535, got \(port)")
        try require(tlsCertificate.isEmpty == tlsKey.isEmpty, "server.tls_key",
                    "tls_certificate and tls_key go together (both set for HTTPS, both empty for plain HTTP)")
        try require(!tlsCertificate.isEmpty || host == "127.0.0.1" || host == "::1" || host == "localhost",
                    "server.tls_certificate", "plain HTTP is only served on loopback; set tls_certificate and tls_key, or host = \"127.0.0.1\" behind a TLS proxy")
        try require(stateDirectory.hasPrefix("/"), "server.state_directory", "must be an absolute path")
        try require(signingKeyFile.hasPrefix("/"), "server.signing_key", "must be an absolute path")
        try require(maxBodyBytes >= 1024 && maxBodyBytes <= 1 << 30, "server.max_body_bytes", "must be in 1024...1073741824, got \(maxBodyBytes)")
        try require((1 ... 3_600).contains(updatesPerDevicePerHour), "server.updates_per_device_per_hour", "must be in 1...3600, got \(updatesPerDevicePerHour)")
        try require((0 ... 86_400).contains(retryWindowSeconds), "server.retry_window_seconds", "must be in 0...86400, got \(retryWindowSeconds)")
        try require((1 ... 3_600).contains(idleTimeoutSeconds), "server.idle_timeout_seconds", "must be in 1...3600, got \(idleTimeoutSeconds)")
        try require((1 ... 3_600).contains(requestTimeoutSeconds), "server.request_timeout_seconds", "must be in 1...3600, got \(requestTimeoutSeconds)")
        try require((1 ... 60_000).contains(maxConnections), "server.max_connections", "must be in 1...60000, got \(maxConnections)")
        try require(samplingRate > 0 && samplingRate <= 1, "plan.sampling_rate", "must be in (0, 1], got \(samplingRate)")
        try require(clipNorm > 0 && clipNorm.isFinite, "plan.clip_norm", "must be a positive number, got \(clipNorm)")
        try require(noiseMultiplier >= 0.3 && noiseMultiplier <= 100, "plan.noise_multiplier", "must be in [0.3, 100], got \(noiseMultiplier)")
        try require(["local", "central"].contains(privacyMode), "plan.mode", "must be local or central, got '\(privacyMode)'")
        try require(["device", "session"].contains(privacyUnit), "plan.unit", "must be device or session, got '\(privacyUnit)'")
        try require((1 ... 64).contains(maxSessionsPerUpdate), "plan.max_sessions_per_update", "must be in 1...64, got \(maxSessionsPerUpdate)")
        try require((8 ... 32).contains(bitWidth), "plan.bit_width", "must be in 8...32, got \(bitWidth)")
        try require(headroom >= 1 && headroom <= 16, "plan.headroom", "must be in [1, 16], got \(headroom)")
        try require((0 ... 1_000).contains(maxStaleness), "plan.max_staleness", "must be in 0...1000, got \(maxStaleness)")
        try require((1 ... 100_000).contains(bufferSize), "fedbuff.buffer_size", "must be in 1...100000, got \(bufferSize)")
        try require(minimumUpdates >= 1 && minimumUpdates <= bufferSize, "fedbuff.minimum_updates", "must be in 1...buffer_size, got \(minimumUpdates)")
        try require(roundDeadlineSeconds >= 1 && roundDeadlineSeconds.isFinite, "fedbuff.round_deadline_seconds", "must be at least 1, got \(roundDeadlineSeconds)")
        try require(serverLearningRate > 0 && serverLearningRate <= 100, "fedbuff.server_learning_rate", "must be in (0, 100], got \(serverLearningRate)")
        try require(["fedavg", "fedavgm", "fedadam"].contains(optimizer), "fedbuff.optimizer", "must be fedavg, fedavgm or fedadam, got '\(optimizer)'")
        try require(momentum >= 0 && momentum < 1, "fedbuff.momentum", "must be in [0, 1), got \(momentum)")
        try require(beta1 >= 0 && beta1 < 1, "fedbuff.beta1", "must be in [0, 1), got \(beta1)")
        try require(beta2 >= 0 && beta2 < 1, "fedbuff.beta2", "must be in [0, 1), got \(beta2)")
        try require(tau > 0 && tau <= 1, "fedbuff.tau", "must be in (0, 1], got \(tau)")
        try require(stalenessExponent >= 0 && stalenessExponent <= 4, "fedbuff.staleness_exponent", "must be in [0, 4], got \(stalenessExponent)")
        try require(delta > 0 && delta < 1e-3, "privacy.delta", "must be in (0, 0.001), got \(delta)")
        try require(epsilonBudget > 0 && epsilonBudget.isFinite, "privacy.epsilon_budget", "must be a positive number, got \(epsilonBudget)")
    }
}
