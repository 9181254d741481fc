#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Files written so that they survive a crash or a power cut: the data is fsynced before it is
/// given its name, and the directory is fsynced after the name changes.
///
/// Without the directory fsync a rename or a creation can be lost at a power cut while the data
/// it pointed at is on disk (ext4 and others journal the directory entry separately).
public enum DurableFile {
    /// Replaces `path` with `bytes`: a temporary file beside it, written and fsynced, renamed
    /// over `path`, then the directory fsynced. A reader sees the old file or the whole new one;
    /// on failure the temporary file is removed and `path` is left as it was.
    public static func replace(_ path: String, with bytes: [UInt8], mode: mode_t = 0o644) throws(FileError) {
        let temporary = path + ".tmp-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else { throw FileError(.create, temporary) }
        do throws(FileError) {
            try writeAll(fd, bytes, temporary)
            guard fsync(fd) == 0 else { throw FileError(.sync, temporary) }
        } catch {
            close(fd)
            unlink(temporary)
            throw error
        }
        close(fd)
        guard rename(temporary, path) == 0 else {
            let error = FileError(.rename, temporary + " -> " + path)
            unlink(temporary)
            throw error
        }
        try syncDirectory(containing: path)
    }

    /// Creates `path` (it must not exist) with `bytes` and `mode`, fsyncs it, then fsyncs the
    /// directory so that the new name survives a power cut too.
    public static func create(_ path: String, with bytes: [UInt8], mode: mode_t) throws(FileError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard fd >= 0 else { throw FileError(.create, path) }
        defer { close(fd) }
        try writeAll(fd, bytes, path)
        guard fsync(fd) == 0 else { throw FileError(.sync, path) }
        try syncDirectory(containing: path)
    }

    /// fsyncs the directory that holds `path`, so that a rename, creation or removal in it is
    /// durable.
    public static func syncDirectory(containing path: String) throws(FileError) {
        let directory = path.lastIndex(of: "/").map { String(path[..<$0]) } ?? "."
        let fd = open(directory.isEmpty ? "/" : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw FileError(.openDirectory, directory) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw FileError(.syncDirectory, directory) }
    }

    private static func writeAll(_ fd: Int32, _ bytes: [UInt8], _ path: String) throws(FileError) {
        var written = 0
        while written < bytes.count {
            let count = bytes.withUnsafeBytes { raw in write(fd, raw.baseAddress.map { $0 + written }, raw.count - written) }
            if count < 0 {
                if errno == EINTR { continue }
                throw FileError(.write, path)
            }
            written += count
        }
    }
}

/// Why a `DurableFile` operation failed: the step, the path and the system's errno.
public struct FileError: Error, Equatable, CustomStringConvertible {
    fileprivate enum Code: Equatable {
        case create, write, sync, rename, openDirectory, syncDirectory
    }

    fileprivate let code: Code
    /// The path (or `from -> to` for a rename) the failed step worked on.
    public let path: String
    /// `errno` when the step failed.
    public let systemError: Int32

    /// The failure of step `code` on `path`, with the current `errno`.
    fileprivate init(_ code: Code, _ path: String) {
        self.code = code
        self.path = path
        self.systemError = errno
    }

    public var description: String {
        let step = switch code {
        case .create: "cannot create"
        case .write: "cannot write"
        case .sync: "cannot sync"
        case .rename: "cannot rename"
        case .openDirectory: "cannot open the directory"
        case .syncDirectory: "cannot sync the directory"
        }
        return "\(step) \(path): \(String(cString: strerror(systemError)))"
    }
}
