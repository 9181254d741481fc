@testable import HearthLocalAPI
import HearthTestSupport
import Testing

@Suite("Strict JSON parser and writer")
struct JSONTests {
    let parser = JSONParser(maxDepth: 8)

    @Test func parsesValues() throws {
        let value = try parser.parse(#" {"a": [1, -2, 3.5, 1e3, true, false, null], "b": "x\"\\\/\n\u00e9\ud83d\ude00"} "#)
        #expect(value == ["a": [1, -2, 3.5, 1000.0, true, false, nil], "b": "x\"\\/\né😀"])
        #expect(try parser.parse("1700000000000") == .integer(1_700_000_000_000))
        #expect(try parser.parse("-0") == .integer(0))
        #expect(try parser.parse("99999999999999999999") == .double(1e20))
    }

    @Test(arguments: [
        "", " ", "{", "[1,]", "{\"a\":1,}", "{\"a\" 1}", "01", "1.", ".5", "+1", "1e", "tru", "nul", "\"abc",
        "\"\\x\"", "\"\\u12\"", "\"\\ud800\"", "\"\\udc00x\"", "{\"a\":1,\"a\":2}", "[1] [2]", "NaN", "Infinity",
        "\"tab\there\"", "1e400", "{1:2}",
    ])
    func rejectsMalformed(text: String) {
        #expect(throws: JSONParseError.self) { try parser.parse(text) }
    }

    @Test func rejectsInvalidUTF8InStrings() {
        #expect(throws: JSONParseError.self) { try parser.parse([0x22, 0xFF, 0x22]) }
        #expect(throws: JSONParseError.self) { try parser.parse([0x22, 0xED, 0xA0, 0x80, 0x22]) }  // encoded surrogate
    }

    @Test func depthLimitIsExact() throws {
        let ok = String(repeating: "[", count: 8) + String(repeating: "]", count: 8)
        #expect(throws: Never.self) { try parser.parse(ok) }
        let deep = String(repeating: "[", count: 9) + String(repeating: "]", count: 9)
        #expect(throws: JSONParseError.self) { try parser.parse(deep) }
        // Far deeper than any stack could recurse: rejected, not a crash.
        let hostile = String(repeating: "[{\"a\":", count: 1_000_000)
        #expect(throws: JSONParseError.self) { try JSONParser(maxDepth: 16).parse(hostile) }
    }

    @Test func serialisesDeterministically() throws {
        let value: JSONValue = ["b": [1, 2.5, nil, true], "a": "q\"\u{1}\n", "c": .double(.nan)]
        #expect(value.serialized() == #"{"a":"q\"\u0001\n","b":[1,2.5,null,true],"c":null}"#)
        #expect(try parser.parse(value.serialized()) == ["b": [1, 2.5, nil, true], "a": "q\"\u{1}\n", "c": nil])
    }
}

@Suite("Request handler without a socket")
struct RequestHandlerTests {
    let handler = LocalAPIRequestHandler(backend: FakeBackend())

    @Test func fragmentsAndBadPercentEncodingAre400() async {
        #expect(await handler.respond(to: LocalAPIRequest(method: "GET", uri: "/v1/status#x")).status == 400)
        #expect(await handler.respond(to: LocalAPIRequest(method: "GET", uri: "/v1/recommendations?session=%G1")).status == 400)
        #expect(await handler.respond(to: LocalAPIRequest(method: "GET", uri: "*")).status == 400)
    }

    @Test func bodyOnABodilessRouteIs400() async {
        let response = await handler.respond(to: LocalAPIRequest(method: "GET", uri: "/v1/status", body: Array("{}".utf8)))
        #expect(response.status == 400)
    }

    @Test func controlCharactersInIdsAreNamed() async {
        let body = #"{"events": [{"item": "a\u0001", "kind": "view", "session": "s", "timestamp_ms": 1}]}"#
        let response = await handler.respond(to: LocalAPIRequest(method: "POST", uri: "/v1/events", body: Array(body.utf8)))
        #expect(response.status == 400)
        #expect(response.body.objectValue?["field"] == "events[0].item")
    }
}
