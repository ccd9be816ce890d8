import NIOCore

/// A client connection's two clocks, in front of the HTTP decoder (which is silent while a head is incomplete):
///
/// - **The head's read time-out** (slow-loris): a head must arrive whole within `timeout`. It runs from the
///   connection's opening, for its first request (so a client that connects and sends nothing holds its slot at
///   most that long); for a later request from its first bytes, once the answers before it are done; it stops
///   when the head is decoded, and the body then has its own deadline (`ProxyHTTPHandler`). A keep-alive
///   connection between requests, with no bytes of a next one, is left to the idle time-out. On expiry: if bytes
///   of a head came, a 408 with `Connection: close` and the connection closes; else it just closes. What arrives
///   after that is dropped. Bytes that arrive in the same read as the end of the previous request are not seen
///   as the start of the next head (the decoder does not say where one ends): such a head gets its deadline
///   from its next bytes, and if none come, the idle time-out closes the connection.
/// - **The idle time-out**: no byte read or written for `idleTimeout` fires `IdleStateHandler.IdleStateEvent.all`
///   down the pipeline (`ProxyHTTPHandler` closes the connection if no request is in progress). One timer, moved
///   on when it fires early; a read or a write only notes the time. (NIO's `IdleStateHandler` did the same with a
///   promise and a callback per write, about 7% of budget-proxyd's CPU together with this handler's hop.)
final class ConnectionDeadlines: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let timeout: TimeAmount
    /// How long the 408 may take to be written before the connection is closed anyway.
    private let writeTimeout: TimeAmount
    private let timeoutSeconds: Int
    private var context: ChannelHandlerContext?
    /// The next request's head has not been decoded yet.
    private var awaitingHead = true
    /// Bytes came while the head was awaited: part of one is in the decoder.
    private var headStarted = false
    /// Requests have been read whose answers are not done.
    private var busy = false
    private var expired = false
    private var deadline: Scheduled<Void>?
    private let idleTimeout: TimeAmount
    /// The last read or write.
    private var lastActivity = NIODeadline.now()
    private var idleTimer: Scheduled<Void>?

    init(timeoutSeconds: Int, writeTimeoutSeconds: Int, idleTimeoutSeconds: Int) {
        self.timeoutSeconds = timeoutSeconds
        self.timeout = .seconds(Int64(timeoutSeconds))
        self.writeTimeout = .seconds(Int64(writeTimeoutSeconds))
        self.idleTimeout = .seconds(Int64(idleTimeoutSeconds))
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        // Added by the child channel initializer, normally before the channel is active.
        if context.channel.isActive { start() }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        stop()
    }

    func channelActive(context: ChannelHandlerContext) {
        start()
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        stop()
        context.fireChannelInactive()
    }

    private func start() {
        arm()
        guard idleTimer == nil, let context else { return }
        lastActivity = .now()
        armIdle(in: idleTimeout, context: context)
    }

    private func stop() {
        deadline?.cancel()
        deadline = nil
        idleTimer?.cancel()
        idleTimer = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        lastActivity = .now()
        guard !expired else { return }
        if awaitingHead { headStarted = true }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        lastActivity = .now()
        context.write(data, promise: promise)
    }

    private func armIdle(in delay: TimeAmount, context: ChannelHandlerContext) {
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        idleTimer = context.eventLoop.scheduleTask(in: delay) { handler.value.idleTimerFired() }
    }

    /// Idle for the whole time-out: the event goes down the pipeline; else the timer moves to the time-out's end
    /// counted from the last activity.
    private func idleTimerFired() {
        idleTimer = nil
        guard let context else { return }
        let idleFor = NIODeadline.now() - lastActivity
        if idleFor >= idleTimeout {
            armIdle(in: idleTimeout, context: context)
            context.fireUserInboundEventTriggered(IdleStateHandler.IdleStateEvent.all)
        } else {
            armIdle(in: idleTimeout - idleFor, context: context)
        }
    }

    /// After the decoder has had the bytes read: a head still incomplete gets its deadline now. (Arming here,
    /// not on each read, spares a timer for the usual head that arrives in one read.)
    func channelReadComplete(context: ChannelHandlerContext) {
        if headStarted { arm() }
        context.fireChannelReadComplete()
    }

    /// The head is whole (`ProxyHTTPHandler` got it).
    func headReceived() {
        awaitingHead = false
        headStarted = false
        deadline?.cancel()
        deadline = nil
    }

    /// The request is whole and being answered; the next one's head is awaited.
    func requestReceived() {
        awaitingHead = true
        headStarted = false
        busy = true
    }

    /// The answers in progress are done. A head started meanwhile (pipelined) gets its deadline now.
    func answersDone() {
        busy = false
        if headStarted { arm() }
    }

    private func arm() {
        guard awaitingHead, !busy, !expired, deadline == nil, let context else { return }
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        deadline = context.eventLoop.scheduleTask(in: timeout) { handler.value.expire() }
    }

    private func expire() {
        deadline = nil
        guard let context, awaitingHead, !expired else { return }
        expired = true
        guard headStarted else {
            context.close(promise: nil)
            return
        }
        // Written from here, in front of the HTTP handlers, which have no request to answer: nothing else is
        // being written (no answers are in progress).
        let payload = "{\"message\":\"the request head did not arrive within \(timeoutSeconds) seconds\"}"
        let response =
            "HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\nContent-Length: \(payload.utf8.count)\r\n"
            + "Connection: close\r\nDate: \(httpDate())\r\n\r\n\(payload)"
        let channel = context.channel
        let fallback = context.eventLoop.scheduleTask(in: writeTimeout) { channel.close(promise: nil) }
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(string: response))).whenComplete { _ in
            fallback.cancel()
            channel.close(promise: nil)
        }
    }
}
