public import DaemonKit
import Foundation
public import Logging
import NIOCore
public import NIOPosix
public import ServiceLifecycle
public import UnixSignals
import Systemd

/// budget-proxyd: a `ServiceGroup` of the control link, the watchdog and the listeners. The listeners start
/// once the first config snapshot has arrived; on SIGTERM or SIGINT they stop accepting and let requests in
/// flight finish (`HTTPLimits.drainTimeout`), then the link delivers pending usage
/// (`ControlLink.shutdownFlushTimeout`) and the daemon exits 0.
public struct ProxyDaemon: ServiceLifecycle.Service {
    /// What the flags set.
    public struct Options: Sendable {
        public var listen: [ListenAddress]
        public var statusListen: ListenAddress?
        public var controlSocket: String
        public var lossPolicy: ControlPlaneLossPolicy
        public var limits: HTTPLimits
        public var controlTimeout: Duration
        /// The AWS settings (`AWS_REGION`, credentials, `AWS_ENDPOINT_URL_BEDROCK_RUNTIME`) plugins leave out.
        public var environment: [String: String]
        /// Sockets handed over by systemd, by `FileDescriptorName=`: `http` (any number) and `status`.
        public var inherited: [String: [Int32]]
        /// Event-loop threads: requests, the upstream client and the control connection share them.
        public var threads: Int
        /// Where usage not yet acknowledged by the control plane is spooled (`pending-usage.spool`); nil keeps
        /// it in memory only.
        public var stateDirectory: String?
        /// The event loops to run on, when the caller owns them (budget-proxyd passes NIO's singleton group, which
        /// it installed as Swift Concurrency's executor); nil: a group of `threads` made and shut down here.
        public var eventLoopGroup: MultiThreadedEventLoopGroup?

        public init(
            listen: [ListenAddress], statusListen: ListenAddress?, controlSocket: String,
            lossPolicy: ControlPlaneLossPolicy, limits: HTTPLimits, controlTimeout: Duration,
            environment: [String: String], inherited: [String: [Int32]] = [:], threads: Int = 1,
            stateDirectory: String? = nil, eventLoopGroup: MultiThreadedEventLoopGroup? = nil
        ) {
            self.eventLoopGroup = eventLoopGroup
            self.stateDirectory = stateDirectory
            self.inherited = inherited
            self.threads = threads
            self.listen = listen
            self.statusListen = statusListen
            self.controlSocket = controlSocket
            self.lossPolicy = lossPolicy
            self.limits = limits
            self.controlTimeout = controlTimeout
            self.environment = environment
        }
    }

    public let options: Options
    public let logger: Logger
    /// Signals that start a graceful shutdown; empty when the daemon runs inside a caller's `ServiceGroup`
    /// (tests), whose graceful shutdown it follows.
    public let signals: [UnixSignal]
    /// Receives `listening on ADDRESS` and `status on ADDRESS` once serving has begun.
    public let announce: @Sendable (String) -> Void

    public init(
        options: Options, logger: Logger, signals: [UnixSignal] = [.sigterm, .sigint],
        announce: @escaping @Sendable (String) -> Void
    ) {
        self.options = options
        self.logger = logger
        self.signals = signals
        self.announce = announce
    }

    /// Runs until a signal (or the enclosing group's graceful shutdown); start-up problems are thrown.
    public func run() async throws {
        let ownsGroup = options.eventLoopGroup == nil
        let group = options.eventLoopGroup ?? MultiThreadedEventLoopGroup(numberOfThreads: options.threads)
        let upstream: BedrockUpstream
        do {
            upstream = try BedrockUpstream(
                eventLoopGroup: group, caBundle: options.environment["AWS_CA_BUNDLE"].flatMap { $0.isEmpty ? nil : $0 })
        } catch {
            if ownsGroup { try? await group.shutdownGracefully() }
            throw error
        }
        let link = ControlLink(
            socketPath: options.controlSocket, callTimeout: options.controlTimeout, group: group,
            environment: options.environment, spoolDirectory: options.stateDirectory, logger: logger)
        let metrics = ProxyMetrics()
        let service = ProxyService(
            link: link, upstream: upstream,
            settings: .init(maxBodyBytes: options.limits.maxBodyBytes, lossPolicy: options.lossPolicy),
            metrics: metrics, logger: logger)
        let listeners = ProxyListeners(
            options: options, group: group, link: link,
            status: StatusEndpoint(link: link, service: service, metrics: metrics), service: service,
            announce: announce, logger: logger)
        // Graceful shutdown runs in reverse order: listeners drain first, the link delivers usage last.
        let services = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [
                    .init(service: link),
                    .init(service: WatchdogService(eventLoop: group.next()), successTerminationBehavior: .ignore),
                    .init(service: listeners),
                ],
                gracefulShutdownSignals: signals,
                logger: logger))
        do {
            try await services.run()
        } catch {
            await upstream.shutdown()
            if ownsGroup { try? await group.shutdownGracefully() }
            throw error
        }
        await upstream.shutdown()
        if ownsGroup { try? await group.shutdownGracefully() }
        logger.notice("stopped")
    }
}

/// The HTTP listener and the optional status listener, bound once the first snapshot has arrived.
struct ProxyListeners: ServiceLifecycle.Service {
    let options: ProxyDaemon.Options
    let group: any EventLoopGroup
    let link: ControlLink
    let status: StatusEndpoint
    let service: ProxyService
    let announce: @Sendable (String) -> Void
    let logger: Logger

    func run() async throws {
        let logger = self.logger
        let stopping: @Sendable () -> Void = {
            logger.notice("stopping")
            Systemd.stopping()
        }
        if link.tables == nil {
            logger.notice(
                "waiting for the first config snapshot", metadata: ["control_socket": "\(options.controlSocket)"])
        }
        let snapshot = await withGracefulShutdownHandler {
            await cancelWhenGracefulShutdown { [link] in await link.waitForFirstSnapshot() }
        } onGracefulShutdown: {
            stopping()
        }
        guard snapshot, !Task.isShuttingDownGracefully else { return }

        let http = try await ProxyHTTPServer.bind(
            addresses: options.listen, inherited: options.inherited["http"] ?? [], group: group,
            limits: options.limits, refusals: { [service] in service.refusal(method: $0, path: $1, status: $2, message: $3) })
        var statusServer: ProxyHTTPServer?
        let inheritedStatus = options.inherited["status"] ?? []
        if options.statusListen != nil || !inheritedStatus.isEmpty {
            var statusLimits = HTTPLimits()
            statusLimits.drainTimeout = .seconds(1)
            statusServer = try await ProxyHTTPServer.bind(
                addresses: options.statusListen.map { [$0] } ?? [], inherited: inheritedStatus, group: group,
                limits: statusLimits)
        }
        for address in http.boundAddresses { announce("listening on \(address)") }
        for address in statusServer?.boundAddresses ?? [] { announce("status on \(address)") }
        let version = link.tables?.version ?? 0
        Systemd.ready(status: "serving config version \(version)")
        logger.notice("ready", metadata: ["listen": "\(http.boundAddresses)", "config_version": "\(version)"])

        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                group.addTask { [service] in await http.serve { await service.handle($0, sink: $1) } }
                if let statusServer {
                    group.addTask { [status] in await statusServer.serve { await status.handle($0, sink: $1) } }
                }
            }
        } onGracefulShutdown: {
            stopping()
        }
    }
}
