public import BudgetConfig

/// Which rate-limit plugin governs a request, and the windows and prices it implies, resolved from a
/// config state with Kong's plugin precedence. Shared by the data plane (per request) and the control
/// plane (for `budgetctl usage`).
public struct BudgetPolicy: Sendable {
    /// A resolved budget: the plugin, its config, and how to count.
    public struct Budget: Sendable, Hashable {
        public var plugin: Plugin
        public var config: AIRateLimitingAdvancedConfig
        /// The subject the counters belong to: `consumer:…`, `consumer-group:…` or `credential:…`.
        public var subject: String
        /// The provider entry that counts (the ai-proxy's provider).
        public var provider: AIRateLimitingAdvancedConfig.ProviderLimits

        /// One rule per window.
        public var rules: [WindowRule] {
            provider.windows.map { window in
                WindowRule(
                    key: LimitKey(
                        plugin: plugin.id.key, provider: provider.name, subject: subject,
                        windowSize: window.windowSize),
                    kind: config.windowType == .sliding ? .sliding : .fixed, limit: window.limit)
            }
        }

        /// The plugin's enforcement, as the ledger takes it.
        public var enforcement: Enforcement { config.enforcement == .hard ? .hard : .soft }

        /// Units of `promptTokens` and of one completion token under `tokens_count_strategy`.
        public func units(promptTokens: Int, pricing: AIProxyConfig.Options) -> (
            prompt: Double, perCompletionToken: Double
        ) {
            switch config.tokensCountStrategy {
            case .totalTokens: return (Double(promptTokens), 1)
            case .promptTokens: return (Double(promptTokens), 0)
            case .completionTokens: return (0, 1)
            case .cost:
                return (Double(promptTokens) * (pricing.inputCost ?? 0) / 1e6, (pricing.outputCost ?? 0) / 1e6)
            }
        }

        /// The charges for a finished call.
        public func charges(promptTokens: Int, completionTokens: Int, pricing: AIProxyConfig.Options) -> [Charge] {
            let price = units(promptTokens: promptTokens, pricing: pricing)
            let total = price.prompt + price.perCompletionToken * Double(completionTokens)
            return rules.map { Charge(key: $0.key, kind: $0.kind, units: total) }
        }
    }

    private let rateLimitPlugins: [Plugin]

    /// The enabled ai-rate-limiting-advanced plugins the policy chooses among, sorted by identity.
    package var plugins: [Plugin] { rateLimitPlugins }

    /// The policy of `state`'s enabled ai-rate-limiting-advanced plugins.
    public init(state: ConfigState) {
        rateLimitPlugins = state.plugins.filter { plugin in
            if case .aiRateLimitingAdvanced = plugin.config { return plugin.enabled }
            return false
        }
    }

    /// Kong's precedence among plugins of one name: the lower, the more specific.
    static func rank(_ scope: PluginScope) -> Int {
        switch (scope.consumer != nil, scope.consumerGroup != nil, scope.route != nil, scope.service != nil) {
        case (true, _, true, true): return 1
        case (false, true, true, true): return 2
        case (true, _, true, false): return 3
        case (true, _, false, true): return 4
        case (false, true, true, false): return 5
        case (false, true, false, true): return 6
        case (false, false, true, true): return 7
        case (true, _, false, false): return 8
        case (false, true, false, false): return 9
        case (false, false, true, false): return 10
        case (false, false, false, true): return 11
        case (false, false, false, false): return 12
        }
    }

    /// The budget for `consumer` (a member of `groups`, authenticated with `credential`) on `route`
    /// of `service`, for ai-proxy provider `provider`; nil when no enabled rate-limit plugin applies.
    public func budget(
        route: String, service: String?, consumer: String?, groups: [String], credential: KeyHash?,
        provider: String
    ) -> Budget? {
        let candidates = rateLimitPlugins.filter { plugin in
            let scope = plugin.scope
            if let wanted = scope.route, wanted != route { return false }
            if let wanted = scope.service, wanted != service { return false }
            if let wanted = scope.consumer, wanted != consumer { return false }
            if let wanted = scope.consumerGroup, !groups.contains(wanted) { return false }
            return true
        }
        guard let plugin = candidates.min(by: { (Self.rank($0.scope), $0.id) < (Self.rank($1.scope), $1.id) }),
            case .aiRateLimitingAdvanced(let config) = plugin.config,
            let entry = config.llmProviders.first(where: { $0.name == provider })
        else { return nil }
        let subject: String
        switch config.identifier {
        case .consumer: subject = "consumer:" + (consumer ?? credential.map { "credential:\($0.hex)" } ?? "anonymous")
        case .consumerGroup:
            subject = "consumer-group:" + (plugin.scope.consumerGroup ?? groups.sorted().first ?? "none")
        case .credential: subject = "credential:" + (credential?.hex ?? consumer ?? "anonymous")
        }
        return Budget(plugin: plugin, config: config, subject: subject, provider: entry)
    }
}
