import ArgumentParser
import DaemonKit
import Foundation
import NIOCore
import NIOPosix

/// A bare TCP relay on one NIO event loop: every client connection gets its own upstream connection and bytes
/// go both ways unparsed. No HTTP, no budgets, no signing: what a proxy built on NIO pays per request before
/// doing anything of its own (the framework's floor), measured next to nginx and budget-proxyd.
struct Relay: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "relay", abstract: "A bare NIO TCP relay (the framework's floor for a proxy).")

    @Option(help: ArgumentHelp("Where to listen.", valueName: "host:port"))
    var listen = ListenAddress.tcp(host: "127.0.0.1", port: 0)

    @Option(help: ArgumentHelp("Where to relay to.", valueName: "host:port"))
    var upstream: ListenAddress

    func run() async throws {
        guard case .tcp(let upstreamHost, let upstreamPort) = upstream,
            case .tcp(let listenHost, let listenPort) = listen
        else { throw ValidationError("--listen and --upstream are host:port, the host an IP address") }
        let target = try SocketAddress(ipAddress: upstreamHost, port: upstreamPort)
        let loop = NIOSingletons.posixEventLoopGroup.next()
        let server = try await ServerBootstrap(group: loop)
            .serverChannelOption(.backlog, value: 512)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(RelayHandler(target: target))
                }
            }
            .bind(host: listenHost, port: listenPort).get()
        let bound = server.localAddress
        // Unbuffered: the harness waits for this line.
        FileHandle.standardOutput.write(Data("listening on \(bound?.ipAddress ?? "?"):\(bound?.port ?? 0)\n".utf8))
        try await server.closeFuture.get()
    }
}

/// One side of a relayed connection: what it reads goes to its peer, flushed at the end of each read burst.
final class RelayHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let target: SocketAddress?
    private var peer: (any Channel)?
    private var waiting: [ByteBuffer] = []

    init(target: SocketAddress) { self.target = target }
    init(peer: any Channel) {
        self.target = nil
        self.peer = peer
    }

    func channelActive(context: ChannelHandlerContext) {
        guard let target else { return }
        let inbound = context.channel
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        ClientBootstrap(group: context.eventLoop)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(RelayHandler(peer: inbound))
                }
            }
            .connect(to: target)
            .whenComplete { result in
                let handler = loopBound.value
                switch result {
                case .success(let channel):
                    // The client may have gone while this connected: nothing to relay, so the upstream goes too.
                    guard inbound.isActive else {
                        channel.close(promise: nil)
                        return
                    }
                    handler.peer = channel
                    for buffer in handler.waiting { channel.write(buffer, promise: nil) }
                    handler.waiting = []
                    channel.flush()
                case .failure:
                    inbound.close(promise: nil)
                }
            }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        if let peer { peer.write(buffer, promise: nil) } else { waiting.append(buffer) }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        peer?.flush()
    }

    func channelInactive(context: ChannelHandlerContext) {
        peer?.close(promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
