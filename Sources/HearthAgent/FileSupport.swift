import CHearthMemory
#if canImport(Glibc)
import Glibc

private let posixRead = Glibc.read
#elseif canImport(Darwin)
import Darwin

private let posixRead = Darwin.read
#endif

/// Small POSIX helpers so the agent needs no Foundation.
enum FileSupport {
    /// Gives the heap's free pages back to the kernel (`malloc_trim(0)` on glibc).
    ///
    /// Called after the few moments that allocate and free tens of megabytes (decoding a model,
    /// a training round): freed small blocks otherwise stay in the process's heap, and its
    /// resident memory stays at the peak.
    static func returnFreeMemory() {
        _ = hearth_release_free_memory()
    }

    /// The whole file at `path`, or nil when it does not exist. Throws on other errors.
    static func read(_ path: String, maxBytes: Int = 1 << 30) throws(AgentError) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw .startup("open \(path): \(errnoText())")
        }
        defer { close(fd) }
        var bytes: [UInt8] = []
        // One allocation of the final size: growing by doubling would hold the old and the new
        // buffer at once (for a 100,000 x 64 model file, ~20 MB more at the start-up peak).
        var info = stat()
        if fstat(fd, &info) == 0, info.st_size > 0 {
            bytes.reserveCapacity(min(Int(info.st_size), maxBytes) + 1)
        }
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n = chunk.withUnsafeMutableBytes { posixRead(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw .startup("read \(path): \(errnoText())")
            }
            if n == 0 { break }
            bytes.append(contentsOf: chunk[0 ..< n])
            if bytes.count > maxBytes { throw .startup("\(path) is larger than \(maxBytes) bytes") }
        }
        return bytes
    }

    /// Creates `path` and its parents (mode 0750) if missing.
    static func makeDirectories(_ path: String) throws(AgentError) {
        var prefix = ""
        for component in path.split(separator: "/") {
            prefix += "/" + component
            if mkdir(prefix, 0o750) != 0 && errno != EEXIST {
                throw .startup("mkdir \(prefix): \(errnoText())")
            }
        }
    }

    /// Whether `path` exists (any kind of file).
    static func exists(_ path: String) -> Bool {
        access(path, F_OK) == 0
    }

    /// Whether `path` is a directory.
    static func isDirectory(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
    }

    /// The names in `directory` that start with `prefix` (empty when unreadable).
    static func names(in directory: String, prefix: String) -> [String] {
        guard let handle = opendir(directory) else { return [] }
        defer { closedir(handle) }
        var names: [String] = []
        while let entry = readdir(handle) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name.hasPrefix(prefix) { names.append(name) }
        }
        return names.sorted()
    }

    /// A small file (procfs) as text, nil when unreadable.
    static func readSmallText(_ path: String) -> String? {
        guard let bytes = try? read(path, maxBytes: 64 * 1024) else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// `strerror(errno)`.
    static func errnoText() -> String { String(cString: strerror(errno)) }
}

/// Wall-clock time in milliseconds since the Unix epoch (plus the test offset of
/// `--clock-offset-file`, 0 unless that hidden option is given).
public func unixMilliseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000 + WallClockOffset.milliseconds.load(ordering: .relaxed)
}

/// The clock of training deadlines: monotonic milliseconds. Injected into `AgentRuntime` so that
/// tests can make a round overrun deterministically.
public enum AgentClock {
    /// `CLOCK_MONOTONIC` in milliseconds (the production clock).
    @Sendable public static func monotonicMilliseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }
}

/// Decodes standard base64 (with or without padding); nil when malformed.
func decodeBase64(_ text: String) -> [UInt8]? {
    var values: [UInt8] = []
    for c in text.utf8 {
        switch c {
        case UInt8(ascii: "A") ... UInt8(ascii: "Z"): values.append(c - UInt8(ascii: "A"))
        case UInt8(ascii: "a") ... UInt8(ascii: "z"): values.append(c - UInt8(ascii: "a") + 26)
        case UInt8(ascii: "0") ... UInt8(ascii: "9"): values.append(c - UInt8(ascii: "0") + 52)
        case UInt8(ascii: "+"): values.append(62)
        case UInt8(ascii: "/"): values.append(63)
        case UInt8(ascii: "="), UInt8(ascii: "\n"), UInt8(ascii: " "): continue
        default: return nil
        }
    }
    if values.count % 4 == 1 { return nil }
    var out: [UInt8] = []
    var i = 0
    while i < values.count {
        let n = min(4, values.count - i)
        var acc: UInt32 = 0
        for j in 0 ..< 4 { acc = acc << 6 | UInt32(j < n ? values[i + j] : 0) }
        out.append(UInt8(truncatingIfNeeded: acc >> 16))
        if n > 2 { out.append(UInt8(truncatingIfNeeded: acc >> 8)) }
        if n > 3 { out.append(UInt8(truncatingIfNeeded: acc)) }
        i += 4
    }
    return out
}
