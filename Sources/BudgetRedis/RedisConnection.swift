import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS

/// A pipeline on its way to the server: the encoded commands, how many replies they get, where those go.
struct RedisRequest: Sendable {
    var bytes: ByteBuffer
    var count: Int
    var promise: EventLoopPromise<[RESPValue]>
}

/// What the channel handler needs to say where and why something failed.
struct ConnectionSettings: Sendable {
    /// "redis 127.0.0.1:6379/0" and the like, first in every message.
    var label: String
    var tlsEnabled: Bool
    var verify: Bool
    var serverName: String
    var sendTimeout: TimeAmount
    var readTimeout: TimeAmount
    /// Set (before any pending call is failed) once the connection is no longer usable, so that the next call
    /// opens a new one even while this one is still closing.
    /// The first error, kept for writes that reach a channel already closed by it.
    var broken: NIOLockedValueBox<RedisError?>
}

/// Matches replies to requests in order (Redis answers a connection's commands in order), with a read
/// deadline per pipeline and a send deadline per write. Once anything fails, every pending request fails with
/// the same error and the connection closes: replies would no longer be in step with the requests.
final class RedisChannelHandler: ChannelDuplexHandler {
    typealias InboundIn = RESPValue
    typealias OutboundIn = RedisRequest
    typealias OutboundOut = ByteBuffer

    private struct Pending {
        var count: Int
        var replies: [RESPValue]
        var promise: EventLoopPromise<[RESPValue]>
        var readDeadline: Scheduled<Void>?
    }

    private let settings: ConnectionSettings
    private var pending = CircularBuffer<Pending>()
    private var failure: RedisError?
    /// Whether the TLS handshake has completed (a read timeout before it is a TLS problem).
    private var handshakeCompleted = false
    /// Whether the server ever answered on this connection: after that a reset is not a TLS mismatch.
    private var answered = false

    init(settings: ConnectionSettings) { self.settings = settings }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let tlsEvent = event as? TLSUserEvent, case .handshakeCompleted = tlsEvent { handshakeCompleted = true }
        context.fireUserInboundEventTriggered(event)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = unwrapOutboundIn(data)
        if let failure {
            request.promise.fail(failure)
            promise?.fail(failure)
            return
        }
        let loop = context.eventLoop.assumeIsolated()
        let readTimeout = settings.readTimeout
        let readDeadline = loop.scheduleTask(in: readTimeout) { [self] in
            if settings.tlsEnabled && !handshakeCompleted {
                fail(
                    context: context,
                    RedisError(
                        kind: .tls,
                        message:
                            "\(settings.label): no TLS handshake within \(Self.describe(readTimeout)) (read timeout): "
                            + "is the server speaking TLS on this port? (ssl: true)"))
                return
            }
            fail(
                context: context,
                RedisError(
                    kind: .timeout,
                    message: "\(settings.label): no reply within \(Self.describe(readTimeout)) (read timeout)"))
        }
        pending.append(Pending(count: request.count, replies: [], promise: request.promise, readDeadline: readDeadline))
        let sendTimeout = settings.sendTimeout
        let sendDeadline = loop.scheduleTask(in: sendTimeout) { [self] in
            fail(
                context: context,
                RedisError(
                    kind: .timeout,
                    message: "\(settings.label): could not send within \(Self.describe(sendTimeout)) (send timeout)"))
        }
        let written = context.eventLoop.makePromise(of: Void.self)
        written.futureResult.assumeIsolated().whenComplete { [self] result in
            sendDeadline.cancel()
            if case .failure(let error) = result { fail(context: context, map(error)) }
        }
        if let promise { written.futureResult.cascade(to: promise) }
        context.write(wrapOutboundOut(request.bytes), promise: written)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let value = unwrapInboundIn(data)
        guard failure == nil else { return }
        guard !pending.isEmpty else {
            fail(
                context: context,
                RedisError(kind: .protocolViolation, message: "\(settings.label): a reply nobody asked for"))
            return
        }
        answered = true
        pending[pending.startIndex].replies.append(value)
        if pending[pending.startIndex].replies.count == pending[pending.startIndex].count {
            let done = pending.removeFirst()
            done.readDeadline?.cancel()
            done.promise.succeed(done.replies)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        let hint = settings.tlsEnabled || answered ? "" : "; is ssl: true needed?"
        let closed = RedisError(kind: .closed, message: "\(settings.label): the server closed the connection\(hint)")
        // An error that explains the close (a TLS failure) can arrive right after it: let it win.
        context.eventLoop.assumeIsolated().execute { [self] in fail(context: context, closed) }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(context: context, map(error))
    }

    /// Fails everything pending (and everything written later) with `error`, and closes the connection.
    private func fail(context: ChannelHandlerContext, _ error: RedisError) {
        if failure == nil {
            failure = error
            settings.broken.withLockedValue { $0 = error }
        }
        let failed = failure ?? error
        while let request = pending.popFirst() {
            request.readDeadline?.cancel()
            request.promise.fail(failed)
        }
        context.close(promise: nil)
    }

    /// A RedisError for whatever went wrong on the channel.
    func map(_ error: any Error) -> RedisError {
        // A server that has answered speaks RESP: no hint about TLS then.
        Self.map(error, settings: settings, hintTLS: !answered)
    }

    static func map(_ error: any Error, settings: ConnectionSettings, hintTLS: Bool = true) -> RedisError {
        let label = settings.label
        let tlsHint = settings.tlsEnabled || !hintTLS ? "" : "; is ssl: true needed?"
        if let redis = error as? RedisError { return redis }
        // A write to a channel that an earlier error closed: that error is the reason.
        if let first = settings.broken.withLockedValue({ $0 }) { return first }
        if let decoding = error as? RESPDecodingError {
            switch decoding {
            case .tooLarge(let what):
                return RedisError(kind: .replyTooLarge, message: "\(label): \(what); connection closed")
            case .protocolViolation(let what):
                return RedisError(kind: .protocolViolation, message: "\(label): not RESP2 (\(what))\(tlsHint)")
            }
        }
        if error is NIOSSLError || error is BoringSSLError || error is NIOSSLExtraError {
            return tlsError(error, settings: settings)
        }
        if let channelError = error as? ChannelError {
            switch channelError {
            case .connectTimeout: return RedisError(kind: .connect, message: "\(label): timed out connecting")
            case .ioOnClosedChannel, .alreadyClosed, .outputClosed, .inputClosed, .eof:
                return RedisError(kind: .closed, message: "\(label): the connection is closed\(tlsHint)")
            default: break
            }
        }
        return RedisError(kind: .closed, message: "\(label): connection lost (\(error))\(tlsHint)")
    }

    static func tlsError(_ error: any Error, settings: ConnectionSettings) -> RedisError {
        let text = "\(error)"
        let verification =
            text.contains("CERTIFICATE_VERIFY_FAILED") || text.contains("ailedToValidateHostname")
            || text.contains("HostnameImpossibleToMatch")
        let hint =
            verification
            ? "certificate verify failed; check ssl_ca_file and server_name (ssl_verify: \(settings.verify); server_name \(settings.serverName))"
            : "is the server speaking TLS on this port? (ssl: true)"
        return RedisError(kind: .tls, message: "\(settings.label): TLS handshake failed (\(text)): \(hint)")
    }

    static func describe(_ amount: TimeAmount) -> String {
        let ms = amount.nanoseconds / 1_000_000
        return ms % 1000 == 0 ? "\(ms / 1000) s" : "\(ms) ms"
    }
}

/// One open, set-up connection (TLS, AUTH, SELECT done).
final class RedisConnection: Sendable {
    let channel: any Channel
    /// `host:port` connected to.
    let address: String
    let settings: ConnectionSettings

    private init(channel: any Channel, address: String, settings: ConnectionSettings) {
        self.channel = channel
        self.address = address
        self.settings = settings
    }

    /// Open and not failed.
    var isActive: Bool { channel.isActive && settings.broken.withLockedValue { $0 == nil } }

    /// Connects to `host:port` and sets the connection up: TLS handshake, AUTH, SELECT, and ROLE when
    /// `requireMaster`; a PING at the end makes sure all of it went through.
    static func open(
        host: String, port: Int, label: String, database: Int, username: String?, password: String?,
        tls: RedisEndpoint.TLS?, sslContext: NIOSSLContext?, connectTimeout: Duration, sendTimeout: Duration,
        readTimeout: Duration, maxReplyBytes: Int, requireMaster: Bool, group: any EventLoopGroup
    ) async throws(RedisError) -> RedisConnection {
        let serverName = tls?.serverName ?? host
        let settings = ConnectionSettings(
            label: label, tlsEnabled: tls != nil, verify: tls?.verify ?? false, serverName: serverName,
            sendTimeout: TimeAmount(sendTimeout), readTimeout: TimeAmount(readTimeout),
            broken: NIOLockedValueBox(nil))
        // An IP address cannot go in SNI; NIOSSL then checks the certificate against the peer's address.
        let sni: String? = isIPAddress(serverName) ? nil : serverName
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: group)
                .connectTimeout(TimeAmount(connectTimeout))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let pipeline = channel.pipeline.syncOperations
                        if let sslContext {
                            try pipeline.addHandler(NIOSSLClientHandler(context: sslContext, serverHostname: sni))
                        }
                        try pipeline.addHandler(ByteToMessageHandler(RESPDecoder(maxReplyBytes: maxReplyBytes)))
                        try pipeline.addHandler(RedisChannelHandler(settings: settings))
                    }
                }
                .connect(host: host, port: port).get()
        } catch {
            if error is NIOSSLError || error is NIOSSLExtraError || error is BoringSSLError {
                throw RedisChannelHandler.tlsError(error, settings: settings)
            }
            throw RedisError(kind: .connect, message: "\(label): cannot connect (\(describeConnectError(error)))")
        }
        let connection = RedisConnection(
            channel: channel, address: HostPort(host: host, port: port).description,
            settings: settings)
        do {
            try await connection.setUp(
                database: database, username: username, password: password,
                requireMaster: requireMaster)
        } catch {
            channel.close(promise: nil)
            throw error
        }
        return connection
    }

    private typealias HostPort = RedisEndpoint.HostPort

    private func setUp(database: Int, username: String?, password: String?, requireMaster: Bool)
        async throws(RedisError)
    {
        var commands: [RedisCommand] = []
        if let password {
            commands.append(RedisCommand("AUTH", username.map { [$0, password] } ?? [password]))
        }
        if database != 0 { commands.append(RedisCommand("SELECT", [String(database)])) }
        if requireMaster { commands.append(RedisCommand("ROLE", [])) }
        commands.append(RedisCommand("PING", []))
        let label = settings.label
        let replies: [RESPValue]
        do {
            replies = try await send(commands)
        } catch {
            // The server hung up while being set up: that is a failed connection, not a failed call.
            if error.kind == .closed { throw RedisError(kind: .connect, message: error.message) }
            throw error
        }
        var index = 0
        if password != nil {
            if let message = replies[index].errorMessage {
                throw RedisError(kind: .authentication, message: "\(label): authentication failed (\(message))")
            }
            index += 1
        }
        if database != 0 {
            if let message = replies[index].errorMessage {
                if message.hasPrefix("NOAUTH") {
                    throw Self.noAuth(label: label, message, passwordSet: password != nil)
                }
                throw RedisError(kind: .server, message: "\(label): SELECT \(database) failed (\(message))")
            }
            index += 1
        }
        if requireMaster {
            if let message = replies[index].errorMessage {
                if message.hasPrefix("NOAUTH") {
                    throw Self.noAuth(label: label, message, passwordSet: password != nil)
                }
                throw RedisError(kind: .sentinel, message: "\(label): ROLE failed (\(message))")
            }
            let role = replies[index].array?.first?.string ?? "?"
            guard role == "master" else {
                throw RedisError(
                    kind: .sentinel,
                    message: "\(label): the sentinels named it as master but ROLE says \(role); will ask them again")
            }
            index += 1
        }
        if let message = replies[index].errorMessage {
            if message.hasPrefix("NOAUTH") { throw Self.noAuth(label: label, message, passwordSet: password != nil) }
            throw RedisError(kind: .server, message: "\(label): PING failed (\(message))")
        }
    }

    static func noAuth(label: String, _ message: String, passwordSet: Bool) -> RedisError {
        RedisError(
            kind: .authentication,
            message: passwordSet
                ? "\(label): the server refused the connection's credentials (\(message))"
                : "\(label): the server requires a password; set redis.password (\(message))")
    }

    /// Writes the commands as one write and waits for all their replies.
    func send(_ commands: [RedisCommand]) async throws(RedisError) -> [RESPValue] {
        var buffer = channel.allocator.buffer(capacity: 64 * commands.count)
        for command in commands { command.encode(into: &buffer) }
        let promise = channel.eventLoop.makePromise(of: [RESPValue].self)
        let settings = self.settings
        channel.writeAndFlush(RedisRequest(bytes: buffer, count: commands.count, promise: promise)).whenFailure {
            error in
            promise.fail(RedisChannelHandler.map(error, settings: settings))
        }
        do {
            return try await promise.futureResult.get()
        } catch {
            throw RedisChannelHandler.map(error, settings: settings)
        }
    }

    func close() async {
        try? await channel.close()
    }

    private static func isIPAddress(_ name: String) -> Bool {
        (try? SocketAddress(ipAddress: name, port: 0)) != nil
    }

    private static func describeConnectError(_ error: any Error) -> String {
        if let channelError = error as? ChannelError, case .connectTimeout(let amount) = channelError {
            return "timed out after \(RedisChannelHandler.describe(amount))"
        }
        if let connectError = error as? NIOConnectionError {
            let reasons = connectError.connectionErrors.map { "\($0.target): \($0.error)" }
            if !reasons.isEmpty { return reasons.joined(separator: "; ") }
            if connectError.dnsAError != nil || connectError.dnsAAAAError != nil { return "cannot resolve the host" }
        }
        return "\(error)"
    }
}
