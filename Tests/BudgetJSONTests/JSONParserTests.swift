import BudgetJSON
import Testing

@Suite("The strict JSON parser")
struct JSONParserTests {
    @Test("parses every kind of value and writes it back unchanged")
    func roundTrip() throws {
        let text =
            #"{"b":true,"n":null,"i":-12,"f":0.5e-3,"s":"a\"b\\c\nd\u00e9\ud83d\ude00","a":[1,[],{}],"o":{"z":1,"a":2}}"#
        let value = try JSONParser.parse(text)
        #expect(value["i"]?.int == -12)
        #expect(value["f"]?.double == 0.0005)
        #expect(value["s"]?.stringValue == "a\"b\\c\ndé😀")
        #expect(value["o"]?.members?.map(\.name) == ["z", "a"])
        #expect(try JSONParser.parse(value.serialized) == value)
        // The byte writer and the String writer agree, control characters included.
        let tricky = JSONValue.object(["t\u{1F}ab\t": .string("q\"\\\r\n\u{01}é😀"), "v": value])
        #expect(tricky.serializedBytes == Array(tricky.serialized.utf8))
    }

    @Test(
        "refuses what RFC 8259 refuses, with the byte offset",
        arguments: [
            ("", 0, "unexpected end of input"),
            ("{\"a\":1,}", 7, "expected a member name in quotes"),
            ("[1 2]", 3, "expected ',' or ']' in an array"),
            ("01", 1, "unexpected data after the JSON value"),
            ("\"\u{01}\"", 1, "control character in a string; escape it"),
            ("\"\\ud800\"", 7, "lone high surrogate in \\u escape"),
            ("{\"a\":1,\"a\":2}", 7, "duplicate member \"a\""),
            ("1e999", 0, "number 1e999 is out of range"),
            ("nul", 0, "unexpected end of input"),
            ("'x'", 0, "unexpected character '''"),
        ])
    func refusals(text: String, offset: Int, message: String) {
        #expect(throws: JSONParseError(offset: offset, message: message)) { try JSONParser.parse(text) }
    }

    @Test("invalid UTF-8 inside a string is refused at the bad byte")
    func invalidUTF8() {
        #expect(throws: JSONParseError(offset: 3, message: "invalid UTF-8")) {
            try JSONParser.parse([0x22, 0x61, 0xC3, 0x28, 0x22])
        }
        #expect(throws: JSONParseError(offset: 3, message: "invalid UTF-8")) {
            try JSONParser.parse([0x22, 0x61, 0xED, 0xA0, 0x80, 0x22])  // an encoded surrogate
        }
    }

    @Test("depth and size are bounded")
    func bounds() {
        let deep = String(repeating: "[", count: 200) + String(repeating: "]", count: 200)
        #expect(throws: JSONParseError.self) { try JSONParser.parse(deep) }
        #expect(throws: JSONParseError.self) {
            try JSONParser.parse(Array("[1]".utf8), limits: .init(maxDepth: 8, maxBytes: 2))
        }
    }
}
