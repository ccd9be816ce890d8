/// An entity's fields as an ordered tree, in decK's field names: the one form from which the
/// YAML dump, the JSON output and the field-level diff of a plan are all rendered.
///
/// Not `indirect`: lists and maps hold arrays, which are references already, so scalars need no box of their
/// own (boxing every scalar made large snapshots much slower to write; bench/README.md).
public enum FieldValue: Sendable, Hashable {
    case null
    case bool(Bool)
    case int(Int)
    case number(Double)
    case string(String)
    /// Rendered as `[masked]` everywhere except where a caller explicitly asks for the value.
    case secret(Secret)
    case list([FieldValue])
    case map([Field])

    /// One named field of a map, order kept.
    public struct Field: Sendable, Hashable {
        public var name: String
        public var value: FieldValue

        public init(_ name: String, _ value: FieldValue) {
            self.name = name
            self.value = value
        }
    }

    /// A map without the fields whose value is null, so that unset optionals are not written.
    public static func compactMap(_ fields: [Field]) -> FieldValue {
        .map(fields.filter { $0.value != .null })
    }

    /// The value, or `.null` for nil; likewise for the other types below.
    public static func optional(_ value: String?) -> FieldValue { value.map { .string($0) } ?? .null }
    public static func optional(_ value: Int?) -> FieldValue { value.map { .int($0) } ?? .null }
    public static func optional(_ value: Double?) -> FieldValue { value.map { .number($0) } ?? .null }
    public static func optional(_ value: Secret?) -> FieldValue { value.map { .secret($0) } ?? .null }
    /// A list of strings.
    public static func strings(_ values: [String]) -> FieldValue { .list(values.map { .string($0) }) }

    /// A number written as an integer when it is one (10000, not 10000.0).
    public static func numeric(_ value: Double) -> FieldValue {
        if value.rounded() == value && abs(value) < 9.0e15 { return .int(Int(value)) }
        return .number(value)
    }

    /// The field named `name` of a map.
    public subscript(name: String) -> FieldValue? {
        guard case .map(let fields) = self else { return nil }
        return fields.first { $0.name == name }?.value
    }
}
