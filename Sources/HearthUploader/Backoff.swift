/// Exponential backoff with full jitter (AWS Architecture Blog, "Exponential Backoff and
/// Jitter", 2015): the n-th retry (n from 0) waits a uniform random time in
/// `[0, min(cap, base · 2^n)]`; when the server sent a larger `Retry-After`, that wins (itself
/// bounded by `maxServerDelay`, so a broken server cannot park a device for a year). Pure: the
/// random number generator is injected.
public struct Backoff: Sendable, Hashable {
    /// The first retry's window.
    public var base: Duration
    /// The largest window.
    public var cap: Duration
    /// The largest server-requested delay honoured.
    public var maxServerDelay: Duration

    public init(base: Duration = .seconds(1), cap: Duration = .seconds(15 * 60),
                maxServerDelay: Duration = .seconds(24 * 3600)) {
        self.base = base
        self.cap = cap
        self.maxServerDelay = maxServerDelay
    }

    /// The upper end of the jitter window for retry `attempt` (0-based): `min(cap, base · 2^attempt)`.
    public func window(attempt: Int) -> Duration {
        let baseNanos = Backoff.nanoseconds(base)
        let capNanos = Backoff.nanoseconds(cap)
        let shift = max(0, attempt)
        // base · 2^shift without overflow: stop doubling once past the cap.
        var window = max(0, baseNanos)
        var i = 0
        while i < shift && window < capNanos {
            window = window > Int64.max / 2 ? Int64.max : window * 2
            i += 1
        }
        return .nanoseconds(min(window, capNanos))
    }

    /// The delay before retry `attempt` (0-based), given the server's `Retry-After` if any.
    public func delay<R: RandomNumberGenerator>(attempt: Int, retryAfter: Duration? = nil,
                                                using rng: inout R) -> Duration {
        let upper = Backoff.nanoseconds(window(attempt: attempt))
        let jittered: Int64 = upper > 0 ? Int64.random(in: 0 ... upper, using: &rng) : 0
        guard let retryAfter else { return .nanoseconds(jittered) }
        let server = min(max(0, Backoff.nanoseconds(retryAfter)), Backoff.nanoseconds(maxServerDelay))
        return .nanoseconds(max(jittered, server))
    }

    /// Parses an HTTP `Retry-After` value in its delta-seconds form (`"120"`). The HTTP-date
    /// form is not understood and yields nil (the caller then uses its own backoff).
    public static func parseRetryAfter(_ value: String?) -> Duration? {
        guard let value else { return nil }
        var seconds: Int64 = 0
        var digits = 0
        for c in value.utf8 {
            if c == 0x20 || c == 0x09 { if digits == 0 { continue } else { break } }
            guard c >= 0x30, c <= 0x39 else { return nil }
            digits += 1
            guard digits <= 9 else { return nil }
            seconds = seconds * 10 + Int64(c - 0x30)
        }
        return digits > 0 ? .seconds(seconds) : nil
    }

    static func nanoseconds(_ d: Duration) -> Int64 {
        let (seconds, attoseconds) = d.components
        if seconds >= Int64.max / 1_000_000_000 { return Int64.max }
        if seconds <= Int64.min / 1_000_000_000 { return Int64.min }
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
