/// Reads typed settings out of a parsed TOML document, section by section.
///
/// Shared by the agent's and the aggregator's configuration: unknown sections and keys are
/// errors (a typo must not silently fall back to a default), and every type error names its
/// `section.key`.
struct TOMLReader {
    let root: [String: TOMLValue]

    /// Fails on a section or key that is not in `known`.
    func checkKnown(_ known: [String: [String]]) throws(ConfigurationError) {
        for (section, value) in root {
            guard let keys = known[section] else { throw .unknownKey(section) }
            guard case .table(let table) = value else { throw .invalid(key: section, "must be a table") }
            for key in table.keys where !keys.contains(key) { throw .unknownKey("\(section).\(key)") }
        }
    }

    private func lookup(_ section: String, _ key: String) -> TOMLValue? {
        guard case .table(let table)? = root[section] else { return nil }
        return table[key]
    }

    func string(_ section: String, _ key: String, _ target: inout String) throws(ConfigurationError) {
        guard let value = lookup(section, key) else { return }
        guard case .string(let s) = value else { throw .invalid(key: "\(section).\(key)", "must be a string, got a \(value.typeName)") }
        target = s
    }

    func integer(_ section: String, _ key: String, _ target: inout Int) throws(ConfigurationError) {
        guard let value = lookup(section, key) else { return }
        guard case .integer(let i) = value, let narrowed = Int(exactly: i) else {
            throw .invalid(key: "\(section).\(key)", "must be an integer, got a \(value.typeName)")
        }
        target = narrowed
    }

    func double(_ section: String, _ key: String, _ target: inout Double) throws(ConfigurationError) {
        guard let value = lookup(section, key) else { return }
        switch value {
        case .float(let d): target = d
        case .integer(let i): target = Double(i)
        default: throw .invalid(key: "\(section).\(key)", "must be a number, got a \(value.typeName)")
        }
    }

    func boolean(_ section: String, _ key: String, _ target: inout Bool) throws(ConfigurationError) {
        guard let value = lookup(section, key) else { return }
        guard case .boolean(let b) = value else { throw .invalid(key: "\(section).\(key)", "must be true or false, got a \(value.typeName)") }
        target = b
    }

    /// Parses `text`, then applies `overrides` (`section.key=value`, TOML values; a bare word
    /// is taken as a string, so `--set privacy.mode=central` works).
    static func parse(_ text: String, overrides: [String]) throws(ConfigurationError) -> TOMLReader {
        var root: [String: TOMLValue]
        do { root = try parseTOML(text) } catch { throw .syntax("\(error)") }
        for override in overrides {
            guard let equals = override.firstIndex(of: "=") else {
                throw .invalid(key: override, "an override is section.key=value")
            }
            let key = String(override[..<equals]).trimmingSpaces()
            let value = String(override[override.index(after: equals)...]).trimmingSpaces()
            let parsed: [String: TOMLValue]
            do {
                parsed = try parseTOML("v = " + value)
            } catch {
                parsed = ["v": .string(value)]
            }
            guard let v = parsed["v"] else { throw .invalid(key: key, "no value") }
            try set(&root, path: key.split(separator: ".").map(String.init), value: v)
        }
        return TOMLReader(root: root)
    }

    private static func set(_ table: inout [String: TOMLValue], path: [String], value: TOMLValue) throws(ConfigurationError) {
        guard let head = path.first else { return }
        if path.count == 1 {
            table[head] = value
            return
        }
        var child: [String: TOMLValue] = [:]
        if case .table(let existing)? = table[head] { child = existing }
        try set(&child, path: Array(path.dropFirst()), value: value)
        table[head] = .table(child)
    }
}

extension String {
    fileprivate func trimmingSpaces() -> String {
        var s = Substring(self)
        while s.first == " " { s = s.dropFirst() }
        while s.last == " " { s = s.dropLast() }
        return String(s)
    }
}
