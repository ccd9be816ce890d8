import NIOCore
import Testing

@testable import BudgetRedis

@Suite struct RESPDecoderTests {
    private func parse(_ text: String, limit: Int = 1 << 20) throws -> RESPValue? {
        var buffer = ByteBuffer(string: text)
        return try RESPDecoder.parse(&buffer, depth: 0, start: buffer.readerIndex, limit: limit)
    }

    @Test func values() throws {
        #expect(try parse("+OK\r\n") == .simpleString("OK"))
        #expect(try parse("-ERR no\r\n") == .error("ERR no"))
        #expect(try parse(":-42\r\n") == .integer(-42))
        #expect(try parse("$3\r\nabc\r\n") == .bulkString(Array("abc".utf8)))
        #expect(try parse("$0\r\n\r\n") == .bulkString([]))
        #expect(try parse("$-1\r\n") == .null)
        #expect(try parse("*-1\r\n") == .null)
        #expect(try parse("*2\r\n:1\r\n*1\r\n$1\r\nx\r\n") == .array([.integer(1), .array([.bulkString([120])])]))
        #expect(RESPValue.bulkString(Array("17".utf8)).int == 17)
    }

    @Test func incompleteNeedsMore() throws {
        for text in ["", "+O", "+OK\r", "$3\r\nab", "$3\r\nabc\r", "*2\r\n:1\r\n", ":1"] {
            #expect(try parse(text) == nil, "\(text)")
        }
    }

    @Test func badInputIsRefused() {
        #expect(throws: RESPDecodingError.self) { try parse("?what\r\n") }
        #expect(throws: RESPDecodingError.self) { try parse(":12x\r\n") }
        #expect(throws: RESPDecodingError.self) { try parse("$3\r\nabcd\r\n") }
        #expect(throws: RESPDecodingError.self) { try parse("$-2\r\n") }
        #expect(throws: RESPDecodingError.self) { try parse("+OK\rX") }
        #expect(throws: RESPDecodingError.tooLarge("a bulk string of 2000 bytes (limit 1000)")) {
            try parse("$2000\r\n", limit: 1000)
        }
        #expect(throws: RESPDecodingError.self) { try parse("*2000000\r\n") }
        #expect(throws: RESPDecodingError.self) { try parse(String(repeating: "*1\r\n", count: 10) + ":1\r\n") }
        #expect(throws: RESPDecodingError.self) { try parse(String(repeating: "x", count: 2000), limit: 1000) }
    }

    @Test func garbageNeverCrashes() {
        var generator = SystemRandomNumberGenerator()
        let alphabet = Array("+-:$*\r\n0123456789-x".utf8)
        for _ in 0..<20_000 {
            let count = Int.random(in: 0..<40, using: &generator)
            var buffer = ByteBuffer(bytes: (0..<count).map { _ in alphabet.randomElement(using: &generator) ?? 0 })
            _ = try? RESPDecoder.parse(&buffer, depth: 0, start: buffer.readerIndex, limit: 1 << 20)
        }
    }

    @Test func scriptSHA1IsLowercaseHex() {
        #expect(RedisScript("return 1").sha1 == "e0e1f9fabfc9d4800c877a703b823ac0578ff8db")
    }

    @Test func endpointDescriptionHasNoPassword() {
        let endpoint = RedisEndpoint(host: "10.0.0.5", port: 6380, database: 2, username: "u", password: "pw-secret")
        #expect(endpoint.description == "10.0.0.5:6380/2")
        var sentinel = endpoint
        sentinel.sentinel = .init(master: "m", nodes: [.init(host: "a", port: 1)], password: "pw-secret")
        #expect(!sentinel.description.contains("pw-secret"))
    }
}
