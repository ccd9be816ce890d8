import BudgetConfig
import BudgetLedger
import BudgetWire
import DataPlane
import TestSupport
import Testing

/// A config shaped as bench/scale.sh's: one route with key-auth and ai-proxy, three groups with budgets, and
/// `consumers` consumers with one key and one group each. `edit` changes the description before it is rendered.
struct ScaleConfig {
    var consumers: [(name: String, key: String, group: String?)]
    var groups = ["basic": 10_000, "premium": 50_000, "enterprise": 200_000]
    var paths = ["/ai/budget"]
    var keyAuthEnabled = true

    init(consumers count: Int) {
        let names = ["basic", "premium", "enterprise"]
        consumers = (0..<count).map { ("user-\($0)", "key-\($0)-secret", names[$0 % 3]) }
    }

    var yaml: String {
        var text = """
            _format_version: "3.0"
            services:
              - name: llm
                host: bedrock-runtime.us-east-1.amazonaws.com
                routes:
                  - name: chat
                    paths: [\(paths.joined(separator: ", "))]
                    plugins:
                      - name: key-auth
                        enabled: \(keyAuthEnabled)
                      - name: ai-proxy
                        config:
                          route_type: llm/v1/chat
                          auth: {aws_access_key_id: AKIDEXAMPLE, aws_secret_access_key: wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY}
                          model: {provider: bedrock, name: anthropic.claude-3-haiku-20240307-v1:0, options: {bedrock: {aws_region: us-east-1}}}
            consumer_groups:

            """
        for (group, limit) in groups.sorted(by: { $0.key < $1.key }) {
            text += """
                  - name: \(group)
                    plugins:
                      - name: ai-rate-limiting-advanced
                        config:
                          llm_providers: [{name: bedrock, limit: [\(limit)], window_size: [86400]}]

                """
        }
        text += "consumers:\n"
        for consumer in consumers {
            text += "  - username: \(consumer.name)\n"
            if let group = consumer.group { text += "    groups: [{name: \(group)}]\n" }
            text += "    keyauth_credentials: [{key: \(consumer.key)}]\n"
        }
        return text
    }

    var state: ConfigState {
        get throws {
            let loaded = ConfigLoader.load([ConfigSource(name: "scale.yaml", text: yaml)], environment: [:])
            guard loaded.isValid else { throw TestFailure(loaded.diagnostics.rendered.joined(separator: "\n")) }
            return loaded.state
        }
    }
}

/// The changes that take `current` to `desired`, as budget-controld applies and pushes them.
func appliedChanges(from current: ConfigState, to desired: ConfigState) throws -> [AppliedChange] {
    try Planner.plan(current: current, desired: desired, selectTags: []).changes.map {
        AppliedChange(action: $0.action, entity: $0.entity)
    }
}

func snapshotFrame(version: UInt64, state: ConfigState) -> WireFrame {
    WireFrame(.snapshot, requestID: 0, payload: WireJSON.encode(ConfigSnapshot(version: version, state: state)))
}

func deltaFrame(base: UInt64, version: UInt64, changes: [AppliedChange]) -> WireFrame {
    WireFrame(
        .snapshotDelta, requestID: 0,
        payload: WireJSON.encode(ConfigDelta(baseVersion: base, version: version, changes: changes)))
}

@Suite("budget-proxyd's tables follow config deltas")
struct ProxyTablesDeltaTests {
    /// Follows `before` (a snapshot at version 1) then the delta to `after` (version 2), and checks the result
    /// against tables compiled from the whole of `after`; returns the delta's outcome.
    @discardableResult
    private func follow(_ before: ScaleConfig, _ after: ScaleConfig) throws -> ConfigFollower.Outcome {
        let (old, new) = (try before.state, try after.state)
        var follower = ConfigFollower()
        #expect(try follower.receive(snapshotFrame(version: 1, state: old)) == .snapshot(entities: old.count))
        let outcome = try follower.receive(
            deltaFrame(base: 1, version: 2, changes: try appliedChanges(from: old, to: new)))
        let tables = try #require(follower.tables)
        #expect(tables.version == 2)
        #expect(tables.hasSameContents(as: ProxyTables(version: 2, state: new)))
        // And not by accident: the tables differ from those of the old config whenever the configs do.
        if old != new { #expect(!tables.hasSameContents(as: ProxyTables(version: 1, state: old))) }
        return outcome
    }

    @Test("a rotated key: the new key finds its consumer, the old one nobody, and nothing is compiled again")
    func rotatedKey() throws {
        let before = ScaleConfig(consumers: 30)
        var after = before
        after.consumers[7].key = "key-7-rotated"
        #expect(try follow(before, after) == .delta(changes: 2, recompiled: false))
        var follower = ConfigFollower()
        _ = try follower.receive(snapshotFrame(version: 1, state: try before.state))
        _ = try follower.receive(
            deltaFrame(base: 1, version: 2, changes: try appliedChanges(from: try before.state, to: try after.state)))
        let tables = try #require(follower.tables)
        #expect(tables.owner(of: "key-7-rotated")?.consumer == "user-7")
        #expect(tables.owner(of: "key-7-secret") == nil)
        #expect(tables.owner(of: "key-8-secret")?.consumer == "user-8")
    }

    @Test("consumers created, deleted and moved between groups, with their keys and memberships")
    func consumersComeAndGo() throws {
        let before = ScaleConfig(consumers: 30)
        var after = before
        after.consumers.removeAll { $0.name == "user-3" || $0.name == "user-4" }
        after.consumers.append(("user-new", "key-new-secret", "enterprise"))
        after.consumers.append(("user-loner", "key-loner-secret", nil))
        after.consumers[0].group = "premium"
        after.consumers[1].group = nil
        let outcome = try follow(before, after)
        guard case .delta(_, let recompiled) = outcome else {
            Issue.record("not applied as a delta: \(outcome)")
            return
        }
        #expect(!recompiled)
    }

    @Test("a consumer in two groups, then in one of them")
    func twoGroups() throws {
        // Memberships written by hand: the scale config gives one group each.
        let base = try ScaleConfig(consumers: 6).state
        var twoGroups = base
        twoGroups.insert(.consumerGroupConsumer(ConsumerGroupMembership(consumer: "user-0", group: "premium")))
        var follower = ConfigFollower()
        _ = try follower.receive(snapshotFrame(version: 1, state: base))
        _ = try follower.receive(deltaFrame(base: 1, version: 2, changes: try appliedChanges(from: base, to: twoGroups)))
        #expect(follower.tables?.groups(of: "user-0") == ["basic", "premium"])
        #expect(follower.tables?.hasSameContents(as: ProxyTables(version: 2, state: twoGroups)) == true)
        _ = try follower.receive(deltaFrame(base: 2, version: 3, changes: try appliedChanges(from: twoGroups, to: base)))
        #expect(follower.tables?.groups(of: "user-0") == ["basic"])
        #expect(follower.tables?.hasSameContents(as: ProxyTables(version: 3, state: base)) == true)
    }

    @Test("a route, plugin or group budget change compiles the routes and the policy again")
    func routingChanges() throws {
        let before = ScaleConfig(consumers: 12)
        var paths = before
        paths.paths = ["/ai/budget", "/ai/other"]
        #expect(try follow(before, paths) == .delta(changes: 1, recompiled: true))
        var limit = before
        limit.groups["premium"] = 123
        #expect(try follow(before, limit) == .delta(changes: 1, recompiled: true))
        var plugin = before
        plugin.keyAuthEnabled = false
        #expect(try follow(before, plugin) == .delta(changes: 1, recompiled: true))
        var newGroup = before
        newGroup.groups["gold"] = 7
        newGroup.consumers[2].group = "gold"
        newGroup.consumers[2].key = "key-2-gold"
        let outcome = try follow(before, newGroup)
        guard case .delta(_, true) = outcome else {
            Issue.record("expected a recompiling delta: \(outcome)")
            return
        }
    }

    @Test("a delta from another version is a gap and changes nothing; one already applied is stale")
    func gapsAndStaleDeltas() throws {
        let before = ScaleConfig(consumers: 6)
        var after = before
        after.consumers[0].key = "key-0-rotated"
        let changes = try appliedChanges(from: try before.state, to: try after.state)
        var follower = ConfigFollower()
        #expect(try follower.receive(deltaFrame(base: 1, version: 2, changes: changes)) == .gap(base: 1, current: nil))
        _ = try follower.receive(snapshotFrame(version: 3, state: try before.state))
        #expect(try follower.receive(deltaFrame(base: 4, version: 5, changes: changes)) == .gap(base: 4, current: 3))
        #expect(try follower.receive(deltaFrame(base: 2, version: 3, changes: changes)) == .stale)
        #expect(follower.tables?.version == 3)
        #expect(follower.tables?.owner(of: "key-0-secret") != nil)
    }

    @Test("a delta that does not fit the config is refused whole, and the tables stay as they were")
    func misfitDelta() throws {
        let state = try ScaleConfig(consumers: 6).state
        var follower = ConfigFollower()
        _ = try follower.receive(snapshotFrame(version: 1, state: state))
        let before = try #require(follower.tables)
        let route = try #require(state.routes.first)
        let changes = [
            AppliedChange(
                action: .create,
                entity: .keyAuth(KeyAuthCredential(consumer: "user-0", keyHash: KeyHash(key: "fresh")))),
            AppliedChange(action: .create, entity: .route(route)),
        ]
        #expect(throws: WireErrorBody.self) { try follower.receive(deltaFrame(base: 1, version: 2, changes: changes)) }
        #expect(follower.tables === before)
        #expect(follower.tables?.owner(of: "fresh") == nil)
        #expect(throws: WireErrorBody.self) {
            try follower.receive(WireFrame(.snapshotDelta, requestID: 0, payload: Array("{}".utf8)))
        }
        #expect(follower.tables === before)
    }
}

@Suite("the budget policy's budgets, made once per subject")
struct BudgetPolicyCacheTests {
    @Test("a consumer's budget is made once and shared; other consumers get their own; a full cache starts over")
    func budgetsShared() throws {
        let tables = ProxyTables(version: 1, state: try ScaleConfig(consumers: 6).state)
        func budget(_ consumer: String, _ group: String) -> BudgetPolicy.Budget? {
            tables.policy.budget(
                route: "chat", service: "llm", consumer: consumer, groups: [group], credential: nil,
                provider: "bedrock")
        }
        let first = try #require(budget("user-0", "basic"))
        #expect(budget("user-0", "basic") === first)
        #expect(first.subject == "consumer:user-0" && first.rules.map(\.key.subject) == ["consumer:user-0"])
        let other = try #require(budget("user-3", "basic"))
        #expect(other !== first && other.subject == "consumer:user-3" && other.rules.first?.limit == 10_000)
        #expect(try #require(budget("user-1", "premium")).rules.first?.limit == 50_000)
        // More subjects than the cache holds: it is cleared and made again, and every answer stays right.
        for index in 0...BudgetPolicy.budgetCacheCapacity {
            #expect(budget("someone-\(index)", "basic")?.subject == "consumer:someone-\(index)")
        }
        let again = try #require(budget("user-0", "basic"))
        #expect(again.subject == "consumer:user-0" && again.rules == first.rules)
    }
}
