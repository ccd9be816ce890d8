/// Reads the members of one JSON object by name, for decoders written by hand: each read says which
/// member was missing or of the wrong type, and `finish()` refuses members that nobody read, so a
/// misspelt or unexpected field is an error rather than silently ignored.
///
/// Errors carry only the member's name; callers add where the object sits (`changes[3].entity`) with
/// `JSONShapeError.within(_:)` as the error travels up, so a document read without error builds no paths.
public struct JSONObjectReader {
    private let members: [JSONValue.Member]
    private var read = 0
    /// Which of the first 64 members were read, to name the unknown ones in `finish()`.
    private var readMask: UInt64 = 0

    /// A reader of `value`'s members; an error unless `value` is an object.
    public init(_ value: JSONValue) throws(JSONShapeError) {
        guard case .object(let members) = value else {
            throw JSONShapeError("expected an object, found \(value.kindDescription)")
        }
        self.members = members
    }

    /// The member's value, or nil when absent or null.
    public mutating func value(_ name: String) -> JSONValue? {
        for (index, member) in members.enumerated() where member.name == name {
            read += 1
            if index < 64 { readMask |= 1 << UInt64(index) }
            return member.value.isNull ? nil : member.value
        }
        return nil
    }

    /// The member's value; an error when it is absent or null.
    public mutating func required(_ name: String) throws(JSONShapeError) -> JSONValue {
        guard let value = value(name) else { throw JSONShapeError(at: name, "is missing") }
        return value
    }

    /// A string member; an error when absent, null or not a string. Likewise `bool`, `int`, ….
    public mutating func string(_ name: String) throws(JSONShapeError) -> String {
        try Self.string(required(name), name)
    }

    /// A string member, nil when absent or null. Likewise the other `optional…` reads.
    public mutating func optionalString(_ name: String) throws(JSONShapeError) -> String? {
        try value(name).map { value throws(JSONShapeError) in try Self.string(value, name) }
    }

    public mutating func bool(_ name: String) throws(JSONShapeError) -> Bool {
        guard let flag = try required(name).boolValue else { throw JSONShapeError(at: name, "must be true or false") }
        return flag
    }

    public mutating func int(_ name: String) throws(JSONShapeError) -> Int {
        try Self.int(required(name), name)
    }

    public mutating func optionalInt(_ name: String) throws(JSONShapeError) -> Int? {
        try value(name).map { value throws(JSONShapeError) in try Self.int(value, name) }
    }

    public mutating func uint64(_ name: String) throws(JSONShapeError) -> UInt64 {
        try Self.uint64(required(name), name)
    }

    public mutating func optionalUInt64(_ name: String) throws(JSONShapeError) -> UInt64? {
        try value(name).map { value throws(JSONShapeError) in try Self.uint64(value, name) }
    }

    public mutating func double(_ name: String) throws(JSONShapeError) -> Double {
        try Self.double(required(name), name)
    }

    public mutating func optionalDouble(_ name: String) throws(JSONShapeError) -> Double? {
        try value(name).map { value throws(JSONShapeError) in try Self.double(value, name) }
    }

    /// A list of strings; absent or null reads as empty.
    public mutating func strings(_ name: String) throws(JSONShapeError) -> [String] {
        guard let value = value(name) else { return [] }
        guard case .array(let items) = value else { throw JSONShapeError(at: name, "must be a list of strings") }
        var strings: [String] = []
        strings.reserveCapacity(items.count)
        for (index, item) in items.enumerated() {
            guard case .string(let text) = item else {
                throw JSONShapeError(at: "\(name)[\(index)]", "must be a string, found \(item.kindDescription)")
            }
            strings.append(text)
        }
        return strings
    }

    /// A list; absent or null reads as empty.
    public mutating func array(_ name: String) throws(JSONShapeError) -> [JSONValue] {
        guard let value = value(name) else { return [] }
        guard case .array(let items) = value else { throw JSONShapeError(at: name, "must be a list") }
        return items
    }

    /// Reads the object in member `name` with `body`; errors inside are placed under `name`.
    public mutating func object<T>(_ name: String, _ body: (inout JSONObjectReader) throws(JSONShapeError) -> T)
        throws(JSONShapeError) -> T
    {
        try Self.read(required(name), at: name, body)
    }

    /// Like `object`, or nil when the member is absent or null.
    public mutating func optionalObject<T>(
        _ name: String, _ body: (inout JSONObjectReader) throws(JSONShapeError) -> T
    ) throws(JSONShapeError) -> T? {
        guard let value = value(name) else { return nil }
        return try Self.read(value, at: name, body)
    }

    /// Reads `value` as an object with `body`, then checks that every member was read.
    public static func read<T>(
        _ value: JSONValue, at name: String, _ body: (inout JSONObjectReader) throws(JSONShapeError) -> T
    ) throws(JSONShapeError) -> T {
        do {
            var reader = try JSONObjectReader(value)
            let result = try body(&reader)
            try reader.finish()
            return result
        } catch {
            throw error.within(name)
        }
    }

    /// Fails when the object has a member that was not read.
    public func finish() throws(JSONShapeError) {
        // Names are unique (the parser refuses duplicates), so fewer reads than members means an unknown one.
        guard read < members.count else { return }
        let unknown = members.enumerated().filter { index, _ in index >= 64 || readMask & (1 << UInt64(index)) == 0 }
            .map { "\"\($0.element.name)\"" }
        throw JSONShapeError("has unknown member(s): \(unknown.joined(separator: ", "))")
    }

    private static func string(_ value: JSONValue, _ name: String) throws(JSONShapeError) -> String {
        guard case .string(let text) = value else {
            throw JSONShapeError(at: name, "must be a string, found \(value.kindDescription)")
        }
        return text
    }

    private static func int(_ value: JSONValue, _ name: String) throws(JSONShapeError) -> Int {
        guard case .number(let text) = value, let number = Int(text) else {
            throw JSONShapeError(at: name, "must be a whole number, found \(value.kindDescription)")
        }
        return number
    }

    private static func uint64(_ value: JSONValue, _ name: String) throws(JSONShapeError) -> UInt64 {
        guard case .number(let text) = value, let number = UInt64(text) else {
            throw JSONShapeError(at: name, "must be a whole number from 0 to \(UInt64.max)")
        }
        return number
    }

    private static func double(_ value: JSONValue, _ name: String) throws(JSONShapeError) -> Double {
        guard let number = value.double, number.isFinite else {
            throw JSONShapeError(at: name, "must be a number, found \(value.kindDescription)")
        }
        return number
    }
}

/// A JSON document that parsed but does not have the expected shape: where (a dotted path) and what.
public struct JSONShapeError: Error, Sendable, Hashable, CustomStringConvertible {
    /// From the outermost member to the innermost, e.g. `["changes[3]", "entity", "port"]`.
    public var path: [String]
    public var message: String

    /// A problem with the object itself.
    public init(_ message: String) {
        path = []
        self.message = message
    }

    /// A problem with member `name`.
    public init(at name: String, _ message: String) {
        path = [name]
        self.message = message
    }

    /// The same error, one level further out.
    public func within(_ name: String) -> JSONShapeError {
        var outer = self
        outer.path.insert(name, at: 0)
        return outer
    }

    public var description: String {
        var text = ""
        for component in path {
            if !text.isEmpty && !component.hasPrefix("[") { text += "." }
            text += component
        }
        return text.isEmpty ? message : text + " " + message
    }
}
