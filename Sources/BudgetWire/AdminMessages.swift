public import BudgetConfig
public import BudgetJSON
import Foundation

/// Who is connecting: a data plane (control.sock) or budgetctl (admin.sock).
public enum ClientRole: String, Sendable, Codable {
    case dataPlane = "data-plane"
    case admin
}

/// The first frame of every connection.
public struct Hello: Sendable, Codable, Hashable {
    public var protocolVersion: Int
    public var role: ClientRole
    /// Name and version of the client, for logs and `status`.
    public var client: String

    public init(role: ClientRole, client: String, protocolVersion: Int = WireProtocol.version) {
        self.protocolVersion = protocolVersion
        self.role = role
        self.client = client
    }
}

/// The answer to a hello.
public struct Welcome: Sendable, Codable, Hashable {
    public var protocolVersion: Int
    public var server: String
    public var configVersion: UInt64

    public init(server: String, configVersion: UInt64) {
        protocolVersion = WireProtocol.version
        self.server = server
        self.configVersion = configVersion
    }
}

/// Typed errors, sent as an `error` frame with the request's id.
public enum WireErrorCode: String, Sendable, Codable, Hashable {
    case badFrame = "bad_frame"
    case unsupportedVersion = "unsupported_version"
    case badRequest = "bad_request"
    case forbidden
    /// The state moved since the plan was made, or another sync holds the lock.
    case conflict
    /// The result would not be a valid config.
    case invalidConfig = "invalid_config"
    case notFound = "not_found"
    case unavailable
    case `internal`
}

public struct WireErrorBody: Error, Sendable, Codable, Hashable, CustomStringConvertible {
    public var code: WireErrorCode
    public var message: String

    public init(_ code: WireErrorCode, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}

/// Admin operations on admin.sock.
public enum AdminOperation: String, Sendable, Codable, Hashable {
    case ping, status, dump, apply, usage
    case usageReset = "usage-reset"
}

/// One change of a plan, as sent to `apply`: the entity as it will be (create, update) or as it is (delete).
public struct AppliedChange: Sendable, Hashable {
    public var action: Plan.Action
    public var entity: Entity

    public init(action: Plan.Action, entity: Entity) {
        self.action = action
        self.entity = entity
    }
}

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

/// The control plane's view of itself, for `budgetctl status`.
public struct ServerStatus: Sendable, Codable, Hashable {
    public var server: String
    public var configVersion: UInt64
    public var dataPlanes: Int
    public var storePath: String
    public var entities: Int
    public var counters: Int
    public var reservations: Int
    public var uptimeSeconds: Int

    public init(
        server: String, configVersion: UInt64, dataPlanes: Int, storePath: String, entities: Int,
        counters: Int, reservations: Int, uptimeSeconds: Int
    ) {
        self.server = server
        self.configVersion = configVersion
        self.dataPlanes = dataPlanes
        self.storePath = storePath
        self.entities = entities
        self.counters = counters
        self.reservations = reservations
        self.uptimeSeconds = uptimeSeconds
    }
}

/// One row of `budgetctl usage`.
public struct UsageRow: Sendable, Codable, Hashable {
    public var consumer: String
    public var group: String?
    public var provider: String
    public var windowSize: Int
    public var used: Double
    public var inFlight: Double
    public var limit: Double
    public var remaining: Double
    /// Epoch second at which tokens next come back.
    public var reset: Int64
    public var strategy: String

    public init(
        consumer: String, group: String?, provider: String, windowSize: Int, used: Double, inFlight: Double,
        limit: Double, remaining: Double, reset: Int64, strategy: String
    ) {
        self.consumer = consumer
        self.group = group
        self.provider = provider
        self.windowSize = windowSize
        self.used = used
        self.inFlight = inFlight
        self.limit = limit
        self.remaining = remaining
        self.reset = reset
        self.strategy = strategy
    }
}

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

/// A complete config pushed to data planes on connect and on every change.
public struct ConfigSnapshot: Sendable, Hashable {
    public var version: UInt64
    public var state: ConfigState

    public init(version: UInt64, state: ConfigState) {
        self.version = version
        self.state = state
    }
}

/// JSON for the JSON frames. The small, once-per-connection messages (hello, welcome, error) use
/// Foundation's coders with sorted keys; the ones that carry entities by the hundred thousand are
/// `WireMessage`s, written and read by hand.
public enum WireJSON {
    /// The most a JSON frame may nest: entities go about eight levels deep inside a message.
    public static let maxDepth = 32

    public static func encode(_ message: some WireMessage) -> [UInt8] {
        JSONWriter(secrets: .revealed, pretty: false).compactBytes(message.wireFields)
    }

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

    public static func encode<T: Encodable>(_ value: T) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        // Encoding our own Codable types cannot fail; an empty object keeps the peer's decoder honest if it did.
        return (try? Array(encoder.encode(value))) ?? Array("{}".utf8)
    }

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
    var wireFields: FieldValue { get }
    init(wireJSON value: JSONValue) throws(JSONShapeError)
}

extension AppliedChange {
    var wireFields: FieldValue {
        .map([.init("action", .string(action.rawValue)), .init("entity", entity.wireFields)])
    }

    init(wireJSON value: JSONValue) throws(JSONShapeError) {
        var reader = try JSONObjectReader(value)
        let name = try reader.string("action")
        guard let action = Plan.Action(rawValue: name) else {
            throw JSONShapeError(at: "action", "\"\(name)\" is not creating, updating or deleting")
        }
        do {
            entity = try Entity(wireJSON: try reader.required("entity"))
        } catch {
            throw error.within("entity")
        }
        self.action = action
        try reader.finish()
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
        if let items = reader.value("changes") {
            guard case .array(let items) = items else { throw JSONShapeError(at: "changes", "must be a list") }
            var list: [AppliedChange] = []
            list.reserveCapacity(items.count)
            for (index, item) in items.enumerated() {
                do {
                    list.append(try AppliedChange(wireJSON: item))
                } catch {
                    throw error.within("[\(index)]").within("changes")
                }
            }
            changes = list
        }
        self.init(
            op: op, baseVersion: try reader.optionalUInt64("baseVersion"), changes: changes,
            consumer: try reader.optionalString("consumer"), group: try reader.optionalString("group"))
        try reader.finish()
    }
}

extension ServerStatus {
    var wireFields: FieldValue {
        .map([
            .init("server", .string(server)),
            .init("configVersion", .int(Int(clamping: configVersion))),
            .init("dataPlanes", .int(dataPlanes)),
            .init("storePath", .string(storePath)),
            .init("entities", .int(entities)),
            .init("counters", .int(counters)),
            .init("reservations", .int(reservations)),
            .init("uptimeSeconds", .int(uptimeSeconds)),
        ])
    }

    init(wireJSON reader: inout JSONObjectReader) throws(JSONShapeError) {
        self.init(
            server: try reader.string("server"), configVersion: try reader.uint64("configVersion"),
            dataPlanes: try reader.int("dataPlanes"), storePath: try reader.string("storePath"),
            entities: try reader.int("entities"), counters: try reader.int("counters"),
            reservations: try reader.int("reservations"), uptimeSeconds: try reader.int("uptimeSeconds"))
    }
}

extension UsageRow {
    var wireFields: FieldValue {
        .compactMap([
            .init("consumer", .string(consumer)),
            .init("group", .optional(group)),
            .init("provider", .string(provider)),
            .init("windowSize", .int(windowSize)),
            .init("used", .number(used)),
            .init("inFlight", .number(inFlight)),
            .init("limit", .number(limit)),
            .init("remaining", .number(remaining)),
            .init("reset", .int(Int(reset))),
            .init("strategy", .string(strategy)),
        ])
    }

    init(wireJSON reader: inout JSONObjectReader) throws(JSONShapeError) {
        self.init(
            consumer: try reader.string("consumer"), group: try reader.optionalString("group"),
            provider: try reader.string("provider"), windowSize: try reader.int("windowSize"),
            used: try reader.double("used"), inFlight: try reader.double("inFlight"), limit: try reader.double("limit"),
            remaining: try reader.double("remaining"), reset: Int64(try reader.int("reset")),
            strategy: try reader.string("strategy"))
    }
}

extension AdminResponse: WireMessage {
    public var wireFields: FieldValue {
        .compactMap([
            .init("server", .optional(server)),
            .init("configVersion", configVersion.map { .int(Int(clamping: $0)) } ?? .null),
            .init("state", state?.wireFields ?? .null),
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
                state = try ConfigState(wireJSON: value)
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

extension ConfigSnapshot: WireMessage {
    public var wireFields: FieldValue {
        .map([.init("version", .int(Int(clamping: version))), .init("state", state.wireFields)])
    }

    public init(wireJSON value: JSONValue) throws(JSONShapeError) {
        var reader = try JSONObjectReader(value)
        let version = try reader.uint64("version")
        let state: ConfigState
        do {
            state = try ConfigState(wireJSON: try reader.required("state"))
        } catch {
            throw error.within("state")
        }
        self.init(version: version, state: state)
        try reader.finish()
    }
}
