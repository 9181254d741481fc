#if canImport(Glibc)
import Glibc
#endif
import HearthFiles
import HearthTestSupport
import Testing

/// `DurableFile` replaces a file through a synced temporary file and a rename (then fsyncs the
/// directory), so a power cut leaves the old bytes or the new, never an empty or half-written
/// file (docs/store.md, "Power loss"); `create` never overwrites.
@Suite("Durable file writes")
struct DurableFileTests {
    static func contents(_ path: String) -> String? {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 4096)
        let n = read(fd, &bytes, bytes.count)
        return n < 0 ? nil : String(decoding: bytes[0 ..< n], as: UTF8.self)
    }

    static func names(in directory: String) -> [String] {
        guard let handle = opendir(directory) else { return [] }
        defer { closedir(handle) }
        var names: [String] = []
        while let entry = readdir(handle) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    @Test("replace writes the whole file through a new inode and leaves no temporary file behind")
    func replacesWholeFile() throws {
        try withTemporaryDirectory { directory in
            let path = directory + "/ledger-lost"
            try DurableFile.replace(path, with: Array("a first, longer note\n".utf8), mode: 0o640)
            var before = stat()
            #expect(stat(path, &before) == 0)
            #expect(before.st_mode & 0o777 == 0o640)
            try DurableFile.replace(path, with: Array("second\n".utf8))
            // A new inode: the file was replaced by a rename, not truncated and rewritten in place.
            var after = stat()
            #expect(stat(path, &after) == 0)
            #expect(after.st_ino != before.st_ino)
            #expect(Self.contents(path) == "second\n")
            #expect(Self.names(in: directory) == ["ledger-lost"])
            try DurableFile.syncDirectory(containing: path)
        }
    }

    @Test("replace fails, creating nothing, when the directory is missing; the error names the path")
    func failsWithoutDirectory() throws {
        try withTemporaryDirectory { directory in
            let path = directory + "/missing/marker"
            #expect {
                try DurableFile.replace(path, with: Array("text\n".utf8))
            } throws: { error in
                let error = error as? FileError
                return error?.systemError == ENOENT && error?.description.contains("cannot create \(path).tmp-") == true
            }
            #expect(Self.names(in: directory).isEmpty)
            #expect(throws: FileError.self) { try DurableFile.syncDirectory(containing: path) }
        }
    }

    @Test("create writes a new file with its mode and refuses to overwrite one that exists")
    func createIsExclusive() throws {
        try withTemporaryDirectory { directory in
            let path = directory + "/signing.key"
            try DurableFile.create(path, with: Array("key\n".utf8), mode: 0o600)
            var info = stat()
            #expect(stat(path, &info) == 0 && info.st_mode & 0o777 == 0o600)
            #expect {
                try DurableFile.create(path, with: Array("other\n".utf8), mode: 0o600)
            } throws: { error in
                (error as? FileError)?.systemError == EEXIST
            }
            #expect(Self.contents(path) == "key\n")
        }
    }

    @Test("a write that fails (no space) removes the temporary file and keeps the old one")
    func failedWriteKeepsTheOldFile() throws {
        // /dev/full accepts the open and fails every write with ENOSPC; a symlink named like the
        // temporary file makes replace write into it.
        try withTemporaryDirectory { directory in
            let path = directory + "/state"
            try DurableFile.replace(path, with: Array("old\n".utf8))
            #expect(symlink("/dev/full", path + ".tmp-\(getpid())") == 0)
            #expect {
                try DurableFile.replace(path, with: Array("new\n".utf8))
            } throws: { error in
                (error as? FileError)?.systemError == ENOSPC
            }
            #expect(Self.contents(path) == "old\n")
            #expect(Self.names(in: directory) == ["state"])
        }
    }
}
