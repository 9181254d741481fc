#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import HearthCore
@testable import HearthStore
import HearthTestSupport
import Testing

@Suite("Device store: damaged files and full disks", .computeLane)
struct FailureTests {
    @Test("a garbage file is reported as notADatabase, with the path, not a crash")
    func garbageFile() throws {
        try withTemporaryDirectory { directory throws in
            let path = directory + "/hearth.db"
            var state: UInt64 = 0x9E37_79B9_7F4A_7C15
            let garbage = (0 ..< 8_192).map { _ -> UInt8 in
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                return UInt8(truncatingIfNeeded: state >> 56)
            }
            writeFile(path, garbage)
            let error = #expect(throws: StoreError.self) { try DeviceStore(path: path) }
            #expect(error == .notADatabase(""))
            #expect(error?.resultCode?.primary == .notadb)
            #expect(error?.message.contains(path) == true)
            #expect(throws: StoreError.notADatabase("")) { try DeviceStoreReader(path: path) }
            // Nothing was overwritten.
            #expect(readFile(path) == garbage)
        }
    }

    @Test("a damaged schema page is reported as corrupt")
    func damagedSchemaPage() throws {
        try withTemporaryDirectory { directory throws in
            let path = directory + "/hearth.db"
            do {
                let store = try DeviceStore(path: path)
                _ = try store.append(try records(50))
                store.close()
            }
            // Keep the 100-byte header valid; smash the rest of page 1 (the schema b-tree).
            writeFile(path, [UInt8](repeating: 0xFF, count: 3_000), offset: 100)
            let error = #expect(throws: StoreError.self) { try DeviceStore(path: path) }
            #expect(error == .corrupt("") || error == .notADatabase(""))
            #expect(error?.message.contains(path) == true)
        }
    }

    @Test("integrityCheck reports damage in a data page")
    func integrityCheckFindsDamage() throws {
        try withTemporaryDirectory { directory throws in
            let path = directory + "/hearth.db"
            do {
                let store = try DeviceStore(path: path)
                _ = try store.append(try records(3_000))
                store.close()
            }
            let size = fileSize(path)
            #expect(size > 40 * 4096)
            // Damage pages in the middle of the file.
            writeFile(path, [UInt8](repeating: 0x5A, count: 8 * 4096), offset: Int(size / 2 / 4096) * 4096)
            do {
                let store = try DeviceStore(path: path)
                defer { store.close() }
                #expect(try store.integrityCheck() != ["ok"])
            } catch {
                #expect(error as? StoreError == .corrupt(""))
            }
        }
    }

    @Test("SQLITE_FULL (page limit) surfaces as .full, rolls the batch back and keeps earlier data")
    func fullDisk() throws {
        try withStore { store, _ throws in
            let kept = try records(100)
            _ = try store.append(kept)
            let pages = try #require(Int(try store.pragma("page_count") ?? ""))
            try store.connection.execute("PRAGMA max_page_count = \(pages + 2)")
            let big = try records(5_000, prefix: "overflow-" + String(repeating: "z", count: 60))
            let error = #expect(throws: StoreError.self) { try store.append(big) }
            #expect(error == .full(""))
            #expect(error?.resultCode?.primary == .full)
            #expect(try store.events(after: 0, limit: 1_000).map(\.record) == kept)
            #expect(try store.integrityCheck() == ["ok"])
            // With room again the store carries on.
            try store.connection.execute("PRAGMA max_page_count = 1073741823")
            #expect(try store.append(big).count == 5_000)
        }
    }

    @Test("a path in a missing directory is reported as cannotOpen")
    func missingDirectory() throws {
        try withTemporaryDirectory { directory throws in
            let error = #expect(throws: StoreError.self) { try DeviceStore(path: directory + "/no/such/dir/hearth.db") }
            #expect(error == .cannotOpen(""))
            #expect(error?.resultCode?.primary == .cantopen)
        }
    }

    @Test("a read-only directory is reported with the SQLite code", .enabled(if: geteuid() != 0, "root ignores directory permissions"))
    func readOnlyDirectory() throws {
        try withTemporaryDirectory { directory throws in
            let sub = directory + "/ro"
            #expect(mkdir(sub, 0o555) == 0)
            defer { chmod(sub, 0o755) }
            let error = #expect(throws: StoreError.self) { try DeviceStore(path: sub + "/hearth.db") }
            #expect(error == .cannotOpen("") || error == .readOnly(""))
            #expect(error?.resultCode != nil)
        }
    }

    @Test("a reader on a missing store fails cleanly")
    func readerMissingStore() throws {
        _ = try withTemporaryDirectory { directory throws in
            #expect(throws: StoreError.cannotOpen("")) { _ = try DeviceStoreReader(path: directory + "/none.db") }
        }
    }
}
