import BudgetConfig
import BudgetLedger
import BudgetWire

/// The rows of `budgetctl usage`: for each consumer, the budgets of every AI route, with their usage.
struct UsageReport {
    let state: ConfigState

    /// The rows of one consumer or group (or of all), with usage read from `budgets`' ledger.
    func rows(consumer wanted: String?, group wantedGroup: String?, budgets: BudgetDesk) -> [UsageRow] {
        let now = BudgetDesk.now()
        let policy = BudgetPolicy(state: state)
        let memberships = Dictionary(grouping: state.memberships, by: \.consumer)
        let credentials = Dictionary(grouping: state.keyAuthCredentials, by: \.consumer)
        let plugins = state.plugins
        let aiRoutes = state.routes.compactMap { route in
            StateValidator.aiProxy(for: route, plugins: plugins).map { (route, $0) }
        }
        var rows: [UsageRow] = []
        var seen: Set<LimitKey> = []
        for consumer in state.consumers {
            if let wanted, consumer.name != wanted { continue }
            let groups = (memberships[consumer.name] ?? []).map(\.group).sorted()
            if let wantedGroup, !groups.contains(wantedGroup) { continue }
            for (route, proxy) in aiRoutes {
                guard
                    let budget = policy.budget(
                        route: route.name, service: route.service, consumer: consumer.name, groups: groups,
                        credential: credentials[consumer.name]?.first?.keyHash, provider: proxy.model.provider)
                else { continue }
                for rule in budget.rules where seen.insert(rule.key).inserted {
                    let (used, held, reset) = budgets.withLedger { ledger in
                        // Holds whose lifetime has passed (a data plane died) are not shown as in flight.
                        ledger.expireReservations(now: now)
                        return (
                            ledger.used(rule.key, now: now), ledger.inFlight(rule.key),
                            ledger.counters[rule.key]?.nextReset
                        )
                    }
                    rows.append(
                        UsageRow(
                            consumer: consumer.name, group: budget.plugin.scope.consumerGroup ?? groups.first,
                            provider: rule.key.provider, windowSize: rule.key.windowSize, used: used, inFlight: held,
                            limit: rule.limit, remaining: max(0, rule.limit - used - held),
                            reset: reset ?? now,
                            strategy: budget.config.tokensCountStrategy.rawValue))
                }
            }
        }
        return rows
    }
}
