public import BudgetConfig
public import BudgetLedger

/// One config snapshot compiled for the hot path: routes by longest prefix, keys by hash, consumers'
/// groups, and each route's plugins resolved with Kong's precedence. Immutable; a new snapshot builds
/// new tables, a delta derives new tables from these (`applying`), and either replaces the old ones in one step.
public final class ProxyTables: Sendable {
    public let version: UInt64

    /// A route with what serves it. A class, immutable: every request passes its route through several stages,
    /// and a copy of the structs inside (a route's, a service's and the plugins' strings and arrays) retained
    /// each of their references.
    public final class CompiledRoute: Sendable, Equatable {
        public let route: Route
        public let service: Service?
        public let keyAuth: KeyAuthConfig?
        public let aiProxy: CompiledAIProxy?
        /// Where the ai-proxy sends requests, resolved once per snapshot (nil without an ai-proxy or a
        /// model name); a setup error (no region, no credentials) is answered to each request as it was.
        let upstream: Result<BedrockTarget, UpstreamSetupError>?

        init(
            route: Route, service: Service?, keyAuth: KeyAuthConfig?, aiProxy: CompiledAIProxy?,
            upstream: Result<BedrockTarget, UpstreamSetupError>?
        ) {
            self.route = route
            self.service = service
            self.keyAuth = keyAuth
            self.aiProxy = aiProxy
            self.upstream = upstream
        }

        public static func == (left: CompiledRoute, right: CompiledRoute) -> Bool {
            left === right
                || (left.route == right.route && left.service == right.service && left.keyAuth == right.keyAuth
                    && left.aiProxy?.config == right.aiProxy?.config && left.upstream == right.upstream)
        }
    }

    /// A route's ai-proxy plugin config, shared by reference: every stage of a request reads it, and a copy of
    /// the struct retained each of its strings.
    public final class CompiledAIProxy: Sendable {
        public let config: AIProxyConfig

        init(_ config: AIProxyConfig) { self.config = config }
    }

    /// Who a key belongs to.
    public struct KeyOwner: Sendable, Hashable {
        public var consumer: String
        public var credential: KeyHash
    }

    private let prefixes: [(prefix: String, route: CompiledRoute)]
    private let keys: [KeyHash: KeyOwner]
    private let groups: [String: [String]]
    public let policy: BudgetPolicy

    /// Compiles `state`; `environment` supplies the AWS settings the plugins leave out.
    public init(version: UInt64, state: ConfigState, environment: [String: String] = [:]) {
        self.version = version
        prefixes = Self.compileRoutes(state, environment: environment)
        keys = Dictionary(
            state.keyAuthCredentials.map { ($0.keyHash, KeyOwner(consumer: $0.consumer, credential: $0.keyHash)) }
        ) { first, _ in first }
        groups = Dictionary(grouping: state.memberships, by: \.consumer).mapValues { $0.map(\.group).sorted() }
        policy = BudgetPolicy(state: state)
    }

    private init(
        version: UInt64, prefixes: [(prefix: String, route: CompiledRoute)], keys: [KeyHash: KeyOwner],
        groups: [String: [String]], policy: BudgetPolicy
    ) {
        self.version = version
        self.prefixes = prefixes
        self.keys = keys
        self.groups = groups
        self.policy = policy
    }

    /// Whether a change to an entity of `kind` leaves the routes and the policy as they are: consumers,
    /// key-auth credentials and group memberships (the kinds there are many of) only touch the key and group
    /// maps, which `applying` updates in place; any other kind is compiled again from the few entities there are
    /// of those kinds.
    public static func isPerConsumer(_ kind: EntityKind) -> Bool {
        switch kind {
        case .consumer, .keyAuth, .consumerGroupConsumer: return true
        case .service, .route, .consumerGroup, .plugin: return false
        }
    }

    /// The tables at `version` after `changes` (a `ConfigDelta`'s, applied in order to the state these tables
    /// were compiled from): the key and group maps are updated change by change; the routes and the policy are
    /// compiled again from `routing` when it is given (it must then hold the resulting state's services,
    /// routes, consumer groups and plugins; per-consumer kinds are not read), else kept. The result equals
    /// `ProxyTables(version:state:environment:)` of the resulting state. These tables are not modified.
    public func applying(
        _ changes: [AppliedChange], version: UInt64, routing: ConfigState?, environment: [String: String] = [:]
    ) -> ProxyTables {
        var keys = self.keys
        var groups = self.groups
        for change in changes {
            switch change.entity {
            case .keyAuth(let credential):
                if change.action == .delete {
                    keys.removeValue(forKey: credential.keyHash)
                } else {
                    keys[credential.keyHash] = KeyOwner(consumer: credential.consumer, credential: credential.keyHash)
                }
            case .consumerGroupConsumer(let membership):
                var list = groups[membership.consumer] ?? []
                if change.action == .delete {
                    list.removeAll { $0 == membership.group }
                } else if !list.contains(membership.group) {
                    list.append(membership.group)
                    list.sort()
                }
                groups[membership.consumer] = list.isEmpty ? nil : list
            case .consumer, .service, .route, .consumerGroup, .plugin:
                break
            }
        }
        guard let routing else {
            return ProxyTables(version: version, prefixes: prefixes, keys: keys, groups: groups, policy: policy)
        }
        return ProxyTables(
            version: version, prefixes: Self.compileRoutes(routing, environment: environment), keys: keys,
            groups: groups, policy: BudgetPolicy(state: routing))
    }

    /// Every route's path prefixes with what serves it, longest prefix first.
    private static func compileRoutes(_ state: ConfigState, environment: [String: String]) -> [(
        prefix: String, route: CompiledRoute
    )] {
        let plugins = state.plugins
        let services = Dictionary(uniqueKeysWithValues: state.services.map { ($0.name, $0) })
        var prefixes: [(String, CompiledRoute)] = []
        var targets: [AIProxyConfigView: Result<BedrockTarget, UpstreamSetupError>] = [:]
        for route in state.routes {
            let service = route.service.flatMap { services[$0] }
            if service?.enabled == false { continue }
            let aiProxy = PluginPrecedence.forRoute(route, plugins: plugins) {
                if case .aiProxy(let config) = $0 { config } else { nil }
            }
            var upstream: Result<BedrockTarget, UpstreamSetupError>?
            if let aiProxy, let view = AIProxyConfigView(aiProxy) {
                if targets[view] == nil { targets[view] = BedrockTarget.resolve(view, environment: environment) }
                upstream = targets[view]
            }
            let compiled = CompiledRoute(
                route: route, service: service,
                keyAuth: PluginPrecedence.forRoute(route, plugins: plugins) {
                    if case .keyAuth(let config) = $0 { config } else { nil }
                },
                aiProxy: aiProxy.map(CompiledAIProxy.init), upstream: upstream)
            for prefix in route.paths { prefixes.append((prefix, compiled)) }
        }
        return prefixes.sorted { $0.0.utf8.count > $1.0.utf8.count }
    }

    /// The route for `method` and `path` (without query): the longest matching prefix, as Kong matches.
    public func route(method: String, path: String) -> CompiledRoute? {
        for (prefix, compiled) in prefixes where path.hasPrefix(prefix) {
            if compiled.route.methods.isEmpty || compiled.route.methods.contains(method) { return compiled }
        }
        return nil
    }

    /// The owner of a key, looked up by the key's SHA-256 so that no key comparison depends on its bytes.
    public func owner(of key: String) -> KeyOwner? { keys[KeyHash(key: key)] }

    /// The consumer groups `consumer` belongs to, sorted by name.
    public func groups(of consumer: String) -> [String] { groups[consumer] ?? [] }

    /// Whether `other` holds the same tables (routes, keys, groups and policy), version aside: for tests that
    /// compare tables derived by `applying` with tables compiled from the whole state.
    package func hasSameContents(as other: ProxyTables) -> Bool {
        prefixes.map { $0.prefix } == other.prefixes.map { $0.prefix }
            && prefixes.map { $0.route } == other.prefixes.map { $0.route }
            && keys == other.keys && groups == other.groups && policy.plugins == other.policy.plugins
    }
}
