/// Any entity of the config, for code that treats them alike: plans, scoping, rendering.
///
/// The kinds that are few but large (services, routes, plugins) are boxed, so that a value is as small as
/// the kinds there are many of (consumers, credentials, memberships).
public enum Entity: Sendable, Hashable, Codable {
    indirect case service(Service)
    indirect case route(Route)
    case consumer(Consumer)
    case consumerGroup(ConsumerGroup)
    case keyAuth(KeyAuthCredential)
    case consumerGroupConsumer(ConsumerGroupMembership)
    indirect case plugin(Plugin)

    /// The entity's identity: its kind and key.
    public var id: EntityID {
        switch self {
        case .service(let entity): return entity.id
        case .route(let entity): return entity.id
        case .consumer(let entity): return entity.id
        case .consumerGroup(let entity): return entity.id
        case .keyAuth(let entity): return entity.id
        case .consumerGroupConsumer(let entity): return entity.id
        case .plugin(let entity): return entity.id
        }
    }

    /// The entity in the words of a "defined more than once" error: `consumer "alice"`, `plugin key-auth on
    /// route "chat"`.
    var definitionPhrase: String {
        switch self {
        case .service(let entity): return "service \"\(entity.name)\""
        case .route(let entity): return "route \"\(entity.name)\""
        case .consumer(let entity): return "consumer \"\(entity.name)\""
        case .consumerGroup(let entity): return "consumer group \"\(entity.name)\""
        case .keyAuth(let entity):
            return "key-auth credential \(entity.displayName) (keys must be unique across consumers)"
        case .consumerGroupConsumer(let entity): return "membership of \(entity.consumer) in \(entity.group)"
        case .plugin(let entity): return "plugin \(entity.name) \(entity.scope.phrase)"
        }
    }

    /// The entity's own tags; a group membership has none (it follows its consumer's scope).
    public var tags: [String] {
        switch self {
        case .service(let entity): return entity.tags
        case .route(let entity): return entity.tags
        case .consumer(let entity): return entity.tags
        case .consumerGroup(let entity): return entity.tags
        case .keyAuth(let entity): return entity.tags
        case .consumerGroupConsumer: return []
        case .plugin(let entity): return entity.tags
        }
    }

    /// How decK names the entity after its kind: `signify-dev-team`, `m-key for consumer signify-dev-team`,
    /// `ai-proxy for route signify-ai-budget`. Never shows a secret: keys appear as their last five
    /// characters or as a hash label.
    public var displayName: String {
        switch self {
        case .service(let entity): return entity.name
        case .route(let entity): return entity.name
        case .consumer(let entity): return entity.name
        case .consumerGroup(let entity): return entity.name
        case .keyAuth(let entity): return "\(entity.displayName) for consumer \(entity.consumer)"
        case .consumerGroupConsumer(let entity): return "\(entity.consumer) for consumer-group \(entity.group)"
        case .plugin(let entity):
            let instance = entity.instanceName.map { " (\($0))" } ?? ""
            return "\(entity.name)\(instance) \(entity.scope.phrase)"
        }
    }

    /// `kind name`, as plan lines print it.
    public var kindAndName: String { "\(id.kind.rawValue) \(displayName)" }

    /// A copy with `tags` replaced (memberships have none and are returned unchanged).
    public func withTags(_ tags: [String]) -> Entity {
        let normalized = normalizeTags(tags)
        switch self {
        case .service(var entity): entity.tags = normalized; return .service(entity)
        case .route(var entity): entity.tags = normalized; return .route(entity)
        case .consumer(var entity): entity.tags = normalized; return .consumer(entity)
        case .consumerGroup(var entity): entity.tags = normalized; return .consumerGroup(entity)
        case .keyAuth(var entity): entity.tags = normalized; return .keyAuth(entity)
        case .consumerGroupConsumer: return self
        case .plugin(var entity): entity.tags = normalized; return .plugin(entity)
        }
    }
}

/// Tags as the state keeps them: unique and sorted, so that order in a file never makes a diff.
public func normalizeTags(_ tags: [String]) -> [String] {
    // Most entities carry no tag or the select tag alone, and a decoded list is often in order already: those
    // are returned as they are, without a set and a sort for each of 100,000 consumers.
    if tags.count < 2 { return tags }
    if zip(tags, tags.dropFirst()).allSatisfy({ $0 < $1 }) { return tags }
    return Array(Set(tags)).sorted()
}
