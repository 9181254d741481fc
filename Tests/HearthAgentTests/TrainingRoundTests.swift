#if canImport(Glibc)
import Glibc
#endif
import HearthAgent
import HearthConfig
import HearthCore
import HearthLocalAPI
import HearthTestSupport
import Logging
import Synchronization
import Testing

/// A clock the test moves: every reading advances it by `step` milliseconds.
final class SteppingClock: Sendable {
    let now = Atomic<Int64>(0)
    let step = Atomic<Int64>(0)

    func read() -> Int64 {
        now.add(step.load(ordering: .relaxed), ordering: .relaxed).newValue
    }
}

/// `AgentRuntime.trainRound` in-process: the `training.max_seconds` deadline (injected clock)
/// and the training thread's priority.
@Suite("Training round: time limit and priority", .serialized)
struct TrainingRoundTests {
    static let items = 50
    static let dimension = 8

    func makeRuntime(directory: String, maxSeconds: Int, clock: SteppingClock) throws -> AgentRuntime {
        let state = directory + "/state"
        mkdir(state, 0o700)
        mkdir(state + "/models", 0o700)
        let model = try Fixtures.randomModel(items: Self.items, dimension: Self.dimension, seed: 5, version: 2)
        try writeFile(state + "/models/current.hrth", ModelFile.encode(model))
        let toml = """
        [agent]
        state_directory = "\(state)"
        socket = "\(directory)/a.sock"
        [training]
        max_seconds = \(maxSeconds)
        [privacy]
        clip_norm = 1.0
        noise_multiplier = 1.0
        bit_width = 16
        epsilon_budget = 100.0
        """
        let configuration = try AgentConfiguration(toml: toml)
        return try AgentRuntime(configuration: configuration, logger: Logger(label: "test.runtime"),
                                clock: { clock.read() })
    }

    func ingest(_ runtime: AgentRuntime, count: Int) async throws {
        let records = try (0 ..< count).map { i in
            try EventRecord(item: "item-\(i % Self.items)", kind: .view, session: "s-\(i / 10)",
                            timestampMilliseconds: 1_700_000_000_000 + Int64(i) * 1000)
        }
        _ = try await runtime.ingest(records)
    }

    func lastRound(_ runtime: AgentRuntime) async throws -> [String: JSONValue] {
        try await runtime.status().extra["last_round"]?.objectValue ?? [:]
    }

    @Test("a round past training.max_seconds is abandoned: nothing recorded, no budget spent, fewer events next time")
    func overrunIsAbandoned() async throws {
        let directory = try makeTemporaryDirectory()
        defer { removeTree(directory) }
        let clock = SteppingClock()
        let runtime = try makeRuntime(directory: directory, maxSeconds: 1, clock: clock)
        try await ingest(runtime, count: 40)

        // Every clock reading moves 300 ms: the deadline (1 s) passes after a few training steps.
        clock.step.store(300, ordering: .relaxed)
        let outcome = try await runtime.trainRound(now: 1_700_000_100_000)
        guard case .abandoned(let reason) = outcome else {
            Issue.record("expected an abandoned round, got \(outcome)")
            return
        }
        #expect(reason.contains("training.max_seconds (1 s)"))
        var status = try await runtime.status()
        #expect(status.outboxPending == 0)
        #expect(status.privacy.epsilonSpent == 0)
        #expect(try await runtime.privacy().entries.isEmpty)
        #expect(try await runtime.newEventCount() == 40, "the events stay for the next round")
        let abandoned = try await lastRound(runtime)
        #expect(abandoned["abandoned"]?.stringValue?.contains("training.max_seconds") == true)
        #expect(status.extra["training"]?.objectValue?["event_limit"] == .int(AgentRuntime.maxEventsPerRound / 2))

        // The same round with time to spare is queued.
        clock.step.store(0, ordering: .relaxed)
        let second = try await runtime.trainRound(now: 1_700_000_200_000)
        guard case .queued = second else {
            Issue.record("expected a queued round, got \(second)")
            return
        }
        status = try await runtime.status()
        #expect(status.outboxPending == 1)
        #expect(status.privacy.epsilonSpent > 0)
        #expect(try await runtime.newEventCount() == 0)
        #expect(status.extra["training"]?.objectValue?["event_limit"] == .int(AgentRuntime.maxEventsPerRound))
    }

    @Test("training runs on its own thread at nice 19 under SCHED_IDLE")
    func lowPriorityThread() async throws {
        let caller = pthread_self()
        let seen = await TrainingThread.run { () -> (ThreadPriority?, pthread_t) in (ThreadPriority.current(), pthread_self()) }
        let (priority, thread) = try #require(seen)
        #expect(pthread_equal(thread, caller) == 0)
        #expect(priority?.nice == 19)
        #expect(priority?.policy == ThreadPriority.schedIdle)
        // The caller's own thread is not lowered.
        #expect(ThreadPriority.current()?.policy != ThreadPriority.schedIdle)

        // And a real round reports the priority its thread ran at.
        let directory = try makeTemporaryDirectory()
        defer { removeTree(directory) }
        let runtime = try makeRuntime(directory: directory, maxSeconds: 60, clock: SteppingClock())
        try await ingest(runtime, count: 20)
        let outcome = try await runtime.trainRound(now: 1_700_000_100_000)
        guard case .queued = outcome else {
            Issue.record("expected a queued round, got \(outcome)")
            return
        }
        let round = try await lastRound(runtime)
        #expect(round["thread_nice"] == .int(19))
        #expect(round["thread_policy"]?.stringValue == "idle")
    }

    @Test("the stat parser reads nice and policy after the command name")
    func statParsing() {
        // Field 19 (nice) = 7, field 41 (policy) = 3; the command name holds spaces and a ')'.
        var fields = (3 ... 52).map { String($0) }
        fields[19 - 3] = "7"
        fields[41 - 3] = "3"
        let line = "1234 (odd) name) " + fields.joined(separator: " ")
        #expect(ThreadPriority.parse(stat: line).map { [$0.nice, $0.policy] } == [7, 3])
        #expect(ThreadPriority.parse(stat: "garbage") == nil)
    }
}

@Suite("Buffered secure random")
struct BufferedSecureRandomTests {
    @Test("words keep coming past a refill, look uniform and differ between generators")
    func uniformAcrossRefills() {
        var a = BufferedSecureRandom()
        var b = BufferedSecureRandom()
        let count = 3 * BufferedSecureRandom.bufferWords + 5
        var ones = 0
        var equal = 0
        var distinct = Set<UInt64>()
        for _ in 0 ..< count {
            let x = a.next()
            let y = b.next()
            ones += x.nonzeroBitCount
            if x == y { equal += 1 }
            distinct.insert(x)
        }
        // 64·count fair bits: mean 32·count, standard deviation 4·sqrt(count) (~ 630); 10 sd.
        let expected = 32 * count
        #expect(abs(ones - expected) < 10 * 4 * Int(Double(count).squareRoot()) + 1)
        #expect(equal == 0)
        #expect(distinct.count == count)
    }
}
