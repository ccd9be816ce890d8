import BudgetLedger
public import BudgetWire
import CBudgetSystem
public import DaemonKit
import Foundation
public import Logging
public import NIOCore
import NIOPosix

/// Serves one of the control plane's sockets (control.sock for data planes, admin.sock for budgetctl)
/// on an already-listening descriptor, so binding (or inheriting from systemd) is separate from serving.
public final class ControlSocketServer: Sendable {
    private let channel: any Channel
    private let counter: LockedCounter

    /// Data planes connected to this socket now.
    public var connections: Int { counter.value }

    private init(channel: any Channel, counter: LockedCounter) {
        self.channel = channel
        self.counter = counter
    }

    /// Who may use admin.sock besides the file mode: the daemon's own user, root, and members of `adminGroup`.
    public struct PeerPolicy: Sendable {
        public var allowedUser: UInt32
        public var adminGroup: UInt32?

        public init(allowedUser: UInt32, adminGroup: UInt32?) {
            self.allowedUser = allowedUser
            self.adminGroup = adminGroup
        }
    }

    public static func serve(
        listener: UnixListener.Bound, role: ClientRole, core: ControlPlaneCore, group: any EventLoopGroup,
        peerPolicy: PeerPolicy?, dataPlaneCount: @escaping @Sendable () -> Int, peerTimeout: TimeAmount = .seconds(30),
        logger: Logger
    ) async throws -> ControlSocketServer {
        let counter = LockedCounter()
        let maxFrame = role == .admin ? WireProtocol.maxAdminRequestBytes : WireProtocol.maxDataPlaneRequestBytes
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .childChannelOption(.writeBufferWaterMark, value: .init(low: 1 << 20, high: 8 << 20))
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        ByteToMessageHandler(
                            WireFrameDecoder(maxFrameBytes: maxFrame, assemblyTimeout: peerTimeout)))
                    try channel.pipeline.syncOperations.addHandler(MessageToByteHandler(WireFrameEncoder()))
                    try channel.pipeline.syncOperations.addHandler(
                        ControlConnectionHandler(
                            role: role, core: core, peerPolicy: peerPolicy, counter: counter,
                            dataPlaneCount: dataPlaneCount, peerTimeout: peerTimeout, logger: logger))
                }
            }
            .withBoundSocket(listener.descriptor).get()
        return ControlSocketServer(channel: channel, counter: counter)
    }

    /// Stops accepting connections.
    public func close() async {
        try? await channel.close()
    }
}

/// One connection: hello first (within 10 s), then requests, each answered under its id.
///
/// Bounds: a frame larger than the socket's limit or of an unknown type gets an error reply and the
/// connection is closed; a payload that does not decode gets an error reply and the connection stays; a
/// peer that sends half a frame and stops, or stops reading replies, is cut off after 30 s.
final class ControlConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = WireFrame
    typealias OutboundOut = WireFrame

    private let role: ClientRole
    private let core: ControlPlaneCore
    private let peerPolicy: ControlSocketServer.PeerPolicy?
    private let counter: LockedCounter
    private let dataPlaneCount: @Sendable () -> Int
    private let logger: Logger
    private var greeted = false
    private var peerAllowed: Bool?
    private var held: [WireFrame] = []
    private var watcher: UInt64?
    private var helloDeadline: Scheduled<Void>?
    private var stallDeadline: Scheduled<Void>?

    /// How long a peer may take to say hello, to finish a frame it started, or to read what it is sent.
    private let peerTimeout: TimeAmount

    init(
        role: ClientRole, core: ControlPlaneCore, peerPolicy: ControlSocketServer.PeerPolicy?,
        counter: LockedCounter,
        dataPlaneCount: @escaping @Sendable () -> Int, peerTimeout: TimeAmount, logger: Logger
    ) {
        self.peerTimeout = peerTimeout
        self.role = role
        self.core = core
        self.peerPolicy = peerPolicy
        self.counter = counter
        self.dataPlaneCount = dataPlaneCount
        self.logger = logger
    }

    func channelActive(context: ChannelHandlerContext) {
        counter.add(1)
        let channel = context.channel
        helloDeadline = context.eventLoop.scheduleTask(in: min(peerTimeout, .seconds(10))) {
            channel.close(promise: nil)
        }
        if let peerPolicy {
            checkPeer(context: context, policy: peerPolicy)
        } else {
            peerAllowed = true
        }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        counter.add(-1)
        helloDeadline?.cancel()
        stallDeadline?.cancel()
        if let watcher {
            let core = self.core
            Task { await core.removeWatcher(watcher) }
        }
        context.fireChannelInactive()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            stallDeadline?.cancel()
            stallDeadline = nil
        } else if stallDeadline == nil {
            let channel = context.channel
            stallDeadline = context.eventLoop.scheduleTask(in: peerTimeout) { channel.close(promise: nil) }
        }
        context.fireChannelWritabilityChanged()
    }

    /// SO_PEERCRED: the kernel's word on who is at the other end, not anything the client claims.
    private func checkPeer(context: ChannelHandlerContext, policy: ControlSocketServer.PeerPolicy) {
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
                let allowed =
                    uid == 0 || uid == policy.allowedUser
                    || (policy.adminGroup.map {
                        Self.isMember(pid: credentials.pid, gid: UInt32(credentials.gid), of: $0)
                    } ?? false)
                self.peerAllowed = allowed
                if !allowed {
                    self.logger.warning(
                        "admin connection refused", metadata: ["uid": "\(uid)", "pid": "\(credentials.pid)"])
                    self.refusal =
                        "permission denied: uid \(uid) may not use the admin socket (allowed: uid "
                        + "\(policy.allowedUser)\(policy.adminGroup.map { " and members of group \($0)" } ?? ""))"
                }
            case .failure(let error):
                self.peerAllowed = false
                self.refusal = "cannot read peer credentials: \(error)"
            }
            guard self.peerAllowed == true else {
                // Answer the first frame (the hello) with the refusal, so the client can say why.
                if let first = self.held.first { self.refuse(context: context, requestID: first.requestID) }
                return
            }
            let frames = self.held
            self.held = []
            for frame in frames { self.handle(frame, context: context) }
        }
    }

    /// Whether a process's primary or supplementary groups include `group`.
    static func isMember(pid: Int32, gid: UInt32, of group: UInt32) -> Bool {
        if gid == group { return true }
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Groups:") })
        else { return false }
        return line.dropFirst("Groups:".count).split(separator: " ").contains {
            UInt32($0.trimmingCharacters(in: .whitespaces)) == group
        }
    }

    private var refusal = "permission denied"

    private func refuse(context: ChannelHandlerContext, requestID: UInt32) {
        let body = WireJSON.encode(WireErrorBody(.forbidden, refusal))
        context.writeAndFlush(wrapOutboundOut(WireFrame(.error, requestID: requestID, payload: body))).assumeIsolated()
            .whenComplete { _ in context.close(promise: nil) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
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

    private func reply(_ context: ChannelHandlerContext, _ type: FrameType, _ id: UInt32, _ payload: [UInt8]) {
        context.writeAndFlush(wrapOutboundOut(WireFrame(type, requestID: id, payload: payload)), promise: nil)
    }

    private func error(_ context: ChannelHandlerContext, _ id: UInt32, _ code: WireErrorCode, _ message: String) {
        reply(context, .error, id, WireJSON.encode(WireErrorBody(code, message)))
    }

    private func handle(_ frame: WireFrame, context: ChannelHandlerContext) {
        let id = frame.requestID
        guard greeted else {
            guard frame.type == .hello else {
                error(context, id, .badRequest, "the first frame must be a hello")
                context.close(promise: nil)
                return
            }
            hello(frame, context: context)
            return
        }
        let channel = context.channel
        let core = self.core
        let send: @Sendable (FrameType, [UInt8]) -> Void = { type, payload in
            channel.writeAndFlush(WireFrame(type, requestID: id, payload: payload), promise: nil)
        }
        let fail: @Sendable (WireErrorBody) -> Void = { body in
            channel.writeAndFlush(WireFrame(.error, requestID: id, payload: WireJSON.encode(body)), promise: nil)
        }
        switch (frame.type, role) {
        case (.reserve, .dataPlane):
            do {
                let requests = try BudgetMessages.decodeReserves(frame.payload)
                // On the event loop: a reservation is microseconds under the ledger's lock, and a hop to the
                // concurrency pool and back cost more than that.
                send(.reserveResult, BudgetMessages.encode(outcomes: core.reserve(requests)))
            } catch {
                fail(WireErrorBody(.badRequest, "reserve: \(error)"))
            }
        case (.commit, .dataPlane):
            do {
                let commits = try BudgetMessages.decodeCommits(frame.payload)
                Task {
                    do {
                        try await core.commit(commits)
                        send(.commitAck, BudgetMessages.encodeAck(count: commits.count))
                    } catch {
                        fail(WireErrorBody(.unavailable, "usage could not be stored: \(error)"))
                    }
                }
            } catch {
                fail(WireErrorBody(.badRequest, "commit: \(error)"))
            }
        case (.release, .dataPlane):
            do {
                let ids = try BudgetMessages.decodeReleases(frame.payload)
                core.release(ids)
                send(.releaseAck, BudgetMessages.encodeAck(count: ids.count))
            } catch {
                fail(WireErrorBody(.badRequest, "release: \(error)"))
            }
        case (.request, .admin):
            // Decoded off the event loop: a first sync of 100,000 consumers is tens of megabytes of JSON, and
            // data planes' reservations share this loop.
            let dataPlanes = dataPlaneCount()
            let payload = frame.payload
            Task {
                var large = false
                do {
                    let request = try WireJSON.decode(AdminRequest.self, from: payload)
                    large = request.op == .apply || request.op == .dump
                    send(.response, WireJSON.encode(try await core.admin(request, dataPlanes: dataPlanes)))
                } catch let body as WireErrorBody {
                    fail(body)
                } catch {
                    fail(WireErrorBody(.internal, "\(error)"))
                }
                if large || payload.count > 1 << 20 { FreedMemory.release() }
            }
        case (.hello, _):
            error(context, id, .badRequest, "hello was already received")
        default:
            error(
                context, id, .badRequest,
                "frame type \(frame.type) is not accepted on the \(role == .admin ? "admin" : "control") socket")
        }
    }

    private func hello(_ frame: WireFrame, context: ChannelHandlerContext) {
        let hello: Hello
        do {
            hello = try WireJSON.decode(Hello.self, from: frame.payload)
        } catch {
            self.error(context, frame.requestID, .badRequest, "hello: \(error.message)")
            context.close(promise: nil)
            return
        }
        guard hello.protocolVersion == WireProtocol.version else {
            error(
                context, frame.requestID, .unsupportedVersion,
                "protocol version \(hello.protocolVersion) is not "
                    + "supported; this control plane speaks version \(WireProtocol.version)")
            context.close(promise: nil)
            return
        }
        guard hello.role == role else {
            error(
                context, frame.requestID, .badRequest,
                "a \(hello.role.rawValue) client connected to the "
                    + "\(role == .admin ? "admin" : "control") socket; use the \(hello.role == .admin ? "admin" : "control") socket"
            )
            context.close(promise: nil)
            return
        }
        greeted = true
        helloDeadline?.cancel()
        let id = frame.requestID
        let channel = context.channel
        let core = self.core
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        Task {
            let version = await core.configVersion
            let welcome = WireJSON.encode(Welcome(server: ControlPlaneCore.serverName, configVersion: version))
            channel.writeAndFlush(WireFrame(.welcome, requestID: id, payload: welcome), promise: nil)
            guard hello.role == .dataPlane else { return }
            let registration = await core.addWatcher { snapshot in channel.writeAndFlush(snapshot, promise: nil) }
            channel.writeAndFlush(registration.snapshot, promise: nil)
            channel.eventLoop.execute {
                loopBound.value.watcher = registration.id
                if !channel.isActive { Task { await core.removeWatcher(registration.id) } }
            }
        }
        logger.debug("client connected", metadata: ["role": "\(hello.role.rawValue)", "client": "\(hello.client)"])
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
        context.close(promise: nil)
    }
}
