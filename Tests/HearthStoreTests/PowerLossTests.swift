import HearthCore
import HearthPrivacy
@testable import HearthStore
import HearthTestSupport
import Testing

/// Power loss for the device store (issue 8): the store runs through `PowerLossVFS`, which
/// records what is durable (synced) and what is not; at seeded random I/O events (inside
/// transactions, commits and checkpoints) and after every acknowledged operation a power-loss
/// image is built (synced contents plus a random subset of the unsynced writes, whole, torn per
/// 512-byte sector, or with garbage sectors) and opened with the real `DeviceStore`.
///
/// Every image must pass `integrity_check`, hold exactly what was acknowledged before the cut
/// (plus, for a cut inside an operation, that whole operation or nothing of it), never show
/// less privacy spent than acknowledged, and accept and return a further append.
///
/// `HEARTH_POWER_SYNCHRONOUS=NORMAL swift test --filter PowerLoss` shows the test failing when
/// commits are not fsynced (`PowerLossCampaign`); `HEARTH_POWER_SEED=N` picks another seed.
@Suite("Device store: power loss (recording VFS)", .computeLane)
struct DeviceStorePowerLossTests {
    /// What the store holds, as the test can read it back and as the acknowledged operations say.
    struct Contents: Equatable, CustomStringConvertible {
        var events: [StoredEvent] = []
        var ledger: [LedgerEntry] = []
        var outbox: [OutboxEntry] = []
        var lastDelivered: String?
        var lastTrainedSequence: UInt64?

        struct OutboxEntry: Equatable {
            var key: String
            var modelVersion: UInt64
            var payload: [UInt8]
        }

        var description: String {
            "\(events.count) events (last seq \(events.last?.sequence ?? 0)), \(ledger.count) ledger entries, "
                + "\(outbox.count) queued uploads, last delivered \(lastDelivered ?? "none"), last trained seq \(lastTrainedSequence.map(String.init) ?? "none")"
        }
    }

    /// One operation on the store and what it leaves when acknowledged.
    enum Operation {
        case append([EventRecord])
        case round(LedgerEntry, key: String, payload: [UInt8], lastTrained: UInt64)
        case deliver(String)
        case checkpoint
        case reopen

        var label: String {
            switch self {
            case .append: "append"
            case .round: "round"
            case .deliver: "deliver"
            case .checkpoint: "checkpoint"
            case .reopen: "reopen"
            }
        }
    }

    static func readContents(_ store: DeviceStore) throws -> Contents {
        var contents = Contents()
        contents.events = try store.events(after: 0, limit: 1_000_000)
        contents.ledger = try store.ledgerEntries()
        contents.outbox = try store.pending(limit: 1_000_000).map {
            Contents.OutboxEntry(key: $0.idempotencyKey, modelVersion: $0.modelVersion, payload: $0.payload)
        }
        contents.lastDelivered = try store.lastDelivery()?.idempotencyKey
        contents.lastTrainedSequence = try store.uint64("last_trained_seq")
        return contents
    }

    /// The privacy spent by `entries` (what the agent enforces), cached by count (the ledger only grows).
    final class EpsilonCache {
        var byCount: [Int: Double] = [:]

        func epsilon(_ entries: [LedgerEntry]) throws -> Double {
            if let cached = byCount[entries.count] { return cached }
            let value = try PrivacyLedger(delta: 1e-5, epsilonBudget: 1e12, entries: entries).epsilonSpent
            byCount[entries.count] = value
            return value
        }
    }

    @Test("every power-loss image opens, passes integrity_check and holds every acknowledged operation")
    func deviceStoreSurvivesPowerLoss() throws {
        let campaign = try PowerLossCampaign(name: "device", defaultSeed: 20_261_130, cutProbability: 0.12)
        let path = campaign.storeDirectory + "/hearth.db"
        var options = StoreOptions()
        options.vfsName = campaign.vfs.name
        func open() throws -> DeviceStore {
            let store = try DeviceStore(path: path, options: options)
            if let weakened = campaign.weakenedSynchronous {
                try store.connection.execute("PRAGMA synchronous = \(weakened)")
            }
            return store
        }

        var store = try open()
        var acknowledged = Contents()
        let epsilons = EpsilonCache()
        var operationsAcknowledged = 0
        var perKind: [String: Int] = [:]
        var lostImages = 0
        var foundInFlight = 0
        var failures: [String] = []
        var failureCount = 0
        var integrityFailures = 0
        var epsilonRegressions = 0
        func fail(_ text: String) {
            failureCount += 1
            if failures.count < 10 { failures.append(text) }
        }
        var timestamp: Int64 = 1_700_000_000_000
        var round = 0

        /// Opens the image with the real store code and checks it against `before` (acknowledged)
        /// and `after` (with the in-flight operation, if the cut fell inside one).
        func check(_ directory: String, before: Contents, after: Contents?, where cut: String) throws {
            let image = try DeviceStore(path: directory + "/hearth.db")
            defer { image.close() }
            let integrity = try image.integrityCheck()
            guard integrity == ["ok"] else {
                integrityFailures += 1
                fail("\(cut): integrity_check \(integrity.prefix(3))")
                return
            }
            let found = try Self.readContents(image)
            if found == before {
                // The cut kept exactly what was acknowledged.
            } else if let after, found == after {
                foundInFlight += 1
            } else {
                lostImages += 1
                fail("\(cut): found \(found), acknowledged \(before)")
            }
            let spent = try epsilons.epsilon(found.ledger)
            let acknowledgedSpent = try epsilons.epsilon(before.ledger)
            if spent < acknowledgedSpent {
                epsilonRegressions += 1
                fail("\(cut): epsilon spent went back from \(acknowledgedSpent) to \(spent)")
            }
            // The store keeps working: one more batch is stored after everything found.
            let more = try EventRecord(item: "after-power-loss", kind: .purchase, session: "restart", quantity: 2,
                                       timestampMilliseconds: timestamp + 1)
            let appended = try image.append([more])
            let last = found.events.last?.sequence ?? 0
            let readBack = try image.events(after: last, limit: 10)
            if appended.sequenceIDs.count != 1 || readBack.map(\.record) != [more] || (appended.sequenceIDs.first ?? 0) <= last {
                fail("\(cut): append after restart returned \(appended.sequenceIDs), read back \(readBack.count)")
            }
            let integrityAfter = try image.integrityCheck()
            if integrityAfter != ["ok"] { fail("\(cut): integrity_check after append \(integrityAfter.prefix(3))") }
        }

        // The cuts taken while the store was being created: acknowledged is the empty store.
        try campaign.examine(campaign.vfs.takeAutomaticCuts()) { directory in
            try check(directory, before: Contents(), after: nil, where: "create")
        }

        for step in 0 ..< 140 {
            let roll = campaign.operations.nextUnit()
            let operation: Operation
            if roll < 0.55 {
                let count = campaign.operations.next(in: 1 ... 12)
                var batch: [EventRecord] = []
                for i in 0 ..< count {
                    timestamp += Int64(campaign.operations.next(in: 1 ... 5_000))
                    batch.append(try EventRecord(item: "item-\(campaign.operations.next(in: 0 ... 499))",
                                                 kind: EventKind.allCases[i % EventKind.allCases.count],
                                                 session: "s-\(campaign.operations.next(in: 0 ... 9))",
                                                 quantity: i % 4 >= 2 ? Int32(i % 5 + 1) : nil,
                                                 timestampMilliseconds: timestamp))
                }
                operation = .append(batch)
            } else if roll < 0.72 {
                round += 1
                let payload = (0 ..< campaign.operations.next(in: 1 ... 24_000)).map { _ in UInt8(truncatingIfNeeded: campaign.operations.next()) }
                let entry = LedgerEntry(round: round, noiseMultiplier: 1.1, samplingRate: 0.05, clipNorm: 1.0,
                                        mode: .local, unit: .device, participated: true)
                operation = .round(entry, key: "round-\(round)-\(campaign.operations.next())", payload: payload,
                                   lastTrained: UInt64(acknowledged.events.last?.sequence ?? 0))
            } else if roll < 0.84, let oldest = acknowledged.outbox.first {
                operation = .deliver(oldest.key)
            } else if roll < 0.94 {
                operation = .checkpoint
            } else {
                operation = .reopen
            }

            var after = acknowledged
            switch operation {
            case let .append(batch):
                let result = try store.append(batch)
                after.events += zip(result.sequenceIDs, batch).map { StoredEvent(sequence: $0, record: $1) }
            case let .round(entry, key, payload, lastTrained):
                var trained = [UInt8](repeating: 0, count: 8)
                for j in 0 ..< 8 { trained[j] = UInt8(truncatingIfNeeded: lastTrained >> UInt64(8 * j)) }
                try store.appendLedgerEntry(entry, enqueueing: payload, idempotencyKey: key, modelVersion: UInt64(round),
                                            createdAt: timestamp, state: [("last_trained_seq", trained)])
                after.ledger.append(entry)
                after.outbox.append(Contents.OutboxEntry(key: key, modelVersion: UInt64(round), payload: payload))
                after.lastTrainedSequence = lastTrained
            case let .deliver(key):
                #expect(try store.markDelivered(idempotencyKey: key, at: timestamp))
                after.outbox.removeAll { $0.key == key }
                after.lastDelivered = key
            case .checkpoint:
                try store.checkpoint()
            case .reopen:
                store.close()
                store = try open()
            }
            operationsAcknowledged += 1
            perKind[operation.label, default: 0] += 1

            // Cuts inside the operation: the acknowledged state, or it plus the whole operation.
            try campaign.examine(campaign.vfs.takeAutomaticCuts()) { directory in
                try check(directory, before: acknowledged, after: after, where: "step \(step) (\(operation.label)), inside")
            }
            acknowledged = after
            // A cut right after the acknowledgement: all of it must be there.
            try campaign.examine([campaign.vfs.capture()]) { directory in
                try check(directory, before: acknowledged, after: nil, where: "step \(step) (\(operation.label)), after")
            }
        }
        // The recording store itself still holds everything.
        #expect(try Self.readContents(store) == acknowledged)
        store.close()

        let extraFigures = "; integrity_check failed in \(integrityFailures); epsilon spent below the acknowledged in \(epsilonRegressions)"
        print("power-loss device store: seed \(campaign.seed), synchronous \(campaign.weakenedSynchronous ?? "FULL"), "
              + "\(operationsAcknowledged) operations acknowledged (\(perKind.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))), "
              + "\(campaign.vfs.recordedEvents) I/O events recorded, \(campaign.cuts) cuts, \(campaign.images) images checked "
              + "(\(campaign.tearingSummary)); in-flight operation found whole in \(foundInFlight); "
              + "images missing acknowledged data or holding part of an operation: \(lostImages)"
              + "\(extraFigures); failed checks \(failureCount); final \(acknowledged)")
        for failure in failures { print("power-loss device store: \(failure)") }
        #expect(campaign.images > 200)
        #expect(lostImages == 0)
        #expect(failureCount == 0, "first failures: \(failures)")
    }
}
