/// When to prune expired usage: every `interval` seconds, while the wall clock keeps pace with the
/// monotonic one. When the wall clock jumps (set forward or back by more than `maxDrift` against the
/// monotonic clock), pruning waits until the two have kept pace for `settle` seconds: a clock set wrong for a
/// while must not delete usage that still counts. A machine that was suspended is no jump (the monotonic
/// clock here, `ContinuousClock`, counts suspended time).
public struct PruneClock: Sendable {
    public enum Step: Sendable, Equatable {
        case wait
        case prune
        case clockJumped(seconds: Int64)
    }

    public let interval: Int64
    public static let maxDrift: Int64 = 60
    public static let settle: Int64 = 3600
    /// Wall clock minus monotonic clock, in seconds, at the last tick.
    private var offset: Int64
    private var lastPrune: Int64
    private var steadySince: Int64

    /// `wall` is the wall clock (epoch seconds), `monotonic` any monotonic clock in seconds.
    public init(interval: Int64, wall: Int64, monotonic: Int64) {
        self.interval = interval
        offset = wall - monotonic
        lastPrune = monotonic - interval - 1
        steadySince = monotonic - Self.settle
    }

    public mutating func tick(wall: Int64, monotonic: Int64) -> Step {
        let drift = (wall - monotonic) - offset
        if abs(drift) > Self.maxDrift {
            offset = wall - monotonic
            steadySince = monotonic
            return .clockJumped(seconds: drift)
        }
        guard monotonic - steadySince >= Self.settle, monotonic - lastPrune > interval else { return .wait }
        lastPrune = monotonic
        return .prune
    }
}

