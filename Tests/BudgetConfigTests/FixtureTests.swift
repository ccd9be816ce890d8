import BudgetConfig
import Testing

@Suite("The user's Kong fixture")
struct FixtureTests {
    @Test("validates unchanged with the two DECK_ variables set")
    func fixtureValidates() throws {
        let loaded = load(try fixtureText())
        #expect(loaded.errorLines == [])
        #expect(loaded.warningLines == [])
        #expect(loaded.selectTags == ["signify-demo"])
    }

    @Test("holds the 19 entities of the scenario, each tagged with the select tag")
    func fixtureEntities() throws {
        let state = load(try fixtureText()).state
        #expect(state.services.map(\.name) == ["signify-bedrock"])
        #expect(state.routes.map(\.name) == ["signify-ai-budget"])
        #expect(state.routes.first?.paths == ["/ai/budget"])
        #expect(state.routes.first?.methods == ["POST"])
        #expect(state.consumerGroups.map(\.name) == ["signify-basic", "signify-enterprise", "signify-premium"])
        #expect(state.consumers.map(\.name) == ["signify-analytics", "signify-dev-team", "signify-production"])
        #expect(state.keyAuthCredentials.count == 3)
        #expect(state.memberships.count == 3)
        #expect(state.plugins.count == 5)
        #expect(state.count == 19)
        #expect(
            state.sortedEntities.filter { $0.id.kind != .consumerGroupConsumer }.allSatisfy {
                $0.tags == ["signify-demo"]
            })

        let basic = state.plugins.first { $0.scope.consumerGroup == "signify-basic" }
        guard case .aiRateLimitingAdvanced(let limits)? = basic?.config else {
            Issue.record("no rate-limit plugin for signify-basic")
            return
        }
        #expect(limits.llmProviders == [.init(name: "bedrock", windows: [.init(limit: 10000, windowSize: 86400)])])
        #expect(limits.identifier == .consumer)
        #expect(limits.windowType == .sliding)
        #expect(limits.enforcement == .soft)
        #expect(limits.errorMessage == "API rate limit exceeded")

        let proxy = state.plugins.first { $0.name == "ai-proxy" }
        guard case .aiProxy(let config)? = proxy?.config else {
            Issue.record("no ai-proxy plugin")
            return
        }
        #expect(proxy?.scope == PluginScope(route: "signify-ai-budget"))
        #expect(config.model.name == "anthropic.claude-3-haiku-20240307-v1:0")
        #expect(config.model.options.awsRegion == "us-east-1")
        #expect(config.auth.awsSecretAccessKey?.revealed == fixtureEnvironment["DECK_AWS_SECRET_ACCESS_KEY"])
        #expect(config.maxRequestBodySize == 0)
    }

    @Test("keys are kept as hashes, never in plaintext")
    func keysHashed() throws {
        let state = load(try fixtureText()).state
        let devKey = state.keyAuthCredentials.first { $0.consumer == "signify-dev-team" }
        #expect(devKey?.keyHash == KeyHash(key: "dev-team-key"))
        #expect(devKey?.displayName == "m-key")
        let dump = DeckRenderer(secrets: .masked).render(state)
        #expect(!dump.contains("dev-team-key"))
        #expect(!dump.contains(fixtureEnvironment["DECK_AWS_SECRET_ACCESS_KEY"] ?? "?"))
    }

    @Test("without the DECK_ variables, both template lines are located errors")
    func fixtureNeedsEnvironment() throws {
        let loaded = load(try fixtureText(), environment: [:])
        #expect(
            loaded.errorLines == [
                "config.yaml:37:36: environment variable 'DECK_AWS_ACCESS_KEY_ID' present in state file but not set",
                "config.yaml:38:40: environment variable 'DECK_AWS_SECRET_ACCESS_KEY' present in state file but not set",
            ])
    }

    @Test("a typo in a consumer's group name is reported where it was written")
    func groupTypo() throws {
        let text = try fixtureText()
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        // The second consumer's `groups: - name: signify-premium`.
        let index = try #require(lines.indices.filter { lines[$0] == "      - name: signify-premium" }.first)
        lines[index] = "      - name: signify-premum"
        let loaded = load(lines.joined(separator: "\n"))
        #expect(
            loaded.errorLines == [
                "config.yaml:\(index + 1):15: consumers[1].groups[0].name: consumer group \"signify-premum\" is not defined"
            ])
    }

    @Test("a first sync of the fixture creates 19 entities in decK's order")
    func firstSyncPlan() throws {
        let loaded = load(try fixtureText())
        let plan = try Planner.plan(current: ConfigState(), desired: loaded.state, selectTags: loaded.selectTags)
        #expect(plan.created == 19)
        #expect(plan.updated == 0 && plan.deleted == 0)
        let lines = PlanRenderer.text(plan)
        #expect(lines.contains("creating consumer signify-dev-team"))
        #expect(lines.contains("creating key-auth m-key for consumer signify-dev-team"))
        #expect(lines.contains("creating plugin ai-rate-limiting-advanced for consumer-group signify-basic"))
        #expect(lines.contains("creating plugin ai-proxy for route signify-ai-budget"))
        #expect(Array(lines.suffix(4)) == ["Summary:", "  Created: 19", "  Updated: 0", "  Deleted: 0"])
        let levels = plan.changes.map(\.id.kind.level)
        #expect(levels == levels.sorted())
    }
}
