/// One local training round on a device: from the device's own event log to a dense update of
/// the global parameters.
///
/// The update is `trained − start` over EVERY global coordinate (never sparse: a sparse update
/// would reveal which items the device touched).
///
/// For the per-session privacy unit (`perSession: true`) every session is trained on its own,
/// from the same starting parameters and the same starting local embedding, and its
/// contribution is the change it alone caused. A session's contribution then depends on that
/// session's events only, which is what clipping each contribution and calibrating the noise to
/// one session's bound requires (removing a session removes exactly one contribution). Training
/// session after session and differencing would leak earlier sessions into later
/// contributions. The update is the sum of the contributions; the local embedding (never
/// uploaded) is trained over all sessions in order, on a scratch copy of the parameters.
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
        /// Global parameters after training on every session in order (never uploaded as such).
        public var parameters: GlobalParameters
        /// The device embedding after training (stays on the device).
        public var local: [Float]
        /// The dense update, flattened (embeddings then biases): `parameters − start`, or with
        /// `perSession` the sum of the sessions' independent contributions.
        public var update: [Float]
        /// With `perSession`: each session's own contribution (same layout), in session order;
        /// they sum to `update`. Empty otherwise.
        public var sessionUpdates: [[Float]]
        /// Events that mapped to catalogue items and were trained on.
        public var eventsUsed: Int
        /// Events whose item is not in the model's catalogue (skipped).
        public var eventsSkipped: Int
    }

    /// Trains on `records` (chronological) starting from `model`'s parameters.
    public func run<R: RandomNumberGenerator>(
        model: Model, records: [EventRecord], local: [Float], perSession: Bool = false, using rng: inout R
    ) -> Result {
        let start = model.parameters
        let startLocal = local.count == start.dimension ? local : [Float](repeating: 0, count: start.dimension)
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
        // Sequential pass: the device-unit update, and in any case the local embedding.
        var parameters = start
        var embedding = startLocal
        for session in sessions {
            for _ in 0 ..< epochs {
                trainer.train(sequence: session[...], parameters: &parameters, local: &embedding, using: &rng)
            }
        }
        var update = GlobalParameters.difference(parameters, start)
        var sessionUpdates: [[Float]] = []
        if perSession {
            update = [Float](repeating: 0, count: start.parameterCount)
            for session in sessions {
                var own = start
                var ownLocal = startLocal
                for _ in 0 ..< epochs {
                    trainer.train(sequence: session[...], parameters: &own, local: &ownLocal, using: &rng)
                }
                let contribution = GlobalParameters.difference(own, start)
                for i in update.indices { update[i] += contribution[i] }
                sessionUpdates.append(contribution)
            }
        }
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
