import Testing

@testable import DataPlane

@Suite("the proxy's latency histograms")
struct LatencyHistogramTests {
    @Test("each value counts in every bucket at or above it, +Inf counts all, and the sum is in seconds")
    func buckets() {
        let histogram = LatencyHistogram(name: "budget_proxy_test_seconds", help: #"A test \ histogram."#)
        for value: Duration in [.microseconds(250), .microseconds(251), .milliseconds(3), .seconds(61), .zero] {
            histogram.record(value)
        }
        var buffer: [UInt8] = []
        histogram.emit(into: &buffer)
        let lines = String(decoding: buffer, as: UTF8.self).split(separator: "\n").map(String.init)
        #expect(lines.first == #"# HELP budget_proxy_test_seconds A test \\ histogram."#)
        #expect(lines.dropFirst().first == "# TYPE budget_proxy_test_seconds histogram")
        #expect(lines.contains(#"budget_proxy_test_seconds_bucket{le="0.00025"} 2"#))  // zero and 250 µs (≤ bound)
        #expect(lines.contains(#"budget_proxy_test_seconds_bucket{le="0.0005"} 3"#))
        #expect(lines.contains(#"budget_proxy_test_seconds_bucket{le="0.002"} 3"#))
        #expect(lines.contains(#"budget_proxy_test_seconds_bucket{le="0.005"} 4"#))
        #expect(lines.contains(#"budget_proxy_test_seconds_bucket{le="60.0"} 4"#))
        #expect(lines.contains(#"budget_proxy_test_seconds_bucket{le="+Inf"} 5"#))
        #expect(lines.contains("budget_proxy_test_seconds_sum 61.003501"))
        #expect(lines.last == "budget_proxy_test_seconds_count 5")
        #expect(lines.count == 2 + LatencyHistogram.buckets.count + 3)
    }

    @Test("a duration past any clock's reach, or negative, is counted without overflow")
    func extremes() {
        let histogram = LatencyHistogram(name: "budget_proxy_test_seconds", help: "")
        histogram.record(.seconds(Int64.max / 1_000_000_000) + .milliseconds(999))
        histogram.record(.seconds(-1))
        var buffer: [UInt8] = []
        histogram.emit(into: &buffer)
        let lines = String(decoding: buffer, as: UTF8.self).split(separator: "\n").map(String.init)
        #expect(lines.contains(#"budget_proxy_test_seconds_bucket{le="0.00025"} 1"#))  // the negative one
        #expect(lines.contains(#"budget_proxy_test_seconds_bucket{le="60.0"} 1"#))
        #expect(lines.contains(#"budget_proxy_test_seconds_bucket{le="+Inf"} 2"#))
    }
}
