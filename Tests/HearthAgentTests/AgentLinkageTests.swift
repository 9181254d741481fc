import HearthProcess
import Testing

/// The agent keeps libcurl out of its process (docs/agent.md, "Processes"): its exchanges with
/// the aggregator run in `hearth-fetch`, which is the one that links libcurl.
@Suite("Agent linkage")
struct AgentLinkageTests {
    /// The shared libraries `binary` names in its dynamic section (`readelf -d`).
    static func neededLibraries(_ binary: String) async throws -> [String] {
        let directory = try HearthProcess.makeTemporaryDirectory(prefix: "hlink")
        defer { HearthProcess.removeTree(directory) }
        let text = try await Subprocess.output("/usr/bin/readelf", ["-d", "-W", binary], log: directory + "/readelf.log")
        return text.split(separator: "\n").filter { $0.contains("(NEEDED)") }.compactMap { line -> String? in
            guard let open = line.firstIndex(of: "["), let close = line.lastIndex(of: "]") else { return nil }
            return String(line[line.index(after: open) ..< close])
        }
    }

    @Test("hearth-agent does not link libcurl; hearth-fetch does")
    func agentWithoutLibcurl() async throws {
        let agent = try agentBinaryPath()
        let agentLibraries = try await Self.neededLibraries(agent)
        #expect(agentLibraries.contains { $0.hasPrefix("libsqlite3") }, "\(agentLibraries)")
        #expect(!agentLibraries.contains { $0.hasPrefix("libcurl") }, "\(agentLibraries)")
        let helper = String(agent.dropLast("hearth-agent".count)) + "hearth-fetch"
        let helperLibraries = try await Self.neededLibraries(helper)
        #expect(helperLibraries.contains { $0.hasPrefix("libcurl") }, "\(helperLibraries)")
    }
}
