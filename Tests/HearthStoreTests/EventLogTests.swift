import HearthCore
@testable import HearthStore
import HearthTestSupport
import Testing

@Suite("Device store: open, migrations, event log, durability", .computeLane)
struct EventLogTests {
    @Test("a fresh store is migrated to the latest version with WAL, FULL sync, secure delete, incremental vacuum")
    func freshStoreSettings() throws {
        try withStore { store, _ throws in
            #expect(try store.pragma("user_version") == "\(Schema.latestVersion)")
            #expect(try store.pragma("journal_mode") == "wal")
            #expect(try store.pragma("synchronous") == "2") // FULL
            #expect(try store.pragma("secure_delete") == "1")
            #expect(try store.pragma("foreign_keys") == "1")
            #expect(try store.pragma("auto_vacuum") == "2") // INCREMENTAL
            #expect(try store.integrityCheck() == ["ok"])
            #expect(try store.totals().eventsTotal == 0)
        }
    }

    @Test("re-opening is idempotent: no migration runs twice and data stays")
    func reopenIdempotent() throws {
        try withTemporaryDirectory { directory throws in
            let path = directory + "/hearth.db"
            let batch = try records(10)
            do {
                let store = try DeviceStore(path: path)
                _ = try store.append(batch)
                store.close()
            }
            for _ in 0 ..< 3 {
                let store = try DeviceStore(path: path)
                #expect(try store.pragma("user_version") == "\(Schema.latestVersion)")
                #expect(try store.events(after: 0, limit: 100).map(\.record) == batch)
                store.close()
            }
        }
    }

    @Test("a store from a newer schema version is refused with schemaTooNew")
    func newerSchemaRefused() throws {
        try withTemporaryDirectory { directory throws in
            let path = directory + "/hearth.db"
            do {
                let store = try DeviceStore(path: path)
                try store.connection.execute("PRAGMA user_version = \(Schema.latestVersion + 1)")
                store.close()
            }
            let error = #expect(throws: StoreError.self) { try DeviceStore(path: path) }
            #expect(error == .schemaTooNew(""))
            #expect(error?.message.contains("\(Schema.latestVersion + 1)") == true)
            #expect(throws: StoreError.schemaTooNew("")) { try DeviceStoreReader(path: path) }
        }
    }

    @Test("append assigns increasing sequence ids and reads back page by page")
    func appendAndPage() throws {
        try withStore { store, _ throws in
            let first = try records(25)
            let second = try records(10, base: 1_800_000_000_000, prefix: "later")
            let a = try store.append(first)
            let b = try store.append(second)
            #expect(a.count == 25 && b.count == 10)
            let ids = a.sequenceIDs + b.sequenceIDs
            #expect(ids == ids.sorted() && Set(ids).count == 35)
            var cursor: Int64 = 0
            var read: [StoredEvent] = []
            while true {
                let page = try store.events(after: cursor, limit: 8)
                guard let last = page.last else { break }
                #expect(page.count <= 8)
                read += page
                cursor = last.sequence
            }
            #expect(read.map(\.record) == first + second)
            #expect(read.map(\.sequence) == ids)
            #expect(try store.append([]).count == 0)
        }
    }

    @Test("recent events of a session, totals per kind, timestamps and sessions")
    func readAPIs() throws {
        try withStore { store, _ throws in
            let batch = try records(40, sessions: 4)
            _ = try store.append(batch)
            let recent = try store.recentEvents(session: "s-1", limit: 3)
            #expect(recent.map(\.record) == Array(batch.enumerated().filter { $0.offset % 4 == 1 }.map(\.element).suffix(3)))
            #expect(try store.recentEvents(session: "nobody", limit: 5).isEmpty)
            let totals = try store.totals()
            #expect(totals.eventsTotal == 40)
            #expect(totals.perKind == [.view: 10, .click: 10, .cart: 10, .purchase: 10])
            #expect(totals.oldestTimestampMilliseconds == batch[0].timestampMilliseconds)
            #expect(totals.newestTimestampMilliseconds == batch[39].timestampMilliseconds)
            #expect(totals.sessions == 4)
            let sessions = try store.sessions(limit: 10)
            #expect(sessions.map(\.session) == ["s-3", "s-2", "s-1", "s-0"])
            #expect(sessions.allSatisfy { $0.eventCount == 10 })
            #expect(try store.sessions(limit: 2).count == 2)
            #expect(throws: StoreError.invalidArgument("")) { try store.events(after: 0, limit: -1) }
        }
    }

    @Test("an invalid record (mutated after validation) is refused before anything is written")
    func invalidRecordRefused() throws {
        try withStore { store, _ throws in
            var batch = try records(5)
            batch[3].quantity = 0
            let error = #expect(throws: StoreError.self) { try store.append(batch) }
            #expect(error == .invalidArgument(""))
            #expect(error?.message.contains("event 3") == true)
            #expect(try store.totals().eventsTotal == 0)
        }
    }

    @Test("a row violating a schema constraint mid-batch rolls the whole batch back")
    func constraintRollsBack() throws {
        try withStore { store, _ throws in
            let before = try store.append(try records(4, prefix: "kept"))
            var batch = try records(10, prefix: "doomed")
            batch[7].item = String(repeating: "x", count: 200) // CHECK: at most 128 bytes
            let error = #expect(throws: StoreError.self) { try store.append(batch, validating: false) }
            #expect(error == .constraint(""))
            #expect(error?.resultCode == .constraintCheck)
            let stored = try store.events(after: 0, limit: 100)
            #expect(stored.map(\.sequence) == before.sequenceIDs)
            #expect(stored.allSatisfy { $0.record.item.hasPrefix("kept") })
        }
    }

    @Test("a failure after N rows leaves nothing behind and the store stays usable", arguments: [0, 1, 57, 99])
    func simulatedFailureRollsBack(failAfter: Int) throws {
        try withStore { store, _ throws in
            store.failAppendAfterRows = failAfter
            #expect(throws: StoreError.ioError("")) { try store.append(try records(100)) }
            #expect(try store.totals().eventsTotal == 0)
            store.failAppendAfterRows = nil
            let ok = try store.append(try records(3))
            #expect(try store.events(after: 0, limit: 10).map(\.sequence) == ok.sequenceIDs)
        }
    }

    @Test("events survive close and re-open")
    func durableAcrossReopen() throws {
        try withTemporaryDirectory { directory throws in
            let path = directory + "/hearth.db"
            let batch = try records(200)
            var ids: [Int64] = []
            do {
                let store = try DeviceStore(path: path)
                ids = try store.append(batch).sequenceIDs
                store.close()
            }
            let store = try DeviceStore(path: path)
            let stored = try store.events(after: 0, limit: 1_000)
            #expect(stored.map(\.record) == batch)
            #expect(stored.map(\.sequence) == ids)
            #expect(try store.append(try records(1)).sequenceIDs[0] > ids.last ?? 0)
        }
    }

    @Test("closing without a checkpoint leaves the WAL, and re-opening replays it")
    func walReplayAfterCloseWithoutCheckpoint() throws {
        try withTemporaryDirectory { directory throws in
            let path = directory + "/hearth.db"
            var options = StoreOptions()
            options.checkpointOnClose = false
            let batch = try records(300)
            do {
                let store = try DeviceStore(path: path, options: options)
                _ = try store.append(batch)
                store.close()
            }
            #expect(fileSize(path + "-wal") > 0, "the commit should still be in the WAL only")
            let store = try DeviceStore(path: path)
            #expect(try store.events(after: 0, limit: 1_000).map(\.record) == batch)
            #expect(try store.integrityCheck() == ["ok"])
        }
    }

    @Test("a copy of the files taken right after append returns (as at a power cut) holds the batch")
    func crashSnapshotHoldsAcknowledgedBatch() throws {
        try withTemporaryDirectory { directory throws in
            let path = directory + "/hearth.db"
            let copy = directory + "/copy.db"
            let store = try DeviceStore(path: path)
            defer { store.close() }
            let batch = try records(50)
            _ = try store.append(batch)
            // Snapshot the database and WAL while the writer is still open (no checkpoint, no close).
            writeFile(copy, readFile(path))
            writeFile(copy + "-wal", readFile(path + "-wal"))
            #expect(fileSize(copy + "-wal") > 0)
            let recovered = try DeviceStore(path: copy)
            defer { recovered.close() }
            #expect(try recovered.events(after: 0, limit: 100).map(\.record) == batch)
        }
    }

    @Test("a reader keeps its snapshot while the writer commits, and never blocks it")
    func readerSnapshotDoesNotBlockWriter() throws {
        try withStore { store, path throws in
            _ = try store.append(try records(10))
            let reader = try DeviceStoreReader(path: path)
            defer { reader.close() }
            let more = try records(5, prefix: "new")
            try reader.withSnapshot { () throws(StoreError) in
                #expect(try reader.totals().eventsTotal == 10)
                _ = try store.append(more)   // does not wait for the reader
                #expect(try store.totals().eventsTotal == 15)
                #expect(try reader.totals().eventsTotal == 10)         // still the old snapshot
                #expect(try reader.events(after: 0, limit: 100).count == 10)
            }
            #expect(try reader.totals().eventsTotal == 15)
            #expect(try reader.recentEvents(session: "s-0", limit: 100).count == 6)
        }
    }

    @Test("a reader opens a store whose writer has closed (no -wal or -shm left)")
    func readerAfterWriterClosed() throws {
        try withTemporaryDirectory { directory throws in
            let path = directory + "/hearth.db"
            let batch = try records(12)
            do {
                let store = try DeviceStore(path: path)
                _ = try store.append(batch)
                store.close()
            }
            let reader = try DeviceStoreReader(path: path)
            defer { reader.close() }
            #expect(try reader.events(after: 0, limit: 100).map(\.record) == batch)
        }
    }

    @Test("using a closed store throws closed")
    func closedStore() throws {
        try withStore { store, _ throws in
            store.close()
            #expect(throws: StoreError.closed("")) { try store.totals() }
            #expect(throws: StoreError.closed("")) { try store.append(try records(1)) }
        }
    }
}
