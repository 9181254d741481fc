import HearthConfig
import Testing

@Suite("TOML subset")
struct TOMLTests {
    @Test("tables, dotted keys, strings with escapes, numbers, booleans, arrays over lines, comments")
    func parses() throws {
        let root = try parseTOML("""
        # comment
        title = "a \\"quoted\\" \\u00e9 string" # trailing comment
        [server.tls]
        port = 8_443
        mask = 0o660
        ratio = 1.5e-3
        on = true
        names = [ "a",
                  'b\\literal', ]   
        "quoted key" = -7
        """)
        #expect(root["title"] == .string("a \"quoted\" é string"))
        guard case .table(let server)? = root["server"], case .table(let tls)? = server["tls"] else {
            Issue.record("no [server.tls] table")
            return
        }
        #expect(tls["port"] == .integer(8443))
        #expect(tls["mask"] == .integer(0o660))
        #expect(tls["ratio"] == .float(1.5e-3))
        #expect(tls["on"] == .boolean(true))
        #expect(tls["names"] == .array([.string("a"), .string("b\\literal")]))
        #expect(tls["quoted key"] == .integer(-7))
    }

    @Test("syntax errors name the line", arguments: [
        ("a = 1\nb = \n", 2),
        ("a = 1\na = 2\n", 2),
        ("[t]\n[t]\n", 2),
        ("x = \"unterminated\n", 1),
        ("x = {a = 1}\n", 1),
        ("[[points]]\n", 1),
        ("x = 1 2\n", 1),
        ("x = 1979-05-27\n", 1),
        ("x = \"bad \\q escape\"\n", 1),
    ])
    func errors(text: String, line: Int) {
        #expect {
            _ = try parseTOML(text)
        } throws: { error in
            (error as? TOMLError)?.line == line
        }
    }

    /// Found with the config fuzz target (docs/reliability.md, "Parsers under fuzzing"): arrays
    /// nested some thousands deep overflowed the parser's stack and crashed the process reading
    /// the file.
    @Test("arrays nested deeper than 32 levels are a syntax error, not a stack overflow")
    func deepArrays() throws {
        let deep = "a = " + String(repeating: "[", count: 200_000)
        #expect {
            _ = try parseTOML(deep)
        } throws: { error in
            (error as? TOMLError)?.message == "arrays nested deeper than 32 levels"
        }
        #expect(throws: ConfigurationError.syntax("")) { try AgentConfiguration(toml: deep) }
        #expect(throws: ConfigurationError.syntax("")) { try AggregatorConfiguration(toml: deep) }
        let nested32 = try parseTOML("a = " + String(repeating: "[", count: 32) + String(repeating: "]", count: 32))
        var value = try #require(nested32["a"])
        for _ in 1 ..< 32 {
            guard case .array(let items) = value, items.count == 1 else { Issue.record("not 32 nested arrays"); return }
            value = items[0]
        }
        #expect(value == .array([]))
        #expect(throws: TOMLError.self) { try parseTOML("a = " + String(repeating: "[", count: 33) + String(repeating: "]", count: 33)) }
    }

    /// Found with the config fuzz target: a dotted key of 20,000 parts (40 KB) made the parser
    /// copy the rest of the path at every level, over 2 GB and many seconds, before recursing
    /// once per part.
    @Test("dotted keys and table names of more than 32 parts are a syntax error", arguments: ["", "[", "[x]\n"])
    func longKeyPaths(prefix: String) throws {
        let suffix = prefix == "[" ? "]\n" : " = 1\n"
        let long = prefix + String(repeating: "a.", count: 20_000) + "a" + suffix
        #expect {
            _ = try parseTOML(long)
        } throws: { error in
            (error as? TOMLError)?.message == "a dotted key of more than 32 parts"
        }
        #expect(throws: ConfigurationError.syntax("")) { try AgentConfiguration(toml: long) }
        let parts32 = try parseTOML(prefix + Array(repeating: "a", count: 32).joined(separator: ".") + suffix)
        #expect(!parts32.isEmpty)
        #expect(throws: TOMLError.self) { try parseTOML(prefix + Array(repeating: "a", count: 33).joined(separator: ".") + suffix) }
    }
}

@Suite("Agent configuration")
struct AgentConfigurationTests {
    @Test("an empty file gives the documented defaults")
    func defaults() throws {
        let config = try AgentConfiguration(toml: "")
        #expect(config == AgentConfiguration())
        #expect(config.privacyMode == "local")
        #expect(config.stateDirectory == "/var/lib/hearth")
    }

    @Test("a full file and command-line overrides, which win")
    func fullFile() throws {
        let config = try AgentConfiguration(toml: """
        [agent]
        state_directory = "/tmp/hearth-state"
        socket = "/tmp/hearth.sock"
        [model]
        dimension = 64
        kernel = "scalar"
        [training]
        window = "22:00-06:00"
        max_load = 1
        require_mains_power = false
        [privacy]
        mode = "central"
        epsilon_budget = 4.0
        [upload]
        aggregator_url = "http://127.0.0.1:8080"
        """, overrides: ["privacy.mode=local", "training.max_load = 0.25", "model.dimension=16"])
        #expect(config.stateDirectory == "/tmp/hearth-state")
        #expect(config.dimension == 16)
        #expect(config.kernel == "scalar")
        #expect(config.maxLoadAverage == 0.25)
        #expect(config.requireMainsPower == false)
        #expect(config.privacyMode == "local")
        #expect(config.epsilonBudget == 4)
        let window = try #require(TrainingWindow(config.trainingWindow))
        #expect(window.contains(minute: 23 * 60))
        #expect(window.contains(minute: 60))
        #expect(!window.contains(minute: 12 * 60))
    }

    @Test("bad settings are refused with a message naming the key", arguments: [
        ("[privacy]\nmode = \"loud\"\n", "privacy.mode"),
        ("[privacy]\ndelta = 0.5\n", "privacy.delta"),
        ("[training]\nmax_load = -1\n", "training.max_load"),
        ("[training]\nwindow = \"25:00-26:00\"\n", "training.window"),
        ("[model]\ndimension = \"wide\"\n", "model.dimension"),
        ("[model]\nkernel = \"avx9000\"\n", "model.kernel"),
        ("[upload]\naggregator_url = \"http://example.com\"\n", "upload.aggregator_url"),
        ("[trainig]\nepochs = 2\n", "trainig"),
        ("[training]\nepoch = 2\n", "training.epoch"),
        ("[agent]\nsocket = \"relative.sock\"\n", "agent.socket"),
        ("[model]\ndevice_embedding = \"no\"\n", "model.device_embedding"),
    ])
    func invalid(text: String, key: String) {
        #expect {
            _ = try AgentConfiguration(toml: text)
        } throws: { error in
            guard let error = error as? ConfigurationError else { return false }
            return error.message.hasPrefix(key + ":")
        }
    }

    @Test("a kiosk serving many shoppers can turn the device embedding off")
    func deviceEmbedding() throws {
        #expect(try AgentConfiguration(toml: "").deviceEmbedding)
        #expect(try !AgentConfiguration(toml: "[model]\ndevice_embedding = false\n").deviceEmbedding)
        #expect(try !AgentConfiguration(toml: "", overrides: ["model.device_embedding=false"]).deviceEmbedding)
    }

    @Test("an override without '=' is refused")
    func badOverride() {
        #expect(throws: ConfigurationError.self) { try AgentConfiguration(toml: "", overrides: ["privacy.mode"]) }
    }
}
