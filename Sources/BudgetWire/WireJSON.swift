public import BudgetConfig
public import BudgetJSON
import EntityCodec
import Foundation

/// JSON for the JSON frames. The small, once-per-connection messages (hello, welcome, error) use
/// Foundation's coders with sorted keys; the ones that carry entities by the hundred thousand are
/// `WireMessage`s, written and read by hand.
public enum WireJSON {
    /// The most a JSON frame may nest: entities go about eight levels deep inside a message.
    public static let maxDepth = 32

    /// The compact JSON of a hand-written message.
    public static func encode(_ message: some WireMessage) -> [UInt8] {
        EntityCodec.compactJSON(message.wireFields)
    }

    /// Reads a hand-written message strictly; any problem is a `badRequest` error body.
    public static func decode<T: WireMessage>(_ type: T.Type, from bytes: [UInt8]) throws(WireErrorBody) -> T {
        do {
            let value = try JSONParser.parse(
                bytes, limits: .init(maxDepth: maxDepth, maxBytes: WireProtocol.maxServerFrameBytes))
            return try T(wireJSON: value)
        } catch {
            // A JSONParseError (with its byte offset) or a JSONShapeError (with its path).
            throw WireErrorBody(.badRequest, "payload is not a valid \(T.self): \(error)")
        }
    }

    /// The JSON of a small Codable message, keys sorted.
    public static func encode<T: Encodable>(_ value: T) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        // Encoding our own Codable types cannot fail; an empty object keeps the peer's decoder honest if it did.
        return (try? Array(encoder.encode(value))) ?? Array("{}".utf8)
    }

    /// Reads a small Codable message; any problem is a `badRequest` error body.
    public static func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws(WireErrorBody) -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(bytes))
        } catch {
            throw WireErrorBody(.badRequest, "payload is not a valid \(T.self): \(Self.describe(error))")
        }
    }

    static func describe(_ error: any Error) -> String {
        switch error as? DecodingError {
        case .dataCorrupted(let context)?: return "invalid JSON" + path(context.codingPath)
        case .keyNotFound(let key, let context)?: return "missing \(key.stringValue)" + path(context.codingPath)
        case .typeMismatch(_, let context)?, .valueNotFound(_, let context)?:
            return "wrong type" + path(context.codingPath) + ": " + context.debugDescription
        default: return "\(error)"
        }
    }

    private static func path(_ keys: [any CodingKey]) -> String {
        keys.isEmpty ? "" : " at " + keys.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
    }
}

/// A JSON frame's payload written and read by hand: `wireFields` out, `init(wireJSON:)` in (strict: a
/// missing, mistyped or unknown member is refused with its path).
public protocol WireMessage: Sendable {
    /// The message as a field tree, written as compact JSON.
    var wireFields: FieldValue { get }
    /// Reads a message; a missing, mistyped or unknown member is an error with its path.
    init(wireJSON value: JSONValue) throws(JSONShapeError)
}
