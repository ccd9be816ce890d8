import BudgetRedis
import Foundation
import Logging
import NIOCore
import NIOPosix
import Testing

private let logger = Logger(label: "BudgetRedisTests")

private func client(_ endpoint: RedisEndpoint, limits: RedisClient.Limits = .init()) -> RedisClient {
    RedisClient(
        endpoint: endpoint, eventLoopGroup: MultiThreadedEventLoopGroup.singleton, logger: logger, limits: limits)
}

private func local(_ server: RedisServer) -> RedisEndpoint { RedisEndpoint(host: "127.0.0.1", port: server.port) }

/// The error a call threw, or a failed expectation.
private func redisError(_ call: () async throws -> Void) async -> RedisError? {
    do {
        try await call()
        Issue.record("expected a RedisError")
        return nil
    } catch let error as RedisError {
        return error
    } catch {
        Issue.record("expected a RedisError, got \(error)")
        return nil
    }
}

@Suite struct RedisClientTests {
    @Test func pipelineKeepsOrderAndErrorsStayInTheirSlots() async throws {
        let server = try await RedisServer.started()
        defer { server.remove() }
        let redis = client(local(server))
        defer { Task { await redis.close() } }

        let replies = try await redis.send((0..<1000).map { RedisCommand("ECHO", ["value-\($0)"]) })
        #expect(replies == (0..<1000).map { .bulkString(Array("value-\($0)".utf8)) })

        let mixed = try await redis.send([
            RedisCommand("SET", ["text", "abc"]), RedisCommand("INCR", ["text"]), RedisCommand("GET", ["text"]),
            RedisCommand("NOSUCHCOMMAND", []), RedisCommand("INCRBY", ["n", "5"]),
        ])
        #expect(mixed[0] == .simpleString("OK"))
        #expect(mixed[1] == .error("ERR value is not an integer or out of range"))
        #expect(mixed[2].string == "abc")
        #expect(mixed[3].string == nil && mixed[3] != .null)
        #expect(mixed[4].int == 5)

        // Concurrent callers: each one's pipeline comes back whole and in order.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for caller in 0..<20 {
                group.addTask {
                    for round in 0..<25 {
                        let commands = (0..<10).map { RedisCommand("ECHO", ["\(caller)-\(round)-\($0)"]) }
                        let replies = try await redis.send(commands)
                        #expect(replies.map(\.string) == (0..<10).map { "\(caller)-\(round)-\($0)" })
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(redis.health.connected)
        #expect(redis.health.address == "127.0.0.1:\(server.port)")
        #expect(redis.health.failures == 0)
    }

    @Test func queueAndPipelineBounds() async throws {
        let server = try await RedisServer.started()
        defer { server.remove() }
        var limits = RedisClient.Limits()
        limits.maxQueued = 10
        limits.maxPipeline = 20
        let redis = client(local(server), limits: limits)
        defer { Task { await redis.close() } }
        let full = await redisError { _ = try await redis.send((0..<11).map { _ in RedisCommand("PING", []) }) }
        #expect(full?.kind == .closed)
        #expect(full?.message.contains("queue full") == true)
        let long = await redisError { _ = try await redis.send((0..<21).map { _ in RedisCommand("PING", []) }) }
        #expect(long?.message.contains("exceeds the limit of 20") == true)
        #expect(try await redis.send(RedisCommand("PING", [])) == .simpleString("PONG"))
    }

    @Test func passwordAndWrongPassword() async throws {
        let server = try await RedisServer.started(extra: ["--requirepass", "s3cret-pw"])
        defer { server.remove() }
        var endpoint = local(server)
        endpoint.password = "s3cret-pw"
        let good = client(endpoint)
        #expect(try await good.send(RedisCommand("PING", [])) == .simpleString("PONG"))
        await good.close()

        endpoint.password = "not-the-pw-42"
        let bad = client(endpoint)
        let error = await redisError { _ = try await bad.send(RedisCommand("PING", [])) }
        #expect(error?.kind == .authentication)
        #expect(error?.message.contains("WRONGPASS") == true)
        #expect(error?.message.contains("127.0.0.1:\(server.port)/0") == true)
        #expect(error?.message.contains("not-the-pw-42") == false)
        #expect(bad.health.lastError?.contains("not-the-pw-42") == false)
        await bad.close()

        endpoint.password = nil
        let none = client(endpoint)
        let missing = await redisError { _ = try await none.send(RedisCommand("PING", [])) }
        #expect(missing?.kind == .authentication)
        #expect(missing?.message.contains("the server requires a password; set redis.password") == true)
        await none.close()
    }

    @Test func aclUserAndDatabase() async throws {
        let server = try await RedisServer.started()
        defer { server.remove() }
        let admin = client(local(server))
        defer { Task { await admin.close() } }
        let created = try await admin.send(
            RedisCommand("ACL", ["SETUSER", "gateway", "on", ">gw-pass-9", "~*", "+@all"]))
        #expect(created == .simpleString("OK"))

        var endpoint = local(server)
        endpoint.username = "gateway"
        endpoint.password = "gw-pass-9"
        endpoint.database = 3
        let user = client(endpoint)
        defer { Task { await user.close() } }
        let replies = try await user.send([RedisCommand("ACL", ["WHOAMI"]), RedisCommand("SET", ["in-db-3", "yes"])])
        #expect(replies[0].string == "gateway")
        #expect(try await admin.send(RedisCommand("GET", ["in-db-3"])) == .null)
        let check = try await admin.send([RedisCommand("SELECT", ["3"]), RedisCommand("GET", ["in-db-3"])])
        #expect(check[1].string == "yes")
        _ = try await admin.send(RedisCommand("SELECT", ["0"]))

        endpoint.password = "wrong-gw-pass"
        let wrong = client(endpoint)
        let error = await redisError { _ = try await wrong.send(RedisCommand("PING", [])) }
        #expect(error?.kind == .authentication)
        #expect(error?.message.contains("wrong-gw-pass") == false)
        await wrong.close()
    }

    @Test func scriptsAreLoadedOnNoscript() async throws {
        let server = try await RedisServer.started()
        defer { server.remove() }
        let redis = client(local(server))
        defer { Task { await redis.close() } }
        let incr = RedisScript("return redis.call('INCRBY', KEYS[1], ARGV[1])")
        let fails = RedisScript("return redis.error_reply('budget exhausted')")
        #expect(try await redis.run(incr, keys: ["s"], arguments: ["5"]) == .integer(5))
        #expect(try await redis.run(incr, keys: ["s"], arguments: ["2"]) == .integer(7))
        #expect(try await redis.send(RedisCommand("SCRIPT", ["FLUSH"])) == .simpleString("OK"))
        #expect(try await redis.run(incr, keys: ["s"], arguments: ["1"]) == .integer(8))
        _ = try await redis.send(RedisCommand("SCRIPT", ["FLUSH"]))
        let replies = try await redis.run([
            (script: incr, keys: ["s"], arguments: ["1"]), (script: fails, keys: [], arguments: []),
            (script: incr, keys: ["t"], arguments: ["3"]),
        ])
        #expect(replies == [.integer(9), .error("budget exhausted"), .integer(3)])
        let loaded = try await redis.send(RedisCommand("SCRIPT", ["EXISTS", incr.sha1, fails.sha1]))
        #expect(loaded == .array([.integer(1), .integer(1)]))
    }

    @Test func readTimeoutFailsAndTheNextCallReconnects() async throws {
        let server = try await RedisServer.started(extra: ["--enable-debug-command", "yes"])
        defer { server.remove() }
        var endpoint = local(server)
        endpoint.readTimeout = .milliseconds(200)
        let redis = client(endpoint)
        defer { Task { await redis.close() } }
        #expect(try await redis.send(RedisCommand("PING", [])) == .simpleString("PONG"))
        let started = ContinuousClock.now
        let error = await redisError { _ = try await redis.send(RedisCommand("DEBUG", ["SLEEP", "1"])) }
        #expect(error?.kind == .timeout)
        #expect(error?.message.contains("read timeout") == true)
        #expect(ContinuousClock.now - started < .milliseconds(900))
        // The server is still asleep; once it wakes, the next call gets a new connection.
        try await Task.sleep(until: started + .milliseconds(1100))
        #expect(try await redis.send(RedisCommand("PING", [])) == .simpleString("PONG"))
        #expect(redis.health.connected)
    }

    @Test func reconnectsAfterAKillWithBackoff() async throws {
        let server = try await RedisServer.started()
        defer { server.remove() }
        let redis = client(local(server))
        defer { Task { await redis.close() } }
        _ = try await redis.send(RedisCommand("SET", ["k", "1"]))
        server.stop()
        // The broken connection, then a refused attempt.
        let lost = await redisError { _ = try await redis.send(RedisCommand("GET", ["k"])) }
        #expect(lost?.kind == .closed || lost?.kind == .connect)
        var refused = await redisError { _ = try await redis.send(RedisCommand("GET", ["k"])) }
        if lost?.kind == .closed {
            #expect(refused?.kind == .connect)
        } else {
            refused = lost
        }
        #expect(redis.health.connected == false)
        let failures = redis.health.failures
        // Within the backoff window calls fail at once with the same error, without trying to connect.
        for _ in 0..<5 {
            let started = ContinuousClock.now
            let again = await redisError { _ = try await redis.send(RedisCommand("GET", ["k"])) }
            #expect(ContinuousClock.now - started < .milliseconds(50))
            #expect(again?.message == refused?.message)
        }
        #expect(redis.health.failures == failures)

        try await server.launch()
        let back = await eventually(within: 10) {
            (try? await redis.send(RedisCommand("PING", []))) == .simpleString("PONG")
        }
        #expect(back)
        #expect(redis.health.connected && redis.health.failures == 0)
        #expect(redis.health.lastError != nil)
    }

    @Test func largeRepliesAreRefused() async throws {
        let server = try await RedisServer.started()
        defer { server.remove() }
        let writer = client(local(server))
        defer { Task { await writer.close() } }
        _ = try await writer.send(RedisCommand("SET", ["big", String(repeating: "x", count: 2 << 20)]))
        var limits = RedisClient.Limits()
        limits.maxReplyBytes = 1 << 20
        let reader = client(local(server), limits: limits)
        defer { Task { await reader.close() } }
        let error = await redisError { _ = try await reader.send(RedisCommand("GET", ["big"])) }
        #expect(error?.kind == .replyTooLarge)
        #expect(try await reader.send(RedisCommand("STRLEN", ["big"])) == .integer(2 << 20))
    }
}

@Suite struct RedisTLSTests {
    private func certificates() throws -> TestCertificates { try TestCertificates.shared.get() }

    @Test func verifiedTLSWithCAFile() async throws {
        let tls = try certificates()
        let server = try await RedisServer.started(tls: tls)
        defer { server.remove() }
        var endpoint = local(server)
        endpoint.tls = .init(verify: true, serverName: "localhost", caFile: tls.caCert)
        let redis = client(endpoint)
        #expect(try await redis.send(RedisCommand("PING", [])) == .simpleString("PONG"))
        await redis.close()
        // No server name: the certificate is checked against the IP address (SAN IP:127.0.0.1).
        endpoint.tls = .init(verify: true, caFile: tls.caCert)
        let byAddress = client(endpoint)
        #expect(try await byAddress.send(RedisCommand("PING", [])) == .simpleString("PONG"))
        await byAddress.close()
    }

    @Test func wrongServerNameFailsVerification() async throws {
        let tls = try certificates().dnsOnly
        let server = try await RedisServer.started(tls: tls)
        defer { server.remove() }
        var endpoint = local(server)
        endpoint.tls = .init(verify: true, serverName: "localhost", caFile: tls.caCert)
        let right = client(endpoint)
        #expect(try await right.send(RedisCommand("PING", [])) == .simpleString("PONG"))
        await right.close()
        endpoint.tls = .init(verify: true, serverName: "redis.example.org", caFile: tls.caCert)
        let redis = client(endpoint)
        let error = await redisError { _ = try await redis.send(RedisCommand("PING", [])) }
        #expect(error?.kind == .tls, "\(String(describing: error))")
        #expect(error?.message.contains("certificate verify failed") == true)
        #expect(error?.message.contains("redis.example.org") == true)
        await redis.close()
    }

    @Test func tlsToAPlaintextPort() async throws {
        let server = try await RedisServer.started()
        defer { server.remove() }
        var endpoint = local(server)
        endpoint.tls = .init()
        endpoint.readTimeout = .milliseconds(500)
        let redis = client(endpoint)
        let error = await redisError { _ = try await redis.send(RedisCommand("PING", [])) }
        #expect(error?.kind == .tls)
        #expect(error?.message.contains("is the server speaking TLS on this port? (ssl: true)") == true)
        await redis.close()
    }

    @Test func plaintextToATLSPort() async throws {
        let server = try await RedisServer.started(tls: try certificates())
        defer { server.remove() }
        let redis = client(local(server))
        let error = await redisError { _ = try await redis.send(RedisCommand("PING", [])) }
        #expect(error?.message.contains("is ssl: true needed?") == true, "\(String(describing: error))")
        await redis.close()
    }
}

@Suite struct RedisSentinelTests {
    @Test func writesFollowAFailover() async throws {
        let master = try await RedisServer.started()
        defer { master.remove() }
        let replica = try await RedisServer.started(extra: ["--replicaof", "127.0.0.1", String(master.port)])
        defer { replica.remove() }
        let replicaClient = client(local(replica))
        defer { Task { await replicaClient.close() } }
        let synced = await eventually(within: 10) {
            let info = try? await replicaClient.send(RedisCommand("INFO", ["replication"]))
            return info?.string?.contains("master_link_status:up") == true
        }
        try #require(synced, "the replica did not sync")

        let sentinel = try await RedisServer.sentinel(for: "m", masterPort: master.port)
        defer { sentinel.remove() }
        let sentinelClient = client(local(sentinel))
        defer { Task { await sentinelClient.close() } }
        let knowsReplica = await eventually(within: 15) {
            let replicas = try? await sentinelClient.send(RedisCommand("SENTINEL", ["replicas", "m"]))
            return replicas?.array?.contains { $0.array?.contains(.bulkString(Array("\(replica.port)".utf8))) == true }
                == true
        }
        try #require(knowsReplica, "the sentinel did not find the replica: \(sentinel.logText())")

        var endpoint = RedisEndpoint(host: "ignored.invalid")
        endpoint.sentinel = .init(
            master: "m",
            nodes: [.init(host: "127.0.0.1", port: try freePort()), .init(host: "127.0.0.1", port: sentinel.port)])
        let redis = client(endpoint)
        defer { Task { await redis.close() } }
        #expect(try await redis.send(RedisCommand("SET", ["before", "1"])) == .simpleString("OK"))
        #expect(redis.health.address == "127.0.0.1:\(master.port)")

        let failedOver = await eventually(within: 10) {
            (try? await sentinelClient.send(RedisCommand("SENTINEL", ["FAILOVER", "m"]))) == .simpleString("OK")
        }
        try #require(failedOver, "SENTINEL FAILOVER was refused: \(sentinel.logText())")

        var written = 0
        let moved = await eventually(within: 15) {
            written += 1
            guard (try? await redis.send(RedisCommand("SET", ["after", String(written)]))) == .simpleString("OK")
            else { return false }
            return redis.health.address == "127.0.0.1:\(replica.port)"
        }
        #expect(moved, "the client did not move to the new master: \(redis.health)")
        let role = try await replicaClient.send([RedisCommand("ROLE", []), RedisCommand("GET", ["after"])])
        #expect(role[0].array?.first?.string == "master")
        #expect(role[1].string == String(written))
    }

    @Test func unknownMasterSaysWhatEachSentinelSaid() async throws {
        let master = try await RedisServer.started()
        defer { master.remove() }
        let sentinel = try await RedisServer.sentinel(for: "m", masterPort: master.port)
        defer { sentinel.remove() }
        let closedPort = try freePort()
        var endpoint = RedisEndpoint(host: "ignored.invalid")
        endpoint.sentinel = .init(
            master: "other",
            nodes: [.init(host: "127.0.0.1", port: closedPort), .init(host: "127.0.0.1", port: sentinel.port)])
        let redis = client(endpoint)
        let error = await redisError { _ = try await redis.send(RedisCommand("PING", [])) }
        #expect(error?.kind == .sentinel)
        #expect(error?.message.contains("127.0.0.1:\(closedPort)") == true)
        #expect(error?.message.contains("127.0.0.1:\(sentinel.port): does not know master other") == true)
        await redis.close()
    }
}
