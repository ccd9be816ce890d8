package import BudgetConfig
import BudgetJSON
import BudgetLedger
package import BudgetRedis
import BudgetWire
import DaemonKit
import Foundation
package import Logging
package import NIOCore
import ServiceLifecycle
import Synchronization

/// This node's membership of a fleet: the control planes whose configs name one Redis (`strategy: redis`).
///
/// - It keeps `BudgetDesk`'s routing in step with the config: a `SharedBudgets` on the config's Redis, and the
///   plugins counted there.
/// - It carries the config through Redis: a sync on this node is published (`budget:config`, numbered by
///   `budget:config:version`), and every half second it looks for a newer one published by another node and
///   applies it here as a sync would, so a `budgetctl sync` on any node reaches every node within a second.
///   Each node keeps its config in its own store, so it starts and serves with Redis away.
/// - It announces itself every second in `budget:nodes` (name, config versions, Redis health), which
///   `budgetctl status` lists on any node.
package final class FleetMember: Sendable {
    /// What `budget-controld`'s flags say about the fleet.
    package struct Settings: Sendable {
        /// This node's name in `budgetctl status` (default: the host name).
        package var nodeName: String
        /// This node's id in reservation keys (random per store).
        package var nodeID: String
        package var lossPolicy: RedisLossPolicy
        /// CA certificates for `ssl_verify: true` (`--redis-ca-file`); nil: the system's.
        package var caFile: String?

        package init(nodeName: String, nodeID: String, lossPolicy: RedisLossPolicy, caFile: String?) {
            self.nodeName = nodeName
            self.nodeID = nodeID
            self.lossPolicy = lossPolicy
            self.caFile = caFile
        }
    }

    /// A node as it announced itself.
    package struct Node: Sendable, Hashable {
        package var name: String
        package var configVersion: UInt64
        package var fleetVersion: UInt64
        package var seenAt: Int64
        package var awaySeconds: Double
        package var fallbackUnits: Double
    }

    private struct State {
        var settings: AIRateLimitingAdvancedConfig.RedisSettings?
        var shared: SharedBudgets?
        /// The fleet config version this node has (applied or published); 0: none yet.
        var fleetVersion: UInt64 = 0
        /// The fleet's epoch: a random id the first publication into an empty Redis chooses, so that a Redis
        /// restarted empty (whose versions start again from 1) is noticed.
        var fleetEpoch: String?
        /// A config synced here that Redis has not got yet, and when it was synced (epoch milliseconds): a later
        /// sync, anywhere in the fleet, wins over it.
        var unpublished: (version: UInt64, state: ConfigState, syncedAt: Int64)?
        var lastError: String?
    }

    let settings: Settings
    private let budgets: BudgetDesk
    private let group: any EventLoopGroup
    private let logger: Logger
    private let state = Mutex(State())
    /// The admin desk, set once both exist (each refers to the other).
    private let desk = Mutex<AdminDesk?>(nil)

    /// How often a node looks for a newer fleet config, and announces itself.
    static let pollInterval: Duration = .milliseconds(500)
    /// A node silent for longer is forgotten (its line in `budget:nodes` is removed when the nodes are listed).
    static let forgetAfter: Int64 = 86_400

    package init(settings: Settings, budgets: BudgetDesk, group: any EventLoopGroup, logger: Logger) {
        self.settings = settings
        self.budgets = budgets
        self.group = group
        self.logger = logger
    }

    package func attach(_ desk: AdminDesk) { self.desk.withLock { $0 = desk } }

    /// The engine on the fleet's Redis, when the config names one.
    package var shared: SharedBudgets? { state.withLock { $0.shared } }

    /// The fleet config version this node has.
    package var fleetVersion: UInt64 { state.withLock { $0.fleetVersion } }

    // MARK: - Config

    /// Follows a config now in force (at start, and after every change): connects to the Redis it names (or
    /// leaves it), and routes its `strategy: redis` budgets there. A config synced here (`published`) is also
    /// sent to the fleet.
    package func configure(for config: ConfigState, version: UInt64, syncedHere: Bool) {
        let redis = config.fleetRedis
        let (changed, replaced, shared) = state.withLock { state -> (Bool, SharedBudgets?, SharedBudgets?) in
            if syncedHere { state.unpublished = (version, config, Self.milliseconds()) }
            guard redis != state.settings else { return (false, nil, state.shared) }
            // Another Redis (or none): what this node knew of the old fleet's history says nothing about the new.
            let old = state.shared
            state.settings = redis
            state.shared = redis.map { makeShared($0) }
            state.fleetVersion = 0
            state.fleetEpoch = nil
            return (true, old, state.shared)
        }
        budgets.route(BudgetDesk.Routing(shared: shared, plugins: shared == nil ? [] : config.redisCountedPlugins))
        if let replaced {
            logger.notice("left the fleet's Redis", metadata: ["redis": "\(replaced.endpoint.description)"])
            Task {
                // A sync here that leaves the fleet's Redis (strategy local, or another Redis) is the fleet's new
                // config too: the other nodes learn it from the Redis they still watch.
                if syncedHere {
                    do {
                        _ = try await self.publish(config, syncedAt: Self.milliseconds(), on: replaced)
                    } catch {
                        self.logger.warning(
                            "cannot tell the fleet's Redis about a config that leaves it",
                            metadata: ["redis": "\(replaced.endpoint.description)", "error": "\(error)"])
                    }
                }
                await replaced.client.close()
            }
        }
        if changed, let shared {
            logger.notice(
                "budgets of strategy redis are kept in the fleet's Redis",
                metadata: ["redis": "\(shared.endpoint.description)"])
        }
    }

    private func makeShared(_ redis: AIRateLimitingAdvancedConfig.RedisSettings) -> SharedBudgets {
        let endpoint = Self.endpoint(redis, caFile: settings.caFile)
        return SharedBudgets(
            client: RedisClient(endpoint: endpoint, eventLoopGroup: group, logger: logger), node: settings.nodeID, lifetime: budgets.reservationLifetime, policy: settings.lossPolicy,
            eventLoop: group.next(), logger: logger)
    }

    /// Kong's `redis` block as the client's endpoint.
    package static func endpoint(_ redis: AIRateLimitingAdvancedConfig.RedisSettings, caFile: String?) -> RedisEndpoint {
        var endpoint = RedisEndpoint(
            host: redis.host ?? "127.0.0.1", port: redis.port, database: redis.database, username: redis.username,
            password: redis.password?.revealed,
            tls: redis.ssl ? .init(verify: redis.sslVerify, serverName: redis.serverName, caFile: caFile) : nil,
            sentinel: redis.sentinelMaster.map { master in
                .init(
                    master: master,
                    nodes: redis.sentinelNodes.map { node in
                        let colon = node.lastIndex(of: ":") ?? node.endIndex
                        let port = colon < node.endIndex ? Int(node[node.index(after: colon)...]) : nil
                        var host = String(node[..<colon])
                        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
                        return .init(host: host, port: port ?? 26379)
                    }, username: redis.sentinelUsername, password: redis.sentinelPassword?.revealed)
            })
        endpoint.connectTimeout = .milliseconds(redis.timeoutMilliseconds)
        endpoint.sendTimeout = .milliseconds(redis.sendTimeoutMilliseconds)
        endpoint.readTimeout = .milliseconds(redis.readTimeoutMilliseconds)
        return endpoint
    }

    // MARK: - The loop

    /// Publishes, adopts and announces every `pollInterval` until graceful shutdown.
    package func run() async {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            await step()
            do { try await Task.sleep(for: Self.pollInterval) } catch { return }
        }
    }

    /// Epoch milliseconds, the order of syncs across the fleet (node clocks are assumed in step, as NTP keeps them).
    static func milliseconds() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    /// Publishes a config synced here at once, for at most a second (called before the sync returns, so that the
    /// order in which syncs return is the order in which the fleet sees them); otherwise the loop keeps trying.
    package func publishSynced() async {
        guard let shared else { return }
        _ = await withDeadline(.seconds(1)) { try? await self.publishPending(on: shared) }
    }

    /// Publishes the config synced here that Redis has not got yet, if any. A sync on another node that is later
    /// wins: this one is then dropped, and the loop adopts the fleet's.
    private func publishPending(on shared: SharedBudgets) async throws {
        guard let pending = state.withLock({ $0.unpublished }) else { return }
        let accepted = try await publish(pending.state, syncedAt: pending.syncedAt, on: shared)
        state.withLock { state in
            if state.unpublished?.version == pending.version { state.unpublished = nil }
        }
        if !accepted {
            logger.warning(
                "a config synced here was not published: a later sync on another node is the fleet's config, and this node takes it",
                metadata: ["config_version": "\(pending.version)"])
        }
    }

    /// One round: publish a config synced here, adopt a newer one from the fleet, announce this node.
    func step() async {
        guard let shared, let desk = desk.withLock({ $0 }) else { return }
        do {
            try await publishPending(on: shared)
            let reply = try await shared.client.send(RedisCommand("HMGET", ["budget:config", "version", "epoch"]))
            let fields = reply.array ?? []
            let version = fields.first?.int.map { UInt64(max(0, $0)) } ?? 0
            let epoch = fields.count > 1 ? fields[1].string : nil
            let known = state.withLock { state -> UInt64 in
                if state.fleetEpoch != epoch {
                    // Another fleet history (a Redis restarted empty, or another Redis): what this node knew of the
                    // old one says nothing about the new.
                    state.fleetEpoch = epoch
                    state.fleetVersion = 0
                }
                return state.fleetVersion
            }
            if version == 0 {
                // Nothing published yet (a new Redis, or one restarted empty): this node's config becomes the
                // fleet's, unless a node with a later sync publishes first (time 0: older than any sync).
                let (current, _) = await desk.current()
                _ = try await publish(current, syncedAt: 0, on: shared)
            } else if version > known {
                try await adopt(version: version, from: shared, desk: desk)
            }
            try await announce(on: shared, desk: desk)
            state.withLock { $0.lastError = nil }
        } catch {
            let first = state.withLock { state -> Bool in
                defer { state.lastError = "\(error)" }
                return state.lastError == nil
            }
            if first {
                logger.warning("cannot exchange the config with the fleet's Redis", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Publishes `config`, synced at `syncedAt`, as the fleet's next version, unless the fleet's config comes from
    /// a later sync; returns whether it was published.
    private func publish(_ config: ConfigState, syncedAt: Int64, on shared: SharedBudgets) async throws -> Bool {
        let payload = WireJSON.encode(ConfigSnapshot(version: 0, state: config))
        let epoch = String(UInt64.random(in: 1...UInt64.max), radix: 16)
        let reply = try await shared.client.run(
            Self.publishScript, keys: [],
            arguments: [String(decoding: payload, as: UTF8.self), settings.nodeName, String(syncedAt), epoch])
        guard let fields = reply.array, fields.count == 3, let accepted = fields[0].int, let version = fields[1].int,
            version > 0
        else {
            throw SharedBudgetError("publishing the config answered \(SharedBudgets.describe(reply))")
        }
        guard accepted == 1 else { return false }
        state.withLock { state in
            guard state.shared === shared else { return }
            if state.fleetEpoch != fields[2].string {
                state.fleetEpoch = fields[2].string
                state.fleetVersion = 0
            }
            state.fleetVersion = max(state.fleetVersion, UInt64(version))
        }
        logger.notice(
            "config published to the fleet", metadata: ["fleet_version": "\(version)", "entities": "\(config.count)"])
        return true
    }

    /// Applies fleet config `version` here, as a sync of the whole config would.
    private func adopt(version: UInt64, from shared: SharedBudgets, desk: AdminDesk) async throws {
        let reply = try await shared.client.send(
            RedisCommand("HMGET", ["budget:config", "version", "state", "node", "epoch"]))
        guard let fields = reply.array, fields.count == 4, let got = fields[0].int, got > 0,
            case .bulkString(let bytes) = fields[1]
        else { throw SharedBudgetError("the fleet's config could not be read: \(SharedBudgets.describe(reply))") }
        let snapshot = try WireJSON.decode(ConfigSnapshot.self, from: bytes)
        let node = fields[2].string ?? "?"
        // A sync here that Redis has not got yet is newer than what this node would adopt: it is published first.
        guard state.withLock({ $0.unpublished == nil }) else { return }
        let applied = try await desk.adoptFleetConfig(snapshot.state, fleetVersion: UInt64(got), from: node)
        state.withLock { state in
            guard state.shared === shared, state.fleetEpoch == fields[3].string else { return }
            state.fleetVersion = max(state.fleetVersion, UInt64(got))
        }
        if let applied {
            logger.notice(
                "config adopted from the fleet",
                metadata: ["fleet_version": "\(got)", "from_node": "\(node)", "config_version": "\(applied)"])
        }
    }

    /// Writes this node's line in `budget:nodes`.
    private func announce(on shared: SharedBudgets, desk: AdminDesk) async throws {
        let (_, version) = await desk.current()
        let loss = shared.loss
        let line = JSONValue.object([
            "configVersion": .int(Int(clamping: version)), "fleetVersion": .int(Int(clamping: fleetVersion)),
            "seenAt": .int(Int(BudgetDesk.now())), "awaySeconds": .double(loss.seconds),
            "fallbackUnits": .double(loss.units),
        ]).serialized
        _ = try await shared.client.send(RedisCommand("HSET", ["budget:nodes", settings.nodeName, line]))
    }

    /// The fleet's nodes as they announced themselves, by name; those silent for a day are forgotten.
    package func nodes() async throws -> [Node] {
        guard let shared else { return [] }
        let reply = try await shared.client.send(RedisCommand("HGETALL", ["budget:nodes"]))
        guard let items = reply.array else { return [] }
        var nodes: [Node] = []
        var forgotten: [String] = []
        var index = 0
        while index + 1 < items.count {
            defer { index += 2 }
            guard let name = items[index].string, let text = items[index + 1].string,
                let value = try? JSONParser.parse(text)
            else { continue }
            func number(_ key: String) -> Double { value[key]?.double ?? 0 }
            let seen = Int64(number("seenAt"))
            if BudgetDesk.now() - seen > Self.forgetAfter {
                forgotten.append(name)
                continue
            }
            nodes.append(
                Node(
                    name: name, configVersion: UInt64(max(0, number("configVersion"))),
                    fleetVersion: UInt64(max(0, number("fleetVersion"))), seenAt: seen,
                    awaySeconds: number("awaySeconds"), fallbackUnits: number("fallbackUnits")))
        }
        if !forgotten.isEmpty {
            _ = try await shared.client.send(RedisCommand("HDEL", ["budget:nodes"] + forgotten))
        }
        return nodes.sorted { $0.name < $1.name }
    }

    /// Stores a config as the fleet's next version, atomically, unless the one there comes from a later sync.
    /// ARGV: config, node, synced-at milliseconds, an epoch for an empty Redis. Returns {accepted, version, epoch}.
    static let publishScript = RedisScript(
        """
        local synced = tonumber(redis.call('HGET', 'budget:config', 'synced') or '-1')
        local epoch = redis.call('HGET', 'budget:config', 'epoch') or ARGV[4]
        if tonumber(ARGV[3]) < synced then
          return {0, tonumber(redis.call('HGET', 'budget:config', 'version') or '0'), epoch}
        end
        local v = redis.call('INCR', 'budget:config:version')
        redis.call('HSET', 'budget:config', 'version', v, 'state', ARGV[1], 'node', ARGV[2], 'synced', ARGV[3],
          'epoch', epoch)
        return {1, v, epoch}
        """)
}

/// Runs `FleetMember`'s loop as a service of the daemon.
struct FleetService: ServiceLifecycle.Service {
    let member: FleetMember

    func run() async throws {
        await cancelWhenGracefulShutdown { await member.run() }
    }
}
