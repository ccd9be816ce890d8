import NIOCore
import NIOHTTP1

/// One call on an upstream connection, confined to the connection's event loop: where its answer goes and
/// how far it got.
final class UpstreamExchange {
    enum Mode {
        /// The body is collected on the loop, up to `limit` bytes, and handed over with the head.
        case collect(limit: Int)
        /// The head is handed over at once; the body part by part, with back-pressure.
        case stream
    }

    let request: UpstreamRequest
    let mode: Mode
    let readTimeout: TimeAmount
    private let answer: EventLoopPromise<UpstreamResponse>
    /// Whether the head has been handed over (after which a failure ends the body instead).
    private var answered = false
    /// Whether the call has ended (answered whole, failed or cancelled).
    private(set) var isOver = false
    /// Whether the request's last byte has been written.
    var requestSent = false
    /// Closes the call's connection, once it has one.
    var closeConnection: (() -> Void)?
    private var head: HTTPResponseHead?
    /// The answer's bytes received and not yet handed over: the whole body when collecting, the current read
    /// burst's when streaming.
    private var buffered: ByteBuffer?
    private var body: NIOThrowingAsyncSequenceProducer<
        ByteBuffer, any Error, NIOAsyncSequenceProducerBackPressureStrategies.HighLowWatermark, UpstreamBodyDelegate
    >.Source?

    init(request: UpstreamRequest, mode: Mode, readTimeout: TimeAmount, answer: EventLoopPromise<UpstreamResponse>) {
        self.request = request
        self.mode = mode
        self.readTimeout = readTimeout
        self.answer = answer
    }

    /// The answer's head arrived. Streaming: hands it over with a body to read as it comes.
    func received(_ head: HTTPResponseHead, delegate: @autoclosure () -> UpstreamBodyDelegate) {
        guard !isOver else { return }
        self.head = head
        guard case .stream = mode else { return }
        let sequence = NIOThrowingAsyncSequenceProducer.makeSequence(
            elementType: ByteBuffer.self, failureType: (any Error).self,
            backPressureStrategy: NIOAsyncSequenceProducerBackPressureStrategies.HighLowWatermark(
                lowWatermark: 2, highWatermark: 8),
            finishOnDeinit: false, delegate: delegate())
        body = sequence.source
        answered = true
        answer.succeed(UpstreamResponse(status: head.status, headers: head.headers, body: .stream(sequence.sequence)))
    }

    /// What a part of the body asks of the connection.
    enum PartOutcome {
        case readMore
        /// The consumer is behind: read no more until it asks.
        case pause
        /// The call cannot go on (the consumer left, the body is over its limit): close the connection.
        case close
    }

    func received(_ part: ByteBuffer) -> PartOutcome {
        guard !isOver else { return .close }
        if buffered == nil {
            buffered = part
        } else {
            var part = part
            buffered?.writeBuffer(&part)
        }
        // Streaming, the parts are held until the end of the read burst (`flushStream`): the parts of one read
        // (Bedrock sends a frame per HTTP chunk) reach the reader together, and become one write to the client.
        guard case .collect(let limit) = mode, let size = buffered?.readableBytes, size > limit else {
            return .readMore
        }
        fail(
            UpstreamFailure(
                kind: .tooLarge, requestSent: true,
                detail: "the upstream's answer exceeds the limit of \(limit) bytes"))
        return .close
    }

    /// Hands the stream's reader what the read burst brought.
    func flushStream() -> PartOutcome {
        guard case .stream = mode, buffered != nil else { return .readMore }
        guard !isOver else {
            buffered = nil
            return .close
        }
        return handOver() ?? .readMore
    }

    /// Hands what is buffered to the stream's reader; nil when nothing is.
    private func handOver() -> PartOutcome? {
        guard let part = buffered else { return nil }
        buffered = nil
        switch body?.yield(part) {
        case .produceMore: return .readMore
        case .stopProducing: return .pause
        case .dropped, nil:
            isOver = true
            return .close
        }
    }

    /// The answer is complete.
    func ended() {
        guard !isOver else { return }
        isOver = true
        switch mode {
        case .collect:
            guard let head else { return }
            answered = true
            answer.succeed(
                UpstreamResponse(
                    status: head.status, headers: head.headers,
                    body: .collected(buffered ?? ByteBuffer())))
        case .stream:
            _ = handOver()
            body?.finish()
        }
    }

    /// Ends the call with `failure`: the caller waiting for the head gets it, or the body's reader does.
    func fail(_ failure: UpstreamFailure) {
        guard !isOver else { return }
        isOver = true
        var failure = failure
        failure.answerBegan = head != nil
        if answered {
            _ = handOver()  // what arrived before the failure is read first
            body?.finish(failure)
        } else {
            answered = true
            answer.fail(failure)
        }
    }

    /// The caller's task was cancelled: the call ends and its connection closes.
    func cancel() {
        guard !isOver else { return }
        fail(UpstreamFailure(kind: .cancelled, requestSent: requestSent, detail: "cancelled"))
        closeConnection?()
    }
}

/// The pipeline's end on an upstream connection: writes one exchange's request at a time and feeds its
/// answer back; between exchanges the connection idles in its pool, and anything it receives then closes it.
final class UpstreamConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// Where finished connections go back to; set once connected.
    weak var pool: LoopPool?
    let origin: UpstreamOrigin
    /// The connection's response parser, told of each request this handler writes.
    private let decoder: UpstreamResponseDecoder
    private var context: ChannelHandlerContext?
    private var exchange: UpstreamExchange?
    private var keepAlive = true
    /// Reading is held back: the stream's consumer is behind.
    private var paused = false
    /// A read the pipeline asked for while paused, issued on resumption.
    private var readPending = false
    private var lastActivity = NIODeadline.now()
    private var timer: Scheduled<Void>?
    /// When `timer` fires.
    private var timerDeadline = NIODeadline.uptimeNanoseconds(0)

    init(origin: UpstreamOrigin, decoder: UpstreamResponseDecoder) {
        self.origin = origin
        self.decoder = decoder
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        timer?.cancel()
        timer = nil
    }

    /// Writes `exchange`'s request, in one flush, and waits for its answer.
    func run(_ exchange: UpstreamExchange) {
        guard let context else {
            exchange.fail(UpstreamFailure(kind: .broken, requestSent: false, detail: "the connection closed"))
            return
        }
        self.exchange = exchange
        keepAlive = true
        resumeReading()
        let channel = context.channel
        exchange.closeConnection = { channel.close(promise: nil) }
        let request = exchange.request
        var bytes = context.channel.allocator.buffer(capacity: 512 + request.body.count)
        if let invalid = Self.write(request, into: &bytes) {
            detach()
            // Nothing was written: the connection goes back to its pool as it came.
            if let pool { pool.release(UpstreamConnection(channel: channel, handler: self)) }
            exchange.fail(
                UpstreamFailure(
                    kind: .broken, requestSent: false,
                    detail: "the request header \"\(invalid)\" holds bytes that HTTP does not allow"))
            return
        }
        decoder.expectResponse(to: request.method)
        let sent = context.eventLoop.makePromise(of: Void.self)
        sent.futureResult.assumeIsolated().whenSuccess { exchange.requestSent = true }
        context.writeAndFlush(wrapOutboundOut(bytes), promise: sent)
        lastActivity = .now()
        // A timer left from an earlier exchange serves this one too when it fires no later than this one's
        // time-out would: it then re-arms for what is left (`timerFired`). A pooled connection so schedules a
        // timer about once per time-out, not once per call.
        if timer == nil || timerDeadline > lastActivity + exchange.readTimeout {
            timer?.cancel()
            armTimer(exchange.readTimeout)
        }
    }

    /// The request line, headers (with its `Content-Length`) and body, as HTTP/1.1 bytes; the name of a header
    /// that cannot go on the wire, if any.
    private static func write(_ request: UpstreamRequest, into bytes: inout ByteBuffer) -> String? {
        bytes.writeString(request.method.rawValue)
        bytes.writeStaticString(" ")
        bytes.writeString(request.path)
        bytes.writeStaticString(" HTTP/1.1\r\n")
        for (name, value) in request.headers {
            guard HeaderField.isValid(name: name, value: value) else { return name }
            guard !name.caseInsensitiveEquals("content-length"), !name.caseInsensitiveEquals("transfer-encoding")
            else { continue }
            bytes.writeHeaderField(name: name, value: value)
        }
        bytes.writeHeaderField(name: "Content-Length", value: String(request.body.count))
        bytes.writeStaticString("\r\n")
        bytes.writeBytes(request.body)
        return nil
    }

    private func armTimer(_ delay: TimeAmount) {
        guard let context else { return }
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        timerDeadline = .now() + delay
        timer = context.eventLoop.scheduleTask(in: delay) { bound.value.timerFired() }
    }

    /// The read time-out: no byte for `readTimeout` (a consumer that is behind does not count as silence).
    /// Between exchanges the timer is left to fire, and then not re-armed.
    private func timerFired() {
        timer = nil
        guard let exchange, !exchange.isOver else { return }
        let silent = NIODeadline.now() - lastActivity
        if paused || silent < exchange.readTimeout {
            armTimer(paused ? exchange.readTimeout : exchange.readTimeout - silent)
            return
        }
        detach()
        exchange.fail(
            UpstreamFailure(
                kind: .timeout, requestSent: exchange.requestSent,
                detail: "no answer within \(exchange.readTimeout.nanoseconds / 1_000_000) ms"))
        context?.close(promise: nil)
    }

    /// The exchange is over on this connection. Its timer is left to run (the next exchange may use it); firing
    /// without an exchange, it does nothing.
    private func detach() {
        exchange = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let exchange else {
            context.close(promise: nil)  // an idle connection has nothing to receive
            return
        }
        lastActivity = .now()
        switch unwrapInboundIn(data) {
        case .head(let head):
            keepAlive = head.isKeepAlive
            exchange.received(
                head,
                delegate: UpstreamBodyDelegate(
                    handler: NIOLoopBound(self, eventLoop: context.eventLoop),
                    exchange: NIOLoopBound(exchange, eventLoop: context.eventLoop)))
        case .body(let part):
            switch exchange.received(part) {
            case .readMore: break
            case .pause: paused = true
            case .close:
                detach()
                context.close(promise: nil)
            }
        case .end:
            detach()
            // Whatever the stream's reader does next, the connection reads again: an idle pooled connection must
            // see its server close it, and the next exchange must see its answer.
            resumeReading()
            // Back in the pool before the answer is handed over: a caller on another thread may count the pool,
            // or call again, as soon as it has its answer.
            if keepAlive && !exchange.isOver, let pool {
                pool.release(UpstreamConnection(channel: context.channel, handler: self))
            } else {
                context.close(promise: nil)
            }
            exchange.ended()
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if let exchange {
            switch exchange.flushStream() {
            case .readMore: break
            case .pause: paused = true
            case .close:
                detach()
                context.close(promise: nil)
            }
        }
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let exchange {
            detach()
            exchange.fail(
                UpstreamFailure(
                    kind: .broken, requestSent: exchange.requestSent,
                    detail: "the upstream closed the connection before its answer was complete"))
        } else {
            pool?.forget(context.channel, origin: origin)
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let exchange {
            detach()
            exchange.fail(UpstreamFailure(kind: .broken, requestSent: exchange.requestSent, detail: "\(error)"))
        }
        context.close(promise: nil)
    }

    func read(context: ChannelHandlerContext) {
        if paused {
            readPending = true
        } else {
            context.read()
        }
    }

    /// The stream's consumer of `caller` caught up (a late word from an earlier exchange is ignored).
    func resume(_ caller: UpstreamExchange) {
        guard paused, caller === exchange else { return }
        lastActivity = .now()
        resumeReading()
    }

    /// Reads again, issuing the read the pipeline asked for while paused.
    private func resumeReading() {
        paused = false
        if readPending, let context {
            readPending = false
            context.read()
        }
    }

    /// The stream's consumer of `caller` stopped reading before the end: the connection cannot be reused. (The
    /// word comes a turn of the loop late: by then the exchange may have ended and the connection may serve
    /// another, which is left alone.)
    func abandoned(_ caller: UpstreamExchange) {
        guard let exchange, exchange === caller, !exchange.isOver else { return }
        detach()
        exchange.cancel()
    }
}

/// Tells the connection when the stream's reader wants more, or has gone.
struct UpstreamBodyDelegate: NIOAsyncSequenceProducerDelegate {
    let handler: NIOLoopBound<UpstreamConnectionHandler>
    let exchange: NIOLoopBound<UpstreamExchange>

    func produceMore() {
        let (handler, exchange) = (self.handler, self.exchange)
        handler.eventLoop.execute { handler.value.resume(exchange.value) }
    }

    func didTerminate() {
        let (handler, exchange) = (self.handler, self.exchange)
        handler.eventLoop.execute { handler.value.abandoned(exchange.value) }
    }
}

/// The body of an upstream's answer: collected whole, or a stream of parts as they arrive.
enum UpstreamBody: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    typealias Stream = NIOThrowingAsyncSequenceProducer<
        ByteBuffer, any Error, NIOAsyncSequenceProducerBackPressureStrategies.HighLowWatermark, UpstreamBodyDelegate
    >

    case collected(ByteBuffer)
    case stream(Stream)

    /// The whole body, up to `limit` bytes.
    /// - Throws: `UpstreamFailure` (`.tooLarge` over the limit), or what ended the stream.
    func collect(upTo limit: Int) async throws -> ByteBuffer {
        switch self {
        case .collected(let buffer):
            guard buffer.readableBytes <= limit else {
                throw UpstreamFailure(
                    kind: .tooLarge, requestSent: true, detail: "the upstream's answer exceeds \(limit) bytes")
            }
            return buffer
        case .stream(let stream):
            var whole = ByteBuffer()
            for try await var part in stream {
                guard whole.readableBytes + part.readableBytes <= limit else {
                    throw UpstreamFailure(
                        kind: .tooLarge, requestSent: true, detail: "the upstream's answer exceeds \(limit) bytes")
                }
                whole.writeBuffer(&part)
            }
            return whole
        }
    }

    struct AsyncIterator: AsyncIteratorProtocol {
        fileprivate var collected: ByteBuffer?
        fileprivate var stream: Stream.AsyncIterator?

        mutating func next() async throws -> ByteBuffer? {
            if let buffer = collected {
                collected = nil
                return buffer.readableBytes > 0 ? buffer : nil
            }
            return try await stream?.next()
        }
    }

    func makeAsyncIterator() -> AsyncIterator {
        switch self {
        case .collected(let buffer): AsyncIterator(collected: buffer, stream: nil)
        case .stream(let stream): AsyncIterator(collected: nil, stream: stream.makeAsyncIterator())
        }
    }
}

/// NIO's HTTP/1.1 response parser, told of each request by `UpstreamConnectionHandler`, which writes requests
/// as bytes in one buffer and one flush (NIO's request encoder framed each in three pipeline writes, and its
/// parser learnt of requests by watching them go by). The parser pairs each response with its request: a
/// response to nothing is an error, and a `HEAD`'s has no body.
final class UpstreamResponseDecoder: ByteToMessageDecoder {
    typealias InboundOut = HTTPClientResponsePart

    private let parser = HTTPResponseDecoder(leftOverBytesStrategy: .dropBytes)

    /// A request of `method` has been written: its response is the next to come.
    func expectResponse(to method: HTTPMethod) {
        parser.write(data: .head(HTTPRequestHead(version: .http1_1, method: method, uri: "/")))
    }

    func decoderAdded(context: ChannelHandlerContext) { parser.decoderAdded(context: context) }

    func decoderRemoved(context: ChannelHandlerContext) { parser.decoderRemoved(context: context) }

    func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        try parser.decode(context: context, buffer: &buffer)
    }

    func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        try parser.decodeLast(context: context, buffer: &buffer, seenEOF: seenEOF)
    }
}
