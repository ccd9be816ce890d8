import BudgetJSON
import DaemonKit
import Foundation
public import Logging
import NIOCore
import NIOPosix
import Systemd

/// budget-proxyd from start to stop: connect to the control plane, wait for the first snapshot, listen,
/// serve; on SIGTERM stop accepting, let requests in flight finish (at most 30 s), deliver pending usage.
public struct ProxyDaemon: Sendable {
    public struct Options: Sendable {
        public var listen: [ListenAddress]
        public var statusListen: ListenAddress?
        public var controlSocket: String
        public var lossPolicy: ControlPlaneLossPolicy
        public var limits: HTTPLimits
        public var controlTimeout: Duration
        public var environment: [String: String]
        /// Sockets handed over by systemd, by `FileDescriptorName=`: `http` (any number) and `status`.
        public var inherited: [String: [Int32]]
        /// Event-loop threads: requests, the upstream client and the control connection share them.
        public var threads: Int

        public init(
            listen: [ListenAddress], statusListen: ListenAddress?, controlSocket: String,
            lossPolicy: ControlPlaneLossPolicy, limits: HTTPLimits, controlTimeout: Duration,
            environment: [String: String], inherited: [String: [Int32]] = [:], threads: Int = 1
        ) {
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

    public init(options: Options, logger: Logger) {
        self.options = options
        self.logger = logger
    }

    /// Runs until `stop` returns. `announce` receives each bound address once serving has begun.
    public func run(announce: @Sendable (String) -> Void, until stop: @escaping @Sendable () async -> String)
        async throws
    {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: options.threads)
        let link = ControlLink(
            socketPath: options.controlSocket, callTimeout: options.controlTimeout, group: group, logger: logger)
        let linkTask = Task { await link.run() }
        let stopped = LockedCounter()
        let stopTask = Task {
            let reason = await stop()
            stopped.add(1)
            return reason
        }
        logger.notice("waiting for the first config snapshot", metadata: ["control_socket": "\(options.controlSocket)"])
        while link.tables == nil {
            if stopped.value > 0 {
                linkTask.cancel()
                try? await group.shutdownGracefully()
                return
            }
            try? await Task.sleep(for: .milliseconds(20))
        }
        let upstream = BedrockUpstream(eventLoopGroup: group)
        let metrics = ProxyMetrics()
        let service = ProxyService(
            link: link, upstream: upstream,
            settings: .init(
                maxBodyBytes: options.limits.maxBodyBytes, lossPolicy: options.lossPolicy,
                environment: options.environment),
            metrics: metrics, logger: logger)
        let server = try await ProxyHTTPServer.start(
            addresses: options.listen, inherited: options.inherited["http"] ?? [], group: group, limits: options.limits
        ) {
            request, sink in await service.handle(request, sink: sink)
        }
        var statusServer: ProxyHTTPServer?
        let inheritedStatus = options.inherited["status"] ?? []
        if options.statusListen != nil || !inheritedStatus.isEmpty {
            statusServer = try await ProxyHTTPServer.start(
                addresses: options.statusListen.map { [$0] } ?? [], inherited: inheritedStatus, group: group,
                limits: HTTPLimits()
            ) {
                request, sink in await Self.status(request, sink: sink, link: link, service: service, metrics: metrics)
            }
        }
        for address in server.boundAddresses { announce("listening on \(address)") }
        for address in statusServer?.boundAddresses ?? [] { announce("status on \(address)") }
        let watchdog = Systemd.startWatchdog(on: group.next())
        Systemd.ready(status: "serving config version \(link.tables?.version ?? 0)")
        logger.notice(
            "ready", metadata: ["listen": "\(server.boundAddresses)", "config_version": "\(link.tables?.version ?? 0)"])

        let reason = await stopTask.value
        logger.notice("stopping", metadata: ["signal": "\(reason)"])
        Systemd.stopping()
        watchdog?.cancel()
        await server.close()
        await statusServer?.close()
        let deadline = ContinuousClock.now + .seconds(30)
        while service.requestsInFlight > 0 && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        let commitDeadline = ContinuousClock.now + .seconds(5)
        while await link.pendingCommits() > 0 && link.isConnected && ContinuousClock.now < commitDeadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        linkTask.cancel()
        await upstream.shutdown()
        try? await group.shutdownGracefully()
        logger.notice("stopped")
    }

    /// The status listener: `GET /status` (JSON) and `GET /metrics` (Prometheus text).
    static func status(
        _ request: ProxyRequest, sink: any ResponseSink, link: ControlLink, service: ProxyService,
        metrics: ProxyMetrics
    ) async {
        switch (request.method, request.path) {
        case ("GET", "/status"):
            let body = JSONValue.object([
                "config_version": .int(Int(link.tables?.version ?? 0)),
                "control_plane": .string(link.isConnected ? "connected" : "disconnected"),
                "requests_in_flight": .int(service.requestsInFlight),
                "pending_commits": .int(await link.pendingCommits()),
                "version": .string(ProxyVersion.current),
            ])
            await sink.respond(status: 200, headers: [("Content-Type", "application/json")], body: body.serializedBytes)
        case ("GET", "/metrics"):
            await sink.respond(
                status: 200, headers: [("Content-Type", "text/plain; version=0.0.4")], body: metrics.exposition())
        default:
            await sink.respond(
                status: 404, headers: [("Content-Type", "application/json")],
                body: Array(#"{"message":"not found: GET /status or GET /metrics"}"#.utf8))
        }
    }
}
