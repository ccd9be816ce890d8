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
/// requests run one after another in that task (HTTP/1.1 answers in order). NIO's parser reads requests;
/// the channel handler gathers and bounds them, and the connection's task writes each answer as bytes
/// (`ChannelSink`), refusals included, so answers go out in the order of their requests. On graceful
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
            // A client that shuts down its sending side after its request still gets its answer.
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    guard open.increment(below: limits.maxConnections) else {
                        channel.close(promise: nil)
                        return
                    }
                    channel.closeFuture.whenComplete { _ in open.add(-1) }
                    let (requests, requestSink) = AsyncStream.makeStream(of: ProxyConnection.Job.self)
                    let headDeadline = ConnectionDeadlines(
                        timeoutSeconds: limits.readTimeoutSeconds, writeTimeoutSeconds: limits.writeTimeoutSeconds,
                        idleTimeoutSeconds: limits.idleTimeoutSeconds)
                    let handler = ProxyHTTPHandler(
                        limits: limits, requests: requestSink, headDeadline: headDeadline, refusals: refusals)
                    // Both time-outs in front of the decoder, which is silent while a head is incomplete: the
                    // head's deadline sees a head begin, and bytes of one count as traffic for the idle one.
                    try channel.pipeline.syncOperations.addHandler(headDeadline)
                    try channel.pipeline.syncOperations.addHandler(
                        ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes)))
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
    /// A whole request, or a refusal of the HTTP layer, and where its answer goes.
    struct Job: Sendable {
        enum Work: Sendable {
            case request(ProxyRequest)
            /// Written in its turn with `Connection: close`; the handler closes the connection once it is out
            /// and the refused request has been read to its end.
            case refusal(status: Int, headers: [(String, String)], body: [UInt8])
        }

        var work: Work
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
                        switch job.work {
                        case .request(let request):
                            // Read while an earlier one was answered, its client gone since (the connection has
                            // closed): not started, so no one is charged for a Bedrock call nobody will read.
                            if channel.isActive { await serveRequest(request, job.sink) }
                            channel.eventLoop.execute { handler.value.requestFinished() }
                        case .refusal(let status, let headers, let body):
                            await job.sink.respond(
                                status: status, headers: headers, body: body, close: true, thenClose: false)
                            channel.eventLoop.execute { handler.value.refusalWritten() }
                        }
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

/// A refusal of the HTTP layer in another error shape: the headers and body for a request's method and path
/// (no query), status and message; nil keeps the default shape.
typealias RefusalRenderer =
    @Sendable (_ method: String, _ path: String, _ status: Int, _ message: String) -> (
        headers: [(String, String)], body: [UInt8]
    )?

/// One client connection's pipeline end: gathers each request that NIO's parser reads (bounded) and hands it to
/// the connection's task; what breaks the limits, or does not parse, is handed over as a refusal with a short
/// JSON answer, in its turn behind the answers before it.
///
/// Reads go on while requests are answered (a client may pipeline up to `pipelineDepth` requests past the one
/// being answered, plus the rest of the read that brought the last of them); past that, they wait for answers.
/// A client that shuts down its sending side gets the answers to what it sent, then the connection closes.
final class ProxyHTTPHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// Requests read and not yet answered past which reading waits.
    static let pipelineDepth = 16

    private let limits: HTTPLimits
    private let requests: AsyncStream<ProxyConnection.Job>.Continuation
    /// The head's deadline, in front of the decoder; this handler's `readDeadline` is the body's.
    private let headDeadline: ConnectionDeadlines
    private let refusals: RefusalRenderer?
    private var context: ChannelHandlerContext?
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []
    /// A refusal has been handed over: everything read from here on is dropped.
    private var refused = false
    /// The refusal is written.
    private var refusalOut = false
    /// The refused request has been read to its end (or nothing more will be read).
    private var refusedInputDone = false
    /// A request without keep-alive has been read: what follows it is dropped (its answer closes the connection).
    private var lastRequestRead = false
    /// The client shut down its sending side.
    private var inputClosed = false
    /// Requests handed over and not yet answered (more than one when the client pipelines).
    private var unanswered = 0
    private var closingWhenIdle = false
    /// A `read` held back while `pipelineDepth` requests wait for their answers.
    private var readHeld = false
    /// A head asked for `100 Continue` while earlier answers were being written: it goes out after them.
    private var continuePending = false
    private var readDeadline: Scheduled<Void>?

    init(
        limits: HTTPLimits, requests: AsyncStream<ProxyConnection.Job>.Continuation, headDeadline: ConnectionDeadlines,
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
        if case .some(.inputClosed) = event as? ChannelEvent {
            // The decoder has seen the end (a request cut short is a parse error, refused before this event).
            inputClosed = true
            if refused {
                refusedInputDone = true
                closeIfRefusalDone()
            } else {
                closeIfAnswered()
            }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func read(context: ChannelHandlerContext) {
        guard unanswered < Self.pipelineDepth else {
            readHeld = true
            return
        }
        context.read()
    }

    /// Called on the event loop when the connection's task has answered a request.
    func requestFinished() {
        unanswered -= 1
        if unanswered == 0 {
            headDeadline.answersDone()
            if continuePending {
                continuePending = false
                writeContinue()
            }
        }
        if readHeld && unanswered < Self.pipelineDepth {
            readHeld = false
            context?.read()
        }
        closeIfAnswered()
    }

    /// Called on the event loop when the connection's task has written the refusal.
    func refusalWritten() {
        refusalOut = true
        closeIfRefusalDone()
    }

    /// Graceful shutdown: close now if nothing is in progress, else after the answers in progress.
    func closeWhenIdle() {
        closingWhenIdle = true
        closeIfAnswered()
    }

    /// Closes once every request read is answered, when nothing more will come: the client shut down its sending
    /// side, or a graceful shutdown waits and no request has begun. (A refusal closes on its own terms.)
    private func closeIfAnswered() {
        if unanswered == 0 && !refused && (inputClosed || (closingWhenIdle && head == nil)) {
            context?.close(promise: nil)
        }
    }

    /// Closes once the refusal is on the wire and the refused request has been read: closing while the client
    /// still sends would reset the connection before it reads the answer.
    private func closeIfRefusalDone() {
        if refusalOut && refusedInputDone { context?.close(promise: nil) }
    }

    private func writeContinue() {
        guard let context, context.channel.isActive else { return }
        context.writeAndFlush(
            wrapOutboundOut(context.channel.allocator.buffer(staticString: "HTTP/1.1 100 Continue\r\n\r\n")),
            promise: nil)
    }

    /// Hands over a refusal of the request in progress (or of bytes that do not parse): a short JSON answer
    /// with `Connection: close`, written by the connection's task in its turn. From here on, what is read is
    /// dropped, bounded by the read time-out.
    private func refuse(
        _ context: ChannelHandlerContext, status: HTTPResponseStatus, message: String, inputDone: Bool = false
    ) {
        refused = true
        refusedInputDone = inputDone
        continuePending = false
        var payload = Array("{\"message\":\"\(message)\"}".utf8)
        var headers: [(String, String)] = [("Content-Type", "application/json")]
        if let refusals, let head,
            let shaped = refusals(
                head.method.rawValue, String(head.uri.prefix { $0 != "?" }), Int(status.code), message)
        {
            payload = shaped.body
            headers = shaped.headers
        }
        let sink = ChannelSink(
            channel: context.channel, keepAlive: false, version: .http1_1,
            writeTimeout: .seconds(Int64(limits.writeTimeoutSeconds)))
        let refusal = ProxyConnection.Job(
            work: .refusal(status: Int(status.code), headers: headers, body: payload), sink: sink)
        if case .terminated = requests.yield(refusal) { context.close(promise: nil) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let requestHead):
            headDeadline.headReceived()
            // Pipelined behind a refused request, or behind one that closes the connection: dropped.
            guard !refused, !lastRequestRead else { return }
            head = requestHead
            body = []
            // The body's deadline is set at the end of this read burst, if the request is not whole by then
            // (`channelReadComplete`): most requests arrive in one read, and need no timer.
            if requestHead.headers.count > limits.maxHeaderCount {
                refuse(
                    context, status: .requestHeaderFieldsTooLarge,
                    message: "\(requestHead.headers.count) header fields exceed the limit of \(limits.maxHeaderCount)")
                return
            }
            let length = requestHead.headers.first(name: "content-length").flatMap(Int.init)
            if let length, length > limits.maxBodyBytes {
                refuse(
                    context, status: .payloadTooLarge,
                    message: "request body of \(length) bytes exceeds the limit of \(limits.maxBodyBytes) bytes")
                return
            }
            if requestHead.version.minor >= 1,
                requestHead.headers.first(name: "expect")?.lowercased() == "100-continue"
            {
                // Not into an answer still being written: after it.
                if unanswered == 0 { writeContinue() } else { continuePending = true }
            }
        case .body(let buffer):
            guard !refused, head != nil else { return }
            if body.count + buffer.readableBytes > limits.maxBodyBytes {
                refuse(
                    context, status: .payloadTooLarge,
                    message: "request body exceeds the limit of \(limits.maxBodyBytes) bytes")
                return
            }
            body.append(contentsOf: buffer.readableBytesView)
        case .end:
            readDeadline?.cancel()
            readDeadline = nil
            guard let head else { return }
            self.head = nil
            if refused {
                refusedInputDone = true
                closeIfRefusalDone()
                return
            }
            continuePending = false
            let target = head.uri
            let queryStart = target.firstIndex(of: "?")
            let request = ProxyRequest(
                method: head.method.rawValue, path: String(target[..<(queryStart ?? target.endIndex)]),
                query: queryStart.map { String(target[target.index(after: $0)...]) } ?? "",
                headers: head.headers.map { ($0.name, $0.value) }, body: body)
            body = []
            unanswered += 1
            headDeadline.requestReceived()
            if !head.isKeepAlive { lastRequestRead = true }
            let sink = ChannelSink(
                channel: context.channel, keepAlive: head.isKeepAlive, version: head.version,
                writeTimeout: .seconds(Int64(limits.writeTimeoutSeconds)), headOnly: head.method == .HEAD)
            if case .terminated = requests.yield(ProxyConnection.Job(work: .request(request), sink: sink)) {
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
        if let parseError = error as? HTTPParserError {
            // The decoder reads nothing more after this.
            guard !refused else {
                refusedInputDone = true
                closeIfRefusalDone()
                return
            }
            if parseError == .headerOverflow {
                refuse(
                    context, status: .requestHeaderFieldsTooLarge,
                    message: "the request's header block exceeds 80 KiB", inputDone: true)
            } else {
                refuse(context, status: .badRequest, message: "malformed HTTP request: \(parseError)", inputDone: true)
            }
            return
        }
        // Bytes after a parse error, which the decoder drops: the refusal is on its way.
        if error is ByteToMessageDecoderError { return }
        context.close(promise: nil)
    }
}
