import HearthConfig
import Testing

/// The agent's `[api]` section: the local API's client bounds.
@Suite("Agent configuration: [api]")
struct APIConfigurationTests {
    @Test("defaults match LocalAPILimits' defaults")
    func defaults() throws {
        let config = try AgentConfiguration(toml: "")
        #expect(config.apiRequestTimeoutMilliseconds == 10_000)
        #expect(config.apiIdleTimeoutMilliseconds == 30_000)
        #expect(config.apiMaxConnections == 128)
        #expect(config.apiMaxBodyBytes == 1 << 20)
    }

    @Test("the four keys are read")
    func keysAreRead() throws {
        let config = try AgentConfiguration(toml: """
            [api]
            request_timeout_ms = 2500
            idle_timeout_ms = 4000
            max_connections = 16
            max_body_bytes = 65536
            """)
        #expect(config.apiRequestTimeoutMilliseconds == 2_500)
        #expect(config.apiIdleTimeoutMilliseconds == 4_000)
        #expect(config.apiMaxConnections == 16)
        #expect(config.apiMaxBodyBytes == 65_536)
        let overridden = try AgentConfiguration(toml: "", overrides: ["api.max_connections=3"])
        #expect(overridden.apiMaxConnections == 3)
    }

    @Test("out-of-range values and unknown keys are refused, naming the key", arguments: [
        ("request_timeout_ms = 0", "api.request_timeout_ms"),
        ("request_timeout_ms = 600001", "api.request_timeout_ms"),
        ("idle_timeout_ms = 99", "api.idle_timeout_ms"),
        ("max_connections = 0", "api.max_connections"),
        ("max_connections = 100000", "api.max_connections"),
        ("max_body_bytes = 1023", "api.max_body_bytes"),
        ("max_body_bytes = \"big\"", "api.max_body_bytes"),
        ("read_timeout_ms = 5", "api.read_timeout_ms"),
    ])
    func refused(line: String, key: String) {
        do {
            _ = try AgentConfiguration(toml: "[api]\n" + line + "\n")
            Issue.record("accepted \(line)")
        } catch {
            #expect(error.message.hasPrefix(key), "\(error.message)")
        }
    }
}
