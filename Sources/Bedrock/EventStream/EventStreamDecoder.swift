/// An incremental event-stream decoder: feed bytes as they arrive, split anywhere, and take out whole
/// messages. Both CRCs are checked; lengths are checked against the bounds from the prelude alone,
/// before any of the message is buffered, so a 4 GiB length costs nothing.
public struct EventStreamDecoder: Sendable {
    /// The largest headers and payload a message may declare.
    public struct Limits: Sendable {
        /// botocore's bound on the headers of one message.
        public var maxHeadersBytes = 128 * 1024
        /// botocore's bound on the payload of one message.
        public var maxPayloadBytes = 24 * 1024 * 1024

        /// botocore's bounds.
        public init() {}
    }

    public let limits: Limits
    private var buffer: [UInt8] = []
    private var start = 0
    /// Bytes consumed by whole messages so far; with `bufferedByteCount`, what was fed in total.
    public private(set) var decodedByteCount = 0

    /// An empty decoder that refuses messages beyond `limits`.
    public init(limits: Limits = Limits()) { self.limits = limits }

    /// Bytes held that do not yet form a whole message.
    public var bufferedByteCount: Int { buffer.count - start }

    /// Feeds bytes as they arrive; they need not end at a message boundary.
    public mutating func append(_ bytes: some Sequence<UInt8>) {
        if start > 0 && start >= buffer.count / 2 {
            buffer.removeFirst(start)
            start = 0
        }
        buffer.append(contentsOf: bytes)
    }

    /// The next whole message, nil when more bytes are needed, or a typed error for a corrupt stream
    /// (after which the decoder should be dropped).
    public mutating func next() throws(EventStreamError) -> EventStreamMessage? {
        guard bufferedByteCount >= 12 else { return nil }
        let start = self.start
        let limits = self.limits
        // Array's withUnsafeBytes does not carry a typed throw through: the closure returns its error.
        let result = buffer.withUnsafeBytes { all in
            Result { () throws(EventStreamError) -> (message: EventStreamMessage, length: Int)? in
                try Self.message(in: all[start...], limits: limits)
            }
        }
        guard let (decoded, totalLength) = try result.get() else { return nil }
        self.start += totalLength
        decodedByteCount += totalLength
        if self.start == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            self.start = 0
        }
        return decoded
    }

    /// The message at the start of `bytes` and the bytes it takes, or nil when they hold only part of it.
    private static func message(in bytes: Slice<UnsafeRawBufferPointer>, limits: Limits) throws(EventStreamError)
        -> (message: EventStreamMessage, length: Int)?
    {
        let frame = UnsafeRawBufferPointer(rebasing: bytes)
        let totalLength = Int(Self.uint32(frame, at: 0))
        let headersLength = Int(Self.uint32(frame, at: 4))
        let preludeCRC = Self.uint32(frame, at: 8)
        var prelude = CRC32()
        prelude.update(UnsafeRawBufferPointer(rebasing: frame[..<8]))
        guard prelude.value == preludeCRC else {
            throw .preludeChecksumMismatch(expected: preludeCRC, computed: prelude.value)
        }
        guard headersLength <= limits.maxHeadersBytes else {
            throw .headersTooLong(headersLength, limit: limits.maxHeadersBytes)
        }
        let payloadLength = totalLength - headersLength - 16
        guard totalLength >= 16, payloadLength >= 0 else {
            throw .invalidLength(total: totalLength, headers: headersLength)
        }
        guard payloadLength <= limits.maxPayloadBytes else {
            throw .payloadTooLong(payloadLength, limit: limits.maxPayloadBytes)
        }
        guard frame.count >= totalLength else { return nil }

        let messageCRC = Self.uint32(frame, at: totalLength - 4)
        var crc = CRC32(continuing: preludeCRC)
        crc.update(UnsafeRawBufferPointer(rebasing: frame[8..<totalLength - 4]))
        guard crc.value == messageCRC else {
            throw .messageChecksumMismatch(expected: messageCRC, computed: crc.value)
        }
        let headers = try Self.decodeHeaders(UnsafeRawBufferPointer(rebasing: frame[12..<12 + headersLength]))
        let payload = Array(frame[12 + headersLength..<12 + headersLength + payloadLength])
        return (EventStreamMessage(headers: headers, payload: payload), totalLength)
    }

    private static func uint32(_ bytes: UnsafeRawBufferPointer, at index: Int) -> UInt32 {
        UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: index, as: UInt32.self))
    }

    /// Up to this many headers, a name is checked for a repeat against those before it one by one (Bedrock sends
    /// three); past it, against a set, so that 128 KiB of one-byte headers costs no quadratic time.
    private static let linearDuplicateCheck = 16

    /// Header values every frame of a Bedrock stream repeats that are too long for a small string (over 15 UTF-8
    /// bytes, which Swift would allocate for): handed out as these literals instead, no allocation a frame.
    private static let knownValues = ["application/json", "contentBlockDelta", "contentBlockStart", "contentBlockStop"]

    /// Whether `string`'s UTF-8 is `bytes`, compared as two buffers (a literal's UTF-8 is contiguous).
    private static func equal(_ string: String, _ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        string.utf8.count == bytes.count
            && string.utf8.withContiguousStorageIfAvailable { $0.elementsEqual(bytes) }
                == true
    }

    private static func decodeHeaders(_ bytes: UnsafeRawBufferPointer) throws(EventStreamError)
        -> [EventStreamMessage.Header]
    {
        var headers: [EventStreamMessage.Header] = []
        headers.reserveCapacity(4)
        // Names are compared as bytes, as botocore does: two spellings of the same text are different names.
        var names: Set<[UInt8]> = []
        var index = 0
        func take(_ count: Int) throws(EventStreamError) -> UnsafeRawBufferPointer {
            guard count >= 0, count <= bytes.count - index else { throw .truncatedHeader }
            defer { index += count }
            return UnsafeRawBufferPointer(rebasing: bytes[index..<index + count])
        }
        func integer(_ count: Int) throws(EventStreamError) -> UInt64 {
            var value: UInt64 = 0
            for byte in try take(count) { value = value << 8 | UInt64(byte) }
            return value
        }
        func text(_ count: Int) throws(EventStreamError) -> String? {
            let bytes = try take(count).assumingMemoryBound(to: UInt8.self)
            if count > 15, let known = knownValues.first(where: { Self.equal($0, bytes) }) { return known }
            // ASCII (every name and value Bedrock sends) is valid UTF-8 as it is; `String(validating:as:)` looks up
            // generic metadata at every call, which showed in profiles of a stream.
            if bytes.allSatisfy({ $0 < 0x80 }) { return String(decoding: bytes, as: UTF8.self) }
            return String(validating: bytes, as: UTF8.self)
        }
        while index < bytes.count {
            let nameLength = Int(try integer(1))
            guard nameLength > 0 else { throw .invalidHeaderName }
            guard let name = try text(nameLength) else { throw .invalidHeaderName }
            if headers.count < linearDuplicateCheck {
                guard !headers.contains(where: { $0.name.utf8.elementsEqual(name.utf8) }) else {
                    throw .duplicateHeader(name)
                }
            } else {
                if names.isEmpty { names = Set(headers.map { Array($0.name.utf8) }) }
                guard names.insert(Array(name.utf8)).inserted else { throw .duplicateHeader(name) }
            }
            let type = try integer(1)
            let value: EventStreamMessage.HeaderValue
            switch type {
            case 0: value = .bool(true)
            case 1: value = .bool(false)
            case 2: value = .byte(Int8(bitPattern: UInt8(try integer(1))))
            case 3: value = .short(Int16(bitPattern: UInt16(try integer(2))))
            case 4: value = .int(Int32(bitPattern: UInt32(try integer(4))))
            case 5: value = .long(Int64(bitPattern: try integer(8)))
            case 6: value = .bytes(Array(try take(Int(try integer(2)))))
            case 7:
                guard let string = try text(Int(try integer(2))) else { throw .invalidHeaderValue(name) }
                value = .string(string)
            case 8: value = .timestamp(Int64(bitPattern: try integer(8)))
            case 9: value = .uuid(Array(try take(16)))
            default: throw .unknownHeaderType(UInt8(type), name: name)
            }
            headers.append(.init(name, value))
        }
        return headers
    }
}

/// Why bytes are not a valid event stream.
public enum EventStreamError: Error, Sendable, Hashable, CustomStringConvertible {
    case preludeChecksumMismatch(expected: UInt32, computed: UInt32)
    case messageChecksumMismatch(expected: UInt32, computed: UInt32)
    case headersTooLong(Int, limit: Int)
    case payloadTooLong(Int, limit: Int)
    case invalidLength(total: Int, headers: Int)
    case truncatedHeader
    case invalidHeaderName
    case invalidHeaderValue(String)
    case duplicateHeader(String)
    case unknownHeaderType(UInt8, name: String)
    /// The stream ended inside a message.
    case truncatedMessage(bufferedBytes: Int)

    public var description: String {
        switch self {
        case .preludeChecksumMismatch(let expected, let computed):
            return "prelude CRC mismatch (frame says \(hex32(expected)), computed \(hex32(computed)))"
        case .messageChecksumMismatch(let expected, let computed):
            return "message CRC mismatch (frame says \(hex32(expected)), computed \(hex32(computed)))"
        case .headersTooLong(let length, let limit): return "headers of \(length) bytes exceed the limit of \(limit)"
        case .payloadTooLong(let length, let limit): return "payload of \(length) bytes exceeds the limit of \(limit)"
        case .invalidLength(let total, let headers): return "invalid lengths: total \(total), headers \(headers)"
        case .truncatedHeader: return "a header runs past the end of the headers"
        case .invalidHeaderName: return "a header name is empty or not UTF-8"
        case .invalidHeaderValue(let name): return "header \(name) holds a string that is not UTF-8"
        case .duplicateHeader(let name): return "header \(name) appears twice"
        case .unknownHeaderType(let type, let name): return "header \(name) has unknown type \(type)"
        case .truncatedMessage(let bytes): return "stream ended inside a message (\(bytes) bytes left over)"
        }
    }
}

private func hex32(_ value: UInt32) -> String {
    let digits = String(value, radix: 16)
    return "0x" + String(repeating: "0", count: 8 - digits.count) + digits
}
