import CHearthSQLite
@testable import HearthStore
import HearthTestSupport
import Testing

@Suite("Device store: outbox", .computeLane)
struct OutboxTests {
    @Test("uploads come out oldest first with attempts, due times and errors")
    func orderingAndAttempts() throws {
        try withStore { store, _ throws in
            try store.enqueue(payload: [1, 2, 3], idempotencyKey: "k-a", modelVersion: 7, createdAt: 1_000)
            try store.enqueue(payload: [], idempotencyKey: "k-b", modelVersion: 8, createdAt: 2_000)
            try store.enqueue(payload: Array(repeating: 0xAB, count: 10_000), idempotencyKey: "k-c", modelVersion: UInt64.max, createdAt: 3_000)
            #expect(try store.pendingCount() == 3)
            let all = try store.pending(limit: 10)
            #expect(all.map(\.idempotencyKey) == ["k-a", "k-b", "k-c"])
            #expect(all[0].payload == [1, 2, 3] && all[1].payload.isEmpty && all[2].payload.count == 10_000)
            #expect(all[2].modelVersion == UInt64.max)
            #expect(all.allSatisfy { $0.attempts == 0 && $0.lastError == nil && $0.nextAttemptMilliseconds == $0.createdMilliseconds })
            #expect(try store.pending(limit: 2).map(\.idempotencyKey) == ["k-a", "k-b"])

            #expect(try store.attempts(idempotencyKey: "k-a") == 0)
            #expect(try store.recordAttempt(idempotencyKey: "k-a", at: 5_000, nextAttemptAt: 9_000, error: "HTTP 503"))
            #expect(try store.attempts(idempotencyKey: "k-a") == 1)
            #expect(try store.attempts(idempotencyKey: "missing") == nil)
            #expect(try store.recordAttempt(idempotencyKey: "k-a", at: 9_000, nextAttemptAt: 20_000, error: "timeout"))
            #expect(try store.recordAttempt(idempotencyKey: "missing", at: 9_000, nextAttemptAt: 20_000, error: nil) == false)
            let a = try #require(try store.pending(limit: 1).first)
            #expect(a.attempts == 2 && a.nextAttemptMilliseconds == 20_000 && a.lastAttemptMilliseconds == 9_000 && a.lastError == "timeout")
            // Due at 10 s: k-a is backing off until 20 s.
            #expect(try store.due(now: 10_000, limit: 10).map(\.idempotencyKey) == ["k-b", "k-c"])
            #expect(try store.due(now: 20_000, limit: 10).map(\.idempotencyKey) == ["k-a", "k-b", "k-c"])

            #expect(try store.lastDelivery() == nil)
            #expect(try store.markDelivered(idempotencyKey: "k-b", at: 30_000))
            #expect(try store.markDelivered(idempotencyKey: "k-b", at: 31_000) == false)
            #expect(try store.lastDelivery() == OutboxDelivery(idempotencyKey: "k-b", modelVersion: 8, deliveredMilliseconds: 30_000))
            #expect(try store.pending(limit: 10).map(\.idempotencyKey) == ["k-a", "k-c"])
        }
    }

    @Test("a large payload (several blob-write chunks, odd length) comes back byte for byte")
    func largePayload() throws {
        try withStore { store, _ throws in
            var state: UInt64 = 0x9E37_79B9_7F4A_7C15
            let payload = (0 ..< 700_001).map { _ -> UInt8 in
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                return UInt8(truncatingIfNeeded: state >> 56)
            }
            try store.enqueue(payload: payload, idempotencyKey: "big", modelVersion: 1, createdAt: 1)
            try store.enqueue(payload: [9], idempotencyKey: "after", modelVersion: 1, createdAt: 2)
            let items = try store.pending(limit: 10)
            #expect(items.count == 2)
            #expect(items.first?.payload == payload, "the blob written in chunks must equal the payload")
            #expect(items.last?.payload == [9])
            // A refused duplicate leaves no zero-filled row behind.
            #expect(throws: StoreError.self) {
                try store.enqueue(payload: payload, idempotencyKey: "big", modelVersion: 1, createdAt: 3)
            }
            #expect(try store.pendingCount() == 2)
        }
    }

    @Test("a version-1 store (payload inside the outbox row) is migrated: payloads kept, attempts and delivery work")
    func migrationFromVersion1() throws {
        try withTemporaryDirectory { directory throws in
            let path = directory + "/hearth.db"
            do {
                let connection = try SQLiteConnection(path: path, flags: SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)
                try connection.migrate(Array(Schema.migrations.prefix(1)))
                try connection.execute("""
                    INSERT INTO outbox (idempotency_key, model_version, payload, created_ms, next_attempt_ms)
                    VALUES ('old-1', 3, x'0102ff', 10, 10), ('old-2', 4, x'', 20, 20)
                    """)
                connection.close()
            }
            let store = try DeviceStore(path: path)
            #expect(try store.pragma("user_version") == "\(Schema.latestVersion)")
            let items = try store.pending(limit: 10)
            #expect(items.map(\.idempotencyKey) == ["old-1", "old-2"])
            #expect(items.map(\.payload) == [[1, 2, 0xFF], []])
            #expect(try store.recordAttempt(idempotencyKey: "old-1", at: 30, nextAttemptAt: 40, error: "refused"))
            #expect(try store.markDelivered(idempotencyKey: "old-2", at: 50))
            #expect(try store.pending(limit: 10).map(\.payload) == [[1, 2, 0xFF]])
            // The delivered upload's payload row went with it (ON DELETE CASCADE).
            #expect(try store.connection.scalarInt("SELECT count(*) FROM outbox_payloads") == 1)
            #expect(try store.integrityCheck() == ["ok"])
        }
    }

    @Test("an idempotency key can be queued only once")
    func uniqueKeys() throws {
        try withStore { store, _ throws in
            try store.enqueue(payload: [1], idempotencyKey: "round-5-device-x", modelVersion: 5, createdAt: 1)
            let error = #expect(throws: StoreError.self) {
                try store.enqueue(payload: [2], idempotencyKey: "round-5-device-x", modelVersion: 5, createdAt: 2)
            }
            #expect(error == .duplicateKey(""))
            #expect(try store.pending(limit: 10).map(\.payload) == [[1]])
            #expect(throws: StoreError.invalidArgument("")) {
                try store.enqueue(payload: [1], idempotencyKey: "", modelVersion: 5, createdAt: 1)
            }
        }
    }

    @Test("queued uploads and attempt state survive re-opening (nothing lost before upload)")
    func persistence() throws {
        try withTemporaryDirectory { directory throws in
            let path = directory + "/hearth.db"
            var options = StoreOptions()
            options.checkpointOnClose = false
            do {
                let store = try DeviceStore(path: path, options: options)
                for i in 0 ..< 5 {
                    try store.enqueue(payload: [UInt8(i)], idempotencyKey: "k-\(i)", modelVersion: UInt64(i), createdAt: Int64(i))
                }
                try store.recordAttempt(idempotencyKey: "k-1", at: 100, nextAttemptAt: 200, error: "refused")
                try store.markDelivered(idempotencyKey: "k-0", at: 150)
                store.close()
            }
            let store = try DeviceStore(path: path)
            let items = try store.pending(limit: 10)
            #expect(items.map(\.idempotencyKey) == ["k-1", "k-2", "k-3", "k-4"])
            #expect(items[0].attempts == 1 && items[0].lastError == "refused" && items[0].nextAttemptMilliseconds == 200)
            #expect(try store.lastDelivery()?.idempotencyKey == "k-0")
        }
    }
}
