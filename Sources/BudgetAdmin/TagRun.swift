package import BudgetConfig

/// `tag add|remove`: changes the tags of one stored entity, found by kind and name (or key), and prints
/// the change as decK does.
package struct TagRun: Sendable {
    /// Whether the tags are added or removed.
    package enum Action: String, Sendable, CaseIterable {
        case add, remove
    }

    package var action: Action
    package var kind: EntityKind
    /// The entity's name as `get` prints it, or its key.
    package var name: String
    package var tags: [String]

    package init(action: Action, kind: EntityKind, name: String, tags: [String]) {
        self.action = action
        self.kind = kind
        self.name = name
        self.tags = tags
    }

    /// Runs against the control plane at `endpoint`, writing to `output`.
    /// - Throws: `AdminError`, or `WireClientError` when the control plane cannot be reached.
    package func run(_ endpoint: AdminEndpoint, output: AdminOutput) async throws {
        try await AdminSession.withSession(endpoint) { session in
            let stored = try await session.current()
            guard
                let entity = stored.state.sortedEntities.first(where: {
                    $0.id.kind == kind && ($0.displayName == name || $0.id.key == name)
                })
            else {
                throw AdminError.undefinedEntity(kind: kind, name: name)
            }
            let newTags = action == .add ? entity.tags + tags : entity.tags.filter { !tags.contains($0) }
            var desired = stored.state
            desired.upsert(entity.withTags(newTags))
            let plan: Plan
            do throws(PlanError) {
                plan = try Planner.plan(current: stored.state, desired: desired, selectTags: [])
            } catch {
                throw AdminError.unplannable(error)
            }
            if !plan.isEmpty { try await session.apply(plan, baseVersion: stored.version) }
            PlanRenderer.text(plan).forEach(output.out)
        }
    }
}
