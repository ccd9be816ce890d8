package import BudgetConfig
package import BudgetLedger
package import BudgetStore
package import BudgetWire
import Foundation
import Synchronization

/// The data planes' side of the control plane: reservations and releases against the ledger, and commits
/// that are acknowledged once their usage is durable.
///
/// Reservations and releases are answered under the ledger's lock on whichever thread asks (the
/// connection's event loop), with no hop to an actor: they are the data plane's critical path. Commits are
/// applied to the ledger at once and queued for `UsageWriter`, which writes the buckets of all commits
/// waiting at that moment in one transaction (group commit), so durability costs one write per batch.
package final class BudgetDesk: Sendable {
    private let ledger: Mutex<Ledger>
    /// Which budgets live in the fleet's Redis (`strategy: redis`), and the engine that keeps them there.
    private let routing = Mutex(Routing())
    private let queue = Mutex(WriteQueue())
    package let store: BudgetStore
    /// Seconds a hold lives without renewal.
    package let reservationLifetime: Int64
    /// How long the commit mark of a silent data plane is kept (a spooled commit older than this could be
    /// charged again): 30 days.
    package static let commitMarkLifetime: Int64 = 30 * 86_400

    /// Commits waiting for `UsageWriter`, and how it is woken.
    private struct WriteQueue {
        var buckets: [BucketUsage] = []
        var marks: [UInt64: CommitMark] = [:]
        var waiters: [Waiter] = []
        /// The writer, when it waits for work.
        var wakeup: CheckedContinuation<Void, Never>?
        /// Shutdown asked the writer to finish once the queue is empty.
        var stopping = false
        /// The writer has finished: commits are refused.
        var closed = false
    }

    /// What a commit waits with: called once, from the writer, when its usage is in the store (or cannot be).
    package typealias Waiter = @Sendable (Result<Void, any Error>) -> Void

    /// A batch for the writer: the buckets to write and the commits to acknowledge after.
    package struct Batch: Sendable {
        package var buckets: [BucketUsage]
        /// The latest commit mark of each commit stream in the batch, written in the same transaction.
        package var marks: [CommitMark]
        package var waiters: [Waiter]
    }

    /// Loads the usage still inside its windows from `store`.
    /// - Throws: `StoreError` when the store cannot be read.
    /// `config` gives each counter's current window kind (a `window_type` change converts stored usage).
    package init(store: BudgetStore, reservationLifetime: Int64, config: ConfigState = ConfigState())
        throws(StoreError)
    {
        self.store = store
        self.reservationLifetime = reservationLifetime
        var ledger = Ledger(boot: try store.nextBoot())
        ledger.reservationLifetime = reservationLifetime
        ledger.expectsHeartbeats = true
        var kinds: [String: WindowKind] = [:]
        for plugin in config.plugins {
            if case .aiRateLimitingAdvanced(let settings) = plugin.config {
                kinds[plugin.id.key] = settings.windowType == .sliding ? .sliding : .fixed
            }
        }
        let now = Self.now()
        for record in try store.loadUsage(now: now) {
            ledger.load(
                key: record.key, kind: record.kind, bucket: record.bucket, units: record.units, now: now,
                current: kinds[record.key.plugin])
        }
        for mark in try store.loadCommitMarks() { ledger.load(mark: mark) }
        self.ledger = Mutex(ledger)
    }

    /// Where budgets are kept: the plugins (identity keys) whose counters live in the fleet's Redis, and the
    /// engine for them; nil shared means every budget is this node's.
    package struct Routing: Sendable {
        package var shared: SharedBudgets?
        package var plugins: Set<String> = []

        package init(shared: SharedBudgets? = nil, plugins: Set<String> = []) {
            self.shared = shared
            self.plugins = plugins
        }

        func isShared(_ key: LimitKey?) -> Bool {
            guard shared != nil, let key else { return false }
            return plugins.contains(key.plugin)
        }
    }

    /// The routing now in force.
    package var sharedRouting: Routing { routing.withLock { $0 } }

    /// Puts `routing` in force (after a config change); returns the one it replaces.
    @discardableResult
    package func route(_ routing: Routing) -> Routing {
        self.routing.withLock { current in
            defer { current = routing }
            return current
        }
    }

    /// The wall clock in epoch seconds; the ledger keeps it from running backwards.
    package static func now() -> Int64 { Int64(Date().timeIntervalSince1970) }

    /// Tells the ledger the control plane is running (every second, by `LedgerClock`).
    package func heartbeat() {
        let now = Self.now()
        ledger.withLock { $0.heartbeat(now: now) }
    }

    /// Runs `body` on the ledger under its lock (for status and usage rows).
    package func withLedger<T>(_ body: (inout Ledger) -> T) -> T {
        ledger.withLock { body(&$0) }
    }

    // MARK: - Hot path

    /// Answers reservations at once, from any thread.
    package func reserve(_ requests: [ReserveRequest]) -> [ReserveOutcome] {
        let now = Self.now()
        return ledger.withLock { ledger in requests.map { ledger.reserve($0, now: now) } }
    }

    /// Answers reservations, calling `done` with the outcomes in order: at once, on this thread, for this
    /// node's budgets; after one Redis round trip for all of the frame's shared ones.
    package func reserve(_ requests: [ReserveRequest], done: @escaping @Sendable ([ReserveOutcome]) -> Void) {
        let routing = self.routing.withLock { $0 }
        guard let shared = routing.shared, requests.contains(where: { routing.isShared($0.rules.first?.key) }) else {
            return done(reserve(requests))
        }
        let now = Self.now()
        var outcomes = [ReserveOutcome?](repeating: nil, count: requests.count)
        var sharedIndexes: [Int] = []
        var ids: [UInt64] = []
        ledger.withLock { ledger in
            for (index, request) in requests.enumerated() {
                if routing.isShared(request.rules.first?.key) {
                    sharedIndexes.append(index)
                    ids.append(ledger.takeID())
                } else {
                    outcomes[index] = ledger.reserve(request, now: now)
                }
            }
        }
        let local = outcomes
        let indexes = sharedIndexes
        shared.reserve(indexes.map { requests[$0] }, ids: ids) { sharedOutcomes in
            var all = local
            for (index, outcome) in zip(indexes, sharedOutcomes) { all[index] = outcome }
            done(all.map { $0 ?? .unavailable(reason: "no outcome") })
        }
    }

    /// Renews holds, calling `done` with how many are held: at once for this node's, after Redis for shared
    /// ones (never failing for them: see `SharedBudgets.renew`).
    package func renew(_ leases: [Lease], adopt: Bool, done: @escaping @Sendable (Int) -> Void) {
        let routing = self.routing.withLock { $0 }
        guard let shared = routing.shared else { return done(renew(leases, adopt: adopt)) }
        let sharedLeases = leases.filter { routing.isShared($0.keys.first) }
        guard !sharedLeases.isEmpty else { return done(renew(leases, adopt: adopt)) }
        let local = renew(leases.filter { !routing.isShared($0.keys.first) }, adopt: adopt)
        shared.renew(sharedLeases, adopt: adopt) { done(local + $0) }
    }

    /// Frees reservations, calling `done` once freed: this node's at once, the others in Redis.
    package func release(_ ids: [UInt64], done: @escaping @Sendable (Result<Void, any Error>) -> Void) {
        let shared = routing.withLock { $0.shared }
        let now = Self.now()
        let others = ledger.withLock { ledger -> [UInt64] in
            var others: [UInt64] = []
            for id in ids {
                if ledger.reservations[id] != nil {
                    ledger.release(id: id, now: now)
                } else if shared != nil {
                    others.append(id)
                }
            }
            return others
        }
        guard let shared, !others.isEmpty else { return done(.success(())) }
        shared.release(others, done: done)
    }

    /// Renews holds of requests in flight (with `adopt`, re-establishes those of an earlier run); returns how
    /// many are held.
    package func renew(_ leases: [Lease], adopt: Bool) -> Int {
        let now = Self.now()
        return ledger.withLock { $0.renew(leases, adopt: adopt, now: now) }
    }

    /// Frees reservations at once, from any thread.
    package func release(_ ids: [UInt64]) {
        let now = Self.now()
        ledger.withLock { ledger in
            for id in ids { ledger.release(id: id, now: now) }
        }
    }

    /// Applies the commits to the ledger and returns once the buckets it changed are in the store.
    /// - Throws: `StoreError` when they could not be written, `Stopping` after shutdown.
    package func commit(_ commits: [BudgetMessages.Commit]) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            commit(commits) { continuation.resume(with: $0) }
        }
    }

    /// Applies the commits to the ledger at once, from any thread (in the order the connection's frames came,
    /// with the reservations around them), and calls `done` once the buckets it changed are in the store: no
    /// task per commit frame. `done` gets `Stopping` after shutdown.
    ///
    /// With `wakingWriter` false the usage writer is not woken for them: the caller promises `wakeWriter()`
    /// soon (a connection does, at the end of its read burst), so that the commits of one burst go into one
    /// transaction rather than the first alone waking the writer, which on a shared core runs it at once.
    package func commit(_ commits: [BudgetMessages.Commit], wakingWriter: Bool = true, done: @escaping Waiter) {
        let routing = self.routing.withLock { $0 }
        if let shared = routing.shared {
            // A commit is shared when its charges are (a commit without charges: when its hold is not here).
            let (mine, theirs) = ledger.withLock { ledger in
                var mine: [BudgetMessages.Commit] = []
                var theirs: [BudgetMessages.Commit] = []
                for commit in commits {
                    let isShared =
                        commit.charges.first.map { routing.isShared($0.key) }
                        ?? (ledger.reservations[commit.reservation] == nil)
                    if isShared { theirs.append(commit) } else { mine.append(commit) }
                }
                return (mine, theirs)
            }
            if !theirs.isEmpty {
                guard !mine.isEmpty else { return shared.commit(theirs, done: done) }
                let both = BothDone(done)
                shared.commit(theirs, done: both.one)
                return commitHere(mine, wakingWriter: wakingWriter, done: both.one)
            }
        }
        commitHere(commits, wakingWriter: wakingWriter, done: done)
    }

    /// Wakes the usage writer if it waits while commits are queued (after `commit(_:wakingWriter: false, done:)`).
    package func wakeWriter() {
        let wakeup = queue.withLock { queue -> CheckedContinuation<Void, Never>? in
            guard !queue.waiters.isEmpty else { return nil }
            defer { queue.wakeup = nil }
            return queue.wakeup
        }
        wakeup?.resume()
    }

    /// Calls `done` once both halves are done: with the first failure, or success.
    private final class BothDone: Sendable {
        private let state = Mutex<(left: Int, failure: (any Error)?)>((2, nil))
        private let done: Waiter

        init(_ done: @escaping Waiter) { self.done = done }

        var one: Waiter {
            { result in
                let finished = self.state.withLock { state -> Result<Void, any Error>? in
                    if case .failure(let error) = result, state.failure == nil { state.failure = error }
                    state.left -= 1
                    guard state.left == 0 else { return nil }
                    return state.failure.map { .failure($0) } ?? .success(())
                }
                if let finished { self.done(finished) }
            }
        }
    }

    /// `commit(_:done:)` for this node's budgets.
    private func commitHere(_ commits: [BudgetMessages.Commit], wakingWriter: Bool, done: @escaping Waiter) {
        let now = Self.now()
        let (buckets, marks) = ledger.withLock { ledger in
            var buckets: [BucketUsage] = []
            var marks: [CommitMark] = []
            buckets.reserveCapacity(commits.reduce(0) { $0 + $1.charges.count })
            for commit in commits {
                let (time, applied) = ledger.commit(
                    id: commit.reservation, origin: commit.origin, charges: commit.charges, now: now,
                    appendingTo: &buckets)
                if applied && commit.origin.source != 0 {
                    marks.append(
                        CommitMark(source: commit.origin.source, sequence: commit.origin.sequence, seenAt: time))
                }
            }
            return (buckets, marks)
        }
        let (accepted, wakeup) = queue.withLock { queue -> (Bool, CheckedContinuation<Void, Never>?) in
            guard !queue.closed else { return (false, nil) }
            queue.buckets += buckets
            // A resend (nothing applied) still waits its turn: it is acknowledged only once the commit it
            // repeats, queued before it, is in the store.
            for mark in marks { queue.marks[mark.source] = mark }
            queue.waiters.append(done)
            guard wakingWriter else { return (true, nil) }
            defer { queue.wakeup = nil }
            return (true, queue.wakeup)
        }
        guard accepted else { return done(.failure(Stopping())) }
        wakeup?.resume()
    }

    /// The commit came after the usage writer finished (shutdown).
    package struct Stopping: Error, CustomStringConvertible {
        package var description: String { "the control plane is stopping" }
    }

    // MARK: - For the writer

    /// The next batch of commits to write; waits while there is none. Nil once `finishWriting()` was called
    /// and everything queued before it has been handed out: later commits are refused.
    package func nextBatch() async -> Batch? {
        while true {
            enum Step {
                case batch(Batch)
                case finished
                case wait
            }
            let step = queue.withLock { queue -> Step in
                if !queue.waiters.isEmpty {
                    defer {
                        queue.buckets = []
                        queue.marks = [:]
                        queue.waiters = []
                    }
                    return .batch(
                        Batch(buckets: queue.buckets, marks: Array(queue.marks.values), waiters: queue.waiters))
                }
                if queue.stopping {
                    queue.closed = true
                    return .finished
                }
                return .wait
            }
            switch step {
            case .batch(let batch): return batch
            case .finished: return nil
            case .wait:
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let ready = queue.withLock { queue -> Bool in
                        if !queue.waiters.isEmpty || queue.stopping { return true }
                        queue.wakeup = continuation
                        return false
                    }
                    if ready { continuation.resume() }
                }
            }
        }
    }

    /// Whether shutdown asked the writer to finish.
    package var isFinishing: Bool { queue.withLock { $0.stopping } }

    /// Asks the writer to finish once the queue is empty (graceful shutdown or cancellation).
    package func finishWriting() {
        let wakeup = queue.withLock { queue -> CheckedContinuation<Void, Never>? in
            queue.stopping = true
            defer { queue.wakeup = nil }
            return queue.wakeup
        }
        wakeup?.resume()
    }
}
