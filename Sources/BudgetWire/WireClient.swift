import Foundation
public import NIOCore
public import NIOPosix

/// A connection to budget-controld over a Unix socket, with request ids so that many requests share it.
///
/// Frames with id 0 (snapshot and delta pushes) arrive on `pushes`. Every call is bounded by `timeout`.
public final class WireClient: Sendable {
    private let channel: any Channel
    /// The server's answer to the hello.
    public let welcome: Welcome
    /// Frames the server sent unasked: config snapshots and deltas.
    public let pushes: AsyncStream<WireFrame>
    /// Pushes kept while the reader is behind; past this the oldest are dropped. A dropped delta is a gap the data
    /// plane sees (the next delta's base is not its version), and it then gets a whole snapshot again; deltas are
    /// small, so the room is ample to make that rare.
    public static let pushBuffer = 256
    /// How long a call waits for its reply.
    public let timeout: TimeAmount
    /// The loop the connection runs on.
    public var eventLoop: any EventLoop { channel.eventLoop }

    private init(channel: any Channel, welcome: Welcome, pushes: AsyncStream<WireFrame>, timeout: TimeAmount) {
        self.channel = channel
        self.welcome = welcome
        self.pushes = pushes
        self.timeout = timeout
    }

    /// Connects, says hello, and returns once the server has welcomed the client.
    public static func connect(
        path: String, role: ClientRole, client: String,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        timeout: TimeAmount = .seconds(30)
    ) async throws(WireClientError) -> WireClient {
        let (pushes, continuation) = AsyncStream.makeStream(
            of: WireFrame.self, bufferingPolicy: .bufferingNewest(Self.pushBuffer))
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: group)
                .connectTimeout(.seconds(5))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(
                            ByteToMessageHandler(WireFrameDecoder(maxFrameBytes: WireProtocol.maxServerFrameBytes)))
                        try channel.pipeline.syncOperations.addHandler(WireClientHandler(pushes: continuation))
                    }
                }
                .connect(unixDomainSocketPath: path).get()
        } catch {
            continuation.finish()
            throw WireClientError.connect(path: path, reason: describe(error))
        }
        let hello = WireJSON.encode(Hello(role: role, client: client))
        let reply: WireFrame
        do {
            // A caller that gives up (a daemon stopping) closes the connection, which ends the wait at once.
            reply = try await withTaskCancellationHandler {
                try await send(channel: channel, WireFrame(.hello, requestID: 0, payload: hello), timeout: timeout)
            } onCancel: {
                channel.close(promise: nil)
            }
        } catch let error as WireClientError {
            try? await channel.close()
            throw error
        } catch {
            try? await channel.close()
            throw WireClientError.closed(describe(error))
        }
        do {
            let welcome = try WireJSON.decode(Welcome.self, from: reply.payload)
            return WireClient(channel: channel, welcome: welcome, pushes: pushes, timeout: timeout)
        } catch {
            try? await channel.close()
            throw WireClientError.protocolViolation("the server's welcome is not valid: \(error)")
        }
    }

    /// Sends a frame (its id is assigned here) and waits for the reply with the same id.
    /// An error frame becomes `WireClientError.server`.
    /// `timeout` overrides the connection's for this call (a reservation must be quick). A reply that arrives
    /// after the call timed out goes to `lateReply`, so that what it granted can be given back.
    public func call(
        _ type: FrameType, payload: [UInt8], timeout: TimeAmount? = nil,
        lateReply: (@Sendable (WireFrame) -> Void)? = nil
    ) async throws(WireClientError) -> WireFrame {
        try await Self.send(
            channel: channel, WireFrame(type, requestID: 0, payload: payload), timeout: timeout ?? self.timeout,
            lateReply: lateReply)
    }

    /// An admin request and its decoded response; `timeout` overrides the connection's.
    public func admin(_ request: AdminRequest, timeout: TimeAmount? = nil) async throws(WireClientError)
        -> AdminResponse
    {
        let reply = try await call(.request, payload: WireJSON.encode(request), timeout: timeout)
        do {
            return try WireJSON.decode(AdminResponse.self, from: reply.payload)
        } catch {
            throw WireClientError.protocolViolation("the server's response is not valid: \(error)")
        }
    }

    /// Closes the connection; calls still waiting fail.
    public func close() async {
        try? await channel.close()
    }

    /// Completes when the connection closes.
    public func waitUntilClosed() async {
        try? await channel.closeFuture.get()
    }

    private static func send(
        channel: any Channel, _ frame: WireFrame, timeout: TimeAmount,
        lateReply: (@Sendable (WireFrame) -> Void)? = nil
    ) async throws(WireClientError) -> WireFrame {
        let reply: WireFrame
        do {
            reply = try await withCheckedThrowingContinuation {
                (continuation: CheckedContinuation<WireFrame, any Error>) in
                let slot = ReplySlot(continuation)
                slot.onLateReply = lateReply
                // The handler times the call out. The write fails only when the handler never got it (the
                // connection is closed).
                channel.writeAndFlush(WireClientHandler.Outgoing(frame: frame, reply: slot, timeout: timeout))
                    .whenFailure { error in slot.resume(throwing: WireClientError.closed(describe(error))) }
            }
        } catch let error as WireClientError {
            throw error
        } catch {
            throw WireClientError.closed(describe(error))
        }
        if reply.type == .error {
            let body =
                (try? WireJSON.decode(WireErrorBody.self, from: reply.payload))
                ?? WireErrorBody(.internal, String(decoding: reply.payload, as: UTF8.self))
            throw WireClientError.server(body)
        }
        return reply
    }

    static func describe(_ error: any Error) -> String {
        if let io = error as? IOError {
            switch io.errnoCode {
            case ENOENT: return "no such socket (is budget-controld running?)"
            case ECONNREFUSED: return "connection refused (is budget-controld running?)"
            case EACCES: return "permission denied (the socket's mode and group decide who may connect)"
            default: return "\(io)"
            }
        }
        if let channelError = error as? ChannelError, channelError == .connectTimeout(.seconds(5)) {
            return "timed out connecting"
        }
        return "\(error)"
    }
}

/// Why a call to the control plane failed.
public enum WireClientError: Error, Sendable, CustomStringConvertible {
    case connect(path: String, reason: String)
    case closed(String)
    case timeout
    case server(WireErrorBody)
    case protocolViolation(String)

    public var description: String {
        switch self {
        case .connect(let path, let reason): return "cannot connect to \(path): \(reason)"
        case .closed(let reason): return "the control plane closed the connection (\(reason))"
        case .timeout: return "the control plane did not answer in time"
        case .server(let body): return body.message
        case .protocolViolation(let reason): return reason
        }
    }
}

/// Matches replies to requests by id, and hands id-0 frames to `pushes`.
///
/// Each call's frame is encoded straight into a buffer and flushed at once: held back to share a write with the calls
/// of the same loop turn, it reached budget-controld later, which on a control plane with a core of its own cost
/// more in latency than the write saved (a quarter fewer pairs/s in budget-bench's 64-in-flight run).
/// Time-outs are one timer per connection, set for the earliest deadline of the calls waiting, rather than a
/// scheduled task per call (two heap operations on the loop's timer queue each); a call is failed at its deadline
/// either way.
final class WireClientHandler: ChannelDuplexHandler {
    typealias InboundIn = WireFrame
    typealias OutboundIn = Outgoing
    typealias OutboundOut = ByteBuffer

    struct Outgoing: Sendable {
        var frame: WireFrame
        var reply: ReplySlot
        /// How long the call waits for its reply.
        var timeout: TimeAmount
    }

    private struct Waiting {
        var slot: ReplySlot
        var deadline: NIODeadline
    }

    private var nextID: UInt32 = 1
    /// Calls waiting for their reply, and calls that timed out, kept so that a late reply still reaches them.
    private var pending: [UInt32: Waiting] = [:]
    /// When `pending` reaches this size, timed-out calls are dropped from it: a peer that stops answering
    /// cannot make it grow without bound (late replies to dropped calls are then ignored).
    private var sweepAt = 1024
    private let pushes: AsyncStream<WireFrame>.Continuation
    /// The time-out timer, and the deadline it is set for.
    private var timer: (task: Scheduled<Void>, deadline: NIODeadline)?

    init(pushes: AsyncStream<WireFrame>.Continuation) { self.pushes = pushes }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let outgoing = unwrapOutboundIn(data)
        var frame = outgoing.frame
        let id = nextID
        nextID = nextID == UInt32.max ? 1 : nextID + 1
        frame.requestID = id
        if pending.count >= sweepAt {
            pending = pending.filter { !$0.value.slot.isFinished }
            sweepAt = max(1024, 2 * pending.count)
        }
        let deadline = NIODeadline.now() + outgoing.timeout
        pending[id] = Waiting(slot: outgoing.reply, deadline: deadline)
        setTimer(context: context, for: deadline)
        var bytes = context.channel.allocator.buffer(capacity: 4 + WireFrame.headerBytes + frame.payload.count)
        frame.write(into: &bytes)
        // From here the call ends by its reply, its time-out or the connection's close (channelInactive).
        promise?.succeed(())
        context.write(wrapOutboundOut(bytes), promise: nil)
    }

    /// Sets the timer for `deadline` unless it is set for an earlier one.
    private func setTimer(context: ChannelHandlerContext, for deadline: NIODeadline) {
        if let timer, timer.deadline <= deadline { return }
        timer?.task.cancel()
        let task = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) {
            self.timer = nil
            self.expireCalls(context: context)
        }
        timer = (task, deadline)
    }

    /// Fails the calls whose deadline has passed, and sets the timer for the next one.
    private func expireCalls(context: ChannelHandlerContext) {
        let now = NIODeadline.now()
        var next: NIODeadline?
        for waiting in pending.values where !waiting.slot.isFinished {
            if waiting.deadline <= now {
                waiting.slot.resume(throwing: WireClientError.timeout)
            } else if next.map({ waiting.deadline < $0 }) ?? true {
                next = waiting.deadline
            }
        }
        if let next { setTimer(context: context, for: next) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        if frame.requestID == 0 && frame.type == .error {
            // An error about the connection itself (refused peer, bad frame): every pending call gets it.
            let body =
                (try? WireJSON.decode(WireErrorBody.self, from: frame.payload))
                ?? WireErrorBody(.internal, String(decoding: frame.payload, as: UTF8.self))
            let waiting = pending
            pending.removeAll()
            for entry in waiting.values { entry.slot.resume(throwing: WireClientError.server(body)) }
        } else if frame.requestID == 0 {
            pushes.yield(frame)
        } else if let entry = pending.removeValue(forKey: frame.requestID) {
            entry.slot.resume(returning: frame)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.task.cancel()
        timer = nil
        let waiting = pending
        pending.removeAll()
        for entry in waiting.values { entry.slot.resume(throwing: WireClientError.closed("connection closed")) }
        pushes.finish()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

/// Where one reply goes: resumed exactly once, whichever comes first of the reply, a closed connection,
/// a failed write or the time-out.
final class ReplySlot: @unchecked Sendable {
    private let lock = NSLock()
    private var continuation: CheckedContinuation<WireFrame, any Error>?
    /// Gets the reply when it comes after the call ended (timed out).
    var onLateReply: (@Sendable (WireFrame) -> Void)?

    init(_ continuation: CheckedContinuation<WireFrame, any Error>) { self.continuation = continuation }

    /// Whether the call has ended (answered, failed or timed out).
    var isFinished: Bool {
        lock.lock()
        defer { lock.unlock() }
        return continuation == nil
    }

    private func take() -> CheckedContinuation<WireFrame, any Error>? {
        lock.lock()
        defer { lock.unlock() }
        let taken = continuation
        continuation = nil
        return taken
    }

    func resume(returning frame: WireFrame) {
        guard let continuation = take() else {
            onLateReply?(frame)
            return
        }
        continuation.resume(returning: frame)
    }

    func resume(throwing error: any Error) {
        guard let continuation = take() else { return }
        continuation.resume(throwing: error)
    }
}
