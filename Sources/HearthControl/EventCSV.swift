#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import HearthCore
import HearthLocalAPI

/// One event row of an import CSV, validated, with the line it came from.
public struct CSVEvent: Sendable, Hashable {
    /// 1-based line number in the file (the header is line 1).
    public var line: Int
    public var record: EventRecord

    public init(line: Int, record: EventRecord) {
        self.line = line
        self.record = record
    }

    /// The event as the local API's `POST /v1/events` takes it.
    public var json: JSONValue {
        var object: [String: JSONValue] = [
            "item": .string(record.item), "kind": .string(record.kind.name), "session": .string(record.session),
            "timestamp_ms": .integer(record.timestampMilliseconds),
        ]
        if let quantity = record.quantity { object["quantity"] = .integer(Int64(quantity)) }
        return .object(object)
    }
}

/// The import CSV: a header `item,kind,session,timestamp_ms[,quantity]` (columns in any
/// order), then one event per line. Fields may be double-quoted (RFC 4180, `""` for a quote,
/// no line breaks inside); blank lines are skipped; `\r\n` line ends are accepted; an empty
/// `quantity` means none.
public struct EventCSV: Sendable {
    /// Required columns.
    public static let requiredColumns = ["item", "kind", "session", "timestamp_ms"]
    /// Optional columns.
    public static let optionalColumns = ["quantity"]

    private let lines: [Substring]
    private let columns: [String: Int]
    private let columnCount: Int

    /// Parses the header of `text`. Throws `invalidInput` naming line 1 if it is missing or not
    /// the expected columns.
    public init(text: String) throws(ControlError) {
        (lines, columns, columnCount) = try EventCSV.parseHeader(text)
    }

    /// Reads and parses the header of the file at `path`; errors name the file.
    public init(contentsOf path: String) throws(ControlError) {
        let text = try EventCSV.readFile(path)
        do throws(ControlError) {
            (lines, columns, columnCount) = try EventCSV.parseHeader(text)
        } catch {
            throw error.annotated(prefix: "\(path): ")
        }
    }

    private static func parseHeader(_ text: String) throws(ControlError) -> ([Substring], [String: Int], Int) {
        // "\r\n" is one Character in Swift: split on both forms.
        let lines = text.split(omittingEmptySubsequences: false) { $0 == "\n" || $0 == "\r\n" }
        guard let first = lines.first, !EventCSV.trimmed(first).isEmpty else {
            throw .invalidInput("line 1: the header is missing (expected item,kind,session,timestamp_ms[,quantity])")
        }
        let names: [String]
        do throws(FieldError) {
            names = try EventCSV.fields(of: EventCSV.trimmed(first)).map { $0.lowercased() }
        } catch {
            throw .invalidInput("line 1: \(error.message)")
        }
        var columns: [String: Int] = [:]
        for (index, name) in names.enumerated() {
            guard EventCSV.requiredColumns.contains(name) || EventCSV.optionalColumns.contains(name) else {
                throw .invalidInput("line 1: unknown column \"\(name)\" (expected item,kind,session,timestamp_ms[,quantity])")
            }
            guard columns[name] == nil else { throw .invalidInput("line 1: column \"\(name)\" appears twice") }
            columns[name] = index
        }
        for name in EventCSV.requiredColumns where columns[name] == nil {
            throw .invalidInput("line 1: the header lacks the \"\(name)\" column")
        }
        return (lines, columns, names.count)
    }

    /// Parses and validates every data row, in order, in batches of at most `batchSize`.
    /// `body` gets each batch as soon as it is complete and valid. A malformed row throws
    /// `invalidInput` naming its line before its batch is handed over, so nothing from that
    /// batch is sent; earlier batches have been handed over already.
    public func forEachBatch(
        of batchSize: Int, _ body: ([CSVEvent]) async throws(ControlError) -> Void
    ) async throws(ControlError) {
        let size = max(1, batchSize)
        var batch: [CSVEvent] = []
        batch.reserveCapacity(size)
        for index in 1 ..< max(1, lines.count) {
            let line = EventCSV.trimmed(lines[index])
            if line.isEmpty { continue }
            batch.append(try row(line, number: index + 1))
            if batch.count == size {
                try await body(batch)
                batch.removeAll(keepingCapacity: true)
            }
        }
        if !batch.isEmpty { try await body(batch) }
    }

    /// All rows (validated), for callers that want them at once.
    public func allEvents() throws(ControlError) -> [CSVEvent] {
        var events: [CSVEvent] = []
        for index in 1 ..< max(1, lines.count) {
            let line = EventCSV.trimmed(lines[index])
            if line.isEmpty { continue }
            events.append(try row(line, number: index + 1))
        }
        return events
    }

    private func row(_ line: Substring, number: Int) throws(ControlError) -> CSVEvent {
        let values: [String]
        do throws(FieldError) {
            values = try EventCSV.fields(of: line)
        } catch {
            throw .invalidInput("line \(number): \(error.message)")
        }
        guard values.count == columnCount else {
            throw .invalidInput("line \(number): \(values.count) fields, the header has \(columnCount)")
        }
        func value(_ name: String) -> String? { columns[name].map { values[$0] } }
        let kindName = value("kind") ?? ""
        guard let kind = EventKind(name: kindName) else {
            throw .invalidInput("line \(number): kind: unknown kind \"\(kindName)\"; expected view, click, cart or purchase")
        }
        let timestampText = value("timestamp_ms") ?? ""
        guard let timestamp = Int64(timestampText) else {
            throw .invalidInput("line \(number): timestamp_ms: \"\(timestampText)\" is not an integer")
        }
        var quantity: Int32?
        if let text = value("quantity"), !text.isEmpty {
            guard let parsed = Int32(text) else {
                throw .invalidInput("line \(number): quantity: \"\(text)\" is not an integer in 1...\(EventRecord.maxQuantity)")
            }
            quantity = parsed
        }
        do throws(CoreError) {
            let record = try EventRecord(item: value("item") ?? "", kind: kind, session: value("session") ?? "",
                                         quantity: quantity, timestampMilliseconds: timestamp)
            return CSVEvent(line: number, record: record)
        } catch {
            throw .invalidInput("line \(number): \(error.message)")
        }
    }

    private struct FieldError: Error {
        let message: String
    }

    /// Splits one line into fields, honouring double quotes.
    private static func fields(of line: Substring) throws(FieldError) -> [String] {
        var fields: [String] = []
        var current: [UInt8] = []
        var inQuotes = false
        var wasQuoted = false
        let bytes = Array(line.utf8)
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            if inQuotes {
                if byte == UInt8(ascii: "\"") {
                    if index + 1 < bytes.count, bytes[index + 1] == UInt8(ascii: "\"") {
                        current.append(byte)
                        index += 1
                    } else {
                        inQuotes = false
                    }
                } else {
                    current.append(byte)
                }
            } else if byte == UInt8(ascii: ",") {
                fields.append(String(decoding: current, as: UTF8.self))
                current.removeAll()
                wasQuoted = false
            } else if byte == UInt8(ascii: "\"") {
                guard current.isEmpty, !wasQuoted else { throw FieldError(message: "a quote inside an unquoted field") }
                inQuotes = true
                wasQuoted = true
            } else {
                guard !wasQuoted else { throw FieldError(message: "text after a closing quote") }
                current.append(byte)
            }
            index += 1
        }
        guard !inQuotes else { throw FieldError(message: "an unterminated quoted field") }
        fields.append(String(decoding: current, as: UTF8.self))
        return fields
    }

    /// The line without a trailing `\r` and surrounding spaces/tabs.
    private static func trimmed(_ line: Substring) -> Substring {
        var line = line
        while let last = line.last, last == "\r" || last == " " || last == "\t" { line = line.dropLast() }
        while let first = line.first, first == " " || first == "\t" { line = line.dropFirst() }
        return line
    }

    /// Reads a whole file as UTF-8 text.
    static func readFile(_ path: String) throws(ControlError) -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw .fileSystem("cannot open \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count == 0 { break }
            if count < 0 {
                if errno == EINTR { continue }
                throw .fileSystem("cannot read \(path): \(String(cString: strerror(errno)))")
            }
            bytes.append(contentsOf: buffer[0 ..< count])
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw .invalidInput("\(path) is not valid UTF-8")
        }
        return text
    }
}
