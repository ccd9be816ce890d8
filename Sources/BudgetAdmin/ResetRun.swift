import BudgetConfig

/// `reset`: deletes every stored entity that carries the select tags (all of them without tags), in one
/// transaction, printing the changes as decK does. Asking for confirmation is the caller's part.
package struct ResetRun: Sendable {
    /// `--select-tag`; empty: everything.
    package var selectTags: [String]
    /// `--json-output`.
    package var json: Bool

    package init(selectTags: [String], json: Bool) {
        self.selectTags = selectTags
        self.json = json
    }

    /// Runs against the control plane at `endpoint`, writing to `output`.
    /// - Throws: `AdminError`, or `WireClientError` when the control plane cannot be reached.
    package func run(_ endpoint: AdminEndpoint, output: AdminOutput) async throws {
        try await AdminSession.withSession(endpoint) { session in
            let stored = try await session.current()
            let plan: Plan
            do throws(PlanError) {
                plan = try Planner.reset(current: stored.state, selectTags: selectTags)
            } catch {
                throw AdminError.unplannable(error)
            }
            output.changes(of: plan, json: json)
            if !plan.isEmpty { try await session.apply(plan, baseVersion: stored.version) }
            if !json { output.summary(created: 0, updated: 0, deleted: plan.deleted) }
        }
    }
}
