import HearthCore
import HearthTestSupport
import Testing

@Suite("Device training round", .computeLane)
struct DeviceTrainingTests {
    /// `model` with its float master replaced by its int8 table dequantised: the start a device
    /// that keeps no master trains from, so `run` on it is the reference for `stream`.
    func servedStart(_ model: Model) throws -> Model {
        try Model(version: model.version, catalog: model.catalog, parameters: model.table.dequantized(), table: model.table,
                  encoder: model.encoder)
    }

    func records(_ items: [(String, EventKind, String)]) throws -> [EventRecord] {
        try items.enumerated().map { offset, entry in
            try EventRecord(item: entry.0, kind: entry.1, session: entry.2, timestampMilliseconds: Int64(1_000 * offset))
        }
    }

    @Test("the device update is dense and equals trained minus start")
    func denseUpdate() throws {
        let model = try Fixtures.randomModel(items: 30, dimension: 8, seed: 2)
        let events = try records([("item-1", .view, "a"), ("item-2", .cart, "a"), ("item-3", .purchase, "a"),
                                  ("item-7", .click, "b"), ("item-9", .purchase, "b"), ("unknown", .view, "b")])
        var rng = Xoshiro256(seed: 1)
        let result = DeviceTraining().run(model: model, records: events, local: [], using: &rng)
        #expect(result.update.count == model.parameters.parameterCount)
        #expect(result.eventsUsed == 5)
        #expect(result.eventsSkipped == 1)
        #expect(result.sessionUpdates.isEmpty)
        let trained = result.parameters.flattened()
        let start = model.parameters.flattened()
        for i in result.update.indices { #expect(result.update[i] == trained[i] - start[i]) }
        #expect(result.update.contains { $0 != 0 })
        #expect(result.local.count == 8)
    }

    @Test("per session: each contribution depends on its own session only, and they sum to the update")
    func perSessionIndependence() throws {
        // Two items: the one sampled negative is always the other item, so training does not
        // depend on the generator and contributions can be compared exactly.
        let model = try Fixtures.randomModel(items: 2, dimension: 4, seed: 2)
        let a = try records([("item-0", .view, "a"), ("item-1", .cart, "a"), ("item-0", .purchase, "a")])
        let b = try records([("item-1", .click, "b"), ("item-0", .purchase, "b"), ("item-1", .purchase, "b")])
        let training = DeviceTraining(epochs: 2)
        var rng = Xoshiro256(seed: 4)
        let both = training.run(model: model, records: a + b, local: [], perSession: true, using: &rng)
        let onlyB = training.run(model: model, records: b, local: [], perSession: true, using: &rng)
        #expect(both.sessionUpdates.count == 2)
        #expect(both.sessionUpdates[1] == onlyB.sessionUpdates[0], "b's contribution must not depend on a")
        for i in both.update.indices {
            let summed = both.sessionUpdates[0][i] + both.sessionUpdates[1][i]
            #expect(abs(summed - both.update[i]) <= 1e-6 * (1 + abs(both.update[i])))
        }
        // The check can fail: differencing a sequential pass (b trained after a) gives another
        // contribution for b.
        let sequentialA = training.run(model: model, records: a, local: [], using: &rng)
        let sequentialAB = training.run(model: model, records: a + b, local: [], using: &rng)
        let differenced = zip(sequentialAB.update, sequentialA.update).map { $0 - $1 }
        #expect(differenced != onlyB.sessionUpdates[0])
    }

    @Test("streaming, device unit: one contribution, equal to run's update from the dequantised table")
    func streamDeviceUnit() throws {
        let model = try Fixtures.randomModel(items: 30, dimension: 8, seed: 2)
        let events = try records([("item-1", .view, "a"), ("item-2", .cart, "a"), ("item-3", .purchase, "a"),
                                  ("item-7", .click, "b"), ("item-9", .purchase, "b"), ("unknown", .view, "b")])
        var rng = Xoshiro256(seed: 1)
        let reference = DeviceTraining(epochs: 2).run(model: try servedStart(model), records: events, local: [], using: &rng)
        rng = Xoshiro256(seed: 1)
        var handed: [[Float]] = []
        let summary = DeviceTraining(epochs: 2).stream(model: model.droppingMaster(), records: events, local: [],
                                                       using: &rng) { delta in
            handed.append(delta.dense())
        }
        #expect(summary.completed)
        #expect(summary.contributions == 1 && handed.count == 1)
        #expect(handed.first == reference.update)
        #expect(summary.local == reference.local)
        #expect(summary.eventsUsed == 5 && summary.eventsSkipped == 1 && summary.sessions == 2)
        #expect(model.parameters == (try Fixtures.randomModel(items: 30, dimension: 8, seed: 2)).parameters, "the model is untouched")
        // The check can fail: training from the float master gives another update.
        rng = Xoshiro256(seed: 1)
        let fromMaster = DeviceTraining(epochs: 2).run(model: model, records: events, local: [], using: &rng)
        #expect(fromMaster.update != handed.first)
    }

    @Test("streaming keeps only the rows the round touches; the update is zero on every other row")
    func streamTouchesFewRows() throws {
        let items = 5_000, dimension = 8
        let model = try Fixtures.randomModel(items: items, dimension: dimension, seed: 5).droppingMaster()
        #expect(model.master == nil)
        let events = try records((0 ..< 12).map { ("item-\($0 * 7)", EventKind.click, "s") })
        let training = DeviceTraining(trainer: Trainer(configuration: TrainingConfiguration(negatives: 4)))
        var rng = Xoshiro256(seed: 3)
        var update: [Float] = []
        var rowsHeld = 0
        _ = training.stream(model: model, records: events, local: [], using: &rng) { delta in
            update = delta.dense()
            rowsHeld = delta.count
        }
        #expect(rowsHeld == items * dimension + items, "the update is dense")
        #expect(update.count == rowsHeld)
        var changedRows = Set<Int>()
        for row in 0 ..< items where (0 ..< dimension).contains(where: { update[row * dimension + $0] != 0 }) {
            changedRows.insert(row)
        }
        // 12 steps x (1 target + 4 negatives) rows at most, plus the history rows (the targets).
        #expect(!changedRows.isEmpty && changedRows.count <= 12 * 5)
        var overlay = ParameterOverlay(base: model.table)
        var local = [Float](repeating: 0, count: dimension)
        rng = Xoshiro256(seed: 3)
        let sequence = (0 ..< 12).map { Event(item: Int32($0 * 7), kind: .click, session: 1, timestamp: Int64($0)) }
        training.trainer.train(sequence: sequence[...], parameters: &overlay, local: &local, using: &rng)
        #expect(overlay.touchedItems.count <= 12 * 5)
        #expect(overlay.embeddings.count == overlay.touchedItems.count * dimension, "only touched rows are held")
        overlay.reset()
        #expect(overlay.touchedItems.isEmpty && overlay.embeddings.isEmpty && overlay.bias == model.table.bias)
        #expect(overlay.update.dense().allSatisfy { $0 == 0 })
    }

    @Test("streaming, session unit: the last k sessions' contributions, as run computes them")
    func streamSessionUnit() throws {
        let model = try Fixtures.randomModel(items: 25, dimension: 4, seed: 3)
        let events = try records([("item-0", .view, "a"), ("item-1", .cart, "a"), ("item-4", .click, "b"),
                                  ("item-5", .purchase, "b"), ("item-9", .view, "c"), ("item-2", .purchase, "c")])
        var rng = Xoshiro256(seed: 8)
        let reference = DeviceTraining().run(model: try servedStart(model), records: events, local: [], perSession: true,
                                             using: &rng)
        rng = Xoshiro256(seed: 8)
        var handed: [[Float]] = []
        let all = DeviceTraining().stream(model: model, records: events, local: [], perSession: true, maxContributions: 3,
                                          using: &rng) { delta in handed.append(delta.dense()) }
        #expect(all.completed && all.contributions == 3)
        #expect(handed == reference.sessionUpdates)
        // Only the last two: the two-item model trains independently of the generator, so the
        // contributions can be compared across runs.
        let small = try Fixtures.randomModel(items: 2, dimension: 4, seed: 2)
        let two = try records([("item-0", .view, "a"), ("item-1", .cart, "a"), ("item-1", .click, "b"),
                               ("item-0", .purchase, "b"), ("item-0", .view, "c")])
        let full = DeviceTraining().run(model: try servedStart(small), records: two, local: [], perSession: true, using: &rng)
        handed = []
        let last = DeviceTraining().stream(model: small, records: two, local: [], perSession: true, maxContributions: 2,
                                           using: &rng) { delta in handed.append(delta.dense()) }
        #expect(last.contributions == 2)
        #expect(handed == Array(full.sessionUpdates.suffix(2)))
        #expect(last.local == full.local)
    }

    @Test("streaming stops when asked and hands nothing over")
    func streamStops() throws {
        let model = try Fixtures.randomModel(items: 30, dimension: 8, seed: 2)
        let events = try records((0 ..< 40).map { ("item-\($0 % 30)", EventKind.view, "s") })
        var rng = Xoshiro256(seed: 1)
        var steps = 0
        var handed = 0
        let summary = DeviceTraining().stream(model: model, records: events, local: [], using: &rng,
                                              shouldStop: { steps += 1; return steps > 10 }) { _ in handed += 1 }
        #expect(!summary.completed)
        #expect(handed == 0 && summary.contributions == 0)
        #expect(steps <= 12, "training must stop at the first step after the deadline")
        let finished = DeviceTraining().stream(model: model, records: events, local: [], using: &rng) { _ in handed += 1 }
        #expect(finished.completed && handed == 1)
    }

    @Test("session keys are stable and distinct")
    func sessionKeys() {
        #expect(DeviceTraining.sessionKey("s-1") == DeviceTraining.sessionKey("s-1"))
        #expect(DeviceTraining.sessionKey("s-1") != DeviceTraining.sessionKey("s-2"))
        #expect(DeviceTraining.sessionKey("") == 0xCBF2_9CE4_8422_2325)
    }

    @Test("event records validate every field and name it in the error", arguments: [
        ("", "s", Int32?.none, Int64(0), "item"),
        ("x", "", nil, 0, "session"),
        ("x", "s", 0, 0, "quantity"),
        ("x", "s", 10_001, 0, "quantity"),
        ("x", "s", nil, -1, "timestamp_ms"),
        ("a\u{7}b", "s", nil, 0, "item"),
        (String(repeating: "x", count: 129), "s", nil, 0, "item"),
    ])
    func recordValidation(item: String, session: String, quantity: Int32?, timestamp: Int64, field: String) {
        #expect {
            _ = try EventRecord(item: item, kind: .view, session: session, quantity: quantity, timestampMilliseconds: timestamp)
        } throws: { error in
            (error as? CoreError)?.message.hasPrefix(field + ":") == true
        }
    }
}

@Suite("Interest profile and scheduler", .computeLane)
struct ProfileSchedulerTests {
    @Test("the profile ranks categories and brands by kind-weighted engagement")
    func profile() throws {
        let catalog = try Catalog(ids: ["a", "b", "c"], attributes: [
            ItemAttributes(category: "dairy", brand: "x"), ItemAttributes(category: "bakery", brand: "y"),
            ItemAttributes(category: "dairy", brand: "y"),
        ])
        let records = try [("a", EventKind.purchase), ("b", .view), ("c", .cart), ("zzz", .purchase)].enumerated().map {
            try EventRecord(item: $0.element.0, kind: $0.element.1, session: "s", timestampMilliseconds: Int64($0.offset))
        }
        let profile = InterestProfile(records: records, catalog: catalog)
        #expect(profile.events == 3)
        #expect(profile.categories.map { $0.name } == ["dairy", "bakery"])
        #expect(profile.categories[0].weight == 1.75)
        #expect(profile.brands.map { $0.name } == ["x", "y"])
        #expect(abs(profile.categories.map { $0.share }.reduce(0, +) - 1) < 1e-6)
    }

    @Test("the scheduler trains only when every condition holds, and says which one failed")
    func scheduler() {
        let scheduler = TrainingScheduler(windowStartMinute: 22 * 60, windowEndMinute: 6 * 60, maxLoadAverage: 0.5,
                                          requireMainsPower: true, minNewEvents: 10)
        let good = TrainingScheduler.Conditions(minuteOfDay: 23 * 60, loadAverage: 0.1, onMainsPower: true, newEvents: 10, selectedByPlan: true)
        #expect(scheduler.decide(good) == .train)
        var c = good; c.minuteOfDay = 12 * 60
        #expect(scheduler.decide(c) == .wait("outside the training window"))
        c = good; c.minuteOfDay = 2 * 60
        #expect(scheduler.decide(c) == .train)
        c = good; c.loadAverage = 0.5
        #expect(scheduler.decide(c) != .train)
        c = good; c.onMainsPower = false
        #expect(scheduler.decide(c) == .wait("on battery power"))
        c = good; c.onMainsPower = nil
        #expect(scheduler.decide(c) == .train)
        c = good; c.newEvents = 9
        #expect(scheduler.decide(c) == .wait("9 new events, 10 needed"))
        c = good; c.selectedByPlan = false
        #expect(scheduler.decide(c) == .wait("not sampled for this model version"))
    }
}
