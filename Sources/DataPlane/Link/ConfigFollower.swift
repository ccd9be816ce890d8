import BudgetConfig
package import BudgetWire

/// The data plane's side of the config pushes: the compiled tables, brought up to date by each `snapshot`
/// (compiled whole) and each `snapshotDelta` (applied to the tables in place, `ProxyTables.applying`).
///
/// It keeps the part of the config the routes and the policy are compiled from (services, routes, consumer
/// groups, plugins: few entities); the per-consumer kinds (consumers, key-auth credentials, memberships,
/// 100,000s of them) live only in the tables' maps, which a delta updates change by change. So a rotated key
/// among 100,000 consumers costs a copy of two maps, not a decode and a compile of the whole config, and the
/// proxy does not keep a second copy of the consumers.
///
/// A delta is applied only to the version it starts from: one that starts elsewhere is a gap (a push was
/// missed) and is refused, and the caller must get a whole snapshot. Nothing is half-applied: the new tables
/// and routing state are built aside and replace the old ones in one step, or not at all.
package struct ConfigFollower: Sendable {
    /// What a push did.
    package enum Outcome: Sendable, Equatable {
        /// A whole snapshot of `entities` entities was compiled.
        case snapshot(entities: Int)
        /// A delta of `changes` changes was applied; `recompiled` when the routes and policy were compiled again.
        case delta(changes: Int, recompiled: Bool)
        /// A delta to a version these tables have already: nothing to do.
        case stale
        /// A delta from `base` while the tables are at `current` (nil before any snapshot): not applied; a whole
        /// snapshot is needed.
        case gap(base: UInt64, current: UInt64?)
    }

    /// The compiled config; nil before the first snapshot.
    package private(set) var tables: ProxyTables?
    /// The entities of the kinds `ProxyTables.isPerConsumer` leaves out, at `tables.version`.
    private var routing = ConfigState()
    private let environment: [String: String]

    /// `environment` supplies the AWS settings the Bedrock targets are resolved with.
    package init(environment: [String: String] = [:]) {
        self.environment = environment
    }

    /// Takes one push from the control plane.
    /// - Throws: `badRequest` when the payload does not decode, or when a delta does not fit the config it
    ///   starts from (creating what exists, updating or deleting what does not); nothing changes then, and the
    ///   caller should get a whole snapshot.
    package mutating func receive(_ frame: WireFrame) throws(WireErrorBody) -> Outcome {
        switch frame.type {
        case .snapshot:
            let snapshot = try WireJSON.decode(ConfigSnapshot.self, from: frame.payload)
            let tables = ProxyTables(version: snapshot.version, state: snapshot.state, environment: environment)
            routing = ConfigState(snapshot.state.entities.values.filter { !ProxyTables.isPerConsumer($0.id.kind) })
            self.tables = tables
            return .snapshot(entities: snapshot.state.count)
        case .snapshotDelta:
            let delta = try WireJSON.decode(ConfigDelta.self, from: frame.payload)
            return try apply(delta)
        default:
            throw WireErrorBody(.badRequest, "frame type \(frame.type) is not a config push")
        }
    }

    /// Applies a decoded delta (see `receive`).
    package mutating func apply(_ delta: ConfigDelta) throws(WireErrorBody) -> Outcome {
        guard let tables else { return .gap(base: delta.baseVersion, current: nil) }
        guard delta.version > tables.version else { return .stale }
        guard delta.baseVersion == tables.version else { return .gap(base: delta.baseVersion, current: tables.version) }
        var routing = self.routing
        var recompile = false
        for change in delta.changes where !ProxyTables.isPerConsumer(change.entity.id.kind) {
            recompile = true
            let id = change.entity.id
            switch change.action {
            case .create:
                guard routing.insert(change.entity) else {
                    throw WireErrorBody(.badRequest, "delta to \(delta.version): \(id) already exists")
                }
            case .update:
                guard routing[id] != nil else {
                    throw WireErrorBody(.badRequest, "delta to \(delta.version): \(id) does not exist")
                }
                routing.upsert(change.entity)
            case .delete:
                guard routing.remove(id) != nil else {
                    throw WireErrorBody(.badRequest, "delta to \(delta.version): \(id) does not exist")
                }
            }
        }
        let updated = tables.applying(
            delta.changes, version: delta.version, routing: recompile ? routing : nil, environment: environment)
        if recompile { self.routing = routing }
        self.tables = updated
        return .delta(changes: delta.changes.count, recompiled: recompile)
    }
}
