#if canImport(Glibc)
import Glibc
#endif

/// The kernel's CSPRNG read in 64 KiB blocks.
///
/// `SystemRandomNumberGenerator` makes one `getrandom` system call per 64-bit word. A training
/// round draws hundreds of millions of words (stochastic rounding and the exact discrete
/// Gaussian sampler for every one of a model's millions of coordinates), and on a 100,000 x 64
/// model those system calls alone took over a minute. This generator serves the same kernel
/// randomness (`/dev/urandom`, which never blocks once the pool is initialised) from a buffer.
/// If `/dev/urandom` cannot be read it falls back to `SystemRandomNumberGenerator`.
public struct BufferedSecureRandom: RandomNumberGenerator {
    /// Words per refill (64 KiB).
    public static let bufferWords = 8192

    private let source: Source
    private var words: [UInt64]
    private var index: Int

    /// A generator with its own descriptor on `/dev/urandom` (closed when the last copy goes).
    public init() {
        source = Source()
        words = [UInt64](repeating: 0, count: BufferedSecureRandom.bufferWords)
        index = BufferedSecureRandom.bufferWords
    }

    public mutating func next() -> UInt64 {
        if index == words.count {
            source.fill(&words)
            index = 0
        }
        let word = words[index]
        words[index] = 0  // drawn randomness does not linger in the buffer
        index += 1
        return word
    }

    private final class Source: @unchecked Sendable {
        let descriptor: Int32

        init() { descriptor = open("/dev/urandom", O_RDONLY | O_CLOEXEC) }

        deinit { if descriptor >= 0 { close(descriptor) } }

        func fill(_ words: inout [UInt64]) {
            let complete = words.withUnsafeMutableBytes { raw -> Bool in
                guard descriptor >= 0, let base = raw.baseAddress else { return false }
                var offset = 0
                while offset < raw.count {
                    let n = read(descriptor, base + offset, raw.count - offset)
                    if n < 0 && errno == EINTR { continue }
                    if n <= 0 { return false }
                    offset += n
                }
                return true
            }
            if !complete {
                var system = SystemRandomNumberGenerator()
                for i in words.indices { words[i] = system.next() }
            }
        }
    }
}
