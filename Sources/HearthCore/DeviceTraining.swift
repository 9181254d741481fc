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
        let (sessions, skipped) = DeviceTraining.sessions(of: records, catalog: model.catalog)
        // Sequential pass: the device-unit update, and in any case the local embedding.
        var parameters = start
        var embedding = startLocal
        // Epoch-major: every session once per epoch (many epochs over one session before the
        // next would fit each shopper in turn and forget the earlier ones).
        for _ in 0 ..< epochs {
            for session in sessions {
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

    /// What `stream` did.
    public struct StreamSummary: Sendable {
        /// The device embedding after training over every session in order (stays on the device).
        public var local: [Float]
        /// Events that mapped to catalogue items.
        public var eventsUsed: Int
        /// Events whose item is not in the model's catalogue (skipped).
        public var eventsSkipped: Int
        /// Sessions in the events.
        public var sessions: Int
        /// Contributions handed to the caller.
        public var contributions: Int
        /// False when `shouldStop` ended training early. Contributions handed over before the
        /// stop are incomplete: the caller must discard the round.
        public var completed: Bool
    }

    /// A device's round: `run` from the int8 table the device serves, holding only the rows the
    /// round touches.
    ///
    /// Training starts from `model.table` dequantised (a device keeps no float master; see
    /// `Model`) in a `ParameterOverlay`, so memory grows with the rows the round's events and
    /// sampled negatives touch, not with the catalogue. `contribution` gets the update
    /// (`trained − start`, dense over every coordinate, zero on untouched rows, read in place):
    /// - device unit (`perSession: false`): once, the whole update;
    /// - session unit: the contributions of the last `maxContributions` sessions, one at a time,
    ///   each trained from the same start on the same reused overlay; earlier sessions still
    ///   train the local embedding.
    ///
    /// Given `model.table.dequantized()` as the start, `run` computes the same values bit for
    /// bit (tests). The update handed to `contribution` reads the overlay, which the next
    /// session resets: a caller that keeps it past the call (device unit) gets it untouched, one
    /// that keeps it in the session unit makes the reset copy the overlay. `shouldStop` is asked
    /// before every training step; when it answers true training stops and the summary says
    /// `completed: false`.
    public func stream<R: RandomNumberGenerator, E: Error>(
        model: Model, records: [EventRecord], local: [Float], perSession: Bool = false, maxContributions: Int = 1,
        using rng: inout R, shouldStop: () -> Bool = { false },
        contribution: (ParameterOverlay.Update) throws(E) -> Void
    ) throws(E) -> StreamSummary {
        let dimension = model.table.dimension
        let startLocal = local.count == dimension ? local : [Float](repeating: 0, count: dimension)
        let (sessions, skipped) = DeviceTraining.sessions(of: records, catalog: model.catalog)
        var summary = StreamSummary(local: startLocal, eventsUsed: records.count - skipped, eventsSkipped: skipped,
                                    sessions: sessions.count, contributions: 0, completed: false)
        // Sequential pass: the device-unit update, and in any case the local embedding. A step
        // writes at most its candidates' rows (the history rows were earlier steps' targets).
        let steps = (records.count - skipped) * epochs
        let (rowBound, overflow) = steps.multipliedReportingOverflow(by: trainer.configuration.negatives + 1)
        var overlay = ParameterOverlay(base: model.table, reservingRows: overflow ? model.table.rows : rowBound)
        var embedding = startLocal
        var stopped = false
        for _ in 0 ..< epochs where !stopped {
            for session in sessions where !stopped {
                trainer.train(sequence: session[...], parameters: &overlay, local: &embedding, using: &rng, shouldStop: shouldStop)
                stopped = shouldStop()
            }
        }
        summary.local = embedding
        if stopped { return summary }
        if !perSession {
            summary.contributions = 1
            try contribution(overlay.update)
            summary.completed = true
            return summary
        }
        for session in sessions.suffix(max(0, maxContributions)) {
            overlay.reset()
            var ownLocal = startLocal
            for _ in 0 ..< epochs where !stopped {
                trainer.train(sequence: session[...], parameters: &overlay, local: &ownLocal, using: &rng, shouldStop: shouldStop)
                stopped = shouldStop()
            }
            if stopped { return summary }
            summary.contributions += 1
            try contribution(overlay.update)
        }
        summary.completed = true
        return summary
    }

    /// The records as per-session chronological event lists (first-seen session order), and
    /// the number of records whose item is not in `catalog`.
    static func sessions(of records: [EventRecord], catalog: Catalog) -> ([[Event]], Int) {
        var sessions: [[Event]] = []
        var sessionIndex: [String: Int] = [:]
        var skipped = 0
        for record in records {
            guard let item = catalog.index(of: record.item) else {
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
        return (sessions, skipped)
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
