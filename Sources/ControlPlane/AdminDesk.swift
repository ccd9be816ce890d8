package import BudgetConfig
import BudgetLedger
import BudgetRedis
package import BudgetStore
package import BudgetWire
import DaemonKit
import Foundation
package import Logging
import NIOCore

/// The admin side of the control plane: the config and its version, and what budgetctl asks of them
/// (ping, status, dump, apply, usage, usage reset). An actor, so that config changes are serialized.
package actor AdminDesk {
    /// Name and version, as the welcome, ping and status report them.
    package static let serverName = "budget-controld/\(GatewayVersion.current)"

    private let store: BudgetStore
    private let budgets: BudgetDesk
    private let board: SnapshotBoard
    private let logger: Logger
    private var version: UInt64
    private var state: ConfigState
    private let started = Date()
    /// This node's membership of a fleet sharing Redis (`strategy: redis`).
    private let fleet: FleetMember?

    /// The desk over the config `loaded` from `store`, publishing snapshots on `board`.
    package init(
        loaded: (version: UInt64, state: ConfigState), store: BudgetStore, budgets: BudgetDesk, board: SnapshotBoard,
        fleet: FleetMember? = nil, logger: Logger
    ) {
        self.fleet = fleet
        self.store = store
        self.budgets = budgets
        self.board = board
        self.logger = logger
        version = loaded.version
        state = loaded.state
    }

    /// The answer to one admin request.
    /// - Throws: the typed error to send back under the request's id.
    package func handle(_ request: AdminRequest, dataPlanes: Int) async throws(WireErrorBody) -> AdminResponse {
        switch request.op {
        case .ping:
            return AdminResponse(server: Self.serverName, configVersion: version)
        case .status:
            let (counters, reservations) = budgets.withLedger { ($0.counters.count, $0.reservations.count) }
            return AdminResponse(
                server: Self.serverName, configVersion: version,
                status: ServerStatus(
                    server: Self.serverName, configVersion: version, dataPlanes: dataPlanes, storePath: store.path,
                    entities: state.count, counters: counters, reservations: reservations,
                    uptimeSeconds: Int(Date().timeIntervalSince(started)), fleet: await fleetStatus()))
        case .dump:
            return AdminResponse(server: Self.serverName, configVersion: version, state: state)
        case .apply:
            return try await apply(request)
        case .usage:
            let report = UsageReport(state: state)
            let routing = budgets.sharedRouting
            var rows = report.rows(
                consumer: request.consumer, group: request.group, budgets: budgets,
                shared: routing.shared == nil ? [] : routing.plugins)
            if let shared = routing.shared {
                try await report.fill(&rows, from: shared)
            }
            return AdminResponse(configVersion: version, usage: rows.map(\.row))
        case .usageReset:
            return try await resetUsage(consumer: request.consumer)
        }
    }

    /// The fleet part of `budgetctl status`, when the config keeps budgets in Redis.
    private func fleetStatus() async -> FleetStatus? {
        guard let fleet, let shared = fleet.shared else { return nil }
        let health = shared.client.health
        let loss = shared.loss
        let now = BudgetDesk.now()
        let nodes = (try? await fleet.nodes()) ?? []
        return FleetStatus(
            node: fleet.settings.nodeName, redis: shared.endpoint.description,
            redisConnected: health.connected && !loss.away, redisAddress: health.address,
            redisError: loss.away || !health.connected ? health.lastError : nil,
            lossPolicy: shared.policy.rawValue, fleetVersion: fleet.fleetVersion, awaySeconds: loss.seconds,
            fallbackUnits: loss.units,
            nodes: nodes.map {
                FleetStatus.Node(
                    name: $0.name, configVersion: $0.configVersion, fleetVersion: $0.fleetVersion,
                    silentSeconds: Int(max(0, now - $0.seenAt)), awaySeconds: $0.awaySeconds,
                    fallbackUnits: $0.fallbackUnits)
            })
    }

    private func resetUsage(consumer: String?) async throws(WireErrorBody) -> AdminResponse {
        guard let consumer, state[EntityID(.consumer, consumer)] != nil else {
            throw WireErrorBody(.notFound, "consumer \"\(consumer ?? "")\" is not defined")
        }
        let subject = "consumer:" + consumer
        var removed = budgets.withLedger { $0.removeCounters { $0.subject == subject } }
        do {
            _ = try store.deleteUsage(subject: subject)
        } catch {
            throw WireErrorBody(.internal, error.description)
        }
        if let shared = budgets.sharedRouting.shared {
            do {
                let inRedis = try await shared.removeCounters(subject: subject)
                removed += inRedis
                logger.notice(
                    "usage reset in the fleet's Redis", metadata: ["consumer": "\(consumer)", "counters": "\(inRedis)"])
            } catch {
                throw WireErrorBody(
                    .unavailable,
                    "the usage kept on this node was reset, but the fleet's Redis (\(shared.endpoint.description)) "
                        + "cannot be reached to reset the shared usage: \(error); run the command again")
            }
        }
        logger.notice("usage reset", metadata: ["consumer": "\(consumer)", "counters": "\(removed)"])
        return AdminResponse(configVersion: version, removed: removed)
    }

    /// Applies a plan. The heavy work (building and validating the result, writing it, encoding the delta data
    /// planes are sent) runs off the actor, so that status and usage requests are not held up by a large sync;
    /// the store's transaction checks the base version, so of two concurrent applies only one can win.
    private func apply(_ request: AdminRequest) async throws(WireErrorBody) -> AdminResponse {
        guard let base = request.baseVersion, let changes = request.changes else {
            throw WireErrorBody(.badRequest, "apply needs baseVersion and changes")
        }
        guard base == version else { throw Self.moved(now: version, base: base) }
        let started = ContinuousClock.now
        let next = try await install(changes, base: base, syncedHere: true)
        let elapsed = TimeAmount(ContinuousClock.now - started)
        // The fleet learns of the sync before budgetctl does (within a second; else the fleet loop keeps trying).
        await fleet?.publishSynced()
        logger.notice(
            "config applied",
            metadata: [
                "config_version": "\(next)", "changes": "\(changes.count)",
                "data_planes": "\(board.watcherCount)", "duration_ms": "\(elapsed.nanoseconds / 1_000_000)",
            ])
        return AdminResponse(server: Self.serverName, configVersion: next)
    }

    /// The config in force and its version.
    package func current() -> (state: ConfigState, version: UInt64) { (state, version) }

    /// Applies a config another node of the fleet published, as a sync of the whole config; returns the new
    /// local version, or nil when this node had that config already.
    /// - Throws: when the store refuses it (it stays as it was).
    package func adoptFleetConfig(_ desired: ConfigState, fleetVersion: UInt64, from node: String) async throws
        -> UInt64?
    {
        let plan = try Planner.plan(current: state, desired: desired, selectTags: [])
        guard !plan.isEmpty else { return nil }
        let changes = plan.changes.map { AppliedChange(action: $0.action, entity: $0.entity) }
        let next = try await install(changes, base: version, syncedHere: false)
        logger.notice(
            "config applied",
            metadata: [
                "config_version": "\(next)", "changes": "\(changes.count)", "fleet_version": "\(fleetVersion)",
                "from_node": "\(node)", "data_planes": "\(board.watcherCount)",
            ])
        return next
    }

    /// Moves the config from `base` by `changes`: written to the store (`prepare`), then put in force here, sent
    /// to the data planes and followed by the fleet membership; returns the new version. Nothing changes on any
    /// error, or when another change moved the config from `base` meanwhile.
    private func install(_ changes: [AppliedChange], base: UInt64, syncedHere: Bool) async throws(WireErrorBody)
        -> UInt64
    {
        let prepared = try await Self.prepare(changes, on: state, base: base, store: store)
        guard version == base else { throw Self.moved(now: version, base: base) }
        version = prepared.version
        state = prepared.state
        publish(prepared, base: base)
        fleet?.configure(for: state, version: version, syncedHere: syncedHere)
        return prepared.version
    }

    /// Sends data planes what `prepare` encoded: a delta (the changes), or for a change of most of the config a
    /// whole snapshot, which is no larger and saves encoding the snapshot again afterwards.
    private func publish(_ prepared: (version: UInt64, state: ConfigState, push: WireFrame), base: UInt64) {
        if prepared.push.type == .snapshot {
            board.install(prepared.push, version: prepared.version)
        } else {
            board.publish(delta: prepared.push, base: base, version: prepared.version, result: prepared.state)
        }
    }

    private static func moved(now: UInt64, base: UInt64) -> WireErrorBody {
        WireErrorBody(
            .conflict,
            "the config changed since the plan was made (now at version \(now), the plan was made against \(base)); "
                + "run the command again")
    }

    /// The new state, written to the store, and the frame that takes data planes to it: the delta (the changes,
    /// as they were applied), whose whole snapshot the board encodes later, off the path of the sync and of the
    /// push; or, when the changes touch more than half of the resulting entities (a first sync), the snapshot
    /// itself. Nothing is kept on any error.
    private nonisolated static func prepare(
        _ changes: [AppliedChange], on current: ConfigState, base: UInt64, store: BudgetStore
    ) async throws(WireErrorBody) -> (version: UInt64, state: ConfigState, push: WireFrame) {
        var result = current
        result.reserveCapacity(current.count + changes.count)
        for change in changes {
            let id = change.entity.id
            switch change.action {
            case .create:
                guard result.insert(change.entity) else { throw WireErrorBody(.conflict, "\(id) already exists") }
            case .update:
                guard result[id] != nil else { throw WireErrorBody(.conflict, "\(id) does not exist") }
                result.upsert(change.entity)
            case .delete:
                guard result.remove(id) != nil else { throw WireErrorBody(.conflict, "\(id) does not exist") }
            }
        }
        let problems = StateValidator.issues(in: result).filter { $0.severity == .error }
        if !problems.isEmpty {
            throw WireErrorBody(
                .invalidConfig,
                "the result would not be a valid config: " + problems.map(\.description).joined(separator: "; "))
        }
        // The store moves from `base` to `base + 1` or refuses; the frame for that version is encoded in a child
        // task meanwhile, on another core, and dropped if the write fails.
        let whole = changes.count * 2 > result.count
        let state = result
        let frame: @Sendable (UInt64) -> WireFrame = { version in
            whole
                ? SnapshotBoard.frame(version: version, state: state)
                : SnapshotBoard.deltaFrame(base: base, version: version, changes: changes)
        }
        async let encoding = frame(base + 1)
        let next: UInt64
        do {
            next = try store.apply(changes, baseVersion: base, now: BudgetDesk.now())
        } catch {
            _ = await encoding
            throw WireErrorBody(error.isConflict ? .conflict : .internal, error.description)
        }
        let push = await encoding
        guard next == base + 1 else { return (next, result, frame(next)) }
        return (next, result, push)
    }
}
