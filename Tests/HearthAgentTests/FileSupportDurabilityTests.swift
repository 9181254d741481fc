#if canImport(Glibc)
import Glibc
#endif
@testable import HearthAgent
import HearthTestSupport
import Testing

/// `FileSupport.writeSmallText` replaces a file through a synced temporary file and a rename
/// (then fsyncs the directory), so a power cut leaves the old text or the new, never an empty
/// or half-written file (docs/store.md, "Power loss").
@Suite("Agent file writes: replace through a synced temporary file")
struct FileSupportDurabilityTests {
    @Test("writeSmallText replaces the whole file and leaves no temporary file behind")
    func replacesWholeFile() throws {
        try withTemporaryDirectory { directory in
            let path = directory + "/ledger-lost"
            #expect(FileSupport.writeSmallText(path, "a first, longer note\n"))
            var before = stat()
            #expect(stat(path, &before) == 0)
            #expect(FileSupport.writeSmallText(path, "second\n"))
            // A new inode: the file was replaced by a rename, not truncated and rewritten in place.
            var after = stat()
            #expect(stat(path, &after) == 0)
            #expect(after.st_ino != before.st_ino)
            let bytes = try FileSupport.read(path)
            #expect(bytes.map { String(decoding: $0, as: UTF8.self) } == "second\n")
            #expect(!FileSupport.exists(path + ".tmp"))
            #expect(FileSupport.names(in: directory, prefix: "ledger-lost") == ["ledger-lost"])
            #expect(FileSupport.syncDirectory(containing: path))
        }
    }

    @Test("writeSmallText fails, creating nothing, when the directory is missing")
    func failsWithoutDirectory() throws {
        try withTemporaryDirectory { directory in
            let path = directory + "/missing/marker"
            #expect(!FileSupport.writeSmallText(path, "text\n"))
            #expect(!FileSupport.exists(path))
            #expect(!FileSupport.syncDirectory(containing: path))
        }
    }
}
