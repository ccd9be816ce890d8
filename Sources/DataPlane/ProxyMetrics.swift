import Prometheus
import Foundation
import Synchronization

/// The proxy's Prometheus metrics (swift-prometheus), served on the status listener's `/metrics`.
final class ProxyMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()
    /// The three latencies every request records, kept by `LatencyHistogram` and written after the registry's
    /// metrics in the same text format.
    private let upstreamLatency = LatencyHistogram(
        name: "budget_proxy_upstream_latency_seconds", help: "Time from sending a request to Bedrock to its last byte.")
    private let overhead = LatencyHistogram(
        name: "budget_proxy_overhead_seconds",
        help: "Time a request spends in the proxy itself (total minus upstream).")
    private let controlRoundTrip = LatencyHistogram(
        name: "budget_proxy_control_plane_rtt_seconds", help: "Round trip of a reservation to budget-controld.")

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

    func exposition() -> [UInt8] {
        var buffer = registry.emitToBuffer()
        for histogram in [upstreamLatency, overhead, controlRoundTrip] { histogram.emit(into: &buffer) }
        return buffer
    }
}

/// A latency histogram in Prometheus' text format, as swift-prometheus writes its duration histograms (same
/// buckets, same number formats). swift-prometheus' `Histogram` is generic and runs unspecialized from this
/// module: each record took its lock and compared every bucket through the generic witnesses, 2 to 3 µs of the
/// three records a request makes (bench/README.md). This one finds the value's bucket and counts it alone; the
/// cumulative counts are summed when written.
final class LatencyHistogram: Sendable {
    static let buckets: [Duration] = [
        .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10),
        .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1),
        .seconds(2.5), .seconds(5), .seconds(10), .seconds(30), .seconds(60),
    ]

    let name: String
    let help: String

    private struct State {
        /// Observations per bucket (not cumulative), the last one past every bound (+Inf only).
        var counts = [Int](repeating: 0, count: LatencyHistogram.buckets.count + 1)
        var sum = Duration.zero
    }

    private let state = Mutex(State())

    init(name: String, help: String) {
        self.name = name
        self.help = help
    }

    func record(_ duration: Duration) {
        // Compared as `Duration`s (not generic here, so cheap), as swift-prometheus compares them: a value equal to a
        // bound counts in its bucket, and no duration, however large, overflows anything.
        let index = Self.buckets.firstIndex { duration <= $0 } ?? Self.buckets.count
        state.withLock { state in
            state.counts[index] += 1
            state.sum += duration
        }
    }

    /// `# HELP`, `# TYPE`, the cumulative buckets, `+Inf`, `_sum` and `_count`.
    func emit(into buffer: inout [UInt8]) {
        let state = self.state.withLock { $0 }
        buffer += "# HELP \(name) \(help.replacingOccurrences(of: "\\", with: "\\\\"))\n".utf8
        buffer += "# TYPE \(name) histogram\n".utf8
        var cumulative = 0
        for (bound, count) in zip(Self.buckets, state.counts) {
            cumulative += count
            buffer += "\(name)_bucket{le=\"\(bound.bucketRepresentation)\"} \(cumulative)\n".utf8
        }
        let total = state.counts.reduce(0, +)
        buffer += "\(name)_bucket{le=\"+Inf\"} \(total)\n".utf8
        buffer += "\(name)_sum \(state.sum.bucketRepresentation)\n".utf8
        buffer += "\(name)_count \(total)\n".utf8
    }
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
