/// Units added to one bucket of a counter: what a commit changed, and what the store keeps.
public struct BucketUsage: Sendable, Hashable {
    public var key: LimitKey
    public var kind: WindowKind
    /// The bucket's index (`WindowCounter.bucketIndex(at:)`).
    public var bucket: Int64
    /// Units added (or, from the store, held) in the bucket.
    public var units: Double
    /// Epoch second from which the bucket no longer counts.
    public var expiresAt: Int64

    public init(key: LimitKey, kind: WindowKind, bucket: Int64, units: Double, expiresAt: Int64) {
        self.key = key
        self.kind = kind
        self.bucket = bucket
        self.units = units
        self.expiresAt = expiresAt
    }
}

/// What `Ledger.commit` applied: the buckets it added to, at the time the ledger used (its monotonic clock,
/// which may stand behind the wall clock passed in).
public struct CommittedUsage: Sendable, Hashable {
    /// The epoch second the buckets were computed at.
    public var time: Int64
    public var buckets: [BucketUsage]
    /// False for a commit sent again: nothing was charged.
    public var applied: Bool

    public init(time: Int64, buckets: [BucketUsage], applied: Bool = true) {
        self.time = time
        self.buckets = buckets
        self.applied = applied
    }
}

extension BucketUsage {
    /// `buckets` with the units of entries for the same bucket of the same counter summed into the first of them,
    /// in order of first appearance: what a group commit writes, one row change per bucket rather than one per
    /// commit (the requests of one consumer, or of one tier's shared counter, all charge the same bucket).
    public static func merged(_ buckets: [BucketUsage]) -> [BucketUsage] {
        guard buckets.count > 1 else { return buckets }
        struct Slot: Hashable {
            let key: LimitKey
            let kind: WindowKind
            let bucket: Int64
        }
        var positions: [Slot: Int] = [:]
        positions.reserveCapacity(buckets.count)
        var merged: [BucketUsage] = []
        merged.reserveCapacity(buckets.count)
        for usage in buckets {
            let slot = Slot(key: usage.key, kind: usage.kind, bucket: usage.bucket)
            if let position = positions[slot] {
                merged[position].units += usage.units
                merged[position].expiresAt = max(merged[position].expiresAt, usage.expiresAt)
            } else {
                positions[slot] = merged.count
                merged.append(usage)
            }
        }
        return merged
    }
}
