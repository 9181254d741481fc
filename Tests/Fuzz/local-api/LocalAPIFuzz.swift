import HearthCore
@testable import HearthLocalAPI

/// The local API's request parsing, everything a client sends after NIO has framed the HTTP
/// request: the request target (path, percent-decoding, query), the recommendation query, the
/// JSON parser and the `POST /v1/events` and `POST /v1/rank` bodies.
///
/// Input: the request target up to the first newline, the body after it. Properties, beyond not
/// crashing:
/// - every refusal is a 400 or 413 whose error body is JSON that parses back;
/// - what is accepted is within the limits (batch size, k, exclusions, candidates) and every
///   event is a valid `EventRecord`;
/// - serialisation is a fixed point: parse(serialise(v)) serialises to the same text, within the
///   same depth limit.
enum FuzzTarget {
    static let limits = LocalAPILimits()
    static let handler = LocalAPIRequestHandler(backend: NoBackend(), limits: limits)

    static func run(_ bytes: [UInt8]) {
        let newline = bytes.firstIndex(of: UInt8(ascii: "\n")) ?? bytes.count
        let uri = String(decoding: bytes[0 ..< newline], as: UTF8.self)
        let body = newline < bytes.count ? Array(bytes[(newline + 1)...]) : []
        checkTarget(uri)
        checkBody(body)
        checkJSON(body)
    }

    static func checkTarget(_ uri: String) {
        let target: RequestTarget
        do throws(LocalAPIError) {
            target = try RequestTarget(uri)
        } catch {
            checkRefusal(error)
            return
        }
        require(target.path.hasPrefix("/"), "accepted a request target whose path is not absolute")
        do throws(LocalAPIError) {
            let query = try handler.parseRecommendationQuery(target.query)
            require((1 ... limits.maxK).contains(query.k), "accepted k = \(query.k)")
            require(query.exclude.count <= limits.maxExclusions, "accepted \(query.exclude.count) exclusions")
            checkID(query.session)
            for id in query.exclude { checkID(id) }
        } catch {
            checkRefusal(error)
        }
    }

    static func checkBody(_ body: [UInt8]) {
        do throws(LocalAPIError) {
            let events = try handler.parseEvents(body)
            require(!events.isEmpty && events.count <= limits.maxEventsPerBatch, "accepted a batch of \(events.count) events")
            for event in events {
                let again = try? EventRecord(item: event.item, kind: event.kind, session: event.session,
                                             quantity: event.quantity, timestampMilliseconds: event.timestampMilliseconds)
                require(again == event, "accepted an event EventRecord refuses")
            }
        } catch {
            checkRefusal(error)
        }
        do throws(LocalAPIError) {
            let (session, candidates) = try handler.parseRank(body)
            require(!candidates.isEmpty && candidates.count <= limits.maxCandidates, "accepted \(candidates.count) candidates")
            checkID(session)
            for id in candidates { checkID(id) }
        } catch {
            checkRefusal(error)
        }
    }

    static func checkJSON(_ body: [UInt8]) {
        let parser = JSONParser(maxDepth: limits.maxJSONDepth)
        guard let value = try? parser.parse(body) else { return }
        let text = value.serialized()
        guard let again = try? parser.parse(text) else {
            fatalError("property violated: the serialisation of a parsed body does not parse: \(text)")
        }
        require(again.serialized() == text, "serialisation is not a fixed point: \(text) then \(again.serialized())")
    }

    /// A parse refusal is a client error with a JSON body.
    static func checkRefusal(_ error: LocalAPIError) {
        require(error.status == 400 || error.status == 413, "refused with status \(error.status): \(error)")
        let text = error.json.serialized()
        require((try? JSONParser().parse(text)) == error.json, "the error body does not parse back: \(text)")
    }

    /// The id rules the handler promises.
    static func checkID(_ id: String) {
        let utf8 = id.utf8
        require(!utf8.isEmpty && utf8.count <= EventRecord.maxIDLength, "accepted an id of \(utf8.count) bytes")
        require(!utf8.contains { $0 < 0x20 || $0 == 0x7F }, "accepted an id with a control character")
    }

    /// Request targets and bodies for every route, valid and a few edge cases.
    static func seeds() -> [(String, [UInt8])] {
        let texts: [(String, String)] = [
            ("events-one", #"/v1/events"# + "\n" + #"{"events":[{"item":"sku-1","kind":"view","session":"s1","timestamp_ms":1700000000000}]}"#),
            ("events-many", "/v1/events\n" + #"""
                {"events": [
                  {"item": "sku-2", "kind": "purchase", "session": "s1", "quantity": 2, "timestamp_ms": 1},
                  {"item": "caf\u00e9 \ud83c\udf55", "kind": "cart", "session": "s\/2", "quantity": null, "timestamp_ms": 0},
                  {"item": "x", "kind": "click", "session": "s\t3", "timestamp_ms": 9223372036854775807}
                ]}
                """#),
            ("recommendations", "/v1/recommendations?session=s1&k=5&exclude=sku-1,sku-2\n"),
            ("recommendations-encoded", "/v1/recommendations?session=caf%C3%A9+au+lait&k=1000&exclude=%2C,a%20b\n"),
            ("rank", "/v1/rank\n" + #"{"session":"s1","candidates":["a","b","\u00e9"]}"#),
            ("status", "/v1/status\n"),
            ("json-values", "/v1/rank\n" + #"""
                {"session": "s", "candidates": ["c"], "n": [1.5e10, -0.0, 123456789012345678901, 1E-300, true, false, null,
                 {"a": [[[]]], "b": {}}, "\"\\\/\b\f\n\r\t\u0000\u001f\u2028"]}
                """#),
        ]
        return texts.map { ($0.0 + ".txt", Array($0.1.utf8)) }
    }
}

/// A backend the parsing never reaches.
struct NoBackend: LocalAPIBackend {
    func ingest(_ events: [EventRecord]) async throws -> IngestResult { throw LocalAPIError.internalError("unused") }
    func recommendations(session: String, k: Int, exclude: [String]) async throws -> [RankedItem] {
        throw LocalAPIError.internalError("unused")
    }
    func rank(session: String, candidates: [String]) async throws -> [RankedItem] { throw LocalAPIError.internalError("unused") }
    func status() async throws -> StatusReport { throw LocalAPIError.internalError("unused") }
    func privacy() async throws -> PrivacyReport { throw LocalAPIError.internalError("unused") }
    func profile() async throws -> ProfileReport { throw LocalAPIError.internalError("unused") }
    func eraseAll() async throws -> EraseResult { throw LocalAPIError.internalError("unused") }
}
