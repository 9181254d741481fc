import HearthConfig

/// The configuration files: the TOML parser (`parseTOML`), the override syntax of `--set`, and
/// `AgentConfiguration` / `AggregatorConfiguration` reading and validation.
///
/// Input: the file's bytes, decoded as the programs decode them (invalid UTF-8 replaced). Lines
/// starting `#!set ` (TOML comments, so the parser skips them) are also passed as overrides.
/// Properties, beyond not crashing: an accepted configuration passes `validate()` again, and the
/// agent's training window parses.
enum FuzzTarget {
    static func run(_ bytes: [UInt8]) {
        let text = String(decoding: bytes, as: UTF8.self)
        var overrides: [String] = []
        for line in text.split(separator: "\n") where line.hasPrefix("#!set ") {
            overrides.append(String(line.dropFirst(6)))
        }
        _ = try? parseTOML(text)
        if let agent = try? AgentConfiguration(toml: text, overrides: overrides) {
            require((try? agent.validate()) != nil, "an accepted agent configuration fails validate()")
            require(TrainingWindow(agent.trainingWindow) != nil, "accepted an unparsable training window")
        }
        if let aggregator = try? AggregatorConfiguration(toml: text, overrides: overrides) {
            require((try? aggregator.validate()) != nil, "an accepted aggregator configuration fails validate()")
        }
    }

    /// Edge cases of the supported TOML subset (the package's two files are copied in by
    /// `scripts/fuzz.sh --write-seeds`).
    static func seeds() -> [(String, [UInt8])] {
        let texts: [(String, String)] = [
            ("agent-full", """
                [agent]
                state_directory = "/var/lib/hearth"
                socket = '/run/hearth/agent.sock'
                device_id = "d\\u00e9vice-1"
                [model]
                dimension = 0x20
                history = 1_000
                kernel = "auto"
                device_embedding = false
                [training]
                window = "22:30-06:00"
                max_load = 1.5e0
                learning_rate = 5e-2
                [privacy]
                mode = "central"   # trailing comment
                noise_multiplier = 1
                bit_width = 0o20
                delta = 1e-6
                #!set privacy.unit=session
                #!set upload.aggregator_url="https://aggregator.example:8443"
                """),
            ("aggregator-full", """
                [server]
                host = "127.0.0.1"
                port = 8443
                max_body_bytes = 67_108_864
                [plan]
                sampling_rate = 0.1
                clip_norm = 1.0
                mode = "local"
                unit = "session"
                max_sessions_per_update = 4
                [fedbuff]
                optimizer = "fedadam"
                tau = 1e-3
                [privacy]
                epsilon_budget = inf
                #!set fedbuff.buffer_size=20
                """),
            ("syntax", """
                "quoted key" = [1, 2.5, "three", [true, false], ]
                a.b.c = -inf
                [x.y]
                z = nan
                w = +0b1010
                """),
            // Regressions (docs/reliability.md): nesting and key paths just past the limits.
            ("regression-deep-array", "a = " + String(repeating: "[", count: 40) + String(repeating: "]", count: 40) + "\n"),
            ("regression-long-key", "[" + Array(repeating: "t", count: 40).joined(separator: ".") + "]\n"
                + Array(repeating: "k", count: 40).joined(separator: ".") + " = 1\n"),
        ]
        return texts.map { ($0.0 + ".toml", Array($0.1.utf8)) }
    }
}
