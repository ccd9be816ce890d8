import BudgetConfig
package import BudgetLedger
package import BudgetRedis
package import BudgetWire
import Foundation
package import NIOCore
package import Logging
import Synchronization

/// What the control plane does with a `strategy: redis` budget while the fleet's Redis cannot be reached
/// (`--on-redis-loss`).
package enum RedisLossPolicy: String, Sendable, CaseIterable {
    /// Such requests get a 503 saying why; usage of requests already running is kept by the data planes and
    /// delivered when Redis is back. Budgets are never exceeded.
    case failClosed = "fail-closed"
    /// Kong's behaviour: each node counts on its own meanwhile (so a fleet of N nodes can admit up to N times a
    /// budget), and the usage reaches Redis when it is back.
    case countLocally = "count-locally"
}

/// The budgets of `strategy: redis` plugins, kept in the fleet's Redis by `BudgetScripts`: each call is one
/// script run (one round trip) for all the requests of one frame, which the data plane already batches.
///
/// Holds are keyed by this node's id and the reservation id this control plane hands out, so reservations of
/// different nodes never meet. Commits are acknowledged only once Redis has applied them; while it is away the
/// data planes keep them (and their spool), and resend them, and the commit marks in Redis make the resends
/// count once.
package final class SharedBudgets: Sendable {
    package let client: RedisClient
    /// The fleet's Redis, as the client connects to it.
    package var endpoint: RedisEndpoint { client.endpoint }
    /// Where reservation deadlines are kept.
    private let eventLoop: any EventLoop
    /// This node's id in reservation keys: random per store, so it survives restarts.
    package let node: String
    package let lifetime: Int64
    package let policy: RedisLossPolicy
    private let logger: Logger
    private let state = Mutex(LossState())

    /// While Redis is away: since when, the ledger that counts meanwhile (count-locally), and totals.
    private struct LossState {
        var since: ContinuousClock.Instant?
        var fallback: Ledger?
        var seconds: Double = 0
        var units: Double = 0
        var episodes = 0
    }

    /// Frames waiting for the reserve and commit calls in flight.
    private let reserves: Coalescer<ReserveJob>
    private let commitQueue: Coalescer<CommitJob>

    package init(
        client: RedisClient, node: String, lifetime: Int64, policy: RedisLossPolicy, eventLoop: any EventLoop,
        logger: Logger
    ) {
        // Bounded by requests per call (the script's arguments), not by frames: a frame holds at most
        // `BudgetMessages.maxBatch` requests.
        reserves = Coalescer(maxWeight: 512) { $0.requests.count }
        commitQueue = Coalescer(maxWeight: 512) { $0.commits.count }
        self.eventLoop = eventLoop
        self.client = client
        self.node = node
        self.lifetime = lifetime
        self.policy = policy
        self.logger = logger
        reserves.start { [weak self] jobs in await self?.send(jobs) }
        commitQueue.start { [weak self] jobs in await self?.send(jobs) }
    }

    /// Seconds spent without Redis (the current episode included), units counted locally meanwhile, and how
    /// many times Redis was lost.
    package var loss: (away: Bool, seconds: Double, units: Double, episodes: Int) {
        state.withLock { state in
            let current = state.since.map { Self.seconds(ContinuousClock.now - $0) } ?? 0
            return (state.since != nil, state.seconds + current, state.units, state.episodes)
        }
    }

    private static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    // MARK: - Calls

    /// A frame's reservations waiting for their script call.
    private struct ReserveJob: Sendable {
        var requests: [ReserveRequest]
        var ids: [UInt64]
        var done: @Sendable ([ReserveOutcome]) -> Void
        /// Taken by whichever answers first: Redis, or the deadline.
        let answered = Once()
        var deadline: Scheduled<Void>?

        /// True the first time only.
        func claim() -> Bool { answered.claim() }
    }

    /// A frame's commits waiting for their script call.
    private struct CommitJob: Sendable {
        var commits: [BudgetMessages.Commit]
        var done: @Sendable (Result<Void, any Error>) -> Void
    }

    /// Reserves `requests` under reservation `ids` (taken from the local ledger), calling `done` with their
    /// outcomes in order, from whichever thread the reply arrives on. Frames that arrive while a call is in
    /// flight go together in the next call: one round trip per batch, however many frames.
    package func reserve(
        _ requests: [ReserveRequest], ids: [UInt64], done: @escaping @Sendable ([ReserveOutcome]) -> Void
    ) {
        // While Redis has not answered a call still in flight (it stalls, or is unreachable), later frames are
        // answered by the policy at once rather than each waiting for its deadline behind it.
        if reserves.isBusy, let since = state.withLock({ $0.since }) {
            let waited = Self.seconds(ContinuousClock.now - since)
            let error = SharedBudgetError("no answer since \(String(format: "%.1f", waited)) s ago")
            return done(lost(error, reserving: requests, ids: ids))
        }
        var job = ReserveJob(requests: requests, ids: ids, done: done, deadline: nil)
        // Answered by the deadline whatever Redis does, so that the data plane hears why (rather than give up
        // on the control plane first); should Redis admit after it, those holds are released at once.
        let answered = job
        job.deadline = eventLoop.scheduleTask(in: reserveDeadline) {
            guard answered.claim() else { return }
            let error = SharedBudgetError("no answer within \(self.reserveDeadline.nanoseconds / 1_000_000) ms")
            done(self.lost(error, reserving: requests, ids: ids))
        }
        reserves.submit(job)
    }

    /// One script call for the reservations of several frames.
    private func send(_ jobs: [ReserveJob]) async {
        let arguments = Self.reserveArguments(
            node: node, lifetime: lifetime, requests: jobs.flatMap(\.requests), ids: jobs.flatMap(\.ids))
        do {
            let reply = try await client.run(BudgetScripts.reserve, keys: [], arguments: arguments)
            let outcomes = try Self.outcomes(
                reply, requests: jobs.flatMap(\.requests), ids: jobs.flatMap(\.ids))
            reached()
            var offset = 0
            for job in jobs {
                let mine = Array(outcomes[offset..<offset + job.requests.count])
                offset += job.requests.count
                job.deadline?.cancel()
                if job.claim() {
                    job.done(mine)
                } else {
                    let late = mine.compactMap { outcome -> UInt64? in
                        if case .admitted(let id, _, _) = outcome { id } else { nil }
                    }
                    if !late.isEmpty { release(late) { _ in } }
                }
            }
        } catch {
            // Redis may still run the call (it was sent; a stalled server reads it when it resumes): its holds, if
            // any, are released once Redis answers again.
            doubt(jobs.flatMap(\.ids))
            for job in jobs {
                job.deadline?.cancel()
                guard job.claim() else { continue }
                job.done(lost(error, reserving: job.requests, ids: job.ids))
            }
        }
    }

    /// Reservation ids whose script call failed after it was sent: Redis may have granted them.
    private let doubtful = Mutex<[UInt64]>([])
    /// Doubtful ids kept at most (older ones are left to their lease's expiry).
    static let maxDoubtful = 100_000

    private func doubt(_ ids: [UInt64]) {
        doubtful.withLock { doubtful in
            doubtful += ids
            if doubtful.count > Self.maxDoubtful { doubtful.removeFirst(doubtful.count - Self.maxDoubtful) }
        }
    }

    /// Releases the doubtful holds, after Redis has had time to run what it read before it stalled (1 s, and
    /// again 10 s later: a release of a hold that is not there changes nothing).
    private func releaseDoubtful() {
        let ids = doubtful.withLock { doubtful in defer { doubtful = [] }; return doubtful }
        guard !ids.isEmpty else { return }
        Task {
            for pause in [Duration.seconds(1), .seconds(10)] {
                try? await Task.sleep(for: pause)
                for start in stride(from: 0, to: ids.count, by: 1000) {
                    self.release(Array(ids[start..<min(ids.count, start + 1000)])) { _ in }
                }
            }
            self.logger.notice(
                "holds Redis may have granted after their reservations failed were released",
                metadata: ["reservations": "\(ids.count)"])
        }
    }

    /// How long a reservation waits for Redis before the loss policy answers it: 1.5 s, or the `redis` block's
    /// `read_timeout` when shorter; below budget-proxyd's `--control-timeout-ms` (default 2 s), so that the
    /// client's 503 says that Redis is the cause.
    var reserveDeadline: TimeAmount {
        TimeAmount(min(endpoint.readTimeout + endpoint.connectTimeout, .milliseconds(1500)))
    }

    /// Applies `commits` in Redis (once each, by their origins), calling `done` when Redis has them; frames that
    /// arrive while a call is in flight go together in the next.
    package func commit(_ commits: [BudgetMessages.Commit], done: @escaping @Sendable (Result<Void, any Error>) -> Void) {
        commitQueue.submit(CommitJob(commits: commits, done: done))
    }

    /// One script call for the commits of several frames.
    private func send(_ jobs: [CommitJob]) async {
        let commits = jobs.flatMap(\.commits)
        let arguments = Self.commitArguments(node: node, commits: commits)
        do {
            let reply =
                endpoint.sentinel == nil
                ? try await client.run(BudgetScripts.commit, keys: [], arguments: arguments)
                : try await runReplicated(BudgetScripts.commit, arguments: arguments)
            guard let applied = reply.array, applied.count == commits.count else {
                throw SharedBudgetError("the commit script answered \(Self.describe(reply))")
            }
            reached()
            for job in jobs { job.done(.success(())) }
        } catch {
            lost(error, committing: commits)
            let failure = SharedBudgetError(unavailableReason(error))
            for job in jobs { job.done(.failure(failure)) }
        }
    }

    /// Runs `script` and, in the same pipeline, `WAIT 1`: the reply counts only once a replica has the write too.
    /// Behind Sentinel a failover promotes a replica, and what the old master had not passed on is lost; a commit
    /// is therefore acknowledged only once it is on a replica, and otherwise sent again by the data plane (its
    /// commit mark keeps it from counting twice). A master whose replicas are gone (it was just replaced) fails
    /// the commit in the same way.
    private func runReplicated(_ script: RedisScript, arguments: [String]) async throws -> RESPValue {
        let wait = RedisCommand("WAIT", ["1", String(Self.replicationWaitMilliseconds)])
        let call = RedisCommand("EVALSHA", [script.sha1, "0"] + arguments)
        var replies = try await client.send([call, wait])
        if case .error(let message) = replies.first, message.hasPrefix("NOSCRIPT") {
            _ = try await client.send(RedisCommand("SCRIPT", ["LOAD", script.source]))
            replies = try await client.send([call, wait])
        }
        guard replies.count == 2 else { throw SharedBudgetError("a replicated call answered \(replies.count) replies") }
        guard let replicas = replies[1].int, replicas >= 1 else {
            throw SharedBudgetError(
                "the write is on the master \(client.health.address ?? "?") but on no replica within "
                    + "\(Self.replicationWaitMilliseconds) ms (WAIT answered \(Self.describe(replies[1]))); it is sent again")
        }
        return replies[0]
    }

    /// How long a commit waits for a replica behind Sentinel.
    static let replicationWaitMilliseconds = 1000

    /// Frees holds in Redis; `done` gets the failure when Redis is away (the data plane sends them again).
    package func release(_ ids: [UInt64], done: @escaping @Sendable (Result<Void, any Error>) -> Void) {
        Task {
            do {
                _ = try await self.client.run(
                    BudgetScripts.release, keys: [], arguments: [self.node] + ids.map { String($0) })
                self.reached()
                done(.success(()))
            } catch {
                self.lost(error) { ledger, now in
                    for id in ids { ledger.release(id: id, now: now) }
                    return 0
                }
                done(.failure(SharedBudgetError(self.unavailableReason(error))))
            }
        }
    }

    /// Renews (with `adopt`, re-installs) holds in Redis; calls `done` with how many are held. Never fails: a
    /// data plane that cannot renew while Redis is away must still connect for its local budgets.
    package func renew(_ leases: [Lease], adopt: Bool, done: @escaping @Sendable (Int) -> Void) {
        var arguments = [node, String(lifetime), adopt ? "1" : "0", String(leases.count)]
        for lease in leases {
            arguments += [String(lease.id), Self.number(lease.units), String(lease.keys.count)]
            arguments += lease.keys.map(\.description)
        }
        Task {
            do {
                let reply = try await self.client.run(BudgetScripts.renew, keys: [], arguments: arguments)
                self.reached()
                done(Int(reply.int ?? 0))
            } catch {
                let held = Mutex(0)
                self.lost(error) { ledger, now in
                    held.withLock { $0 = ledger.renew(leases, adopt: adopt, now: now) }
                    return 0
                }
                done(held.withLock { $0 })
            }
        }
    }

    /// Usage, holds and next reset of `rules`' counters, as Redis has them.
    package func read(_ rules: [WindowRule]) async throws(RedisError) -> [(used: Double, held: Double, reset: Int64?)] {
        guard !rules.isEmpty else { return [] }
        var arguments = [String(rules.count)]
        for rule in rules {
            arguments += [rule.key.description, rule.kind == .fixed ? "f" : "s", String(rule.key.windowSize)]
        }
        let reply = try await client.run(BudgetScripts.read, keys: [], arguments: arguments)
        guard let rows = reply.array, rows.count == rules.count else {
            throw RedisError(kind: .protocolViolation, message: "the read script answered \(Self.describe(reply))")
        }
        return rows.map { row in
            let fields = (row.string ?? "").split(separator: " ").map { Double($0) ?? 0 }
            let reset = fields.count > 2 && fields[2] > 0 ? Int64(fields[2]) : nil
            return (fields.first ?? 0, fields.count > 1 ? fields[1] : 0, reset)
        }
    }

    /// Forgets the usage of `subject` (`consumer:<name>`) in Redis, keeping the holds of its requests in flight;
    /// returns how many counters had usage.
    package func removeCounters(subject: String) async throws(RedisError) -> Int {
        let pattern = "budget:c:*|" + Self.globEscaped(subject) + "|*"
        var cursor = "0"
        var removed = 0
        repeat {
            let reply = try await client.send(RedisCommand("SCAN", [cursor, "MATCH", pattern, "COUNT", "1000"]))
            guard let parts = reply.array, parts.count == 2, let next = parts[0].string, let keys = parts[1].array else {
                throw RedisError(kind: .protocolViolation, message: "SCAN answered \(Self.describe(reply))")
            }
            cursor = next
            let names = keys.compactMap(\.string)
            if !names.isEmpty {
                // Usage goes, holds of requests in flight stay (their commits take them off again).
                let reply = try await client.run(BudgetScripts.reset, keys: [], arguments: names)
                removed += Int(reply.int ?? 0)
            }
        } while cursor != "0"
        return removed
    }

    // MARK: - Redis away

    /// Redis answered: an episode without it ends (its fallback counts are dropped: the data planes resend
    /// what they have not had acknowledged, and Redis counts it).
    private func reached() {
        let ended = state.withLock { state -> Double? in
            guard let since = state.since else { return nil }
            let seconds = Self.seconds(ContinuousClock.now - since)
            state.seconds += seconds
            state.since = nil
            state.fallback = nil
            return seconds
        }
        if ended != nil { releaseDoubtful() }
        if let ended {
            logger.notice(
                "the fleet's Redis is back", metadata: ["redis": "\(endpoint.description)", "away_seconds": "\(ended)"])
        }
    }

    /// Notes a failed call (an episode without Redis begins) and, when counting locally, runs `body` on the
    /// fallback ledger; `body` returns the units it counted.
    private func lost(_ error: any Error, _ body: (inout Ledger, Int64) -> Double = { _, _ in 0 }) {
        let now = BudgetDesk.now()
        let began = state.withLock { state -> Bool in
            let began = state.since == nil
            if began {
                state.since = .now
                state.episodes += 1
            }
            if policy == .countLocally {
                // Its ids never match the local ledger's (another boot tag): every lease it is given is foreign,
                // so it adopts them all.
                var ledger = state.fallback ?? Ledger(boot: UInt64.random(in: 0..<Ledger.bootNumbers))
                ledger.reservationLifetime = lifetime
                state.units += body(&ledger, now)
                state.fallback = ledger
            }
            return began
        }
        if began {
            logger.error(
                "the fleet's Redis cannot be reached",
                metadata: ["redis": "\(endpoint.description)", "error": "\(error)", "policy": "\(policy.rawValue)"])
        }
    }

    private func lost(_ error: any Error, committing commits: [BudgetMessages.Commit]) {
        lost(error) { ledger, now in
            var units = 0.0
            var buckets: [BucketUsage] = []
            for commit in commits {
                let (_, applied) = ledger.commit(
                    id: commit.reservation, origin: commit.origin, charges: commit.charges, now: now,
                    appendingTo: &buckets)
                if applied { units += commit.charges.reduce(0) { $0 + max(0, $1.units) } }
            }
            return units
        }
    }

    private func lost(_ error: any Error, reserving requests: [ReserveRequest], ids: [UInt64]) -> [ReserveOutcome] {
        switch policy {
        case .failClosed:
            lost(error)
            let reason = unavailableReason(error)
            return requests.map { _ in .unavailable(reason: reason) }
        case .countLocally:
            var outcomes: [ReserveOutcome] = []
            lost(error) { ledger, now in
                outcomes = zip(requests, ids).map { ledger.reserve($0, now: now, id: $1) }
                return 0
            }
            return outcomes
        }
    }

    private func unavailableReason(_ error: any Error) -> String {
        switch policy {
        case .failClosed:
            "budget store unavailable: the fleet's Redis (\(endpoint.description)) cannot be reached (\(error)); "
                + "requests under its budgets are refused until it is back (budget-controld --on-redis-loss fail-closed)"
        case .countLocally:
            "the fleet's Redis (\(endpoint.description)) cannot be reached (\(error)); this node counts on its own "
                + "until it is back (budget-controld --on-redis-loss count-locally), and the usage is sent again then"
        }
    }

    // MARK: - Encoding

    /// `BudgetScripts.reserve`'s arguments for `requests`, held as `node:id` with `ids`.
    static func reserveArguments(node: String, lifetime: Int64, requests: [ReserveRequest], ids: [UInt64]) -> [String] {
        var arguments = [node, String(lifetime), String(requests.count)]
        for (request, id) in zip(requests, ids) {
            arguments += [
                String(id), request.enforcement == .hard ? "h" : "s", number(request.promptUnits),
                number(request.unitsPerCompletionToken), String(request.maxTokens), String(request.rules.count),
            ]
            for rule in request.rules {
                arguments += [
                    rule.key.description, rule.kind == .fixed ? "f" : "s", String(rule.key.windowSize),
                    number(rule.limit),
                ]
            }
        }
        return arguments
    }

    /// `BudgetScripts.commit`'s arguments for `commits` of reservations held as `node:id`.
    static func commitArguments(node: String, commits: [BudgetMessages.Commit]) -> [String] {
        var arguments = [node, String(BudgetDesk.commitMarkLifetime), String(commits.count)]
        for commit in commits {
            arguments += [
                String(commit.reservation), String(commit.origin.source), String(commit.origin.sequence),
                String(commit.charges.count),
            ]
            for charge in commit.charges {
                arguments += [
                    charge.key.description, charge.kind == .fixed ? "f" : "s", String(charge.key.windowSize),
                    number(charge.units),
                ]
            }
        }
        return arguments
    }

    /// A number as the scripts read it: shortest exact form.
    static func number(_ value: Double) -> String { value.isFinite ? "\(value)" : "0" }

    static func describe(_ value: RESPValue) -> String {
        switch value {
        case .error(let message): return "an error: \(message)"
        default: return "\(value)".prefix(200).description
        }
    }

    static func globEscaped(_ text: String) -> String {
        var out = ""
        for character in text {
            if "*?[]\\^".contains(character) { out.append("\\") }
            out.append(character)
        }
        return out
    }

    /// The reserve script's lines as outcomes.
    static func outcomes(_ reply: RESPValue, requests: [ReserveRequest], ids: [UInt64]) throws -> [ReserveOutcome] {
        guard let lines = reply.array, lines.count == requests.count else {
            throw SharedBudgetError("the reserve script answered \(describe(reply))")
        }
        var outcomes: [ReserveOutcome] = []
        outcomes.reserveCapacity(requests.count)
        for ((line, request), id) in zip(zip(lines, requests), ids) {
            let fields = (line.string ?? "").split(separator: " ")
            guard fields.count == 2 + 3 * request.rules.count, let number = Int(fields[1]) else {
                throw SharedBudgetError("the reserve script answered \(describe(line))")
            }
            var windows: [WindowStatus] = []
            var exceeded: [LimitKey] = []
            for (index, rule) in request.rules.enumerated() {
                let base = 2 + 3 * index
                windows.append(
                    WindowStatus(
                        key: rule.key, limit: rule.limit, remaining: Double(fields[base]) ?? 0,
                        reset: Int64(fields[base + 1]) ?? 0))
                if fields[base + 2] == "1" { exceeded.append(rule.key) }
            }
            if fields[0] == "A" {
                outcomes.append(.admitted(id: id, maxTokens: number, windows: windows))
            } else {
                outcomes.append(.refused(windows: windows, retryAfter: number, exceeded: exceeded))
            }
        }
        return outcomes
    }
}

/// A shared-budget call that failed: what a data plane's error reply says.
package struct SharedBudgetError: Error, CustomStringConvertible {
    package var description: String
    package init(_ description: String) { self.description = description }
}

/// Jobs sent in batches, one batch in flight at a time: a job that arrives while none is in flight is sent at
/// once; jobs that arrive meanwhile form the next batch (up to `maxWeight`, by `weight`). No added latency when
/// idle, one call for many jobs under load.
final class Coalescer<Job: Sendable>: Sendable {
    private struct State {
        var running = false
        var pending: [Job] = []
    }

    private let state = Mutex(State())
    private let maxWeight: Int
    private let weight: @Sendable (Job) -> Int
    private let sender = Mutex<(@Sendable ([Job]) async -> Void)?>(nil)

    init(maxWeight: Int, weight: @escaping @Sendable (Job) -> Int) {
        self.maxWeight = maxWeight
        self.weight = weight
    }

    /// Whether a batch is in flight.
    var isBusy: Bool { state.withLock { $0.running } }

    /// Sets what sends a batch (before the first `submit`).
    func start(_ send: @escaping @Sendable ([Job]) async -> Void) { sender.withLock { $0 = send } }

    func submit(_ job: Job) {
        let start = state.withLock { state -> Bool in
            state.pending.append(job)
            guard !state.running else { return false }
            state.running = true
            return true
        }
        guard start, let send = sender.withLock({ $0 }) else { return }
        Task { await self.drain(send) }
    }

    private func drain(_ send: @Sendable ([Job]) async -> Void) async {
        while let batch = take() { await send(batch) }
    }

    /// The next batch, or nil (and not running) when nothing waits.
    private func take() -> [Job]? {
        state.withLock { state -> [Job]? in
            guard !state.pending.isEmpty else {
                state.running = false
                return nil
            }
            var total = 0
            var count = 0
            for job in state.pending {
                let next = weight(job)
                if count > 0 && total + next > maxWeight { break }
                total += next
                count += 1
            }
            let batch = Array(state.pending.prefix(count))
            state.pending.removeFirst(count)
            return batch
        }
    }
}

/// A flag taken once.
final class Once: Sendable {
    private let taken = Mutex(false)

    /// True the first time only.
    func claim() -> Bool { taken.withLock { taken in defer { taken = true }; return !taken } }
}
