import BudgetLedger
import BudgetRedis
import BudgetWire
import Foundation
import Logging
import NIOCore
import NIOPosix
import TestSupport
import Testing

@testable import ControlPlane

/// The budget scripts against the ledger they claim to mirror: the same random operations (soft and hard
/// reservations over one or two windows, commits with resends, releases, adoptions) through `Ledger` and
/// through `BudgetScripts` on a real redis-server, outcome by outcome.
@Suite("The fleet's budget scripts do the ledger's arithmetic", .serialized)
struct ScriptLedgerTests {
    struct Generator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    /// Runs `body` with a client of a redis-server of its own, stopped afterwards (also when `body` throws).
    static func withRedis(_ body: (RedisClient) async throws -> Void) async throws {
        let server = try await RedisServer.started()
        defer {
            server.stop()
            server.remove()
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let client = RedisClient(
            endpoint: RedisEndpoint(host: "127.0.0.1", port: server.port), eventLoopGroup: group,
            logger: Logger(label: "test"))
        do {
            try await body(client)
        } catch {
            await client.close()
            try? await group.shutdownGracefully()
            throw error
        }
        await client.close()
        try? await group.shutdownGracefully()
    }

    /// Redis's clock, in epoch seconds.
    static func redisTime(_ client: RedisClient) async throws -> Int64 {
        let reply = try await client.send(RedisCommand("TIME", []))
        guard let seconds = reply.array?.first?.int else { throw TestFailure("TIME answered \(reply)") }
        return seconds
    }

    @Test("800 random operations give the same outcomes, usage and holds", arguments: [1, 2, 3])
    func sameArithmetic(seed: UInt64) async throws {
        try await Self.withRedis { client in
            // Buckets of a year's sliding window are 21,900 s long: a run that crosses one (rare) compares different
            // buckets, so it is run again.
            for attempt in 0..<3 {
                _ = try await client.send(RedisCommand("FLUSHALL", []))
                let start = try await Self.redisTime(client)
                let mismatches = try await run(seed: seed, client: client)
                let end = try await Self.redisTime(client)
                if start / 21_900 != end / 21_900 && attempt < 2 { continue }
                #expect(mismatches == [], "seed \(seed)")
                return
            }
        }
    }

    /// A soft one-rule reservation of `units` prompt units, as `SharedBudgets` sends it.
    static func reserveArguments(id: UInt64, key: LimitKey, lifetime: Int64, units: Double) -> [String] {
        let request = ReserveRequest(
            rules: [WindowRule(key: key, kind: .sliding, limit: 100_000)], enforcement: .soft, promptUnits: units,
            unitsPerCompletionToken: 0, maxTokens: 1)
        return SharedBudgets.reserveArguments(node: "n1", lifetime: lifetime, requests: [request], ids: [id])
    }

    /// A commit of `units` on `key` in stream 9, as `SharedBudgets` sends it.
    static func commitArguments(id: UInt64, sequence: UInt64, key: LimitKey, units: Double) -> [String] {
        let commit = BudgetMessages.Commit(
            reservation: id, charges: [Charge(key: key, kind: .sliding, units: units)],
            origin: CommitOrigin(source: 9, sequence: sequence))
        return SharedBudgets.commitArguments(node: "n1", commits: [commit])
    }

    /// Usage and holds of `key` as the read script reports them.
    static func usage(_ client: RedisClient, _ key: LimitKey) async throws -> (used: Double, held: Double) {
        let reply = try await client.run(
            BudgetScripts.read, keys: [], arguments: ["1", key.description, "s", String(key.windowSize)])
        let fields = (reply.array?.first?.string ?? "").split(separator: " ").compactMap { Double($0) }
        guard fields.count == 3 else { throw TestFailure("read answered \(reply)") }
        return (fields[0], fields[1])
    }

    @Test("a hold whose lease ran out is released by the next call, however long Redis was idle (its key has no expiry)")
    func expiredHoldIsReleased() async throws {
        try await Self.withRedis { client in
            let key = LimitKey(plugin: "p", provider: "bedrock", subject: "consumer:c", windowSize: 86400)
            let reply = try await client.run(
                BudgetScripts.reserve, keys: [], arguments: Self.reserveArguments(id: 7, key: key, lifetime: 1, units: 300))
            #expect(reply.array?.first?.string?.hasPrefix("A ") == true)
            // A key that expired by itself before the next call would leave its 300 units held for good.
            #expect(try await client.send(RedisCommand("TTL", ["budget:r:n1:7"])).int == -1)
            #expect(try await Self.usage(client, key).held == 300)
            try await Task.sleep(for: .seconds(2.2))
            #expect(try await Self.usage(client, key).held == 0)
            #expect(try await client.send(RedisCommand("EXISTS", ["budget:r:n1:7"])).int == 0)
        }
    }

    @Test("a usage reset forgets usage but keeps the holds of requests in flight, which their commits take off")
    func resetKeepsHolds() async throws {
        try await Self.withRedis { client in
            let key = LimitKey(plugin: "p", provider: "bedrock", subject: "consumer:c", windowSize: 86400)
            _ = try await client.run(
                BudgetScripts.reserve, keys: [], arguments: Self.reserveArguments(id: 1, key: key, lifetime: 600, units: 50))
            _ = try await client.run(
                BudgetScripts.commit, keys: [],
                arguments: Self.commitArguments(id: 1, sequence: 1, key: key, units: 40))
            _ = try await client.run(
                BudgetScripts.reserve, keys: [], arguments: Self.reserveArguments(id: 2, key: key, lifetime: 600, units: 70))
            #expect(try await Self.usage(client, key) == (40, 70))
            let reset = try await client.run(BudgetScripts.reset, keys: [], arguments: ["budget:c:" + key.description])
            #expect(reset.int == 1)
            #expect(try await Self.usage(client, key) == (0, 70))
            _ = try await client.run(
                BudgetScripts.commit, keys: [],
                arguments: Self.commitArguments(id: 2, sequence: 2, key: key, units: 60))
            #expect(try await Self.usage(client, key) == (60, 0))
        }
    }

    /// Runs the operations through both; returns the differences found.
    /// The ledger is given Redis's clock as read before each step (the scripts read it themselves).
    private func run(seed: UInt64, client: RedisClient) async throws -> [String] {
        var random = Generator(state: seed)
        var ledger = Ledger(boot: 5)
        ledger.reservationLifetime = 600
        let node = "n1"
        let sizes = [31_536_000, 31_536_000, 86400]
        let keys = (0..<3).map {
            LimitKey(plugin: "p", provider: "bedrock", subject: "consumer:c\($0)", windowSize: sizes[$0])
        }
        let kinds: [WindowKind] = [.sliding, .sliding, .fixed]
        let limits: [Double] = [5_000, 20_000, 9_000]
        var open: [(ledgerID: UInt64, redisID: UInt64, rules: [WindowRule], hold: Double)] = []
        var nextRedisID: UInt64 = 1
        var sequence: UInt64 = 0
        var mismatches: [String] = []

        func call(_ script: RedisScript, _ arguments: [String]) async throws -> RESPValue {
            let reply = try await client.run(script, keys: [], arguments: arguments)
            if case .error(let message) = reply { throw TestFailure("script error: \(message)") }
            return reply
        }

        var now = try await Self.redisTime(client)
        for step in 0..<800 {
            now = try await Self.redisTime(client)
            switch Int.random(in: 0..<10, using: &random) {
            case 0..<5:
                let first = Int.random(in: 0..<3, using: &random)
                var indexes = [first]
                if Bool.random(using: &random) { indexes.append((first + 1) % 3) }
                let rules = indexes.map { WindowRule(key: keys[$0], kind: kinds[$0], limit: limits[$0]) }
                let request = ReserveRequest(
                    rules: rules, enforcement: Bool.random(using: &random) ? .hard : .soft,
                    promptUnits: Double(Int.random(in: 0...400, using: &random)),
                    unitsPerCompletionToken: [0, 1, 1, 0.5][Int.random(in: 0..<4, using: &random)],
                    maxTokens: Int.random(in: 1...2_000, using: &random))
                let expected = ledger.reserve(request, now: now)
                let id = nextRedisID
                nextRedisID += 1
                let reply = try await call(
                    BudgetScripts.reserve,
                    SharedBudgets.reserveArguments(node: node, lifetime: 600, requests: [request], ids: [id]))
                let got = try SharedBudgets.outcomes(reply, requests: [request], ids: [id])[0]
                // The second may have turned between reading the clock and the script: waits that much shorter.
                let ticked = try await Self.redisTime(client) - now
                switch (expected, got) {
                case (.admitted(let ledgerID, let maxTokens, let windows), .admitted(_, let redisMax, let redisWindows)):
                    if maxTokens != redisMax || windows != redisWindows {
                        mismatches.append("step \(step): admitted \(maxTokens) \(windows) vs \(redisMax) \(redisWindows)")
                    }
                    open.append(
                        (ledgerID, id, rules, request.promptUnits + request.unitsPerCompletionToken * Double(maxTokens)))
                case (.refused(let windows, let retry, let exceeded), .refused(let redisWindows, let redisRetry, let redisExceeded)):
                    if windows != redisWindows || !(0...ticked).contains(Int64(retry - redisRetry))
                        || Set(exceeded) != Set(redisExceeded)
                    {
                        mismatches.append(
                            "step \(step): refused \(retry) \(windows) \(exceeded) vs \(redisRetry) \(redisWindows) \(redisExceeded)")
                    }
                default:
                    mismatches.append("step \(step): \(expected) vs \(got)")
                }
            case 5..<8 where !open.isEmpty:
                let index = Int.random(in: 0..<open.count, using: &random)
                let reservation = open.remove(at: index)
                sequence += 1
                let units = Double(Int.random(in: 0...Int(max(1, reservation.hold)), using: &random))
                let charges = reservation.rules.map { Charge(key: $0.key, kind: $0.kind, units: units) }
                // Every fifth commit is sent twice: the second must change nothing.
                let times = step % 5 == 0 ? 2 : 1
                for _ in 0..<times {
                    ledger.commit(
                        id: reservation.ledgerID, origin: CommitOrigin(source: 77, sequence: sequence), charges: charges,
                        now: now)
                    let commit = BudgetMessages.Commit(
                        reservation: reservation.redisID, charges: charges,
                        origin: CommitOrigin(source: 77, sequence: sequence))
                    _ = try await call(
                        BudgetScripts.commit, SharedBudgets.commitArguments(node: node, commits: [commit]))
                }
            case 8 where !open.isEmpty:
                let reservation = open.remove(at: Int.random(in: 0..<open.count, using: &random))
                ledger.release(id: reservation.ledgerID, now: now)
                _ = try await call(BudgetScripts.release, [node, String(reservation.redisID)])
            default:
                // A hold adopted after a restart: renewed as a lease with its units.
                let units = Double(Int.random(in: 1...300, using: &random))
                let key = keys[Int.random(in: 0..<3, using: &random)]
                let foreign = (UInt64(9) << UInt64(Ledger.reservationCounterBits)) | UInt64(step + 1)
                ledger.renew([Lease(id: foreign, keys: [key], units: units)], adopt: true, now: now)
                let id = nextRedisID
                nextRedisID += 1
                _ = try await call(BudgetScripts.renew, [node, "600", "1", "1", String(id), SharedBudgets.number(units), "1", key.description])
                let index = keys.firstIndex(of: key) ?? 0
                open.append((foreign, id, [WindowRule(key: key, kind: kinds[index], limit: limits[index])], units))
            }
        }
        // Usage and holds per counter, at the end.
        var arguments = [String(keys.count)]
        for (index, key) in keys.enumerated() {
            arguments += [key.description, kinds[index] == .fixed ? "f" : "s", String(key.windowSize)]
        }
        let rows = (try await call(BudgetScripts.read, arguments)).array ?? []
        for (index, key) in keys.enumerated() {
            let fields = (rows.count > index ? rows[index].string ?? "" : "").split(separator: " ").compactMap { Double($0) }
            let used = ledger.used(key, now: now)
            let held = ledger.inFlight(key)
            if fields.count < 2 || abs(fields[0] - used) > 1e-6 || abs(fields[1] - held) > 1e-6 {
                mismatches.append("\(key): ledger used \(used) held \(held), redis \(fields)")
            }
        }
        return mismatches
    }
}
