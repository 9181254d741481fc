import HearthCore

/// One complete HTTP request as the server hands it to the router.
public struct LocalAPIRequest: Sendable, Hashable {
    /// Upper-case method, e.g. `GET`.
    public var method: String
    /// The request target as sent: path and optional query, e.g. `/v1/recommendations?session=s&k=5`.
    public var uri: String
    public var body: [UInt8]

    public init(method: String, uri: String, body: [UInt8] = []) {
        self.method = method
        self.uri = uri
        self.body = body
    }
}

/// A response: status and JSON body, plus the `Allow` header for 405s.
public struct LocalAPIResponse: Sendable, Hashable {
    public var status: Int
    public var body: JSONValue
    /// Methods allowed on the path (sent as `Allow` with a 405).
    public var allow: [String]

    public init(status: Int, body: JSONValue, allow: [String] = []) {
        self.status = status
        self.body = body
        self.allow = allow
    }

    public init(error: LocalAPIError, allow: [String] = []) {
        self.init(status: error.status, body: error.json, allow: allow)
    }
}

/// Routes, validates and answers requests: everything except the socket. Pure apart from the
/// backend calls, so fuzz targets and unit tests can drive it without a socket.
public struct LocalAPIRequestHandler: Sendable {
    public let backend: any LocalAPIBackend
    public let limits: LocalAPILimits

    public init(backend: any LocalAPIBackend, limits: LocalAPILimits = LocalAPILimits()) {
        self.backend = backend
        self.limits = limits
    }

    /// The API's paths and the methods each accepts.
    public static let routes: [String: [String]] = [
        "/v1/events": ["POST"],
        "/v1/recommendations": ["GET"],
        "/v1/rank": ["POST"],
        "/v1/status": ["GET"],
        "/v1/privacy": ["GET"],
        "/v1/profile": ["GET"],
        "/v1/data": ["DELETE"],
    ]

    /// Answers one request. Never throws: every failure is a response with a 4xx or 5xx.
    public func respond(to request: LocalAPIRequest) async -> LocalAPIResponse {
        let target: RequestTarget
        do throws(LocalAPIError) {
            target = try RequestTarget(request.uri)
        } catch {
            return LocalAPIResponse(error: error)
        }
        guard let methods = Self.routes[target.path] else {
            return LocalAPIResponse(error: .notFound("no route for \(target.path)"))
        }
        guard methods.contains(request.method) else {
            return LocalAPIResponse(
                error: LocalAPIError(status: 405, message: "\(request.method) is not allowed on \(target.path); use \(methods.joined(separator: ", "))"),
                allow: methods
            )
        }
        do {
            let body = try await route(path: target.path, query: target.query, body: request.body)
            return LocalAPIResponse(status: 200, body: body)
        } catch let error as LocalAPIError {
            return LocalAPIResponse(error: error)
        } catch let error as CoreError {
            return LocalAPIResponse(error: .badRequest(error.message))
        } catch {
            return LocalAPIResponse(error: .internalError("internal error"))
        }
    }

    private func route(path: String, query: [(String, String)], body: [UInt8]) async throws -> JSONValue {
        switch path {
        case "/v1/events":
            try Self.expectNoQuery(query)
            let events = try parseEvents(body)
            return try await backend.ingest(events).json
        case "/v1/recommendations":
            try Self.expectEmptyBody(body)
            let parameters = try parseRecommendationQuery(query)
            let items = try await backend.recommendations(session: parameters.session, k: parameters.k, exclude: parameters.exclude)
            return ["session": .string(parameters.session), "k": .int(parameters.k), "items": .array(items.map(\.json))]
        case "/v1/rank":
            try Self.expectNoQuery(query)
            let (session, candidates) = try parseRank(body)
            let items = try await backend.rank(session: session, candidates: candidates)
            return ["session": .string(session), "items": .array(items.map(\.json))]
        case "/v1/status":
            try Self.expectNoQuery(query)
            try Self.expectEmptyBody(body)
            return try await backend.status().json
        case "/v1/privacy":
            try Self.expectNoQuery(query)
            try Self.expectEmptyBody(body)
            return try await backend.privacy().json
        case "/v1/profile":
            try Self.expectNoQuery(query)
            try Self.expectEmptyBody(body)
            return try await backend.profile().json
        case "/v1/data":
            try Self.expectNoQuery(query)
            try Self.expectEmptyBody(body)
            return try await backend.eraseAll().json
        default:
            throw LocalAPIError.notFound("no route for \(path)")
        }
    }

    // MARK: - Bodies

    /// Parses a body as a JSON object: valid UTF-8, within the depth limit.
    func parseObjectBody(_ body: [UInt8]) throws(LocalAPIError) -> [String: JSONValue] {
        guard !body.isEmpty else { throw .badRequest("a JSON body is required") }
        guard String(validating: body, as: UTF8.self) != nil else {
            throw .badRequest("the body is not valid UTF-8")
        }
        let value: JSONValue
        do {
            value = try JSONParser(maxDepth: limits.maxJSONDepth).parse(body)
        } catch {
            throw .badRequest("invalid JSON: \(error.description)")
        }
        guard let object = value.objectValue else { throw .badRequest("the body must be a JSON object, not \(value.typeName)") }
        return object
    }

    /// Validates a `POST /v1/events` body into records: all of them or an error naming the
    /// first bad field (the batch is never half-applied because nothing reaches the backend).
    public func parseEvents(_ body: [UInt8]) throws(LocalAPIError) -> [EventRecord] {
        let object = try parseObjectBody(body)
        try Self.rejectUnknownKeys(object, allowed: ["events"], prefix: "")
        guard let value = object["events"] else { throw .badRequest("missing", field: "events") }
        guard let array = value.arrayValue else { throw .badRequest("must be an array, not \(value.typeName)", field: "events") }
        guard !array.isEmpty else { throw .badRequest("must not be empty", field: "events") }
        guard array.count <= limits.maxEventsPerBatch else {
            throw .payloadTooLarge("\(array.count) events, at most \(limits.maxEventsPerBatch) per batch", field: "events")
        }
        var records: [EventRecord] = []
        records.reserveCapacity(array.count)
        for (index, element) in array.enumerated() {
            records.append(try Self.parseEvent(element, prefix: "events[\(index)]"))
        }
        return records
    }

    static func parseEvent(_ value: JSONValue, prefix: String) throws(LocalAPIError) -> EventRecord {
        guard let object = value.objectValue else { throw .badRequest("must be an object, not \(value.typeName)", field: prefix) }
        try rejectUnknownKeys(object, allowed: ["item", "kind", "session", "quantity", "timestamp_ms"], prefix: prefix + ".")
        let item = try requiredString(object, "item", prefix: prefix)
        let kindName = try requiredString(object, "kind", prefix: prefix)
        guard let kind = EventKind(name: kindName) else {
            throw .badRequest("unknown kind \"\(kindName)\"; expected view, click, cart or purchase", field: prefix + ".kind")
        }
        let session = try requiredString(object, "session", prefix: prefix)
        var quantity: Int32?
        switch object["quantity"] {
        case nil, .null?: quantity = nil
        case .integer(let value)?:
            guard let narrow = Int32(exactly: value) else {
                throw .badRequest("\(value) is outside 1...\(EventRecord.maxQuantity)", field: prefix + ".quantity")
            }
            quantity = narrow
        case let other?:
            throw .badRequest("must be an integer, not \(other.typeName == "a number" ? "a fraction" : other.typeName)", field: prefix + ".quantity")
        }
        let timestamp: Int64
        switch object["timestamp_ms"] {
        case .integer(let value)?: timestamp = value
        case nil: throw .badRequest("missing", field: prefix + ".timestamp_ms")
        case let other?:
            throw .badRequest("must be an integer, not \(other.typeName == "a number" ? "a fraction" : other.typeName)", field: prefix + ".timestamp_ms")
        }
        do {
            return try EventRecord(item: item, kind: kind, session: session, quantity: quantity, timestampMilliseconds: timestamp)
        } catch {
            // CoreError messages from EventRecord start with the wire field name: "quantity: …".
            let message = error.message
            if let colon = message.firstIndex(of: ":") {
                let field = String(message[..<colon])
                let reason = message[message.index(after: colon)...].drop(while: { $0 == " " })
                throw .badRequest(String(reason), field: prefix + "." + field)
            }
            throw .badRequest(message, field: prefix)
        }
    }

    /// Validates a `POST /v1/rank` body.
    public func parseRank(_ body: [UInt8]) throws(LocalAPIError) -> (session: String, candidates: [String]) {
        let object = try parseObjectBody(body)
        try Self.rejectUnknownKeys(object, allowed: ["session", "candidates"], prefix: "")
        let session = try Self.requiredString(object, "session", prefix: "")
        try Self.checkID(session, field: "session")
        guard let value = object["candidates"] else { throw .badRequest("missing", field: "candidates") }
        guard let array = value.arrayValue else { throw .badRequest("must be an array, not \(value.typeName)", field: "candidates") }
        guard !array.isEmpty else { throw .badRequest("must not be empty", field: "candidates") }
        guard array.count <= limits.maxCandidates else {
            throw .payloadTooLarge("\(array.count) candidates, at most \(limits.maxCandidates)", field: "candidates")
        }
        var candidates: [String] = []
        candidates.reserveCapacity(array.count)
        for (index, element) in array.enumerated() {
            let field = "candidates[\(index)]"
            guard let id = element.stringValue else { throw .badRequest("must be a string, not \(element.typeName)", field: field) }
            try Self.checkID(id, field: field)
            candidates.append(id)
        }
        return (session, candidates)
    }

    // MARK: - Query

    struct RecommendationQuery {
        var session: String
        var k: Int
        var exclude: [String]
    }

    func parseRecommendationQuery(_ query: [(String, String)]) throws(LocalAPIError) -> RecommendationQuery {
        var seen: Set<String> = []
        var session: String?
        var k = 10
        var exclude: [String] = []
        for (name, value) in query {
            guard seen.insert(name).inserted else { throw .badRequest("given more than once", field: name) }
            switch name {
            case "session":
                try Self.checkID(value, field: "session")
                session = value
            case "k":
                guard let parsed = Int(value) else { throw .badRequest("must be an integer, got \"\(value)\"", field: "k") }
                guard parsed >= 1 && parsed <= limits.maxK else {
                    throw .badRequest("\(parsed) is outside 1...\(limits.maxK)", field: "k")
                }
                k = parsed
            case "exclude":
                let ids = value.split(separator: ",", omittingEmptySubsequences: true).map(String.init)
                guard ids.count <= limits.maxExclusions else {
                    throw .badRequest("\(ids.count) ids, at most \(limits.maxExclusions)", field: "exclude")
                }
                for id in ids { try Self.checkID(id, field: "exclude") }
                exclude = ids
            default:
                throw .badRequest("unknown query parameter", field: name)
            }
        }
        guard let session else { throw .badRequest("missing", field: "session") }
        return RecommendationQuery(session: session, k: k, exclude: exclude)
    }

    // MARK: - Helpers

    static func expectNoQuery(_ query: [(String, String)]) throws(LocalAPIError) {
        if let first = query.first { throw .badRequest("unknown query parameter", field: first.0) }
    }

    static func expectEmptyBody(_ body: [UInt8]) throws(LocalAPIError) {
        guard body.isEmpty else { throw .badRequest("this route takes no body") }
    }

    static func rejectUnknownKeys(_ object: [String: JSONValue], allowed: Set<String>, prefix: String) throws(LocalAPIError) {
        // Sorted so the error is deterministic when several keys are unknown.
        for key in object.keys.sorted() where !allowed.contains(key) {
            throw .badRequest("unknown field", field: prefix + key)
        }
    }

    static func requiredString(_ object: [String: JSONValue], _ key: String, prefix: String) throws(LocalAPIError) -> String {
        let field = prefix.isEmpty ? key : prefix + "." + key
        guard let value = object[key] else { throw .badRequest("missing", field: field) }
        guard let string = value.stringValue else { throw .badRequest("must be a string, not \(value.typeName)", field: field) }
        return string
    }

    /// The id rules of `EventRecord`: 1 to `maxIDLength` UTF-8 bytes, no control characters.
    static func checkID(_ id: String, field: String) throws(LocalAPIError) {
        let length = id.utf8.count
        guard length > 0 else { throw .badRequest("must not be empty", field: field) }
        guard length <= EventRecord.maxIDLength else {
            throw .badRequest("\(length) bytes, at most \(EventRecord.maxIDLength) allowed", field: field)
        }
        for byte in id.utf8 where byte < 0x20 || byte == 0x7F {
            throw .badRequest("control characters are not allowed", field: field)
        }
    }
}

/// The path and decoded query of a request target.
struct RequestTarget {
    var path: String
    var query: [(String, String)]

    init(_ uri: String) throws(LocalAPIError) {
        let bytes = Array(uri.utf8)
        let pathEnd = bytes.firstIndex(of: UInt8(ascii: "?")) ?? bytes.count
        let fragmentFree = bytes.firstIndex(of: UInt8(ascii: "#")) ?? bytes.count
        guard fragmentFree == bytes.count else { throw .badRequest("fragments are not allowed in a request target") }
        path = try RequestTarget.percentDecode(bytes[0 ..< pathEnd], plusIsSpace: false, what: "path")
        guard path.hasPrefix("/") else { throw .badRequest("the request target must be an absolute path") }
        query = []
        guard pathEnd < bytes.count else { return }
        for pair in bytes[(pathEnd + 1)...].split(separator: UInt8(ascii: "&"), omittingEmptySubsequences: true) {
            let equals = pair.firstIndex(of: UInt8(ascii: "=")) ?? pair.endIndex
            let name = try RequestTarget.percentDecode(pair[pair.startIndex ..< equals], plusIsSpace: true, what: "query parameter name")
            let value = equals < pair.endIndex
                ? try RequestTarget.percentDecode(pair[(equals + 1)...], plusIsSpace: true, what: "query parameter \(name)")
                : ""
            query.append((name, value))
        }
    }

    static func percentDecode(_ bytes: ArraySlice<UInt8>, plusIsSpace: Bool, what: String) throws(LocalAPIError) -> String {
        var output: [UInt8] = []
        output.reserveCapacity(bytes.count)
        var index = bytes.startIndex
        func hex(_ byte: UInt8) -> UInt8? {
            switch byte {
            case UInt8(ascii: "0") ... UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
            case UInt8(ascii: "a") ... UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A") ... UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
            default: return nil
            }
        }
        while index < bytes.endIndex {
            let byte = bytes[index]
            if byte == UInt8(ascii: "%") {
                guard bytes.endIndex - index >= 3, let high = hex(bytes[index + 1]), let low = hex(bytes[index + 2]) else {
                    throw .badRequest("bad percent-encoding in the \(what)")
                }
                output.append(high << 4 | low)
                index += 3
            } else {
                output.append(plusIsSpace && byte == UInt8(ascii: "+") ? UInt8(ascii: " ") : byte)
                index += 1
            }
        }
        guard let text = String(validating: output, as: UTF8.self) else {
            throw .badRequest("the \(what) is not valid UTF-8")
        }
        return text
    }
}
