import BudgetJSON
import DaemonKit

/// The status listener's answers: `GET /status` (JSON) and `GET /metrics` (Prometheus text).
struct StatusEndpoint: Sendable {
    let link: ControlLink
    let service: ProxyService
    let metrics: ProxyMetrics

    func handle(_ request: ProxyRequest, sink: any ResponseSink) async {
        switch (request.method, request.path) {
        case ("GET", "/status"):
            let body = JSONValue.object([
                "config_version": .int(Int(link.tables?.version ?? 0)),
                "control_plane": .string(link.isConnected ? "connected" : "disconnected"),
                "requests_in_flight": .int(service.requestsInFlight),
                "pending_commits": .int(link.pendingCommits),
                "held_leases": .int(link.heldLeases),
                "upstream_connections": .int(service.upstream.client.openConnections),
                "upstream_idle": .int(service.upstream.client.idleConnections),
                "version": .string(GatewayVersion.current),
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
