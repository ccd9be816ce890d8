/// Writes event-stream messages: prelude (total length, headers length, prelude CRC), headers,
/// payload, message CRC, all integers big-endian.
public enum EventStreamEncoder {
    /// The wire bytes of `message`; over-long header names and values are cut to their bounds.
    public static func encode(_ message: EventStreamMessage) -> [UInt8] {
        var headers: [UInt8] = []
        for header in message.headers {
            let name = Array(header.name.utf8.prefix(255))
            headers.append(UInt8(name.count))
            headers += name
            switch header.value {
            case .bool(let flag): headers.append(flag ? 0 : 1)
            case .byte(let value): headers += [2, UInt8(bitPattern: value)]
            case .short(let value): headers.append(3); append(UInt16(bitPattern: value), to: &headers)
            case .int(let value): headers.append(4); append(UInt32(bitPattern: value), to: &headers)
            case .long(let value): headers.append(5); append(UInt64(bitPattern: value), to: &headers)
            case .bytes(let bytes):
                headers.append(6)
                append(UInt16(min(bytes.count, Int(UInt16.max))), to: &headers)
                headers += bytes.prefix(Int(UInt16.max))
            case .string(let text):
                let bytes = Array(text.utf8.prefix(Int(UInt16.max)))
                headers.append(7)
                append(UInt16(bytes.count), to: &headers)
                headers += bytes
            case .timestamp(let millis): headers.append(8); append(UInt64(bitPattern: millis), to: &headers)
            case .uuid(let bytes):
                headers.append(9)
                headers += (bytes + [UInt8](repeating: 0, count: 16)).prefix(16)
            }
        }
        let total = 16 + headers.count + message.payload.count
        var out: [UInt8] = []
        out.reserveCapacity(total)
        append(UInt32(total), to: &out)
        append(UInt32(headers.count), to: &out)
        append(CRC32.checksum(out), to: &out)
        out += headers
        out += message.payload
        append(CRC32.checksum(out), to: &out)
        return out
    }

    static func append<T: FixedWidthInteger>(_ value: T, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) }
    }
}
