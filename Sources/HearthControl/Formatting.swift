import HearthLocalAPI

/// Human-readable renderings of the agent's answers (the `--json` output is the answer itself).
public enum ControlFormat {
    /// `GET /v1/status` as an aligned summary; fields beyond the documented ones are listed
    /// after them as compact JSON.
    public static func status(_ value: JSONValue) -> String {
        let object = value.objectValue ?? [:]
        let privacy = object["privacy"]?.objectValue ?? [:]
        var rows: [(String, String)] = [
            ("model version", text(object["model_version"], none: "none")),
            ("kernel", text(object["kernel"], none: "unknown")),
            ("events", text(object["events_total"], none: "unknown")),
            ("outbox", text(object["outbox_pending"], none: "unknown") + " pending"),
            ("last upload", timestamp(object["last_upload"])),
            ("privacy", "ε " + text(privacy["epsilon_spent"], none: "?") + " spent of " + text(privacy["epsilon_budget"], none: "?")
                + " at δ " + text(privacy["delta"], none: "?")),
        ]
        rows += healthRows(object)
        let known: Set<String> = ["model_version", "kernel", "events_total", "outbox_pending", "last_upload", "privacy",
                                  "health", "conditions"]
        for key in object.keys.sorted() where !known.contains(key) {
            rows.append((key.replacingUnderscores(), text(object[key], none: "null")))
        }
        return table(rows)
    }

    /// The agent's health: `health  ok`, or `health  degraded` and one row per active
    /// condition (`  disk_full  since <UTC time>: <detail>`). Nothing for an agent that does
    /// not report it.
    static func healthRows(_ object: [String: JSONValue]) -> [(String, String)] {
        guard let health = object["health"] else { return [] }
        let conditions = object["conditions"]?.arrayValue ?? []
        var rows = [("health", text(health, none: "unknown"))]
        for condition in conditions {
            let fields = condition.objectValue ?? [:]
            rows.append(("  " + text(fields["name"], none: "?"),
                         "since " + timestamp(fields["since"]) + ": " + text(fields["detail"], none: "")))
        }
        return rows
    }

    /// A ranking (`recommendations` or `rank`): one numbered line per item with its score.
    public static func ranking(_ value: JSONValue) -> String {
        let items = value.objectValue?["items"]?.arrayValue ?? []
        guard !items.isEmpty else { return "no items" }
        let width = String(items.count).count
        return items.enumerated().map { index, entry in
            let object = entry.objectValue ?? [:]
            let number = String(index + 1)
            let pad = String(repeating: " ", count: width - number.count)
            return "\(pad)\(number). \(text(object["item"], none: "?"))  \(score(object["score"]))"
        }.joined(separator: "\n")
    }

    /// `GET /v1/privacy`: the budget line, then one line per ledger entry.
    public static func privacy(_ value: JSONValue) -> String {
        let object = value.objectValue ?? [:]
        var lines = ["ε spent \(text(object["epsilon_spent"], none: "?")) of \(text(object["epsilon_budget"], none: "?")) at δ \(text(object["delta"], none: "?"))"]
        let entries = object["entries"]?.arrayValue ?? []
        if entries.isEmpty {
            lines.append("no ledger entries")
        } else {
            lines.append("ledger (\(entries.count) \(entries.count == 1 ? "entry" : "entries")):")
            for entry in entries {
                if let fields = entry.objectValue {
                    lines.append("  " + fields.keys.sorted().map { "\($0) \(text(fields[$0], none: "null"))" }.joined(separator: ", "))
                } else {
                    lines.append("  " + entry.serialized())
                }
            }
        }
        for key in object.keys.sorted() where !["epsilon_spent", "epsilon_budget", "delta", "entries"].contains(key) {
            lines.append("\(key.replacingUnderscores()): \(text(object[key], none: "null"))")
        }
        return lines.joined(separator: "\n")
    }

    /// `GET /v1/profile`: top categories and brands with their weights.
    public static func profile(_ value: JSONValue) -> String {
        let object = value.objectValue ?? [:]
        var lines: [String] = []
        for (key, title) in [("top_categories", "top categories"), ("top_brands", "top brands")] {
            let labels = object[key]?.arrayValue ?? []
            lines.append(labels.isEmpty ? "\(title): none" : "\(title):")
            for label in labels {
                let fields = label.objectValue ?? [:]
                lines.append("  \(text(fields["name"], none: "?"))  \(score(fields["weight"]))")
            }
        }
        for key in object.keys.sorted() where key != "top_categories" && key != "top_brands" {
            lines.append("\(key.replacingUnderscores()): \(text(object[key], none: "null"))")
        }
        return lines.joined(separator: "\n")
    }

    /// `DELETE /v1/data`.
    public static func erase(_ value: JSONValue) -> String {
        let object = value.objectValue ?? [:]
        if case .integer(let count)? = object["events_erased"] {
            return "erased all local data (\(count) \(count == 1 ? "event" : "events"))"
        }
        return "erased all local data"
    }

    // MARK: - Pieces

    /// A JSON scalar as text (strings unquoted, integral doubles without a fraction); other
    /// values as compact JSON; `none` for null or absent.
    static func text(_ value: JSONValue?, none: String) -> String {
        switch value {
        case nil, .null?: return none
        case .string(let s)?: return s
        case .integer(let i)?: return String(i)
        case .double(let d)?: return number(d)
        case .bool(let b)?: return b ? "yes" : "no"
        case let other?: return other.serialized()
        }
    }

    /// A double without a needless ".0".
    static func number(_ value: Double) -> String {
        if value.isFinite, value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return "\(value)"
    }

    /// A score or weight to 4 decimals.
    static func score(_ value: JSONValue?) -> String {
        let d: Double
        switch value {
        case .integer(let i)?: d = Double(i)
        case .double(let x)?: d = x
        default: return "?"
        }
        guard d.isFinite else { return "\(d)" }
        let scaled = (abs(d) * 10_000).rounded()
        guard scaled < 1e15 else { return "\(d)" }
        let whole = Int64(scaled) / 10_000
        let fraction = String(Int64(scaled) % 10_000)
        let sign = d < 0 && scaled > 0 ? "-" : ""
        return "\(sign)\(whole)." + String(repeating: "0", count: 4 - fraction.count) + fraction
    }

    /// Milliseconds since the epoch as `YYYY-MM-DD hh:mm:ss UTC`; "never" for null.
    static func timestamp(_ value: JSONValue?) -> String {
        guard case .integer(let milliseconds)? = value else { return value == nil || value == .null ? "never" : text(value, none: "never") }
        return utcDate(milliseconds: milliseconds)
    }

    /// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm), UTC.
    static func utcDate(milliseconds: Int64) -> String {
        let seconds = milliseconds >= 0 ? milliseconds / 1000 : (milliseconds - 999) / 1000
        var days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        let secondOfDay = seconds - days * 86_400
        days += 719_468
        let era = (days >= 0 ? days : days - 146_096) / 146_097
        let dayOfEra = days - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        func two(_ n: Int64) -> String { n < 10 ? "0\(n)" : "\(n)" }
        return "\(year)-\(two(month))-\(two(day)) \(two(secondOfDay / 3600)):\(two(secondOfDay / 60 % 60)):\(two(secondOfDay % 60)) UTC"
    }

    /// Rows as `label   value`, labels padded to one width.
    static func table(_ rows: [(String, String)]) -> String {
        let width = rows.map { $0.0.count }.max() ?? 0
        return rows.map { label, value in
            label + String(repeating: " ", count: width - label.count + 2) + value
        }.joined(separator: "\n")
    }
}

extension String {
    /// `snake_case` → `snake case`, for labels.
    fileprivate func replacingUnderscores() -> String {
        String(map { $0 == "_" ? " " : $0 })
    }
}
