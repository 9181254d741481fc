import CHearthKernels
import HearthCore
import HearthPrivacy

/// What the smoke program exercises, with every input fixed (seeds, events, configuration), so
/// that two builds on two architectures must print the same results.
enum Smoke {
    /// Items in the generated model: not a multiple of the kernels' 8-row blocks, so the last
    /// block holds padding rows.
    static let itemCount = 300
    /// Embedding width: not a multiple of the kernels' 4-byte groups, so rows hold padding.
    static let dimension = 30
    static let modelVersion: UInt64 = 42
    static let modelSeed: UInt64 = 0x4845_4152_5448   // "HEARTH"
    static let localSeed: UInt64 = 11
    static let trainingSeed: UInt64 = 2024
    static let privacySeed: UInt64 = 7
    static let topK = 10

    /// The model file's bytes: a seeded random model (embeddings in ±0.1, biases in ±0.05),
    /// quantised and encoded by `ModelFile`.
    static func modelFileBytes() throws(SmokeFailure) -> [UInt8] {
        var rng = Xoshiro256(seed: modelSeed)
        let random = GlobalParameters(itemCount: itemCount, dimension: dimension, scale: 0.1, using: &rng)
        var bias = [Float](repeating: 0, count: itemCount)
        for i in bias.indices { bias[i] = (rng.nextUnitFloat() * 2 - 1) * 0.05 }
        var ids: [String] = []
        for i in 0 ..< itemCount { ids.append(itemID(i)) }
        do throws(CoreError) {
            let parameters = try GlobalParameters(itemCount: itemCount, dimension: dimension,
                                                  embeddings: random.embeddings, bias: bias)
            let model = try Model(version: modelVersion, catalog: try Catalog(ids: ids), parameters: parameters,
                                  encoder: QueryEncoder(decay: 0.85))
            return ModelFile.encode(model)
        } catch {
            throw SmokeFailure("building the model: \(error.message)")
        }
    }

    static func itemID(_ index: Int) -> String {
        let digits = "\(index)"
        return "sku-" + String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }

    /// Loads the model file `bytes` and reports every result, in a fixed order.
    static func run(modelFile bytes: [UInt8]) throws(SmokeFailure) -> Report {
        var report = Report()
        report.int("file.bytes", bytes.count)
        report.integers("file.crc32", [Int64(CRC32.checksum(bytes))])

        let model: Model
        do throws(CoreError) { model = try ModelFile.decode(bytes) } catch {
            throw SmokeFailure("decoding the model file: \(error.message)")
        }
        report.integers("model.version", [Int64(model.version)])
        report.int("model.items", model.catalog.count)
        report.int("model.dimension", model.parameters.dimension)
        report.int("model.dimension_padded", model.table.dimensionPadded)
        report.text("model.first_id", model.catalog.ids.first ?? "")
        var packedDigest = FNV1a()
        for byte in model.table.packed { packedDigest.add(byte) }
        report.integers("model.table.packed_fnv1a", [Int64(bitPattern: packedDigest.value)])

        try scoreAndRank(model, into: &report)
        let update = try train(model, into: &report)
        try privatize(update, into: &report)
        try account(into: &report)
        return report
    }

    // MARK: - Scoring and ranking

    /// The local state every ranking uses: a seeded device embedding and a session of six events.
    static func localState() -> LocalState {
        var state = LocalState(dimension: dimension, capacity: 20)
        var rng = Xoshiro256(seed: localSeed)
        for c in 0 ..< dimension { state.embedding[c] = (rng.nextUnitFloat() * 2 - 1) * 0.05 }
        let events: [(Int32, EventKind)] = [(5, .view), (17, .click), (123, .view), (250, .cart), (17, .purchase), (299, .view)]
        for (item, kind) in events { state.observe(Event(item: item, kind: kind)) }
        return state
    }

    static func scoreAndRank(_ model: Model, into report: inout Report) throws(SmokeFailure) {
        let kernel: ScoringKernel
        do throws(CoreError) { kernel = try ScoringKernel.preferred.get() } catch {
            throw SmokeFailure("choosing the kernel: \(error.message)")
        }
        report.info("kernel", kernel.name)
        report.info("kernels.supported", ScoringKernel.all.filter { $0.isSupported }.map { $0.name }.joined(separator: ","))

        let state = localState()
        let query = QuantizedQuery(model.query(for: state))
        report.integers("query.int8", query.values.map { Int64($0) })
        report.float32("query.scale", [query.scale])

        // The int32 dots of every row, from the dispatched kernel and from the scalar oracle.
        let dots = try rowDots(model.table, query, kernelName: kernel.name)
        let oracle = try rowDots(model.table, query, kernelName: ScoringKernel.scalar.name)
        guard dots == oracle else {
            throw SmokeFailure("kernel \(kernel.name) disagrees with the scalar oracle on the int32 dots")
        }
        report.text("dots.dispatched_equals_scalar", "yes")
        var dotDigest = FNV1a()
        for dot in dots { dotDigest.add(dot) }
        report.integers("dots.all_fnv1a", [Int64(bitPattern: dotDigest.value)])
        report.integers("dots.first16", dots.prefix(16).map { Int64($0) })

        let excluded = ExclusionSet(itemCount: model.catalog.count, items: state.recent.map { $0.item })
        let top: [Recommendation]
        let ranked: [Recommendation]
        let candidates: [Int32] = [3, 290, 17, 64, 65, 128, 5, 299, 200, 201, 3]
        do throws(CoreError) {
            top = try model.recommend(state: state, k: topK, excluding: excluded, kernel: kernel)
            ranked = try model.rank(state: state, candidates: candidates)
        } catch {
            throw SmokeFailure("ranking: \(error.message)")
        }
        report.integers("topk.items", top.map { Int64($0.item) })
        report.integers("topk.dots", top.map { Int64(dots[Int($0.item)]) })
        report.float32("topk.scores", top.map { $0.score })
        report.integers("rank.items", ranked.map { Int64($0.item) })
        report.float32("rank.scores", ranked.map { $0.score })
    }

    /// `hearth_dot_fn` of the kernel `kernelName` over every block of `table`, real rows only.
    static func rowDots(_ table: QuantizedTable, _ query: QuantizedQuery, kernelName: String) throws(SmokeFailure) -> [Int32] {
        let entry = kernelName.withCString { hearth_kernel_named($0) }
        guard let entry, let dot = entry.pointee.dot else { throw SmokeFailure("kernel \(kernelName) is not compiled in") }
        let blocks = hearth_block_count(Int32(table.rows))
        var out = [Int32](repeating: 0, count: Int(blocks) * Int(HEARTH_BLOCK_ROWS))
        table.packed.withUnsafeBufferPointer { packed in
            query.values.withUnsafeBufferPointer { values in
                out.withUnsafeMutableBufferPointer { target in
                    dot(packed.baseAddress, values.baseAddress, Int32(table.dimensionPadded), blocks, target.baseAddress)
                }
            }
        }
        return Array(out.prefix(table.rows))
    }

    // MARK: - Training

    /// One device round: three sessions, one event on an item the catalogue lacks.
    static func trainingRecords() throws(SmokeFailure) -> [EventRecord] {
        var records: [EventRecord] = []
        let kinds: [EventKind] = [.view, .click, .view, .cart, .purchase, .view, .click]
        var rng = Xoshiro256(seed: trainingSeed ^ 0x5EED)
        do throws(CoreError) {
            for event in 0 ..< 36 {
                let item = event == 20 ? "sku-unknown" : itemID(rng.nextIndex(below: itemCount))
                records.append(try EventRecord(item: item, kind: kinds[event % kinds.count], session: "session-\(event / 12)",
                                               timestampMilliseconds: 1_700_000_000_000 + Int64(event) * 61_000))
            }
        } catch {
            throw SmokeFailure("building events: \(error.message)")
        }
        return records
    }

    static func train(_ model: Model, into report: inout Report) throws(SmokeFailure) -> [Float] {
        let configuration = TrainingConfiguration(learningRate: 0.05, localLearningRate: 0.05, negatives: 16,
                                                  historyLength: 20, l2: 1e-5, encoder: model.encoder)
        let training = DeviceTraining(trainer: Trainer(configuration: configuration), epochs: 2)
        var rng = Xoshiro256(seed: trainingSeed)
        let result = training.run(model: model, records: try trainingRecords(), local: localState().embedding,
                                  perSession: false, using: &rng)
        report.int("train.events_used", result.eventsUsed)
        report.int("train.events_skipped", result.eventsSkipped)
        var changed = 0
        for value in result.update where value != 0 { changed += 1 }
        report.derived("train.update.nonzero", [Int64(changed)])
        // The norm of float32 values, compared at float32 tolerance.
        do throws(PrivacyError) { report.float32("train.update.l2", [Float(try Clipping.l2Norm(result.update))]) } catch {
            throw SmokeFailure("update norm: \(error.message)")
        }
        report.float32("train.update", result.update)
        report.float32("train.local", result.local)
        // The loss of one more pass, from the trained parameters (the Trainer's return value).
        var parameters = result.parameters
        var local = result.local
        let events = DeviceTrainingEvents.events(try trainingRecords(), catalog: model.catalog)
        report.float32("train.loss_after", [training.trainer.train(sequence: events[...], parameters: &parameters,
                                                                   local: &local, using: &rng)])
        return result.update
    }

    // MARK: - Privacy

    static func privatize(_ update: [Float], into report: inout Report) throws(SmokeFailure) {
        let configuration = PrivacyConfiguration(clipNorm: 0.05, noiseMultiplier: 1.1, bitWidth: 20, mode: .local,
                                                 unit: .device, headroom: 4)
        do throws(PrivacyError) {
            let privatizer = try UpdatePrivatizer(configuration: configuration, dimension: update.count)
            var rng = Xoshiro256(seed: privacySeed)
            let privatized = try privatizer.privatize(update: update, using: &rng)
            report.float64("privacy.grid.scale", [privatizer.grid.scale])
            report.float64("privacy.grid.sensitivity", [privatizer.grid.sensitivity])
            report.derived("privacy.noise.variance", [Int64(privatizer.noise.varianceNumerator),
                                                      Int64(privatizer.noise.varianceDenominator)])
            report.derived("privatized.saturated", [Int64(privatized.saturatedCoordinates)])
            report.derived("privatized.values", privatized.values)
        } catch {
            throw SmokeFailure("privatizing: \(error.message)")
        }
    }

    static func account(into report: inout Report) throws(SmokeFailure) {
        do throws(PrivacyError) {
            let rdp = try PrivacyAccounting.epsilon(noiseMultiplier: 1.1, samplingRate: 0.01, steps: 1000, delta: 1e-5,
                                                    accountant: .rdp)
            let pld = try PrivacyAccounting.epsilon(noiseMultiplier: 1.1, samplingRate: 0.01, steps: 100, delta: 1e-5,
                                                    accountant: .pld)
            let z = try PrivacyAccounting.noiseMultiplier(epsilon: 1, delta: 1e-5, samplingRate: 0.01, steps: 1000)
            report.float64("epsilon.rdp.z1.1_q0.01_T1000", [rdp])
            report.float64("epsilon.pld.z1.1_q0.01_T100", [pld])
            report.float64("noise_multiplier.rdp.eps1_q0.01_T1000", [z])
        } catch {
            throw SmokeFailure("accounting: \(error.message)")
        }
    }
}

/// The training events of `trainingRecords` as one chronological sequence of dense events.
enum DeviceTrainingEvents {
    static func events(_ records: [EventRecord], catalog: Catalog) -> [Event] {
        var events: [Event] = []
        for record in records {
            guard let item = catalog.index(of: record.item) else { continue }
            events.append(Event(item: item, kind: record.kind, session: DeviceTraining.sessionKey(record.session),
                                timestamp: record.timestampMilliseconds / 1000))
        }
        return events
    }
}

/// Why the smoke program stopped.
struct SmokeFailure: Error {
    let message: String
    init(_ message: String) { self.message = message }
}
