/// CRC-32 as zlib computes it (reflected polynomial 0xEDB88320), which the AWS event stream uses.
///
/// Written here because none of the packages this project may use exposes a CRC-32: swift-crypto has
/// only cryptographic hashes, and NIO's zlib shim is internal to swift-nio-extras.
package struct CRC32: Sendable {
    /// The CRC of the bytes so far.
    package private(set) var value: UInt32 = 0

    /// A CRC of no bytes.
    package init() {}

    /// Continues a CRC from an earlier one, as botocore continues the prelude's into the message's.
    package init(continuing value: UInt32) { self.value = value }

    /// Adds `bytes` to the CRC.
    package mutating func update(_ bytes: some Sequence<UInt8>) {
        var crc = ~value
        for byte in bytes {
            crc = CRC32.table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8)
        }
        value = ~crc
    }

    /// The CRC-32 of `bytes`.
    package static func checksum(_ bytes: some Sequence<UInt8>) -> UInt32 {
        var crc = CRC32()
        crc.update(bytes)
        return crc.value
    }

    static let table: [UInt32] = (0..<256).map { index -> UInt32 in
        var crc = UInt32(index)
        for _ in 0..<8 { crc = crc & 1 == 1 ? 0xEDB8_8320 ^ (crc >> 1) : crc >> 1 }
        return crc
    }
}
