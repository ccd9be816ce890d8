public import BudgetConfig
public import BudgetLedger

/// One config snapshot compiled for the hot path: routes by longest prefix, keys by hash, consumers'
/// groups, and each route's plugins resolved with Kong's precedence. Immutable; a new snapshot builds
/// new tables, which replace the old ones in one step.
public final class ProxyTables: Sendable {
    public let version: UInt64

    /// A route with what serves it.
    public struct CompiledRoute: Sendable {
        public var route: Route
        public var service: Service?
        public var keyAuth: KeyAuthConfig?
        public var aiProxy: AIProxyConfig?
        /// Where the ai-proxy sends requests, resolved once per snapshot (nil without an ai-proxy or a
        /// model name); a setup error (no region, no credentials) is answered to each request as it was.
        var upstream: Result<BedrockTarget, UpstreamSetupError>?
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
                aiProxy: aiProxy, upstream: upstream)
            for prefix in route.paths { prefixes.append((prefix, compiled)) }
        }
        self.prefixes = prefixes.sorted { $0.0.utf8.count > $1.0.utf8.count }
        keys = Dictionary(
            state.keyAuthCredentials.map { ($0.keyHash, KeyOwner(consumer: $0.consumer, credential: $0.keyHash)) }
        ) { first, _ in first }
        groups = Dictionary(grouping: state.memberships, by: \.consumer).mapValues { $0.map(\.group).sorted() }
        policy = BudgetPolicy(state: state)
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
}
