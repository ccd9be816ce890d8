public import ArgumentParser
import DaemonKit
import DataPlane
import Foundation
import Logging
import NIOCore
import NIOPosix
import Systemd

/// `budget-proxyd`: argument parsing and start-up only; the daemon is `ProxyDaemon`.
struct BudgetProxyd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "budget-proxyd",
        abstract: "The token-budget gateway's data plane: OpenAI chat in, Bedrock out, budgets enforced.",
        discussion: """
            Takes its config from budget-controld over the control socket and starts listening once the first \
            snapshot has arrived; it keeps serving with the last snapshot if the control plane goes away. \
            Credentials for Bedrock come from the ai-proxy plugin, else AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY \
            and AWS_SESSION_TOKEN; AWS_ENDPOINT_URL_BEDROCK_RUNTIME overrides the endpoint, AWS_CA_BUNDLE the \
            certificate authorities trusted for it. Prints \
            "listening on ADDRESS" for each listener.

            SIGTERM or SIGINT: stop accepting, let requests in flight finish (at most --drain-timeout, then \
            they are cancelled), deliver pending usage (at most 5 s), exit 0. See budget-proxyd(8).
            """,
        version: GatewayVersion.current
    )

    @Option(
        help: ArgumentHelp(
            "Address to serve: HOST:PORT (port 0 picks one) or unix:/path. Repeatable (default 0.0.0.0:8000).",
            valueName: "address"))
    var listen: [ListenAddress] = []

    @Option(help: ArgumentHelp("budget-controld's control socket.", valueName: "path"))
    var controlSocket = "/run/budget/control.sock"

    @Option(help: ArgumentHelp("Address of the status listener (GET /status, GET /metrics).", valueName: "host:port"))
    var statusListen: ListenAddress?

    @Option(
        help: ArgumentHelp(
            "When the control plane cannot be asked: fail-closed (503) or fail-open (forward, charge later).",
            valueName: "policy"))
    var onControlPlaneLoss: ControlPlaneLossPolicy = .failClosed

    @Option(help: ArgumentHelp("Largest request body in bytes, up to 20000000 (default 8 MiB).", valueName: "bytes"))
    var maxBodyBytes = 8 << 20

    @Option(help: ArgumentHelp("Most open client connections.", valueName: "n"))
    var maxConnections = 4096

    @Option(
        help: ArgumentHelp(
            "Seconds a keep-alive connection may stay idle between requests.", valueName: "seconds"))
    var idleTimeout = 60

    @Option(
        help: ArgumentHelp(
            "Seconds a request's head may take to arrive whole (from the connection's opening for its first request, "
                + "else from its first byte; then 408), and then its body (from the head).",
            valueName: "seconds"))
    var readTimeout = 30

    @Option(
        help: ArgumentHelp(
            "Seconds a client may leave an answer unread before it is disconnected.",
            valueName: "seconds"))
    var writeTimeout = 30

    @Option(
        help: ArgumentHelp(
            "Seconds a stop (SIGTERM, SIGINT) waits for requests in flight before it cancels them.",
            valueName: "seconds"))
    var drainTimeout = 30

    @Option(
        help: ArgumentHelp("Milliseconds to wait for a reservation before the loss policy applies.", valueName: "ms"))
    var controlTimeoutMs = 2000

    @Option(
        help: ArgumentHelp(
            "Event-loop threads, 1 to 256 (default: the CPUs the process may run on, as taskset or CPUAffinity= set).",
            valueName: "n"))
    var threads: Int?

    @Option(
        help: ArgumentHelp(
            "Directory for usage not yet acknowledged by the control plane (pending-usage.spool), kept across "
                + "stops and crashes (default: $STATE_DIRECTORY, which systemd's StateDirectory= sets; without "
                + "either, pending usage is kept in memory only).",
            valueName: "path"))
    var stateDirectory: String?

    @OptionGroup var logging: LoggingOptions

    /// `--state-directory`, else systemd's `$STATE_DIRECTORY` (its first entry).
    var spoolDirectory: String? {
        if let stateDirectory { return stateDirectory }
        let fromSystemd = ProcessInfo.processInfo.environment["STATE_DIRECTORY"]?.split(separator: ":").first
        return fromSystemd.map(String.init)
    }

    func validate() throws {
        guard (1024...20_000_000).contains(maxBodyBytes) else {
            throw ValidationError("--max-body-bytes: 1024 to 20000000")
        }
        guard (1...1_000_000).contains(maxConnections) else { throw ValidationError("--max-connections: 1 to 1000000") }
        guard (1...3600).contains(idleTimeout) else { throw ValidationError("--idle-timeout: 1 to 3600") }
        if let threads, !(1...256).contains(threads) { throw ValidationError("--threads: 1 to 256") }
        guard (1...600).contains(readTimeout) else { throw ValidationError("--read-timeout: 1 to 600") }
        guard (1...3600).contains(writeTimeout) else { throw ValidationError("--write-timeout: 1 to 3600") }
        guard (1...3600).contains(drainTimeout) else { throw ValidationError("--drain-timeout: 1 to 3600") }
        guard (10...60_000).contains(controlTimeoutMs) else {
            throw ValidationError("--control-timeout-ms: 10 to 60000")
        }
        if let directory = spoolDirectory {
            var isDirectory: ObjCBool = false
            // A file is made and removed: access(2) says yes to root on a read-only or pseudo file system.
            let probe = (directory as NSString).appendingPathComponent(".budget-proxyd-probe-\(getpid())")
            guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue,
                FileManager.default.createFile(atPath: probe, contents: Data("probe".utf8)), unlink(probe) == 0
            else {
                throw ValidationError("--state-directory: '\(directory)' is not a writable directory")
            }
        }
    }

    func run() async throws {
        let logger = logging.bootstrap(label: "budget-proxyd")
        var limits = HTTPLimits()
        limits.maxBodyBytes = maxBodyBytes
        limits.maxConnections = maxConnections
        limits.idleTimeoutSeconds = idleTimeout
        limits.readTimeoutSeconds = readTimeout
        limits.drainTimeout = .seconds(drainTimeout)
        limits.writeTimeoutSeconds = writeTimeout
        let daemon = ProxyDaemon(
            options: .init(
                listen: listen.isEmpty ? [.tcp(host: "0.0.0.0", port: 8000)] : listen, statusListen: statusListen,
                controlSocket: controlSocket, lossPolicy: onControlPlaneLoss, limits: limits,
                controlTimeout: .milliseconds(controlTimeoutMs), environment: ProcessInfo.processInfo.environment,
                inherited: Systemd.listeners(), threads: threads ?? CPUs.available, stateDirectory: spoolDirectory,
                eventLoopGroup: Self.eventLoops),
            logger: logger
        ) { line in
            try? FileHandle.standardOutput.write(contentsOf: Data((line + "\n").utf8))
        }
        IgnoredSignals.sigpipe()
        do {
            try await daemon.run()
        } catch {
            logger.critical("cannot start: \(error)")
            throw ExitCode.failure
        }
    }
}

extension ControlPlaneLossPolicy: ExpressibleByArgument {}

extension BudgetProxyd {
    /// The event loops everything runs on: NIO's singleton group, installed as Swift Concurrency's global
    /// executor by `main` (`EventLoopConcurrency`), so that a request's tasks run on the event loop that does its
    /// I/O instead of hopping between the concurrency pool and the loops (half the proxy's CPU samples were on the
    /// pool's threads, and a hop is a context switch on a single core). Nil when the takeover was refused: a
    /// group of its own then.
    nonisolated(unsafe) static var eventLoops: MultiThreadedEventLoopGroup?
}

/// The entry point: parses the flags, sizes NIO's singleton group to `--threads` and makes it the concurrency
/// executor before any task runs (it must happen on the main thread, once), then runs the command.
@main
enum BudgetProxydMain {
    static func main() async {
        let command: any ParsableCommand
        do {
            command = try BudgetProxyd.parseAsRoot()
        } catch {
            BudgetProxyd.exit(withError: error)
        }
        guard let proxyd = command as? BudgetProxyd else {
            do {
                var other = command
                try other.run()
                BudgetProxyd.exit()
            } catch {
                BudgetProxyd.exit(withError: error)
            }
        }
        NIOSingletons.groupLoopCountSuggestion = proxyd.threads ?? CPUs.available
        if EventLoopConcurrency.install() {
            BudgetProxyd.eventLoops = MultiThreadedEventLoopGroup.singleton
        }
        do {
            try await proxyd.run()
        } catch {
            BudgetProxyd.exit(withError: error)
        }
    }
}
