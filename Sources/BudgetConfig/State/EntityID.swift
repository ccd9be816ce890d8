/// The kinds of entity in the config, in decK's words, ordered by the dependency level at which
/// decK creates them (deletes run in reverse).
public enum EntityKind: String, Sendable, Hashable, CaseIterable, Comparable, Codable {
    case consumer
    case consumerGroup = "consumer-group"
    case service
    case keyAuth = "key-auth"
    case route
    case consumerGroupConsumer = "consumer-group-consumer"
    case plugin

    /// decK's dependency level (go-database-reconciler `pkg/diff/order.go`).
    public var level: Int {
        switch self {
        case .consumer: return 1
        case .consumerGroup, .service, .keyAuth: return 2
        case .route, .consumerGroupConsumer: return 3
        case .plugin: return 4
        }
    }

    /// The order of `allCases`, the order in which output lists kinds.
    private var rank: Int {
        switch self {
        case .consumer: return 0
        case .consumerGroup: return 1
        case .service: return 2
        case .keyAuth: return 3
        case .route: return 4
        case .consumerGroupConsumer: return 5
        case .plugin: return 6
        }
    }

    public static func < (lhs: EntityKind, rhs: EntityKind) -> Bool { lhs.rank < rhs.rank }
}

/// The stable identity of an entity: its kind and natural key (a name, a key hash, a scope).
/// Two states are compared entity by entity through it.
public struct EntityID: Sendable, Hashable, Comparable, CustomStringConvertible, Codable {
    public var kind: EntityKind
    /// The natural key, unique within the kind.
    public var key: String

    public init(_ kind: EntityKind, _ key: String) {
        self.kind = kind
        self.key = key
    }

    public var description: String { "\(kind.rawValue) \(key)" }

    public static func < (lhs: EntityID, rhs: EntityID) -> Bool { (lhs.kind, lhs.key) < (rhs.kind, rhs.key) }
}

extension Service {
    /// Identified by name.
    public var id: EntityID { EntityID(.service, name) }
}

extension Route {
    /// Identified by name.
    public var id: EntityID { EntityID(.route, name) }
}

extension Consumer {
    /// Identified by username, else custom_id.
    public var id: EntityID { EntityID(.consumer, name) }
}

extension ConsumerGroup {
    /// Identified by name.
    public var id: EntityID { EntityID(.consumerGroup, name) }
}

extension KeyAuthCredential {
    /// Identified by the key's hash.
    public var id: EntityID { EntityID(.keyAuth, keyHash.hex) }
}

extension ConsumerGroupMembership {
    /// Identified as `<consumer> in <group>`.
    public var id: EntityID { EntityID(.consumerGroupConsumer, consumer + " in " + group) }
}

extension Plugin {
    /// Identified by name, instance name and scope.
    public var id: EntityID {
        var key = name
        if let instanceName { key += " (\(instanceName))" }
        return EntityID(.plugin, key + " " + scope.phrase)
    }
}
