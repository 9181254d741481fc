#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CHearthSQLite
import HearthCore

/// A test-only SQLite VFS that simulates power loss, in the style of SQLite's own crash tests
/// (`src/test6.c`, the "crash" VFS).
///
/// It wraps the default (unix) VFS and passes every call through, so the store under test runs
/// exactly as it does in production. Beside that it keeps, for each named file, the contents as
/// of the file's last `xSync` (what survives a power cut for certain) and the writes and
/// truncations made since then, in order (what may or may not have reached the disk).
///
/// At any moment `capture()` (or the seeded automatic cuts, see `automaticCutProbability`)
/// takes a `PowerLossSnapshot` of that state; `PowerLossSnapshot.materialize` then writes a
/// "power-loss image" of the directory: every file as of its last sync plus a random subset of
/// its unsynced writes, optionally torn at 512-byte sectors or with the lost sectors turned
/// into garbage. The `-shm` file is not a file here (SQLite maps it through `xShmMap`, passed
/// through untouched), so images never contain one: it is not durable state.
///
/// The model, stated: a write reaches the disk whole, per sector, or not at all; `xSync` of a
/// file makes all its earlier writes durable; a file created during the recording survives
/// only if it was synced at least once (else it is dropped from an image half of the time);
/// a deletion is durable at once. Register one VFS per test under its own name and open the
/// store with that name: it is never made the process default (tests run in parallel).
public final class PowerLossVFS: @unchecked Sendable {
    /// The name to pass to `sqlite3_open_v2` (`StoreOptions.vfsName`, `AggregatorStore(path:vfsName:)`).
    public let name: String
    /// Probability, at each write, truncation or sync through this VFS, of taking a snapshot
    /// there (a cut in the middle of whatever the store is doing: a transaction, a commit, a
    /// checkpoint). Drained with `takeAutomaticCuts()`.
    public var automaticCutProbability: Double {
        get { lock.withLock { cutProbability } }
        set { lock.withLock { cutProbability = newValue } }
    }

    private let vfs: UnsafeMutablePointer<sqlite3_vfs>
    private let base: UnsafeMutablePointer<sqlite3_vfs>
    private let ioMethods: UnsafeMutablePointer<sqlite3_io_methods>
    private let nameStorage: UnsafeMutablePointer<CChar>
    private let lock = PowerLossLock()
    private var files: [String: TrackedFile] = [:]
    private var cutProbability = 0.0
    private var rng: PowerLossRandom
    private var automaticCuts: [PowerLossSnapshot] = []
    private var registered = false
    /// Writes, truncations and syncs seen (all tracked files).
    private var eventCount = 0

    /// Bytes before the wrapped file inside our `sqlite3_file`: the `pMethods` pointer and the
    /// handle of the tracked file.
    private static let headerBytes = 16

    /// Registers a new VFS named `name` over the default VFS (not as the default).
    /// `seed` drives the automatic cuts.
    public init(name: String, seed: UInt64) throws(PowerLossError) {
        guard let found = sqlite3_vfs_find(nil) else { throw PowerLossError("no default SQLite VFS") }
        base = found
        self.name = name
        rng = PowerLossRandom(seed: seed)
        let utf8 = Array(name.utf8CString)
        nameStorage = .allocate(capacity: utf8.count)
        nameStorage.initialize(from: utf8, count: utf8.count)
        vfs = .allocate(capacity: 1)
        // The unix VFS's other methods (access, full path, randomness, time, ...) do not depend on
        // the sqlite3_vfs they are called with beyond mxPathname, so the copy can keep them.
        vfs.initialize(to: found.pointee)
        ioMethods = .allocate(capacity: 1)
        ioMethods.initialize(to: PowerLossVFS.makeIOMethods())
        vfs.pointee.iVersion = min(found.pointee.iVersion, 2)
        vfs.pointee.szOsFile = Int32(PowerLossVFS.headerBytes) + ((found.pointee.szOsFile + 7) & ~7)
        vfs.pointee.pNext = nil
        vfs.pointee.zName = UnsafePointer(nameStorage)
        vfs.pointee.pAppData = Unmanaged.passUnretained(self).toOpaque()
        vfs.pointee.xOpen = powerLossOpen
        vfs.pointee.xDelete = powerLossDelete
        let rc = sqlite3_vfs_register(vfs, 0)
        guard rc == SQLITE_OK else {
            throw PowerLossError("sqlite3_vfs_register failed with \(rc)")
        }
        registered = true
    }

    deinit {
        unregister()
        ioMethods.deallocate()
        vfs.deallocate()
        nameStorage.deallocate()
    }

    /// Unregisters the VFS. Every connection opened through it must be closed first.
    public func unregister() {
        if registered { sqlite3_vfs_unregister(vfs) }
        registered = false
    }

    /// The state of every tracked file now: what a power cut at this instant could leave.
    public func capture() -> PowerLossSnapshot {
        lock.withLock { snapshotLocked() }
    }

    /// The snapshots taken at automatic cut points since the last call, oldest first.
    public func takeAutomaticCuts() -> [PowerLossSnapshot] {
        lock.withLock {
            let cuts = automaticCuts
            automaticCuts = []
            return cuts
        }
    }

    /// Writes, truncations and syncs recorded so far.
    public var recordedEvents: Int { lock.withLock { eventCount } }

    private func snapshotLocked() -> PowerLossSnapshot {
        PowerLossSnapshot(files: files.values.sorted { $0.path < $1.path }, event: eventCount)
    }

    // MARK: - Recording (called from the C callbacks)

    fileprivate func opened(path: String, existed: Bool) {
        lock.withLock {
            guard files[path] == nil else { return }
            // A file present before the recording counts as durable as it is; one this open
            // created is empty and its existence is not durable until its first sync.
            let existing = existed ? readWholeFile(path) : nil
            files[path] = TrackedFile(path: path, durable: existing ?? [], existsDurably: existing != nil, pending: [])
        }
    }

    fileprivate func wrote(path: String, offset: Int64, bytes: UnsafeRawPointer, count: Int) {
        let data = Array(UnsafeRawBufferPointer(start: bytes, count: count))
        record(path) { $0.pending.append(.write(offset: Int(offset), bytes: data)) }
    }

    fileprivate func truncated(path: String, size: Int64) {
        record(path) { $0.pending.append(.truncate(size: Int(size))) }
    }

    fileprivate func synced(path: String) {
        record(path) { file in
            file.durable = PowerLossSnapshot.apply(file.pending, to: file.durable)
            file.pending = []
            file.existsDurably = true
        }
    }

    fileprivate func deleted(path: String) {
        lock.withLock { _ = files.removeValue(forKey: path) }
    }

    private func record(_ path: String, _ change: (inout TrackedFile) -> Void) {
        lock.withLock {
            guard var file = files[path] else { return }
            files[path] = nil  // keep the arrays uniquely referenced while changing them
            change(&file)
            files[path] = file
            eventCount += 1
            if cutProbability > 0, rng.nextUnit() < cutProbability {
                automaticCuts.append(snapshotLocked())
            }
        }
    }

    // MARK: - C plumbing

    fileprivate static func from(_ vfs: UnsafeMutablePointer<sqlite3_vfs>?) -> PowerLossVFS? {
        guard let data = vfs?.pointee.pAppData else { return nil }
        return Unmanaged<PowerLossVFS>.fromOpaque(data).takeUnretainedValue()
    }

    fileprivate var baseVFS: UnsafeMutablePointer<sqlite3_vfs> { base }
    fileprivate var methods: UnsafePointer<sqlite3_io_methods> { UnsafePointer(ioMethods) }

    private static func makeIOMethods() -> sqlite3_io_methods {
        var methods = sqlite3_io_methods()
        // Version 2: shared memory (WAL) but no memory-mapped I/O, so every write goes through xWrite.
        methods.iVersion = 2
        methods.xClose = { file in
            guard let file else { return SQLITE_MISUSE }
            let rc = inner(file).pointee.pMethods?.pointee.xClose?(inner(file)) ?? SQLITE_OK
            handle(file)?.release()
            setHandle(file, nil)
            return rc
        }
        methods.xRead = { file, buffer, amount, offset in
            guard let file, let real = innerMethods(file)?.xRead else { return SQLITE_IOERR }
            return real(inner(file), buffer, amount, offset)
        }
        methods.xWrite = { file, buffer, amount, offset in
            guard let file, let real = innerMethods(file)?.xWrite else { return SQLITE_IOERR }
            let rc = real(inner(file), buffer, amount, offset)
            if rc == SQLITE_OK, let tracked = handle(file)?.takeUnretainedValue(), let path = tracked.path, let buffer {
                tracked.owner?.wrote(path: path, offset: offset, bytes: buffer, count: Int(amount))
            }
            return rc
        }
        methods.xTruncate = { file, size in
            guard let file, let real = innerMethods(file)?.xTruncate else { return SQLITE_IOERR }
            let rc = real(inner(file), size)
            if rc == SQLITE_OK, let tracked = handle(file)?.takeUnretainedValue(), let path = tracked.path {
                tracked.owner?.truncated(path: path, size: size)
            }
            return rc
        }
        methods.xSync = { file, flags in
            guard let file, let real = innerMethods(file)?.xSync else { return SQLITE_IOERR }
            let rc = real(inner(file), flags)
            if rc == SQLITE_OK, let tracked = handle(file)?.takeUnretainedValue(), let path = tracked.path {
                tracked.owner?.synced(path: path)
            }
            return rc
        }
        methods.xFileSize = { file, size in
            guard let file, let real = innerMethods(file)?.xFileSize else { return SQLITE_IOERR }
            return real(inner(file), size)
        }
        methods.xLock = { file, level in
            guard let file, let real = innerMethods(file)?.xLock else { return SQLITE_IOERR }
            return real(inner(file), level)
        }
        methods.xUnlock = { file, level in
            guard let file, let real = innerMethods(file)?.xUnlock else { return SQLITE_IOERR }
            return real(inner(file), level)
        }
        methods.xCheckReservedLock = { file, result in
            guard let file, let real = innerMethods(file)?.xCheckReservedLock else { return SQLITE_IOERR }
            return real(inner(file), result)
        }
        methods.xFileControl = { file, op, argument in
            guard let file, let real = innerMethods(file)?.xFileControl else { return SQLITE_NOTFOUND }
            return real(inner(file), op, argument)
        }
        methods.xSectorSize = { file in
            guard let file, let real = innerMethods(file)?.xSectorSize else { return 4096 }
            return real(inner(file))
        }
        methods.xDeviceCharacteristics = { file in
            guard let file, let real = innerMethods(file)?.xDeviceCharacteristics else { return 0 }
            return real(inner(file))
        }
        methods.xShmMap = { file, page, pageSize, extend, address in
            guard let file, let real = innerMethods(file)?.xShmMap else { return SQLITE_IOERR }
            return real(inner(file), page, pageSize, extend, address)
        }
        methods.xShmLock = { file, offset, count, flags in
            guard let file, let real = innerMethods(file)?.xShmLock else { return SQLITE_IOERR }
            return real(inner(file), offset, count, flags)
        }
        methods.xShmBarrier = { file in
            guard let file, let real = innerMethods(file)?.xShmBarrier else { return }
            real(inner(file))
        }
        methods.xShmUnmap = { file, deleteFlag in
            guard let file, let real = innerMethods(file)?.xShmUnmap else { return SQLITE_OK }
            return real(inner(file), deleteFlag)
        }
        return methods
    }
}

/// What one tracked file held at a cut: its durable contents and the operations since its last sync.
public struct TrackedFile: Sendable {
    /// An unsynced operation.
    public enum Operation: Sendable {
        case write(offset: Int, bytes: [UInt8])
        case truncate(size: Int)
    }

    /// The full path the store opened.
    public var path: String
    /// Contents as of the last `xSync` (or as found when first opened).
    public var durable: [UInt8]
    /// Whether the file's existence is durable (synced once, or present before the recording).
    public var existsDurably: Bool
    /// Writes and truncations since the last `xSync`, oldest first.
    public var pending: [Operation]
}

/// How the unsynced writes of a file come out in a power-loss image.
public enum PowerLossTearing: Sendable, CaseIterable {
    /// Each unsynced write is kept whole or dropped.
    case wholeWrites
    /// Each 512-byte sector of each unsynced write is kept or dropped on its own.
    case sectors
    /// As `sectors`, but a dropped sector is sometimes left as random bytes instead of its old contents.
    case sectorsWithGarbage
}

/// The state of the tracked files at one cut (see `PowerLossVFS`).
public struct PowerLossSnapshot: Sendable {
    public var files: [TrackedFile]
    /// The VFS's event count when it was taken (where the cut fell).
    public var event: Int

    /// Unsynced operations over all files.
    public var pendingOperations: Int { files.reduce(0) { $0 + $1.pending.count } }

    /// Writes a power-loss image into `directory` (which must exist): each file under its own
    /// base name, as of its last sync plus the unsynced operations `random` keeps (in their
    /// original order), torn as `tearing` says. No `-shm` file is written.
    public func materialize(into directory: String, tearing: PowerLossTearing,
                            random: inout PowerLossRandom) throws(PowerLossError) {
        for file in files {
            if !file.existsDurably && random.nextUnit() < 0.5 { continue }
            var kept: [TrackedFile.Operation] = []
            for operation in file.pending {
                switch operation {
                case .truncate:
                    if random.nextUnit() < 0.5 { kept.append(operation) }
                case let .write(offset, bytes):
                    kept.append(contentsOf: PowerLossSnapshot.survivingParts(offset: offset, bytes: bytes,
                                                                            tearing: tearing, random: &random))
                }
            }
            let contents = PowerLossSnapshot.apply(kept, to: file.durable)
            let baseName = file.path.split(separator: "/").last.map(String.init) ?? file.path
            try writeWholeFile(directory + "/" + baseName, contents)
        }
    }

    static let sectorBytes = 512

    /// What of one unsynced write reaches the disk: all or nothing, or sector by sector.
    static func survivingParts(offset: Int, bytes: [UInt8], tearing: PowerLossTearing,
                               random: inout PowerLossRandom) -> [TrackedFile.Operation] {
        if tearing == .wholeWrites {
            return random.nextUnit() < 0.5 ? [.write(offset: offset, bytes: bytes)] : []
        }
        var parts: [TrackedFile.Operation] = []
        var start = offset
        let end = offset + bytes.count
        while start < end {
            let sectorEnd = min(end, (start / sectorBytes + 1) * sectorBytes)
            let slice = Array(bytes[(start - offset) ..< (sectorEnd - offset)])
            let roll = random.nextUnit()
            if roll < 0.5 {
                parts.append(.write(offset: start, bytes: slice))
            } else if tearing == .sectorsWithGarbage && roll < 0.625 {
                parts.append(.write(offset: start, bytes: slice.map { _ in UInt8(truncatingIfNeeded: random.next()) }))
            }
            start = sectorEnd
        }
        return parts
    }

    /// `contents` with `operations` applied in order.
    static func apply(_ operations: [TrackedFile.Operation], to contents: [UInt8]) -> [UInt8] {
        var result = contents
        for operation in operations {
            switch operation {
            case let .truncate(size):
                if size < result.count { result.removeSubrange(size...) } else {
                    result.append(contentsOf: repeatElement(0, count: size - result.count))
                }
            case let .write(offset, bytes):
                if offset + bytes.count > result.count {
                    result.append(contentsOf: repeatElement(0, count: offset + bytes.count - result.count))
                }
                result.replaceSubrange(offset ..< offset + bytes.count, with: bytes)
            }
        }
        return result
    }
}

/// A failure of the power-loss harness itself.
public struct PowerLossError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// A seeded generator (HearthCore's SplitMix64) so every cut and image is reproducible from a seed.
public struct PowerLossRandom: Sendable {
    private var generator: SplitMix64

    public init(seed: UInt64) { generator = SplitMix64(seed: seed) }

    public mutating func next() -> UInt64 { generator.next() }

    /// Uniform in [0, 1).
    public mutating func nextUnit() -> Double { Double(next() >> 11) / Double(1 << 53) }

    /// Uniform in `range`.
    public mutating func next(in range: ClosedRange<Int>) -> Int {
        range.lowerBound + Int(next() % UInt64(range.upperBound - range.lowerBound + 1))
    }
}

// MARK: - Handles inside SQLite's file structures

/// What the VFS keeps for one open file: the path when it is tracked, and the VFS.
private final class TrackedHandle {
    let path: String?
    weak var owner: PowerLossVFS?

    init(path: String?, owner: PowerLossVFS) {
        self.path = path
        self.owner = owner
    }
}

/// The wrapped (unix) file, after our header.
private func inner(_ file: UnsafeMutablePointer<sqlite3_file>) -> UnsafeMutablePointer<sqlite3_file> {
    (UnsafeMutableRawPointer(file) + 16).assumingMemoryBound(to: sqlite3_file.self)
}

private func innerMethods(_ file: UnsafeMutablePointer<sqlite3_file>) -> sqlite3_io_methods? {
    inner(file).pointee.pMethods?.pointee
}

private func handleSlot(_ file: UnsafeMutablePointer<sqlite3_file>) -> UnsafeMutablePointer<UnsafeMutableRawPointer?> {
    (UnsafeMutableRawPointer(file) + 8).assumingMemoryBound(to: UnsafeMutableRawPointer?.self)
}

private func handle(_ file: UnsafeMutablePointer<sqlite3_file>) -> Unmanaged<TrackedHandle>? {
    handleSlot(file).pointee.map { Unmanaged<TrackedHandle>.fromOpaque($0) }
}

private func setHandle(_ file: UnsafeMutablePointer<sqlite3_file>, _ value: Unmanaged<TrackedHandle>?) {
    handleSlot(file).pointee = value?.toOpaque()
}

private let powerLossOpen: @convention(c) (UnsafeMutablePointer<sqlite3_vfs>?, sqlite3_filename?,
                                           UnsafeMutablePointer<sqlite3_file>?, Int32,
                                           UnsafeMutablePointer<Int32>?) -> Int32 = { vfs, name, file, flags, outFlags in
    guard let file, let owner = PowerLossVFS.from(vfs) else { return SQLITE_CANTOPEN }
    file.pointee.pMethods = nil
    setHandle(file, nil)
    let base = owner.baseVFS
    guard let open = base.pointee.xOpen else { return SQLITE_CANTOPEN }
    let path = name.map { String(cString: $0) }
    let existed = path.map { access($0, F_OK) == 0 } ?? false
    let rc = open(base, name, inner(file), flags, outFlags)
    guard rc == SQLITE_OK else { return rc }
    setHandle(file, Unmanaged.passRetained(TrackedHandle(path: path, owner: owner)))
    if let path { owner.opened(path: path, existed: existed) }
    file.pointee.pMethods = owner.methods
    return SQLITE_OK
}

private let powerLossDelete: @convention(c) (UnsafeMutablePointer<sqlite3_vfs>?, UnsafePointer<CChar>?,
                                             Int32) -> Int32 = { vfs, name, syncDirectory in
    guard let owner = PowerLossVFS.from(vfs), let delete = owner.baseVFS.pointee.xDelete else { return SQLITE_IOERR }
    let rc = delete(owner.baseVFS, name, syncDirectory)
    if rc == SQLITE_OK, let name { owner.deleted(path: String(cString: name)) }
    return rc
}

// MARK: - Small helpers

/// A pthread mutex (the VFS is called from whatever thread runs the connection).
private final class PowerLossLock: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>

    init() {
        mutex = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    func withLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }
}

/// The whole file, or nil when it does not exist.
private func readWholeFile(_ path: String) -> [UInt8]? {
    guard let file = fopen(path, "rb") else { return nil }
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

private func writeWholeFile(_ path: String, _ bytes: [UInt8]) throws(PowerLossError) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    guard fd >= 0 else { throw PowerLossError("cannot create \(path): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var written = 0
    while written < bytes.count {
        let n = bytes.withUnsafeBytes { raw -> Int in
            guard let base = raw.baseAddress else { return -1 }
            return write(fd, base + written, raw.count - written)
        }
        guard n > 0 else { throw PowerLossError("cannot write \(path): \(String(cString: strerror(errno)))") }
        written += n
    }
}
