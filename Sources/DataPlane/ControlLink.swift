public import BudgetLedger
import BudgetConfig
import DaemonKit
public import BudgetWire
import Foundation
public import NIOCore
public import Logging
import Synchronization

/// The data plane's link to budget-controld: it keeps the latest config snapshot (compiled), and makes
/// the budget calls, batching concurrent ones into one frame.
///
/// When the control plane goes away the proxy keeps serving with the last snapshot; the link reconnects
/// with backoff (100 ms doubling to 5 s). Commits that cannot be delivered are kept (at most
/// `maxPendingCommits`) and sent after the reconnect, so usage is not lost.
public final class ControlLink: Sendable {
    public enum Reservation: Sendable {
        case outcome(ReserveOutcome)
        /// The control plane could not be asked in time; the caller applies its loss policy.
        case unavailable(String)
    }

    public let socketPath: String
    public let callTimeout: Duration
    public static let maxPendingCommits = 100_000
    private let logger: Logger
    private let tablesBox = Mutex<ProxyTables?>(nil)
    private let clientBox = ClientBox()
    private let reserveBatcher: Batcher<ReserveRequest, ReserveOutcome>
    private let commitQueue: CommitQueue

    private let group: any EventLoopGroup

    /// `group` should be the proxy's own: the connection then shares the event loops that requests run on.
    public init(
        socketPath: String, callTimeout: Duration = .seconds(2),
        group: any EventLoopGroup, logger: Logger
    ) {
        self.socketPath = socketPath
        self.callTimeout = callTimeout
        self.group = group
        self.logger = logger
        let clientBox = self.clientBox
        let reserveTimeout = TimeAmount.nanoseconds(
            callTimeout.components.seconds * 1_000_000_000 + callTimeout.components.attoseconds / 1_000_000_000)
        reserveBatcher = Batcher { requests in
            guard let client = clientBox.withLock({ $0 }) else { throw WireClientError.closed("not connected") }
            // The batch's frame carries the time-out: no timer task per request. Should the answer come after it,
            // what it admitted is released at once; otherwise those tokens would stay held until the
            // reservations expire (ten minutes by default) and could refuse the consumer's next requests.
            let reply = try await client.call(
                .reserve, payload: BudgetMessages.encode(reserves: requests), timeout: reserveTimeout,
                lateReply: { frame in
                    guard let outcomes = try? BudgetMessages.decodeOutcomes(frame.payload) else { return }
                    let ids = outcomes.compactMap { outcome -> UInt64? in
                        if case .admitted(let id, _, _) = outcome { id } else { nil }
                    }
                    guard !ids.isEmpty else { return }
                    logger.warning(
                        "reservations answered after the time-out are released",
                        metadata: ["reservations": "\(ids.count)"])
                    Task { _ = try? await client.call(.release, payload: BudgetMessages.encode(releases: ids)) }
                })
            let outcomes = try BudgetMessages.decodeOutcomes(reply.payload)
            guard outcomes.count == requests.count else { throw WireClientError.protocolViolation("reply count") }
            return outcomes
        }
        commitQueue = CommitQueue(clientBox: clientBox, logger: logger)
    }

    /// The compiled config, once the first snapshot has arrived.
    public var tables: ProxyTables? { tablesBox.withLock { $0 } }

    public var isConnected: Bool { clientBox.withLock { $0 != nil } }

    /// Commits waiting for the control plane.
    public func pendingCommits() async -> Int { await commitQueue.count }

    /// Connects and reconnects until the task is cancelled.
    public func run() async {
        var backoff = Duration.milliseconds(100)
        while !Task.isCancelled {
            do {
                let client = try await WireClient.connect(
                    path: socketPath, role: .dataPlane, client: "budget-proxyd/\(ProxyVersion.current)", group: group)
                backoff = .milliseconds(100)
                clientBox.withLock { $0 = client }
                logger.notice(
                    "connected to the control plane",
                    metadata: ["socket": "\(socketPath)", "server": "\(client.welcome.server)"])
                await commitQueue.flush()
                for await frame in client.pushes where frame.type == .snapshot {
                    apply(snapshot: frame)
                }
                clientBox.withLock { $0 = nil }
                logger.warning(
                    "lost the control plane; serving with the last config", metadata: ["socket": "\(socketPath)"])
            } catch {
                clientBox.withLock { $0 = nil }
                logger.warning(
                    "cannot reach the control plane", metadata: ["error": "\(error)", "retry_in": "\(backoff)"])
            }
            try? await Task.sleep(for: backoff)
            backoff = min(backoff * 2, .seconds(5))
        }
    }

    private func apply(snapshot frame: WireFrame) {
        do {
            let snapshot = try WireJSON.decode(ConfigSnapshot.self, from: frame.payload)
            let tables = ProxyTables(version: snapshot.version, state: snapshot.state)
            tablesBox.withLock { $0 = tables }
            logger.notice(
                "config snapshot applied",
                metadata: [
                    "config_version": "\(snapshot.version)",
                    "entities": "\(snapshot.state.count)",
                ])
        } catch {
            logger.error("bad snapshot from the control plane", metadata: ["error": "\(error)"])
        }
        // The decoded snapshot and the old tables are gone by now.
        FreedMemory.release()
    }

    /// Asks for a reservation, within `callTimeout`.
    public func reserve(_ request: ReserveRequest) async -> Reservation {
        guard isConnected else { return .unavailable("the control plane is not connected") }
        do {
            let outcome = try await reserveBatcher.submit(request)
            return .outcome(outcome)
        } catch {
            return .unavailable("the control plane did not answer: \(error)")
        }
    }

    /// Records real usage; delivered now or after a reconnect.
    public func commit(_ commit: BudgetMessages.Commit) async {
        await commitQueue.add(commit)
    }

    public func release(_ id: UInt64) async {
        guard id != 0, let client = clientBox.withLock({ $0 }) else { return }
        _ = try? await client.call(.release, payload: BudgetMessages.encode(releases: [id]))
    }
}

/// Sends items in batches: the first caller sends at once; callers that arrive while a batch is in
/// flight form the next batch. No added latency when idle, one frame for many requests under load.
actor Batcher<Item: Sendable, Result: Sendable> {
    private let send: @Sendable ([Item]) async throws -> [Result]
    private var waiting: [(Item, CheckedContinuation<Result, any Error>)] = []
    private var sending = false

    init(send: @escaping @Sendable ([Item]) async throws -> [Result]) { self.send = send }

    func submit(_ item: Item) async throws -> Result {
        try await withCheckedThrowingContinuation { continuation in
            waiting.append((item, continuation))
            if !sending {
                sending = true
                Task { await self.drain() }
            }
        }
    }

    private func drain() async {
        while !waiting.isEmpty {
            let batch = Array(waiting.prefix(BudgetMessages.maxBatch))
            waiting.removeFirst(batch.count)
            do {
                let results = try await send(batch.map(\.0))
                for (entry, result) in zip(batch, results) { entry.1.resume(returning: result) }
            } catch {
                for entry in batch { entry.1.resume(throwing: error) }
            }
        }
        sending = false
    }
}

/// Commits in batches, kept (bounded) while the control plane is away.
actor CommitQueue {
    private let clientBox: ClientBox
    private let logger: Logger
    private var queue: [BudgetMessages.Commit] = []
    private var sending = false
    private var dropped = 0

    init(clientBox: ClientBox, logger: Logger) {
        self.clientBox = clientBox
        self.logger = logger
    }

    var count: Int { queue.count }

    func add(_ commit: BudgetMessages.Commit) {
        if queue.count >= ControlLink.maxPendingCommits {
            queue.removeFirst()
            dropped += 1
            if dropped == 1 || dropped % 1000 == 0 {
                logger.error(
                    "usage dropped: the control plane has been away too long", metadata: ["dropped": "\(dropped)"])
            }
        }
        queue.append(commit)
        if !sending { Task { await self.flush() } }
    }

    func flush() async {
        guard !sending else { return }
        sending = true
        defer { sending = false }
        while !queue.isEmpty, let client = clientBox.withLock({ $0 }) {
            let batch = Array(queue.prefix(BudgetMessages.maxBatch))
            do {
                _ = try await client.call(.commit, payload: BudgetMessages.encode(commits: batch))
                queue.removeFirst(min(batch.count, queue.count))
            } catch {
                return  // kept; the next connection flushes them
            }
        }
    }
}

public enum ProxyVersion {
    public static let current = "0.1.0"
}

/// The current connection, shared by the link and its queues.
final class ClientBox: Sendable {
    private let client = Mutex<WireClient?>(nil)

    func withLock<T>(_ body: (inout WireClient?) -> T) -> T {
        client.withLock { body(&$0) }
    }
}
