import HearthFiles

/// Writes `bytes` to `path` atomically and durably (`DurableFile.replace`): a reader sees the old
/// file or the whole new one, and the new one survives a power cut once this returns.
public func writeFileAtomically(_ path: String, bytes: [UInt8]) throws(DatasetError) {
    do throws(FileError) {
        try DurableFile.replace(path, with: bytes)
    } catch {
        throw .unreadable(error.description)
    }
}
