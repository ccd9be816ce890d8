public import BudgetConfig
public import BudgetJSON
import EntityCodec

/// Admin operations on admin.sock.
public enum AdminOperation: String, Sendable, Codable, Hashable {
    case ping, status, dump, apply, usage
    case usageReset = "usage-reset"
}

/// A request on admin.sock: an operation and what it needs.
public struct AdminRequest: Sendable, Hashable {
    public var op: AdminOperation
    /// apply: the config version the plan was made against.
    public var baseVersion: UInt64?
    /// apply: the changes, in order.
    public var changes: [AppliedChange]?
    /// usage, usage-reset: one consumer.
    public var consumer: String?
    /// usage: one group.
    public var group: String?

    public init(
        op: AdminOperation, baseVersion: UInt64? = nil, changes: [AppliedChange]? = nil,
        consumer: String? = nil, group: String? = nil
    ) {
        self.op = op
        self.baseVersion = baseVersion
        self.changes = changes
        self.consumer = consumer
        self.group = group
    }
}


extension AppliedChange {
    var wireFields: FieldValue {
        .map([.init("action", .string(action.rawValue)), .init("entity", entity.codecFields)])
    }

    init(wireJSON value: JSONValue) throws(JSONShapeError) {
        var reader = try JSONObjectReader(value)
        let name = try reader.string("action")
        guard let action = Plan.Action(rawValue: name) else {
            throw JSONShapeError(at: "action", "\"\(name)\" is not creating, updating or deleting")
        }
        let entity: Entity
        do {
            entity = try Entity(codecJSON: try reader.required("entity"))
        } catch {
            throw error.within("entity")
        }
        self.init(action: action, entity: entity)
        try reader.finish()
    }

    /// A list of changes (as an apply request and a `ConfigDelta` carry them), read from member `member`; a bad
    /// item is refused with its path (`member[index]...`).
    static func list(wireJSON value: JSONValue, member: String) throws(JSONShapeError) -> [AppliedChange] {
        guard case .array(let items) = value else { throw JSONShapeError(at: member, "must be a list") }
        var list: [AppliedChange] = []
        list.reserveCapacity(items.count)
        for (index, item) in items.enumerated() {
            do {
                list.append(try AppliedChange(wireJSON: item))
            } catch {
                throw error.within("[\(index)]").within(member)
            }
        }
        return list
    }
}

extension AdminRequest: WireMessage {
    public var wireFields: FieldValue {
        .compactMap([
            .init("op", .string(op.rawValue)),
            .init("baseVersion", baseVersion.map { .int(Int(clamping: $0)) } ?? .null),
            .init("changes", changes.map { .list($0.map(\.wireFields)) } ?? .null),
            .init("consumer", .optional(consumer)),
            .init("group", .optional(group)),
        ])
    }

    public init(wireJSON value: JSONValue) throws(JSONShapeError) {
        var reader = try JSONObjectReader(value)
        let name = try reader.string("op")
        guard let op = AdminOperation(rawValue: name) else {
            throw JSONShapeError(at: "op", "\"\(name)\" is not an admin operation")
        }
        var changes: [AppliedChange]?
        if let items = reader.value("changes") { changes = try AppliedChange.list(wireJSON: items, member: "changes") }
        self.init(
            op: op, baseVersion: try reader.optionalUInt64("baseVersion"), changes: changes,
            consumer: try reader.optionalString("consumer"), group: try reader.optionalString("group"))
        try reader.finish()
    }
}
