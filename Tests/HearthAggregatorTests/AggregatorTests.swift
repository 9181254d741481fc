#if canImport(Glibc)
import Glibc
#endif
import HearthAggregation
import HearthAggregator
import HearthConfig
import HearthCore
import HearthPrivacy
import HearthTestSupport
import Logging
import Testing

/// A small aggregator on a temporary state directory, with an injected clock.
final class Harness: @unchecked Sendable {
    let directory: String
    var configuration: AggregatorConfiguration
    let catalog: Catalog
    let dimension = 4
    var now: Int64 = 1_700_000_000_000

    init(directory: String, bufferSize: Int = 3, mode: String = "local", budget: Double = 50, perHour: Int = 100) throws {
        self.directory = directory
        var c = AggregatorConfiguration()
        c.stateDirectory = directory + "/state"
        c.signingKeyFile = directory + "/signing.key"
        c.samplingRate = 1
        c.clipNorm = 1
        c.noiseMultiplier = 1
        c.privacyMode = mode
        c.bitWidth = 16
        c.bufferSize = bufferSize
        c.minimumUpdates = 1
        c.roundDeadlineSeconds = 60
        c.epsilonBudget = budget
        c.updatesPerDevicePerHour = perHour
        try c.validate()
        configuration = c
        catalog = try Catalog(ids: (0 ..< 10).map { "item-\($0)" })
        _ = try AggregatorSetup.initialize(c, catalog: catalog, dimension: dimension, now: now)
    }

    func open() throws -> Aggregator {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let clockValue = now
        return try Aggregator(configuration: configuration, store: try AggregatorSetup.openStore(configuration),
                              signer: try AggregatorSetup.loadSigner(configuration), metrics: AggregatorMetrics(),
                              logger: logger, clock: { clockValue })
    }

    var parameterCount: Int { catalog.count * dimension + catalog.count }

    /// A privatized update made exactly as a device makes one, for `version`.
    func envelope(version: UInt64, seed: UInt64, key: UInt8, dimension: Int? = nil) throws -> (bytes: [UInt8], key: String) {
        let d = dimension ?? parameterCount
        let mode: UpdateMode = configuration.privacyMode == "central" ? .central : .local
        let privacy = PrivacyConfiguration(clipNorm: configuration.clipNorm, noiseMultiplier: configuration.noiseMultiplier,
                                           bitWidth: configuration.bitWidth, mode: mode, unit: .device,
                                           headroom: configuration.headroom)
        return try Fixtures.privatizedEnvelope(version: version, key: key, dimension: d, seed: seed, privacy: privacy)
    }
}

func reason(_ outcome: UploadOutcome) -> String? {
    if case .rejected(_, let reason, _, _) = outcome { return reason }
    return nil
}

func status(_ outcome: UploadOutcome) -> Int? {
    if case .rejected(let status, _, _, _) = outcome { return status }
    return nil
}

@Suite("Aggregator (in process)")
struct AggregatorTests {
    @Test("K accepted updates publish a new signed version; a replay is counted once")
    func publishAndReplay() async throws {
        try await withTemporaryDirectory { dir in
            let h = try Harness(directory: dir)
            let aggregator = try h.open()
            let first = try h.envelope(version: 1, seed: 1, key: 1)
            #expect(await aggregator.accept(device: "a", body: first.bytes, idempotencyKeyHeader: first.key) == .accepted(published: nil))
            // The same key again (a retry after a lost answer): answered as a duplicate, not counted.
            #expect(await aggregator.accept(device: "a", body: first.bytes, idempotencyKeyHeader: first.key) == .replayed)
            #expect(await aggregator.bufferedCount == 1)
            // The same key from another device is refused.
            #expect(reason(await aggregator.accept(device: "b", body: first.bytes, idempotencyKeyHeader: first.key)) == "idempotency_key_conflict")
            let second = try h.envelope(version: 1, seed: 2, key: 2)
            #expect(await aggregator.accept(device: "b", body: second.bytes, idempotencyKeyHeader: second.key) == .accepted(published: nil))
            let third = try h.envelope(version: 1, seed: 3, key: 3)
            #expect(await aggregator.accept(device: "c", body: third.bytes, idempotencyKeyHeader: third.key) == .accepted(published: 2))
            let served = await aggregator.currentModel()
            #expect(served.version == 2)
            let model = try ModelFile.decode(Array(served.body.readableBytesView))
            #expect(model.version == 2)
            #expect(model.catalog == h.catalog)
            #expect(await aggregator.bufferedCount == 0)
            let report = try await aggregator.privacyReport()
            #expect(report.dataVersions == 1)
            #expect(report.epsilonSpent > 0)
            #expect(report.versions.map(\.version) == [1, 2])
            #expect(report.versions.last?.updates == 3)
            await aggregator.close()
        }
    }

    @Test("bad uploads are refused with their reason and change nothing")
    func rejections() async throws {
        try await withTemporaryDirectory { dir in
            let h = try Harness(directory: dir)
            let aggregator = try h.open()
            let good = try h.envelope(version: 1, seed: 1, key: 1)

            #expect(reason(await aggregator.accept(device: "a", body: good.bytes, idempotencyKeyHeader: nil)) == "missing_idempotency_key")
            let other = try IdempotencyKey(bytes: [UInt8](repeating: 9, count: 16)).hex
            #expect(reason(await aggregator.accept(device: "a", body: good.bytes, idempotencyKeyHeader: other)) == "idempotency_key_mismatch")

            var flipped = good.bytes
            flipped[100] ^= 0x01
            #expect(reason(await aggregator.accept(device: "a", body: flipped, idempotencyKeyHeader: good.key)) == "checksum_mismatch")
            #expect(status(await aggregator.accept(device: "a", body: flipped, idempotencyKeyHeader: good.key)) == 400)

            #expect(reason(await aggregator.accept(device: "a", body: Array(good.bytes.prefix(50)), idempotencyKeyHeader: good.key)) == "malformed_update")

            let wrongShape = try h.envelope(version: 1, seed: 1, key: 4, dimension: h.parameterCount - 1)
            #expect(reason(await aggregator.accept(device: "a", body: wrongShape.bytes, idempotencyKeyHeader: wrongShape.key)) == "dimension_mismatch")

            let future = try h.envelope(version: 7, seed: 1, key: 5)
            #expect(reason(await aggregator.accept(device: "a", body: future.bytes, idempotencyKeyHeader: future.key)) == "unknown_model_version")
            #expect(status(await aggregator.accept(device: "a", body: future.bytes, idempotencyKeyHeader: future.key)) == 409)

            // NaN clip norm, with the checksum recomputed so only the field is wrong.
            var nan = good.bytes
            let bits = Double.nan.bitPattern
            for j in 0 ..< 8 { nan[48 + j] = UInt8(truncatingIfNeeded: bits >> UInt64(8 * j)) }
            Fixtures.recomputeTrailingChecksum(&nan)
            let nanReason = reason(await aggregator.accept(device: "a", body: nan, idempotencyKeyHeader: good.key))
            #expect(nanReason == "non_finite" || nanReason == "malformed_update", "got \(String(describing: nanReason))")

            // Every coordinate at the 16-bit limit (norm far above the bound), checksum recomputed.
            var loud = good.bytes
            for i in stride(from: 80, to: loud.count - 4, by: 2) {
                loud[i] = 0xFF
                loud[i + 1] = 0x7F
            }
            Fixtures.recomputeTrailingChecksum(&loud)
            #expect(reason(await aggregator.accept(device: "a", body: loud, idempotencyKeyHeader: good.key)) == "norm_bound_exceeded")

            #expect(await aggregator.bufferedCount == 0)
            #expect(await aggregator.currentModel().version == 1)
            // The good one still goes in after all that.
            #expect(await aggregator.accept(device: "a", body: good.bytes, idempotencyKeyHeader: good.key) == .accepted(published: nil))
            await aggregator.close()
        }
    }

    @Test("accepted updates survive a restart: the running sum is rebuilt and publishes the same way")
    func restartResumesBuffer() async throws {
        try await withTemporaryDirectory { dir in
            let h = try Harness(directory: dir)
            let updates = try (1 ... 3).map { try h.envelope(version: 1, seed: UInt64($0), key: UInt8($0)) }
            var aggregator = try h.open()
            for (i, u) in updates.prefix(2).enumerated() {
                #expect(await aggregator.accept(device: "d\(i)", body: u.bytes, idempotencyKeyHeader: u.key) == .accepted(published: nil))
            }
            await aggregator.close()
            aggregator = try h.open()   // a restart
            #expect(await aggregator.bufferedCount == 2)
            // A retry of an update accepted before the restart is still a duplicate.
            #expect(await aggregator.accept(device: "d0", body: updates[0].bytes, idempotencyKeyHeader: updates[0].key) == .replayed)
            #expect(await aggregator.accept(device: "d2", body: updates[2].bytes, idempotencyKeyHeader: updates[2].key) == .accepted(published: 2))
            await aggregator.close()
        }
    }

    @Test("stale updates are refused once the model moved past max_staleness")
    func staleness() async throws {
        try await withTemporaryDirectory { dir in
            let h = try Harness(directory: dir, bufferSize: 1)
            h.configuration.maxStaleness = 1
            let aggregator = try h.open()
            for v in 1 ... 3 {
                let u = try h.envelope(version: UInt64(v), seed: UInt64(v), key: UInt8(v))
                #expect(await aggregator.accept(device: "d", body: u.bytes, idempotencyKeyHeader: u.key) == .accepted(published: UInt64(v + 1)))
            }
            // Now at version 4: version 3 is 1 behind (accepted), version 2 is 2 behind (refused).
            let old = try h.envelope(version: 2, seed: 9, key: 9)
            #expect(reason(await aggregator.accept(device: "d", body: old.bytes, idempotencyKeyHeader: old.key)) == "stale_model_version")
            let recent = try h.envelope(version: 3, seed: 10, key: 10)
            #expect(await aggregator.accept(device: "d", body: recent.bytes, idempotencyKeyHeader: recent.key) == .accepted(published: 5))
            await aggregator.close()
        }
    }

    @Test("the privacy budget stops publication and uploads")
    func budget() async throws {
        try await withTemporaryDirectory { dir in
            // z = 1, q = 1: one version costs several epsilon at delta 1e-6; a budget of 6 allows one.
            let h = try Harness(directory: dir, bufferSize: 1, budget: 6)
            let aggregator = try h.open()
            let first = try h.envelope(version: 1, seed: 1, key: 1)
            #expect(await aggregator.accept(device: "d", body: first.bytes, idempotencyKeyHeader: first.key) == .accepted(published: 2))
            let report = try await aggregator.privacyReport()
            #expect(report.epsilonSpent <= 6)
            #expect(!report.accepting)
            let second = try h.envelope(version: 2, seed: 2, key: 2)
            #expect(reason(await aggregator.accept(device: "d", body: second.bytes, idempotencyKeyHeader: second.key)) == "budget_exhausted")
            #expect(await aggregator.currentModel().version == 2)
            await aggregator.close()
        }
    }

    @Test("one update per device per version; the per-device rate limit answers 429 with a retry time")
    func perDeviceLimits() async throws {
        try await withTemporaryDirectory { dir in
            let h = try Harness(directory: dir, bufferSize: 2, perHour: 2)
            let aggregator = try h.open()
            let first = try h.envelope(version: 1, seed: 1, key: 1)
            #expect(await aggregator.accept(device: "d", body: first.bytes, idempotencyKeyHeader: first.key) == .accepted(published: nil))
            let again = try h.envelope(version: 1, seed: 2, key: 2)
            #expect(reason(await aggregator.accept(device: "d", body: again.bytes, idempotencyKeyHeader: again.key)) == "already_contributed")
            #expect(await aggregator.bufferedCount == 1)
            #expect(await aggregator.accept(device: "e", body: again.bytes, idempotencyKeyHeader: again.key) == .accepted(published: 2))
            // After the publication "d" may contribute again: its second update this hour.
            let second = try h.envelope(version: 2, seed: 3, key: 3)
            #expect(await aggregator.accept(device: "d", body: second.bytes, idempotencyKeyHeader: second.key) == .accepted(published: nil))
            let third = try h.envelope(version: 2, seed: 4, key: 4)
            #expect(await aggregator.accept(device: "f", body: third.bytes, idempotencyKeyHeader: third.key) == .accepted(published: 3))
            let fourth = try h.envelope(version: 3, seed: 5, key: 5)
            let outcome = await aggregator.accept(device: "d", body: fourth.bytes, idempotencyKeyHeader: fourth.key)
            guard case .rejected(429, "rate_limited", _, let retry) = outcome else {
                Issue.record("expected 429 rate_limited, got \(outcome)")
                return
            }
            #expect((retry ?? 0) > 0)
            await aggregator.close()
        }
    }

    @Test("rollback serves an earlier version's parameters as a new version and drops the buffer")
    func rollback() async throws {
        try await withTemporaryDirectory { dir in
            let h = try Harness(directory: dir, bufferSize: 1)
            let aggregator = try h.open()
            let u = try h.envelope(version: 1, seed: 1, key: 1)
            #expect(await aggregator.accept(device: "d", body: u.bytes, idempotencyKeyHeader: u.key) == .accepted(published: 2))
            let v1 = try ModelFile.decode(try #require(await aggregator.storedModel(version: 1)))
            let published = try await aggregator.rollback(to: 1)
            #expect(published == 3)
            let served = try ModelFile.decode(Array(await aggregator.currentModel().body.readableBytesView))
            #expect(served.version == 3)
            #expect(served.parameters == v1.parameters)
            let report = try await aggregator.privacyReport()
            #expect(report.versions.last?.origin == "rollback of 1")
            #expect(report.dataVersions == 1)   // spent privacy stays spent
            await aggregator.close()
        }
    }
}

@Suite("Aggregator store")
struct AggregatorStoreTests {
    @Test("a fleet is enrolled all or none; credentials are kept only as hashes; revocation sticks")
    func fleetEnrolment() throws {
        try withTemporaryDirectory { dir in
            let store = try AggregatorStore(path: dir + "/a.db")
            let first = (0 ..< 3).map { (name: "k-\($0)", tokenHash: DeviceCredential.hash("cred-\($0)")) }
            try store.addDevices(first, now: 1)
            // One clash (k-2) fails the whole batch: k-3 is not enrolled either.
            #expect(throws: (any Error).self) {
                try store.addDevices([(name: "k-3", tokenHash: DeviceCredential.hash("cred-3")),
                                      (name: "k-2", tokenHash: DeviceCredential.hash("other"))], now: 2)
            }
            #expect(try store.devices().map(\.name) == ["k-0", "k-1", "k-2"])
            #expect(try store.device(tokenHash: DeviceCredential.hash("cred-1"))?.name == "k-1")
            #expect(try store.device(tokenHash: DeviceCredential.hash("cred-3")) == nil)
            #expect(try store.revokeDevice(name: "k-1", now: 3))
            #expect(try store.device(tokenHash: DeviceCredential.hash("cred-1"))?.revoked == true)
            #expect(try !store.revokeDevice(name: "k-1", now: 4))
            #expect(try store.integrityCheck() == ["ok"])
            store.close()
        }
    }

    @Test("bearer header parsing")
    func bearer() {
        #expect(DeviceCredential.bearer("Bearer hrth_abc") == "hrth_abc")
        #expect(DeviceCredential.bearer("bearer   hrth_abc  ") == "hrth_abc")
        #expect(DeviceCredential.bearer("Basic dXNlcjpwdw==") == nil)
        #expect(DeviceCredential.bearer("Bearer") == nil)
        #expect(DeviceCredential.bearer(nil) == nil)
        #expect(DeviceCredential.generate().utf8.count == 69)
        #expect(DeviceCredential.generate() != DeviceCredential.generate())
    }
}
