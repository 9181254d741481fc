import HearthLocalAPI

/// The `hearthctl` operations: each calls the agent and returns what to print (the agent's
/// JSON with `json: true`, else a human-readable rendering). The executable only parses
/// arguments, prints the result, and maps a thrown `ControlError` to its exit code.
public struct ControlCommands: Sendable {
    /// The agent connection.
    public let client: AgentClient

    /// Most events per `POST /v1/events` (the agent accepts up to 1,000).
    public static let importBatchSize = 500

    public init(client: AgentClient) {
        self.client = client
    }

    /// Commands against the agent at `socketPath`.
    public init(socketPath: String) {
        self.init(client: AgentClient(socketPath: socketPath))
    }

    /// `hearthctl status`.
    public func status(json: Bool) async throws(ControlError) -> String {
        let value = try await client.get("/v1/status")
        return json ? value.serialized() : ControlFormat.status(value)
    }

    /// `hearthctl recommend --session S [--k K] [--exclude a,b]`.
    public func recommend(session: String, k: Int?, exclude: [String], json: Bool) async throws(ControlError) -> String {
        if let bad = exclude.first(where: { $0.contains(",") }) {
            throw .invalidInput("--exclude: \"\(bad)\" contains a comma, which the agent reads as a separator")
        }
        let value = try await client.get(ControlCommands.recommendationsTarget(session: session, k: k, exclude: exclude))
        return json ? value.serialized() : ControlFormat.ranking(value)
    }

    /// `hearthctl rank --session S ITEM...`.
    public func rank(session: String, items: [String], json: Bool) async throws(ControlError) -> String {
        guard !items.isEmpty else { throw .invalidInput("rank needs at least one item") }
        let body: JSONValue = ["session": .string(session), "candidates": .array(items.map { .string($0) })]
        let value = try await client.post("/v1/rank", body: body)
        return json ? value.serialized() : ControlFormat.ranking(value)
    }

    /// `hearthctl privacy`.
    public func privacy(json: Bool) async throws(ControlError) -> String {
        let value = try await client.get("/v1/privacy")
        return json ? value.serialized() : ControlFormat.privacy(value)
    }

    /// `hearthctl profile`.
    public func profile(json: Bool) async throws(ControlError) -> String {
        let value = try await client.get("/v1/profile")
        return json ? value.serialized() : ControlFormat.profile(value)
    }

    /// `hearthctl forget --yes`: erases all events and local state. Without `confirmed` nothing
    /// is sent and `confirmationRequired` is thrown.
    public func forget(confirmed: Bool, json: Bool) async throws(ControlError) -> String {
        guard confirmed else {
            throw .confirmationRequired(
                "forget erases all events and local state on this device and cannot be undone; run it again with --yes to confirm"
            )
        }
        let value = try await client.delete("/v1/data")
        return json ? value.serialized() : ControlFormat.erase(value)
    }

    /// `hearthctl events import FILE.csv`: sends the CSV's rows in batches of at most
    /// `batchSize` through `POST /v1/events`. A malformed row (or a row the agent rejects)
    /// stops the import with an error naming `source` and its line; nothing from that batch is
    /// sent, earlier batches stay imported (the message says how many events).
    public func importEvents(_ csv: EventCSV, source: String, batchSize: Int = ControlCommands.importBatchSize,
                             json: Bool) async throws(ControlError) -> String {
        var imported = 0
        var batches = 0
        var eventsTotal: JSONValue = .null
        let client = self.client
        do throws(ControlError) {
            try await csv.forEachBatch(of: batchSize) { (batch: [CSVEvent]) async throws(ControlError) -> Void in
                let body: JSONValue = ["events": .array(batch.map(\.json))]
                let answer: JSONValue
                do throws(ControlError) {
                    answer = try await client.post("/v1/events", body: body)
                } catch where error.isHTTPError {
                    throw error.annotated(prefix: ControlCommands.lineOfRejectedEvent(error.field, in: batch).map { "line \($0): " } ?? "")
                }
                let object = answer.objectValue ?? [:]
                if case .integer(let accepted)? = object["accepted"] { imported += Int(accepted) } else { imported += batch.count }
                eventsTotal = object["events_total"] ?? .null
                batches += 1
            }
        } catch {
            let before = imported == 0
                ? "; nothing was imported"
                : "; \(imported) \(imported == 1 ? "event" : "events") from earlier batches were imported, nothing from this row's batch was sent"
            throw error.isUnreachable ? error.annotated(suffix: before) : error.annotated(prefix: "\(source): ", suffix: before)
        }
        if json {
            return JSONValue.object(["imported": .int(imported), "batches": .int(batches), "events_total": eventsTotal]).serialized()
        }
        var text = "imported \(imported) \(imported == 1 ? "event" : "events") from \(source) in \(batches) \(batches == 1 ? "batch" : "batches")"
        if case .integer(let total) = eventsTotal { text += " (the agent now holds \(total))" }
        return text
    }

    // MARK: - Request building

    /// `GET /v1/recommendations` target with percent-encoded parameters.
    public static func recommendationsTarget(session: String, k: Int?, exclude: [String]) -> String {
        var target = "/v1/recommendations?session=" + percentEncoded(session)
        if let k { target += "&k=\(k)" }
        if !exclude.isEmpty { target += "&exclude=" + exclude.map(percentEncoded).joined(separator: ",") }
        return target
    }

    /// Percent-encodes everything but RFC 3986 unreserved characters.
    public static func percentEncoded(_ text: String) -> String {
        let hex = Array("0123456789ABCDEF".utf8)
        var bytes: [UInt8] = []
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A") ... UInt8(ascii: "Z"), UInt8(ascii: "a") ... UInt8(ascii: "z"),
                 UInt8(ascii: "0") ... UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."),
                 UInt8(ascii: "_"), UInt8(ascii: "~"):
                bytes.append(byte)
            default:
                bytes += [UInt8(ascii: "%"), hex[Int(byte >> 4)], hex[Int(byte & 0x0F)]]
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The CSV line of the event a 400 names (`events[3].kind` → the 4th event of the batch).
    static func lineOfRejectedEvent(_ field: String?, in batch: [CSVEvent]) -> Int? {
        guard let field, field.hasPrefix("events[") else { return nil }
        let digits = field.dropFirst("events[".count).prefix { $0 >= "0" && $0 <= "9" }
        guard let index = Int(digits), index < batch.count else { return nil }
        return batch[index].line
    }
}
