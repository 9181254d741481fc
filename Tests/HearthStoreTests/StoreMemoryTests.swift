import HearthCore
@testable import HearthStore
import HearthTestSupport
import Testing

/// The store's memory stays bounded however long the log grows: `totals()`, which runs on every
/// scheduler tick and status request over the whole log, streams (no temporary b-tree, which
/// `temp_store = MEMORY` holds in RAM and which grew with the number of events), and the page
/// cache has a set size.
@Suite("Store memory bounds", .computeLane)
struct StoreMemoryTests {
    /// The `detail` column of `EXPLAIN QUERY PLAN sql` on the store's connection.
    private func plan(_ store: DeviceStore, _ sql: String) throws -> [String] {
        let statement = try store.connection.prepare("EXPLAIN QUERY PLAN " + sql, cached: false)
        var details: [String] = []
        while try statement.step() { details.append(statement.text(3)) }
        return details
    }

    @Test("totals' queries scan without a temporary b-tree (memory independent of the number of events)")
    func totalsStream() throws {
        try withStore { store, _ in
            _ = try store.append(try records(200, sessions: 7))
            for sql in [SQLiteConnection.totalsQuery, SQLiteConnection.distinctSessionsQuery] {
                let details = try plan(store, sql)
                #expect(!details.isEmpty)
                #expect(!details.contains { $0.contains("TEMP B-TREE") }, "\(sql): \(details)")
            }
            // The check sees a sort when there is one: the two former queries of totals() each
            // built a temporary b-tree over every row.
            let formerPerKind = try plan(store, "SELECT kind, count(*) FROM events GROUP BY kind")
            #expect(formerPerKind.contains { $0.contains("TEMP B-TREE") }, "\(formerPerKind)")
            let formerSummary = try plan(
                store, "SELECT count(*), min(ts_ms), max(ts_ms), min(seq), max(seq), count(DISTINCT session) FROM events")
            #expect(formerSummary.contains { $0.contains("TEMP B-TREE") }, "\(formerSummary)")
        }
    }

    @Test("totals count every kind (absent ones as 0), distinct sessions and the bounds")
    func totalsValues() throws {
        try withStore { store, _ in
            let empty = try store.totals()
            #expect(empty.eventsTotal == 0)
            #expect(empty.perKind == [.view: 0, .click: 0, .cart: 0, .purchase: 0])
            #expect(empty.sessions == 0)
            #expect(empty.firstSequence == nil && empty.lastSequence == nil)
            #expect(empty.oldestTimestampMilliseconds == nil && empty.newestTimestampMilliseconds == nil)

            var batch: [EventRecord] = []
            for i in 0 ..< 30 {
                // Views and purchases only, over sessions a, b, c (and one d).
                let kind: EventKind = i % 3 == 0 ? .purchase : .view
                let session = i == 29 ? "d" : ["a", "b", "c"][i % 3]
                batch.append(try record("item-\(i % 5)", kind, session: session, ts: 5_000 - Int64(i) * 10))
            }
            let appended = try store.append(batch)
            let totals = try store.totals()
            #expect(totals.eventsTotal == 30)
            #expect(totals.perKind == [.view: 20, .click: 0, .cart: 0, .purchase: 10])
            #expect(totals.sessions == 4)
            #expect(totals.firstSequence == appended.sequenceIDs.first)
            #expect(totals.lastSequence == appended.sequenceIDs.last)
            let oldest: Int64 = 5_000 - 29 * 10  // the last event of the batch
            #expect(totals.oldestTimestampMilliseconds == oldest)
            #expect(totals.newestTimestampMilliseconds == 5_000)
        }
    }

    @Test("eventCount(after:) counts the events after a sequence id with a primary-key range search, not a scan")
    func eventCountAfter() throws {
        try withStore { store, _ in
            #expect(try store.eventCount(after: 0) == 0)
            let ids = try store.append(try records(50, sessions: 3)).sequenceIDs
            #expect(try store.eventCount(after: 0) == 50)
            #expect(try store.eventCount(after: ids[9]) == 40)
            #expect(try store.eventCount(after: ids[49]) == 0)
            #expect(try store.eventCount(after: Int64.max) == 0)
            let details = try plan(store, SQLiteConnection.eventCountAfterQuery)
            #expect(details.contains { $0.contains("INTEGER PRIMARY KEY") }, "\(details)")
            #expect(!details.contains { $0.hasPrefix("SCAN") }, "\(details)")
            // The check tells a scan when it sees one: totals' query reads every row.
            #expect(try plan(store, SQLiteConnection.totalsQuery).contains { $0.hasPrefix("SCAN") })
        }
    }

    @Test("the page cache is set to DeviceStore.pageCacheKibibytes (SQLite would use 2,000 KiB)")
    func pageCacheBound() throws {
        try withStore { store, _ in
            let cacheSize = try store.pragma("cache_size")
            #expect(cacheSize == "-\(DeviceStore.pageCacheKibibytes)")
        }
    }
}
