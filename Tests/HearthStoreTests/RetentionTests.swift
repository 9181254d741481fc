import HearthCore
@testable import HearthStore
import HearthTestSupport
import Testing

@Suite("Device store: retention", .computeLane)
struct RetentionTests {
    static let base: Int64 = 1_700_000_000_000

    @Test("the age cap deletes events older than now - max age, oldest by timestamp first", arguments: [1, 7, 2_000])
    func byAge(batchSize: Int) throws {
        try withStore { store, _ throws in
            // Timestamps deliberately out of insertion order.
            let order = [5, 0, 9, 3, 7, 1, 8, 2, 6, 4]
            let batch = try order.map { try record("i-\($0)", ts: Self.base + Int64($0) * 60_000) }
            _ = try store.append(batch)
            store.retentionPolicy = RetentionPolicy(maxAgeMilliseconds: 5 * 60_000, batchSize: batchSize)
            let now = Self.base + 9 * 60_000
            #expect(try store.retentionState(now: now).exceeded == [.age])
            let report = try store.enforceRetention(now: now)
            #expect(report.deleted == 4)          // minutes 0...3 are older than now - 5 min
            #expect(report.deletedByCap == [.age: 4])
            #expect(report.boundBy == [.age])
            #expect(report.remainingEvents == 6)
            #expect(report.withinPolicy)
            let left = try store.events(after: 0, limit: 100).map(\.record.item)
            #expect(Set(left) == Set((4 ... 9).map { "i-\($0)" }))
            #expect(try store.retentionState(now: now).exceeded.isEmpty)
            #expect(try store.enforceRetention(now: now).deleted == 0)
        }
    }

    @Test("the count cap keeps the newest events, deleting in bounded batches", arguments: [3, 1_000])
    func byCount(batchSize: Int) throws {
        try withStore { store, _ throws in
            _ = try store.append(try records(100))
            store.retentionPolicy = RetentionPolicy(maxEvents: 30, batchSize: batchSize)
            let report = try store.enforceRetention(now: Self.base)
            #expect(report.deleted == 70)
            #expect(report.boundBy == [.count])
            #expect(report.remainingEvents == 30)
            let left = try store.events(after: 0, limit: 1_000).map(\.record.item)
            #expect(left == (70 ..< 100).map { "item-\($0)" })
        }
    }

    @Test("the size cap deletes the oldest events until file + WAL fit, and the file shrinks")
    func bySize() throws {
        try withStore { store, path throws in
            let padding = String(repeating: "p", count: 90)
            let batch = try (0 ..< 4_000).map { i in
                try record("sku-\(i)-\(padding)", session: "session-\(i % 50)", ts: Self.base + Int64(i))
            }
            _ = try store.append(batch)
            _ = try store.checkpoint()
            let before = try store.retentionState(now: Self.base)
            let cap: Int64 = 160 * 1024
            #expect(before.databaseBytes > 4 * cap)
            store.retentionPolicy = RetentionPolicy(maxDatabaseBytes: cap, batchSize: 500)
            #expect(try store.retentionState(now: Self.base).exceeded == [.size])
            let report = try store.enforceRetention(now: Self.base)
            #expect(report.boundBy == [.size])
            #expect(report.withinPolicy)
            #expect(report.databaseBytes <= cap)
            #expect(report.remainingEvents > 100)
            #expect(report.deleted + report.remainingEvents == 4_000)
            // The file on disk really shrank (incremental vacuum + checkpoint), not just the page count.
            #expect(fileSize(path) + max(fileSize(path + "-wal"), 0) <= cap)
            // Oldest first: what is left is a suffix of the log.
            let left = try store.events(after: 0, limit: 10_000).map(\.record)
            #expect(left == Array(batch.suffix(left.count)))
            #expect(try store.retentionState(now: Self.base).exceeded.isEmpty)
            #expect(try store.integrityCheck() == ["ok"])
        }
    }

    @Test("the size cap does not wait for, or over-delete behind, a reader's open snapshot")
    func bySizeWithReaderSnapshot() throws {
        try withStore { store, path throws in
            _ = try store.append(try records(3_000, prefix: "sku-" + String(repeating: "q", count: 80)))
            _ = try store.checkpoint()
            let reader = try DeviceStoreReader(path: path)
            defer { reader.close() }
            store.retentionPolicy = RetentionPolicy(maxDatabaseBytes: 64 * 1024, batchSize: 500)
            let clock = ContinuousClock()
            let start = clock.now
            let report = try reader.withSnapshot { () throws(StoreError) -> RetentionReport in
                _ = try reader.totals()
                return try store.enforceRetention(now: Self.base)
            }
            #expect(clock.now - start < .seconds(2), "retention must not wait for the reader (busy timeout 5 s)")
            #expect(report.walCheckpointed == false)
            #expect(report.withinPolicy == false)
            #expect(report.remainingEvents > 0)
            // Once the reader is done, the next run finishes the job.
            let later = try store.enforceRetention(now: Self.base)
            #expect(later.walCheckpointed && later.withinPolicy)
            #expect(later.databaseBytes <= 64 * 1024)
        }
    }

    @Test("all caps together report each cap that bound")
    func combined() throws {
        try withStore { store, _ throws in
            _ = try store.append(try records(100, step: 1_000))
            store.retentionPolicy = RetentionPolicy(maxAgeMilliseconds: 80_000, maxEvents: 50, maxDatabaseBytes: 100 << 20)
            let report = try store.enforceRetention(now: Self.base + 99_000)
            #expect(report.deletedByCap == [.age: 19, .count: 31])
            #expect(report.boundBy == [.age, .count])
            #expect(report.remainingEvents == 50)
        }
    }

    @Test("invalid policies are refused")
    func invalidPolicy() throws {
        #expect(throws: StoreError.invalidArgument("")) { try RetentionPolicy(maxAgeMilliseconds: 0).validate() }
        #expect(throws: StoreError.invalidArgument("")) { try RetentionPolicy(maxEvents: -1).validate() }
        #expect(throws: StoreError.invalidArgument("")) { try RetentionPolicy(batchSize: 0).validate() }
        _ = try withTemporaryDirectory { directory throws in
            #expect(throws: StoreError.invalidArgument("")) {
                try DeviceStore(path: directory + "/x.db", options: StoreOptions(retention: RetentionPolicy(maxDatabaseBytes: -5)))
            }
        }
    }
}
