/// A TOML value: the subset Hearth's configuration files use.
///
/// Supported: `[table]` and `[dotted.table]` headers, `key = value` with bare or quoted keys,
/// basic strings (with `\"`, `\\`, `\n`, `\t`, `\uXXXX` escapes), literal strings, integers
/// (with `_` separators, `0x`/`0o`/`0b`), floats (`1.5`, `1e-6`, `inf`, `nan`), booleans and
/// arrays (also over several lines), and `#` comments. Not supported (a clear error): inline
/// tables, arrays of tables, dates, multi-line strings.
public enum TOMLValue: Sendable, Equatable {
    case string(String)
    case integer(Int64)
    case float(Double)
    case boolean(Bool)
    case array([TOMLValue])
    case table([String: TOMLValue])

    /// A short name of the value's type, for error messages.
    public var typeName: String {
        switch self {
        case .string: return "string"
        case .integer: return "integer"
        case .float: return "float"
        case .boolean: return "boolean"
        case .array: return "array"
        case .table: return "table"
        }
    }
}

/// A syntax error in a TOML document, with its line.
public struct TOMLError: Error, Sendable, Equatable, CustomStringConvertible {
    public let line: Int
    public let message: String
    public var description: String { "line \(line): \(message)" }
}

/// Parses a TOML document into its root table.
public func parseTOML(_ text: String) throws(TOMLError) -> [String: TOMLValue] {
    var parser = TOMLParser(Array(text.utf8))
    return try parser.document()
}

private struct TOMLParser {
    let bytes: [UInt8]
    var position = 0
    var line = 1

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    mutating func document() throws(TOMLError) -> [String: TOMLValue] {
        var root: [String: TOMLValue] = [:]
        var current: [String] = []
        var definedTables: Set<String> = []
        while true {
            skipWhitespaceAndComments(newlines: true)
            guard let byte = peek() else { break }
            if byte == UInt8(ascii: "[") {
                position += 1
                if peek() == UInt8(ascii: "[") { throw error("arrays of tables are not supported") }
                skipSpaces()
                let path = try keyPath()
                skipSpaces()
                try expect(UInt8(ascii: "]"))
                let name = path.joined(separator: ".")
                guard definedTables.insert(name).inserted else { throw error("table [\(name)] is defined twice") }
                try ensureTable(&root, path)
                current = path
            } else {
                let path = try keyPath()
                skipSpaces()
                try expect(UInt8(ascii: "="))
                skipSpaces()
                let value = try self.value()
                try insert(&root, current + path, value)
            }
            try endOfLine()
        }
        return root
    }

    // MARK: Values

    /// Deepest accepted nesting of arrays: the recursion of `value` and `array` stays bounded,
    /// so a hostile file is a syntax error, never a stack overflow.
    static let maxArrayDepth = 32

    /// A value; `depth` is the number of arrays it sits in.
    mutating func value(depth: Int = 0) throws(TOMLError) -> TOMLValue {
        guard let byte = peek() else { throw error("expected a value") }
        switch byte {
        case UInt8(ascii: "\""):
            return .string(try basicString())
        case UInt8(ascii: "'"):
            return .string(try literalString())
        case UInt8(ascii: "["):
            return try array(depth: depth + 1)
        case UInt8(ascii: "{"):
            throw error("inline tables are not supported")
        case UInt8(ascii: "t"), UInt8(ascii: "f"):
            let word = bareWord()
            if word == "true" { return .boolean(true) }
            if word == "false" { return .boolean(false) }
            throw error("unexpected '\(word)'")
        default:
            return try number()
        }
    }

    mutating func array(depth: Int) throws(TOMLError) -> TOMLValue {
        guard depth <= TOMLParser.maxArrayDepth else { throw error("arrays nested deeper than \(TOMLParser.maxArrayDepth) levels") }
        try expect(UInt8(ascii: "["))
        var items: [TOMLValue] = []
        while true {
            skipWhitespaceAndComments(newlines: true)
            if peek() == UInt8(ascii: "]") {
                position += 1
                return .array(items)
            }
            items.append(try value(depth: depth))
            skipWhitespaceAndComments(newlines: true)
            if peek() == UInt8(ascii: ",") {
                position += 1
            } else if peek() != UInt8(ascii: "]") {
                throw error("expected ',' or ']' in array")
            }
        }
    }

    mutating func number() throws(TOMLError) -> TOMLValue {
        let word = bareWord(allowing: "+-._:")
        guard !word.isEmpty else { throw error("expected a value") }
        let cleaned = word.replacingUnderscores()
        let body = cleaned.hasPrefix("+") ? String(cleaned.dropFirst()) : cleaned
        for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] where body.hasPrefix(prefix) {
            guard let value = Int64(body.dropFirst(2), radix: radix) else { throw error("invalid integer '\(word)'") }
            return .integer(value)
        }
        if let value = Int64(body) { return .integer(value) }
        switch body {
        case "inf": return .float(.infinity)
        case "-inf": return .float(-.infinity)
        case "nan", "-nan": return .float(.nan)
        default: break
        }
        if body.contains(":") { throw error("dates and times are not supported: '\(word)'") }
        if let value = Double(body), body.first != "." , body.last != "." { return .float(value) }
        throw error("invalid value '\(word)'")
    }

    mutating func basicString() throws(TOMLError) -> String {
        try expect(UInt8(ascii: "\""))
        if peek() == UInt8(ascii: "\""), position + 1 < bytes.count, bytes[position + 1] == UInt8(ascii: "\"") {
            throw error("multi-line strings are not supported")
        }
        var out: [UInt8] = []
        while true {
            guard let byte = peek() else { throw error("unterminated string") }
            if byte == UInt8(ascii: "\n") { throw error("newline in a string") }
            position += 1
            switch byte {
            case UInt8(ascii: "\""):
                return try utf8(out)
            case UInt8(ascii: "\\"):
                guard let escape = next() else { throw error("unterminated escape") }
                switch escape {
                case UInt8(ascii: "\""): out.append(UInt8(ascii: "\""))
                case UInt8(ascii: "\\"): out.append(UInt8(ascii: "\\"))
                case UInt8(ascii: "n"): out.append(10)
                case UInt8(ascii: "t"): out.append(9)
                case UInt8(ascii: "r"): out.append(13)
                case UInt8(ascii: "u"):
                    var scalarValue: UInt32 = 0
                    for _ in 0 ..< 4 {
                        guard let hex = next(), let digit = hexValue(hex) else { throw error("invalid \\u escape") }
                        scalarValue = scalarValue * 16 + digit
                    }
                    guard let scalar = Unicode.Scalar(scalarValue) else { throw error("invalid \\u escape") }
                    out.append(contentsOf: Array(String(Character(scalar)).utf8))
                default:
                    throw error("unknown escape '\\\(Character(Unicode.Scalar(escape)))'")
                }
            default:
                out.append(byte)
            }
        }
    }

    mutating func literalString() throws(TOMLError) -> String {
        try expect(UInt8(ascii: "'"))
        var out: [UInt8] = []
        while true {
            guard let byte = peek() else { throw error("unterminated string") }
            if byte == UInt8(ascii: "\n") { throw error("newline in a string") }
            position += 1
            if byte == UInt8(ascii: "'") { return try utf8(out) }
            out.append(byte)
        }
    }

    // MARK: Keys and tables

    /// Most parts in one dotted key or table name: `ensureTable` and `insert` recurse once per
    /// part, copying the rest of the path, so the bound keeps time, memory and stack small.
    static let maxKeyParts = 32

    mutating func keyPath() throws(TOMLError) -> [String] {
        var parts: [String] = []
        while true {
            guard parts.count < TOMLParser.maxKeyParts else { throw error("a dotted key of more than \(TOMLParser.maxKeyParts) parts") }
            skipSpaces()
            guard let byte = peek() else { throw error("expected a key") }
            if byte == UInt8(ascii: "\"") {
                parts.append(try basicString())
            } else if byte == UInt8(ascii: "'") {
                parts.append(try literalString())
            } else {
                let word = bareWord()
                guard !word.isEmpty else { throw error("expected a key") }
                parts.append(word)
            }
            skipSpaces()
            guard peek() == UInt8(ascii: ".") else { return parts }
            position += 1
        }
    }

    func ensureTable(_ table: inout [String: TOMLValue], _ path: [String]) throws(TOMLError) {
        guard let head = path.first else { return }
        var child: [String: TOMLValue]
        switch table[head] {
        case nil: child = [:]
        case .table(let existing): child = existing
        case .some(let other): throw error("'\(head)' is a \(other.typeName), not a table")
        }
        try ensureTable(&child, Array(path.dropFirst()))
        table[head] = .table(child)
    }

    func insert(_ table: inout [String: TOMLValue], _ path: [String], _ value: TOMLValue) throws(TOMLError) {
        guard let head = path.first else { return }
        if path.count == 1 {
            guard table[head] == nil else { throw error("key '\(head)' is defined twice") }
            table[head] = value
            return
        }
        var child: [String: TOMLValue]
        switch table[head] {
        case nil: child = [:]
        case .table(let existing): child = existing
        case .some(let other): throw error("'\(head)' is a \(other.typeName), not a table")
        }
        try insert(&child, Array(path.dropFirst()), value)
        table[head] = .table(child)
    }

    // MARK: Lexing

    func peek() -> UInt8? { position < bytes.count ? bytes[position] : nil }

    mutating func next() -> UInt8? {
        guard position < bytes.count else { return nil }
        defer { position += 1 }
        if bytes[position] == UInt8(ascii: "\n") { line += 1 }
        return bytes[position]
    }

    mutating func expect(_ byte: UInt8) throws(TOMLError) {
        guard peek() == byte else { throw error("expected '\(Character(Unicode.Scalar(byte)))'") }
        position += 1
    }

    mutating func skipSpaces() {
        while let byte = peek(), byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") { position += 1 }
    }

    mutating func skipWhitespaceAndComments(newlines: Bool) {
        while let byte = peek() {
            if byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") || byte == UInt8(ascii: "\r") {
                position += 1
            } else if byte == UInt8(ascii: "\n") && newlines {
                _ = next()
            } else if byte == UInt8(ascii: "#") {
                while let c = peek(), c != UInt8(ascii: "\n") { position += 1 }
            } else {
                return
            }
        }
    }

    mutating func endOfLine() throws(TOMLError) {
        skipSpaces()
        if peek() == UInt8(ascii: "#") {
            while let c = peek(), c != UInt8(ascii: "\n") { position += 1 }
        }
        if peek() == UInt8(ascii: "\r") { position += 1 }
        guard let byte = peek() else { return }
        guard byte == UInt8(ascii: "\n") else { throw error("unexpected text after the value") }
        _ = next()
    }

    mutating func bareWord(allowing extra: String = "") -> String {
        let allowed = Set(extra.utf8)
        let start = position
        while let byte = peek(),
              (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
              || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
              || allowed.contains(byte) {
            position += 1
        }
        return String(decoding: bytes[start ..< position], as: UTF8.self)
    }

    func hexValue(_ byte: UInt8) -> UInt32? {
        switch byte {
        case UInt8(ascii: "0") ... UInt8(ascii: "9"): return UInt32(byte - UInt8(ascii: "0"))
        case UInt8(ascii: "a") ... UInt8(ascii: "f"): return UInt32(byte - UInt8(ascii: "a") + 10)
        case UInt8(ascii: "A") ... UInt8(ascii: "F"): return UInt32(byte - UInt8(ascii: "A") + 10)
        default: return nil
        }
    }

    func utf8(_ bytes: [UInt8]) throws(TOMLError) -> String {
        var iterator = bytes.makeIterator()
        var decoder = UTF8()
        var result = ""
        loop: while true {
            switch decoder.decode(&iterator) {
            case .scalarValue(let scalar): result.unicodeScalars.append(scalar)
            case .emptyInput: break loop
            case .error: throw error("invalid UTF-8 in a string")
            }
        }
        return result
    }

    func error(_ message: String) -> TOMLError { TOMLError(line: line, message: message) }
}

extension String {
    fileprivate func replacingUnderscores() -> String { String(filter { $0 != "_" }) }
}
