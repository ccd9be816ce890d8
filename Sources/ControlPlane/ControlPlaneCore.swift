import BudgetConfig
public import BudgetLedger
public import BudgetStore
public import BudgetWire
import Foundation
public import Logging
import Synchronization

/// The control plane's state and operations: the config and its version, the ledger, the store,
/// and the data planes watching for snapshots. An actor, so every change is serialized.
///
/// Commits are applied to the ledger at once and acknowledged after the store has them: charges of
/// concurrent commits are written in one transaction (group commit), so durability costs one write
/// per batch, not per request.
public actor ControlPlaneCore {
    public static let serverName = "budget-controld/\(ControlPlaneVersion.current)"

    private let store: BudgetStore
    private let logger: Logger
    private var version: UInt64
    private var state: ConfigState
    /// Behind a lock rather than the actor, so that reservations and releases are answered on the
    /// connection's event loop without a hop to the actor and back (they are the data plane's critical path).
    private let ledgerLock: Mutex<Ledger>
    private var snapshotFrame: WireFrame
    /// The config version `snapshotFrame` holds; behind `version` while a new snapshot is being encoded.
    private var snapshotVersion: UInt64
    private var watchers: [UInt64: @Sendable (WireFrame) -> Void] = [:]
    private var nextWatcher: UInt64 = 1
    private var pending: [BudgetStore.UsageRecord] = []
    private var waiting: [CheckedContinuation<Void, any Error>] = []
    private var flushing = false
    private let started = Date()
    private var lastPrune: Int64 = 0

    /// Loads the stored config and the usage still inside its windows.
    public init(store: BudgetStore, reservationLifetime: Int64 = 600, logger: Logger) throws(StoreError) {
        self.store = store
        self.logger = logger
        let loaded = try store.loadConfig()
        version = loaded.version
        state = loaded.state
        var ledger = Ledger()
        ledger.reservationLifetime = reservationLifetime
        let now = Self.now()
        for record in try store.loadUsage(now: now) {
            ledger.load(key: record.key, kind: record.kind, bucket: record.bucket, units: record.units)
        }
        let counters = ledger.counters.count
        ledgerLock = Mutex(ledger)
        snapshotFrame = Self.frame(version: loaded.version, state: loaded.state)
        snapshotVersion = loaded.version
        logger.info(
            "store loaded",
            metadata: [
                "path": "\(store.path)", "config_version": "\(loaded.version)", "entities": "\(loaded.state.count)",
                "counters": "\(counters)",
            ])
    }

    static func now() -> Int64 { Int64(Date().timeIntervalSince1970) }

    static func frame(version: UInt64, state: ConfigState) -> WireFrame {
        WireFrame(.snapshot, requestID: 0, payload: WireJSON.encode(ConfigSnapshot(version: version, state: state)))
    }

    public var configVersion: UInt64 { version }

    // MARK: - Data plane

    /// Registers a data plane for snapshot pushes; returns its id and the current snapshot.
    public func addWatcher(_ send: @escaping @Sendable (WireFrame) -> Void) -> (id: UInt64, snapshot: WireFrame) {
        let id = nextWatcher
        nextWatcher += 1
        watchers[id] = send
        return (id, snapshotFrame)
    }

    public func removeWatcher(_ id: UInt64) { watchers.removeValue(forKey: id) }

    /// Answers reservations at once, from any thread.
    public nonisolated func reserve(_ requests: [ReserveRequest]) -> [ReserveOutcome] {
        let now = Self.now()
        return ledgerLock.withLock { ledger in requests.map { ledger.reserve($0, now: now) } }
    }

    /// Frees reservations at once, from any thread.
    public nonisolated func release(_ ids: [UInt64]) {
        let now = Self.now()
        ledgerLock.withLock { ledger in
            for id in ids { ledger.release(id: id, now: now) }
        }
    }

    /// Applies the commits and returns once their charges are durable.
    public func commit(_ commits: [BudgetMessages.Commit]) async throws {
        let now = Self.now()
        ledgerLock.withLock { ledger in
            for commit in commits { ledger.commit(id: commit.reservation, charges: commit.charges, now: now) }
        }
        for commit in commits {
            for charge in commit.charges where charge.units > 0 {
                let counter = WindowCounter(kind: charge.kind, windowSize: charge.key.windowSize)
                let bucket = counter.bucketIndex(at: now)
                pending.append(
                    BudgetStore.UsageRecord(
                        key: charge.key, kind: charge.kind, bucket: bucket, units: charge.units,
                        expiresAt: counter.expiry(ofBucket: bucket)))
            }
        }
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            waiting.append(continuation)
            if !flushing {
                flushing = true
                Task { await self.flushLoop() }
            }
        }
    }

    /// Writes pending charges until none are left; commits that arrive during a write share the next one.
    private func flushLoop() async {
        while !waiting.isEmpty {
            let records = pending
            let waiters = waiting
            pending = []
            waiting = []
            do {
                try await store.record(records)
                for waiter in waiters { waiter.resume() }
            } catch {
                logger.error("cannot record usage", metadata: ["error": "\(error)"])
                for waiter in waiters { waiter.resume(throwing: error) }
            }
        }
        flushing = false
        let now = Self.now()
        if now - lastPrune > 300 {
            lastPrune = now
            ledgerLock.withLock { $0.compact(now: now) }
            try? store.pruneUsage(now: now)
        }
    }

    /// Waits for pending charges to be written (shutdown).
    public func drain() async {
        while flushing || !waiting.isEmpty {
            try? await Task.sleep(for: .milliseconds(5))
        }
    }

    // MARK: - Admin

    public func admin(_ request: AdminRequest, dataPlanes: Int) async throws(WireErrorBody) -> AdminResponse {
        switch request.op {
        case .ping:
            return AdminResponse(server: Self.serverName, configVersion: version)
        case .status:
            let (counters, reservations) = ledgerLock.withLock { ($0.counters.count, $0.reservations.count) }
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
                configVersion: version, usage: usageRows(consumer: request.consumer, group: request.group))
        case .usageReset:
            guard let consumer = request.consumer, state[EntityID(.consumer, consumer)] != nil else {
                throw WireErrorBody(.notFound, "consumer \"\(request.consumer ?? "")\" is not defined")
            }
            let subject = "consumer:" + consumer
            let removed = ledgerLock.withLock { $0.removeCounters { $0.subject == subject } }
            do {
                _ = try store.deleteUsage(subject: subject)
            } catch {
                throw WireErrorBody(.internal, error.description)
            }
            logger.notice("usage reset", metadata: ["consumer": "\(consumer)", "counters": "\(removed)"])
            return AdminResponse(configVersion: version, removed: removed)
        }
    }

    /// Applies a plan. The heavy work (building and validating the result, writing it, encoding the
    /// snapshot) runs off the actor, so reservations and commits keep flowing during a large sync; the store's
    /// transaction checks the base version, so of two concurrent applies only one can win.
    private func apply(_ request: AdminRequest) async throws(WireErrorBody) -> AdminResponse {
        guard let base = request.baseVersion, let changes = request.changes else {
            throw WireErrorBody(.badRequest, "apply needs baseVersion and changes")
        }
        guard base == version else { throw Self.moved(now: version, base: base) }
        let started = ContinuousClock.now
        let prepared = try await Self.prepare(changes, on: state, base: base, store: store)
        let elapsed = ContinuousClock.now - started
        guard version == base else { throw Self.moved(now: version, base: base) }
        version = prepared.version
        state = prepared.state
        // The answer does not wait for the snapshot: it is pushed to the data planes once encoded.
        let next = prepared.version
        let snapshot = prepared.snapshot
        Task { await self.install(await snapshot.value, version: next) }
        logger.notice(
            "config applied",
            metadata: [
                "config_version": "\(prepared.version)", "changes": "\(changes.count)",
                "data_planes": "\(watchers.count)",
                "duration_ms":
                    "\(elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000)",
            ])
        return AdminResponse(server: Self.serverName, configVersion: prepared.version)
    }

    /// Makes `frame` the snapshot new data planes get and pushes it to the connected ones, unless a newer one
    /// is already there (two applies in quick succession may finish encoding out of order).
    private func install(_ frame: WireFrame, version: UInt64) {
        guard version > snapshotVersion else { return }
        snapshotVersion = version
        snapshotFrame = frame
        for send in watchers.values { send(frame) }
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
    ) async throws(WireErrorBody) -> (version: UInt64, state: ConfigState, snapshot: Task<WireFrame, Never>) {
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
        // The store moves from `base` to `base + 1` or refuses; the snapshot of that version is encoded on
        // another core meanwhile (half a second for 300,000 entities) and dropped if the write fails.
        let state = result
        let encoding = Task.detached { frame(version: base + 1, state: state) }
        let next: UInt64
        do {
            next = try store.apply(changes, baseVersion: base, now: now())
        } catch {
            encoding.cancel()
            throw WireErrorBody(error.isConflict ? .conflict : .internal, error.description)
        }
        guard next == base + 1 else { return (next, result, Task.detached { frame(version: next, state: state) }) }
        return (next, result, encoding)
    }

    /// For each consumer (or the one asked for), the budgets of every AI route, with usage.
    private func usageRows(consumer wanted: String?, group wantedGroup: String?) -> [UsageRow] {
        let now = Self.now()
        let policy = BudgetPolicy(state: state)
        let memberships = Dictionary(grouping: state.memberships, by: \.consumer)
        let credentials = Dictionary(grouping: state.keyAuthCredentials, by: \.consumer)
        let plugins = state.plugins
        let aiRoutes = state.routes.compactMap { route in
            StateValidator.aiProxy(for: route, plugins: plugins).map { (route, $0) }
        }
        var rows: [UsageRow] = []
        var seen: Set<LimitKey> = []
        for consumer in state.consumers {
            if let wanted, consumer.name != wanted { continue }
            let groups = (memberships[consumer.name] ?? []).map(\.group).sorted()
            if let wantedGroup, !groups.contains(wantedGroup) { continue }
            for (route, proxy) in aiRoutes {
                guard
                    let budget = policy.budget(
                        route: route.name, service: route.service, consumer: consumer.name, groups: groups,
                        credential: credentials[consumer.name]?.first?.keyHash, provider: proxy.model.provider)
                else { continue }
                for rule in budget.rules where seen.insert(rule.key).inserted {
                    let (used, held, reset) = ledgerLock.withLock { ledger in
                        (
                            ledger.used(rule.key, now: now), ledger.inFlight(rule.key),
                            ledger.counters[rule.key]?.nextReset
                        )
                    }
                    rows.append(
                        UsageRow(
                            consumer: consumer.name, group: budget.plugin.scope.consumerGroup ?? groups.first,
                            provider: rule.key.provider, windowSize: rule.key.windowSize, used: used, inFlight: held,
                            limit: rule.limit, remaining: max(0, rule.limit - used - held),
                            reset: reset ?? now,
                            strategy: budget.config.tokensCountStrategy.rawValue))
                }
            }
        }
        return rows
    }
}

public enum ControlPlaneVersion {
    public static let current = "0.1.0"
}
