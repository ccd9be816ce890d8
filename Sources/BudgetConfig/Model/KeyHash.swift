import Crypto

/// The SHA-256 of a key-auth key, written `sha256:<64 hex digits>`.
///
/// The store and the data plane keep only this: a dump writes it as `key_hash`, and sync accepts it
/// back, so plaintext keys never have to leave the file a user wrote.
public struct KeyHash: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// The algorithm prefix of the written form.
    public static let prefix = "sha256:"

    /// The 64 lowercase hex digits.
    public let hex: String

    /// The hash of a plaintext key.
    public init(key: String) {
        var key = key
        let digest = key.withUTF8 { SHA256.hash(data: $0) }
        let digits: StaticString = "0123456789abcdef"
        // Hashed for every request: the digits go straight into the string's storage.
        hex = String(unsafeUninitializedCapacity: 64) { out in
            digits.withUTF8Buffer { digits in
                var index = 0
                for byte in digest {
                    out[index] = digits[Int(byte >> 4)]
                    out[index + 1] = digits[Int(byte & 0x0F)]
                    index += 2
                }
                return index
            }
        }
    }

    /// Parses `sha256:<hex>`; nil when the text has another form.
    public init?(parsing text: String) {
        guard text.hasPrefix(Self.prefix) else { return nil }
        let digits = text.utf8.dropFirst(Self.prefix.utf8.count)
        // Bytes, not Characters: this runs for every credential of every snapshot.
        guard digits.count == 64, digits.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) })
        else { return nil }
        hex = String(decoding: digits, as: UTF8.self)
    }

    public var description: String { Self.prefix + hex }

    /// A short, non-reversible label for output: `sha256:1a2b3c4d…`.
    public var shortLabel: String { Self.prefix + hex.prefix(8) + "…" }

    public static func < (lhs: KeyHash, rhs: KeyHash) -> Bool { lhs.hex < rhs.hex }
}

extension KeyHash: Codable {
    /// Decodes the `sha256:<hex>` form; any other is a data-corruption error.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        guard let hash = KeyHash(parsing: text) else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "expected sha256:<64 hex digits>")
        }
        self = hash
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}
