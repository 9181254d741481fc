import Testing

/// A suite or test trait: its tests run one at a time on one shared thread of their own (the
/// compute lane), not on the Swift concurrency pool.
///
/// The test runner's pool has one thread per core, two on the CI machine, and every test starts
/// at once. The CPU-bound synchronous suites (accountants, kernels, power-loss campaigns,
/// training, the stores) filled both threads for about 20 s of a plain run and 57 s under
/// AddressSanitizer (seen in a stack dump: both pool threads in PLD accountant tests), and every
/// `await` of the tests that talk to real processes and sockets waited behind them, which broke
/// their wall-time bounds and deadlines. On the lane those suites take one core between them
/// and leave the pool to the waiting tests. Only for synchronous tests: an `await` inside a test
/// on the lane would queue behind the other suites' work.
public struct ComputeLaneTrait: SuiteTrait, TestTrait, TestScoping {
    public var isRecursive: Bool { true }

    public func provideScope(for test: Test, testCase: Test.Case?,
                             performing function: @Sendable () async throws -> Void) async throws {
        try await withTaskExecutorPreference(Self.lane) { try await function() }
    }

    /// The lane's thread, started on first use and kept for the life of the test process.
    private static let lane = OwnThreadExecutor(name: "compute-lane")
}

extension Trait where Self == ComputeLaneTrait {
    /// Runs the suite's synchronous, CPU-bound tests on the shared compute lane (`ComputeLaneTrait`).
    public static var computeLane: Self { Self() }
}
