/// One message of the AWS event stream (`application/vnd.amazon.eventstream`): typed headers and a payload.
public struct EventStreamMessage: Sendable, Hashable {
    public var headers: [Header]
    public var payload: [UInt8]

    public init(headers: [Header], payload: [UInt8]) {
        self.headers = headers
        self.payload = payload
    }

    /// A named, typed header; names are unique within a message.
    public struct Header: Sendable, Hashable {
        public var name: String
        public var value: HeaderValue

        public init(_ name: String, _ value: HeaderValue) {
            self.name = name
            self.value = value
        }
    }

    /// The ten value types of the encoding, by their type byte.
    public enum HeaderValue: Sendable, Hashable {
        case bool(Bool)  // 0 true, 1 false
        case byte(Int8)  // 2
        case short(Int16)  // 3
        case int(Int32)  // 4
        case long(Int64)  // 5
        case bytes([UInt8])  // 6
        case string(String)  // 7
        case timestamp(Int64)  // 8, milliseconds since the epoch
        case uuid([UInt8])  // 9, 16 bytes
    }

    /// The value of a string header, e.g. `:event-type`.
    public func string(_ name: String) -> String? {
        for header in headers where header.name == name {
            if case .string(let value) = header.value { return value }
        }
        return nil
    }

    /// An event as Bedrock sends it: `:event-type`, `:content-type: application/json`, `:message-type: event`.
    public static func event(_ type: String, payload: [UInt8]) -> EventStreamMessage {
        EventStreamMessage(
            headers: [
                Header(":event-type", .string(type)),
                Header(":content-type", .string("application/json")),
                Header(":message-type", .string("event")),
            ], payload: payload)
    }

    /// A modelled exception mid-stream, with the camelCase member name botocore expects.
    public static func exception(_ type: String, payload: [UInt8]) -> EventStreamMessage {
        EventStreamMessage(
            headers: [
                Header(":exception-type", .string(type)),
                Header(":content-type", .string("application/json")),
                Header(":message-type", .string("exception")),
            ], payload: payload)
    }
}
