#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

private final class ThreadJob: @unchecked Sendable {
    let run: () -> Void
    init(_ run: @escaping () -> Void) { self.run = run }
}

/// Runs blocking `body` on a new detached pthread and resumes with its result, so blocking
/// calls (a libcurl transfer, waiting for the `hearth-fetch` helper) never occupy a thread of
/// the Swift concurrency pool.
public func runOnDedicatedThread<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { (continuation: CheckedContinuation<T, Never>) in
        let job = ThreadJob { continuation.resume(returning: body()) }
        let unmanaged = Unmanaged.passRetained(job)
        #if canImport(Glibc)
        var thread = pthread_t()
        #else
        var thread: pthread_t? = nil
        #endif
        let rc = pthread_create(&thread, nil, { argument in
            guard let argument else { return nil }
            Unmanaged<ThreadJob>.fromOpaque(argument).takeRetainedValue().run()
            return nil
        }, unmanaged.toOpaque())
        if rc == 0 {
            #if canImport(Glibc)
            pthread_detach(thread)
            #else
            if let thread { pthread_detach(thread) }
            #endif
        } else {
            // No thread available: run inline rather than fail the transfer.
            unmanaged.takeRetainedValue().run()
        }
    }
}
