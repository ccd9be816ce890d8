/// One change of a plan as it is applied: the entity as it will be (create, update) or as it is (delete).
public struct AppliedChange: Sendable, Hashable {
    public var action: Plan.Action
    public var entity: Entity

    public init(action: Plan.Action, entity: Entity) {
        self.action = action
        self.entity = entity
    }
}
