import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization
import Testing

@testable import DataPlane

/// budget-proxyd's own HTTP/1.1 client against a real TCP server on loopback that answers by path, byte for
/// byte, the way a misbehaving upstream would: keep-alive, `Connection: close`, a body cut off, silence, a
/// body too large, a slow stream, and idle connections the server closes.
@Suite("Upstream client")
struct UpstreamClientTests {
    @Test("keep-alive: twenty calls in a row share one connection")
    func reusesConnections() async throws {
        try await withServer { server, client in
            for index in 0..<20 {
                let response = try await client.send(
                    server.request("/ok?\(index)"), to: server.origin, streaming: false, readTimeout: .seconds(5))
                #expect(response.status == .ok)
                #expect(String(buffer: try await response.body.collect(upTo: 1 << 20)) == "ok /ok?\(index)")
            }
            #expect(server.accepted == 1)
        }
    }

    @Test("idle connections close after the idle time-out, and the counts say so")
    func idleTimeout() async throws {
        var settings = UpstreamClient.Settings()
        // Long enough that a loaded machine does not close the connections before they are counted (200 ms
        // did, once in a dozen runs beside a build, and 1 s once beside the interop suite), short enough for a
        // test.
        settings.idleTimeout = .seconds(3)
        try await withServer(settings: settings) { server, client in
            // Answered after 200 ms, so that both calls are in flight at once, on two connections.
            async let first = client.send(
                server.request("/delayed"), to: server.origin, streaming: false, readTimeout: .seconds(5))
            async let second = client.send(
                server.request("/delayed"), to: server.origin, streaming: false, readTimeout: .seconds(5))
            #expect(try await [first.status, second.status] == [.ok, .ok])
            #expect(server.accepted == 2)
            #expect(client.openConnections == 2)
            #expect(client.idleConnections == 2)
            // Closed between 3 and 3.75 s after their last use; waited for up to 15 s.
            let deadline = ContinuousClock.now + .seconds(15)
            while (server.open > 0 || client.openConnections > 0) && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(server.open == 0)
            #expect(client.openConnections == 0)
            #expect(client.idleConnections == 0)
        }
    }

    @Test("a `Connection: close` answer is read whole and its connection is not reused")
    func connectionClose() async throws {
        try await withServer { server, client in
            for _ in 0..<3 {
                let response = try await client.send(
                    server.request("/close"), to: server.origin, streaming: false, readTimeout: .seconds(5))
                #expect(String(buffer: try await response.body.collect(upTo: 1 << 20)) == "closing")
            }
            #expect(server.accepted == 3)
        }
    }

    @Test("a connection the server closed while idle is not used: the next call gets a new one and succeeds")
    func idleCloseByServer() async throws {
        try await withServer { server, client in
            let first = try await client.send(
                server.request("/ok-then-close"), to: server.origin, streaming: false, readTimeout: .seconds(5))
            #expect(first.status == .ok)
            try await Task.sleep(for: .milliseconds(300))  // the server's close reaches the pool
            #expect(client.openConnections == 0)
            #expect(client.idleConnections == 0)
            let second = try await client.send(
                server.request("/ok"), to: server.origin, streaming: false, readTimeout: .seconds(5))
            #expect(second.status == .ok)
            #expect(server.accepted == 2)
        }
    }

    @Test("a body cut off by the server is a broken call whose request was sent")
    func cutOff() async throws {
        try await withServer { server, client in
            let failure = try await expectFailure {
                try await client.send(
                    server.request("/cut"), to: server.origin, streaming: false, readTimeout: .seconds(5))
            }
            #expect(failure.kind == .broken)
            #expect(failure.requestSent)
            #expect(failure.answerBegan)
            #expect(ProxyService.cutOff(failure) != nil)
            #expect(ProxyService.mayHaveReachedBedrock(failure))
        }
    }

    @Test("silence past the read time-out is a time-out whose request was sent, and the connection is dropped")
    func silence() async throws {
        try await withServer { server, client in
            let failure = try await expectFailure {
                try await client.send(
                    server.request("/silent"), to: server.origin, streaming: false, readTimeout: .milliseconds(200))
            }
            #expect(failure.kind == .timeout)
            #expect(failure.requestSent)
            #expect(failure.isTimeout)
            #expect(ProxyService.cutOff(failure) == nil)  // answered as a time-out (504)
            #expect(ProxyService.mayHaveReachedBedrock(failure))
            let next = try await client.send(
                server.request("/ok"), to: server.origin, streaming: false, readTimeout: .seconds(5))
            #expect(next.status == .ok)
            #expect(server.accepted == 2)
        }
    }

    @Test("a header that could split the request is refused before anything is sent; the connection serves on")
    func invalidHeader() async throws {
        try await withServer { server, client in
            var request = server.request("/ok")
            request.headers.append(("X-Injected", "a\r\nX-Other: b"))
            let failure = try await expectFailure {
                try await client.send(request, to: server.origin, streaming: false, readTimeout: .seconds(5))
            }
            #expect(failure.kind == .broken)
            #expect(!failure.requestSent)
            #expect(failure.description.contains("X-Injected"))
            let next = try await client.send(
                server.request("/ok"), to: server.origin, streaming: false, readTimeout: .seconds(5))
            #expect(next.status == .ok)
            #expect(server.accepted == 1)
        }
    }

    @Test("a closed port is a connect failure: nothing was sent")
    func refused() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let client = try UpstreamClient(group: group, settings: .init())
        // A port that was just free: bound, then closed.
        let probe = try await ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).get()
        let port = probe.localAddress?.port ?? 1
        try await probe.close()
        let origin = try #require(UpstreamOrigin(endpoint: "http://127.0.0.1:\(port)"))
        let failure = try await expectFailure {
            try await client.send(
                UpstreamRequest(path: "/", headers: [], body: []), to: origin, streaming: false,
                readTimeout: .seconds(5))
        }
        #expect(failure.kind == .connect)
        #expect(!failure.requestSent)
        #expect(!failure.answerBegan)
        #expect(ProxyService.cutOff(failure) == nil)
        #expect(!ProxyService.mayHaveReachedBedrock(failure))
        await client.shutdown()
        try await group.shutdownGracefully()
    }

    @Test("a body over the caller's limit fails as too large instead of growing")
    func tooLarge() async throws {
        try await withServer { server, client in
            let failure = try await expectFailure {
                try await client.send(
                    server.request("/big"), to: server.origin, streaming: false, collectUpTo: 64 * 1024,
                    readTimeout: .seconds(5))
            }
            #expect(failure.kind == .tooLarge)
            #expect(ProxyService.cutOff(failure) != nil)
        }
    }

    @Test("a stream read slowly arrives whole and in order, and its connection is reused after")
    func slowStream() async throws {
        try await withServer { server, client in
            let response = try await client.send(
                server.request("/stream"), to: server.origin, streaming: true, readTimeout: .seconds(5))
            var text = ""
            for try await part in response.body {
                text += String(buffer: part)
                try await Task.sleep(for: .milliseconds(2))
            }
            #expect(text == (0..<200).map { "part \($0);" }.joined())
            let next = try await client.send(
                server.request("/ok"), to: server.origin, streaming: false, readTimeout: .seconds(5))
            #expect(next.status == .ok)
            #expect(server.accepted == 1)
        }
    }

    @Test("a reader that leaves a stream early closes its connection; the next call gets a new one")
    func streamAbandoned() async throws {
        try await withServer { server, client in
            let response = try await client.send(
                server.request("/stream-endless"), to: server.origin, streaming: true, readTimeout: .seconds(5))
            var parts = 0
            for try await _ in response.body {
                parts += 1
                if parts == 3 { break }
            }
            try await Task.sleep(for: .milliseconds(100))
            let next = try await client.send(
                server.request("/ok"), to: server.origin, streaming: false, readTimeout: .seconds(5))
            #expect(next.status == .ok)
            #expect(server.accepted == 2)
        }
    }

    @Test("cancelling the caller's task ends a call that waits on a silent upstream")
    func cancellation() async throws {
        try await withServer { server, client in
            let call = Task {
                try await client.send(
                    server.request("/silent"), to: server.origin, streaming: false, readTimeout: .seconds(30))
            }
            try await Task.sleep(for: .milliseconds(100))
            call.cancel()
            let failure = try await expectFailure { try await call.value }
            #expect(failure.kind == .cancelled)
        }
    }

    @Test("origins: scheme, host, default and explicit ports, IPv6; anything else is refused")
    func origins() {
        #expect(UpstreamOrigin(endpoint: "https://bedrock-runtime.us-east-1.amazonaws.com")
            == UpstreamOrigin(endpoint: "https://bedrock-runtime.us-east-1.amazonaws.com:443/x"))
        #expect(UpstreamOrigin(endpoint: "http://127.0.0.1:8080")?.port == 8080)
        #expect(UpstreamOrigin(endpoint: "http://example.com")?.port == 80)
        #expect(UpstreamOrigin(endpoint: "http://[::1]:9000")?.host == "::1")
        #expect(UpstreamOrigin(endpoint: "http://[::1]:9000")?.hostIsAddress == true)
        #expect(UpstreamOrigin(endpoint: "https://example.com")?.hostIsAddress == false)
        #expect(UpstreamOrigin(endpoint: "ftp://example.com") == nil)
        #expect(UpstreamOrigin(endpoint: "http://:80") == nil)
        #expect(UpstreamOrigin(endpoint: "http://example.com:0") == nil)
        #expect(UpstreamOrigin(endpoint: "http://example.com:http") == nil)
        #expect(UpstreamOrigin(endpoint: "example.com") == nil)
    }
}

/// Runs `body` with a scripted server and a client, and stops both, also when `body` throws.
private func withServer(
    settings: UpstreamClient.Settings = .init(), _ body: (ScriptedServer, UpstreamClient) async throws -> Void
) async throws {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let server = try await ScriptedServer.start(group: group)
    let client = try UpstreamClient(group: group, settings: settings)
    do {
        try await body(server, client)
    } catch {
        await client.shutdown()
        try? await server.channel.close()
        try? await group.shutdownGracefully()
        throw error
    }
    await client.shutdown()
    try? await server.channel.close()
    try await group.shutdownGracefully()
}

private func expectFailure(_ call: () async throws -> UpstreamResponse) async throws -> UpstreamFailure {
    do {
        _ = try await call()
    } catch let failure as UpstreamFailure {
        return failure
    }
    Issue.record("the call succeeded")
    throw CancellationError()
}

/// A TCP server that reads requests (head and `Content-Length` body) and answers each by its path with raw
/// bytes, so that the client meets exactly what the test describes.
private final class ScriptedServer: Sendable {
    let channel: any Channel
    let origin: UpstreamOrigin
    private let connections: ConnectionCount

    /// Connections the server has accepted so far.
    var accepted: Int { connections.value.load(ordering: .relaxed) }
    /// Connections open now.
    var open: Int { connections.open.load(ordering: .relaxed) }

    private init(channel: any Channel, origin: UpstreamOrigin, connections: ConnectionCount) {
        self.channel = channel
        self.origin = origin
        self.connections = connections
    }

    static func start(group: any EventLoopGroup) async throws -> ScriptedServer {
        let connections = ConnectionCount()
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                connections.value.add(1, ordering: .relaxed)
                connections.open.add(1, ordering: .relaxed)
                channel.closeFuture.whenComplete { _ in connections.open.subtract(1, ordering: .relaxed) }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ScriptedHandler())
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let port = channel.localAddress?.port ?? 0
        guard let origin = UpstreamOrigin(endpoint: "http://127.0.0.1:\(port)") else { throw CancellationError() }
        return ScriptedServer(channel: channel, origin: origin, connections: connections)
    }

    private final class ConnectionCount: Sendable {
        let value = Atomic<Int>(0)
        let open = Atomic<Int>(0)
    }

    func request(_ path: String) -> UpstreamRequest {
        UpstreamRequest(
            path: path, headers: [("Host", "127.0.0.1"), ("Content-Type", "application/json")],
            body: Array("{\"hello\":1}".utf8))
    }
}

private final class ScriptedHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    private var pending = ByteBuffer()

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        pending.writeBuffer(&bytes)
        while let (path, consumed) = nextRequest() {
            pending.moveReaderIndex(forwardBy: consumed)
            answer(path, context: context)
        }
    }

    /// The path of the next whole request in `pending` and its length in bytes.
    private func nextRequest() -> (String, Int)? {
        let text = String(buffer: pending)
        guard let headEnd = text.range(of: "\r\n\r\n") else { return nil }
        let head = text[..<headEnd.lowerBound]
        let length =
            head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
            .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
        let headBytes = text[..<headEnd.upperBound].utf8.count
        guard pending.readableBytes >= headBytes + length else { return nil }
        let path = head.split(separator: " ").dropFirst().first.map(String.init) ?? "/"
        return (path, headBytes + length)
    }

    private func write(_ text: String, context: ChannelHandlerContext) {
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(string: text)), promise: nil)
    }

    private func answer(_ path: String, context: ChannelHandlerContext) {
        func whole(_ body: String, extra: String = "") -> String {
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: \(body.utf8.count)\r\n\(extra)\r\n\(body)"
        }
        switch path.prefix(while: { $0 != "?" }) {
        case "/ok":
            write(whole("ok \(path)"), context: context)
        case "/close":
            let channel = context.channel
            context.writeAndFlush(
                wrapOutboundOut(context.channel.allocator.buffer(string: whole("closing", extra: "Connection: close\r\n"))))
                .whenComplete { _ in channel.close(promise: nil) }
        case "/ok-then-close":
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(string: whole("bye"))))
                .whenComplete { _ in channel.close(promise: nil) }
        case "/cut":
            let channel = context.channel
            context.writeAndFlush(
                wrapOutboundOut(
                    context.channel.allocator.buffer(string: "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")))
                .whenComplete { _ in channel.close(promise: nil) }
        case "/silent":
            break
        case "/delayed":
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            let late = whole("late")
            context.eventLoop.scheduleTask(in: .milliseconds(200)) {
                let (handler, context) = bound.value
                handler.write(late, context: context)
            }
        case "/big":
            write(whole(String(repeating: "x", count: 200 * 1024)), context: context)
        case "/stream":
            write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", context: context)
            for index in 0..<200 {
                let part = "part \(index);"
                write(String(part.utf8.count, radix: 16) + "\r\n" + part + "\r\n", context: context)
            }
            write("0\r\n\r\n", context: context)
        case "/stream-endless":
            write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", context: context)
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            context.eventLoop.scheduleRepeatedTask(initialDelay: .zero, delay: .milliseconds(5)) { task in
                let (handler, context) = bound.value
                guard context.channel.isActive else {
                    task.cancel()
                    return
                }
                handler.write("5\r\nmore;\r\n", context: context)
            }
        default:
            write("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", context: context)
        }
    }
}
