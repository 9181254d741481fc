@testable import HearthAggregator
import HearthStore
import HearthTestSupport
import Testing

/// Power loss for the aggregator's store (issue 8), as `DeviceStorePowerLossTests` does for the
/// device store: `AggregatorStore` runs through the recording `PowerLossVFS`; at seeded random
/// I/O events and after every acknowledged operation a power-loss image is built and opened
/// with the real `AggregatorStore`. Every image must pass `integrity_check` and hold exactly the
/// acknowledged enrolments, accepted updates (by idempotency key, with their bytes and the
/// running coordinate sum a restart refolds) and published versions (plus, for a cut inside an
/// operation, all of it or none), and accept a further update.
///
/// `HEARTH_POWER_SYNCHRONOUS=NORMAL` shows the test failing without fsync at commit.
@Suite("Aggregator store: power loss (recording VFS)", .computeLane)
struct AggregatorStorePowerLossTests {
    struct StoredUpdate: Equatable {
        var key: [UInt8]
        var device: String
        var modelVersion: UInt64
        var payload: [UInt8]
    }

    struct StoredVersion: Equatable {
        var record: VersionRecord
        var model: [UInt8]
        var signature: [UInt8]
    }

    /// What the store holds, as read back and as the acknowledged operations say.
    struct Contents: Equatable, CustomStringConvertible {
        var devices: [DeviceRecord] = []
        /// Every accepted key (pending or folded) with its device and model version.
        var accepted: [[UInt8]: String] = [:]
        var pending: [StoredUpdate] = []
        /// Coordinate-wise sum of the pending updates' 16-bit coordinates: what a restarted
        /// aggregator folds back into its buffer.
        var runningSum: [Int64] = []
        var versions: [StoredVersion] = []
        var currentVersion: UInt64?

        var description: String {
            "\(devices.count) devices, \(accepted.count) accepted updates (\(pending.count) pending), "
                + "\(versions.count) versions, current \(currentVersion.map(String.init) ?? "none")"
        }

        mutating func recomputeSum() {
            var sum: [Int64] = []
            for update in pending {
                let coordinates = update.payload.count / 2
                if sum.count < coordinates { sum += [Int64](repeating: 0, count: coordinates - sum.count) }
                for i in 0 ..< coordinates {
                    sum[i] += Int64(Int16(bitPattern: UInt16(update.payload[2 * i]) | UInt16(update.payload[2 * i + 1]) << 8))
                }
            }
            runningSum = sum
        }
    }

    static func readContents(_ store: AggregatorStore, keys: [[UInt8]]) throws -> Contents {
        var contents = Contents()
        contents.devices = try store.devices()
        for key in keys {
            if let found = try store.update(key: key) { contents.accepted[key] = "\(found.device)@\(found.modelVersion)" }
        }
        contents.pending = try store.pendingUpdates().map {
            StoredUpdate(key: $0.key, device: $0.device, modelVersion: $0.modelVersion, payload: $0.payload)
        }
        contents.recomputeSum()
        for record in try store.versions() {
            let stored = try store.versionContents(record.version)
            contents.versions.append(StoredVersion(record: record, model: stored?.model ?? [], signature: stored?.signature ?? []))
        }
        contents.currentVersion = try store.currentVersion()
        return contents
    }

    @Test("every power-loss image opens, passes integrity_check and holds every accepted update and published version")
    func aggregatorStoreSurvivesPowerLoss() throws {
        let campaign = try PowerLossCampaign(name: "aggregator", defaultSeed: 20_261_131, cutProbability: 0.12)
        let path = campaign.storeDirectory + "/aggregator.db"
        func open() throws -> AggregatorStore {
            let store = try AggregatorStore(path: path, vfsName: campaign.vfs.name)
            if let weakened = campaign.weakenedSynchronous {
                try store.connection.execute("PRAGMA synchronous = \(weakened)")
            }
            return store
        }

        var store = try open()
        var acknowledged = Contents()
        var keys: [[UInt8]] = []
        var now: Int64 = 1_700_000_000_000
        var operationsAcknowledged = 0
        var perKind: [String: Int] = [:]
        var lostImages = 0
        var foundInFlight = 0
        var failures: [String] = []
        var failureCount = 0
        var integrityFailures = 0
        func fail(_ text: String) {
            failureCount += 1
            if failures.count < 10 { failures.append(text) }
        }

        func randomBytes(_ count: Int) -> [UInt8] {
            (0 ..< count).map { _ in UInt8(truncatingIfNeeded: campaign.operations.next()) }
        }

        func check(_ directory: String, before: Contents, after: Contents?, keys: [[UInt8]], where cut: String) throws {
            let image = try AggregatorStore(path: directory + "/aggregator.db")
            defer { image.close() }
            let integrity = try image.integrityCheck()
            guard integrity == ["ok"] else {
                integrityFailures += 1
                fail("\(cut): integrity_check \(integrity.prefix(3))")
                return
            }
            let found = try Self.readContents(image, keys: keys)
            if found == before {
            } else if let after, found == after {
                foundInFlight += 1
            } else {
                lostImages += 1
                fail("\(cut): found \(found), acknowledged \(before)")
            }
            // Keeps working: one more update is accepted and read back.
            let key = [UInt8](repeating: 0xEE, count: 16)
            let devices = found.devices.filter { $0.revokedMilliseconds == nil }
            guard let device = devices.first?.name else { return }
            let payload: [UInt8] = [1, 0, 2, 0, 3, 0]
            try image.insertUpdate(key: key, device: device, modelVersion: found.currentVersion ?? 0, payload: payload, now: now + 1)
            let pending = try image.pendingUpdates()
            if pending.last?.key != key || pending.last?.payload != payload || pending.count != found.pending.count + 1 {
                fail("\(cut): the update accepted after restart was not read back")
            }
            let integrityAfter = try image.integrityCheck()
            if integrityAfter != ["ok"] { fail("\(cut): integrity_check after insert \(integrityAfter.prefix(3))") }
        }

        try campaign.examine(campaign.vfs.takeAutomaticCuts()) { directory in
            try check(directory, before: Contents(), after: nil, keys: [], where: "create")
        }

        var deviceCount = 0
        for step in 0 ..< 120 {
            var after = acknowledged
            var afterKeys = keys
            now += Int64(campaign.operations.next(in: 1 ... 60_000))
            let roll = campaign.operations.nextUnit()
            let label: String
            let active = acknowledged.devices.filter { $0.revokedMilliseconds == nil }
            if active.count < 2 || roll < 0.08 {
                label = "enrol"
                deviceCount += 1
                let name = "kiosk-\(deviceCount)"
                try store.addDevice(name: name, tokenHash: randomBytes(32), now: now)
                after.devices.append(DeviceRecord(name: name, createdMilliseconds: now, revokedMilliseconds: nil, acceptedUpdates: 0))
                after.devices.sort { $0.name < $1.name }
            } else if roll < 0.12 {
                label = "revoke"
                let name = active[campaign.operations.next(in: 0 ... active.count - 1)].name
                #expect(try store.revokeDevice(name: name, now: now))
                if let index = after.devices.firstIndex(where: { $0.name == name }) { after.devices[index].revokedMilliseconds = now }
            } else if roll < 0.8 {
                label = "update"
                let device = active[campaign.operations.next(in: 0 ... active.count - 1)].name
                let key = randomBytes(16)
                let payload = randomBytes(2 * campaign.operations.next(in: 16 ... 6_000))
                let version = acknowledged.currentVersion ?? 0
                try store.insertUpdate(key: key, device: device, modelVersion: version, payload: payload, now: now)
                afterKeys.append(key)
                after.accepted[key] = "\(device)@\(version)"
                after.pending.append(StoredUpdate(key: key, device: device, modelVersion: version, payload: payload))
                if let index = after.devices.firstIndex(where: { $0.name == device }) { after.devices[index].acceptedUpdates += 1 }
            } else if roll < 0.95 {
                label = "publish"
                let number = (acknowledged.versions.last?.record.version ?? 0) + 1
                let record = VersionRecord(version: number, createdMilliseconds: now, parent: acknowledged.currentVersion,
                                           updates: acknowledged.pending.count, noiseStandardDeviation: 1.5,
                                           epsilon: Double(number) * 0.25, delta: 1e-5, dataVersions: Int(number),
                                           origin: number == 1 ? "init" : "fedbuff")
                let model = randomBytes(campaign.operations.next(in: 200 ... 30_000))
                let signature = randomBytes(64)
                try store.publish(record, model: model, signature: signature, optimizer: randomBytes(campaign.operations.next(in: 0 ... 4_000)))
                after.versions.append(StoredVersion(record: record, model: model, signature: signature))
                after.pending = []
                after.currentVersion = number
            } else {
                label = "reopen"
                store.close()
                store = try open()
            }
            after.recomputeSum()
            operationsAcknowledged += 1
            perKind[label, default: 0] += 1

            try campaign.examine(campaign.vfs.takeAutomaticCuts()) { directory in
                try check(directory, before: acknowledged, after: after, keys: afterKeys, where: "step \(step) (\(label)), inside")
            }
            acknowledged = after
            keys = afterKeys
            try campaign.examine([campaign.vfs.capture()]) { directory in
                try check(directory, before: acknowledged, after: nil, keys: keys, where: "step \(step) (\(label)), after")
            }
        }
        #expect(try Self.readContents(store, keys: keys) == acknowledged)
        store.close()

        let extraFigures = "; integrity_check failed in \(integrityFailures)"
        print("power-loss aggregator store: seed \(campaign.seed), synchronous \(campaign.weakenedSynchronous ?? "FULL"), "
              + "\(operationsAcknowledged) operations acknowledged (\(perKind.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))), "
              + "\(campaign.vfs.recordedEvents) I/O events recorded, \(campaign.cuts) cuts, \(campaign.images) images checked "
              + "(\(campaign.tearingSummary)); in-flight operation found whole in \(foundInFlight); "
              + "images missing acknowledged data or holding part of an operation: \(lostImages)"
              + "\(extraFigures); failed checks \(failureCount); final \(acknowledged)")
        for failure in failures { print("power-loss aggregator store: \(failure)") }
        #expect(campaign.images > 200)
        #expect(lostImages == 0)
        #expect(failureCount == 0, "first failures: \(failures)")
    }
}
