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
        /// One rule per window, made once: admission and charging both need them.
        public let rules: [WindowRule]

        /// The budget of `plugin` (whose identity's key, worked out once per config, is `pluginKey`) for
        /// `subject`'s counters of `provider`.
        init(
            plugin: Plugin, pluginKey: String, config: AIRateLimitingAdvancedConfig, subject: String,
            provider: AIRateLimitingAdvancedConfig.ProviderLimits
        ) {
            self.plugin = plugin
            self.config = config
            self.subject = subject
            self.provider = provider
            let kind: WindowKind = config.windowType == .sliding ? .sliding : .fixed
            rules = provider.windows.map { window in
                WindowRule(
                    key: LimitKey(
                        plugin: pluginKey, provider: provider.name, subject: subject, windowSize: window.windowSize),
                    kind: kind, limit: window.limit)
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

    /// An enabled ai-rate-limiting-advanced plugin with what choosing it takes, worked out once per config
    /// rather than once per request: its identity (the counters' key) and its precedence.
    private struct Candidate: Sendable {
        var plugin: Plugin
        var id: EntityID
        var rank: Int
        var config: AIRateLimitingAdvancedConfig
    }

    private let candidates: [Candidate]

    /// The enabled ai-rate-limiting-advanced plugins the policy chooses among, sorted by identity.
    package var plugins: [Plugin] { candidates.map(\.plugin) }

    /// The policy of `state`'s enabled ai-rate-limiting-advanced plugins.
    public init(state: ConfigState) {
        candidates = state.plugins.compactMap { plugin in
            guard plugin.enabled, case .aiRateLimitingAdvanced(let config) = plugin.config else { return nil }
            return Candidate(plugin: plugin, id: plugin.id, rank: Self.rank(plugin.scope), config: config)
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
        var chosen: Candidate?
        for candidate in candidates {
            let scope = candidate.plugin.scope
            if let wanted = scope.route, wanted != route { continue }
            if let wanted = scope.service, wanted != service { continue }
            if let wanted = scope.consumer, wanted != consumer { continue }
            if let wanted = scope.consumerGroup, !groups.contains(wanted) { continue }
            if let best = chosen, (best.rank, best.id) <= (candidate.rank, candidate.id) { continue }
            chosen = candidate
        }
        guard let chosen, let entry = chosen.config.llmProviders.first(where: { $0.name == provider }) else {
            return nil
        }
        let (plugin, config) = (chosen.plugin, chosen.config)
        let subject: String
        switch config.identifier {
        case .consumer: subject = "consumer:" + (consumer ?? credential.map { "credential:\($0.hex)" } ?? "anonymous")
        case .consumerGroup:
            subject = "consumer-group:" + (plugin.scope.consumerGroup ?? groups.sorted().first ?? "none")
        case .credential: subject = "credential:" + (credential?.hex ?? consumer ?? "anonymous")
        }
        return Budget(plugin: plugin, pluginKey: chosen.id.key, config: config, subject: subject, provider: entry)
    }
}
