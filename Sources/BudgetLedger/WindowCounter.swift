/// The usage of one counter over time, in buckets.
///
/// A sliding window of W seconds keeps buckets of `max(1, W / 1440)` seconds (a minute for a day) and
/// counts a charge until the end of its bucket plus W: tokens come back at most one bucket late, never
/// early, so a budget is never silently overshot. A fixed window has one bucket per epoch-aligned window.
public struct WindowCounter: Sendable, Hashable {
    public let kind: WindowKind
    public let windowSize: Int
    /// Bucket length in seconds.
    public let resolution: Int
    /// (bucket index, units), oldest first.
    public private(set) var buckets: [(index: Int64, amount: Double)] = []
    private var head = 0
    /// Units in the live buckets.
    public private(set) var total: Double = 0

    /// An empty counter; its bucket length follows from the kind and window size.
    public init(kind: WindowKind, windowSize: Int) {
        self.kind = kind
        self.windowSize = windowSize
        resolution = kind == .fixed ? windowSize : max(1, windowSize / 1440)
    }

    public static func == (lhs: WindowCounter, rhs: WindowCounter) -> Bool {
        lhs.kind == rhs.kind && lhs.windowSize == rhs.windowSize && lhs.live.elementsEqual(rhs.live) { $0 == $1 }
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(kind)
        hasher.combine(windowSize)
        for bucket in live {
            hasher.combine(bucket.index)
            hasher.combine(bucket.amount)
        }
    }

    /// The buckets still held.
    public var live: ArraySlice<(index: Int64, amount: Double)> { buckets[head...] }

    /// The bucket that `time` (epoch seconds) falls in.
    public func bucketIndex(at time: Int64) -> Int64 { floorDivide(time, Int64(resolution)) }

    /// The epoch second at which a bucket's units stop counting.
    public func expiry(ofBucket index: Int64) -> Int64 {
        (index + 1) * Int64(resolution) + (kind == .sliding ? Int64(windowSize) : 0)
    }

    /// Drops buckets that no longer count at `now`.
    public mutating func advance(to now: Int64) {
        while head < buckets.count && expiry(ofBucket: buckets[head].index) <= now {
            total -= buckets[head].amount
            head += 1
        }
        if head == buckets.count {
            buckets.removeAll(keepingCapacity: true)
            head = 0
            total = 0
        } else if head > 64 && head * 2 > buckets.count {
            buckets.removeFirst(head)
            head = 0
        }
        if total < 1e-9 { total = max(0, total) }
    }

    /// Adds `units` at `now` (into the bucket of `now`).
    public mutating func add(_ units: Double, at now: Int64) {
        advance(to: now)
        add(units, bucket: bucketIndex(at: now))
    }

    /// Adds `units` to bucket `index` (used when loading from the store).
    public mutating func add(_ units: Double, bucket index: Int64) {
        guard units != 0 else { return }
        if let last = buckets.last, head < buckets.count, last.index == index {
            buckets[buckets.count - 1].amount += units
        } else if let last = buckets.last, head < buckets.count, last.index > index {
            // Out of order (loading): insert in place.
            let position = buckets[head...].firstIndex { $0.index >= index } ?? buckets.count
            if position < buckets.count && buckets[position].index == index {
                buckets[position].amount += units
            } else {
                buckets.insert((index, units), at: position)
            }
        } else {
            buckets.append((index, units))
        }
        total += units
    }

    /// When the oldest units still counted come back; nil when nothing is counted.
    public var nextReset: Int64? { live.first.map { expiry(ofBucket: $0.index) } }

    /// The first time at which usage falls to `target` or below, walking expiries oldest first.
    public func time(whenUsageAtMost target: Double) -> Int64? {
        var remaining = total
        if remaining <= target { return nil }
        for bucket in live {
            remaining -= bucket.amount
            if remaining <= target + 1e-9 { return expiry(ofBucket: bucket.index) }
        }
        return nil
    }
}

func floorDivide(_ value: Int64, _ divisor: Int64) -> Int64 {
    value >= 0 ? value / divisor : -((-value + divisor - 1) / divisor)
}
