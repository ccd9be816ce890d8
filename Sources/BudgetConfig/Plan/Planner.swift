import Dispatch
import Synchronization

/// Computes the plan that makes the part of `current` inside the select-tag scope equal `desired`,
/// as `deck gateway sync` does, without touching anything outside the scope.
///
/// Ordering follows decK: creates and updates by dependency level (consumers; groups, services and
/// credentials; routes and memberships; plugins), then deletes in the reverse order.
public enum Planner {
    /// The plan from `current` to `desired` within `selectTags`; a plan error names every problem.
    public static func plan(current: ConfigState, desired: ConfigState, selectTags: [String]) throws(PlanError) -> Plan
    {
        let selectTags = normalizeTags(selectTags)
        // Entities are visited in no order and the plan is sorted once at the end (by position, not by
        // moving changes around), so a large plan costs one sort of their identities.
        let comparison = compare(desired: desired, current: current, selectTags: selectTags)
        let problems = comparison.problems
        var changes = comparison.changes
        let matched = comparison.matched
        // How many of the current entities the file names: when it names them all, none can be deleted, and
        // the current state is not walked a second time.
        if matched < current.count {
            for (id, entity) in current.entities
            where desired[id] == nil && current.isInScope(entity, selectTags: selectTags) {
                changes.append(.init(action: .delete, old: entity, new: nil, fieldChanges: []))
            }
        }
        if !problems.isEmpty { throw PlanError(problems: problems.sorted { $0.id < $1.id }.map(\.text)) }

        // The resulting state is built, and checked, only when something changes: a resync of a large config
        // with nothing to change costs its comparisons, not a copy and a validation of the whole state.
        var result = current
        if !changes.isEmpty {
            result.reserveCapacity(current.count + changes.count)
            for change in changes {
                if let new = change.new {
                    result.upsert(new)
                } else if let old = change.old {
                    result.remove(old.id)
                }
            }
            let resultProblems = StateValidator.issues(in: result).filter { $0.severity == .error }
            if !resultProblems.isEmpty {
                throw PlanError(
                    problems: resultProblems.map { issue in
                        "after this sync, \(issue.entity.kind.rawValue) \(issue.entity.key): "
                            + "\(issue.field.map { "\($0): " } ?? "")\(issue.message)"
                    })
            }
        }

        // decK's order: creates and updates by dependency level, then deletes in reverse level order; within a
        // level by kind, then key. Changes go into buckets by phase and kind, and only keys are compared.
        var buckets: [BucketKey: [(key: String, index: Int)]] = [:]
        for (index, change) in changes.enumerated() {
            let id = change.id
            buckets[BucketKey(deleting: change.action == .delete, kind: id.kind), default: []].append((id.key, index))
        }
        let bucketOrder = buckets.keys.sorted { lhs, rhs in
            let left = (lhs.deleting ? 1 : 0, lhs.deleting ? -lhs.kind.level : lhs.kind.level, lhs.kind)
            let right = (rhs.deleting ? 1 : 0, rhs.deleting ? -rhs.kind.level : rhs.kind.level, rhs.kind)
            return left < right
        }
        var ordered: [Plan.Change] = []
        ordered.reserveCapacity(changes.count)
        for bucket in bucketOrder {
            for entry in (buckets[bucket] ?? []).sorted(by: { $0.key < $1.key }) {
                ordered.append(changes[entry.index])
            }
        }
        return Plan(changes: ordered, base: current, result: result, selectTags: selectTags)
    }

    /// What comparing the desired entities with the current ones found.
    private struct Comparison: Sendable {
        var problems: [(id: EntityID, text: String)] = []
        var changes: [Plan.Change] = []
        /// How many desired entities exist in the current state.
        var matched = 0

        mutating func absorb(_ other: Comparison) {
            problems += other.problems
            changes += other.changes
            matched += other.matched
        }
    }

    /// Below this many desired entities the comparison runs on the calling thread alone.
    package static let parallelComparisonThreshold = 20_000

    /// Compares every desired entity with the current one of its identity: creates, updates and scope problems.
    /// A large config is compared in two halves at once (a resync of 100,000 consumers is mostly this and
    /// reading the file); the plan is sorted afterwards, so the halves' order does not matter.
    private static func compare(desired: ConfigState, current: ConfigState, selectTags: [String]) -> Comparison {
        let entities = desired.entities
        guard entities.count >= parallelComparisonThreshold else {
            return compare(entities[...], desired: desired, current: current, selectTags: selectTags)
        }
        let middle = entities.index(entities.startIndex, offsetBy: entities.count / 2)
        let halves = [entities[..<middle], entities[middle...]]
        let results = Mutex<[Comparison]>([])
        DispatchQueue.concurrentPerform(iterations: halves.count) { part in
            let result = compare(halves[part], desired: desired, current: current, selectTags: selectTags)
            results.withLock { $0.append(result) }
        }
        var comparison = Comparison()
        for part in results.withLock({ $0 }) { comparison.absorb(part) }
        return comparison
    }

    private static func compare(
        _ entities: Slice<[EntityID: Entity]>, desired: ConfigState, current: ConfigState, selectTags: [String]
    ) -> Comparison {
        var result = Comparison()
        for (id, entity) in entities {
            if !desired.isInScope(entity, selectTags: selectTags) {
                result.problems.append(
                    (
                        id,
                        "\(entity.kindAndName) lacks the select tags \(selectTags); "
                            + "every entity of the file must carry them"
                    ))
                continue
            }
            guard let existing = current[id] else {
                result.changes.append(.init(action: .create, old: nil, new: entity, fieldChanges: []))
                continue
            }
            result.matched += 1
            if !current.isInScope(existing, selectTags: selectTags) {
                let tags = existing.tags.isEmpty ? "no tags" : "tags \(existing.tags)"
                result.problems.append(
                    (
                        id,
                        "\(entity.kindAndName) already exists outside the select-tag scope (it has \(tags)); "
                            + "sync with its tags, or tag it first"
                    ))
                continue
            }
            if existing != entity {
                let fieldChanges = FieldDiff.changes(from: existing.fields, to: entity.fields)
                result.changes.append(.init(action: .update, old: existing, new: entity, fieldChanges: fieldChanges))
            }
        }
        return result
    }

    /// The plan of `reset --select-tag`: delete everything in scope.
    public static func reset(current: ConfigState, selectTags: [String]) throws(PlanError) -> Plan {
        try plan(current: current, desired: ConfigState(), selectTags: selectTags)
    }
}

/// One bucket of a plan's changes: creates and updates, or deletes, of one kind.
private struct BucketKey: Hashable {
    var deleting: Bool
    var kind: EntityKind
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
