/// A JSON document as parsed: objects keep their member order and numbers keep their text, so a value
/// that is parsed and written again comes out the same (a tool's parameters, a client's numbers).
public enum JSONValue: Sendable, Hashable {
    case null
    case bool(Bool)
    /// The number's literal text, e.g. `42` or `0.5`; read it with `double` or `int`.
    case number(String)
    case string(String)
    case array([JSONValue])
    case object([Member])

    /// One `"name": value` member of an object.
    public struct Member: Sendable, Hashable {
        public var name: String
        public var value: JSONValue

        public init(_ name: String, _ value: JSONValue) {
            self.name = name
            self.value = value
        }
    }

    /// An integer as a number value.
    public static func int(_ value: Int) -> JSONValue { .number(String(value)) }

    /// A double as a number value, written as an integer when it is one.
    public static func double(_ value: Double) -> JSONValue {
        if value.rounded() == value && abs(value) < 9.0e15 { return .number(String(Int(value))) }
        return .number(value.isFinite ? "\(value)" : "0")
    }

    /// An object from members in the given order.
    public static func object(_ members: KeyValuePairs<String, JSONValue>) -> JSONValue {
        .object(members.map { Member($0.key, $0.value) })
    }

    /// The value of member `name`, when this is an object that has it.
    public subscript(name: String) -> JSONValue? {
        guard case .object(let members) = self else { return nil }
        return members.first { $0.name == name }?.value
    }

    public var isNull: Bool { self == .null }

    /// The string, when this is one; likewise `boolValue`, `arrayValue` and `members`.
    public var stringValue: String? {
        if case .string(let text) = self { return text }
        return nil
    }

    public var boolValue: Bool? {
        if case .bool(let flag) = self { return flag }
        return nil
    }

    /// The number as a double, when this is one.
    public var double: Double? {
        if case .number(let text) = self { return Double(text) }
        return nil
    }

    /// The number as an integer when it has no fraction and fits.
    public var int: Int? {
        guard case .number(let text) = self else { return nil }
        if let value = Int(text) { return value }
        guard let value = Double(text), value.rounded() == value, abs(value) < 9.0e15 else { return nil }
        return Int(value)
    }

    public var arrayValue: [JSONValue]? {
        if case .array(let items) = self { return items }
        return nil
    }

    public var members: [Member]? {
        if case .object(let members) = self { return members }
        return nil
    }

    /// What the value is, in words for error messages.
    public var kindDescription: String {
        switch self {
        case .null: return "null"
        case .bool: return "a boolean"
        case .number: return "a number"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }
}
