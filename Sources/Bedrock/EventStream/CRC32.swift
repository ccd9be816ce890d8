/// CRC-32 as zlib computes it (reflected polynomial 0xEDB88320), which the AWS event stream uses.
///
/// Written here because none of the packages this project may use exposes a CRC-32: swift-crypto has
/// only cryptographic hashes, and NIO's zlib shim is internal to swift-nio-extras. Eight bytes a step
/// ("slicing by 8", as zlib does): every event of a streamed answer is checked twice, prelude and whole.
package struct CRC32: Sendable {
    /// The CRC of the bytes so far.
    package private(set) var value: UInt32 = 0

    /// A CRC of no bytes.
    package init() {}

    /// Continues a CRC from an earlier one, as botocore continues the prelude's into the message's.
    package init(continuing value: UInt32) { self.value = value }

    /// Adds `bytes` to the CRC.
    package mutating func update(_ bytes: some Sequence<UInt8>) {
        let done = bytes.withContiguousStorageIfAvailable { update(UnsafeRawBufferPointer($0)) }
        guard done == nil else { return }
        update(Array(bytes))
    }

    /// Adds the bytes of `buffer` to the CRC.
    package mutating func update(_ buffer: UnsafeRawBufferPointer) {
        var crc = ~value
        Self.tables.withUnsafeBufferPointer { table in
            var index = 0
            let count = buffer.count
            while count - index >= 8 {
                let one = crc ^ UInt32(littleEndian: buffer.loadUnaligned(fromByteOffset: index, as: UInt32.self))
                let two = UInt32(littleEndian: buffer.loadUnaligned(fromByteOffset: index + 4, as: UInt32.self))
                crc =
                    table[7 * 256 + Int(one & 0xFF)] ^ table[6 * 256 + Int(one >> 8 & 0xFF)]
                    ^ table[5 * 256 + Int(one >> 16 & 0xFF)] ^ table[4 * 256 + Int(one >> 24)]
                    ^ table[3 * 256 + Int(two & 0xFF)] ^ table[2 * 256 + Int(two >> 8 & 0xFF)]
                    ^ table[256 + Int(two >> 16 & 0xFF)] ^ table[Int(two >> 24)]
                index += 8
            }
            while index < count {
                crc = table[Int((crc ^ UInt32(buffer[index])) & 0xFF)] ^ (crc >> 8)
                index += 1
            }
        }
        value = ~crc
    }

    /// The CRC-32 of `bytes`.
    package static func checksum(_ bytes: some Sequence<UInt8>) -> UInt32 {
        var crc = CRC32()
        crc.update(bytes)
        return crc.value
    }

    /// Eight tables of 256 entries, one after the other: the first is the byte-at-a-time table, and entry n of
    /// table k is the CRC of byte n followed by k zero bytes.
    static let tables: [UInt32] = {
        var tables = [UInt32](repeating: 0, count: 8 * 256)
        for index in 0..<256 {
            var crc = UInt32(index)
            for _ in 0..<8 { crc = crc & 1 == 1 ? 0xEDB8_8320 ^ (crc >> 1) : crc >> 1 }
            tables[index] = crc
        }
        for index in 0..<256 {
            for slice in 1..<8 {
                let previous = tables[(slice - 1) * 256 + index]
                tables[slice * 256 + index] = (previous >> 8) ^ tables[Int(previous & 0xFF)]
            }
        }
        return tables
    }()
}
