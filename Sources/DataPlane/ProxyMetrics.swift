import Prometheus
import Synchronization

/// The proxy's Prometheus metrics (swift-prometheus), served on the status listener's `/metrics`.
final class ProxyMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()
    private let upstreamLatency: DurationHistogram
    private let overhead: DurationHistogram
    private let controlRoundTrip: DurationHistogram
    private static let latencyBuckets: [Duration] = [
        .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10),
        .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1),
        .seconds(2.5), .seconds(5), .seconds(10), .seconds(30), .seconds(60),
    ]

    init() {
        upstreamLatency = registry.makeDurationHistogram(
            descriptor: Self.name(
                "upstream_latency", unit: "seconds", "Time from sending a request to Bedrock to its last byte."),
            buckets: Self.latencyBuckets)
        overhead = registry.makeDurationHistogram(
            descriptor: Self.name(
                "overhead", unit: "seconds", "Time a request spends in the proxy itself (total minus upstream)."),
            buckets: Self.latencyBuckets)
        controlRoundTrip = registry.makeDurationHistogram(
            descriptor: Self.name(
                "control_plane_rtt", unit: "seconds", "Round trip of a reservation to budget-controld."),
            buckets: Self.latencyBuckets)
    }

    /// The counters of the two metrics every request touches, by their labels: the registry's own lookup
    /// (descriptor to name, labels to a key, under its lock) showed in profiles. As many entries as the
    /// registry has series of these metrics.
    private let requestCounters = CounterCache()
    private let tokenCounters = CounterCache()

    func request(route: String, consumer: String, status: Int) {
        let statusText = String(status)
        requestCounters.counter(route, consumer, statusText) {
            registry.makeCounter(
                descriptor: Self.name("requests", unit: "total", "Requests by route, consumer and status."),
                labels: [("route", route), ("consumer", consumer), ("status", statusText)])
        }.increment()
    }

    func tokens(consumer: String, group: String, provider: String, tokens: Int) {
        guard tokens > 0 else { return }
        tokenCounters.counter(consumer, group, provider) {
            registry.makeCounter(
                descriptor: Self.name("tokens_charged", unit: "total", "Tokens charged to budgets."),
                labels: [("consumer", consumer), ("group", group), ("provider", provider)])
        }.increment(by: Int64(tokens))
    }

    /// A charge estimated by the proxy (a stream that ended without Bedrock's usage: the client hung up, or the
    /// stream broke): the tokens charged are the prompt estimate and what was streamed.
    func estimatedCharge(consumer: String, group: String, tokens: Int) {
        registry.makeCounter(
            descriptor: Self.name(
                "estimated_charges", unit: "total",
                "Charges estimated by the proxy because Bedrock's usage never arrived (hang-ups, broken streams)."),
            labels: [("consumer", consumer), ("group", group)]
        ).increment()
        registry.makeCounter(
            descriptor: Self.name("estimated_tokens", unit: "total", "Tokens charged from the proxy's estimates."),
            labels: [("consumer", consumer), ("group", group)]
        ).increment(by: Int64(max(0, tokens)))
    }

    func refusal(consumer: String, group: String) {
        registry.makeCounter(
            descriptor: Self.name("refusals", unit: "total", "Requests refused because a budget was spent."),
            labels: [("consumer", consumer), ("group", group)]
        ).increment()
    }

    private static func name(_ metric: String, unit: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(
            namespace: "budget", subsystem: "proxy", metricName: metric, unitName: unit, helpText: help)
    }

    func upstream(_ duration: Duration) { upstreamLatency.record(duration) }
    func proxyOverhead(_ duration: Duration) { overhead.record(duration) }
    func controlPlane(_ duration: Duration) { controlRoundTrip.record(duration) }

    func exposition() -> [UInt8] { registry.emitToBuffer() }
}

/// Counters of one metric by their three label values, made by the registry on first use.
private final class CounterCache: Sendable {
    private struct Labels: Hashable {
        var first: String
        var second: String
        var third: String
    }

    private let counters = Mutex<[Labels: Counter]>([:])

    func counter(_ first: String, _ second: String, _ third: String, make: () -> Counter) -> Counter {
        let labels = Labels(first: first, second: second, third: third)
        if let counter = counters.withLock({ $0[labels] }) { return counter }
        let made = make()
        counters.withLock { $0[labels] = made }
        return made
    }
}
