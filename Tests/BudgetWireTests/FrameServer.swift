import BudgetWire
import Foundation
import NIOCore
import NIOPosix

/// Runs `body` with a server of budget-protocol frames on a Unix socket in a temporary directory, removed
/// afterwards; each connection gets a frame decoder and encoder, then the handler `makeHandler` makes.
func withFrameServer(
    _ makeHandler: @escaping @Sendable () -> any ChannelHandler & Sendable, _ body: (String) async throws -> Void
) async throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("wire-\(UUID().uuidString.prefix(8))")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: false)
    defer { try? FileManager.default.removeItem(at: directory) }
    let path = directory.appendingPathComponent("s.sock").path
    let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .childChannelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(
                    ByteToMessageHandler(WireFrameDecoder(maxFrameBytes: 1 << 16)))
                try channel.pipeline.syncOperations.addHandler(MessageToByteHandler(WireFrameEncoder()))
                try channel.pipeline.syncOperations.addHandler(makeHandler())
            }
        }
        .bind(unixDomainSocketPath: path).get()
    do {
        try await body(path)
    } catch {
        try? await server.close()
        throw error
    }
    try? await server.close()
}
