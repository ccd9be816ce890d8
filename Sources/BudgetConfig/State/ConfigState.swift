/// The normalized config: every entity once, by identity, with references by name.
///
/// This is what a file reads into, what the control plane stores, and what plans compare.
/// It has no order of its own; every rendering sorts by `EntityID`, so output is deterministic.
public struct ConfigState: Sendable, Hashable {
    /// Every entity, by identity.
    public private(set) var entities: [EntityID: Entity] = [:]

    public init() {}

    /// A state of `entities`; of two with one identity, the last wins.
    public init(_ entities: some Sequence<Entity>) {
        for entity in entities { self.entities[entity.id] = entity }
    }

    public subscript(id: EntityID) -> Entity? { entities[id] }

    public var count: Int { entities.count }

    /// Room for `count` entities in all, so that adding them does not regrow the table.
    public mutating func reserveCapacity(_ count: Int) { entities.reserveCapacity(count) }
    public var isEmpty: Bool { entities.isEmpty }

    /// Adds `entity`; false when one with the same identity is already there (and nothing changes).
    @discardableResult
    public mutating func insert(_ entity: Entity) -> Bool { insert(entity, id: entity.id) }

    /// `insert(_:)` for a caller that has the identity already (a key-auth credential's is built as a string).
    @discardableResult
    public mutating func insert(_ entity: Entity, id: EntityID) -> Bool {
        // One probe of the table when the identity is new (the usual case), two when it is not.
        guard let existing = entities.updateValue(entity, forKey: id) else { return true }
        entities[id] = existing
        return false
    }

    /// Adds or replaces the entity with `entity`'s identity.
    public mutating func upsert(_ entity: Entity) { entities[entity.id] = entity }

    /// Removes and returns the entity `id`, if there is one.
    @discardableResult
    public mutating func remove(_ id: EntityID) -> Entity? { entities.removeValue(forKey: id) }

    /// All entities, sorted by kind then key.
    public var sortedEntities: [Entity] { entities.keys.sorted().compactMap { entities[$0] } }

    /// The entities of one kind, sorted by key; only those are sorted, not the whole state. Positions are
    /// sorted rather than the values, which are larger than an `Int`.
    public func entities(of kind: EntityKind) -> [Entity] {
        var keys: [String] = []
        var values: [Entity] = []
        for (id, entity) in entities where id.kind == kind {
            keys.append(id.key)
            values.append(entity)
        }
        return keys.indices.sorted { keys[$0] < keys[$1] }.map { values[$0] }
    }

    /// The services, sorted by name; likewise the other kinds below.
    public var services: [Service] {
        entities(of: .service).compactMap { if case .service(let value) = $0 { value } else { nil } }
    }
    public var routes: [Route] {
        entities(of: .route).compactMap { if case .route(let value) = $0 { value } else { nil } }
    }
    public var consumers: [Consumer] {
        entities(of: .consumer).compactMap { if case .consumer(let value) = $0 { value } else { nil } }
    }
    public var consumerGroups: [ConsumerGroup] {
        entities(of: .consumerGroup).compactMap { if case .consumerGroup(let value) = $0 { value } else { nil } }
    }
    public var keyAuthCredentials: [KeyAuthCredential] {
        entities(of: .keyAuth).compactMap { if case .keyAuth(let value) = $0 { value } else { nil } }
    }
    public var memberships: [ConsumerGroupMembership] {
        entities(of: .consumerGroupConsumer).compactMap {
            if case .consumerGroupConsumer(let value) = $0 { value } else { nil }
        }
    }
    public var plugins: [Plugin] {
        entities(of: .plugin).compactMap { if case .plugin(let value) = $0 { value } else { nil } }
    }

    /// The fleet's Redis: the `redis` block of the `strategy: redis` plugins (validation makes them all name the
    /// same one), first plugin by identity; nil when no plugin uses Redis.
    public var fleetRedis: AIRateLimitingAdvancedConfig.RedisSettings? {
        plugins.sorted { $0.id < $1.id }.lazy.compactMap { plugin -> AIRateLimitingAdvancedConfig.RedisSettings? in
            guard case .aiRateLimitingAdvanced(let config) = plugin.config, config.strategy == .redis else {
                return nil
            }
            return config.redis
        }.first
    }

    /// The plugins whose counters live in the fleet's Redis (`AIRateLimitingAdvancedConfig.countsInRedis`), by
    /// identity key.
    public var redisCountedPlugins: Set<String> {
        Set(
            plugins.compactMap { plugin in
                guard case .aiRateLimitingAdvanced(let config) = plugin.config, config.countsInRedis else { return nil }
                return plugin.id.key
            })
    }

    /// Whether `entity` is inside the scope of `selectTags`: it carries all of them (decK ANDs select
    /// tags). A group membership follows its consumer. No select tags means everything is in scope.
    public func isInScope(_ entity: Entity, selectTags: [String]) -> Bool {
        guard !selectTags.isEmpty else { return true }
        if case .consumerGroupConsumer(let membership) = entity {
            guard let consumer = entities[EntityID(.consumer, membership.consumer)] else { return true }
            return isInScope(consumer, selectTags: selectTags)
        }
        let tags = entity.tags
        return selectTags.allSatisfy(tags.contains)
    }

    /// The entities in the scope of `selectTags`.
    public func scoped(to selectTags: [String]) -> ConfigState {
        ConfigState(entities.values.filter { isInScope($0, selectTags: selectTags) })
    }
}

extension ConfigState: Codable {
    /// Encoded as the list of entities in identity order.
    public init(from decoder: any Decoder) throws {
        self.init(try decoder.singleValueContainer().decode([Entity].self))
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(sortedEntities)
    }
}
