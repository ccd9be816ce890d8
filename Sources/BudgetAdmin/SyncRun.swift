import BudgetConfig

/// `sync` and `diff`: reads the files while the stored config is fetched, plans, prints the plan as decK
/// does, and (for sync) applies it in one transaction.
package struct SyncRun: Sendable {
    /// What the run does with the plan.
    package enum Mode: Sendable {
        /// sync: apply the plan.
        case apply
        /// diff: only print it.
        case preview
    }

    package var files: [String]
    /// `--select-tag`.
    package var flagTags: [String]
    /// Where `${{ env "DECK_…" }}` values come from.
    package var environment: [String: String]
    /// `--json-output`.
    package var json: Bool
    package var mode: Mode

    package init(files: [String], flagTags: [String], environment: [String: String], json: Bool, mode: Mode) {
        self.files = files
        self.flagTags = flagTags
        self.environment = environment
        self.json = json
        self.mode = mode
    }

    /// Runs against the control plane at `endpoint`, writing to `output`; returns whether there were changes.
    ///
    /// Problems in the files are reported before a failed connection, and the plan is printed before it is
    /// applied.
    /// - Throws: `AdminError`, or `WireClientError` when the control plane cannot be reached.
    package func run(_ endpoint: AdminEndpoint, output: AdminOutput) async throws -> Bool {
        try await AdminSession.withStoredConfig(endpoint, whilePreparing: { try desired(output) }) {
            session, stored, desired in
            let plan: Plan
            do throws(PlanError) {
                plan = try Planner.plan(current: stored.state, desired: desired.state, selectTags: desired.selectTags)
            } catch {
                throw AdminError.unplannable(error, nothingChanged: true)
            }
            output.changes(of: plan, json: json)
            if mode == .apply && !plan.isEmpty {
                try await session.apply(plan, baseVersion: stored.version)
            }
            if !json { output.summary(created: plan.created, updated: plan.updated, deleted: plan.deleted) }
            ExitRetention.keep(Retained(stored: stored, desired: desired, plan: plan))
            return !plan.isEmpty
        }
    }

    /// Reads and checks the files; their warnings go to `output` at once.
    private func desired(_ output: AdminOutput) throws(AdminError) -> SyncInput.Desired {
        let loaded = ConfigLoader.load(try ConfigInputs.read(files), environment: environment)
        for warning in loaded.diagnostics.warnings { output.error(warning.description) }
        ExitRetention.keep(loaded)
        return try SyncInput.desired(from: loaded, flagTags: flagTags)
    }

    /// What a run leaves behind, kept until exit when budgetctl asks (`ExitRetention`).
    private struct Retained: Sendable {
        var stored: StoredConfig
        var desired: SyncInput.Desired
        var plan: Plan
    }
}
