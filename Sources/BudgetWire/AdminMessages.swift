public import BudgetConfig
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
public struct AppliedChange: Sendable, Codable, Hashable {
    public var action: Plan.Action
    public var entity: Entity

    public init(action: Plan.Action, entity: Entity) {
        self.action = action
        self.entity = entity
    }
}

public struct AdminRequest: Sendable, Codable, Hashable {
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

public struct AdminResponse: Sendable, Codable, Hashable {
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
public struct ConfigSnapshot: Sendable, Codable, Hashable {
    public var version: UInt64
    public var state: ConfigState

    public init(version: UInt64, state: ConfigState) {
        self.version = version
        self.state = state
    }
}

/// JSON for the JSON frames: Foundation's coders, sorted keys so output is stable.
public enum WireJSON {
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
