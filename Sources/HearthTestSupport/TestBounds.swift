#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Time, throughput and memory bounds for tests that measure them, widened under a sanitizer.
///
/// `scripts/sanitize.sh` sets `HEARTH_SANITIZER` (`address` or `thread`) for the run it makes.
/// AddressSanitizer's quarantine keeps freed memory resident (up to 256 MiB by default) and both
/// sanitizers slow every process several times, so a bound set for the plain build would fail on
/// the sanitizer rather than on the code. The plain build, which CI runs too, keeps the tight
/// bounds; under a sanitizer they stay finite, so a hang or a gross leak still fails.
public enum TestBounds {
    /// The sanitizer this run is under, from `HEARTH_SANITIZER`; nil in a plain run.
    public static let sanitizer: String? = {
        guard let raw = getenv("HEARTH_SANITIZER") else { return nil }
        let value = String(cString: raw)
        return value.isEmpty ? nil : value
    }()

    /// How many times longer things may take under a sanitizer.
    public static let slowdown: Int64 = sanitizer == nil ? 1 : 6

    /// A time bound: `milliseconds`, times `slowdown` under a sanitizer.
    public static func milliseconds(_ milliseconds: Int64) -> Int64 { milliseconds * slowdown }

    /// A memory-growth bound: `kibibytes`, eight times that under a sanitizer.
    public static func kibibytes(_ kibibytes: Int) -> Int { sanitizer == nil ? kibibytes : kibibytes * 8 }

    /// A minimum count of answers in a fixed window: `count`, at least one under a sanitizer.
    public static func atLeast(_ count: Int) -> Int { sanitizer == nil ? count : max(1, count / 10) }
}
