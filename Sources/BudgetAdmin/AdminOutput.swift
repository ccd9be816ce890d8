import BudgetConfig

/// Where a verb writes as it goes: results (standard output for budgetctl) and warnings (standard error).
package struct AdminOutput: Sendable {
    /// Writes one line of results.
    package var out: @Sendable (String) -> Void
    /// Writes one line of warnings or progress meant for the operator, not for pipes.
    package var error: @Sendable (String) -> Void

    package init(out: @Sendable @escaping (String) -> Void, error: @Sendable @escaping (String) -> Void) {
        self.out = out
        self.error = error
    }

    /// A plan's changes as decK prints them (text without its Summary block, or the whole JSON).
    func changes(of plan: Plan, json: Bool) {
        if json {
            out(PlanRenderer.json(plan))
        } else {
            PlanRenderer.text(plan).dropLast(4).forEach(out)
        }
    }

    /// decK's closing Summary block.
    func summary(created: Int, updated: Int, deleted: Int) {
        PlanRenderer.summary(created: created, updated: updated, deleted: deleted).forEach(out)
    }
}
