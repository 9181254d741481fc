import HearthCore
import HearthPrivacy
@testable import HearthStore
import HearthTestSupport
import Testing

@Suite("Device store: privacy ledger, local state, erasure", .computeLane)
struct LedgerStateEraseTests {
    static let entries: [LedgerEntry] = [
        LedgerEntry(round: 1, mechanism: .discreteGaussian, noiseMultiplier: 1.1, samplingRate: 0.01,
                    clipNorm: 1.0, mode: .local, unit: .device, participated: true),
        LedgerEntry(round: 2, mechanism: .gaussian, noiseMultiplier: 0.7000000000000001, samplingRate: nil,
                    clipNorm: 0.25, mode: .central, unit: .session, participated: false),
        LedgerEntry(round: 3, mechanism: .discreteGaussian, noiseMultiplier: 3.0e-7, samplingRate: 1.0 / 3.0,
                    clipNorm: 12.5, mode: .secureAggregation, unit: .device, participated: false),
        LedgerEntry(round: Int.max, mechanism: .gaussian, noiseMultiplier: .infinity, samplingRate: .leastNonzeroMagnitude,
                    clipNorm: .greatestFiniteMagnitude, mode: .local, unit: .session, participated: true),
    ]

    @Test("ledger entries round-trip exactly, across re-open, and rebuild the same PrivacyLedger")
    func ledgerRoundTrip() throws {
        try withTemporaryDirectory { directory throws in
            let path = directory + "/hearth.db"
            do {
                let store = try DeviceStore(path: path)
                for entry in Self.entries { try store.appendLedgerEntry(entry) }
                #expect(try store.ledgerEntries() == Self.entries)
                store.close()
            }
            let store = try DeviceStore(path: path)
            #expect(try store.ledgerEntries() == Self.entries)
            let reader = try DeviceStoreReader(path: path)
            #expect(try reader.ledgerEntries() == Self.entries)
            // The agent's path: record rounds in a live ledger and persist them; rebuild after a restart.
            let realistic = [
                Self.entries[0],
                LedgerEntry(round: 2, noiseMultiplier: 1.1, samplingRate: 0.01, clipNorm: 1.0, mode: .local, unit: .device, participated: false),
                LedgerEntry(round: 3, noiseMultiplier: 1.3, samplingRate: 0.02, clipNorm: 0.5, mode: .local, unit: .device, participated: true),
            ]
            var live = try PrivacyLedger(delta: 1e-6, epsilonBudget: 10)
            let second = try DeviceStore(path: directory + "/second.db")
            for entry in realistic {
                try live.record(entry)
                try second.appendLedgerEntry(entry)
            }
            second.close()
            let reopened = try DeviceStore(path: directory + "/second.db")
            let rebuilt = try PrivacyLedger(delta: 1e-6, epsilonBudget: 10, entries: try reopened.ledgerEntries())
            #expect(rebuilt.entries == live.entries)
            #expect(rebuilt.epsilonSpent > 0 && rebuilt.epsilonSpent.isFinite)
            #expect(rebuilt.epsilonSpent == live.epsilonSpent)
        }
    }

    @Test("the ledger is append-only and a NaN is refused")
    func ledgerAppendOnly() throws {
        try withStore { store, _ throws in
            try store.appendLedgerEntry(Self.entries[0])
            #expect(throws: StoreError.self) { try store.connection.execute("DELETE FROM privacy_ledger") }
            #expect(throws: StoreError.self) { try store.connection.execute("UPDATE privacy_ledger SET round = 9") }
            var bad = Self.entries[0]
            bad.noiseMultiplier = .nan
            #expect(throws: StoreError.invalidArgument("")) { try store.appendLedgerEntry(bad) }
            #expect(try store.ledgerEntries() == [Self.entries[0]])
        }
    }

    @Test("a ledger entry and its upload are recorded together or not at all")
    func ledgerWithOutboxIsAtomic() throws {
        try withStore { store, _ throws in
            try store.appendLedgerEntry(Self.entries[0], enqueueing: [9], idempotencyKey: "r1", modelVersion: 1, createdAt: 10)
            #expect(throws: StoreError.duplicateKey("")) {
                try store.appendLedgerEntry(Self.entries[1], enqueueing: [8], idempotencyKey: "r1", modelVersion: 2, createdAt: 20)
            }
            #expect(try store.ledgerEntries() == [Self.entries[0]])
            #expect(try store.pending(limit: 10).map(\.payload) == [[9]])
        }
    }

    @Test("local state: blobs, little-endian float32 embeddings and the model version")
    func localState() throws {
        try withStore { store, _ throws in
            #expect(try store.state("missing") == nil)
            try store.putState("blob", [0, 1, 2, 255])
            #expect(try store.state("blob") == [0, 1, 2, 255])
            try store.putState("blob", [], now: 5)
            #expect(try store.state("blob") == [])
            let embedding: [Float] = [1, -2.5, .pi, 0, -0.0, .greatestFiniteMagnitude]
            try store.putFloats(LocalStateKey.deviceEmbedding, embedding)
            #expect(try store.floats(LocalStateKey.deviceEmbedding)?.map(\.bitPattern) == embedding.map(\.bitPattern))
            #expect(try store.state(LocalStateKey.deviceEmbedding)?.prefix(4) == [0x00, 0x00, 0x80, 0x3F]) // 1.0f LE
            try store.putUInt64(LocalStateKey.modelVersion, 0x0102_0304_0506_0708)
            #expect(try store.uint64(LocalStateKey.modelVersion) == 0x0102_0304_0506_0708)
            #expect(try store.state(LocalStateKey.modelVersion) == [8, 7, 6, 5, 4, 3, 2, 1])
            #expect(throws: StoreError.corrupt("")) { try store.uint64("blob") }
            #expect(try store.deleteState("blob"))
            #expect(try store.deleteState("blob") == false)
            #expect(try store.state("blob") == nil)
            #expect(throws: StoreError.invalidArgument("")) { try store.putState("", [1]) }
        }
    }

    @Test("eraseAll removes events, outbox and local state from the file, keeps the ledger, ids keep rising")
    func eraseAll() throws {
        let marker = "ERASE-ME-7f3a9c51"
        try withStore { store, path throws in
            var batch = try records(500)
            batch[123].item = marker
            batch[321].session = marker + "-session"
            let ids = try store.append(batch).sequenceIDs
            try store.enqueue(payload: Array((marker + "-payload").utf8), idempotencyKey: "k", modelVersion: 1, createdAt: 1)
            try store.putState("note", Array((marker + "-state").utf8))
            try store.appendLedgerEntry(Self.entries[0])
            _ = try store.checkpoint()
            // Control: before erasure the marker is in the file, so the check below can fail.
            let presentBefore = contains(readFile(path) + readFile(path + "-wal"), marker)
            #expect(presentBefore)

            let report = try store.eraseAll()
            #expect(report == EraseReport(events: 500, outbox: 1, localState: 1, walTruncated: true))
            #expect(try store.totals().eventsTotal == 0)
            #expect(try store.pendingCount() == 0)
            #expect(try store.state("note") == nil)
            #expect(try store.ledgerEntries() == [Self.entries[0]])
            let bytes = readFile(path) + readFile(path + "-wal")
            let markerLeft = contains(bytes, marker)
            let otherItemLeft = contains(bytes, "item-42")
            #expect(!markerLeft, "an erased item id is still in the database or WAL file")
            #expect(!otherItemLeft, "an erased item id is still in the database or WAL file")
            #expect(try store.integrityCheck() == ["ok"])
            let next = try store.append(try records(1))
            #expect(next.sequenceIDs[0] > ids.last ?? .max)
        }
    }

    @Test("erasure while a reader holds a snapshot commits, reports the WAL not yet truncated, and a later checkpoint clears it")
    func eraseWithOpenReader() throws {
        let marker = "SNAPSHOT-ERASE-4d21"
        try withStore(StoreOptions(busyTimeoutMilliseconds: 200)) { store, path throws in
            var batch = try records(50)
            batch[10].item = marker
            _ = try store.append(batch)
            let reader = try DeviceStoreReader(path: path)
            defer { reader.close() }
            let report = try reader.withSnapshot { () throws(StoreError) -> EraseReport in
                #expect(try reader.totals().eventsTotal == 50)
                let report = try store.eraseAll()
                #expect(try reader.totals().eventsTotal == 50) // the reader's snapshot is unchanged
                return report
            }
            #expect(report.events == 50)
            #expect(report.walTruncated == false)
            #expect(try reader.totals().eventsTotal == 0)
            #expect(try store.checkpoint())
            let leaked = contains(readFile(path) + readFile(path + "-wal"), marker)
            #expect(!leaked)
        }
    }

    @Test("erasure is durable across re-open")
    func eraseDurable() throws {
        try withTemporaryDirectory { directory throws in
            let path = directory + "/hearth.db"
            do {
                let store = try DeviceStore(path: path)
                _ = try store.append(try records(20))
                _ = try store.eraseAll()
                store.close()
            }
            let store = try DeviceStore(path: path)
            #expect(try store.totals().eventsTotal == 0)
        }
    }
}
