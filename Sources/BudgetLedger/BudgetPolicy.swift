public import BudgetConfig
import Synchronization

/// Which rate-limit plugin governs a request, and the windows and prices it implies, resolved from a
/// config state with Kong's plugin precedence. Shared by the data plane (per request) and the control
/// plane (for `budgetctl usage`).
public struct BudgetPolicy: Sendable {
    /// A resolved budget: the plugin, its config, and how to count. A class, immutable: the proxy carries a
    /// request's budget from admission to charging, and copies of the plugin's and its config's strings cost
    /// a retain each.
    public final class Budget: Sendable, Hashable {
        public let plugin: Plugin
        public let config: AIRateLimitingAdvancedConfig
        /// The subject the counters belong to: `consumer:…`, `consumer-group:…` or `credential:…`.
        public let subject: String
        /// The provider entry that counts (the ai-proxy's provider).
        public let provider: AIRateLimitingAdvancedConfig.ProviderLimits
        /// One rule per window, made once: admission and charging both need them.
        public let rules: [WindowRule]

        public static func == (left: Budget, right: Budget) -> Bool {
            left === right
                || (left.plugin == right.plugin && left.config == right.config && left.subject == right.subject
                    && left.provider == right.provider && left.rules == right.rules)
        }

        public func hash(into hasher: inout Hasher) {
            hasher.combine(plugin.id)
            hasher.combine(subject)
            hasher.combine(provider.name)
        }

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
    /// A class, so that choosing among candidates per request retains one reference, not a plugin's strings.
    private final class Candidate: Sendable {
        let plugin: Plugin
        let id: EntityID
        let rank: Int
        let config: AIRateLimitingAdvancedConfig

        /// The budgets made of this plugin, by subject and provider: the same consumers and groups come back
        /// request after request, and a budget (its rules, their keys) is immutable. Bounded: cleared when
        /// `budgetCacheCapacity` are held.
        private let made = Mutex<[BudgetKey: Budget]>([:])

        private struct BudgetKey: Hashable {
            var subject: String
            var provider: String
        }

        init(plugin: Plugin, id: EntityID, rank: Int, config: AIRateLimitingAdvancedConfig) {
            self.plugin = plugin
            self.id = id
            self.rank = rank
            self.config = config
        }

        func budget(subject: String, provider: AIRateLimitingAdvancedConfig.ProviderLimits) -> Budget {
            let key = BudgetKey(subject: subject, provider: provider.name)
            if let known = made.withLock({ $0[key] }) { return known }
            let budget = Budget(plugin: plugin, pluginKey: id.key, config: config, subject: subject, provider: provider)
            made.withLock { made in
                if made.count >= BudgetPolicy.budgetCacheCapacity { made.removeAll() }
                made[key] = budget
            }
            return budget
        }
    }

    /// How many budgets a plugin keeps made (per config: a new config makes a new policy).
    package static let budgetCacheCapacity = 4096

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
            if let wanted = candidate.plugin.scope.route, wanted != route { continue }
            if let wanted = candidate.plugin.scope.service, wanted != service { continue }
            if let wanted = candidate.plugin.scope.consumer, wanted != consumer { continue }
            if let wanted = candidate.plugin.scope.consumerGroup, !groups.contains(wanted) { continue }
            if let best = chosen, (best.rank, best.id) <= (candidate.rank, candidate.id) { continue }
            chosen = candidate
        }
        guard let chosen, let entry = chosen.config.llmProviders.first(where: { $0.name == provider }) else {
            return nil
        }
        let subject: String
        switch chosen.config.identifier {
        case .consumer: subject = "consumer:" + (consumer ?? credential.map { "credential:\($0.hex)" } ?? "anonymous")
        case .consumerGroup:
            subject = "consumer-group:" + (chosen.plugin.scope.consumerGroup ?? groups.sorted().first ?? "none")
        case .credential: subject = "credential:" + (credential?.hex ?? consumer ?? "anonymous")
        }
        return chosen.budget(subject: subject, provider: entry)
    }
}
