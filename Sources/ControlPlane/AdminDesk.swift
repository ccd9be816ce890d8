package import BudgetConfig
import BudgetLedger
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

    /// The desk over the config `loaded` from `store`, publishing snapshots on `board`.
    package init(
        loaded: (version: UInt64, state: ConfigState), store: BudgetStore, budgets: BudgetDesk, board: SnapshotBoard,
        logger: Logger
    ) {
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
                    uptimeSeconds: Int(Date().timeIntervalSince(started))))
        case .dump:
            return AdminResponse(server: Self.serverName, configVersion: version, state: state)
        case .apply:
            return try await apply(request)
        case .usage:
            return AdminResponse(
                configVersion: version,
                usage: UsageReport(state: state).rows(
                    consumer: request.consumer, group: request.group, budgets: budgets))
        case .usageReset:
            return try resetUsage(consumer: request.consumer)
        }
    }

    private func resetUsage(consumer: String?) throws(WireErrorBody) -> AdminResponse {
        guard let consumer, state[EntityID(.consumer, consumer)] != nil else {
            throw WireErrorBody(.notFound, "consumer \"\(consumer ?? "")\" is not defined")
        }
        let subject = "consumer:" + consumer
        let removed = budgets.withLedger { $0.removeCounters { $0.subject == subject } }
        do {
            _ = try store.deleteUsage(subject: subject)
        } catch {
            throw WireErrorBody(.internal, error.description)
        }
        logger.notice("usage reset", metadata: ["consumer": "\(consumer)", "counters": "\(removed)"])
        return AdminResponse(configVersion: version, removed: removed)
    }

    /// Applies a plan. The heavy work (building and validating the result, writing it, encoding the
    /// snapshot) runs off the actor, so that status and usage requests are not held up by a large sync; the
    /// store's transaction checks the base version, so of two concurrent applies only one can win.
    private func apply(_ request: AdminRequest) async throws(WireErrorBody) -> AdminResponse {
        guard let base = request.baseVersion, let changes = request.changes else {
            throw WireErrorBody(.badRequest, "apply needs baseVersion and changes")
        }
        guard base == version else { throw Self.moved(now: version, base: base) }
        let started = ContinuousClock.now
        let prepared = try await Self.prepare(changes, on: state, base: base, store: store)
        let elapsed = TimeAmount(ContinuousClock.now - started)
        guard version == base else { throw Self.moved(now: version, base: base) }
        version = prepared.version
        state = prepared.state
        board.install(prepared.snapshot, version: prepared.version)
        logger.notice(
            "config applied",
            metadata: [
                "config_version": "\(prepared.version)", "changes": "\(changes.count)",
                "data_planes": "\(board.watcherCount)", "duration_ms": "\(elapsed.nanoseconds / 1_000_000)",
            ])
        return AdminResponse(server: Self.serverName, configVersion: prepared.version)
    }

    private static func moved(now: UInt64, base: UInt64) -> WireErrorBody {
        WireErrorBody(
            .conflict,
            "the config changed since the plan was made (now at version \(now), the plan was made against \(base)); "
                + "run the command again")
    }

    /// The new state, written to the store, and its snapshot frame; nothing is kept on any error.
    private nonisolated static func prepare(
        _ changes: [AppliedChange], on current: ConfigState, base: UInt64, store: BudgetStore
    ) async throws(WireErrorBody) -> (version: UInt64, state: ConfigState, snapshot: WireFrame) {
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
        // The store moves from `base` to `base + 1` or refuses; the snapshot of that version is encoded in a
        // child task meanwhile, on another core, and dropped if the write fails.
        let state = result
        async let encoding = SnapshotBoard.frame(version: base + 1, state: state)
        let next: UInt64
        do {
            next = try store.apply(changes, baseVersion: base, now: BudgetDesk.now())
        } catch {
            _ = await encoding
            throw WireErrorBody(error.isConflict ? .conflict : .internal, error.description)
        }
        let snapshot = await encoding
        guard next == base + 1 else { return (next, result, SnapshotBoard.frame(version: next, state: state)) }
        return (next, result, snapshot)
    }
}
