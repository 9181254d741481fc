import HearthAgent
import HearthConfig
import HearthCore
import HearthLocalAPI
import Testing

@Suite("Server plan")
struct ServerPlanTests {
    static let document = #"{"accepting":true,"bit_width":16,"buffer_size":3,"buffered":0,"clip_norm":1,"deadline_ms":1796024729050,"headroom":4,"max_sessions_per_update":1,"max_staleness":4,"mode":"local","model_version":7,"noise_multiplier":1,"retry_after_seconds":178,"sampling_rate":0.25,"unit":"device"}"#

    func configuration() throws -> AgentConfiguration {
        try AgentConfiguration(toml: """
            [privacy]
            mode = "local"
            unit = "device"
            clip_norm = 1.0
            noise_multiplier = 1.0
            bit_width = 16
            """)
    }

    @Test("the aggregator's plan document parses; broken ones do not")
    func parses() throws {
        let plan = try #require(ServerPlan(json: try JSONParser().parse(Self.document)))
        #expect(plan.modelVersion == 7)
        #expect(plan.samplingRate == 0.25)
        #expect(plan.accepting)
        #expect(plan.retryAfterSeconds == 178)
        for broken in [Self.document.replacingFirst("0.25", "1.5"), Self.document.replacingFirst("\"bit_width\":16", "\"bit_width\":2"),
                       Self.document.replacingFirst("\"accepting\":true", "\"accepting\":1"), "[]"] {
            #expect(ServerPlan(json: try JSONParser().parse(broken)) == nil, "\(broken)")
        }
    }

    @Test("a plan asking for less privacy than the device's configuration is not followed")
    func mismatch() throws {
        let config = try configuration()
        var plan = try #require(ServerPlan(json: try JSONParser().parse(Self.document)))
        #expect(plan.mismatch(with: config) == nil)
        plan.noiseMultiplier = 2     // more device noise than configured: refuse (the upload would be refused too)
        #expect(plan.mismatch(with: config) != nil)
        plan.noiseMultiplier = 1
        plan.clipNorm = 5
        #expect(plan.mismatch(with: config) != nil)
        plan.clipNorm = 1
        plan.mode = "central"
        #expect(plan.mismatch(with: config) != nil)
    }

    @Test("one coin per model version, remembered; q = 1 always takes part")
    func participation() {
        var rng = Xoshiro256(seed: 3)
        var log = ParticipationLog()
        var taken = 0
        for version in 1 ... 2_000 {
            let first = log.participates(version: UInt64(version), samplingRate: 0.1, using: &rng)
            // Asking again for the same version never re-rolls.
            for _ in 0 ..< 3 { #expect(log.participates(version: UInt64(version), samplingRate: 0.1, using: &rng) == first) }
            if first { taken += 1 }
        }
        #expect(taken > 140 && taken < 260, "\(taken) of 2000 at q = 0.1")
        var always = ParticipationLog()
        #expect((1 ... 50).allSatisfy { always.participates(version: UInt64($0), samplingRate: 1, using: &rng) })
    }
}

extension String {
    /// `self` with the first occurrence of `target` replaced (no Foundation here).
    fileprivate func replacingFirst(_ target: String, _ replacement: String) -> String {
        let text = Array(utf8), needle = Array(target.utf8)
        guard needle.count <= text.count else { return self }
        for start in 0 ... (text.count - needle.count) where Array(text[start ..< start + needle.count]) == needle {
            return String(decoding: text[..<start] + Array(replacement.utf8) + text[(start + needle.count)...], as: UTF8.self)
        }
        return self
    }
}
