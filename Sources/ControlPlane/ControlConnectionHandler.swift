import BudgetLedger
import BudgetWire
import CBudgetSystem
import DaemonKit
import Logging
import NIOCore
import Synchronization

/// One connection's protocol: hello first (within 10 s), then requests, each answered under its id.
/// Reservations and releases are answered here, on the event loop; commits and admin requests go to the
/// connection's task group (`ControlConnection.serve()`).
///
/// Bounds: a frame larger than the socket's limit or of an unknown type gets an error reply and the
/// connection is closed; a payload that does not decode gets an error reply and the connection stays; a
/// peer that sends half a frame and stops, or stops reading replies, is cut off after the peer time-out.
///
/// Everything the connection sends goes through its `FrameOutbox`: no frame encoder in the pipeline.
final class ControlConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = WireFrame
    typealias OutboundOut = ByteBuffer

    private let context: ControlListener.Context
    private let hello: HelloResponder
    private let counter: Gauge
    private let work: AsyncStream<ControlConnection.Work>.Continuation
    private var active = false
    private var greeted = false
    private var peerAllowed: Bool?
    private var refusal = "permission denied"
    private var held: [WireFrame] = []
    private var watcher: UInt64?
    private var helloDeadline: Scheduled<Void>?
    private var stallDeadline: Scheduled<Void>?
    /// The frames to send, written with one flush per read burst or loop turn; made when the handler is added.
    private var outbox: FrameOutbox?
    /// A read burst is being handled (from its first channelRead to channelReadComplete).
    private var reading = false
    /// Commits of this read burst are queued for the usage writer, which is woken at the burst's end.
    private var commitsQueued = false

    init(
        context: ControlListener.Context, counter: Gauge,
        work: AsyncStream<ControlConnection.Work>.Continuation
    ) {
        self.context = context
        self.hello = HelloResponder(
            role: context.role, server: AdminDesk.serverName,
            reservationLifetime: context.budgets.reservationLifetime)
        self.counter = counter
        self.work = work
    }

    // The handler is added by the child channel initializer, normally before the channel is active; should
    // it be active already, channelActive will not come, so start here.
    func handlerAdded(context: ChannelHandlerContext) {
        outbox = FrameOutbox(channel: context.channel)
        if context.channel.isActive { start(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        start(context: context)
        context.fireChannelActive()
    }

    private func start(context: ChannelHandlerContext) {
        guard !active else { return }
        active = true
        counter.add(1)
        let channel = context.channel
        helloDeadline = context.eventLoop.scheduleTask(in: min(self.context.peerTimeout, .seconds(10))) {
            channel.close(promise: nil)
        }
        if let peerPolicy = self.context.peerPolicy {
            checkPeer(context: context, policy: peerPolicy)
        } else {
            peerAllowed = true
        }
    }

    /// The end of a read burst, or of the connection: the writer takes the burst's commits in one transaction.
    private func wakeWriterIfQueued() {
        guard commitsQueued else { return }
        commitsQueued = false
        context.budgets.wakeWriter()
    }

    func channelInactive(context: ChannelHandlerContext) {
        wakeWriterIfQueued()
        if active { counter.add(-1) }
        active = false
        helloDeadline?.cancel()
        stallDeadline?.cancel()
        if let watcher { self.context.board.unwatch(watcher) }
        watcher = nil
        work.finish()
        context.fireChannelInactive()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            stallDeadline?.cancel()
            stallDeadline = nil
        } else if stallDeadline == nil {
            let channel = context.channel
            stallDeadline = context.eventLoop.scheduleTask(in: self.context.peerTimeout) {
                channel.close(promise: nil)
            }
        }
        context.fireChannelWritabilityChanged()
    }

    /// SO_PEERCRED and SO_PEERGROUPS: the kernel's word on who is at the other end, not anything the client
    /// claims. Root, the daemon's own user and (with --admin-group) a peer whose primary group is the admin group
    /// are let in on SO_PEERCRED alone; anyone else only if the admin group is among the supplementary groups it
    /// had when it connected.
    private func checkPeer(context: ChannelHandlerContext, policy: ControlListener.PeerPolicy) {
        guard let provider = context.channel as? any SocketOptionProvider else {
            peerAllowed = false
            return
        }
        let future: EventLoopFuture<cbudget_ucred> = provider.unsafeGetSocketOption(
            level: SocketOptionLevel(cbudget_sol_socket()), name: SocketOptionName(cbudget_so_peercred()))
        future.assumeIsolated().whenComplete { result in
            switch result {
            case .success(let credentials):
                let uid = UInt32(credentials.uid)
                if uid == 0 || uid == policy.allowedUser || policy.adminGroup == UInt32(credentials.gid) {
                    self.decided(true, context: context)
                } else if let group = policy.adminGroup {
                    self.checkGroups(
                        context: context, provider: provider, credentials: credentials, policy: policy, group: group)
                } else {
                    self.deny(credentials, policy: policy, context: context)
                }
            case .failure(let error):
                self.refusal = "cannot read peer credentials: \(error)"
                self.decided(false, context: context)
            }
        }
    }

    /// Whether the peer's supplementary groups include `group`. NIO gives no access to the channel's descriptor
    /// and SO_PEERGROUPS needs a buffer of the size the kernel says, so the descriptor is found by the socket's
    /// cookie (see `PeerGroups`).
    private func checkGroups(
        context: ChannelHandlerContext, provider: any SocketOptionProvider, credentials: cbudget_ucred,
        policy: ControlListener.PeerPolicy, group: UInt32
    ) {
        let cookie: EventLoopFuture<UInt64> = provider.unsafeGetSocketOption(
            level: SocketOptionLevel(cbudget_sol_socket()), name: SocketOptionName(cbudget_so_cookie()))
        cookie.assumeIsolated().whenComplete { result in
            do {
                let groups = try PeerGroups.ofSocket(cookie: try result.get())
                if groups.contains(group) {
                    self.decided(true, context: context)
                } else {
                    self.deny(credentials, policy: policy, context: context)
                }
            } catch {
                self.context.logger.warning(
                    "admin connection refused: cannot read the peer's groups",
                    metadata: ["uid": "\(credentials.uid)", "pid": "\(credentials.pid)", "error": "\(error)"])
                self.refusal = "cannot read the peer's groups: \(error)"
                self.decided(false, context: context)
            }
        }
    }

    /// Refuses a peer that is neither root, the daemon's user nor in the admin group.
    private func deny(
        _ credentials: cbudget_ucred, policy: ControlListener.PeerPolicy, context: ChannelHandlerContext
    ) {
        let uid = UInt32(credentials.uid)
        self.context.logger.warning(
            "admin connection refused", metadata: ["uid": "\(uid)", "pid": "\(credentials.pid)"])
        refusal =
            "permission denied: uid \(uid) may not use the admin socket (allowed: uid "
            + "\(policy.allowedUser)\(policy.adminGroup.map { " and members of group \($0)" } ?? ""))"
        decided(false, context: context)
    }

    /// The peer check is done: serve the frames held meanwhile, or answer the first with the refusal.
    private func decided(_ allowed: Bool, context: ChannelHandlerContext) {
        peerAllowed = allowed
        guard allowed else {
            // Answer the first frame (the hello) with the refusal, so the client can say why.
            if let first = held.first { refuse(context: context, requestID: first.requestID) }
            return
        }
        let frames = held
        held = []
        // As one read burst: one flush for their replies.
        reading = true
        outbox?.beginBurst()
        for frame in frames { handle(frame, context: context) }
        endReadBurst()
    }

    private func refuse(context: ChannelHandlerContext, requestID: UInt32) {
        let body = WireJSON.encode(WireErrorBody(.forbidden, refusal))
        outbox?.send(WireFrame(.error, requestID: requestID, payload: body))
        closeAfterSending(context: context)
    }

    /// Writes what the outbox holds and closes the connection once it is written, or after the peer time-out: a
    /// peer that does not read would never let that write complete.
    private func closeAfterSending(context: ChannelHandlerContext) {
        guard let written = outbox?.flush() else { return context.close(promise: nil) }
        let cutOff = context.eventLoop.assumeIsolated().scheduleTask(in: self.context.peerTimeout) {
            context.close(promise: nil)
        }
        written.assumeIsolated().whenComplete { _ in
            cutOff.cancel()
            context.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if !reading {
            reading = true
            outbox?.beginBurst()
        }
        let frame = unwrapInboundIn(data)
        switch peerAllowed {
        case nil:
            if held.count < 16 { held.append(frame) } else { context.close(promise: nil) }
        case false?:
            refuse(context: context, requestID: frame.requestID)
        case true?:
            handle(frame, context: context)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        endReadBurst()
        context.fireChannelReadComplete()
    }

    /// The writer takes the burst's commits, and its replies are written with one flush.
    private func endReadBurst() {
        wakeWriterIfQueued()
        if reading {
            reading = false
            outbox?.endBurst()
        }
    }

    private func reply(_ context: ChannelHandlerContext, _ type: FrameType, _ id: UInt32, _ payload: [UInt8]) {
        outbox?.send(WireFrame(type, requestID: id, payload: payload))
    }

    private func error(_ context: ChannelHandlerContext, _ id: UInt32, _ code: WireErrorCode, _ message: String) {
        reply(context, .error, id, WireJSON.encode(WireErrorBody(code, message)))
    }

    /// Hands `item` to the connection's task group; refuses the request if the connection is shutting down.
    private func enqueue(_ item: @escaping ControlConnection.Work, id: UInt32, context: ChannelHandlerContext) {
        if case .terminated = work.yield(item) {
            error(context, id, .unavailable, "the control plane is stopping")
        }
    }

    private func handle(_ frame: WireFrame, context: ChannelHandlerContext) {
        let id = frame.requestID
        guard greeted else { return greet(frame, context: context) }
        guard let outbox else { return }
        let send: @Sendable (FrameType, [UInt8]) -> Void = { type, payload in
            outbox.send(WireFrame(type, requestID: id, payload: payload))
        }
        let fail: @Sendable (WireErrorBody) -> Void = { body in
            outbox.send(WireFrame(.error, requestID: id, payload: WireJSON.encode(body)))
        }
        let budgets = self.context.budgets
        switch (frame.type, self.context.role) {
        case (.reserve, .dataPlane):
            do {
                let requests = try BudgetMessages.decodeReserves(frame.payload)
                // Inline: a reservation is microseconds under the ledger's lock, less than a hop to the task
                // pool and back would cost. Budgets kept in the fleet's Redis are answered when it replies.
                budgets.reserve(requests) { send(.reserveResult, BudgetMessages.encode(outcomes: $0)) }
            } catch {
                fail(WireErrorBody(.badRequest, "reserve: \(error)"))
            }
        case (.commit, .dataPlane):
            do {
                let commits = try BudgetMessages.decodeCommits(frame.payload)
                // Applied to the ledger inline, in frame order with the reservations around it; acknowledged by
                // the usage writer once durable, with no task per frame.
                let count = commits.count
                // Within a read burst the writer is woken at its end (channelReadComplete), once for all of its
                // commits; frames handled outside one (held during the peer check) wake it at once.
                let inBurst = reading
                if inBurst { commitsQueued = true }
                budgets.commit(commits, wakingWriter: !inBurst) { result in
                    switch result {
                    case .success: send(.commitAck, BudgetMessages.encodeAck(count: count))
                    case .failure(let error): fail(WireErrorBody(.unavailable, "usage could not be stored: \(error)"))
                    }
                }
            } catch {
                fail(WireErrorBody(.badRequest, "commit: \(error)"))
            }
        case (.renew, .dataPlane):
            do {
                let (leases, adopt) = try BudgetMessages.decodeRenewals(frame.payload)
                // Inline, like reserve: adopted holds must be in place before the reservations that follow.
                budgets.renew(leases, adopt: adopt) { send(.renewAck, BudgetMessages.encodeAck(count: $0)) }
            } catch {
                fail(WireErrorBody(.badRequest, "renew: \(error)"))
            }
        case (.release, .dataPlane):
            do {
                let ids = try BudgetMessages.decodeReleases(frame.payload)
                budgets.release(ids) { result in
                    switch result {
                    case .success: send(.releaseAck, BudgetMessages.encodeAck(count: ids.count))
                    case .failure(let error): fail(WireErrorBody(.unavailable, "\(error)"))
                    }
                }
            } catch {
                fail(WireErrorBody(.badRequest, "release: \(error)"))
            }
        case (.request, .admin):
            // Decoded off the event loop: a first sync of a large config is tens of megabytes of JSON, and
            // data planes' reservations share this loop.
            let dataPlanes = self.context.dataPlaneCount()
            let payload = frame.payload
            let admin = self.context.admin
            enqueue(
                {
                    var large = false
                    do {
                        let request = try WireJSON.decode(AdminRequest.self, from: payload)
                        large = request.op == .apply || request.op == .dump
                        send(.response, WireJSON.encode(try await admin.handle(request, dataPlanes: dataPlanes)))
                    } catch let body as WireErrorBody {
                        fail(body)
                    } catch {
                        fail(WireErrorBody(.internal, "\(error)"))
                    }
                    if large || payload.count > 1 << 20 { FreedMemory.release() }
                }, id: id, context: context)
        case (.hello, _):
            error(context, id, .badRequest, "hello was already received")
        default:
            error(
                context, id, .badRequest,
                "frame type \(frame.type) is not accepted on the \(self.context.role.socketName) socket")
        }
    }

    /// The hello, answered inline: the welcome, and for a data plane the current config (a snapshot and the
    /// deltas since), taken from the board in the same step that registers the connection for later pushes.
    private func greet(_ frame: WireFrame, context: ChannelHandlerContext) {
        let greeting: Hello
        do {
            greeting = try hello.accept(frame)
        } catch {
            self.error(context, frame.requestID, error.code, error.message)
            closeAfterSending(context: context)
            return
        }
        greeted = true
        helloDeadline?.cancel()
        let board = self.context.board
        guard let outbox else { return }
        if greeting.role == .dataPlane {
            let registration = board.watch { push in outbox.send(push) }
            watcher = registration.id
            outbox.send(hello.welcome(requestID: frame.requestID, configVersion: registration.version))
            // The newest snapshot, then the deltas that bring it to the current version (see `SnapshotBoard`).
            for first in registration.frames { outbox.send(first) }
        } else {
            outbox.send(hello.welcome(requestID: frame.requestID, configVersion: board.version))
        }
        self.context.logger.debug(
            "client connected", metadata: ["role": "\(greeting.role.rawValue)", "client": "\(greeting.client)"])
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let message: String
        var id: UInt32 = 0
        switch error {
        case let frameError as WireFrameError:
            message = frameError.description
            if case .unknownType(_, let requestID) = frameError { id = requestID }
        default:
            message = "\(error)"
        }
        self.error(context, id, .badFrame, message)
        closeAfterSending(context: context)
    }
}

/// The frames one connection sends, encoded into one buffer as they are made and written with one flush:
/// replies made inline during a read burst (reservations on the local ledger) at the burst's end; those made on
/// another thread (the acknowledgements of a group commit, all at once; a Redis reply; a config push) on the
/// loop's next turn, together with the others made meanwhile. One made on the loop outside a burst goes at once.
///
/// Frames are appended under a lock from any thread; the channel's own write queue, bounded by the peer time-out
/// on a peer that stops reading (`channelWritabilityChanged`), is where they wait after that.
final class FrameOutbox: Sendable {
    private struct State {
        var bytes = ByteBuffer()
        var reading = false
        var flushQueued = false
    }
    private let state = Mutex(State())
    private let channel: any Channel

    init(channel: any Channel) { self.channel = channel }

    /// Queues `frame`; it is written at the end of the read burst, or on the loop's next turn.
    func send(_ frame: WireFrame) {
        let onLoop = channel.eventLoop.inEventLoop
        let action = state.withLock { state -> Action in
            if state.bytes.capacity == 0 { state.bytes.reserveCapacity(1024) }
            frame.write(into: &state.bytes)
            if state.reading { return .none }
            if onLoop { return .flushNow }
            if state.flushQueued { return .none }
            state.flushQueued = true
            return .flushLater
        }
        switch action {
        case .none: break
        case .flushNow: flush()
        case .flushLater: channel.eventLoop.execute { self.flush() }
        }
    }

    private enum Action {
        case none
        case flushNow
        case flushLater
    }

    /// A read burst begins (on the loop): frames wait for `endBurst()`.
    func beginBurst() { state.withLock { $0.reading = true } }

    /// The read burst ended (on the loop): writes what it made.
    func endBurst() {
        state.withLock { $0.reading = false }
        flush()
    }

    /// Writes and flushes what is queued (on the loop); returns when that write is done, or nil when nothing was
    /// queued.
    @discardableResult
    func flush() -> EventLoopFuture<Void>? {
        let bytes = state.withLock { state -> ByteBuffer? in
            state.flushQueued = false
            guard state.bytes.readableBytes > 0 else { return nil }
            // A new buffer rather than clearing this one: the write still holds it.
            defer { state.bytes = ByteBuffer() }
            return state.bytes
        }
        guard let bytes else { return nil }
        return channel.writeAndFlush(bytes)
    }
}
