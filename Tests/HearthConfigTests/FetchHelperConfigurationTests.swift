import HearthConfig
import Testing

/// `upload.fetch_helper`: where the agent finds `hearth-fetch`.
@Suite("Agent configuration: upload.fetch_helper")
struct FetchHelperConfigurationTests {
    @Test("empty by default (found next to the agent); an absolute path is read; a relative one is refused")
    func fetchHelper() throws {
        #expect(try AgentConfiguration(toml: "").fetchHelper == "")
        let set = try AgentConfiguration(toml: "[upload]\nfetch_helper = \"/opt/hearth/hearth-fetch\"\n")
        #expect(set.fetchHelper == "/opt/hearth/hearth-fetch")
        do throws(ConfigurationError) {
            _ = try AgentConfiguration(toml: "", overrides: ["upload.fetch_helper=\"hearth-fetch\""])
            Issue.record("a relative helper path was accepted")
        } catch {
            #expect(error == .invalid(key: "upload.fetch_helper", ""))
            #expect(error.message.contains("upload.fetch_helper"))
        }
    }
}
