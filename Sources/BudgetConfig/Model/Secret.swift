/// A secret value (an AWS secret key, a Redis password) that never prints itself.
///
/// `description` and `debugDescription` are `[masked]`, so interpolating a `Secret` into a log line,
/// an error or a diff cannot leak it; code that must use the value reads `revealed` on purpose.
public struct Secret: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible {
    /// The value itself; read it only where it must be used or stored.
    public let revealed: String

    public init(_ value: String) { self.revealed = value }

    /// What a secret prints as.
    public static let maskedText = "[masked]"

    public var description: String { Self.maskedText }
    public var debugDescription: String { Self.maskedText }
}

extension Secret: Codable {
    /// Encoded as the plain value: only for the store (mode 0600) and the control socket, never for output.
    public init(from decoder: any Decoder) throws {
        revealed = try decoder.singleValueContainer().decode(String.self)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(revealed)
    }
}
