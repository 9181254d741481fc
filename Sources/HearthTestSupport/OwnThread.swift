#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// Runs `body` in the calling task, on a thread of its own rather than a thread of the Swift
/// concurrency pool.
///
/// For blocking work (a socket client waiting on a server) that must not hold one of the runner's
/// few pool threads (see `ComputeLaneTrait`). `body` stays in the test's task (a task executor
/// preference, SE-0417), so `#expect` and `Issue.record` inside it are attributed to the test.
public func onOwnThread<T>(_ body: () throws -> T) async throws -> T {
    let executor = OwnThreadExecutor(name: "test-own-thread")
    defer { executor.stop() }
    return try await withTaskExecutorPreference(executor) {
        try body()
    }
}

/// A task executor with one thread: jobs run on it in the order they arrive, until `stop()`.
final class OwnThreadExecutor: TaskExecutor, @unchecked Sendable {
    /// Jobs waiting, and whether `stop()` was called.
    private let state = Mutex<(jobs: [UnownedJob], stopping: Bool)>(([], false))
    /// Posted once per job and once by `stop()`.
    private let wakeups: UnsafeMutablePointer<sem_t>

    /// The thread's name (at most 15 bytes), as stack dumps show it.
    private let name: String

    init(name: String) {
        self.name = String(name.utf8.prefix(15)) ?? "test-thread"
        wakeups = .allocate(capacity: 1)
        sem_init(wakeups, 0, 0)
        do throws(Loopback.Failure) {
            // The thread holds the executor until `run` returns (after `stop()`).
            try Loopback.startThread { [self] in run() }
        } catch {
            // No thread: jobs then run inline in enqueue (see `inline`).
            state.withLock { $0.stopping = true }
            inline = true
        }
    }

    /// Set when no thread could be started: `enqueue` runs each job at once.
    private var inline = false

    deinit {
        sem_destroy(wakeups)
        wakeups.deallocate()
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        if inline {
            job.runSynchronously(on: asUnownedTaskExecutor())
            return
        }
        state.withLock { $0.jobs.append(job) }
        sem_post(wakeups)
    }

    /// The thread ends once every job enqueued so far has run.
    func stop() {
        guard !inline else { return }
        state.withLock { $0.stopping = true }
        sem_post(wakeups)
    }

    private func run() {
        #if canImport(Glibc)
        // Named for stack dumps (a new thread would otherwise carry its creator's pool name).
        let comm = open("/proc/thread-self/comm", O_WRONLY | O_CLOEXEC)
        if comm >= 0 {
            _ = write(comm, name, name.utf8.count)
            close(comm)
        }
        #endif
        while true {
            while sem_wait(wakeups) != 0 {}
            let next: UnownedJob?? = state.withLock { state in
                if !state.jobs.isEmpty { return .some(state.jobs.removeFirst()) }
                return state.stopping ? .none : .some(nil)
            }
            guard let next else { return }
            next?.runSynchronously(on: asUnownedTaskExecutor())
        }
    }
}
