import BudgetLedger
import Testing

@Suite("What a commit reports for the store")
struct CommittedUsageTests {
    let minute = LimitKey(plugin: "rl", provider: "bedrock", subject: "consumer:alice", windowSize: 60)

    @Test("a commit returns one bucket per charge with units, at the bucket of the commit's time")
    func bucketsOfCommit() {
        var ledger = Ledger()
        let committed = ledger.commit(
            id: 1,
            charges: [Charge(key: minute, kind: .sliding, units: 30), Charge(key: minute, kind: .sliding, units: 0)],
            now: 1_000)
        let counter = WindowCounter(kind: .sliding, windowSize: 60)
        #expect(committed.time == 1_000)
        #expect(
            committed.buckets == [
                BucketUsage(
                    key: minute, kind: .sliding, bucket: counter.bucketIndex(at: 1_000), units: 30,
                    expiresAt: counter.expiry(ofBucket: counter.bucketIndex(at: 1_000)))
            ])
    }

    @Test("a group commit's buckets are merged per counter bucket: units summed, order of first appearance kept")
    func merged() {
        let bob = LimitKey(plugin: "rl", provider: "bedrock", subject: "consumer:bob", windowSize: 60)
        func usage(_ key: LimitKey, _ kind: WindowKind, _ bucket: Int64, _ units: Double) -> BucketUsage {
            BucketUsage(key: key, kind: kind, bucket: bucket, units: units, expiresAt: bucket * 60 + 120)
        }
        let batch = [
            usage(minute, .sliding, 10, 1), usage(bob, .sliding, 10, 2), usage(minute, .sliding, 10, 3),
            usage(minute, .fixed, 10, 4), usage(minute, .sliding, 11, 5), usage(bob, .sliding, 10, 6),
        ]
        #expect(
            BucketUsage.merged(batch) == [
                usage(minute, .sliding, 10, 4), usage(bob, .sliding, 10, 8), usage(minute, .fixed, 10, 4),
                usage(minute, .sliding, 11, 5),
            ])
        #expect(BucketUsage.merged(batch).reduce(0) { $0 + $1.units } == batch.reduce(0) { $0 + $1.units })
        #expect(BucketUsage.merged([]) == [] && BucketUsage.merged([batch[0]]) == [batch[0]])
    }

    @Test("when the clock steps back, the buckets are those of the ledger's latest time, as the counters have it")
    func clockSteppedBack() {
        var ledger = Ledger()
        ledger.apply(Charge(key: minute, kind: .sliding, units: 1), now: 5_000)
        let committed = ledger.commit(id: 1, charges: [Charge(key: minute, kind: .sliding, units: 10)], now: 4_000)
        let counter = WindowCounter(kind: .sliding, windowSize: 60)
        #expect(committed.time == 5_000)
        #expect(committed.buckets.map(\.bucket) == [counter.bucketIndex(at: 5_000)])
        #expect(ledger.counters[minute]?.live.last?.index == counter.bucketIndex(at: 5_000))
    }
}
