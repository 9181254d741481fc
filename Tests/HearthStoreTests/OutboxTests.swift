@testable import HearthStore
import HearthTestSupport
import Testing

@Suite("Device store: outbox")
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

            #expect(try store.recordAttempt(idempotencyKey: "k-a", at: 5_000, nextAttemptAt: 9_000, error: "HTTP 503"))
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
