#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import HearthCore
@testable import HearthStore
import HearthTestSupport

/// A validated record (throws instead of trapping on bad test input).
func record(_ item: String, _ kind: EventKind = .view, session: String = "s-1", quantity: Int32? = nil,
            ts: Int64) throws -> EventRecord {
    try EventRecord(item: item, kind: kind, session: session, quantity: quantity, timestampMilliseconds: ts)
}

/// `count` events `item-<i>` with timestamps `base + i * step`, sessions cycling over `sessions`.
func records(_ count: Int, base: Int64 = 1_700_000_000_000, step: Int64 = 1_000, sessions: Int = 3,
             prefix: String = "item") throws -> [EventRecord] {
    var result: [EventRecord] = []
    for i in 0 ..< count {
        let kind = EventKind.allCases[i % 4]
        let quantity: Int32? = i % 4 >= 2 ? Int32(i % 7 + 1) : nil
        let ts = base + Int64(i) * step
        result.append(try record("\(prefix)-\(i)", kind, session: "s-\(i % sessions)", quantity: quantity, ts: ts))
    }
    return result
}

/// A fresh store in a fresh temporary directory, removed afterwards.
func withStore<T>(_ options: StoreOptions = StoreOptions(), _ body: (DeviceStore, String) throws -> T) throws -> T {
    try withTemporaryDirectory { directory throws in
        let path = directory + "/hearth.db"
        let store = try DeviceStore(path: path, options: options)
        defer { store.close() }
        return try body(store, path)
    }
}

/// Whole file contents (empty when the file does not exist).
func readFile(_ path: String) -> [UInt8] {
    guard let file = fopen(path, "rb") else { return [] }
    defer { fclose(file) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65_536)
    while true {
        let n = buffer.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, file) }
        if n == 0 { break }
        bytes.append(contentsOf: buffer[0 ..< n])
    }
    return bytes
}

/// Writes `bytes` to `path` (replacing it), or at `offset` into an existing file.
func writeFile(_ path: String, _ bytes: [UInt8], offset: Int? = nil) {
    let fd = offset == nil ? open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644) : open(path, O_WRONLY)
    guard fd >= 0 else { return }
    defer { close(fd) }
    _ = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(offset ?? 0)) }
}

/// Whether `haystack` contains `needle` as a byte sequence.
func contains(_ haystack: [UInt8], _ needle: String) -> Bool {
    let pattern = Array(needle.utf8)
    guard !pattern.isEmpty, haystack.count >= pattern.count else { return false }
    outer: for start in 0 ... haystack.count - pattern.count {
        for j in 0 ..< pattern.count where haystack[start + j] != pattern[j] { continue outer }
        return true
    }
    return false
}

func fileSize(_ path: String) -> Int64 {
    var info = stat()
    return stat(path, &info) == 0 ? Int64(info.st_size) : -1
}
