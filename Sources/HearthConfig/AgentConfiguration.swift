/// The agent's configuration: `/etc/hearth/agent.toml` plus command-line overrides.
///
/// Every setting has a default suited to a single-user board, is validated with a message
/// naming the key, and unknown keys are errors (a typo must not silently fall back to a default).
public struct AgentConfiguration: Sendable, Equatable {
    /// `[agent]`
    public var stateDirectory = "/var/lib/hearth"
    public var socketPath = "/run/hearth/agent.sock"
    /// Group allowed to use the socket (mode 0660); empty keeps the process's group.
    public var socketGroup = ""
    public var deviceID = ""

    /// `[model]`
    public var dimension = 32
    public var historyLength = 20
    /// Whether the query adds a learnt device embedding (`model.device_embedding`). Right for a
    /// device with one user (a phone, a personal kiosk); a kiosk serving many shoppers should turn
    /// it off: one vector for everyone drags every shopper's list towards the store's average.
    public var deviceEmbedding = true
    /// `auto` or a kernel name (`scalar`, `neon`, `neondot`, `avx2`, `avxvnni`).
    public var kernel = "auto"

    /// `[store]`
    public var maxEventAgeDays = 90
    public var maxEvents = 1_000_000
    public var maxDatabaseMegabytes = 256

    /// `[training]`
    /// Local time window `HH:MM-HH:MM` in which training may run (may wrap midnight).
    public var trainingWindow = "00:00-24:00"
    /// Train only while the 1-minute load average is below this.
    public var maxLoadAverage = 0.5
    /// Train only on mains power where `/sys/class/power_supply` tells.
    public var requireMainsPower = true
    /// New events needed since the last round.
    public var minNewEvents = 50
    /// Wall-clock cap of one round.
    public var maxTrainingSeconds = 120
    public var epochs = 1
    public var learningRate = 0.05

    /// `[privacy]`
    /// `local` or `central`.
    public var privacyMode = "local"
    /// `device` or `session`.
    public var privacyUnit = "device"
    public var clipNorm = 1.0
    public var noiseMultiplier = 1.0
    public var bitWidth = 16
    public var delta = 1e-6
    public var epsilonBudget = 8.0

    /// `[upload]`
    public var aggregatorURL = ""
    public var caFile = ""
    public var credentialFile = ""
    /// Base64 of the aggregator's Ed25519 model-signing public key.
    public var modelPublicKey = ""
    public var connectTimeoutMilliseconds = 5_000
    public var timeoutMilliseconds = 30_000
    /// The `hearth-fetch` helper that runs each exchange with the aggregator (docs/agent.md,
    /// "Processes"); empty = `$HEARTH_FETCH_HELPER`, else next to the agent, else `../lib/hearth/`.
    public var fetchHelper = ""

    /// `[api]`: bounds on the local API's clients (`LocalAPILimits`, docs/local-api.md).
    /// A request must arrive completely within this many milliseconds of its first byte.
    public var apiRequestTimeoutMilliseconds = 10_000
    /// A kept-alive connection with no request in progress is closed after this many milliseconds.
    public var apiIdleTimeoutMilliseconds = 30_000
    /// Most simultaneous connections; the next one is answered 503 and closed.
    public var apiMaxConnections = 128
    /// Largest request body in bytes (413 above it).
    public var apiMaxBodyBytes = 1 << 20

    public init() {}

    /// Reads a TOML document, then applies `overrides` (`section.key=value`, TOML values).
    public init(toml text: String, overrides: [String] = []) throws(ConfigurationError) {
        let reader = Reader(toml: try TOMLReader.parse(text, overrides: overrides))
        try reader.read(self: &self)
        try validate()
    }

    /// Checks every setting's range; the error names the key.
    public func validate() throws(ConfigurationError) {
        func require(_ condition: Bool, _ key: String, _ message: String) throws(ConfigurationError) {
            if !condition { throw .invalid(key: key, message) }
        }
        try require(stateDirectory.hasPrefix("/"), "agent.state_directory", "must be an absolute path")
        try require(socketPath.hasPrefix("/") && socketPath.utf8.count < 108, "agent.socket", "must be an absolute path shorter than 108 bytes")
        try require((1 ... 1024).contains(dimension), "model.dimension", "must be in 1...1024, got \(dimension)")
        try require((1 ... 1000).contains(historyLength), "model.history", "must be in 1...1000, got \(historyLength)")
        let kernels = ["auto", "scalar", "neon", "neondot", "avx2", "avxvnni"]
        try require(kernels.contains(kernel), "model.kernel", "must be one of \(kernels.joined(separator: ", ")), got '\(kernel)'")
        try require(maxEventAgeDays >= 1, "store.max_event_age_days", "must be at least 1, got \(maxEventAgeDays)")
        try require(maxEvents >= 1_000, "store.max_events", "must be at least 1000, got \(maxEvents)")
        try require(maxDatabaseMegabytes >= 8, "store.max_database_mb", "must be at least 8, got \(maxDatabaseMegabytes)")
        try require(TrainingWindow(trainingWindow) != nil, "training.window", "must be HH:MM-HH:MM, got '\(trainingWindow)'")
        try require(maxLoadAverage > 0 && maxLoadAverage <= 64, "training.max_load", "must be in (0, 64], got \(maxLoadAverage)")
        try require(minNewEvents >= 1, "training.min_new_events", "must be at least 1, got \(minNewEvents)")
        try require((1 ... 3600).contains(maxTrainingSeconds), "training.max_seconds", "must be in 1...3600, got \(maxTrainingSeconds)")
        try require((1 ... 100).contains(epochs), "training.epochs", "must be in 1...100, got \(epochs)")
        try require(learningRate > 0 && learningRate <= 10, "training.learning_rate", "must be in (0, 10], got \(learningRate)")
        try require(["local", "central"].contains(privacyMode), "privacy.mode", "must be local or central, got '\(privacyMode)'")
        try require(["device", "session"].contains(privacyUnit), "privacy.unit", "must be device or session, got '\(privacyUnit)'")
        try require(clipNorm > 0 && clipNorm.isFinite, "privacy.clip_norm", "must be a positive number, got \(clipNorm)")
        try require(noiseMultiplier >= 0.3 && noiseMultiplier <= 100, "privacy.noise_multiplier", "must be in [0.3, 100], got \(noiseMultiplier)")
        try require((8 ... 32).contains(bitWidth), "privacy.bit_width", "must be in 8...32, got \(bitWidth)")
        try require(delta > 0 && delta < 1e-3, "privacy.delta", "must be in (0, 0.001), got \(delta)")
        try require(epsilonBudget > 0 && epsilonBudget.isFinite, "privacy.epsilon_budget", "must be a positive number, got \(epsilonBudget)")
        try require(aggregatorURL.isEmpty || aggregatorURL.hasPrefix("https://") || aggregatorURL.hasPrefix("http://127.") || aggregatorURL.hasPrefix("http://localhost"),
                    "upload.aggregator_url", "must be https:// (plain http only to loopback), got '\(aggregatorURL)'")
        try require((100 ... 120_000).contains(connectTimeoutMilliseconds), "upload.connect_timeout_ms", "must be in 100...120000, got \(connectTimeoutMilliseconds)")
        try require((100 ... 600_000).contains(timeoutMilliseconds), "upload.timeout_ms", "must be in 100...600000, got \(timeoutMilliseconds)")
        try require(fetchHelper.isEmpty || fetchHelper.hasPrefix("/"), "upload.fetch_helper", "must be an absolute path, got '\(fetchHelper)'")
        try require((100 ... 600_000).contains(apiRequestTimeoutMilliseconds), "api.request_timeout_ms", "must be in 100...600000, got \(apiRequestTimeoutMilliseconds)")
        try require((100 ... 3_600_000).contains(apiIdleTimeoutMilliseconds), "api.idle_timeout_ms", "must be in 100...3600000, got \(apiIdleTimeoutMilliseconds)")
        try require((1 ... 65_536).contains(apiMaxConnections), "api.max_connections", "must be in 1...65536, got \(apiMaxConnections)")
        try require((1024 ... (64 << 20)).contains(apiMaxBodyBytes), "api.max_body_bytes", "must be in 1024...67108864, got \(apiMaxBodyBytes)")
    }
}

/// A daily time window, minutes since local midnight; `end < start` wraps midnight.
public struct TrainingWindow: Sendable, Equatable {
    public let startMinute: Int
    public let endMinute: Int

    /// Parses `HH:MM-HH:MM` (24:00 allowed as an end).
    public init?(_ text: String) {
        let parts = text.split(separator: "-")
        guard parts.count == 2, let start = TrainingWindow.minutes(parts[0]), let end = TrainingWindow.minutes(parts[1]),
              start < 24 * 60 else { return nil }
        startMinute = start
        endMinute = end
    }

    /// Whether `minute` (0..<1440) lies in the window.
    public func contains(minute: Int) -> Bool {
        if startMinute <= endMinute { return minute >= startMinute && minute < endMinute }
        return minute >= startMinute || minute < endMinute
    }

    private static func minutes(_ text: Substring) -> Int? {
        let hm = text.split(separator: ":")
        guard hm.count == 2, hm[0].count == 2, hm[1].count == 2, let h = Int(hm[0]), let m = Int(hm[1]),
              (0 ... 24).contains(h), (0 ..< 60).contains(m), h * 60 + m <= 24 * 60 else { return nil }
        return h * 60 + m
    }
}

/// A configuration that cannot be used, naming the key.
public struct ConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    private enum Code: Sendable, Equatable {
        case syntax
        case invalid
        case unknownKey
    }

    private let code: Code
    public let message: String

    private init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// The file is not valid TOML.
    public static func syntax(_ message: String) -> ConfigurationError { ConfigurationError(.syntax, message) }
    /// A value has the wrong type or is out of range.
    public static func invalid(key: String, _ message: String) -> ConfigurationError { ConfigurationError(.invalid, "\(key): \(message)") }
    /// A key this version does not know (usually a typo).
    public static func unknownKey(_ key: String) -> ConfigurationError { ConfigurationError(.unknownKey, "\(key): unknown setting") }

    public var description: String { message }
    public static func == (lhs: ConfigurationError, rhs: ConfigurationError) -> Bool { lhs.code == rhs.code }
}

/// Reads the agent's settings out of the TOML tree.
private struct Reader {
    let toml: TOMLReader

    func read(self config: inout AgentConfiguration) throws(ConfigurationError) {
        try toml.checkKnown([
            "agent": ["state_directory", "socket", "socket_group", "device_id"],
            "model": ["dimension", "history", "kernel", "device_embedding"],
            "store": ["max_event_age_days", "max_events", "max_database_mb"],
            "training": ["window", "max_load", "require_mains_power", "min_new_events", "max_seconds", "epochs", "learning_rate"],
            "privacy": ["mode", "unit", "clip_norm", "noise_multiplier", "bit_width", "delta", "epsilon_budget"],
            "upload": ["aggregator_url", "ca_file", "credential_file", "model_public_key", "connect_timeout_ms", "timeout_ms", "fetch_helper"],
            "api": ["request_timeout_ms", "idle_timeout_ms", "max_connections", "max_body_bytes"],
        ])
        try toml.string("agent", "state_directory", &config.stateDirectory)
        try toml.string("agent", "socket", &config.socketPath)
        try toml.string("agent", "socket_group", &config.socketGroup)
        try toml.string("agent", "device_id", &config.deviceID)
        try toml.integer("model", "dimension", &config.dimension)
        try toml.integer("model", "history", &config.historyLength)
        try toml.string("model", "kernel", &config.kernel)
        try toml.boolean("model", "device_embedding", &config.deviceEmbedding)
        try toml.integer("store", "max_event_age_days", &config.maxEventAgeDays)
        try toml.integer("store", "max_events", &config.maxEvents)
        try toml.integer("store", "max_database_mb", &config.maxDatabaseMegabytes)
        try toml.string("training", "window", &config.trainingWindow)
        try toml.double("training", "max_load", &config.maxLoadAverage)
        try toml.boolean("training", "require_mains_power", &config.requireMainsPower)
        try toml.integer("training", "min_new_events", &config.minNewEvents)
        try toml.integer("training", "max_seconds", &config.maxTrainingSeconds)
        try toml.integer("training", "epochs", &config.epochs)
        try toml.double("training", "learning_rate", &config.learningRate)
        try toml.string("privacy", "mode", &config.privacyMode)
        try toml.string("privacy", "unit", &config.privacyUnit)
        try toml.double("privacy", "clip_norm", &config.clipNorm)
        try toml.double("privacy", "noise_multiplier", &config.noiseMultiplier)
        try toml.integer("privacy", "bit_width", &config.bitWidth)
        try toml.double("privacy", "delta", &config.delta)
        try toml.double("privacy", "epsilon_budget", &config.epsilonBudget)
        try toml.string("upload", "aggregator_url", &config.aggregatorURL)
        try toml.string("upload", "ca_file", &config.caFile)
        try toml.string("upload", "credential_file", &config.credentialFile)
        try toml.string("upload", "model_public_key", &config.modelPublicKey)
        try toml.integer("upload", "connect_timeout_ms", &config.connectTimeoutMilliseconds)
        try toml.integer("upload", "timeout_ms", &config.timeoutMilliseconds)
        try toml.string("upload", "fetch_helper", &config.fetchHelper)
        try toml.integer("api", "request_timeout_ms", &config.apiRequestTimeoutMilliseconds)
        try toml.integer("api", "idle_timeout_ms", &config.apiIdleTimeoutMilliseconds)
        try toml.integer("api", "max_connections", &config.apiMaxConnections)
        try toml.integer("api", "max_body_bytes", &config.apiMaxBodyBytes)
    }
}
