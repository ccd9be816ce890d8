import ArgumentParser
import Synchronization
import BudgetLedger
import BudgetWire
import Foundation
import NIOCore
import NIOPosix

/// `budget-bench`: load generators for the benchmarks (see bench/). Not installed.
@main
struct BudgetBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "budget-bench",
        abstract: "Load generators for the project's benchmarks.",
        subcommands: [ControlThroughput.self, SyncPhases.self, Relay.self])

    /// The client's tasks run on the event loop of its connection, as budget-proxyd's do (NIO's singleton group,
    /// one loop, installed as the concurrency executor): a reply resumes its caller without a hop to another
    /// thread, so the client is not what limits the control plane it measures.
    static func main() async {
        NIOSingletons.groupLoopCountSuggestion = 1
        _ = NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
        await main(nil)
    }
}

/// Reserve+commit pairs per second over control.sock from one pipelining client.
struct ControlThroughput: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "control",
        abstract: "Reserve+commit pairs per second over budget-controld's control socket, on one connection.")

    @Option(help: ArgumentHelp("The control socket.", valueName: "path"))
    var socket: String

    @Option(help: ArgumentHelp("How long to run.", valueName: "seconds"))
    var seconds = 5.0

    @Option(help: ArgumentHelp("Requests in flight on the connection.", valueName: "n"))
    var inFlight = 64

    @Option(help: ArgumentHelp("Pairs per frame (1 = no batching).", valueName: "n"))
    var batch = 1

    @Option(help: ArgumentHelp("Distinct consumers (counters) to spread the load over.", valueName: "n"))
    var consumers = 1000

    @Option(
        help: ArgumentHelp(
            "The plugin (identity key) the counters belong to: one with strategy redis in the synced config measures "
                + "the fleet's Redis.", valueName: "key"))
    var plugin = "bench"

    func run() async throws {
        let client = try await WireClient.connect(path: socket, role: .dataPlane, client: "budget-bench")
        let failures = Counter()
        let plugin = self.plugin
        let deadline = ContinuousClock.now + .seconds(seconds)
        let started = ContinuousClock.now
        let pairs = try await withThrowingTaskGroup(of: Int.self) { group in
            for worker in 0..<inFlight {
                group.addTask {
                    var done = 0
                    var round = 0
                    // Each worker is a commit stream, as a data plane is: its commits carry their origin, so the
                    // control plane keeps (and writes) the stream's mark as it does for budget-proxyd.
                    let source = UInt64.random(in: 1...UInt64.max)
                    var sequence: UInt64 = 0
                    while ContinuousClock.now < deadline {
                        let requests = (0..<batch).map { index in
                            let consumer = (worker * 7919 + round * batch + index) % consumers
                            let key = LimitKey(
                                plugin: plugin, provider: "bedrock", subject: "consumer:c\(consumer)",
                                windowSize: 86400)
                            return ReserveRequest(
                                rules: [WindowRule(key: key, kind: .sliding, limit: 1e12)],
                                enforcement: .soft, promptUnits: 10, unitsPerCompletionToken: 1,
                                maxTokens: 100)
                        }
                        round += 1
                        let reply = try await client.call(.reserve, payload: BudgetMessages.encode(reserves: requests))
                        let outcomes = try BudgetMessages.decodeOutcomes(reply.payload)
                        let commits = zip(requests, outcomes).compactMap { request, outcome -> BudgetMessages.Commit? in
                            guard case .admitted(let id, _, _) = outcome else {
                                // Not a pair: the run fails below rather than count it.
                                failures.add(1)
                                return nil
                            }
                            sequence += 1
                            return BudgetMessages.Commit(
                                reservation: id,
                                charges: request.rules.map {
                                    Charge(key: $0.key, kind: $0.kind, units: 42)
                                },
                                origin: CommitOrigin(source: source, sequence: sequence))
                        }
                        _ = try await client.call(.commit, payload: BudgetMessages.encode(commits: commits))
                        done += commits.count
                    }
                    return done
                }
            }
            return try await group.reduce(0, +)
        }
        let elapsed = ContinuousClock.now - started
        let secondsElapsed = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        print(
            String(
                format: "%d pairs in %.2f s: %.0f reserve+commit pairs/s (in flight %d, batch %d)",
                pairs, secondsElapsed, Double(pairs) / secondsElapsed, inFlight, batch))
        await client.close()
        if failures.value > 0 {
            print("not valid: \(failures.value) reservations were not admitted")
            throw ExitCode.failure
        }
    }
}

/// A count shared by the workers.
final class Counter: Sendable {
    private let count = Mutex(0)
    func add(_ amount: Int) { count.withLock { $0 += amount } }
    var value: Int { count.withLock { $0 } }
}
