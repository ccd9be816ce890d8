import BudgetConfig
import Foundation
import Testing

@Suite("Every decK nesting form")
struct NestingTests {
    @Test("routes and plugins nested under services, and a top-level route naming its service")
    func servicesAndRoutes() {
        let loaded = load(
            minimalFile(
                """
                routes:
                  - name: loose
                    service: llm
                    paths: [/other]
                    plugins:
                      - name: key-auth
                        config: {key_names: [x-api-key]}
                  - name: by-mapping
                    service: {name: llm}
                    paths: [/third]
                """))
        #expect(loaded.errorLines == [])
        #expect(loaded.state.routes.map(\.name) == ["by-mapping", "chat", "loose"])
        #expect(loaded.state.routes.allSatisfy { $0.service == "llm" })
        let loosePlugin = loaded.state.plugins.first { $0.scope.route == "loose" }
        guard case .keyAuth(let config)? = loosePlugin?.config else {
            Issue.record("key-auth on route loose is missing")
            return
        }
        #expect(config.keyNames == ["x-api-key"])
        #expect(loaded.state.plugins.contains { $0.name == "ai-proxy" && $0.scope == PluginScope(route: "chat") })
    }

    @Test("consumer groups with nested plugins and consumers; consumers with nested groups, keys and plugins")
    func consumersAndGroups() {
        let loaded = load(
            minimalFile(
                """
                consumer_groups:
                  - name: gold
                    consumers:
                      - username: alice
                      - bob
                    plugins:
                      - name: ai-rate-limiting-advanced
                        config:
                          llm_providers: [{name: bedrock, limit: [100], window_size: [60]}]
                consumers:
                  - username: alice
                    keyauth_credentials: [{key: alice-key}]
                    groups: [{name: gold}]
                  - username: bob
                    custom_id: b-42
                    keyauth_credentials:
                      - key_hash: \(KeyHash(key: "bob-key"))
                  - username: carol
                    plugins:
                      - name: ai-rate-limiting-advanced
                        route: chat
                        config:
                          llm_providers: [{name: bedrock, limit: 5, window_size: 3600}]
                """))
        #expect(loaded.errorLines == [])
        let state = loaded.state
        #expect(
            state.memberships == [
                ConsumerGroupMembership(consumer: "alice", group: "gold"),
                ConsumerGroupMembership(consumer: "bob", group: "gold"),
            ])
        #expect(state.keyAuthCredentials.map(\.consumer).sorted() == ["alice", "bob"])
        #expect(state.plugins.contains { $0.scope == PluginScope(consumerGroup: "gold") })
        let carol = state.plugins.first { $0.scope == PluginScope(route: "chat", consumer: "carol") }
        guard case .aiRateLimitingAdvanced(let config)? = carol?.config else {
            Issue.record("carol's plugin is missing")
            return
        }
        // Kong 3.7–3.9 scalars are read as one-element arrays.
        #expect(config.llmProviders.first?.windows == [.init(limit: 5, windowSize: 3600)])
    }

    @Test("top-level plugins refer to service, route, consumer and consumer group by name")
    func topLevelScopes() {
        let loaded = load(
            minimalFile(
                """
                consumer_groups: [{name: gold}]
                consumers: [{username: alice, groups: [{name: gold}]}]
                plugins:
                  - name: ai-rate-limiting-advanced
                    service: llm
                    consumer_group: gold
                    config: {llm_providers: [{name: bedrock, limit: [1000], window_size: [60]}], identifier: consumer-group}
                  - name: ai-rate-limiting-advanced
                    route: chat
                    consumer: alice
                    config: {llm_providers: [{name: bedrock, limit: [10], window_size: [60]}]}
                  - name: ai-rate-limiting-advanced
                    config: {llm_providers: [{name: bedrock, limit: [1e6], window_size: [86400]}]}
                """))
        #expect(loaded.errorLines == [])
        let scopes = Set(loaded.state.plugins.filter { $0.name == "ai-rate-limiting-advanced" }.map(\.scope))
        #expect(
            scopes == [
                PluginScope(service: "llm", consumerGroup: "gold"),
                PluginScope(route: "chat", consumer: "alice"),
                PluginScope(),
            ])
    }

    @Test("several files merge, and _info.select_tags tags every entity of its file")
    func severalFiles() {
        let first = ConfigSource(
            name: "a.yaml",
            text: minimalFile().replacingOccurrences(
                of: "_format_version: \"3.0\"", with: "_format_version: \"3.0\"\n_info: {select_tags: [team-a]}"))
        let second = ConfigSource(
            name: "b.yaml",
            text: """
                _format_version: "3.0"
                _info: {select_tags: [team-a]}
                consumers: [{username: alice, tags: [own], keyauth_credentials: [{key: k1}]}]
                """)
        let loaded = ConfigLoader.load([first, second], environment: [:])
        #expect(loaded.errorLines == [])
        #expect(loaded.selectTags == ["team-a"])
        #expect(loaded.state.consumers.first?.tags == ["own", "team-a"])
        #expect(loaded.state.keyAuthCredentials.first?.tags == ["team-a"])
        #expect(loaded.state.services.first?.tags == ["team-a"])
    }

    @Test("files that declare different select tags are refused")
    func selectTagMismatch() {
        let loaded = ConfigLoader.load(
            [
                ConfigSource(name: "a.yaml", text: "_format_version: \"3.0\"\n_info: {select_tags: [a]}\n"),
                ConfigSource(name: "b.yaml", text: "_format_version: \"3.0\"\n_info: {select_tags: [b]}\n"),
            ], environment: [:])
        #expect(loaded.errorLines.count == 1)
        #expect(
            loaded.errorLines.first?.hasPrefix("b.yaml:2:22: _info.select_tags: _info.select_tags [\"b\"] differ")
                == true)
    }
}
