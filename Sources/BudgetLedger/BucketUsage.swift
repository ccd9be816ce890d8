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
