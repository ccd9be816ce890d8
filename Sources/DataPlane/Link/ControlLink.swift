import BudgetLedger
import BudgetConfig
import BudgetWire
import DaemonKit
import Foundation
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization

/// The data plane's link to budget-controld: it keeps the latest config (compiled; a whole snapshot on each
/// connect, then deltas, see `ConfigFollower`), and makes the budget calls, batching concurrent ones into one
/// frame.
///
/// A `Service`: `run()` keeps the connection (reconnecting with backoff, 100 ms doubling to 5 s) and runs the
/// senders of reservations, commits, releases and lease renewals as child tasks. When the control plane goes
/// away the proxy keeps serving with the last snapshot; commits that cannot be delivered are kept (at most
/// `maxPendingCommits`, and in the spool file when a state directory is set) and sent after the reconnect.
/// After each connect, the holds of requests in flight are re-established before any other call (a restarted
/// control plane has lost them), and they are renewed while their requests run. On graceful shutdown it
/// delivers what is pending, for at most `shutdownFlushTimeout`, spools the rest, then stops.
final class ControlLink: ServiceLifecycle.Service, Sendable {
    /// The answer to a reservation request.
    public enum Reservation: Sendable {
        case outcome(ReserveOutcome)
        /// The control plane could not be asked in time; the caller applies its loss policy.
        case unavailable(String)
    }

    let socketPath: String
    let callTimeout: Duration
    /// Commits kept while the control plane is away; older ones are dropped past this.
    static let maxPendingCommits = 100_000
    /// How long a graceful shutdown waits for pending commits to reach the control plane.
    static let shutdownFlushTimeout: Duration = .seconds(5)

    private let logger: Logger
    private let environment: [String: String]
    private let tablesBox = Mutex<ProxyTables?>(nil)
    private let firstSnapshot = OnceEvent()
    private let connection = CurrentConnection()
    private let reserves: ReserveBatcher
    private let commits: CommitQueue
    private let releases: ReleaseQueue
    private let leases: LeaseBook
    private let spool: CommitSpool?
    /// Seconds between two renewals of the holds in flight: a third of the control plane's reservation
    /// lifetime, as its welcome says.
    private let renewEvery = Mutex<Int64>(200)
    /// Set once graceful shutdown began: reconnects are tried every 100 ms.
    private let stopping = Mutex(false)
    private let group: any EventLoopGroup

    /// `group` should be the proxy's own: the connection then shares the event loops that requests run on.
    /// `environment` supplies the AWS settings each snapshot's Bedrock targets are resolved with.
    /// `spoolDirectory` keeps unacknowledged usage across stops (`CommitSpool`); nil keeps it in memory only.
    init(
        socketPath: String, callTimeout: Duration = .seconds(2), group: any EventLoopGroup,
        environment: [String: String] = [:], spoolDirectory: String? = nil, logger: Logger
    ) {
        self.socketPath = socketPath
        spool = spoolDirectory.map(CommitSpool.init(directory:))
        self.callTimeout = callTimeout
        self.group = group
        self.environment = environment
        self.logger = logger
        releases = ReleaseQueue(connection: connection)
        reserves = ReserveBatcher(
            connection: connection, timeout: TimeAmount(callTimeout), releases: releases, logger: logger)
        let leases = LeaseBook()
        self.leases = leases
        commits = CommitQueue(connection: connection, leases: leases, logger: logger)
    }

    /// The compiled config, once the first snapshot has arrived.
    var tables: ProxyTables? { tablesBox.withLock { $0 } }

    /// Whether a connection to the control plane is up.
    var isConnected: Bool { connection.current != nil }

    /// Commits waiting for the control plane.
    var pendingCommits: Int { commits.count }

    /// Holds of requests in flight (leases this data plane renews).
    var heldLeases: Int { leases.count }

    /// Returns true once the first snapshot has arrived; false if the calling task is cancelled first.
    func waitForFirstSnapshot() async -> Bool { await firstSnapshot.wait() }

    /// Keeps the connection and the senders running until graceful shutdown or cancellation.
    func run() async {
        if let spool {
            let (spooled, problem) = spool.load()
            if let problem {
                // Kept aside for an operator to look at; what could be read is delivered, and the proxy starts.
                let aside = spool.path + ".unreadable"
                _ = rename(spool.path, aside)
                logger.error(
                    "\(problem); moved to \(aside)", metadata: ["commits_recovered": "\(spooled.count)"])
            }
            if !spooled.isEmpty {
                commits.preload(spooled)
                logger.notice("usage from the spool is delivered first", metadata: ["commits": "\(spooled.count)"])
            }
        }
        await withDiscardingTaskGroup { group in
            group.addTask { await self.reserves.run() }
            group.addTask { await self.commits.run() }
            group.addTask { await self.releases.run() }
            group.addTask { await self.maintainConnection() }
            group.addTask { await self.renewLeases() }
            if let spool { group.addTask { await self.commits.checkpoint(into: spool, logger: self.logger) } }
            try? await gracefulShutdown()
            // Usage charged before the stop should reach the control plane, and holds given back (requests the
            // drain cancelled) should be freed rather than left to expire: for at most the flush time-out, also
            // when it is away at this moment (it may be restarting; the link retries every 100 ms now).
            stopping.withLock { $0 = true }
            _ = await withDeadline(Self.shutdownFlushTimeout) { [commits, releases] in
                _ = await commits.waitUntilEmpty()
                return await releases.waitUntilEmpty()
            }
            group.cancelAll()
        }
        if let spool { commits.spool(into: spool, logger: logger) }
    }

    /// Renews the holds of requests in flight every `renewEvery` seconds while connected, until cancelled.
    private func renewLeases() async {
        var last = ContinuousClock.now
        while !Task.isCancelled {
            // Checked every second: the interval comes with the first welcome, after this loop began.
            do { try await Task.sleep(for: .seconds(1)) } catch { return }
            guard ContinuousClock.now - last >= .seconds(renewEvery.withLock { $0 }) else { continue }
            last = ContinuousClock.now
            guard let client = connection.current else { continue }
            do {
                try await renew(on: client, adopt: false)
            } catch {
                logger.warning("cannot renew the holds in flight", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Sends the holds in flight to the control plane; with `adopt`, it installs those it does not know.
    private func renew(on client: WireClient, adopt: Bool) async throws {
        for batch in leases.batches() {
            _ = try await client.call(.renew, payload: BudgetMessages.encode(renewals: batch, adopt: adopt))
        }
    }

    /// Connects and reconnects until cancelled; pushes from the control plane update the tables.
    private func maintainConnection() async {
        var backoff = Duration.milliseconds(100)
        // The tables and what they were compiled from; kept across connections (a new connection starts with a
        // whole snapshot, which replaces them).
        var follower = ConfigFollower(environment: environment)
        while !Task.isCancelled {
            do {
                let client = try await WireClient.connect(
                    path: socketPath, role: .dataPlane, client: "budget-proxyd/\(GatewayVersion.current)",
                    group: group)
                // Before anything else goes over the connection: the holds of requests in flight, which a
                // restarted control plane does not have, so that the budget they hold is not admitted twice.
                do {
                    try await renew(on: client, adopt: true)
                } catch {
                    await client.close()
                    throw error
                }
                if let lifetime = client.welcome.reservationLifetime, lifetime > 0 {
                    renewEvery.withLock { $0 = max(1, lifetime / 3) }
                }
                backoff = .milliseconds(100)
                connection.current = client
                logger.notice(
                    "connected to the control plane",
                    metadata: ["socket": "\(socketPath)", "server": "\(client.welcome.server)"])
                commits.wake()
                releases.wake()
                // Ends when the connection closes, or when the link is cancelled, or on a delta that cannot be
                // applied (a gap): the connection is then closed, and the next one starts with a whole snapshot.
                var resync = false
                for await frame in client.pushes where frame.type == .snapshot || frame.type == .snapshotDelta {
                    guard await apply(frame, to: &follower, current: client.welcome.configVersion) else {
                        resync = true
                        break
                    }
                }
                connection.current = nil
                if Task.isCancelled || resync {
                    await client.close()
                    if Task.isCancelled { return }
                    continue
                }
                logger.warning(
                    "lost the control plane; serving with the last config", metadata: ["socket": "\(socketPath)"])
            } catch {
                connection.current = nil
                logger.warning(
                    "cannot reach the control plane", metadata: ["error": "\(error)", "retry_in": "\(backoff)"])
            }
            // Slept in steps of 100 ms, so that a stop (which waits for the control plane to deliver usage) cuts
            // a long back-off short and retries every 100 ms.
            let started = ContinuousClock.now
            while ContinuousClock.now - started < backoff {
                if stopping.withLock({ $0 }) && ContinuousClock.now - started >= .milliseconds(100) { break }
                do {
                    try await Task.sleep(for: .milliseconds(100))
                } catch {
                    return
                }
            }
            backoff = stopping.withLock { $0 } ? .milliseconds(100) : min(backoff * 2, .seconds(5))
        }
    }

    /// Applies a snapshot or a delta and publishes the resulting tables; false when the connection must be
    /// made again to get a whole snapshot (a delta from another version than the tables', or one that does not
    /// fit them). The tables in force stay as they were until new ones are complete. `current` is the config
    /// version the welcome announced: the first tables count as ready (the proxy starts listening) only once they
    /// reach it, since a connection may start with an older snapshot and the deltas since.
    private func apply(_ frame: WireFrame, to follower: inout ConfigFollower, current: UInt64) async -> Bool {
        let started = ContinuousClock.now
        let outcome: ConfigFollower.Outcome
        do {
            if frame.type == .snapshot {
                // A whole snapshot (100,000 consumers take a second or more to decode and compile) is compiled on
                // NIO's blocking pool: the concurrency executor is the proxy's event loop, whose requests must not
                // wait for it. Deltas are small and applied here.
                let before = follower
                let (after, result) = try await NIOThreadPool.singleton.runIfActive {
                    var compiling = before
                    let result = try compiling.receive(frame)
                    return (compiling, result)
                }
                follower = after
                outcome = result
            } else {
                outcome = try follower.receive(frame)
            }
        } catch {
            // A bad snapshot leaves the tables as they were (the next push may be good); a bad delta means the
            // tables can no longer follow, so the connection is made again for a whole snapshot.
            let delta = frame.type == .snapshotDelta
            logger.error(
                delta ? "bad config delta from the control plane; reconnecting for a whole snapshot"
                    : "bad snapshot from the control plane", metadata: ["error": "\(error)"])
            return !delta
        }
        let elapsed = TimeAmount(ContinuousClock.now - started)
        switch outcome {
        case .snapshot(let entities):
            publish(follower.tables, ready: current)
            logger.notice(
                "config snapshot applied",
                metadata: [
                    "config_version": "\(follower.tables?.version ?? 0)", "entities": "\(entities)",
                    "duration_ms": "\(elapsed.nanoseconds / 1_000_000)",
                ])
            // The decoded snapshot and the old tables are gone by now.
            FreedMemory.release()
        case .delta(let changes, let recompiled):
            publish(follower.tables, ready: current)
            logger.notice(
                "config delta applied",
                metadata: [
                    "config_version": "\(follower.tables?.version ?? 0)", "changes": "\(changes)",
                    "routes_compiled": "\(recompiled)", "duration_ms": "\(elapsed.nanoseconds / 1_000_000)",
                ])
            if changes > 10_000 { FreedMemory.release() }
        case .stale:
            break
        case .gap(let base, let current):
            logger.warning(
                "a config delta was missed; reconnecting for a whole snapshot",
                metadata: ["delta_base": "\(base)", "config_version": "\(current.map(String.init) ?? "none")"])
            return false
        }
        return true
    }

    /// Makes `tables` the ones requests use; signals the first snapshot once they are at version `ready`.
    private func publish(_ tables: ProxyTables?, ready: UInt64) {
        guard let tables else { return }
        tablesBox.withLock { $0 = tables }
        if tables.version >= ready { firstSnapshot.signal() }
    }

    /// Asks for a reservation, within `callTimeout`.
    func reserve(_ request: ReserveRequest) async -> Reservation {
        guard isConnected else { return .unavailable("the control plane is not connected") }
        do {
            let outcome = try await reserves.submit(request)
            if case .admitted(let id, let maxTokens, _) = outcome {
                leases.hold(
                    Lease(
                        id: id, keys: request.rules.map(\.key),
                        units: request.promptUnits + request.unitsPerCompletionToken * Double(maxTokens)))
            }
            return .outcome(outcome)
        } catch {
            return .unavailable("the control plane did not answer: \(error)")
        }
    }

    /// Records real usage; delivered now or after a reconnect.
    /// The request's lease stays in the book until the control plane acknowledges the commit: should the
    /// control plane restart in between, the hold is re-established first and the commit then replaces it,
    /// rather than the restarted control plane admitting work against budget that is already spent.
    func commit(_ commit: BudgetMessages.Commit) {
        commits.add(commit)
    }

    /// Gives a reservation back without charging it (sent in the background; lost ones expire).
    func release(_ id: UInt64) {
        guard id != 0 else { return }
        leases.settle(id)
        releases.add([id])
    }
}

/// The current connection to the control plane, shared by the link and its senders.
final class CurrentConnection: Sendable {
    private let client = Mutex<WireClient?>(nil)

    var current: WireClient? {
        get { client.withLock { $0 } }
        set { client.withLock { $0 = newValue } }
    }
}

/// Sends reservations in batches: a request that arrives while none is in flight is sent at once; requests
/// that arrive while a batch is in flight form the next one. No added latency when idle, one frame for many
/// requests under load. The sending loop is `run()`, a child task of the link.
final class ReserveBatcher: Sendable {
    private typealias Waiter = (request: ReserveRequest, continuation: CheckedContinuation<ReserveOutcome, any Error>)

    private let connection: CurrentConnection
    private let timeout: TimeAmount
    private let releases: ReleaseQueue
    private let logger: Logger
    private let waiting = Mutex<[Waiter]>([])
    private let wakeups: AsyncStream<Void>
    private let wakeup: AsyncStream<Void>.Continuation

    init(connection: CurrentConnection, timeout: TimeAmount, releases: ReleaseQueue, logger: Logger) {
        self.connection = connection
        self.timeout = timeout
        self.releases = releases
        self.logger = logger
        (wakeups, wakeup) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// Queues a request and waits for its outcome.
    func submit(_ request: ReserveRequest) async throws -> ReserveOutcome {
        try await withCheckedThrowingContinuation { continuation in
            waiting.withLock { $0.append((request, continuation)) }
            wakeup.yield()
        }
    }

    /// Sends batches as requests arrive, until cancelled; requests left then fail.
    func run() async {
        for await _ in wakeups {
            while let batch = take() { await send(batch) }
        }
        for waiter in waiting.withLock({ queue in defer { queue = [] }; return queue }) {
            waiter.continuation.resume(throwing: WireClientError.closed("the proxy is stopping"))
        }
    }

    /// The next batch: as many waiting requests as fit in one frame (`BudgetMessages.batchCount`). A request
    /// too large for any frame fails at once, rather than being sent and refused.
    private func take() -> [Waiter]? {
        while true {
            let (batch, unsendable) = waiting.withLock { queue -> ([Waiter]?, Waiter?) in
                guard !queue.isEmpty else { return (nil, nil) }
                let count = BudgetMessages.batchCount(queue) { BudgetMessages.encodedSize($0.request) }
                guard count > 0 else { return (nil, queue.removeFirst()) }
                let batch = Array(queue.prefix(count))
                queue.removeFirst(count)
                return (batch, nil)
            }
            guard let unsendable else { return batch }
            unsendable.continuation.resume(
                throwing: WireClientError.protocolViolation("a reservation too large for a frame"))
        }
    }

    private func send(_ batch: [Waiter]) async {
        do {
            guard let client = connection.current else { throw WireClientError.closed("not connected") }
            // The batch's frame carries the time-out: no timer per request. Should the answer come after it, what
            // it admitted is released at once; otherwise those tokens would stay held until the reservations
            // expire and could refuse the consumer's next requests.
            let releases = self.releases
            let logger = self.logger
            let reply = try await client.call(
                .reserve, payload: BudgetMessages.encode(reserves: batch.map(\.request)), timeout: timeout,
                lateReply: { frame in
                    guard let outcomes = try? BudgetMessages.decodeOutcomes(frame.payload) else { return }
                    let ids = outcomes.compactMap { outcome -> UInt64? in
                        if case .admitted(let id, _, _) = outcome { id } else { nil }
                    }
                    guard !ids.isEmpty else { return }
                    logger.warning(
                        "reservations answered after the time-out are released",
                        metadata: ["reservations": "\(ids.count)"])
                    releases.add(ids)
                })
            let outcomes = try BudgetMessages.decodeOutcomes(reply.payload)
            guard outcomes.count == batch.count else { throw WireClientError.protocolViolation("reply count") }
            for (waiter, outcome) in zip(batch, outcomes) { waiter.continuation.resume(returning: outcome) }
        } catch {
            for waiter in batch { waiter.continuation.resume(throwing: error) }
        }
    }
}

/// Commits in batches, kept (bounded) while the control plane is away; `run()` delivers them.
final class CommitQueue: Sendable {
    private struct State: ~Copyable {
        var queue: [BudgetMessages.Commit] = []
        /// The number of `queue[0]` among all commits ever queued: an acknowledgement removes by number, so a
        /// commit dropped (at the cap) while a batch was in flight cannot make it remove a newer, unsent one.
        var first: UInt64 = 0
        var dropped = 0
        /// The number the next commit gets in this queue's commit stream.
        var nextSequence: UInt64 = 1
        /// Counts changes to `queue`, so a checkpoint writes the spool only when something changed.
        var changes: UInt64 = 0
    }

    /// This queue's commit stream: random, so no two data planes (or two runs of one) share it.
    let source = UInt64.random(in: 1...UInt64.max)

    private let connection: CurrentConnection
    private let leases: LeaseBook
    private let logger: Logger
    private let state = Mutex(State())
    private let empty = Gauge()
    private let wakeups: AsyncStream<Void>
    private let wakeup: AsyncStream<Void>.Continuation

    /// `leases` are settled as their commits are acknowledged (or dropped).
    init(connection: CurrentConnection, leases: LeaseBook, logger: Logger) {
        self.connection = connection
        self.leases = leases
        self.logger = logger
        (wakeups, wakeup) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// Commits not yet acknowledged.
    var count: Int { state.withLock { $0.queue.count } }

    /// Queues a commit, numbered in this queue's stream; past `ControlLink.maxPendingCommits` the oldest is
    /// dropped (and counted in the log).
    func add(_ commit: BudgetMessages.Commit) {
        var commit = commit
        let dropped = state.withLock { state -> Int? in
            var dropped: Int?
            commit.origin = CommitOrigin(source: source, sequence: state.nextSequence)
            state.nextSequence += 1
            state.changes += 1
            if state.queue.count >= ControlLink.maxPendingCommits {
                leases.settle(state.queue.removeFirst().reservation)
                state.first += 1
                state.dropped += 1
                dropped = state.dropped
            } else {
                empty.add(1)
            }
            state.queue.append(commit)
            return dropped
        }
        if let dropped, dropped == 1 || dropped % 1000 == 0 {
            logger.error("usage dropped: the control plane has been away too long", metadata: ["dropped": "\(dropped)"])
        }
        wakeup.yield()
    }

    /// Queues commits read from the spool; they keep their origins (other streams than this queue's, so
    /// their place in the queue does not matter), up to the queue's cap.
    func preload(_ spooled: [BudgetMessages.Commit]) {
        let added = state.withLock { state -> Int in
            let room = max(0, ControlLink.maxPendingCommits - state.queue.count)
            let kept = spooled.suffix(room)
            state.queue.append(contentsOf: kept)
            state.changes += 1
            return kept.count
        }
        empty.add(added)
        wakeup.yield()
    }

    /// Writes the pending commits to `spool` whenever they changed, every `CommitSpool.checkpointInterval`,
    /// until cancelled: what a crash loses is at most that interval's usage.
    func checkpoint(into spool: CommitSpool, logger: Logger) async {
        var written: UInt64 = 0
        while !Task.isCancelled {
            do { try await Task.sleep(for: CommitSpool.checkpointInterval) } catch { return }
            // On NIO's blocking-I/O pool: the file is written and fsynced, and the concurrency executor may be the
            // proxy's event loop (budget-proxyd installs it), which must not wait for a disk.
            let previous = written
            do {
                written = try await NIOThreadPool.singleton.runIfActive {
                    self.spool(into: spool, logger: logger, unlessAt: previous)
                }
            } catch {
                written = self.spool(into: spool, logger: logger, unlessAt: previous)
            }
        }
    }

    /// Writes the pending commits to `spool` (removes it when there are none), unless nothing changed since
    /// change count `unlessAt`; returns the change count written.
    @discardableResult
    func spool(into spool: CommitSpool, logger: Logger, unlessAt previous: UInt64? = nil) -> UInt64 {
        let (pending, changes) = state.withLock { ($0.queue, $0.changes) }
        guard changes != previous else { return changes }
        do {
            try spool.store(pending)
        } catch {
            logger.error("\(error)")
        }
        return changes
    }

    /// Asks `run()` to try again (a connection came up).
    func wake() { wakeup.yield() }

    /// Returns true once nothing is pending; false if cancelled first.
    func waitUntilEmpty() async -> Bool { await empty.waitUntilZero() }

    /// Delivers queued commits whenever there are some and a connection is up, until cancelled. A batch the
    /// control plane refuses while connected (its store, or the fleet's Redis, is away) is tried again after
    /// 200 ms, doubling to 2 s, in the same order: later commits wait behind it.
    func run() async {
        for await _ in wakeups {
            await linger()
            var backoff = Duration.milliseconds(200)
            while await flush() {
                do { try await Task.sleep(for: backoff) } catch { return }
                backoff = min(backoff * 2, .seconds(2))
            }
        }
    }

    /// How long a commit waits for others to share its frame, when fewer than `lingerBelow` are queued.
    static let linger = TimeAmount.milliseconds(2)
    static let lingerBelow = 64

    /// Under light load, waits `linger` before a batch goes, so that the commits of requests finishing close
    /// together share one frame, and the control plane one store transaction: a commit a frame cost the control
    /// plane five times its CPU per request under load. Commits are not on a request's path (its answer has gone),
    /// and its reservation holds the budget meanwhile. On the connection's loop, not a timer thread.
    private func linger() async {
        guard let loop = connection.current?.eventLoop, state.withLock({ $0.queue.count }) < Self.lingerBelow
        else { return }
        try? await loop.scheduleTask(in: Self.linger) {}.futureResult.get()
    }

    /// Sends batches while there are commits and a connection. A batch holds as many commits as fit in one
    /// frame (`BudgetMessages.batchCount`), so the control plane never refuses it for its size; a commit too
    /// large for any frame is dropped and logged rather than resent forever.
    /// Returns true when a batch failed while the connection stayed up (to be tried again after a pause).
    private func flush() async -> Bool {
        while let client = connection.current {
            let (batch, first, unsendable) = state.withLock { state -> ([BudgetMessages.Commit], UInt64, Bool) in
                let count = BudgetMessages.batchCount(state.queue, size: BudgetMessages.encodedSize)
                if count == 0 && !state.queue.isEmpty {
                    leases.settle(state.queue.removeFirst().reservation)
                    state.first += 1
                    state.changes += 1
                    return ([], state.first, true)
                }
                return (Array(state.queue.prefix(count)), state.first, false)
            }
            if unsendable {
                empty.add(-1)
                logger.error("usage dropped: a commit too large for a frame (too many windows or too long names)")
                continue
            }
            guard !batch.isEmpty else { return false }
            do {
                _ = try await client.call(.commit, payload: BudgetMessages.encode(commits: batch))
            } catch {
                // Kept; the next connection flushes them, or the next try on this one.
                if connection.current === client {
                    logger.warning("the control plane could not take usage; trying again", metadata: ["error": "\(error)"])
                    return true
                }
                return false
            }
            let removed = state.withLock { state -> Int in
                // Remove the commits of this batch still queued: numbers first ..< first + batch.count.
                let acknowledgedEnd = first + UInt64(batch.count)
                let stillQueued = acknowledgedEnd > state.first ? acknowledgedEnd - state.first : 0
                let removed = Int(min(UInt64(state.queue.count), stillQueued))
                for commit in state.queue.prefix(removed) { leases.settle(commit.reservation) }
                state.queue.removeFirst(removed)
                state.first += UInt64(removed)
                state.changes += 1
                return removed
            }
            empty.add(-removed)
        }
        return false
    }
}

/// Releases of reservations that were not used, sent in the background by `run()`. Kept while the control
/// plane is away (it may come back with the hold, a connection blip, and the hold would then last until it
/// expires), up to `maxPending` ids; past that the oldest are dropped (they expire).
final class ReleaseQueue: Sendable {
    /// Ids kept while the control plane is away.
    static let maxPending = 100_000

    private let connection: CurrentConnection
    private let pending = Mutex<[UInt64]>([])
    /// Ids queued and not yet sent.
    private let unsent = Gauge()
    private let wakeups: AsyncStream<Void>
    private let wakeup: AsyncStream<Void>.Continuation

    init(connection: CurrentConnection) {
        self.connection = connection
        (wakeups, wakeup) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    func add(_ ids: [UInt64]) {
        let dropped = pending.withLock { pending -> Int in
            pending += ids
            let over = max(0, pending.count - Self.maxPending)
            if over > 0 { pending.removeFirst(over) }
            return over
        }
        unsent.add(ids.count - dropped)
        wakeup.yield()
    }

    /// Returns once every queued release has been sent (at a stop, bounded by the caller).
    func waitUntilEmpty() async -> Bool { await unsent.waitUntilZero() }

    /// Asks `run()` to try again (a connection came up).
    func wake() { wakeup.yield() }

    /// Sends releases as they come, in batches, while connected, until cancelled.
    func run() async {
        for await _ in wakeups {
            while let client = connection.current {
                let batch = pending.withLock { pending -> [UInt64] in
                    let batch = Array(pending.prefix(BudgetMessages.maxBatch))
                    pending.removeFirst(batch.count)
                    return batch
                }
                guard !batch.isEmpty else { break }
                do {
                    _ = try await client.call(.release, payload: BudgetMessages.encode(releases: batch))
                    unsent.add(-batch.count)
                } catch {
                    // Back in front for the next connection (a release applied twice is harmless).
                    pending.withLock { $0.insert(contentsOf: batch, at: 0) }
                    break
                }
            }
        }
    }
}
