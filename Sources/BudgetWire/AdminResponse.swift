public import BudgetConfig
public import BudgetJSON
import EntityCodec

/// The answer to an `AdminRequest`: each operation fills the members it needs.
public struct AdminResponse: Sendable, Hashable {
    public var server: String?
    public var configVersion: UInt64?
    public var state: ConfigState?
    public var status: ServerStatus?
    public var usage: [UsageRow]?
    public var removed: Int?

    public init(
        server: String? = nil, configVersion: UInt64? = nil, state: ConfigState? = nil,
        status: ServerStatus? = nil, usage: [UsageRow]? = nil, removed: Int? = nil
    ) {
        self.server = server
        self.configVersion = configVersion
        self.state = state
        self.status = status
        self.usage = usage
        self.removed = removed
    }
}

extension AdminResponse: WireMessage {
    public var wireFields: FieldValue {
        .compactMap([
            .init("server", .optional(server)),
            .init("configVersion", configVersion.map { .int(Int(clamping: $0)) } ?? .null),
            .init("state", state?.codecFields ?? .null),
            .init("status", status?.wireFields ?? .null),
            .init("usage", usage.map { .list($0.map(\.wireFields)) } ?? .null),
            .init("removed", .optional(removed)),
        ])
    }

    public init(wireJSON value: JSONValue) throws(JSONShapeError) {
        var reader = try JSONObjectReader(value)
        var state: ConfigState?
        if let value = reader.value("state") {
            do {
                state = try ConfigState(codecJSON: value)
            } catch {
                throw error.within("state")
            }
        }
        var usage: [UsageRow]?
        if let value = reader.value("usage") {
            guard case .array(let items) = value else { throw JSONShapeError(at: "usage", "must be a list") }
            var rows: [UsageRow] = []
            for (index, item) in items.enumerated() {
                do {
                    rows.append(
                        try JSONObjectReader.read(item, at: "[\(index)]") { row throws(JSONShapeError) in
                            try UsageRow(wireJSON: &row)
                        })
                } catch {
                    throw error.within("usage")
                }
            }
            usage = rows
        }
        self.init(
            server: try reader.optionalString("server"), configVersion: try reader.optionalUInt64("configVersion"),
            state: state,
            status: try reader.optionalObject("status") { status throws(JSONShapeError) in
                try ServerStatus(wireJSON: &status)
            },
            usage: usage, removed: try reader.optionalInt("removed"))
        try reader.finish()
    }
}
