public import ArgumentParser
public import BudgetStore
import ControlPlane
import DaemonKit
import Logging
import Systemd

/// `budget-controld`: argument parsing and start-up only; the daemon is `ControlPlaneDaemon`.
@main
struct BudgetControld: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "budget-controld",
        abstract: "The token-budget gateway's control plane: config and counters, durably, over Unix sockets.",
        discussion: """
            Keeps the declarative config and the usage counters in SQLite under --state-dir, serves data \
            planes (budget-proxyd) on the control socket and budgetctl on the admin socket. The admin socket \
            is mode 0600 (0660 with --admin-group) and the peer is checked with the kernel's credentials for \
            the connection (SO_PEERCRED, and SO_PEERGROUPS for --admin-group), not with /proc.

            Budgets of plugins with strategy: redis live in the Redis their config names, shared by every \
            node whose config names it; a sync on one node reaches the others through it. See "Running \
            several nodes" in budget-controld(8).

            SIGTERM or SIGINT: stop accepting, write pending usage, exit 0. See budget-controld(8).
            """,
        version: GatewayVersion.current
    )

    @Option(help: ArgumentHelp("Directory of the store (must exist).", valueName: "dir"))
    var stateDir: String

    @Option(help: ArgumentHelp("Socket for data planes.", valueName: "path"))
    var controlSocket = "/run/budget/control.sock"

    @Option(help: ArgumentHelp("Socket for budgetctl.", valueName: "path"))
    var adminSocket = "/run/budget/admin.sock"

    @Option(
        help: ArgumentHelp(
            "Group (name or id) also allowed on the admin socket, as primary or supplementary group.",
            valueName: "group"))
    var adminGroup: String?

    @Option(
        help: ArgumentHelp(
            "SQLite synchronous mode: normal (survives kill -9) or full (survives power loss).",
            valueName: "mode"))
    var synchronous: BudgetStore.Synchronous = .normal

    @Option(help: ArgumentHelp("Seconds a reservation lives without a commit or release.", valueName: "seconds"))
    var reservationTtl = 600

    @Option(help: ArgumentHelp("Seconds a client may take to finish a frame or to read a reply.", valueName: "seconds"))
    var peerTimeout = 30

    @Option(
        help: ArgumentHelp(
            "This node's name in a fleet sharing Redis (budgetctl status). Default: the host name.",
            valueName: "name"))
    var nodeName: String?

    @Option(
        help: ArgumentHelp(
            "While the fleet's Redis is away, strategy redis budgets: fail-closed (503) or count-locally (each node "
                + "counts alone; usage reaches Redis when it is back).",
            valueName: "policy"))
    var onRedisLoss = "fail-closed"

    @Option(
        help: ArgumentHelp("CA certificates (PEM) to verify Redis with when ssl_verify is true.", valueName: "file"))
    var redisCaFile: String?

    @Option(
        help: ArgumentHelp(
            "Serve GET /metrics (Prometheus text) on HOST:PORT: config version, data planes, holds, the fleet's Redis.",
            valueName: "host:port"))
    var metricsListen: ListenAddress?

    @OptionGroup var logging: LoggingOptions

    func validate() throws {
        guard (1...3600).contains(peerTimeout) else { throw ValidationError("--peer-timeout: 1 to 3600") }
        guard (10...86_400).contains(reservationTtl) else { throw ValidationError("--reservation-ttl: 10 to 86400") }
        guard ["fail-closed", "count-locally"].contains(onRedisLoss) else {
            throw ValidationError("--on-redis-loss: fail-closed or count-locally, not '\(onRedisLoss)'")
        }
        if let nodeName, nodeName.isEmpty || nodeName.count > 128 || nodeName.contains(where: \.isNewline) {
            throw ValidationError("--node-name: 1 to 128 characters on one line")
        }
        if let adminGroup, UnixListener.groupID(adminGroup) == nil {
            throw ValidationError("--admin-group: no group named '\(adminGroup)'")
        }
    }

    func run() async throws {
        let logger = logging.bootstrap(label: "budget-controld")
        var daemon = ControlPlaneDaemon(
            options: .init(
                stateDirectory: stateDir, controlSocket: controlSocket, adminSocket: adminSocket,
                adminGroup: adminGroup.flatMap(UnixListener.groupID),
                synchronous: synchronous,
                reservationLifetime: Int64(reservationTtl), inherited: Systemd.listeners()),
            logger: logger)
        daemon.options.peerTimeoutSeconds = peerTimeout
        if let nodeName { daemon.options.nodeName = nodeName }
        daemon.options.redisLossPolicy = onRedisLoss
        daemon.options.redisCAFile = redisCaFile
        daemon.options.metricsListen = metricsListen
        do {
            try await daemon.run()
        } catch let error as ControlPlaneDaemon.RunError {
            logger.critical("stopped with an error: \(error)")
            throw ExitCode.failure
        } catch {
            logger.critical("cannot start: \(error)")
            throw ExitCode.failure
        }
    }
}

extension BudgetStore.Synchronous: ExpressibleByArgument {}
