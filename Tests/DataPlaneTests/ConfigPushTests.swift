import BudgetConfig
import BudgetWire
import ControlPlane
import DaemonKit
@testable import DataPlane
import Foundation
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization
import TestSupport
import Testing

/// A control plane reduced to its push side: the real `SnapshotBoard`, greeted as budget-controld greets a data
/// plane, on a Unix socket. Pushes to a connection can be dropped, to make a data plane miss a delta.
private final class PushServer: Sendable {
    let board: SnapshotBoard
    let path: String
    /// Pushes to drop (counted down), and connections greeted so far.
    private let state = Mutex((drop: 0, connections: 0))
    private let channel = Mutex<(any Channel)?>(nil)

    private init(board: SnapshotBoard, path: String) {
        self.board = board
        self.path = path
    }

    static func start(in directory: URL, version: UInt64, state: ConfigState) async throws -> PushServer {
        let server = PushServer(
            board: SnapshotBoard(version: version, state: state),
            path: directory.appendingPathComponent("control.sock").path)
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        ByteToMessageHandler(WireFrameDecoder(maxFrameBytes: 1 << 20)))
                    try channel.pipeline.syncOperations.addHandler(MessageToByteHandler(WireFrameEncoder()))
                    try channel.pipeline.syncOperations.addHandler(Greeter(server: server))
                }
            }
            .bind(unixDomainSocketPath: server.path).get()
        server.channel.withLock { $0 = channel }
        return server
    }

    func close() async {
        guard let channel = channel.withLock({ $0 }) else { return }
        try? await channel.close()
    }

    /// Drops the next `count` pushes to connected data planes.
    func dropPushes(_ count: Int) { state.withLock { $0.drop = count } }

    var connections: Int { state.withLock { $0.connections } }

    fileprivate func greeted() { state.withLock { $0.connections += 1 } }

    fileprivate func shouldDrop() -> Bool {
        state.withLock { state in
            guard state.drop > 0 else { return false }
            state.drop -= 1
            return true
        }
    }

    /// Answers the hello with a welcome and the board's frames, and registers the connection for pushes.
    private final class Greeter: ChannelInboundHandler {
        typealias InboundIn = WireFrame
        typealias OutboundOut = WireFrame
        let server: PushServer
        let responder = HelloResponder(role: .dataPlane, server: "push-server/1")
        var watcher: UInt64?

        init(server: PushServer) { self.server = server }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let frame = unwrapInboundIn(data)
            guard watcher == nil else { return }
            guard (try? responder.accept(frame)) != nil else {
                context.close(promise: nil)
                return
            }
            let channel = context.channel
            let server = self.server
            let registration = server.board.watch { push in
                if !server.shouldDrop() { channel.writeAndFlush(push, promise: nil) }
            }
            watcher = registration.id
            server.greeted()
            context.write(
                wrapOutboundOut(responder.welcome(requestID: frame.requestID, configVersion: registration.version)),
                promise: nil)
            for first in registration.frames { context.write(wrapOutboundOut(first), promise: nil) }
            context.flush()
        }

        func channelInactive(context: ChannelHandlerContext) {
            if let watcher { server.board.unwatch(watcher) }
            context.fireChannelInactive()
        }
    }
}

@Suite("Config pushes from the control plane's board to budget-proxyd's link", .serialized)
struct ConfigPushTests {
    /// Runs a `ControlLink` against a `PushServer` holding `config` at version 1.
    private func withLink(
        _ config: ScaleConfig, before: (PushServer) throws -> Void = { _ in },
        _ body: (PushServer, ControlLink) async throws -> Void
    ) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "push-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let server = try await PushServer.start(in: directory, version: 1, state: try config.state)
        do {
            try before(server)
        } catch {
            await server.close()
            throw error
        }
        var logger = Logger(label: "budget-proxyd")
        logger.logLevel = .critical
        let link = ControlLink(socketPath: server.path, group: MultiThreadedEventLoopGroup.singleton, logger: logger)
        let services = ServiceGroup(services: [link], logger: logger)
        let running = Task { try await services.run() }
        do {
            #expect(await withDeadline(.seconds(10)) { await link.waitForFirstSnapshot() } == true)
            try await body(server, link)
        } catch {
            await services.triggerGracefulShutdown()
            _ = try? await running.value
            await server.close()
            throw error
        }
        await services.triggerGracefulShutdown()
        _ = try? await running.value
        await server.close()
    }

    /// Waits (at most 10 s) until the link's tables are at `version`.
    private func waitFor(version: UInt64, on link: ControlLink) async throws -> ProxyTables {
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            if let tables = link.tables, tables.version == version { return tables }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw TestFailure("the link's tables are at \(link.tables?.version ?? 0), not \(version)")
    }

    /// Publishes the change from `from` (at `base`) to `to` on the board, as budget-controld does after a sync.
    private func publish(_ server: PushServer, base: UInt64, from: ConfigState, to: ConfigState) throws {
        let changes = try appliedChanges(from: from, to: to)
        server.board.publish(
            delta: SnapshotBoard.deltaFrame(base: base, version: base + 1, changes: changes), base: base,
            version: base + 1, result: to)
    }

    @Test("a rotated key reaches a connected data plane as a delta, on the same connection")
    func rotationByDelta() async throws {
        let v1 = ScaleConfig(consumers: 300)
        var v2 = v1
        v2.consumers[0].key = "key-0-rotated"
        try await withLink(v1) { server, link in
            #expect(link.tables?.owner(of: "key-0-secret")?.consumer == "user-0")
            try publish(server, base: 1, from: try v1.state, to: try v2.state)
            let tables = try await waitFor(version: 2, on: link)
            #expect(tables.owner(of: "key-0-rotated")?.consumer == "user-0")
            #expect(tables.owner(of: "key-0-secret") == nil)
            #expect(tables.hasSameContents(as: ProxyTables(version: 2, state: try v2.state)))
            #expect(server.connections == 1)
        }
    }

    @Test("a data plane connecting just after a change is ready only once its tables reach the welcome's version")
    func readyAtCurrentVersion() async throws {
        let v1 = ScaleConfig(consumers: 3000)
        var v2 = v1
        v2.consumers[9].key = "key-9-rotated"
        try await withLink(v1, before: { server in try publish(server, base: 1, from: try v1.state, to: try v2.state) }) {
            _, link in
            // No waiting: the first snapshot counts only once the deltas after it are applied.
            #expect(link.tables?.version == 2)
            #expect(link.tables?.owner(of: "key-9-rotated")?.consumer == "user-9")
        }
    }

    @Test("a data plane that misses a delta reconnects and recovers the whole config")
    func gapRecovers() async throws {
        let v1 = ScaleConfig(consumers: 300)
        var v2 = v1
        v2.consumers[1].key = "key-1-rotated"
        var v3 = v2
        v3.consumers[2].key = "key-2-rotated"
        v3.paths = ["/ai/budget", "/ai/v3"]
        try await withLink(v1) { server, link in
            server.dropPushes(1)
            try publish(server, base: 1, from: try v1.state, to: try v2.state)
            try publish(server, base: 2, from: try v2.state, to: try v3.state)
            let tables = try await waitFor(version: 3, on: link)
            #expect(server.connections == 2)
            #expect(tables.owner(of: "key-1-rotated")?.consumer == "user-1")
            #expect(tables.owner(of: "key-1-secret") == nil)
            #expect(tables.owner(of: "key-2-rotated")?.consumer == "user-2")
            #expect(tables.route(method: "POST", path: "/ai/v3") != nil)
            #expect(tables.hasSameContents(as: ProxyTables(version: 3, state: try v3.state)))
        }
    }

    @Test("a data plane that connects while the snapshot is encoded gets the older snapshot and the deltas since")
    func lateJoinerGetsDeltas() throws {
        let v1 = try ScaleConfig(consumers: 30).state
        var config = ScaleConfig(consumers: 30)
        config.consumers[5].key = "key-5-rotated"
        let v2 = try config.state
        let board = SnapshotBoard(version: 1, state: v1)
        board.publish(
            delta: SnapshotBoard.deltaFrame(base: 1, version: 2, changes: try appliedChanges(from: v1, to: v2)),
            base: 1, version: 2, result: v2)
        let registration = board.watch { _ in }
        #expect(registration.version == 2)
        var follower = ConfigFollower()
        for frame in registration.frames { _ = try follower.receive(frame) }
        #expect(follower.tables?.version == 2)
        #expect(follower.tables?.hasSameContents(as: ProxyTables(version: 2, state: v2)) == true)
        // A delta from a version the board is not at is not chained: the whole snapshot is pushed instead.
        let pushed = Mutex<[WireFrame]>([])
        let other = board.watch { frame in pushed.withLock { $0.append(frame) } }
        board.publish(delta: SnapshotBoard.deltaFrame(base: 7, version: 8, changes: []), base: 7, version: 8, result: v1)
        #expect(pushed.withLock { $0.map(\.type) } == [.snapshot])
        #expect(board.version == 8)
        board.unwatch(other.id)
        board.unwatch(registration.id)
    }
}
