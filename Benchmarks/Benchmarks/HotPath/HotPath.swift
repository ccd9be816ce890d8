import Bedrock
import Benchmark
import BudgetConfig
import BudgetLedger
import BudgetStore
import BudgetWire
import ControlPlane
import DataPlane
import Foundation
import Logging
import ServiceLifecycle

/// The per-request pieces of the hot path, each measured with its allocations.
let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(metrics: [.wallClock, .mallocCountTotal, .throughput], maxDuration: .seconds(2))

    let signer = SigV4Signer(credentials: .documentationExample, region: "us-east-1", service: "bedrock")
    let body = Array(#"{"messages":[{"role":"user","content":[{"text":"Hello"}]}],"inferenceConfig":{"maxTokens":4096}}"#.utf8)
    Benchmark("SigV4 sign a Converse request") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(signer.sign(
                method: "POST", path: "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse",
                headers: [("host", "bedrock-runtime.us-east-1.amazonaws.com"), ("content-type", "application/json")],
                body: body, date: AMZDate(epochSeconds: 1_780_000_000)))
        }
    }

    let chat = Array(#"{"model":"anthropic.claude-3-haiku-20240307-v1:0","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"Hello there, how are you today?"}],"max_tokens":256,"temperature":0.5}"#.utf8)
    Benchmark("OpenAI chat -> Converse body") { benchmark in
        for _ in benchmark.scaledIterations {
            if let request = try? ChatCompletionRequest.parse(chat) {
                blackHole(ConverseTranslator.converseBody(request, maxTokens: 256).serializedBytes)
            }
        }
    }

    let frames = (0..<64).flatMap { index in
        EventStreamEncoder.encode(.event("contentBlockDelta", payload: Array(#"{"delta":{"text":"word \#(index) "},"contentBlockIndex":0}"#.utf8)))
    }
    Benchmark("Event-stream decode of 64 frames") { benchmark in
        for _ in benchmark.scaledIterations {
            var decoder = EventStreamDecoder()
            decoder.append(frames)
            while let message = try? decoder.next() { blackHole(message) }
        }
    }

    let key = LimitKey(plugin: "p", provider: "bedrock", subject: "consumer:c", windowSize: 86400)
    let reserve = ReserveRequest(rules: [WindowRule(key: key, kind: .sliding, limit: 1e12)], enforcement: .soft,
                                 promptUnits: 10, unitsPerCompletionToken: 1, maxTokens: 4096)
    Benchmark("Ledger reserve + commit") { benchmark in
        var ledger = Ledger()
        for iteration in benchmark.scaledIterations {
            let now = 1_780_000_000 + Int64(iteration / 1000)
            if case .admitted(let id, _, _) = ledger.reserve(reserve, now: now) {
                ledger.commit(id: id, charges: [Charge(key: key, kind: .sliding, units: 42)], now: now)
            }
        }
    }

    // A key busy all day: a bucket for each of the last 1,440 minutes, as a tier's shared counter has.
    let busyNow: Int64 = 1_780_000_000
    Benchmark("Ledger reserve + commit on a counter busy all day (1,440 buckets)") { benchmark in
        var ledger = Ledger()
        for minute in 0..<1440 {
            ledger.apply(Charge(key: key, kind: .sliding, units: 1), now: busyNow - 86_400 + Int64(minute) * 60 + 60)
        }
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            if case .admitted(let id, _, _) = ledger.reserve(reserve, now: busyNow) {
                ledger.commit(id: id, charges: [Charge(key: key, kind: .sliding, units: 42)], now: busyNow)
            }
        }
    }

    var state = ConfigState()
    state.insert(.consumerGroup(ConsumerGroup(name: "basic")))
    var route = Route(name: "chat")
    route.paths = ["/ai/budget"]
    state.insert(.route(route))
    for index in 0..<100_000 {
        state.insert(.consumer(Consumer(username: "user-\(index)", customID: nil)))
        state.insert(.keyAuth(KeyAuthCredential(consumer: "user-\(index)", keyHash: KeyHash(key: "key-\(index)"))))
        state.insert(.consumerGroupConsumer(ConsumerGroupMembership(consumer: "user-\(index)", group: "basic")))
    }
    let tables = ProxyTables(version: 1, state: state)
    Benchmark("Route and key lookup with 100,000 consumers") { benchmark in
        for iteration in benchmark.scaledIterations {
            blackHole(tables.route(method: "POST", path: "/ai/budget/chat/completions"))
            blackHole(tables.owner(of: "key-\(iteration % 100_000)"))
        }
    }

    // A reserve and its commit over control.sock, to a budget-controld running in this process on a socket in
    // a temporary directory: frame encoding, the Unix socket both ways, the ledger, and the durable commit.
    let server = ControlServerFixture()
    Benchmark(
        "control.sock round trip: reserve + commit",
        configuration: .init(metrics: [.wallClock, .mallocCountTotal, .throughput], maxDuration: .seconds(3)),
        closure: { benchmark in
            guard let client = server.client else { return }
            for _ in benchmark.scaledIterations {
                guard let reply = try? await client.call(.reserve, payload: BudgetMessages.encode(reserves: [reserve])),
                    case .admitted(let id, _, _)? = try? BudgetMessages.decodeOutcomes(reply.payload).first
                else { continue }
                let commit = BudgetMessages.Commit(
                    reservation: id, charges: [Charge(key: key, kind: .sliding, units: 42)])
                blackHole(try? await client.call(.commit, payload: BudgetMessages.encode(commits: [commit])))
            }
        },
        setup: { try await server.start() },
        teardown: { await server.stop() })
}

/// budget-controld's daemon in this process, on sockets in a temporary directory.
final class ControlServerFixture: @unchecked Sendable {
    // @unchecked: set in setup and read by the benchmark afterwards, never at the same time.
    private(set) var client: WireClient?
    private var directory = ""
    private var services: ServiceGroup?
    private var task: Task<Void, any Error>?

    func start() async throws {
        directory = NSTemporaryDirectory() + "budget-bench-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
        var logger = Logger(label: "bench")
        logger.logLevel = .warning
        let daemon = ControlPlaneDaemon(
            options: .init(
                stateDirectory: directory, controlSocket: directory + "/control.sock",
                adminSocket: directory + "/admin.sock", adminGroup: nil, synchronous: .normal,
                reservationLifetime: 600),
            logger: logger, signals: [])
        let services = ServiceGroup(services: [daemon], logger: logger)
        self.services = services
        task = Task { try await services.run() }
        for _ in 0..<200 where !FileManager.default.fileExists(atPath: directory + "/control.sock") {
            try await Task.sleep(for: .milliseconds(10))
        }
        client = try await WireClient.connect(path: directory + "/control.sock", role: .dataPlane, client: "bench")
    }

    func stop() async {
        await client?.close()
        await services?.triggerGracefulShutdown()
        _ = try? await task?.value
        try? FileManager.default.removeItem(atPath: directory)
    }
}
