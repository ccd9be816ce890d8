import Bedrock
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle

/// The emulator's HTTP/1.1 server on SwiftNIO: one handler per connection turns each request into an
/// `EmulatorRequest`, asks `EmulatorService`, and writes the answer (streams frame by frame, chunked), all on
/// the connection's event loop. As a `Service`, it serves until graceful shutdown, then closes the listener
/// and lets its threads finish what they are writing.
package final class EmulatorServer: Service, Sendable {
    private let channel: any Channel
    private let group: MultiThreadedEventLoopGroup
    private let ownsGroup: Bool

    /// The port the server is listening on (useful when started on port 0).
    package var port: Int? { channel.localAddress?.port }

    private init(channel: any Channel, group: MultiThreadedEventLoopGroup, ownsGroup: Bool) {
        self.channel = channel
        self.group = group
        self.ownsGroup = ownsGroup
    }

    /// Binds `host:port` and starts serving.
    package static func start(
        host: String, port: Int, configuration: EmulatorConfiguration, threads: Int? = nil
    ) async throws -> EmulatorServer {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, threads ?? System.coreCount))
        let service = EmulatorService(configuration: configuration)
        let maxBody = configuration.maxBodyBytes
        let frameDelay = configuration.streamFrameDelayMilliseconds
        do {
            let channel = try await ServerBootstrap(group: group)
                .serverChannelOption(.backlog, value: 1024)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                        try channel.pipeline.syncOperations.addHandler(
                            EmulatorHTTPHandler(
                                service: service, maxBodyBytes: maxBody, frameDelayMilliseconds: frameDelay))
                    }
                }
                .bind(host: host, port: port).get()
            return EmulatorServer(channel: channel, group: group, ownsGroup: true)
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
    }

    /// Stops listening, closes the listener and shuts the threads down.
    package func close() async throws {
        try? await channel.close()
        if ownsGroup { try await group.shutdownGracefully() }
    }

    /// Waits until the listener closes.
    package func waitUntilClosed() async throws {
        try await channel.closeFuture.get()
    }

    /// Serves until graceful shutdown or cancellation (or until the listener closes), then shuts down.
    package func run() async throws {
        let channel = self.channel
        await withTaskCancellationOrGracefulShutdownHandler {
            try? await channel.closeFuture.get()
        } onCancelOrGracefulShutdown: {
            channel.close(promise: nil)
        }
        try await close()
    }
}

/// Per connection: gathers a request (bounded), answers it, keeps the connection alive when asked.
final class EmulatorHTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let service: EmulatorService
    private let maxBodyBytes: Int
    private let frameDelay: Int
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []
    private var tooLarge = false

    init(service: EmulatorService, maxBodyBytes: Int, frameDelayMilliseconds: Int) {
        self.service = service
        self.maxBodyBytes = maxBodyBytes
        self.frameDelay = frameDelayMilliseconds
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let requestHead):
            head = requestHead
            body.removeAll(keepingCapacity: true)
            tooLarge = false
            if let length = requestHead.headers.first(name: "content-length").flatMap(Int.init), length > maxBodyBytes {
                tooLarge = true
            }
        case .body(var buffer):
            guard !tooLarge else { return }
            if body.count + buffer.readableBytes > maxBodyBytes {
                tooLarge = true
                body = []
                return
            }
            body += buffer.readBytes(length: buffer.readableBytes) ?? []
        case .end:
            guard let head else { return }
            self.head = nil
            if tooLarge {
                let response = service.error(.validation("Input is too long for requested model."))
                write(response, keepAlive: false, context: context)
                return
            }
            let target = head.uri
            let queryStart = target.firstIndex(of: "?")
            let request = EmulatorRequest(
                method: head.method.rawValue,
                path: String(target[..<(queryStart ?? target.endIndex)]),
                query: queryStart.map { String(target[target.index(after: $0)...]) } ?? "",
                headers: head.headers.map { ($0.name, $0.value) },
                body: body)
            let now = AMZDate(epochSeconds: Int64(Date().timeIntervalSince1970))
            let (delay, response) = service.respond(to: request, now: now)
            let keepAlive = head.isKeepAlive
            if delay > 0 {
                context.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(Int64(delay))) {
                    self.write(response, keepAlive: keepAlive, context: context)
                }
            } else {
                write(response, keepAlive: keepAlive, context: context)
            }
        }
    }

    private func write(_ response: EmulatorResponse, keepAlive: Bool, context: ChannelHandlerContext) {
        switch response {
        case .drop:
            context.close(promise: nil)
        case .complete(let status, let headers, let body):
            var httpHeaders = HTTPHeaders(headers)
            httpHeaders.replaceOrAdd(name: "Content-Length", value: String(body.count))
            if !keepAlive { httpHeaders.replaceOrAdd(name: "Connection", value: "close") }
            context.write(
                wrapOutboundOut(
                    .head(
                        HTTPResponseHead(
                            version: .http1_1, status: HTTPResponseStatus(statusCode: status), headers: httpHeaders))),
                promise: nil)
            context.write(
                wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
            let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
            if !keepAlive {
                done.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
            }
        case .stream(let status, let headers, let frames, let dropAfter):
            var httpHeaders = HTTPHeaders(headers)
            httpHeaders.replaceOrAdd(name: "Transfer-Encoding", value: "chunked")
            if !keepAlive { httpHeaders.replaceOrAdd(name: "Connection", value: "close") }
            context.writeAndFlush(
                wrapOutboundOut(
                    .head(
                        HTTPResponseHead(
                            version: .http1_1, status: HTTPResponseStatus(statusCode: status), headers: httpHeaders))),
                promise: nil)
            writeFrames(frames[...], sent: 0, dropAfter: dropAfter, keepAlive: keepAlive, context: context)
        }
    }

    /// Writes frames one HTTP chunk each. Without a frame delay they go out in one flush; with one,
    /// each frame is flushed on its own after the pause.
    private func writeFrames(
        _ frames: ArraySlice<[UInt8]>, sent: Int, dropAfter: Int?, keepAlive: Bool, context: ChannelHandlerContext
    ) {
        var remaining = frames
        var count = sent
        while let frame = remaining.first {
            if let dropAfter, count >= dropAfter {
                context.flush()
                context.close(promise: nil)
                return
            }
            context.write(
                wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: frame)))), promise: nil)
            remaining = remaining.dropFirst()
            count += 1
            if frameDelay > 0 && !remaining.isEmpty {
                context.flush()
                let rest = remaining
                context.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(Int64(frameDelay))) {
                    guard context.channel.isActive else { return }
                    self.writeFrames(rest, sent: count, dropAfter: dropAfter, keepAlive: keepAlive, context: context)
                }
                return
            }
        }
        if let dropAfter, count >= dropAfter {
            context.flush()
            context.close(promise: nil)
            return
        }
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive { done.assumeIsolated().whenComplete { _ in context.close(promise: nil) } }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
