/// Computes the plan that makes the part of `current` inside the select-tag scope equal `desired`,
/// as `deck gateway sync` does, without touching anything outside the scope.
///
/// Ordering follows decK: creates and updates by dependency level (consumers; groups, services and
/// credentials; routes and memberships; plugins), then deletes in the reverse order.
public enum Planner {
    public static func plan(current: ConfigState, desired: ConfigState, selectTags: [String]) throws(PlanError) -> Plan
    {
        let selectTags = normalizeTags(selectTags)
        var problems: [String] = []
        var creates: [Plan.Change] = []
        var updates: [Plan.Change] = []
        var deletes: [Plan.Change] = []
        var result = current

        for entity in desired.sortedEntities {
            if !desired.isInScope(entity, selectTags: selectTags) {
                problems.append(
                    "\(entity.kindAndName) lacks the select tags \(selectTags); "
                        + "every entity of the file must carry them")
                continue
            }
            guard let existing = current[entity.id] else {
                creates.append(.init(action: .create, old: nil, new: entity, fieldChanges: []))
                result.upsert(entity)
                continue
            }
            if !current.isInScope(existing, selectTags: selectTags) {
                let tags = existing.tags.isEmpty ? "no tags" : "tags \(existing.tags)"
                problems.append(
                    "\(entity.kindAndName) already exists outside the select-tag scope (it has \(tags)); "
                        + "sync with its tags, or tag it first")
                continue
            }
            if existing != entity {
                let changes = FieldDiff.changes(from: existing.fields, to: entity.fields)
                updates.append(.init(action: .update, old: existing, new: entity, fieldChanges: changes))
                result.upsert(entity)
            }
        }
        for entity in current.sortedEntities
        where desired[entity.id] == nil && current.isInScope(entity, selectTags: selectTags) {
            deletes.append(.init(action: .delete, old: entity, new: nil, fieldChanges: []))
            result.remove(entity.id)
        }
        if !problems.isEmpty { throw PlanError(problems: problems) }

        let resultProblems = StateValidator.issues(in: result).filter { $0.severity == .error }
        if !resultProblems.isEmpty {
            throw PlanError(
                problems: resultProblems.map { issue in
                    "after this sync, \(issue.entity.kind.rawValue) \(issue.entity.key): "
                        + "\(issue.field.map { "\($0): " } ?? "")\(issue.message)"
                })
        }

        let forward: (Plan.Change, Plan.Change) -> Bool = { lhs, rhs in
            (lhs.id.kind.level, lhs.id) < (rhs.id.kind.level, rhs.id)
        }
        let ordered =
            (creates + updates).sorted(by: forward)
            + deletes.sorted { lhs, rhs in
                (-lhs.id.kind.level, lhs.id) < (-rhs.id.kind.level, rhs.id)
            }
        return Plan(changes: ordered, base: current, result: result, selectTags: selectTags)
    }

    /// The plan of `reset --select-tag`: delete everything in scope.
    public static func reset(current: ConfigState, selectTags: [String]) throws(PlanError) -> Plan {
        try plan(current: current, desired: ConfigState(), selectTags: selectTags)
    }
}

/// Field-by-field differences between two renderings of an entity.
enum FieldDiff {
    static func changes(from old: FieldValue, to new: FieldValue, path: String = "") -> [Plan.FieldChange] {
        if old == new { return [] }
        switch (old, new) {
        case (.map(let oldFields), .map(let newFields)):
            var names: [String] = oldFields.map(\.name)
            for field in newFields where !names.contains(field.name) { names.append(field.name) }
            return names.flatMap { name -> [Plan.FieldChange] in
                let before = oldFields.first { $0.name == name }?.value
                let after = newFields.first { $0.name == name }?.value
                let childPath = path.isEmpty ? name : "\(path).\(name)"
                switch (before, after) {
                case let (before?, after?): return changes(from: before, to: after, path: childPath)
                case (nil, nil): return []
                default: return [Plan.FieldChange(path: childPath, old: before, new: after)]
                }
            }
        case (.list(let oldItems), .list(let newItems))
        where oldItems.count == newItems.count && oldItems.contains(where: { !$0.isScalar }):
            return zip(oldItems, newItems).enumerated().flatMap { index, pair in
                changes(from: pair.0, to: pair.1, path: "\(path)[\(index)]")
            }
        default:
            return [Plan.FieldChange(path: path, old: old, new: new)]
        }
    }
}
