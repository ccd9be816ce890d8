/// The compact encoding of the per-request messages: big-endian integers, IEEE doubles, strings as
/// u16 length + UTF-8, lists as u16 count + items.
package struct WireWriter: Sendable {
    /// What was written so far.
    package private(set) var bytes: [UInt8] = []

    package init() {}

    /// A writer with room for `capacity` bytes, for a caller that knows what it will write.
    package init(capacity: Int) { bytes.reserveCapacity(capacity) }

    package mutating func u8(_ value: UInt8) { bytes.append(value) }
    package mutating func u16(_ value: UInt16) { append(value) }
    package mutating func u32(_ value: UInt32) { append(value) }
    package mutating func u64(_ value: UInt64) { append(value) }
    package mutating func i64(_ value: Int64) { append(UInt64(bitPattern: value)) }
    package mutating func f64(_ value: Double) { append(value.bitPattern) }

    /// Writes a string as u16 length + UTF-8, cut to 65,535 bytes.
    package mutating func string(_ value: String) {
        let count = min(value.utf8.count, Int(UInt16.max))
        u16(UInt16(count))
        // Copied straight from the string's storage (no array in between): reservations write several strings
        // each. A prefix (a string cut short) is a Substring's view, which is copied byte by byte.
        if count == value.utf8.count {
            bytes.append(contentsOf: value.utf8)
        } else {
            bytes.append(contentsOf: value.utf8.prefix(count))
        }
    }

    private mutating func append<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) }
    }
}

/// Reads what `WireWriter` wrote; every read is bounds-checked and throws on short or bad input.
package struct WireReader: Sendable {
    private let bytes: [UInt8]
    private var index = 0

    /// A reader of `bytes` from the start.
    package init(_ bytes: [UInt8]) { self.bytes = bytes }

    /// Whether every byte was read.
    package var isAtEnd: Bool { index == bytes.count }

    package mutating func u8() throws(WireDecodingError) -> UInt8 { UInt8(try integer(1)) }
    package mutating func u16() throws(WireDecodingError) -> UInt16 { UInt16(try integer(2)) }
    package mutating func u32() throws(WireDecodingError) -> UInt32 { UInt32(try integer(4)) }
    package mutating func u64() throws(WireDecodingError) -> UInt64 { try integer(8) }
    package mutating func i64() throws(WireDecodingError) -> Int64 { Int64(bitPattern: try integer(8)) }

    /// A double; an error unless it is finite.
    package mutating func f64() throws(WireDecodingError) -> Double {
        let value = Double(bitPattern: try integer(8))
        guard value.isFinite else { throw WireDecodingError(message: "a number is not finite") }
        return value
    }

    /// A u16-length string; an error unless it is UTF-8.
    package mutating func string() throws(WireDecodingError) -> String {
        let count = Int(try u16())
        guard index + count <= bytes.count else { throw WireDecodingError(message: "a string runs past the end") }
        defer { index += count }
        let start = index
        let text = bytes.withUnsafeBufferPointer { all -> String? in
            let slice = UnsafeBufferPointer(rebasing: all[start..<start + count])
            // ASCII, which every key, id and tag the gateway sends is, needs no UTF-8 validation. The validating
            // initializer is generic and runs unspecialized, instantiating its metadata on each call: about 2.5%
            // of budget-controld's CPU under a reserve+commit load, which decodes three strings per window.
            if slice.allSatisfy({ $0 < 0x80 }) { return String(decoding: slice, as: UTF8.self) }
            return String(validating: slice, as: UTF8.self)
        }
        guard let text else { throw WireDecodingError(message: "a string is not UTF-8") }
        return text
    }

    /// Fails unless every byte was read.
    package func finish() throws(WireDecodingError) {
        guard isAtEnd else { throw WireDecodingError(message: "\(bytes.count - index) bytes left over") }
    }

    private mutating func integer(_ count: Int) throws(WireDecodingError) -> UInt64 {
        guard index + count <= bytes.count else { throw WireDecodingError(message: "message is truncated") }
        var value: UInt64 = 0
        for offset in 0..<count { value = value << 8 | UInt64(bytes[index + offset]) }
        index += count
        return value
    }
}

/// A frame's payload does not decode.
public struct WireDecodingError: Error, Sendable, Hashable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}
