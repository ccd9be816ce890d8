import NIOCore

/// The read time-out for request heads (slow-loris): a head must arrive whole within `timeout`. It sits in
/// front of the HTTP decoder, which says nothing until a head is whole, to see that bytes of one came.
///
/// When the deadline runs: from the connection's opening, for its first request (so a client that connects and
/// sends nothing holds its slot at most that long); for a later request from its first bytes, once the answers
/// before it are done; it stops when the head is decoded, and the body then has its own deadline
/// (`ProxyHTTPHandler`). A keep-alive connection between requests, with no bytes of a next one, is left to the
/// idle time-out. On expiry: if bytes of a head came, a 408 with `Connection: close` and the connection closes;
/// else it just closes. What arrives after that is dropped.
///
/// Bytes that arrive in the same read as the end of the previous request are not seen as the start of the next
/// head (the decoder does not say where one ends): such a head gets its deadline from its next bytes, and if
/// none come, the idle time-out closes the connection.
final class HeadDeadline: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
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

    init(timeoutSeconds: Int, writeTimeoutSeconds: Int) {
        self.timeoutSeconds = timeoutSeconds
        self.timeout = .seconds(Int64(timeoutSeconds))
        self.writeTimeout = .seconds(Int64(writeTimeoutSeconds))
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        // Added by the child channel initializer, normally before the channel is active.
        if context.channel.isActive { arm() }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        deadline?.cancel()
        deadline = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        arm()
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !expired else { return }
        if awaitingHead { headStarted = true }
        context.fireChannelRead(data)
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
