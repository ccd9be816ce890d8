import BudgetConfig
import Foundation
import Testing

@Suite("The sync planner")
struct PlannerTests {
    func fixtureState() throws -> LoadedConfig { load(try fixtureText()) }

    /// The fixture with one edit applied to its text.
    func edited(_ transform: (String) -> String) throws -> LoadedConfig {
        load(transform(try fixtureText()))
    }

    @Test("syncing the same file again plans nothing")
    func idempotent() throws {
        let loaded = try fixtureState()
        let plan = try Planner.plan(current: loaded.state, desired: loaded.state, selectTags: loaded.selectTags)
        #expect(plan.isEmpty)
        #expect(PlanRenderer.text(plan) == ["Summary:", "  Created: 0", "  Updated: 0", "  Deleted: 0"])
    }

    @Test("changing one limit is one update, with the field diff")
    func oneUpdate() throws {
        let current = try fixtureState()
        let desired = try edited { $0.replacingOccurrences(of: "limit: [10000]", with: "limit: [20000]") }
        let plan = try Planner.plan(current: current.state, desired: desired.state, selectTags: desired.selectTags)
        #expect(
            PlanRenderer.text(plan) == [
                "updating plugin ai-rate-limiting-advanced for consumer-group signify-basic",
                "  - config.llm_providers[0].limit: [10000]",
                "  + config.llm_providers[0].limit: [20000]",
                "Summary:", "  Created: 0", "  Updated: 1", "  Deleted: 0",
            ])
    }

    @Test("entities absent from the file are deleted, dependents first")
    func deletes() throws {
        let current = try fixtureState()
        var desired = current.state
        for entity in current.state.sortedEntities
        where entity.kindAndName.contains("signify-production")
            || entity.kindAndName.contains("signify-enterprise")
        {
            desired.remove(entity.id)
        }
        let plan = try Planner.plan(current: current.state, desired: desired, selectTags: current.selectTags)
        #expect(
            PlanRenderer.text(plan) == [
                "deleting plugin ai-rate-limiting-advanced for consumer-group signify-enterprise",
                "deleting consumer-group-consumer signify-production for consumer-group signify-enterprise",
                "deleting consumer-group signify-enterprise",
                "deleting key-auth n-key for consumer signify-production",
                "deleting consumer signify-production",
                "Summary:", "  Created: 0", "  Updated: 0", "  Deleted: 5",
            ])
    }

    @Test("entities outside the select-tag scope are untouched")
    func tagScoping() throws {
        let current = try fixtureState()
        var state = current.state
        var other = Consumer(username: "someone-else", customID: nil)
        other.tags = ["other-team"]
        state.insert(.consumer(other))
        var otherKey = KeyAuthCredential(consumer: "someone-else", keyHash: KeyHash(key: "other-key"))
        otherKey.tags = ["other-team"]
        state.insert(.keyAuth(otherKey))

        let desired = try edited { $0.replacingOccurrences(of: "limit: [50000]", with: "limit: [60000]") }
        let plan = try Planner.plan(current: state, desired: desired.state, selectTags: ["signify-demo"])
        #expect(plan.changes.map(\.action) == [.update])
        #expect(plan.result[other.id] != nil && plan.result[otherKey.id] != nil)

        let reset = try Planner.reset(current: state, selectTags: ["signify-demo"])
        #expect(reset.deleted == 19)
        #expect(reset.result.sortedEntities.map(\.id) == [other.id, otherKey.id].sorted())
    }

    @Test("an entity that exists outside the scope is a conflict, not a takeover")
    func outOfScopeConflict() throws {
        let current = try fixtureState()
        var state = current.state
        state.upsert(.consumer(Consumer(username: "signify-dev-team", customID: nil)))
        #expect(throws: PlanError.self) {
            try Planner.plan(current: state, desired: current.state, selectTags: ["signify-demo"])
        }
    }

    @Test("a config large enough to be compared in two halves plans the same creates, updates, deletes and conflicts")
    func largePlan() throws {
        func consumer(_ index: Int, tags: [String] = ["scale"]) -> Entity {
            var consumer = Consumer(username: "user-\(index)", customID: nil)
            consumer.tags = tags
            return .consumer(consumer)
        }
        let count = Planner.parallelComparisonThreshold + 5_000
        let current = ConfigState((0..<count).map { consumer($0) })
        // 300 updated (a tag added), 200 created, 100 deleted (absent from the file), the rest unchanged.
        var desiredEntities = (100..<count).map { $0 < 400 ? consumer($0, tags: ["extra", "scale"]) : consumer($0) }
        desiredEntities += (count..<(count + 200)).map { consumer($0) }
        let plan = try Planner.plan(current: current, desired: ConfigState(desiredEntities), selectTags: ["scale"])
        #expect(plan.created == 200)
        #expect(plan.updated == 300)
        #expect(plan.deleted == 100)
        #expect(
            plan.changes.filter { $0.action == .create }.map(\.id.key)
                == (count..<(count + 200)).map { "user-\($0)" }.sorted())
        #expect(plan.result.count == count + 100)
        #expect(plan.result[EntityID(.consumer, "user-150")]?.tags == ["extra", "scale"])

        // Conflicts in both halves are all reported, in identity order: entities of the file without the select
        // tag, and entities the file names that exist outside the scope.
        var conflicting = current
        for index in [7, count - 7] { conflicting.upsert(consumer(index, tags: [])) }
        var wrong = desiredEntities
        wrong += [consumer(count + 500, tags: []), consumer(count + 501, tags: [])]
        wrong += [consumer(7), consumer(count - 7)]
        do {
            _ = try Planner.plan(current: conflicting, desired: ConfigState(wrong), selectTags: ["scale"])
            Issue.record("a plan with four conflicts was made")
        } catch {
            #expect(error.problems.count == 4)
            #expect(error.problems.filter { $0.contains("lacks the select tags") }.count == 2)
            #expect(error.problems.filter { $0.contains("already exists outside the select-tag scope") }.count == 2)
        }
    }

    @Test("a plan whose result would leave a reference dangling is refused")
    func danglingResult() throws {
        let current = try fixtureState()
        var state = current.state
        // Another team's plugin uses a group that the fixture's scope owns.
        var plugin = Plugin(config: .keyAuth(KeyAuthConfig()), scope: PluginScope(route: "signify-ai-budget"))
        plugin.instanceName = "other-team-auth"
        plugin.tags = ["other-team"]
        state.insert(.plugin(plugin))
        do {
            _ = try Planner.reset(current: state, selectTags: ["signify-demo"])
            Issue.record("reset should have been refused")
        } catch {
            #expect(error.description.contains("route \"signify-ai-budget\" is not defined"))
        }
    }

    @Test("credentials are masked in every rendering of a plan")
    func masking() throws {
        let current = try fixtureState()
        var env = fixtureEnvironment
        env["DECK_AWS_SECRET_ACCESS_KEY"] = "rotated/SECRET+value"
        let rotated = load(
            try fixtureText().replacingOccurrences(of: "dev-team-key", with: "new-dev-team-key"),
            environment: env)
        let plan = try Planner.plan(current: current.state, desired: rotated.state, selectTags: rotated.selectTags)
        let text = PlanRenderer.text(plan).joined(separator: "\n")
        let json = PlanRenderer.json(plan)
        for secret in [
            "dev-team-key", "new-dev-team-key", "rotated/SECRET+value",
            fixtureEnvironment["DECK_AWS_SECRET_ACCESS_KEY"] ?? "?", "AKIDEXAMPLE",
        ] {
            #expect(!text.contains(secret), "text leaks \(secret)")
            #expect(!json.contains(secret), "json leaks \(secret)")
        }
        #expect(text.contains("creating key-auth m-key for consumer signify-dev-team"))
        #expect(text.contains("deleting key-auth m-key for consumer signify-dev-team"))
        #expect(text.contains("  - config.auth.aws_secret_access_key: \"[masked]\""))
        #expect(
            json.contains("\"updating\": 1") && json.contains("\"creating\": 1") && json.contains("\"deleting\": 1"))
    }
}
