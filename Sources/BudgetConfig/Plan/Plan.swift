/// What a sync would do: the ordered changes from a current state to a desired one.
public struct Plan: Sendable, Hashable {
    /// What a change does to its entity; raw values are decK's verbs.
    public enum Action: String, Sendable, Hashable, Codable {
        case create = "creating"
        case update = "updating"
        case delete = "deleting"
    }

    /// One field that an update changes, at a path such as `config.llm_providers[0].limit`.
    public struct FieldChange: Sendable, Hashable {
        public var path: String
        public var old: FieldValue?
        public var new: FieldValue?
    }

    /// One entity created, updated or deleted.
    public struct Change: Sendable, Hashable {
        public var action: Action
        /// The entity as it is now (updates, deletes).
        public var old: Entity?
        /// The entity as it will be (creates, updates).
        public var new: Entity?
        /// For updates: what differs, field by field.
        public var fieldChanges: [FieldChange]

        /// The entity the change is about: the new one, or the old one for a delete.
        public var entity: Entity {
            // Every change has at least one side; `new` for creates and updates, `old` for deletes.
            new ?? old ?? .consumerGroup(ConsumerGroup(name: ""))
        }

        public var id: EntityID { entity.id }
    }

    /// In the order they are applied.
    public var changes: [Change]
    /// The state the plan starts from, whole (not only the scoped part): applying checks it is unchanged.
    public var base: ConfigState
    /// The state after the plan, whole.
    public var result: ConfigState
    /// The select tags that scoped the plan.
    public var selectTags: [String]

    /// How many entities the plan creates.
    public var created: Int { changes.count { $0.action == .create } }
    /// How many entities the plan updates.
    public var updated: Int { changes.count { $0.action == .update } }
    /// How many entities the plan deletes.
    public var deleted: Int { changes.count { $0.action == .delete } }
    public var isEmpty: Bool { changes.isEmpty }
}

/// Why a plan cannot be made; nothing is applied.
public struct PlanError: Error, Sendable, CustomStringConvertible {
    public var problems: [String]

    public var description: String {
        problems.count == 1
            ? problems[0] : "\(problems.count) problems:\n" + problems.map { "  " + $0 }.joined(separator: "\n")
    }
}
