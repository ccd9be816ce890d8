package import BudgetWire
package import DaemonKit
import Foundation
package import Logging
package import NIOCore
import NIOPosix
import ServiceLifecycle

/// Serves one of the control plane's sockets (control.sock for data planes, admin.sock for budgetctl) on an
/// already-listening descriptor, so binding (or inheriting from systemd) is separate from serving.
///
/// Structure: one discarding task group per server, with a child task per connection; each connection runs
/// its asynchronous work (commits, admin requests) as children of its own task group, so nothing outlives
/// the connection, and graceful shutdown waits for work already received. Reservations and releases do not
/// go through that: `ControlConnectionHandler` answers them inline on the connection's event loop under the
/// ledger's lock, because an `NIOAsyncChannel` read loop would add a hop to the task pool and back on the
/// data plane's critical path. Only work that is asynchronous anyway (a store write, an actor) is handed
/// to the task group.
package struct ControlListener: Service {
    /// Who may use admin.sock besides the file mode: the daemon's own user, root, and members of `adminGroup`.
    package struct PeerPolicy: Sendable {
        package var allowedUser: UInt32
        package var adminGroup: UInt32?

        package init(allowedUser: UInt32, adminGroup: UInt32?) {
            self.allowedUser = allowedUser
            self.adminGroup = adminGroup
        }
    }

    /// What a connection needs from the daemon.
    package struct Context: Sendable {
        package var role: ClientRole
        package var budgets: BudgetDesk
        package var admin: AdminDesk
        package var board: SnapshotBoard
        package var peerPolicy: PeerPolicy?
        /// Data planes connected now, for `status` on the admin socket.
        package var dataPlaneCount: @Sendable () -> Int
        package var peerTimeout: TimeAmount
        package var logger: Logger
    }

    private let server: NIOAsyncChannel<ControlConnection, Never>
    private let listener: UnixListener.Bound
    private let counter: Gauge

    /// Connections open on this socket now.
    package var connections: Int { counter.value }

    private init(
        server: NIOAsyncChannel<ControlConnection, Never>, listener: UnixListener.Bound, counter: Gauge
    ) {
        self.server = server
        self.listener = listener
        self.counter = counter
    }

    /// Starts listening on `listener`'s descriptor; connections are served once `run()` is called.
    package static func listen(
        on listener: UnixListener.Bound, group: any EventLoopGroup, context: Context
    ) async throws -> ControlListener {
        let counter = Gauge()
        let maxFrame =
            context.role == .admin ? WireProtocol.maxAdminRequestBytes : WireProtocol.maxDataPlaneRequestBytes
        let server = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .childChannelOption(.writeBufferWaterMark, value: .init(low: 1 << 20, high: 8 << 20))
            .bind(listener.descriptor) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let (work, queue) = AsyncStream.makeStream(of: ControlConnection.Work.self)
                    try channel.pipeline.syncOperations.addHandler(
                        ByteToMessageHandler(
                            WireFrameDecoder(maxFrameBytes: maxFrame, assemblyTimeout: context.peerTimeout)))
                    try channel.pipeline.syncOperations.addHandler(
                        ControlConnectionHandler(context: context, counter: counter, work: queue))
                    return ControlConnection(channel: channel, work: work, queue: queue)
                }
            }
        return ControlListener(server: server, listener: listener, counter: counter)
    }

    /// Serves connections until graceful shutdown; then stops accepting, lets each connection finish the work
    /// it has received, closes them, and removes the socket file (unless systemd owns it).
    package func run() async throws {
        let channel = server.channel
        try await withGracefulShutdownHandler {
            try await server.executeThenClose { inbound in
                try await withThrowingDiscardingTaskGroup { group in
                    for try await connection in inbound {
                        group.addTask { await connection.serve() }
                    }
                }
            }
        } onGracefulShutdown: {
            channel.close(promise: nil)
        }
        if !listener.isInherited { unlink(listener.path) }
    }
}

/// One accepted connection: its channel and the asynchronous work its handler queued.
package struct ControlConnection: Sendable {
    /// A piece of work received on the connection (a commit, an admin request), which sends its own reply.
    package typealias Work = @Sendable () async -> Void

    let channel: any Channel
    let work: AsyncStream<Work>
    let queue: AsyncStream<Work>.Continuation

    /// Runs the connection's work as child tasks until the peer goes or graceful shutdown; waits for the
    /// work already started, then closes the connection.
    func serve() async {
        let queue = self.queue
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                for await item in work {
                    group.addTask { await item() }
                }
            }
        } onGracefulShutdown: {
            queue.finish()
        }
        channel.close(promise: nil)
    }
}
