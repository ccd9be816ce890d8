import Bedrock
import Testing

@Suite("The AWS event-stream codec")
struct EventStreamTests {
    func bytes(_ hex: String) -> [UInt8] {
        hex.split(separator: " ").compactMap { UInt8($0, radix: 16) }
    }

    func beUInt32(_ bytes: [UInt8], at index: Int) -> UInt32 {
        bytes[index..<index + 4].reduce(0) { $0 << 8 | UInt32($1) }
    }

    @Test("vector 1 of the reference, byte for byte")
    func vector1() throws {
        let encoded = EventStreamEncoder.encode(
            EventStreamMessage(headers: [], payload: Array(#"{"foo": "bar"}"#.utf8)))
        #expect(
            encoded
                == bytes("00 00 00 1e 00 00 00 00 ba f2 f6 8a 7b 22 66 6f 6f 22 3a 20 22 62 61 72 22 7d ae 72 58 e4"))
        var decoder = EventStreamDecoder()
        decoder.append(encoded)
        let message = try #require(try decoder.next())
        #expect(message.payload == Array(#"{"foo": "bar"}"#.utf8))
        #expect(try decoder.next() == nil)
    }

    @Test(
        "known-answer vectors 2 to 7: lengths and both CRCs",
        arguments: [
            ([("content-type", "application/json")], #"{"foo": "bar"}"#, 62, 0x405d_f946, 0x6fa2_bf3b),
            ([], "", 16, 0x05c2_48eb, 0x7d98_c8ff),
            ([], "{'foo':'bar'}", 29, 0xfd52_8c5a, 0xc365_3936),
            ([("content-type", "application/json")], "{'foo':'bar'}", 61, 0x07fd_8396, 0x8d9c_08b1),
            ([(":event-type", "messageStop")], #"{"stopReason":"end_turn"}"#, 67, 0x8713_048a, 0x2877_5f45),
            (
                [(":event-type", "messageStop"), (":content-type", "application/json"), (":message-type", "event")],
                #"{"stopReason":"end_turn"}"#, 122, 0xca2c_4665, 0x5fbf_09fc
            ),
        ] as [([(String, String)], String, Int, UInt32, UInt32)])
    func vectors(headers: [(String, String)], payload: String, total: Int, preludeCRC: UInt32, messageCRC: UInt32)
        throws
    {
        let message = EventStreamMessage(
            headers: headers.map { .init($0.0, .string($0.1)) }, payload: Array(payload.utf8))
        let encoded = EventStreamEncoder.encode(message)
        #expect(encoded.count == total)
        #expect(beUInt32(encoded, at: 0) == UInt32(total))
        #expect(beUInt32(encoded, at: 8) == preludeCRC)
        #expect(beUInt32(encoded, at: total - 4) == messageCRC)
        var decoder = EventStreamDecoder()
        decoder.append(encoded)
        #expect(try decoder.next() == message)
    }

    @Test("every header type round-trips")
    func headerTypes() throws {
        let message = EventStreamMessage(
            headers: [
                .init("t", .bool(true)), .init("f", .bool(false)), .init("b", .byte(-3)), .init("s", .short(-300)),
                .init("i", .int(-70000)), .init("l", .long(-5_000_000_000)), .init("a", .bytes([1, 2, 3])),
                .init("str", .string("ünï")), .init("ts", .timestamp(1_700_000_000_000)),
                .init("u", .uuid(Array(0..<16))),
            ], payload: [0, 1, 2])
        var decoder = EventStreamDecoder()
        decoder.append(EventStreamEncoder.encode(message))
        #expect(try decoder.next() == message)
    }

    @Test("frames split at every byte decode the same")
    func splitEverywhere() throws {
        let messages = (0..<3).map {
            EventStreamMessage.event("contentBlockDelta", payload: Array("{\"n\":\($0)}".utf8))
        }
        let stream = messages.flatMap(EventStreamEncoder.encode)
        for split in 0...stream.count {
            var decoder = EventStreamDecoder()
            var decoded: [EventStreamMessage] = []
            decoder.append(stream[..<split])
            while let message = try decoder.next() { decoded.append(message) }
            decoder.append(stream[split...])
            while let message = try decoder.next() { decoded.append(message) }
            #expect(decoded == messages, "split at \(split)")
            #expect(decoder.bufferedByteCount == 0)
        }
    }

    @Test("a header length of 4 GiB is refused from the prelude, before buffering")
    func hugeLengths() throws {
        var prelude: [UInt8] = [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x00]
        let crc = CRC32.checksum(prelude)
        prelude += [UInt8(crc >> 24), UInt8(crc >> 16 & 0xFF), UInt8(crc >> 8 & 0xFF), UInt8(crc & 0xFF)]
        var decoder = EventStreamDecoder()
        decoder.append(prelude)
        #expect(throws: EventStreamError.headersTooLong(0xFFFF_FF00, limit: 128 * 1024)) { try decoder.next() }
    }

    @Test("bad CRCs and truncated frames give typed errors or wait for more bytes")
    func corruption() throws {
        var frame = EventStreamEncoder.encode(.event("messageStop", payload: Array(#"{"stopReason":"end_turn"}"#.utf8)))
        var decoder = EventStreamDecoder()
        decoder.append(frame.dropLast())
        #expect(try decoder.next() == nil)  // truncated: needs more
        frame[frame.count - 10] ^= 0x01
        var corrupt = EventStreamDecoder()
        corrupt.append(frame)
        #expect(throws: EventStreamError.self) { try corrupt.next() }
        var badPrelude = EventStreamEncoder.encode(EventStreamMessage(headers: [], payload: []))
        badPrelude[9] ^= 0xFF
        var preludeDecoder = EventStreamDecoder()
        preludeDecoder.append(badPrelude)
        #expect(throws: EventStreamError.self) { try preludeDecoder.next() }
    }

    @Test("CRC-32 eight bytes a step equals the bit-by-bit definition, at every length and alignment up to 300")
    func crcMatchesDefinition() {
        var rng = SplitMix64(seed: 32)
        let bytes = (0..<310).map { _ in UInt8(rng.next() % 256) }
        func bitwise(_ bytes: ArraySlice<UInt8>, from initial: UInt32 = 0) -> UInt32 {
            var crc = ~initial
            for byte in bytes {
                crc ^= UInt32(byte)
                for _ in 0..<8 { crc = crc & 1 == 1 ? 0xEDB8_8320 ^ (crc >> 1) : crc >> 1 }
            }
            return ~crc
        }
        #expect(CRC32.checksum(Array("123456789".utf8)) == 0xCBF4_3926)  // the catalogue's check value
        for offset in 0..<8 {
            for length in 0...300 - offset {
                let slice = bytes[offset..<offset + length]
                #expect(CRC32.checksum(slice) == bitwise(slice), "offset \(offset) length \(length)")
            }
        }
        // Continued in two parts, as the decoder continues the prelude's CRC into the message's.
        var continued = CRC32(continuing: CRC32.checksum(bytes[..<13]))
        continued.update(bytes[13...])
        #expect(continued.value == bitwise(bytes[...]))
        // A sequence without contiguous storage takes the same path.
        #expect(CRC32.checksum(bytes.lazy.map { $0 }) == bitwise(bytes[...]))
    }

    @Test("a header name that repeats is refused, among few headers and past the set's threshold", arguments: [2, 40])
    func duplicateHeaders(count: Int) throws {
        var headers = (0..<count - 1).map { EventStreamMessage.Header("h\($0)", .bool(true)) }
        var decoder = EventStreamDecoder()
        decoder.append(EventStreamEncoder.encode(EventStreamMessage(headers: headers, payload: [])))
        #expect(try decoder.next()?.headers == headers)
        headers.append(.init("h\(count / 10)", .string("again")))
        var repeated = EventStreamDecoder()
        repeated.append(EventStreamEncoder.encode(EventStreamMessage(headers: headers, payload: [])))
        #expect(throws: EventStreamError.duplicateHeader("h\(count / 10)")) { try repeated.next() }
    }

    @Test("header names are compared as bytes: two spellings of one text are two names", arguments: [0, 30])
    func namesComparedAsBytes(before: Int) throws {
        // "café" composed (U+00E9) and decomposed (e and U+0301): equal as Swift strings, different bytes.
        let headers =
            (0..<before).map { EventStreamMessage.Header("h\($0)", .bool(true)) }
            + [.init("caf\u{E9}", .string("one")), .init("cafe\u{301}", .string("two"))]
        var decoder = EventStreamDecoder()
        decoder.append(EventStreamEncoder.encode(EventStreamMessage(headers: headers, payload: [])))
        let decoded = try #require(try decoder.next())
        #expect(decoded.headers.map { Array($0.name.utf8) } == headers.map { Array($0.name.utf8) })
    }

    @Test("headers cut short, with an empty name, or of an unknown type give their typed errors")
    func malformedHeaders() throws {
        func bigEndian(_ value: UInt32) -> [UInt8] {
            [UInt8(value >> 24), UInt8(value >> 16 & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF)]
        }
        func frame(headers: [UInt8]) -> [UInt8] {
            var out = bigEndian(UInt32(16 + headers.count)) + bigEndian(UInt32(headers.count))
            out += bigEndian(CRC32.checksum(out)) + headers
            return out + bigEndian(CRC32.checksum(out))
        }
        let cases: [([UInt8], EventStreamError)] = [
            ([1, 0x61, 7, 0, 5, 0x62], .truncatedHeader),  // a string of 5 bytes with 1 there
            ([1, 0x61, 4, 0, 0], .truncatedHeader),  // an int of 4 bytes with 2 there
            ([0, 0], .invalidHeaderName),
            ([2, 0xC3, 0x28, 0], .invalidHeaderName),  // not UTF-8
            ([1, 0x61, 7, 0, 1, 0xFF], .invalidHeaderValue("a")),
            ([1, 0x61, 10], .unknownHeaderType(10, name: "a")),
        ]
        for (headers, error) in cases {
            var decoder = EventStreamDecoder()
            decoder.append(frame(headers: headers))
            #expect(throws: error, "headers \(headers)") { try decoder.next() }
        }
    }

    @Test("fuzz: random splits and random corruptions never crash and never yield a wrong message", arguments: 0..<8)
    func fuzz(seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        let messages = (0..<20).map { index in
            EventStreamMessage.event(
                index % 2 == 0 ? "contentBlockDelta" : "metadata",
                payload: Array((0..<Int(rng.next() % 300)).map { _ in UInt8(rng.next() % 256) }))
        }
        let stream = messages.flatMap(EventStreamEncoder.encode)
        for round in 0..<200 {
            var bytes = stream
            let corruptions = round == 0 ? 0 : Int(rng.next() % 4)
            for _ in 0..<corruptions { bytes[Int(rng.next() % UInt64(bytes.count))] ^= UInt8(1 + rng.next() % 255) }
            var decoder = EventStreamDecoder()
            var decoded: [EventStreamMessage] = []
            var offset = 0
            var failed = false
            while offset < bytes.count && !failed {
                let size = Int(1 + rng.next() % 97)
                decoder.append(bytes[offset..<min(bytes.count, offset + size)])
                offset += size
                do {
                    while let message = try decoder.next() { decoded.append(message) }
                } catch {
                    failed = true
                }
            }
            // Whatever decoded before a failure is a prefix of the real messages: CRCs let nothing wrong through.
            #expect(Array(messages.prefix(decoded.count)) == decoded, "seed \(seed) round \(round)")
            if corruptions == 0 { #expect(decoded == messages && !failed) }
            #expect(decoder.bufferedByteCount <= bytes.count)
        }
    }
}

/// A small, seedable generator so that a failing case can be replayed.
struct SplitMix64 {
    var state: UInt64

    init(seed: UInt64) { state = seed &+ 0x1234_5678 }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
