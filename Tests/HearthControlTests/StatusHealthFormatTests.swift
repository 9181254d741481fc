import HearthControl
import HearthLocalAPI
import Testing

/// `hearthctl status` (human form) shows the agent's health and each active fault condition.
@Suite("hearthctl status: health and conditions")
struct StatusHealthFormatTests {
    @Test func degradedAgentListsEachConditionWithItsDetail() throws {
        let status = try JSONParser().parse(Array("""
            {"model_version": "3", "kernel": "avx2", "events_total": 8, "outbox_pending": 1, "last_upload": null,
             "privacy": {"epsilon_spent": 0, "delta": 1e-5, "epsilon_budget": 8},
             "health": "degraded",
             "conditions": [
               {"name": "aggregator_unreachable", "since": 1700000000000, "detail": "POST /v1/updates: connection refused"},
               {"name": "disk_full", "since": 1700000060000, "detail": "a write failed: database or disk is full"}
             ]}
            """.utf8))
        let lines = ControlFormat.status(status).split(separator: "\n").map(String.init)
        #expect(lines.contains { $0.hasPrefix("health ") && $0.hasSuffix(" degraded") })
        #expect(lines.contains { $0.hasPrefix("  aggregator_unreachable")
            && $0.hasSuffix("since 2023-11-14 22:13:20 UTC: POST /v1/updates: connection refused") })
        #expect(lines.contains { $0.hasPrefix("  disk_full ")
            && $0.hasSuffix("since 2023-11-14 22:14:20 UTC: a write failed: database or disk is full") })
        // The conditions are not repeated as raw JSON after the known fields.
        #expect(!lines.contains { $0.hasPrefix("conditions") })
    }

    @Test func healthyAgentShowsOk() throws {
        let status = try JSONParser().parse(Array("""
            {"model_version": "3", "kernel": "avx2", "events_total": 8, "outbox_pending": 0, "last_upload": null,
             "privacy": {"epsilon_spent": 0, "delta": 1e-5, "epsilon_budget": 8}, "health": "ok", "conditions": []}
            """.utf8))
        let lines = ControlFormat.status(status).split(separator: "\n").map(String.init)
        #expect(lines.contains("health         ok"))
        #expect(lines.count == 7)
    }
}
