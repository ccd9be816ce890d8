import DaemonKit
import Foundation
public import NIOCore
import NIOHTTP1
import NIOPosix

/// Where the proxy listens: `HOST:PORT`, or `unix:/path` for apps on the same host.
public enum ListenAddress: Sendable, Hashable, CustomStringConvertible {
    case tcp(host: String, port: Int)
    case unix(path: String)

    public init?(_ text: String) {
        if text.hasPrefix("unix:") {
            let path = String(text.dropFirst(5))
            guard path.hasPrefix("/") else { return nil }
            self = .unix(path: path)
            return
        }
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
            (0...65535).contains(port), colon > text.startIndex
        else { return nil }
        self = .tcp(host: String(text[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]")), port: port)
    }

    public var description: String {
        switch self {
        case .tcp(let host, let port): return "\(host):\(port)"
        case .unix(let path): return "unix:\(path)"
        }
    }
}

/// Bounds of the HTTP listener.
public struct HTTPLimits: Sendable {
    /// Largest request body (default 8 MiB; up to Bedrock's 20 MB).
    public var maxBodyBytes = 8 << 20
    /// Most open client connections; more are closed at once.
    public var maxConnections = 4096
    /// Most header fields in one request; more get 431.
    public var maxHeaderCount = 100
    /// Seconds after which a connection with no request in progress is closed.
    public var idleTimeoutSeconds = 60
    /// Seconds within which a request must arrive whole, head and body, from its first byte (slow-loris).
    public var readTimeoutSeconds = 30

    public init() {}
}

/// HTTP/1.1 on SwiftNIO for the proxy: keep-alive, pipelining, chunked request bodies, `Expect: 100-continue`,
/// bounded headers (NIO's parser: 80 KiB), bodies, connections and time-outs.
public final class ProxyHTTPServer: Sendable {
    private let channels: [any Channel]

    private init(channels: [any Channel]) { self.channels = channels }

    /// The bound addresses, as `host:port` or `unix:/path` (a port 0 resolved to the real one).
    public var boundAddresses: [String] {
        channels.compactMap { channel in
            guard let address = channel.localAddress else { return nil }
            if let port = address.port { return "\(address.ipAddress ?? "?"):\(port)" }
            return address.pathname.map { "unix:\($0)" }
        }
    }

    /// Serves `inherited` sockets (from systemd) if any, else binds `addresses`.
    public static func start(
        addresses: [ListenAddress], inherited: [Int32] = [], group: any EventLoopGroup, limits: HTTPLimits,
        handler: @escaping @Sendable (ProxyRequest, any ResponseSink) async -> Void
    ) async throws -> ProxyHTTPServer {
        let connections = LockedCounter()
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if connections.value >= limits.maxConnections {
                        channel.close(promise: nil)
                        return
                    }
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(
                        IdleStateHandler(allTimeout: .seconds(Int64(limits.idleTimeoutSeconds))))
                    try channel.pipeline.syncOperations.addHandler(
                        ProxyHTTPHandler(limits: limits, connections: connections, handler: handler))
                }
            }
        var channels: [any Channel] = []
        do {
            for descriptor in inherited {
                channels.append(try await bootstrap.withBoundSocket(descriptor).get())
            }
            for address in addresses where inherited.isEmpty {
                switch address {
                case .tcp(let host, let port):
                    channels.append(try await bootstrap.bind(host: host, port: port).get())
                case .unix(let path):
                    channels.append(
                        try await bootstrap.bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true).get())
                }
            }
        } catch {
            for channel in channels { try? await channel.close() }
            throw error
        }
        return ProxyHTTPServer(channels: channels)
    }

    public func close() async {
        for channel in channels { try? await channel.close() }
    }
}

/// One client connection: gathers each request (bounded), hands it to the proxy, and cancels the work if
/// the client goes away.
final class ProxyHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let limits: HTTPLimits
    private let connections: LockedCounter
    private let handler: @Sendable (ProxyRequest, any ResponseSink) async -> Void
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []
    private var refused = false
    private var busy = false
    private var readDeadline: Scheduled<Void>?
    private var task: Task<Void, Never>?

    init(
        limits: HTTPLimits, connections: LockedCounter,
        handler: @escaping @Sendable (ProxyRequest, any ResponseSink) async -> Void
    ) {
        self.limits = limits
        self.connections = connections
        self.handler = handler
    }

    func channelActive(context: ChannelHandlerContext) {
        connections.add(1)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        connections.add(-1)
        readDeadline?.cancel()
        task?.cancel()  // the client hung up: stop the upstream call too
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            if !busy && head == nil { context.close(promise: nil) }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    private func simple(_ context: ChannelHandlerContext, status: HTTPResponseStatus, message: String) {
        let payload = Array("{\"message\":\"\(message)\"}".utf8)
        var headers = HTTPHeaders([
            ("Content-Type", "application/json"), ("Content-Length", String(payload.count)),
            ("Connection", "close"),
        ])
        headers.add(name: "Date", value: httpDate())
        context.write(
            wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        context.write(
            wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: payload)))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        // The rest of the request is read and dropped (bounded by the read time-out), then the connection
        // closes: closing while the client still sends would reset it before it reads the answer.
        refused = true
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let requestHead):
            head = requestHead
            body = []
            refused = false
            let channel = context.channel
            readDeadline = context.eventLoop.scheduleTask(in: .seconds(Int64(limits.readTimeoutSeconds))) {
                channel.close(promise: nil)
            }
            if requestHead.headers.count > limits.maxHeaderCount {
                simple(
                    context, status: .requestHeaderFieldsTooLarge,
                    message: "\(requestHead.headers.count) header fields exceed the limit of \(limits.maxHeaderCount)")
                return
            }
            let length = requestHead.headers.first(name: "content-length").flatMap(Int.init)
            if let length, length > limits.maxBodyBytes {
                refused = true
                simple(
                    context, status: .payloadTooLarge,
                    message: "request body of \(length) bytes exceeds the limit of \(limits.maxBodyBytes) bytes")
                return
            }
            if requestHead.headers.first(name: "expect")?.lowercased() == "100-continue" {
                context.writeAndFlush(
                    wrapOutboundOut(.head(HTTPResponseHead(version: requestHead.version, status: .continue))),
                    promise: nil)
            }
        case .body(var buffer):
            guard !refused else { return }
            if body.count + buffer.readableBytes > limits.maxBodyBytes {
                refused = true
                simple(
                    context, status: .payloadTooLarge,
                    message: "request body exceeds the limit of \(limits.maxBodyBytes) bytes")
                return
            }
            body += buffer.readBytes(length: buffer.readableBytes) ?? []
        case .end:
            readDeadline?.cancel()
            readDeadline = nil
            if refused {
                context.close(promise: nil)
                return
            }
            guard let head else { return }
            self.head = nil
            let target = head.uri
            let queryStart = target.firstIndex(of: "?")
            let request = ProxyRequest(
                method: head.method.rawValue, path: String(target[..<(queryStart ?? target.endIndex)]),
                query: queryStart.map { String(target[target.index(after: $0)...]) } ?? "",
                headers: head.headers.map { ($0.name, $0.value) }, body: body)
            body = []
            busy = true
            let sink = ChannelSink(channel: context.channel, keepAlive: head.isKeepAlive, version: head.version)
            let handler = self.handler
            let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
            let eventLoop = context.eventLoop
            task = Task {
                await handler(request, sink)
                eventLoop.execute { loopBound.value.busy = false }
            }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

/// Writes a response to the connection a request came from.
struct ChannelSink: ResponseSink {
    let channel: any Channel
    let keepAlive: Bool
    let version: HTTPVersion

    func start(status: Int, headers: [(String, String)], contentLength: Int?) async throws {
        var httpHeaders = HTTPHeaders(headers)
        if let contentLength {
            httpHeaders.replaceOrAdd(name: "Content-Length", value: String(contentLength))
        } else {
            httpHeaders.replaceOrAdd(name: "Transfer-Encoding", value: "chunked")
        }
        httpHeaders.replaceOrAdd(name: "Date", value: httpDate())
        if !keepAlive { httpHeaders.replaceOrAdd(name: "Connection", value: "close") }
        let head = HTTPResponseHead(
            version: version, status: HTTPResponseStatus(statusCode: status), headers: httpHeaders)
        try await channel.writeAndFlush(HTTPServerResponsePart.head(head))
    }

    func write(_ bytes: [UInt8]) async throws {
        guard !bytes.isEmpty else { return }
        try await channel.writeAndFlush(
            HTTPServerResponsePart.body(.byteBuffer(channel.allocator.buffer(bytes: bytes))))
    }

    func finish() async throws {
        try await channel.writeAndFlush(HTTPServerResponsePart.end(nil))
        if !keepAlive { try? await channel.close() }
    }

    /// Head, body and end written together and flushed once.
    func respond(status: Int, headers: [(String, String)], body: [UInt8]) async {
        var httpHeaders = HTTPHeaders(headers)
        httpHeaders.replaceOrAdd(name: "Content-Length", value: String(body.count))
        httpHeaders.replaceOrAdd(name: "Date", value: httpDate())
        if !keepAlive { httpHeaders.replaceOrAdd(name: "Connection", value: "close") }
        let head = HTTPResponseHead(
            version: version, status: HTTPResponseStatus(statusCode: status), headers: httpHeaders)
        channel.write(HTTPServerResponsePart.head(head), promise: nil)
        channel.write(HTTPServerResponsePart.body(.byteBuffer(channel.allocator.buffer(bytes: body))), promise: nil)
        try? await channel.writeAndFlush(HTTPServerResponsePart.end(nil))
        if !keepAlive { try? await channel.close() }
    }
}

/// An HTTP `Date` header value, formatted once a second rather than once a response.
func httpDate() -> String {
    let now = Int(Date().timeIntervalSince1970)
    return HTTPDateCache.shared.value(at: now)
}

final class HTTPDateCache: @unchecked Sendable {
    static let shared = HTTPDateCache()
    private let lock = NSLock()
    private var second = -1
    private var text = ""
    private let formatter: DateFormatter = {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        return formatter
    }()

    func value(at now: Int) -> String {
        lock.lock()
        defer { lock.unlock() }
        if now != second {
            second = now
            text = formatter.string(from: Date(timeIntervalSince1970: TimeInterval(now)))
        }
        return text
    }
}
