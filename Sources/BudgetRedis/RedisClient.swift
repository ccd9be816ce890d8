// A compact Redis client (RESP2) over SwiftNIO, written here by hand: there is no Swift Redis client among the
// packages this project may use, and hiredis would need a C shim and its own event loop, whereas a RESP codec on
// NIO shares the daemon's event loops and gets TLS from swift-nio-ssl.
//
// One connection per client, opened on first use and re-opened on the next call after it broke (with a backoff
// after failed attempts); pipelines from concurrent callers are written whole, in call order, and their replies
// matched in order (RedisChannelHandler). Sentinel discovery, AUTH/ACL, SELECT and TLS happen at connect time.

import Crypto
public import Logging
import NIOConcurrencyHelpers
public import NIOCore
import NIOSSL

/// A Redis connection shared by concurrent callers: `send` pipelines commands, `run` calls Lua scripts.
public final class RedisClient: Sendable {
    /// Bounds on what one client buffers.
    public struct Limits: Sendable {
        /// Largest reply accepted (a bulk string's declared length, or a whole reply); larger closes the
        /// connection with `.replyTooLarge`.
        public var maxReplyBytes: Int = 16 << 20
        /// Most commands in one `send`.
        public var maxPipeline: Int = 4096
        /// Most commands waiting for their replies across all callers; more fail at once ("queue full").
        public var maxQueued: Int = 10_000

        public init() {}
    }

    public let endpoint: RedisEndpoint
    private let group: any EventLoopGroup
    private let logger: Logger
    private let limits: Limits
    private let state = NIOLockedValueBox(State())

    private struct State {
        var connection: RedisConnection?
        var connecting: EventLoopFuture<RedisConnection>?
        /// After a failed connection attempt, calls before this fail at once with `lastConnectError`.
        var retryAt: NIODeadline?
        var backoff: TimeAmount = RedisClient.initialBackoff
        var lastConnectError: RedisError?
        var queued = 0
        var closed = false
        var sslContext: NIOSSLContext?
        var health = RedisHealth()
        /// Whether a connection was lost or an attempt failed since the last success (log the recovery).
        var troubled = false
    }

    static let initialBackoff = TimeAmount.milliseconds(100)
    static let maxBackoff = TimeAmount.seconds(5)

    /// A client; nothing is connected until the first call.
    public init(endpoint: RedisEndpoint, eventLoopGroup: any EventLoopGroup, logger: Logger, limits: Limits = .init()) {
        self.endpoint = endpoint
        self.group = eventLoopGroup
        var logger = logger
        logger[metadataKey: "redis"] = "\(endpoint)"
        self.logger = logger
        self.limits = limits
    }

    /// A snapshot of the connection's state.
    public var health: RedisHealth { state.withLockedValue { $0.health } }

    /// Sends the commands pipelined on the one connection (in order, as one write), returns the replies in the
    /// same order. A Redis error reply comes back as `.error(...)` in its slot, not thrown. Throws RedisError for
    /// connection, TLS, auth, timeout, protocol problems.
    public func send(_ commands: [RedisCommand]) async throws(RedisError) -> [RESPValue] {
        if commands.isEmpty { return [] }
        guard commands.count <= limits.maxPipeline else {
            throw RedisError(
                kind: .closed,
                message:
                    "redis \(endpoint): not sent: a pipeline of \(commands.count) commands exceeds the limit of \(limits.maxPipeline)"
            )
        }
        let count = commands.count
        let maxQueued = limits.maxQueued
        let admitted = state.withLockedValue { state -> Bool in
            guard state.queued + count <= maxQueued else { return false }
            state.queued += count
            return true
        }
        guard admitted else {
            throw RedisError(
                kind: .closed, message: "redis \(endpoint): queue full (\(maxQueued) commands waiting for replies)")
        }
        defer { state.withLockedValue { $0.queued -= count } }
        let connection = try await connection()
        let replies: [RESPValue]
        do {
            replies = try await connection.send(commands)
        } catch {
            recordFailure(error)
            throw error
        }
        for reply in replies {
            guard let message = reply.errorMessage else { continue }
            if message.hasPrefix("NOAUTH") {
                let error = RedisConnection.noAuth(
                    label: connection.settings.label, message, passwordSet: endpoint.password != nil)
                recordFailure(error)
                throw error
            }
            if message.hasPrefix("READONLY"), endpoint.sentinel != nil {
                // A master demoted under us: ask the sentinels again on the next call.
                logger.warning(
                    "redis master \(connection.address) is now a replica (READONLY); rediscovering",
                    metadata: ["redis.address": "\(connection.address)"])
                connection.channel.close(promise: nil)
                break
            }
        }
        state.withLockedValue { $0.health.failures = 0 }
        return replies
    }

    /// One command; its error reply comes back as `.error`.
    public func send(_ command: RedisCommand) async throws(RedisError) -> RESPValue {
        let replies = try await send([command])
        guard let reply = replies.first else {
            throw RedisError(kind: .protocolViolation, message: "redis \(endpoint): no reply")
        }
        return reply
    }

    /// EVALSHA; on a NOSCRIPT reply, SCRIPT LOAD and retry once. Error replies of the script come back as .error.
    public func run(_ script: RedisScript, keys: [String], arguments: [String]) async throws(RedisError)
        -> RESPValue
    {
        let replies = try await run([(script: script, keys: keys, arguments: arguments)])
        guard let reply = replies.first else {
            throw RedisError(kind: .protocolViolation, message: "redis \(endpoint): no reply")
        }
        return reply
    }

    /// Several script calls pipelined in one write (same NOSCRIPT handling).
    public func run(_ calls: [(script: RedisScript, keys: [String], arguments: [String])]) async throws(RedisError)
        -> [RESPValue]
    {
        var replies = try await send(calls.map { Self.evalsha($0.script, keys: $0.keys, arguments: $0.arguments) })
        let missing = replies.indices.filter { replies[$0].errorMessage?.hasPrefix("NOSCRIPT") == true }
        if missing.isEmpty { return replies }
        // The server does not know these scripts (restarted, SCRIPT FLUSH, failover): load them, call again.
        var loads: [RedisScript] = []
        for index in missing where !loads.contains(where: { $0.sha1 == calls[index].script.sha1 }) {
            loads.append(calls[index].script)
        }
        let retry =
            loads.map { RedisCommand("SCRIPT", ["LOAD", $0.source]) }
            + missing.map { Self.evalsha(calls[$0].script, keys: calls[$0].keys, arguments: calls[$0].arguments) }
        let again = try await send(retry)
        for (offset, script) in loads.enumerated() {
            if let message = again[offset].errorMessage {
                throw RedisError(
                    kind: .server, message: "redis \(endpoint): SCRIPT LOAD of \(script.sha1) failed (\(message))")
            }
        }
        for (offset, index) in missing.enumerated() { replies[index] = again[loads.count + offset] }
        return replies
    }

    private static func evalsha(_ script: RedisScript, keys: [String], arguments: [String]) -> RedisCommand {
        RedisCommand("EVALSHA", [script.sha1, String(keys.count)] + keys + arguments)
    }

    /// Closes the connection; calls waiting for replies fail with `.closed`, later calls too.
    public func close() async {
        let connection = state.withLockedValue { state -> RedisConnection? in
            state.closed = true
            let connection = state.connection
            state.connection = nil
            state.health.connected = false
            return connection
        }
        await connection?.close()
    }

    // MARK: - The connection

    private enum Step {
        case ready(RedisConnection)
        case wait(EventLoopFuture<RedisConnection>)
        case open(EventLoopPromise<RedisConnection>)
        case fail(RedisError)
    }

    /// The live connection, or a new one (made by this caller, or by the caller already making it).
    private func connection() async throws(RedisError) -> RedisConnection {
        let loop = group.next()
        let step = state.withLockedValue { state -> Step in
            if state.closed {
                return .fail(RedisError(kind: .closed, message: "redis \(endpoint): the client is closed"))
            }
            if let connection = state.connection {
                if connection.isActive { return .ready(connection) }
                state.connection = nil
            }
            if let connecting = state.connecting { return .wait(connecting) }
            if let retryAt = state.retryAt, let error = state.lastConnectError, NIODeadline.now() < retryAt {
                return .fail(error)
            }
            let promise = loop.makePromise(of: RedisConnection.self)
            state.connecting = promise.futureResult
            return .open(promise)
        }
        switch step {
        case .ready(let connection):
            return connection
        case .fail(let error):
            throw error
        case .wait(let future):
            do {
                return try await future.get()
            } catch let error as RedisError {
                throw error
            } catch {
                throw RedisError(kind: .connect, message: "redis \(endpoint): \(error)")
            }
        case .open(let promise):
            do throws(RedisError) {
                let connection = try await open()
                let closed = state.withLockedValue { state -> Bool in
                    state.connecting = nil
                    if state.closed { return true }
                    state.connection = connection
                    state.retryAt = nil
                    state.backoff = Self.initialBackoff
                    state.lastConnectError = nil
                    state.health.connected = true
                    state.health.address = connection.address
                    state.health.failures = 0
                    return false
                }
                if closed {
                    await connection.close()
                    let error = RedisError(kind: .closed, message: "redis \(endpoint): the client is closed")
                    promise.fail(error)
                    throw error
                }
                let recovered = state.withLockedValue { state in
                    defer { state.troubled = false }
                    return state.troubled
                }
                if recovered {
                    logger.notice(
                        "redis connected again to \(connection.address)",
                        metadata: ["redis.address": "\(connection.address)"])
                } else {
                    logger.info(
                        "redis connected to \(connection.address)", metadata: ["redis.address": "\(connection.address)"]
                    )
                }
                watch(connection)
                if let sentinel = endpoint.sentinel { followMaster(connection, sentinel: sentinel) }
                promise.succeed(connection)
                return connection
            } catch {
                let backoff = state.withLockedValue { state -> TimeAmount in
                    state.connecting = nil
                    state.lastConnectError = error
                    state.retryAt = .now() + state.backoff
                    let backoff = state.backoff
                    state.backoff = min(state.backoff * 2, Self.maxBackoff)
                    state.troubled = true
                    state.health.connected = false
                    state.health.lastError = error.message
                    state.health.failures += 1
                    return backoff
                }
                logger.warning(
                    "redis connection failed, next attempt in \(RedisChannelHandler.describe(backoff)) at the earliest: \(error.message)"
                )
                promise.fail(error)
                throw error
            }
        }
    }

    /// Notes (and logs) when the connection goes away, so that health says so and the next call reconnects.
    private func watch(_ connection: RedisConnection) {
        connection.channel.closeFuture.whenComplete { [weak self] _ in
            guard let self else { return }
            let current = self.state.withLockedValue { state -> Bool in
                guard state.connection === connection else { return false }
                state.connection = nil
                state.health.connected = false
                if state.closed { return false }
                state.troubled = true
                return true
            }
            if current {
                self.logger.warning(
                    "redis connection to \(connection.address) lost; reconnecting on the next call",
                    metadata: ["redis.address": "\(connection.address)"])
            }
        }
    }

    /// How often a connection made through Sentinel asks the sentinels whether the master is still the same.
    static let sentinelCheckInterval: Duration = .seconds(1)

    /// While `connection` is the client's, asks the sentinels every `sentinelCheckInterval` for the master's
    /// address and closes the connection when it changed (a failover): the next call then connects to the new
    /// master. Without this a promoted replica would be noticed only when the old master is demoted and answers
    /// READONLY, and writes in between would go to a master about to lose them.
    private func followMaster(_ connection: RedisConnection, sentinel: RedisEndpoint.Sentinel) {
        Task { [weak self] in
            while true {
                do { try await Task.sleep(for: Self.sentinelCheckInterval) } catch { return }
                guard let self else { return }
                let current = self.state.withLockedValue { $0.connection === connection && !$0.closed }
                guard current, connection.isActive else { return }
                let master: RedisEndpoint.HostPort
                do {
                    master = try await self.discoverMaster(sentinel, sslContext: try self.tlsContext())
                } catch {
                    continue
                }
                if master.description != connection.address {
                    self.logger.warning(
                        "redis master of \(sentinel.master) moved from \(connection.address) to \(master); reconnecting",
                        metadata: ["redis.address": "\(connection.address)"])
                    connection.channel.close(promise: nil)
                    return
                }
            }
        }
    }

    private func recordFailure(_ error: RedisError) {
        state.withLockedValue { state in
            state.health.lastError = error.message
            state.health.failures += 1
        }
    }

    private func open() async throws(RedisError) -> RedisConnection {
        let sslContext = try tlsContext()
        if let sentinel = endpoint.sentinel {
            let master = try await discoverMaster(sentinel, sslContext: sslContext)
            return try await RedisConnection.open(
                host: master.host, port: master.port,
                label: "redis \(master)/\(endpoint.database) (master \(sentinel.master) via sentinel)",
                database: endpoint.database, username: endpoint.username, password: endpoint.password,
                tls: endpoint.tls,
                sslContext: sslContext, connectTimeout: endpoint.connectTimeout, sendTimeout: endpoint.sendTimeout,
                readTimeout: endpoint.readTimeout, maxReplyBytes: limits.maxReplyBytes, requireMaster: true,
                group: group)
        }
        return try await RedisConnection.open(
            host: endpoint.host, port: endpoint.port, label: "redis \(endpoint)", database: endpoint.database,
            username: endpoint.username, password: endpoint.password, tls: endpoint.tls, sslContext: sslContext,
            connectTimeout: endpoint.connectTimeout, sendTimeout: endpoint.sendTimeout,
            readTimeout: endpoint.readTimeout, maxReplyBytes: limits.maxReplyBytes, requireMaster: false, group: group)
    }

    /// Asks each sentinel in turn for the master's address; the error lists what each one said.
    private func discoverMaster(_ sentinel: RedisEndpoint.Sentinel, sslContext: NIOSSLContext?)
        async throws(RedisError) -> RedisEndpoint.HostPort
    {
        var answers: [String] = []
        for node in sentinel.nodes {
            let connection: RedisConnection
            do {
                connection = try await RedisConnection.open(
                    host: node.host, port: node.port, label: "redis sentinel \(node)", database: 0,
                    username: sentinel.username, password: sentinel.password, tls: endpoint.tls, sslContext: sslContext,
                    connectTimeout: endpoint.connectTimeout, sendTimeout: endpoint.sendTimeout,
                    readTimeout: endpoint.readTimeout, maxReplyBytes: limits.maxReplyBytes, requireMaster: false,
                    group: group)
            } catch {
                answers.append("\(node): \(error.message)")
                continue
            }
            let reply: RESPValue
            do {
                reply =
                    try await connection.send([RedisCommand("SENTINEL", ["get-master-addr-by-name", sentinel.master])])
                    .first ?? .null
            } catch {
                await connection.close()
                answers.append("\(node): \(error.message)")
                continue
            }
            await connection.close()
            if let elements = reply.array, elements.count == 2, let host = elements[0].string,
                let port = elements[1].int, (1...65535).contains(port)
            {
                return RedisEndpoint.HostPort(host: host, port: Int(port))
            }
            switch reply {
            case .null: answers.append("\(node): does not know master \(sentinel.master)")
            case .error(let message): answers.append("\(node): \(message)")
            default: answers.append("\(node): unexpected reply \(reply)")
            }
        }
        if sentinel.nodes.isEmpty { answers.append("no sentinel nodes configured") }
        throw RedisError(
            kind: .sentinel,
            message:
                "redis \(endpoint): no sentinel gave the address of master \(sentinel.master) (\(answers.joined(separator: "; ")))"
        )
    }

    /// The TLS context, made once (loading trust roots is not cheap).
    private func tlsContext() throws(RedisError) -> NIOSSLContext? {
        guard let tls = endpoint.tls else { return nil }
        if let context = state.withLockedValue({ $0.sslContext }) { return context }
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.certificateVerification = tls.verify ? .fullVerification : .none
        if let caFile = tls.caFile { configuration.trustRoots = .file(caFile) }
        do {
            let context = try NIOSSLContext(configuration: configuration)
            state.withLockedValue { $0.sslContext = context }
            return context
        } catch {
            throw RedisError(
                kind: .tls,
                message:
                    "redis \(endpoint): cannot set up TLS (\(error))\(tls.caFile.map { "; ssl_ca_file \($0)" } ?? "")")
        }
    }
}

/// A Lua script, called by its SHA-1 (EVALSHA) and loaded when the server does not have it.
public struct RedisScript: Sendable, Hashable {
    public let source: String
    /// Lowercase hex SHA-1 of the source, as Redis names scripts.
    public let sha1: String

    public init(_ source: String) {
        self.source = source
        let digits = Array("0123456789abcdef".utf8)
        var hex: [UInt8] = []
        for byte in Insecure.SHA1.hash(data: Array(source.utf8)) {
            hex.append(digits[Int(byte >> 4)])
            hex.append(digits[Int(byte & 0x0F)])
        }
        sha1 = String(decoding: hex, as: UTF8.self)
    }
}
