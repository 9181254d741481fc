#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, fsync, rename,
/// then fsync of the directory, so a reader sees the old file or the whole new one.
public func writeFileAtomically(_ path: String, bytes: [UInt8]) throws(DatasetError) {
    let temporary = path + ".tmp-\(getpid())"
    let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw .unreadable("cannot create \(temporary): \(String(cString: strerror(errno)))") }
    var written = 0
    while written < bytes.count {
        let count = bytes.withUnsafeBytes { raw in
            write(fd, raw.baseAddress.map { $0 + written }, raw.count - written)
        }
        if count < 0 {
            if errno == EINTR { continue }
            let message = String(cString: strerror(errno))
            close(fd)
            unlink(temporary)
            throw .unreadable("cannot write \(temporary): \(message)")
        }
        written += count
    }
    guard fsync(fd) == 0 else {
        let message = String(cString: strerror(errno))
        close(fd)
        unlink(temporary)
        throw .unreadable("cannot sync \(temporary): \(message)")
    }
    close(fd)
    guard rename(temporary, path) == 0 else {
        let message = String(cString: strerror(errno))
        unlink(temporary)
        throw .unreadable("cannot rename \(temporary) to \(path): \(message)")
    }
    let directory = path.lastIndex(of: "/").map { String(path[..<$0]) } ?? "."
    let dirfd = open(directory.isEmpty ? "/" : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    if dirfd >= 0 {
        fsync(dirfd)
        close(dirfd)
    }
}
