public import BudgetStore
import BudgetWire
import DaemonKit
import Foundation
public import Logging
import NIOCore
import NIOPosix
import Systemd

/// budget-controld from start to stop: open the store, bind (or adopt) the two sockets, serve, and on
/// SIGTERM stop accepting, write pending usage and return.
public struct ControlPlaneDaemon: Sendable {
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

    public var options: Options
    public let logger: Logger

    public init(options: Options, logger: Logger) {
        self.options = options
        self.logger = logger
    }

    /// Runs until `stop` returns (normally a signal). Start-up problems are thrown with a clear message.
    public func run(until stop: @Sendable () async -> String) async throws {
        let store = try BudgetStore.open(stateDirectory: options.stateDirectory, synchronous: options.synchronous)
        let core = try ControlPlaneCore(store: store, reservationLifetime: options.reservationLifetime, logger: logger)
        let control: UnixListener.Bound
        if let descriptor = options.inherited["control"]?.first {
            control = UnixListener.Bound(descriptor: descriptor, path: options.controlSocket, isInherited: true)
        } else {
            control = try UnixListener.bind(path: options.controlSocket, mode: 0o600)
        }
        let admin: UnixListener.Bound
        do {
            if let descriptor = options.inherited["admin"]?.first {
                admin = UnixListener.Bound(descriptor: descriptor, path: options.adminSocket, isInherited: true)
            } else {
                admin = try UnixListener.bind(
                    path: options.adminSocket, mode: options.adminGroup == nil ? 0o600 : 0o660,
                    group: options.adminGroup)
            }
        } catch {
            if !control.isInherited {
                close(control.descriptor)
                unlink(control.path)
            }
            throw error
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let controlServer = try await ControlSocketServer.serve(
            listener: control, role: .dataPlane, core: core, group: group, peerPolicy: nil, dataPlaneCount: { 0 },
            peerTimeout: .seconds(Int64(options.peerTimeoutSeconds)), logger: logger)
        let adminServer = try await ControlSocketServer.serve(
            listener: admin, role: .admin, core: core, group: group,
            peerPolicy: .init(allowedUser: UInt32(geteuid()), adminGroup: options.adminGroup),
            dataPlaneCount: { controlServer.connections }, peerTimeout: .seconds(Int64(options.peerTimeoutSeconds)),
            logger: logger)
        let watchdog = Systemd.startWatchdog(on: group.next())
        Systemd.ready(status: "serving config version \(await core.configVersion)")
        logger.notice(
            "ready",
            metadata: [
                "control_socket": "\(options.controlSocket)", "admin_socket": "\(options.adminSocket)",
                "state_dir": "\(options.stateDirectory)", "version": "\(ControlPlaneVersion.current)",
            ])
        let reason = await stop()
        logger.notice("stopping", metadata: ["signal": "\(reason)"])
        Systemd.stopping()
        watchdog?.cancel()
        await adminServer.close()
        await controlServer.close()
        await core.drain()
        for listener in [control, admin] where !listener.isInherited { unlink(listener.path) }
        try? await group.shutdownGracefully()
        logger.notice("stopped")
    }
}
