import BudgetLedger
import BudgetRedis
import DaemonKit
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle

/// `--metrics-listen`: `GET /metrics` in Prometheus' text format, for the control plane's own state and the
/// fleet's Redis (whether it answers, and the seconds and units spent counting locally without it). A handful
/// of gauges read on each scrape, so the exposition is written here rather than through a registry.
struct MetricsListener: ServiceLifecycle.Service {
    let channel: any Channel

    /// Binds `address` (TCP) and serves until graceful shutdown.
    static func bind(
        _ address: ListenAddress, group: any EventLoopGroup, budgets: BudgetDesk, fleet: FleetMember,
        board: SnapshotBoard, dataPlanes: @escaping @Sendable () -> Int
    ) async throws -> MetricsListener {
        guard case .tcp(let host, let port) = address else {
            throw ControlPlaneDaemon.RunError(description: "--metrics-listen takes HOST:PORT, not \(address)")
        }
        let source = Source(budgets: budgets, fleet: fleet, board: board, dataPlanes: dataPlanes)
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(MetricsHandler(source: source))
                }
            }
            .bind(host: host, port: port).get()
        return MetricsListener(channel: channel)
    }

    /// `host:port` actually bound (port 0 picks a free one).
    var boundAddress: String {
        guard let address = channel.localAddress else { return "?" }
        return "\(address.ipAddress ?? "?"):\(address.port ?? 0)"
    }

    func run() async throws {
        try? await gracefulShutdown()
        try? await channel.close()
    }

    /// What a scrape reads.
    struct Source: Sendable {
        let budgets: BudgetDesk
        let fleet: FleetMember
        let board: SnapshotBoard
        let dataPlanes: @Sendable () -> Int

        func exposition() -> String {
            var out = ""
            func gauge(_ name: String, _ help: String, _ value: Double, counter: Bool = false) {
                out += "# HELP budget_controld_\(name) \(help)\n# TYPE budget_controld_\(name) \(counter ? "counter" : "gauge")\n"
                out += "budget_controld_\(name) \(value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value))\n"
            }
            let (counters, reservations) = budgets.withLedger { ($0.counters.count, $0.reservations.count) }
            gauge("config_version", "The config version in force.", Double(board.version))
            gauge("data_planes", "Data planes connected.", Double(dataPlanes()))
            gauge("counters", "Counters in this node's ledger.", Double(counters))
            gauge("reservations", "Holds of requests in flight in this node's ledger.", Double(reservations))
            if let shared = fleet.shared {
                let loss = shared.loss
                gauge(
                    "redis_up", "1 while the fleet's Redis answers, 0 while it cannot be reached.",
                    loss.away || !shared.client.health.connected ? 0 : 1)
                gauge(
                    "redis_losses_total", "Times the fleet's Redis could not be reached.", Double(loss.episodes),
                    counter: true)
                gauge(
                    "redis_fallback_seconds_total", "Seconds spent without the fleet's Redis.", loss.seconds,
                    counter: true)
                gauge(
                    "redis_fallback_units_total",
                    "Units (tokens, or dollars) counted on this node alone while Redis was away (count-locally).",
                    loss.units, counter: true)
                gauge("fleet_config_version", "The fleet config version this node has.", Double(fleet.fleetVersion))
            }
            return out
        }
    }
}

/// Answers `GET /metrics`; anything else is a 404.
final class MetricsHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let source: MetricsListener.Source

    init(source: MetricsListener.Source) { self.source = source }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(let head) = unwrapInboundIn(data) else { return }
        let found = head.method == .GET && head.uri.split(separator: "?").first == "/metrics"
        let body = found ? source.exposition() : "not found: GET /metrics\n"
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: found ? "text/plain; version=0.0.4" : "text/plain")
        headers.add(name: "Content-Length", value: String(body.utf8.count))
        headers.add(name: "Connection", value: "close")
        context.write(
            wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: found ? .ok : .notFound, headers: headers))),
            promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: body)))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }
}
