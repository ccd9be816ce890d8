import NIOCore
import NIOHTTP1
import Synchronization
import NIOPosix
import NIOSSL

/// Where upstream requests go: scheme, host and port of an endpoint, parsed once per config snapshot.
struct UpstreamOrigin: Sendable, Hashable, CustomStringConvertible {
    var tls: Bool
    /// A DNS name or an IP address (an IPv6 address without its brackets).
    var host: String
    var port: Int

    /// `http://host[:port]` or `https://host[:port]` (anything after the authority is ignored); nil for
    /// another scheme, an empty host or a port that is not a number from 1 to 65535.
    init?(endpoint: String) {
        let scheme: Substring
        let rest: Substring
        if let schemeEnd = endpoint.firstRange(of: "://") {
            scheme = endpoint[..<schemeEnd.lowerBound]
            rest = endpoint[schemeEnd.upperBound...]
        } else {
            return nil
        }
        switch scheme.lowercased() {
        case "http": tls = false
        case "https": tls = true
        default: return nil
        }
        let authority = rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        var portText: Substring?
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { return nil }
            host = String(authority[authority.index(after: authority.startIndex)..<close])
            let after = authority[authority.index(after: close)...]
            if after.hasPrefix(":") {
                portText = after.dropFirst()
            } else if !after.isEmpty {
                return nil
            }
        } else if let colon = authority.lastIndex(of: ":") {
            host = String(authority[..<colon])
            portText = authority[authority.index(after: colon)...]
        } else {
            host = String(authority)
        }
        guard !host.isEmpty else { return nil }
        if let portText {
            guard let number = Int(portText), (1...65535).contains(number) else { return nil }
            port = number
        } else {
            port = tls ? 443 : 80
        }
    }

    /// Whether `host` is an IP address (no SNI is sent for one).
    var hostIsAddress: Bool {
        host.contains(":") || host.utf8.allSatisfy { $0 == UInt8(ascii: ".") || (48...57).contains($0) }
    }

    var description: String { "\(tls ? "https" : "http")://\(host.contains(":") ? "[\(host)]" : host):\(port)" }
}

/// One request for an upstream: POST-style, with its whole body.
struct UpstreamRequest: Sendable {
    var method: HTTPMethod = .POST
    var path: String
    /// Sent as given, in order (a name that is not a token or a value with CR, LF or NUL fails the call);
    /// `Content-Length` is added.
    var headers: [(String, String)]
    var body: [UInt8]
}

/// An upstream's answer: its head, and its body (read whole, or streamed as it arrives).
struct UpstreamResponse: Sendable {
    var status: HTTPResponseStatus
    var headers: HTTPHeaders
    var body: UpstreamBody
}

/// Why an upstream call failed, with what the caller needs to decide what to charge and what to answer.
struct UpstreamFailure: Error, Sendable, CustomStringConvertible {
    enum Kind: Sendable, Equatable {
        /// No connection within the connect time-out.
        case connectTimeout
        /// No connection (refused, unresolvable, TLS handshake refused…).
        case connect
        /// No byte for the request's read time-out (before its head, or between two parts of its body).
        case timeout
        /// The connection broke, or the upstream closed it, before the answer was complete.
        case broken
        /// The answer's body is larger than the caller takes.
        case tooLarge
        /// The call was cancelled (the client's connection was closed by a drain running out of time).
        case cancelled
    }

    var kind: Kind
    /// Whether the whole request had been written: the upstream may have run (and billed) it.
    var requestSent: Bool
    var detail: String
    /// Whether the answer had begun (its head had arrived): then it was cut off rather than never given.
    var answerBegan = false

    var isTimeout: Bool { kind == .timeout || kind == .connectTimeout }

    var description: String { detail }
}

/// An HTTP/1.1 client for the proxy's upstream, written for its one job rather than taken from
/// AsyncHTTPClient, whose generic request path (its own task hops, a separate write and flush for the head
/// and the body, state machines for features the proxy does not use) was a fifth of budget-proxyd's CPU per
/// request (bench/README.md). It keeps a pool of idle keep-alive connections per event loop and per origin,
/// and runs each call on the event loop of the task that makes it (budget-proxyd runs its tasks on its event
/// loops), so a request to the upstream and its answer cost no thread hop. A request is written in one
/// flush; a whole answer is collected on the loop and handed over once; a streamed answer is handed over
/// part by part with back-pressure (reading stops while the consumer is 8 parts behind).
///
/// Bounds: at most `maxIdlePerOrigin` idle connections per loop and origin, closed after `idleTimeout`
/// unused; response heads are bounded by NIO's parser (80 KiB); a collected body by the caller's limit.
final class UpstreamClient: Sendable {
    struct Settings: Sendable {
        var connectTimeout: TimeAmount = .seconds(10)
        var idleTimeout: TimeAmount = .seconds(60)
        var maxIdlePerOrigin = 64
        /// PEM trust roots replacing the system's (the AWS SDKs' `AWS_CA_BUNDLE`).
        var trustRoots: [NIOSSLCertificate]? = nil
    }

    /// Connections open to upstreams, and how many of them idle in a pool.
    final class Counts: Sendable {
        let open = Atomic<Int>(0)
        let idle = Atomic<Int>(0)
    }

    private let group: any EventLoopGroup
    private let pools: [ObjectIdentifier: NIOLoopBoundBox<LoopPool>]
    let counts = Counts()

    /// Connections open to upstreams now (in use or idle).
    var openConnections: Int { counts.open.load(ordering: .relaxed) }
    /// Of those, the ones idle in a pool.
    var idleConnections: Int { counts.idle.load(ordering: .relaxed) }
    private let fallbackLoop: any EventLoop

    /// - Throws: `NIOSSLError` when the TLS context cannot be made from the settings.
    init(group: any EventLoopGroup, settings: Settings) throws {
        var tls = TLSConfiguration.makeClientConfiguration()
        if let roots = settings.trustRoots { tls.trustRoots = .certificates(roots) }
        let context = try NIOSSLContext(configuration: tls)
        self.group = group
        var pools: [ObjectIdentifier: NIOLoopBoundBox<LoopPool>] = [:]
        var first: (any EventLoop)?
        for loop in group.makeIterator() {
            first = first ?? loop
            pools[ObjectIdentifier(loop)] = NIOLoopBoundBox.makeBoxSendingValue(
                LoopPool(loop: loop, settings: settings, tls: context, counts: counts), eventLoop: loop)
        }
        self.pools = pools
        fallbackLoop = first ?? group.next()
    }

    /// Closes the idle connections; calls in progress run to their end.
    func shutdown() async {
        await withTaskGroup(of: Void.self) { tasks in
            for pool in pools.values {
                tasks.addTask {
                    try? await pool.eventLoop.submit { pool.value.close() }.get()
                }
            }
        }
    }

    /// Sends `request` to `origin` and returns the answer's head with its body: collected whole (up to
    /// `collectUpTo` bytes, else `.tooLarge`) when `streaming` is false, else to be read as it arrives.
    /// `readTimeout` bounds the wait for the head and each gap between parts of the body.
    /// - Throws: `UpstreamFailure`, or `CancellationError` when the task is cancelled.
    func send(
        _ request: UpstreamRequest, to origin: UpstreamOrigin, streaming: Bool, collectUpTo: Int = 32 << 20,
        readTimeout: TimeAmount
    ) async throws -> UpstreamResponse {
        let loop = group.any()
        let pool = pools[ObjectIdentifier(loop)] ?? pools[ObjectIdentifier(fallbackLoop)]
        guard let pool else { throw UpstreamFailure(kind: .connect, requestSent: false, detail: "no event loop") }
        let call = NIOLoopBoundBox.makeEmptyBox(valueType: UpstreamExchange.self, eventLoop: pool.eventLoop)
        let mode: UpstreamExchange.Mode = streaming ? .stream : .collect(limit: collectUpTo)
        let answer: EventLoopFuture<UpstreamResponse>
        if pool.eventLoop.inEventLoop {
            answer = pool.value.start(request, to: origin, mode: mode, readTimeout: readTimeout, call: call)
        } else {
            answer = pool.eventLoop.flatSubmit {
                pool.value.start(request, to: origin, mode: mode, readTimeout: readTimeout, call: call)
            }
        }
        return try await withTaskCancellationHandler {
            try await answer.get()
        } onCancel: {
            pool.eventLoop.execute { call.value?.cancel() }
        }
    }
}

/// One event loop's connections: the idle ones by origin, reused last-in first-out.
final class LoopPool {
    private struct Idle {
        var connection: UpstreamConnection
        var since: NIODeadline
    }

    private let loop: any EventLoop
    private let settings: UpstreamClient.Settings
    private let tls: NIOSSLContext
    private let counts: UpstreamClient.Counts
    private var idle: [UpstreamOrigin: [Idle]] = [:]
    private var sweep: RepeatedTask?
    private var closed = false

    init(loop: any EventLoop, settings: UpstreamClient.Settings, tls: NIOSSLContext, counts: UpstreamClient.Counts) {
        self.counts = counts
        self.loop = loop
        self.settings = settings
        self.tls = tls
    }

    /// Starts one call on a pooled connection (or a new one): completes with the answer's head.
    func start(
        _ request: UpstreamRequest, to origin: UpstreamOrigin, mode: UpstreamExchange.Mode, readTimeout: TimeAmount,
        call: NIOLoopBoundBox<UpstreamExchange?>
    ) -> EventLoopFuture<UpstreamResponse> {
        let answer = loop.makePromise(of: UpstreamResponse.self)
        let exchange = UpstreamExchange(request: request, mode: mode, readTimeout: readTimeout, answer: answer)
        call.value = exchange
        if let connection = lease(origin) {
            connection.handler.run(exchange)
            return answer.futureResult
        }
        connect(origin).assumeIsolated().whenComplete { result in
            switch result {
            case .success(let connection):
                if exchange.isOver {
                    connection.channel.close(promise: nil)  // cancelled while connecting
                } else {
                    connection.handler.run(exchange)
                }
            case .failure(let error):
                let timedOut: Bool
                if case ChannelError.connectTimeout = error { timedOut = true } else { timedOut = false }
                exchange.fail(
                    UpstreamFailure(
                        kind: timedOut ? .connectTimeout : .connect, requestSent: false,
                        detail: "cannot connect to \(origin): \(error)"))
            }
        }
        return answer.futureResult
    }

    /// A live idle connection to `origin`, if one is pooled.
    private func lease(_ origin: UpstreamOrigin) -> UpstreamConnection? {
        while let candidate = idle[origin]?.popLast() {
            counts.idle.subtract(1, ordering: .relaxed)
            if candidate.connection.channel.isActive { return candidate.connection }
        }
        return nil
    }

    private func connect(_ origin: UpstreamOrigin) -> EventLoopFuture<UpstreamConnection> {
        let tls = origin.tls ? self.tls : nil
        let serverName = origin.hostIsAddress ? nil : origin.host
        return ClientBootstrap(group: loop)
            .connectTimeout(settings.connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls {
                        try channel.pipeline.syncOperations.addHandler(
                            try NIOSSLClientHandler(context: tls, serverHostname: serverName))
                    }
                    let decoder = UpstreamResponseDecoder()
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(decoder))
                    try channel.pipeline.syncOperations.addHandler(
                        UpstreamConnectionHandler(origin: origin, decoder: decoder))
                }
            }
            .connect(host: origin.host, port: origin.port)
            .assumeIsolated()
            .flatMapThrowing { [self] channel in
                counts.open.add(1, ordering: .relaxed)
                let counts = self.counts
                channel.closeFuture.whenComplete { _ in counts.open.subtract(1, ordering: .relaxed) }
                let handler = try channel.pipeline.syncOperations.handler(type: UpstreamConnectionHandler.self)
                handler.pool = self
                return UpstreamConnection(channel: channel, handler: handler)
            }
            .nonisolated()
    }

    /// Pools a connection whose answer is complete, or closes it when the pool is full or closed.
    func release(_ connection: UpstreamConnection) {
        guard !closed, connection.channel.isActive, idle[connection.origin, default: []].count < settings.maxIdlePerOrigin
        else {
            connection.channel.close(promise: nil)
            return
        }
        idle[connection.origin, default: []].append(Idle(connection: connection, since: .now()))
        counts.idle.add(1, ordering: .relaxed)
        if sweep == nil {
            // A connection closes between `idleTimeout` and a quarter more after its last use.
            let timeout = settings.idleTimeout
            let period = TimeAmount.nanoseconds(max(timeout.nanoseconds / 4, 1_000_000))
            let pool = NIOLoopBound(self, eventLoop: loop)
            sweep = loop.scheduleRepeatedTask(initialDelay: period, delay: period) { _ in
                pool.value.closeIdle(olderThan: timeout)
            }
        }
    }

    /// An idle connection closed (its server closed it): out of the pool, and out of the count.
    func forget(_ channel: any Channel, origin: UpstreamOrigin) {
        guard var entries = idle[origin], let index = entries.firstIndex(where: { $0.connection.channel === channel })
        else { return }
        entries.remove(at: index)
        counts.idle.subtract(1, ordering: .relaxed)
        idle[origin] = entries.isEmpty ? nil : entries
    }

    /// Closes the connections idle for longer than `age`.
    private func closeIdle(olderThan age: TimeAmount) {
        let cutoff = NIODeadline.now() - age
        for (origin, entries) in idle {
            let (old, fresh) = (entries.filter { $0.since <= cutoff }, entries.filter { $0.since > cutoff })
            // Out of the pool before they close: a close can report itself (`forget`) at once.
            idle[origin] = fresh.isEmpty ? nil : fresh
            counts.idle.subtract(old.count, ordering: .relaxed)
            for entry in old { entry.connection.channel.close(promise: nil) }
        }
    }

    func close() {
        closed = true
        sweep?.cancel()
        sweep = nil
        let closing = idle
        idle = [:]
        for entries in closing.values {
            counts.idle.subtract(entries.count, ordering: .relaxed)
            for entry in entries { entry.connection.channel.close(promise: nil) }
        }
    }
}

/// A connection and its handler, both confined to its event loop.
struct UpstreamConnection {
    let channel: any Channel
    let handler: UpstreamConnectionHandler
    var origin: UpstreamOrigin { handler.origin }
}
