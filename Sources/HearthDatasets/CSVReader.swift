#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Minimal RFC 4180 CSV parsing over bytes: commas, double-quoted fields with `""` escapes,
/// LF or CRLF line ends.
public struct CSVTable: Sendable {
    /// Column names from the first row.
    public let header: [String]
    /// Data rows; each has `header.count` fields.
    public let rows: [[String]]

    /// Parses `bytes`; a row with a different field count than the header is an error.
    public init(bytes: [UInt8], source: String = "csv") throws(DatasetError) {
        var records: [[String]] = []
        var field: [UInt8] = []
        var record: [String] = []
        var inQuotes = false
        var index = 0
        var line = 1
        func endField() {
            record.append(String(decoding: field, as: UTF8.self))
            field.removeAll(keepingCapacity: true)
        }
        while index < bytes.count {
            let byte = bytes[index]
            if inQuotes {
                if byte == UInt8(ascii: "\"") {
                    if index + 1 < bytes.count && bytes[index + 1] == UInt8(ascii: "\"") {
                        field.append(byte)
                        index += 1
                    } else {
                        inQuotes = false
                    }
                } else {
                    if byte == UInt8(ascii: "\n") { line += 1 }
                    field.append(byte)
                }
            } else if byte == UInt8(ascii: "\"") && field.isEmpty {
                inQuotes = true
            } else if byte == UInt8(ascii: ",") {
                endField()
            } else if byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "\r") {
                if byte == UInt8(ascii: "\r") && index + 1 < bytes.count && bytes[index + 1] == UInt8(ascii: "\n") { index += 1 }
                if !(record.isEmpty && field.isEmpty) {
                    endField()
                    records.append(record)
                    record.removeAll(keepingCapacity: true)
                }
                line += 1
            } else {
                field.append(byte)
            }
            index += 1
        }
        if inQuotes { throw .malformedRow("\(source): unterminated quoted field at line \(line)") }
        if !(record.isEmpty && field.isEmpty) {
            endField()
            records.append(record)
        }
        guard let first = records.first else { throw .empty("\(source): no header row") }
        header = first
        for (offset, row) in records.dropFirst().enumerated() where row.count != first.count {
            throw .malformedRow("\(source): row \(offset + 2) has \(row.count) fields, header has \(first.count)")
        }
        rows = Array(records.dropFirst())
    }

    /// Reads and parses the file at `path`.
    public init(contentsOf path: String) throws(DatasetError) {
        try self.init(bytes: try readFile(path), source: path)
    }

    /// The position of column `name`, if present.
    public func column(_ name: String) -> Int? { header.firstIndex(of: name) }
}

/// The whole content of the file at `path`.
public func readFile(_ path: String) throws(DatasetError) -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw .unreadable("cannot open \(path): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if count < 0 {
            if errno == EINTR { continue }
            throw .unreadable("cannot read \(path): \(String(cString: strerror(errno)))")
        }
        if count == 0 { break }
        bytes.append(contentsOf: chunk[0 ..< count])
    }
    return bytes
}
