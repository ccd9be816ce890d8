/// A problem with a whole state rather than one field: a dangling reference, a rule that ties two
/// entities together. Located through the entity (and optionally a field path under it).
public struct StateIssue: Sendable, Hashable, CustomStringConvertible {
    /// An error makes the state unusable; a warning does not.
    public var severity: Diagnostic.Severity
    public var entity: EntityID
    /// A field path relative to the entity, such as `consumer_group` or `config.llm_providers[0].name`.
    public var field: String?
    public var message: String

    public var description: String {
        "\(severity == .warning ? "warning: " : "")\(entity): \(field.map { "\($0): " } ?? "")\(message)"
    }
}

/// The cross-entity rules of a config. Used on every file that is read, and on the state that a
/// plan would produce, so that a sync can never leave a reference dangling.
public enum StateValidator {
    /// The problems of `state`, sorted by entity (kind, then key), so the order never depends on hashing.
    ///
    /// One pass over the entities in no order, then a sort of the (few) issues: a large state
    /// is checked without sorting it.
    public static func issues(in state: ConfigState) -> [StateIssue] {
        var issues: [StateIssue] = []
        func error(_ id: EntityID, _ field: String?, _ message: String) {
            issues.append(StateIssue(severity: .error, entity: id, field: field, message: message))
        }
        func warning(_ id: EntityID, _ field: String?, _ message: String) {
            issues.append(StateIssue(severity: .warning, entity: id, field: field, message: message))
        }
        func exists(_ kind: EntityKind, _ name: String) -> Bool { state[EntityID(kind, name)] != nil }

        var customIDs: [String: [EntityID]] = [:]
        var routes: [Route] = []
        var plugins: [Plugin] = []
        for entity in state.entities.values {
            switch entity {
            case .consumer(let consumer):
                if let customID = consumer.customID { customIDs[customID, default: []].append(consumer.id) }
            case .route(let route):
                routes.append(route)
                if let service = route.service, !exists(.service, service) {
                    error(route.id, "service", "service \"\(service)\" is not defined")
                }
            case .keyAuth(let credential):
                if !exists(.consumer, credential.consumer) {
                    error(credential.id, "consumer", "consumer \"\(credential.consumer)\" is not defined")
                }
            case .consumerGroupConsumer(let membership):
                if !exists(.consumerGroup, membership.group) {
                    error(membership.id, "name", "consumer group \"\(membership.group)\" is not defined")
                }
                if !exists(.consumer, membership.consumer) {
                    error(membership.id, "username", "consumer \"\(membership.consumer)\" is not defined")
                }
            case .plugin(let plugin):
                plugins.append(plugin)
            case .service, .consumerGroup:
                break
            }
        }
        // A custom_id held by several consumers: the first by key keeps it, each later one is reported.
        for (customID, holders) in customIDs where holders.count > 1 {
            let sorted = holders.sorted()
            for holder in sorted.dropFirst() {
                error(holder, "custom_id", "custom_id \"\(customID)\" is already used by \(sorted[0])")
            }
        }
        routes.sort { $0.name < $1.name }
        plugins.sort { $0.id < $1.id }
        // One fleet, one Redis: its counters, holds and config live there.
        var fleetRedis: (id: EntityID, redis: AIRateLimitingAdvancedConfig.RedisSettings)?
        for plugin in plugins {
            guard case .aiRateLimitingAdvanced(let config) = plugin.config, config.strategy == .redis,
                let redis = config.redis
            else { continue }
            if let first = fleetRedis {
                if first.redis != redis {
                    error(
                        plugin.id, "config.redis",
                        "its redis block differs from that of \(first.id): every strategy \"redis\" plugin must name "
                            + "the same Redis, which holds the fleet's counters and config")
                }
            } else {
                fleetRedis = (plugin.id, redis)
            }
        }
        var instanceNames: [String: EntityID] = [:]
        for plugin in plugins {
            let scope = plugin.scope
            if let service = scope.service, !exists(.service, service) {
                error(plugin.id, "service", "service \"\(service)\" is not defined")
            }
            if let route = scope.route, !exists(.route, route) {
                error(plugin.id, "route", "route \"\(route)\" is not defined")
            }
            if let consumer = scope.consumer, !exists(.consumer, consumer) {
                error(plugin.id, "consumer", "consumer \"\(consumer)\" is not defined")
            }
            if let group = scope.consumerGroup, !exists(.consumerGroup, group) {
                error(plugin.id, "consumer_group", "consumer group \"\(group)\" is not defined")
            }
            if let instanceName = plugin.instanceName {
                if let other = instanceNames[instanceName] {
                    error(plugin.id, "instance_name", "instance_name \"\(instanceName)\" is already used by \(other)")
                } else {
                    instanceNames[instanceName] = plugin.id
                }
            }
            switch plugin.config {
            case .keyAuth:
                if scope.consumer != nil || scope.consumerGroup != nil {
                    error(
                        plugin.id, scope.consumer != nil ? "consumer" : "consumer_group",
                        "key-auth identifies the consumer, so it cannot be scoped to a consumer or consumer group; "
                            + "attach it to a route, a service or globally")
                }
            case .aiProxy:
                if scope.consumer != nil || scope.consumerGroup != nil {
                    error(
                        plugin.id, scope.consumer != nil ? "consumer" : "consumer_group",
                        "ai-proxy is attached per route, service or globally in this gateway, "
                            + "not to a consumer or consumer group")
                }
            case .aiRateLimitingAdvanced(let config):
                checkRateLimiting(plugin, config, routes: routes, plugins: plugins, error: error, warning: warning)
            }
        }
        // Stable: the issues of one entity keep the order in which they were found.
        return issues.enumerated().sorted { ($0.element.entity, $0.offset) < ($1.element.entity, $1.offset) }
            .map(\.element)
    }

    /// The routes a plugin with `scope` applies to, as far as routes and services decide it.
    public static func routesGoverned(by scope: PluginScope, in state: ConfigState) -> [Route] {
        routesGoverned(by: scope, among: state.routes)
    }

    static func routesGoverned(by scope: PluginScope, among routes: [Route]) -> [Route] {
        routes.filter { route in
            (scope.route == nil || scope.route == route.name)
                && (scope.service == nil || scope.service == route.service)
        }
    }

    /// The enabled ai-proxy that serves `route`, by Kong's precedence: route, then service, then global.
    public static func aiProxy(for route: Route, plugins: [Plugin]) -> AIProxyConfig? {
        PluginPrecedence.forRoute(route, plugins: plugins) { if case .aiProxy(let config) = $0 { config } else { nil } }
    }

    private static func checkRateLimiting(
        _ plugin: Plugin, _ config: AIRateLimitingAdvancedConfig, routes: [Route], plugins: [Plugin],
        error: (EntityID, String?, String) -> Void, warning: (EntityID, String?, String) -> Void
    ) {
        if config.identifier == .consumerGroup && plugin.scope.consumerGroup == nil {
            error(
                plugin.id, "config.identifier",
                "identifier \"consumer-group\" shares one counter among a group's members, so the plugin must be "
                    + "scoped to a consumer group (set consumer_group, or nest it under consumer_groups[].plugins)")
        }
        let aiRoutes = routesGoverned(by: plugin.scope, among: routes).compactMap { route in
            aiProxy(for: route, plugins: plugins).map { (route: route, proxy: $0) }
        }
        guard !aiRoutes.isEmpty else {
            warning(plugin.id, nil, "this plugin governs no route with an ai-proxy plugin, so it will count nothing")
            return
        }
        let providers = Set(aiRoutes.map(\.proxy.model.provider))
        for (index, provider) in config.llmProviders.enumerated() where !providers.contains(provider.name) {
            let used = aiRoutes.map { "route \($0.route.name) uses \"\($0.proxy.model.provider)\"" }
            error(
                plugin.id, "config.llm_providers[\(index)].name",
                "provider \"\(provider.name)\" matches no ai-proxy model.provider on the routes this plugin governs "
                    + "(\(used.joined(separator: ", "))), so it would never count tokens")
        }
        if config.tokensCountStrategy == .cost {
            for (route, proxy) in aiRoutes
            where proxy.model.options.inputCost == nil || proxy.model.options.outputCost == nil {
                error(
                    plugin.id, "config.tokens_count_strategy",
                    "tokens_count_strategy \"cost\" needs model.options.input_cost and output_cost on the "
                        + "ai-proxy of route \(route.name)")
            }
        }
    }
}
