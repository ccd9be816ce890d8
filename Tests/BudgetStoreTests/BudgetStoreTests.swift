import BudgetConfig
import BudgetLedger
import BudgetStore
import Foundation
import Testing

@Suite("The store: config and usage on disk")
struct BudgetStoreTests {
    let key = LimitKey(plugin: "rl", provider: "bedrock", subject: "consumer:alice", windowSize: 60)

    @Test("a new store in an empty directory opens at version 0 with no entities, its file mode 0600")
    func opensEmpty() async throws {
        try await withTemporaryDirectory { directory in
            let store = try BudgetStore.open(stateDirectory: directory)
            let loaded = try store.loadConfig()
            #expect(loaded.version == 0)
            #expect(loaded.state.isEmpty)
            let mode = try FileManager.default.attributesOfItem(atPath: store.path)[.posixPermissions] as? Int
            #expect(mode == 0o600)
        }
    }

    @Test("each start is counted durably, so every run numbers its reservations apart")
    func bootsAreCounted() async throws {
        try await withTemporaryDirectory { directory in
            let first = try BudgetStore.open(stateDirectory: directory).nextBoot()
            #expect(try BudgetStore.open(stateDirectory: directory).nextBoot() == first + 1)
            let store = try BudgetStore.open(stateDirectory: directory)
            #expect(try store.nextBoot() == first + 2)
            #expect(try store.loadConfig().version == 0)  // the count lives beside the config version, apart
        }
        // A store created anew (the old one moved aside) numbers its runs from another random offset, so its
        // reservation ids do not repeat the old store's while data planes still hold them.
        try await withTemporaryDirectory { other in
            try await withTemporaryDirectory { another in
                let one = try BudgetStore.open(stateDirectory: other).nextBoot()
                let two = try BudgetStore.open(stateDirectory: another).nextBoot()
                #expect(one != two)
            }
        }
    }

    @Test("usage of a name with '|' reads back; a reset removes one subject, not one that differs in case")
    func subjectsAreExact() async throws {
        try await withTemporaryDirectory { directory in
            let store = try BudgetStore.open(stateDirectory: directory)
            func record(_ subject: String, _ units: Double) -> BudgetStore.UsageRecord {
                BudgetStore.UsageRecord(
                    key: LimitKey(plugin: "rl|x", provider: "bedrock", subject: subject, windowSize: 60),
                    kind: .sliding, bucket: 10, units: units, expiresAt: 4_000_000_000)
            }
            try await store.record([record("consumer:acme|prod", 5), record("consumer:bob", 1)])
            try await store.record([record("consumer:BOB", 2), record("consumer:bob_", 3)])
            // Text bound by hand (the group commit's rows): an empty subject, non-ASCII, a fraction.
            try await store.record([record("", 0.25), record("consumer:zoë 日本", 1.5)])
            #expect(try store.deleteUsage(subject: "consumer:bob") == 1)
            let reopened = try BudgetStore.open(stateDirectory: directory)
            let left = Dictionary(
                uniqueKeysWithValues: try reopened.loadUsage(now: 0).map { ($0.key.subject, $0.units) })
            #expect(
                left == [
                    "consumer:acme|prod": 5, "consumer:BOB": 2, "consumer:bob_": 3, "": 0.25, "consumer:zoë 日本": 1.5,
                ])
            #expect(try reopened.loadUsage(now: 0).allSatisfy { $0.key.plugin == "rl|x" && $0.key.windowSize == 60 })
        }
    }

    @Test("a directory that does not exist is an error that says so")
    func missingDirectory() {
        #expect(throws: StoreError.self) {
            try BudgetStore.open(stateDirectory: "/nonexistent/\(UUID().uuidString)")
        }
    }

    @Test("applied changes read back, in a new store on the same directory too")
    func applyRoundTrip() async throws {
        try await withTemporaryDirectory { directory in
            let state = try fixtureState()
            let store = try BudgetStore.open(stateDirectory: directory)
            let changes = state.sortedEntities.map { AppliedChange(action: .create, entity: $0) }
            #expect(try store.apply(changes, baseVersion: 0, now: 1000) == 1)
            #expect(try store.loadConfig().state == state)
            let reopened = try BudgetStore.open(stateDirectory: directory).loadConfig()
            #expect(reopened.version == 1)
            #expect(reopened.state == state)
        }
    }

    @Test("an apply against an old base version is a conflict and changes nothing")
    func conflict() async throws {
        try await withTemporaryDirectory { directory in
            let store = try BudgetStore.open(stateDirectory: directory)
            let alice = Entity.consumer(Consumer(username: "alice", customID: nil))
            let bob = Entity.consumer(Consumer(username: "bob", customID: nil))
            _ = try store.apply([AppliedChange(action: .create, entity: alice)], baseVersion: 0, now: 1)
            do {
                _ = try store.apply([AppliedChange(action: .create, entity: bob)], baseVersion: 0, now: 2)
                Issue.record("an apply against version 0 was accepted at version 1")
            } catch {
                #expect((error as? StoreError)?.isConflict == true)
            }
            let loaded = try store.loadConfig()
            #expect(loaded.version == 1)
            #expect(loaded.state.count == 1)
        }
    }

    @Test("recorded usage adds up per bucket and loads back until it expires")
    func usageRoundTrip() async throws {
        try await withTemporaryDirectory { directory in
            let store = try BudgetStore.open(stateDirectory: directory)
            var ledger = Ledger()
            let first = ledger.commit(id: 1, charges: [Charge(key: key, kind: .sliding, units: 100)], now: 1_000)
            let second = ledger.commit(id: 2, charges: [Charge(key: key, kind: .sliding, units: 50)], now: 1_000)
            try await store.record(first.buckets)
            try await store.record(second.buckets)
            let loaded = try store.loadUsage(now: 1_000)
            #expect(loaded.count == 1)
            #expect(loaded.first?.units == 150)
            #expect(loaded.first?.bucket == first.buckets.first?.bucket)
            let expiry = try #require(first.buckets.first?.expiresAt)
            #expect(try store.loadUsage(now: expiry).isEmpty)
        }
    }

    @Test("deleting a subject's usage leaves other subjects alone")
    func deleteUsage() async throws {
        try await withTemporaryDirectory { directory in
            let store = try BudgetStore.open(stateDirectory: directory)
            let other = LimitKey(plugin: "rl", provider: "bedrock", subject: "consumer:bob", windowSize: 60)
            try await store.record([
                BucketUsage(key: key, kind: .sliding, bucket: 1, units: 1, expiresAt: 10_000),
                BucketUsage(key: other, kind: .sliding, bucket: 1, units: 2, expiresAt: 10_000),
            ])
            #expect(try store.deleteUsage(subject: "consumer:alice") == 1)
            #expect(try store.loadUsage(now: 0).map(\.key) == [other])
        }
    }

    @Test("commit marks are written with the usage, keep the highest number, survive a reopen and are pruned")
    func commitMarks() async throws {
        try await withTemporaryDirectory { directory in
            let store = try BudgetStore.open(stateDirectory: directory)
            let bucket = BucketUsage(key: key, kind: .sliding, bucket: 1, units: 1, expiresAt: 10_000)
            try await store.record([bucket], marks: [CommitMark(source: UInt64.max, sequence: 7, seenAt: 100)])
            try await store.record([], marks: [CommitMark(source: UInt64.max, sequence: 3, seenAt: 200)])
            try await store.record([], marks: [CommitMark(source: 5, sequence: 1, seenAt: 50)])
            let reopened = try BudgetStore.open(stateDirectory: directory)
            let marks = Dictionary(uniqueKeysWithValues: try reopened.loadCommitMarks().map { ($0.source, $0) })
            #expect(marks[UInt64.max]?.sequence == 7)
            #expect(marks[5]?.sequence == 1)
            try reopened.pruneUsage(now: 0, marksSeenBefore: 150)
            #expect(try reopened.loadCommitMarks().map(\.source) == [UInt64.max])
        }
    }

    @Test("a group commit of 203 buckets (many to one bucket) and 150 marks, written many rows a statement, adds up")
    func largeGroupCommit() async throws {
        try await withTemporaryDirectory { directory in
            let store = try BudgetStore.open(stateDirectory: directory)
            // 203 = 128 + 64 + 8 + 2 + 1 rows: every statement shape; subjects repeat within one statement.
            let buckets = (0..<203).map { index in
                BucketUsage(
                    key: LimitKey(plugin: "rl", provider: "bedrock", subject: "consumer:c\(index % 7)", windowSize: 60),
                    kind: .sliding, bucket: 3, units: Double(index), expiresAt: 10_000)
            }
            let marks = (0..<150).map { CommitMark(source: UInt64($0 % 50), sequence: UInt64($0), seenAt: 100) }
            try await store.record(buckets, marks: marks)
            let reopened = try BudgetStore.open(stateDirectory: directory)
            let totals = Dictionary(
                uniqueKeysWithValues: try reopened.loadUsage(now: 0).map { ($0.key.subject, $0.units) })
            let expected = Dictionary(
                grouping: 0..<203, by: { "consumer:c\($0 % 7)" }
            ).mapValues { $0.reduce(0.0) { $0 + Double($1) } }
            #expect(totals == expected)
            let stored = Dictionary(
                uniqueKeysWithValues: try reopened.loadCommitMarks().map { ($0.source, $0.sequence) })
            #expect(stored.count == 50)
            #expect(stored.allSatisfy { source, sequence in sequence == source + 100 })  // the highest of each
        }
    }

    @Test("buckets of the two window kinds are kept apart under one counter")
    func kindsApart() async throws {
        try await withTemporaryDirectory { directory in
            let store = try BudgetStore.open(stateDirectory: directory)
            // A one-second window has one-second buckets in both kinds: the same bucket number.
            let second = LimitKey(plugin: "rl", provider: "bedrock", subject: "consumer:alice", windowSize: 1)
            try await store.record([
                BucketUsage(key: second, kind: .sliding, bucket: 500, units: 1, expiresAt: 10_000),
                BucketUsage(key: second, kind: .fixed, bucket: 500, units: 2, expiresAt: 10_000),
            ])
            let loaded = try store.loadUsage(now: 0).map { "\($0.kind.rawValue):\($0.units)" }.sorted()
            #expect(loaded == ["fixed:2.0", "sliding:1.0"])
        }
    }
}
