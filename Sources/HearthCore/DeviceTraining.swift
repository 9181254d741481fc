/// One local training round on a device: from the device's own event log to a dense update of
/// the global parameters.
///
/// The update is `trained − start` over EVERY global coordinate (never sparse: a sparse update
/// would reveal which items the device touched). For the per-session privacy unit the round
/// also returns each session's own contribution, computed by training session after session and
/// taking the parameter change each one caused; the contributions sum to the whole update.
public struct DeviceTraining: Sendable {
    public var trainer: Trainer
    /// Passes over the device's events.
    public var epochs: Int

    public init(trainer: Trainer = Trainer(), epochs: Int = 1) {
        self.trainer = trainer
        self.epochs = max(1, epochs)
    }

    /// What a round produced.
    public struct Result: Sendable {
        /// Locally trained global parameters (never uploaded as such).
        public var parameters: GlobalParameters
        /// The device embedding after training (stays on the device).
        public var local: [Float]
        /// `parameters − start`, flattened (embeddings then biases), dense.
        public var update: [Float]
        /// Per-session contributions (same layout), in session order; they sum to `update`.
        public var sessionUpdates: [[Float]]
        /// Events that mapped to catalogue items and were trained on.
        public var eventsUsed: Int
        /// Events whose item is not in the model's catalogue (skipped).
        public var eventsSkipped: Int
    }

    /// Trains on `records` (chronological) starting from `model`'s parameters.
    public func run<R: RandomNumberGenerator>(model: Model, records: [EventRecord], local: [Float], using rng: inout R) -> Result {
        let start = model.parameters
        var parameters = start
        var embedding = local.count == start.dimension ? local : [Float](repeating: 0, count: start.dimension)
        var sessions: [[Event]] = []
        var sessionIndex: [String: Int] = [:]
        var skipped = 0
        for record in records {
            guard let item = model.catalog.index(of: record.item) else {
                skipped += 1
                continue
            }
            let event = Event(item: item, kind: record.kind, session: DeviceTraining.sessionKey(record.session),
                              timestamp: record.timestampMilliseconds / 1000)
            if let index = sessionIndex[record.session] {
                sessions[index].append(event)
            } else {
                sessionIndex[record.session] = sessions.count
                sessions.append([event])
            }
        }
        var sessionUpdates: [[Float]] = []
        for session in sessions {
            let before = parameters.flattened()
            for _ in 0 ..< epochs {
                trainer.train(sequence: session[...], parameters: &parameters, local: &embedding, using: &rng)
            }
            let after = parameters.flattened()
            sessionUpdates.append(zip(after, before).map { $0 - $1 })
        }
        let update = zip(parameters.flattened(), start.flattened()).map { $0 - $1 }
        return Result(parameters: parameters, local: embedding, update: update, sessionUpdates: sessionUpdates,
                      eventsUsed: records.count - skipped, eventsSkipped: skipped)
    }

    /// A stable 64-bit key for a session id (FNV-1a over its UTF-8 bytes).
    public static func sessionKey(_ session: String) -> UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in session.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01B3
        }
        return hash
    }
}
