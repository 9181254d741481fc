#if canImport(Glibc)
import Glibc
#endif

/// The scheduling of one thread as the kernel reports it in `/proc/thread-self/stat`.
public struct ThreadPriority: Sendable, Equatable {
    /// Linux `SCHED_IDLE`: runs only when nothing else wants the CPU.
    public static let schedIdle = 5

    /// The nice value (field 19), -20...19.
    public var nice: Int
    /// The scheduling policy (field 41): 0 normal, 3 batch, 5 idle, ...
    public var policy: Int

    /// A readable name for the policy, for status and logs.
    public var policyName: String {
        switch policy {
        case 0: return "other"
        case 1: return "fifo"
        case 2: return "rr"
        case 3: return "batch"
        case 5: return "idle"
        case 6: return "deadline"
        default: return String(policy)
        }
    }

    /// The calling thread's priority, read from `/proc/thread-self/stat` (nil when unreadable).
    public static func current() -> ThreadPriority? {
        guard let text = FileSupport.readSmallText("/proc/thread-self/stat") else { return nil }
        return parse(stat: text)
    }

    /// Parses a `/proc/<pid>/task/<tid>/stat` line (the command name may contain spaces and
    /// parentheses: fields are counted after the last `)`).
    public static func parse(stat text: String) -> ThreadPriority? {
        guard let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // fields[0] is field 3 (state): field n is fields[n - 3].
        guard fields.count > 41 - 3, let nice = Int(fields[19 - 3]), let policy = Int(fields[41 - 3]) else { return nil }
        return ThreadPriority(nice: nice, policy: policy)
    }
}

/// Runs work on a dedicated thread at the lowest CPU priority: `SCHED_IDLE` and nice 19 (the
/// nice value is the fallback where `SCHED_IDLE` is refused). Serving runs on NIO's threads
/// and the cooperative pool, which this thread never occupies, so a training round cannot
/// delay a request even on a single core.
public enum TrainingThread {
    /// Runs `body` on a new low-priority thread and returns its result; nil when no thread
    /// could be created.
    public static func run<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T? {
        await withCheckedContinuation { (continuation: CheckedContinuation<T?, Never>) in
            if !start(Job(body: body, continuation: continuation)) {
                continuation.resume(returning: nil)
            }
        }
    }

    /// Starts a detached thread that lowers its priority and runs `job`; false when
    /// `pthread_create` fails (the job is then not run).
    private static func start(_ job: ThreadJob) -> Bool {
        let box = Unmanaged.passRetained(job)
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        var thread = pthread_t()
        let rc = pthread_create(&thread, &attributes, { argument in
            guard let argument else { return nil }
            let job = Unmanaged<ThreadJob>.fromOpaque(argument).takeRetainedValue()
            TrainingThread.lowerPriority()
            job.run()
            return nil
        }, box.toOpaque())
        if rc != 0 {
            box.release()
            return false
        }
        return true
    }

    /// Puts the calling thread into `SCHED_IDLE` at nice 19 (best effort; the result is what
    /// `ThreadPriority.current()` reports).
    static func lowerPriority() {
        var parameters = sched_param()
        parameters.sched_priority = 0
        // pid 0: the calling thread (Linux scheduling attributes are per thread).
        _ = sched_setscheduler(0, Int32(ThreadPriority.schedIdle), &parameters)
        // who 0 with PRIO_PROCESS: the calling thread (on Linux the nice value is per thread).
        _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, 19)
    }

    /// Type-erased work for the C thread entry point (which cannot capture generic context).
    private class ThreadJob: @unchecked Sendable {
        func run() {}
    }

    private final class Job<T: Sendable>: ThreadJob, @unchecked Sendable {
        let body: @Sendable () -> T
        let continuation: CheckedContinuation<T?, Never>
        init(body: @escaping @Sendable () -> T, continuation: CheckedContinuation<T?, Never>) {
            self.body = body
            self.continuation = continuation
        }

        override func run() { continuation.resume(returning: body()) }
    }
}
