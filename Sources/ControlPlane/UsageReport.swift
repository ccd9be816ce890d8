import BudgetRedis
import BudgetConfig
import BudgetLedger
import BudgetWire

/// The rows of `budgetctl usage`: for each consumer, the budgets of every AI route, with their usage.
struct UsageReport {
    let state: ConfigState

    /// A row and the window it shows (whose usage comes from Redis when it is shared).
    struct Line {
        var row: UsageRow
        var rule: WindowRule
        var isShared: Bool
    }

    /// Fills the shared lines' usage from the fleet's Redis.
    func fill(_ lines: inout [Line], from shared: SharedBudgets) async throws(WireErrorBody) {
        let indexes = lines.indices.filter { lines[$0].isShared }
        guard !indexes.isEmpty else { return }
        let now = BudgetDesk.now()
        do {
            for chunk in stride(from: 0, to: indexes.count, by: 1000) {
                let part = Array(indexes[chunk..<min(indexes.count, chunk + 1000)])
                let values = try await shared.read(part.map { lines[$0].rule })
                for (index, value) in zip(part, values) {
                    lines[index].row.used = value.used
                    lines[index].row.inFlight = value.held
                    lines[index].row.remaining = max(0, lines[index].rule.limit - value.used - value.held)
                    lines[index].row.reset = value.reset ?? now
                }
            }
        } catch {
            throw WireErrorBody(
                .unavailable,
                "the fleet's Redis (\(shared.endpoint.description)) cannot be reached to read shared usage: \(error)")
        }
    }

    /// The rows of one consumer or group (or of all), with usage read from `budgets`' ledger; the rows of
    /// plugins in `shared` are marked for `fill(_:from:)`.
    func rows(consumer wanted: String?, group wantedGroup: String?, budgets: BudgetDesk, shared: Set<String> = [])
        -> [Line]
    {
        let now = BudgetDesk.now()
        let policy = BudgetPolicy(state: state)
        let memberships = Dictionary(grouping: state.memberships, by: \.consumer)
        let credentials = Dictionary(grouping: state.keyAuthCredentials, by: \.consumer)
        let plugins = state.plugins
        let aiRoutes = state.routes.compactMap { route in
            StateValidator.aiProxy(for: route, plugins: plugins).map { (route, $0) }
        }
        var rows: [Line] = []
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
                        Line(row: UsageRow(
                            consumer: consumer.name, group: budget.plugin.scope.consumerGroup ?? groups.first,
                            provider: rule.key.provider, windowSize: rule.key.windowSize, used: used, inFlight: held,
                            limit: rule.limit, remaining: max(0, rule.limit - used - held),
                            reset: reset ?? now,
                            strategy: budget.config.tokensCountStrategy.rawValue),
                            rule: rule, isShared: shared.contains(rule.key.plugin)))
                }
            }
        }
        return rows
    }
}
