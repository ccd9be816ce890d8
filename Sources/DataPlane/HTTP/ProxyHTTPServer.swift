import DaemonKit
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle

/// What serves one request: the proxy's hot path, or the status endpoint.
typealias HTTPRequestHandler = @Sendable (ProxyRequest, any ResponseSink) async -> Void

/// HTTP/1.1 on SwiftNIO for the proxy: keep-alive, pipelining, chunked request bodies, `Expect: 100-continue`,
/// bounded headers (NIO's parser: 80 KiB), bodies, connections and time-outs.
///
/// Structure: `serve` runs one child task per connection in a discarding task group, and each connection's
/// requests run one after another in that task (HTTP/1.1 answers in order). The channel handler only
/// gathers and bounds requests; a connection that closes cancels the request it is serving. On graceful
/// shutdown the listeners close, idle connections close, busy ones close after their response, and what is
/// still running after `HTTPLimits.drainTimeout` is cancelled.
final class ProxyHTTPServer: Sendable {
    private let listeners: [any Channel]
    private let connections: AsyncStream<ProxyConnection>
    private let accepted: AsyncStream<ProxyConnection>.Continuation
    private let open: Gauge
    private let limits: HTTPLimits

    private init(
        listeners: [any Channel], connections: AsyncStream<ProxyConnection>,
        accepted: AsyncStream<ProxyConnection>.Continuation, open: Gauge, limits: HTTPLimits
    ) {
        self.listeners = listeners
        self.connections = connections
        self.accepted = accepted
        self.open = open
        self.limits = limits
    }

    /// The bound addresses, as `host:port` or `unix:/path` (a port 0 resolved to the real one).
    var boundAddresses: [String] {
        listeners.compactMap { channel in
            guard let address = channel.localAddress else { return nil }
            if let port = address.port { return "\(address.ipAddress ?? "?"):\(port)" }
            return address.pathname.map { "unix:\($0)" }
        }
    }

    /// Adopts `inherited` sockets (from systemd) if any, else binds `addresses`; connections wait for `serve`.
    /// `refusals` writes the server's own refusals (a body over the limit, too many header fields) in the
    /// error shape of the route's clients; without it, or when it returns nil, they are Kong's `{"message":…}`.
    static func bind(
        addresses: [ListenAddress], inherited: [Int32] = [], group: any EventLoopGroup, limits: HTTPLimits,
        refusals: RefusalRenderer? = nil
    ) async throws -> ProxyHTTPServer {
        let open = Gauge()
        let (connections, accepted) = AsyncStream.makeStream(of: ProxyConnection.self)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    guard open.increment(below: limits.maxConnections) else {
                        channel.close(promise: nil)
                        return
                    }
                    channel.closeFuture.whenComplete { _ in open.add(-1) }
                    let (requests, requestSink) = AsyncStream.makeStream(of: ProxyConnection.Job.self)
                    let headDeadline = HeadDeadline(
                        timeoutSeconds: limits.readTimeoutSeconds, writeTimeoutSeconds: limits.writeTimeoutSeconds)
                    let handler = ProxyHTTPHandler(
                        limits: limits, requests: requestSink, headDeadline: headDeadline, refusals: refusals)
                    // Both time-outs in front of the decoder, which is silent while a head is incomplete: the
                    // head's deadline sees a head begin, and bytes of one count as traffic for the idle one.
                    try channel.pipeline.syncOperations.addHandler(headDeadline)
                    try channel.pipeline.syncOperations.addHandler(
                        IdleStateHandler(allTimeout: .seconds(Int64(limits.idleTimeoutSeconds))))
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(handler)
                    let connection = ProxyConnection(
                        channel: channel, requests: requests,
                        handler: NIOLoopBound(handler, eventLoop: channel.eventLoop))
                    if case .terminated = accepted.yield(connection) { channel.close(promise: nil) }
                }
            }
        var listeners: [any Channel] = []
        do {
            for descriptor in inherited {
                listeners.append(try await bootstrap.withBoundSocket(descriptor).get())
            }
            for address in addresses where inherited.isEmpty {
                switch address {
                case .tcp(let host, let port):
                    listeners.append(try await bootstrap.bind(host: host, port: port).get())
                case .unix(let path):
                    listeners.append(
                        try await bootstrap.bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true).get())
                }
            }
        } catch {
            for channel in listeners { try? await channel.close() }
            accepted.finish()
            throw error
        }
        return ProxyHTTPServer(
            listeners: listeners, connections: connections, accepted: accepted, open: open, limits: limits)
    }

    /// Serves connections with `handler` until graceful shutdown (or cancellation), then drains them.
    func serve(_ handler: @escaping HTTPRequestHandler) async {
        let drainTimeout = limits.drainTimeout
        await withDiscardingTaskGroup { group in
            await withGracefulShutdownHandler {
                for await connection in connections {
                    group.addTask { await connection.serve(handler) }
                }
            } onGracefulShutdown: {
                self.stopAccepting()
            }
            self.stopAccepting()
            // No new connections from here on: let the open ones finish their requests, for a bounded time.
            let drained = await withDeadline(drainTimeout) { [open] in await open.waitUntilZero() }
            if drained != true { group.cancelAll() }
        }
    }

    /// Closes the listeners; connections already accepted stay open.
    private func stopAccepting() {
        let accepted = self.accepted
        let closed = listeners.map { $0.close() }
        guard let first = closed.first else {
            accepted.finish()
            return
        }
        EventLoopFuture.whenAllComplete(closed, on: first.eventLoop).whenComplete { _ in accepted.finish() }
    }
}

/// One accepted client connection: the requests its channel handler has gathered, served in order.
struct ProxyConnection: Sendable {
    /// A whole request and where its answer goes.
    struct Job: Sendable {
        var request: ProxyRequest
        var sink: ChannelSink
    }

    let channel: any Channel
    let requests: AsyncStream<Job>
    let handler: NIOLoopBound<ProxyHTTPHandler>

    /// Serves the connection's requests until it closes. A request in progress when the client hangs up runs to
    /// its end and is charged; a graceful shutdown closes the connection once idle.
    func serve(_ serveRequest: @escaping HTTPRequestHandler) async {
        let handler = self.handler
        let channel = self.channel
        await withGracefulShutdownHandler {
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    for await job in requests {
                        await serveRequest(job.request, job.sink)
                        channel.eventLoop.execute { handler.value.requestFinished() }
                    }
                }
                // Cancelled (the drain ran out of time): close the connection, which fails the writes a request
                // may be stuck in (a client that stopped reading) and so ends it.
                await withTaskCancellationHandler {
                    try? await channel.closeFuture.get()
                } onCancel: {
                    channel.close(promise: nil)
                }
                // The client hung up: the request in progress is not cancelled. Its Bedrock call runs to its end
                // (bounded by the service's read time-out), since Bedrock bills it, and its usage is charged;
                // its answer goes nowhere. The connection's request stream has ended, so nothing else starts.
            }
        } onGracefulShutdown: {
            channel.eventLoop.execute { handler.value.closeWhenIdle() }
        }
    }
}

/// One client connection's pipeline end: gathers each request (bounded) and hands it to the connection's
/// A refusal of the HTTP layer in another error shape: the headers and body for a request's method and path
/// (no query), status and message; nil keeps the default shape.
typealias RefusalRenderer =
    @Sendable (_ method: String, _ path: String, _ status: Int, _ message: String) -> (
        headers: [(String, String)], body: [UInt8]
    )?

/// task; refuses what breaks the limits with a short JSON answer.
final class ProxyHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let limits: HTTPLimits
    private let requests: AsyncStream<ProxyConnection.Job>.Continuation
    /// The head's deadline, in front of the decoder; this handler's `readDeadline` is the body's.
    private let headDeadline: HeadDeadline
    private let refusals: RefusalRenderer?
    private var context: ChannelHandlerContext?
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []
    private var refused = false
    /// Completes when the refusal's last part has been written.
    private var refusalWritten: EventLoopFuture<Void>?
    /// Requests handed over and not yet answered (more than one when the client pipelines).
    private var unanswered = 0
    private var closingWhenIdle = false
    private var readDeadline: Scheduled<Void>?

    init(
        limits: HTTPLimits, requests: AsyncStream<ProxyConnection.Job>.Continuation, headDeadline: HeadDeadline,
        refusals: RefusalRenderer? = nil
    ) {
        self.refusals = refusals
        self.limits = limits
        self.requests = requests
        self.headDeadline = headDeadline
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelInactive(context: ChannelHandlerContext) {
        readDeadline?.cancel()
        requests.finish()
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            if unanswered == 0 && head == nil { context.close(promise: nil) }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// Called on the event loop when the connection's task has answered a request.
    func requestFinished() {
        unanswered -= 1
        if unanswered == 0 { headDeadline.answersDone() }
        if closingWhenIdle && unanswered == 0 && head == nil { context?.close(promise: nil) }
    }

    /// Graceful shutdown: close now if nothing is in progress, else after the answers in progress.
    func closeWhenIdle() {
        closingWhenIdle = true
        if unanswered == 0 && head == nil { context?.close(promise: nil) }
    }

    /// Refuses the request in progress with a short JSON answer and `Connection: close`.
    ///
    /// The answer is written on the next turn of the event loop, not from inside `channelRead`: NIO hands over a
    /// request pipelined behind an answered one from within the write of that answer's end, and a response
    /// written there, before the earlier one is flushed, would be lost. `refused` is set at once, so the rest of
    /// this request (and anything pipelined after it) is read and dropped, bounded by the read time-out; the
    /// connection closes once the answer is out: closing while the client still sends would reset it before it
    /// reads the answer.
    private func simple(_ context: ChannelHandlerContext, status: HTTPResponseStatus, message: String) {
        refused = true
        var shapedPayload = Array("{\"message\":\"\(message)\"}".utf8)
        var extra: [(String, String)] = []
        if let refusals, let head,
            let shaped = refusals(
                head.method.rawValue, String(head.uri.prefix { $0 != "?" }), Int(status.code), message)
        {
            shapedPayload = shaped.body
            extra = shaped.headers
        }
        let payload = shapedPayload
        var headers = HTTPHeaders(
            [
                ("Content-Type", "application/json"), ("Content-Length", String(payload.count)),
                ("Connection", "close"),
            ] + extra)
        headers.add(name: "Date", value: httpDate())
        let head = HTTPResponseHead(version: .http1_1, status: status, headers: headers)
        let written = context.eventLoop.makePromise(of: Void.self)
        refusalWritten = written.futureResult
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.eventLoop.execute {
            let context = bound.value
            context.write(NIOAny(HTTPServerResponsePart.head(head)), promise: nil)
            context.write(
                NIOAny(HTTPServerResponsePart.body(.byteBuffer(context.channel.allocator.buffer(bytes: payload)))),
                promise: nil)
            context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil)), promise: written)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let requestHead):
            headDeadline.headReceived()
            guard !refused else { return }  // a request pipelined behind a refused one: the connection is closing
            head = requestHead
            body = []
            // The body's deadline is set at the end of this read burst, if the request is not whole by then
            // (`channelReadComplete`): most requests arrive in one read, and need no timer.
            if requestHead.headers.count > limits.maxHeaderCount {
                simple(
                    context, status: .requestHeaderFieldsTooLarge,
                    message: "\(requestHead.headers.count) header fields exceed the limit of \(limits.maxHeaderCount)")
                return
            }
            let length = requestHead.headers.first(name: "content-length").flatMap(Int.init)
            if let length, length > limits.maxBodyBytes {
                simple(
                    context, status: .payloadTooLarge,
                    message: "request body of \(length) bytes exceeds the limit of \(limits.maxBodyBytes) bytes")
                return
            }
            if requestHead.headers.first(name: "expect")?.lowercased() == "100-continue" {
                context.writeAndFlush(
                    wrapOutboundOut(.head(HTTPResponseHead(version: requestHead.version, status: .continue))),
                    promise: nil)
            }
        case .body(var buffer):
            guard !refused else { return }
            if body.count + buffer.readableBytes > limits.maxBodyBytes {
                simple(
                    context, status: .payloadTooLarge,
                    message: "request body exceeds the limit of \(limits.maxBodyBytes) bytes")
                return
            }
            body += buffer.readBytes(length: buffer.readableBytes) ?? []
        case .end:
            readDeadline?.cancel()
            readDeadline = nil
            if refused {
                // Once the refusal is on the wire: closing now could drop answers still being flushed (an earlier
                // pipelined request's, or the refusal itself).
                let channel = context.channel
                if let refusalWritten {
                    refusalWritten.whenComplete { _ in channel.close(promise: nil) }
                } else {
                    context.close(promise: nil)
                }
                return
            }
            guard let head else { return }
            self.head = nil
            let target = head.uri
            let queryStart = target.firstIndex(of: "?")
            let request = ProxyRequest(
                method: head.method.rawValue, path: String(target[..<(queryStart ?? target.endIndex)]),
                query: queryStart.map { String(target[target.index(after: $0)...]) } ?? "",
                headers: head.headers.map { ($0.name, $0.value) }, body: body)
            body = []
            unanswered += 1
            headDeadline.requestReceived()
            let sink = ChannelSink(
                channel: context.channel, keepAlive: head.isKeepAlive, version: head.version,
                writeTimeout: .seconds(Int64(limits.writeTimeoutSeconds)))
            if case .terminated = requests.yield(ProxyConnection.Job(request: request, sink: sink)) {
                context.close(promise: nil)
            }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if head != nil && readDeadline == nil {
            let channel = context.channel
            readDeadline = context.eventLoop.scheduleTask(in: .seconds(Int64(limits.readTimeoutSeconds))) {
                channel.close(promise: nil)
            }
        }
        context.fireChannelReadComplete()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
