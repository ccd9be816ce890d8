import NIOCore

/// What may go on the wire as a header field: the check that NIO's header validators made, for the bytes the
/// proxy writes itself (its answers, and its requests to Bedrock).
enum HeaderField {
    /// A name that is an RFC 9110 token, and a value without CR, LF or NUL: nothing that could split a message.
    static func isValid(name: String, value: String) -> Bool {
        guard !name.isEmpty, name.utf8.allSatisfy(isTokenByte) else { return false }
        return !value.utf8.contains { $0 == 0x0D || $0 == 0x0A || $0 == 0 }
    }

    /// RFC 9110's `tchar`.
    private static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"):
            true
        default:
            "!#$%&'*+-.^_`|~".utf8.contains(byte)
        }
    }
}

extension ByteBuffer {
    /// `name: value` and its line end, as a message's header block has it.
    mutating func writeHeaderField(name: String, value: String) {
        writeString(name)
        writeStaticString(": ")
        writeString(value)
        writeStaticString("\r\n")
    }
}
