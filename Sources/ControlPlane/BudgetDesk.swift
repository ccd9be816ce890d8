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
    package func commit(_ commits: [BudgetMessages.Commit], done: @escaping Waiter) {
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
