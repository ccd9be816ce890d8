import BudgetConfig
import BudgetLedger
import BudgetRedis
public import BudgetStore
import BudgetWire
public import DaemonKit
import Foundation
public import Logging
import NIOCore
import NIOPosix
public import ServiceLifecycle
public import UnixSignals

/// budget-controld from start to stop: open the store, bind (or adopt) the two sockets, and run a service
/// group (usage writer, control listener, admin listener, systemd notifier) until SIGTERM or SIGINT; then
/// shut the services down in reverse order: stop accepting, finish the work received, write pending usage.
public struct ControlPlaneDaemon: ServiceLifecycle.Service {
    /// What `budget-controld`'s flags say.
    public struct Options: Sendable {
        public var stateDirectory: String
        public var controlSocket: String
        public var adminSocket: String
        public var adminGroup: UInt32?
        public var synchronous: BudgetStore.Synchronous
        public var reservationLifetime: Int64
        /// Sockets handed over by systemd, by `FileDescriptorName=` (`control`, `admin`); bound from the
        /// paths above when absent.
        public var inherited: [String: [Int32]]
        /// Seconds a peer may take to finish a frame it started or to read what it is sent (hello: at most 10).
        public var peerTimeoutSeconds = 30
        /// How long a graceful shutdown may take before the remaining services are cancelled.
        public var shutdownLimit: Duration = .seconds(30)
        /// This node's name in a fleet (`budgetctl status`); default: the host name.
        public var nodeName: String = ProcessInfo.processInfo.hostName
        /// What `strategy: redis` budgets do while the fleet's Redis is away (`--on-redis-loss`).
        public var redisLossPolicy: String = RedisLossPolicy.failClosed.rawValue
        /// CA certificates for Redis TLS with `ssl_verify` (`--redis-ca-file`).
        public var redisCAFile: String?
        /// Where `GET /metrics` is served (`--metrics-listen`); nil: nowhere.
        public var metricsListen: ListenAddress?

        public init(
            stateDirectory: String, controlSocket: String, adminSocket: String, adminGroup: UInt32?,
            synchronous: BudgetStore.Synchronous, reservationLifetime: Int64, inherited: [String: [Int32]] = [:]
        ) {
            self.inherited = inherited
            self.stateDirectory = stateDirectory
            self.controlSocket = controlSocket
            self.adminSocket = adminSocket
            self.adminGroup = adminGroup
            self.synchronous = synchronous
            self.reservationLifetime = reservationLifetime
        }
    }

    /// The daemon started but did not stop cleanly (a service failed, or the drain ran over its limit).
    public struct RunError: Error, CustomStringConvertible {
        public var description: String
    }

    public var options: Options
    public let logger: Logger
    /// Signals that start a graceful shutdown; empty when the daemon runs inside a caller's `ServiceGroup`
    /// (tests, benchmarks), whose graceful shutdown it follows.
    public let signals: [UnixSignal]

    public init(options: Options, logger: Logger, signals: [UnixSignal] = [.sigterm, .sigint]) {
        self.options = options
        self.logger = logger
        self.signals = signals
    }

    /// Runs until a signal (or the enclosing group's graceful shutdown), then shuts down gracefully.
    /// - Throws: start-up problems with a clear message; `RunError` if it did not stop cleanly.
    public func run() async throws {
        // A peer that hangs up must not kill the daemon with SIGPIPE; the service group handles TERM and INT.
        IgnoredSignals.sigpipe()
        let store = try BudgetStore.open(stateDirectory: options.stateDirectory, synchronous: options.synchronous)
        let loaded = try store.loadConfig()
        let budgets = try BudgetDesk(
            store: store, reservationLifetime: options.reservationLifetime, config: loaded.state)
        let board = SnapshotBoard(version: loaded.version, state: loaded.state)
        guard let lossPolicy = RedisLossPolicy(rawValue: options.redisLossPolicy) else {
            throw RunError(
                description: "--on-redis-loss must be one of "
                    + RedisLossPolicy.allCases.map(\.rawValue).joined(separator: ", ") + ", not \(options.redisLossPolicy)")
        }
        let eventLoops = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let fleet = FleetMember(
            settings: .init(
                nodeName: options.nodeName, nodeID: try store.nodeID(), lossPolicy: lossPolicy,
                caFile: options.redisCAFile),
            budgets: budgets, group: eventLoops, logger: logger)
        let admin = AdminDesk(loaded: loaded, store: store, budgets: budgets, board: board, fleet: fleet, logger: logger)
        fleet.attach(admin)
        fleet.configure(for: loaded.state, version: loaded.version, syncedHere: false)
        logger.info(
            "store loaded",
            metadata: [
                "path": "\(store.path)", "config_version": "\(loaded.version)", "entities": "\(loaded.state.count)",
                "counters": "\(budgets.withLedger { $0.counters.count })",
            ])
        let control: UnixListener.Bound
        let adminSocket: UnixListener.Bound
        do {
            (control, adminSocket) = try bindSockets()
        } catch {
            try? await eventLoops.shutdownGracefully()
            throw error
        }
        do {
            try await serve(
                control: control, admin: adminSocket, eventLoops: eventLoops, budgets: budgets, desk: admin,
                board: board, fleet: fleet, loaded: loaded.version)
        } catch {
            await fleet.shared?.client.close()
            try? await eventLoops.shutdownGracefully()
            throw error
        }
        await fleet.shared?.client.close()
        try? await eventLoops.shutdownGracefully()
        logger.notice("stopped")
    }

    /// Listens on both sockets and runs the service group until it has shut down.
    private func serve(
        control: UnixListener.Bound, admin adminSocket: UnixListener.Bound, eventLoops: MultiThreadedEventLoopGroup,
        budgets: BudgetDesk, desk admin: AdminDesk, board: SnapshotBoard, fleet: FleetMember, loaded version: UInt64
    ) async throws {
        var context = ControlListener.Context(
            role: .dataPlane, budgets: budgets, admin: admin, board: board, peerPolicy: nil, dataPlaneCount: { 0 },
            peerTimeout: .seconds(Int64(options.peerTimeoutSeconds)), logger: logger)
        let controlListener = try await ControlListener.listen(on: control, group: eventLoops, context: context)
        context.role = .admin
        context.peerPolicy = .init(allowedUser: UInt32(geteuid()), adminGroup: options.adminGroup)
        context.dataPlaneCount = { controlListener.connections }
        let adminListener = try await ControlListener.listen(on: adminSocket, group: eventLoops, context: context)
        var metrics: MetricsListener?
        if let address = options.metricsListen {
            let listener = try await MetricsListener.bind(
                address, group: eventLoops, budgets: budgets, fleet: fleet, board: board,
                dataPlanes: { controlListener.connections })
            logger.notice("metrics on http://\(listener.boundAddress)/metrics")
            metrics = listener
        }
        let notifier = SystemdNotifier(
            status: "serving config version \(version)",
            readyMetadata: [
                "control_socket": "\(options.controlSocket)", "admin_socket": "\(options.adminSocket)",
                "state_dir": "\(options.stateDirectory)", "version": "\(GatewayVersion.current)",
            ],
            logger: logger)
        // Shut down in reverse: the notifier says "stopping", the listeners stop and finish their work, and
        // the usage writer writes what is left.
        var configuration = ServiceGroupConfiguration(
            services: [
                .init(service: UsageWriter(desk: budgets, logger: logger)),
                .init(service: LedgerClock(eventLoop: eventLoops.next(), desk: budgets)),
                .init(service: FleetService(member: fleet)),
                .init(service: controlListener),
                .init(service: adminListener),
                .init(service: WatchdogService(eventLoop: eventLoops.next()), successTerminationBehavior: .ignore),
                .init(service: notifier),
            ],
            gracefulShutdownSignals: signals,
            logger: logger)
        if let metrics { configuration.services.append(.init(service: metrics)) }
        configuration.maximumGracefulShutdownDuration = options.shutdownLimit
        let group = ServiceGroup(configuration: configuration)
        do {
            try await group.run()
        } catch {
            throw RunError(description: "\(error)")
        }
    }

    /// The control and admin sockets, inherited from systemd or bound here.
    private func bindSockets() throws -> (control: UnixListener.Bound, admin: UnixListener.Bound) {
        let control: UnixListener.Bound
        if let descriptor = options.inherited["control"]?.first {
            control = UnixListener.Bound(descriptor: descriptor, path: options.controlSocket, isInherited: true)
        } else {
            control = try UnixListener.bind(path: options.controlSocket, mode: 0o600)
        }
        do {
            if let descriptor = options.inherited["admin"]?.first {
                let admin = UnixListener.Bound(descriptor: descriptor, path: options.adminSocket, isInherited: true)
                return (control, admin)
            }
            return (
                control,
                try UnixListener.bind(
                    path: options.adminSocket, mode: options.adminGroup == nil ? 0o600 : 0o660,
                    group: options.adminGroup)
            )
        } catch {
            if !control.isInherited {
                close(control.descriptor)
                unlink(control.path)
            }
            throw error
        }
    }
}
