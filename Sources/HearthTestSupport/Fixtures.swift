#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import HearthCore
import HearthPrivacy
import HearthDatasets

/// Shared fixtures for Hearth's tests: seeded models and the location of the shared datasets.
public enum Fixtures {
    /// A model over `items` items named `item-0`, `item-1`, … with random parameters from `seed`.
    public static func randomModel(items: Int, dimension: Int, seed: UInt64 = 1, version: UInt64 = 1) throws -> Model {
        var rng = Xoshiro256(seed: seed)
        var parameters = GlobalParameters(itemCount: items, dimension: dimension, scale: 1, using: &rng)
        for i in 0 ..< items { parameters.bias[i] = (rng.nextUnitFloat() - 0.5) * 0.2 }
        let catalog = try Catalog(ids: (0 ..< items).map { "item-\($0)" })
        return try Model(version: version, catalog: catalog, parameters: parameters)
    }

    /// The folder holding the shared datasets: `$HEARTH_DATASETS`, else `../shared/datasets`
    /// next to the package root (as laid out for developers and CI).
    public static func datasetsDirectory(file: StaticString = #filePath) -> String? {
        if let env = getenv("HEARTH_DATASETS") {
            return String(cString: env)
        }
        // This file lives at <root>/Sources/HearthTestSupport/Fixtures.swift.
        var path = "\(file)"
        for _ in 0 ..< 3 {
            guard let slash = path.lastIndex(of: "/") else { return nil }
            path = String(path[..<slash])
        }
        guard let slash = path.lastIndex(of: "/") else { return nil }
        let candidate = String(path[..<slash]) + "/shared/datasets"
        return access(candidate, R_OK) == 0 ? candidate : nil
    }

    /// Path of a file inside the shared datasets, or nil when the datasets are not there.
    public static func datasetFile(_ relative: String) -> String? {
        guard let directory = datasetsDirectory() else { return nil }
        let path = directory + "/" + relative
        return access(path, R_OK) == 0 ? path : nil
    }
}

extension Fixtures {
    /// A device update for `version` made exactly as an agent makes one: small random deltas,
    /// clipped, rounded and (in local mode) noised by `UpdatePrivatizer`, then encoded, with
    /// all 16 key bytes equal to `key`. Returns the bytes and the key's hex (the header value).
    public static func privatizedEnvelope(version: UInt64, key: UInt8, dimension: Int, seed: UInt64,
                                          privacy: PrivacyConfiguration) throws -> (bytes: [UInt8], key: String) {
        var rng = Xoshiro256(seed: seed)
        let raw = (0 ..< dimension).map { _ in Float.random(in: -0.05 ... 0.05, using: &rng) }
        let update = try UpdatePrivatizer(configuration: privacy, dimension: dimension).privatize(update: raw, using: &rng)
        let idempotency = try IdempotencyKey(bytes: [UInt8](repeating: key, count: 16))
        let bytes = try UpdateEnvelope(update: update, configuration: privacy, modelVersion: version, samplingRate: 1,
                                       idempotencyKey: idempotency).encode()
        return (bytes, idempotency.hex)
    }

    /// Rewrites the trailing CRC-32 of an update envelope (or model file section) after a
    /// deliberate edit, so that a test reaches the check behind the checksum.
    public static func recomputeTrailingChecksum(_ bytes: inout [UInt8]) {
        var crc = CRC32()
        crc.update(Array(bytes.dropLast(4)))
        let value = crc.checksum
        let n = bytes.count
        for j in 0 ..< 4 { bytes[n - 4 + j] = UInt8(truncatingIfNeeded: value >> UInt32(8 * j)) }
    }
}

/// A fresh temporary directory, removed (with its files) when `body` returns.
public func withTemporaryDirectory<T>(_ body: (String) throws -> T) throws -> T {
    var template = Array("/tmp/hearth-test-XXXXXX".utf8CString)
    let created = template.withUnsafeMutableBufferPointer { buffer -> Bool in
        guard let base = buffer.baseAddress else { return false }
        return mkdtemp(base) != nil
    }
    guard created else { throw TemporaryDirectoryError(message: "mkdtemp failed: \(String(cString: strerror(errno)))") }
    let path = template.withUnsafeBufferPointer { buffer in
        String(cString: buffer.baseAddress!)
    }
    defer { removeTree(path) }
    return try body(path)
}

/// A fresh temporary directory, removed (with its files) when the async `body` returns.
public func withTemporaryDirectory<T>(_ body: (String) async throws -> T) async throws -> T {
    var template = Array("/tmp/hearth-test-XXXXXX".utf8CString)
    let path = template.withUnsafeMutableBufferPointer { buffer -> String? in
        guard let base = buffer.baseAddress, let made = mkdtemp(base) else { return nil }
        return String(cString: made)
    }
    guard let path else { throw TemporaryDirectoryError(message: "mkdtemp failed: \(String(cString: strerror(errno)))") }
    defer { removeTree(path) }
    return try await body(path)
}

/// Failure to create a temporary directory.
public struct TemporaryDirectoryError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

/// Removes `path` and everything below it (test helper; ignores errors).
public func removeTree(_ path: String) {
    if let dir = opendir(path) {
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
            }
            if name == "." || name == ".." { continue }
            let child = path + "/" + name
            var info = stat()
            if lstat(child, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR {
                removeTree(child)
            } else {
                unlink(child)
            }
        }
        closedir(dir)
    }
    rmdir(path)
}
