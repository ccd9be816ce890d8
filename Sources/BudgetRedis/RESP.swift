import NIOCore

/// A RESP2 reply.
public enum RESPValue: Sendable, Hashable {
    case simpleString(String)
    /// An error reply (`-ERR ...`), as the server wrote it.
    case error(String)
    case integer(Int64)
    case bulkString([UInt8])
    /// A null bulk string or a null array.
    case null
    case array([RESPValue])

    /// A simple or bulk string, as UTF-8 (invalid sequences replaced).
    public var string: String? {
        switch self {
        case .simpleString(let text): return text
        case .bulkString(let bytes): return String(decoding: bytes, as: UTF8.self)
        default: return nil
        }
    }

    /// An integer, or a simple or bulk string that parses as one.
    public var int: Int64? {
        switch self {
        case .integer(let value): return value
        case .simpleString(let text): return Int64(text)
        case .bulkString(let bytes): return Int64(String(decoding: bytes, as: UTF8.self))
        default: return nil
        }
    }

    /// The elements of an array.
    public var array: [RESPValue]? {
        if case .array(let elements) = self { return elements }
        return nil
    }

    /// The message of an error reply.
    var errorMessage: String? {
        if case .error(let message) = self { return message }
        return nil
    }
}

/// One command: its name and arguments, sent as a RESP array of bulk strings.
public struct RedisCommand: Sendable, Hashable {
    /// The name first, then the arguments.
    let parts: [[UInt8]]

    /// A command with text arguments (sent as UTF-8).
    public init(_ name: String, _ arguments: [String]) {
        parts = [Array(name.utf8)] + arguments.map { Array($0.utf8) }
    }

    /// A command with binary arguments.
    public init(_ name: String, bytes arguments: [[UInt8]]) {
        parts = [Array(name.utf8)] + arguments
    }

    /// The command's name, for messages (never its arguments, which may hold a password).
    var name: String { String(decoding: parts.first ?? [], as: UTF8.self) }

    func encode(into buffer: inout ByteBuffer) {
        buffer.writeStaticString("*")
        buffer.writeString(String(parts.count))
        buffer.writeStaticString("\r\n")
        for part in parts {
            buffer.writeStaticString("$")
            buffer.writeString(String(part.count))
            buffer.writeStaticString("\r\n")
            buffer.writeBytes(part)
            buffer.writeStaticString("\r\n")
        }
    }
}

/// Why bytes from the server are not an acceptable RESP2 reply.
enum RESPDecodingError: Error, Equatable {
    /// Not RESP2 (the message says what was wrong).
    case protocolViolation(String)
    /// A declared size beyond the limits.
    case tooLarge(String)
}

/// Decodes RESP2 replies incrementally. A reply is parsed only once all of it has arrived; sizes are checked
/// from the headers before anything is buffered for them, so a hostile or broken server cannot make the client
/// hold more than about `maxReplyBytes` per reply.
struct RESPDecoder: ByteToMessageDecoder {
    typealias InboundOut = RESPValue

    static let maxDepth = 8
    static let maxArrayCount = 1 << 20

    let maxReplyBytes: Int

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        var view = buffer
        guard let value = try Self.parse(&view, depth: 0, start: buffer.readerIndex, limit: maxReplyBytes) else {
            if buffer.readableBytes > maxReplyBytes + 64 {
                throw RESPDecodingError.tooLarge("a reply longer than \(maxReplyBytes) bytes")
            }
            return .needMoreData
        }
        buffer = view
        context.fireChannelRead(wrapInboundOut(value))
        return .continue
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws
        -> DecodingState
    {
        while try decode(context: context, buffer: &buffer) == .continue {}
        return .needMoreData
    }

    /// One value from the buffer's reader index, or nil when it has not all arrived (the buffer is then left
    /// part-read; callers parse a copy).
    static func parse(_ buffer: inout ByteBuffer, depth: Int, start: Int, limit: Int) throws -> RESPValue? {
        guard depth <= maxDepth else {
            throw RESPDecodingError.protocolViolation("a reply nested deeper than \(maxDepth) levels")
        }
        guard let type = buffer.readInteger(as: UInt8.self) else { return nil }
        guard let line = try readLine(&buffer, start: start, limit: limit) else { return nil }
        switch type {
        case UInt8(ascii: "+"):
            return .simpleString(String(decoding: line, as: UTF8.self))
        case UInt8(ascii: "-"):
            return .error(String(decoding: line, as: UTF8.self))
        case UInt8(ascii: ":"):
            return .integer(try integer(line))
        case UInt8(ascii: "$"):
            let length = try integer(line)
            if length == -1 { return .null }
            guard length >= 0 else { throw RESPDecodingError.protocolViolation("bulk string length \(length)") }
            guard length <= limit else {
                throw RESPDecodingError.tooLarge("a bulk string of \(length) bytes (limit \(limit))")
            }
            guard buffer.readableBytes >= Int(length) + 2 else { return nil }
            guard let bytes = buffer.readBytes(length: Int(length)),
                buffer.readInteger(as: UInt16.self) == 0x0D0A
            else { throw RESPDecodingError.protocolViolation("bulk string not ended by CRLF") }
            return .bulkString(bytes)
        case UInt8(ascii: "*"):
            let count = try integer(line)
            if count == -1 { return .null }
            guard count >= 0 else { throw RESPDecodingError.protocolViolation("array length \(count)") }
            guard count <= maxArrayCount else {
                throw RESPDecodingError.tooLarge("an array of \(count) elements (limit \(maxArrayCount))")
            }
            var elements: [RESPValue] = []
            elements.reserveCapacity(min(Int(count), 1024))
            for _ in 0..<count {
                guard let element = try parse(&buffer, depth: depth + 1, start: start, limit: limit) else { return nil }
                elements.append(element)
                guard buffer.readerIndex - start <= limit + 64 else {
                    throw RESPDecodingError.tooLarge("a reply longer than \(limit) bytes")
                }
            }
            return .array(elements)
        default:
            throw RESPDecodingError.protocolViolation("unexpected reply type byte 0x\(String(type, radix: 16))")
        }
    }

    /// The bytes up to the next CRLF (consumed), or nil when it has not arrived.
    private static func readLine(_ buffer: inout ByteBuffer, start: Int, limit: Int) throws -> ByteBufferView? {
        let view = buffer.readableBytesView
        guard let cr = view.firstIndex(of: 0x0D) else {
            if buffer.readerIndex + buffer.readableBytes - start > limit + 64 {
                throw RESPDecodingError.tooLarge("a reply line longer than \(limit) bytes")
            }
            return nil
        }
        guard cr + 1 < view.endIndex else { return nil }
        guard view[cr + 1] == 0x0A else { throw RESPDecodingError.protocolViolation("CR not followed by LF") }
        let line = view[view.startIndex..<cr]
        buffer.moveReaderIndex(to: cr + 2)
        return line
    }

    private static func integer(_ line: ByteBufferView) throws -> Int64 {
        guard line.count <= 20, let value = Int64(String(decoding: line, as: UTF8.self)) else {
            throw RESPDecodingError.protocolViolation(
                "not an integer: \(String(decoding: line.prefix(32), as: UTF8.self))")
        }
        return value
    }
}
