import BudgetConfig
import Testing

@Suite("Canonical state rendered back to decK YAML")
struct RoundTripTests {
    func reload(_ state: ConfigState, selectTags: [String] = []) -> LoadedConfig {
        let text = DeckRenderer(secrets: .revealed).render(state, selectTags: selectTags)
        return ConfigLoader.load([ConfigSource(name: "rendered.yaml", text: text)], environment: [:])
    }

    @Test("the fixture: parse, render, parse gives the same state")
    func fixtureRoundTrip() throws {
        let first = load(try fixtureText())
        let second = reload(first.state, selectTags: first.selectTags)
        #expect(second.errorLines == [])
        #expect(second.state == first.state)
        #expect(second.selectTags == first.selectTags)
    }

    @Test("rendering is deterministic and masks secrets unless asked")
    func deterministic() throws {
        let state = load(try fixtureText()).state
        let once = DeckRenderer(secrets: .masked).render(state)
        #expect(once == DeckRenderer(secrets: .masked).render(ConfigState(state.sortedEntities.reversed())))
        #expect(once.contains("aws_secret_access_key: \"[masked]\""))
        #expect(
            once.contains("key_hash: sha256:\(KeyHash(key: "dev-team-key").hex)")
                || once.contains("key_hash: \"sha256:"))
    }

    @Test("generated states survive the round trip", arguments: 0..<40)
    func generatedRoundTrip(seed: UInt64) {
        var generator = StateGenerator(seed: seed)
        let state = generator.state()
        let loaded = reload(state)
        #expect(loaded.errorLines == [], "seed \(seed)")
        #expect(loaded.state == state, "seed \(seed)")
    }
}

/// Builds random but valid states, with awkward strings, to test rendering and reading as a pair.
struct StateGenerator {
    var rng: SplitMix64

    init(seed: UInt64) { rng = SplitMix64(seed: seed) }

    mutating func pick<T>(_ items: [T]) -> T { items[Int(rng.next() % UInt64(items.count))] }
    mutating func chance(_ percent: UInt64) -> Bool { rng.next() % 100 < percent }

    mutating func name(_ prefix: String) -> String {
        let odd = [
            "", "-x", " with space", ": colon", "#hash", "\"quoted\"", "ünïcode", "123", "true", "null", "~",
            "yes", "0x1F", "1e5", "-", "'single'", "back\\slash", "tab\tchar", "line\nbreak",
        ]
        return prefix + String(rng.next() % 1000) + pick(odd)
    }

    mutating func tags() -> [String] {
        normalizeTags((0..<Int(rng.next() % 3)).map { _ in name("t") })
    }

    mutating func state() -> ConfigState {
        var state = ConfigState()
        var services: [String] = []
        for _ in 0..<(1 + rng.next() % 3) {
            var service = Service(name: name("svc"))
            service.host = pick(["example.com", "10.0.0.1", "bedrock-runtime.us-east-1.amazonaws.com"])
            service.port = Int(1 + rng.next() % 65535)
            service.scheme = pick(["http", "https"])
            service.path = chance(30) ? "/p/" + String(rng.next() % 9) : nil
            service.retries = Int(rng.next() % 10)
            service.enabled = chance(80)
            service.tags = tags()
            state.insert(.service(service))
            services.append(service.name)
        }
        var routes: [String] = []
        for _ in 0..<(1 + rng.next() % 4) {
            var route = Route(name: name("route"))
            route.service = chance(85) ? pick(services) : nil
            route.paths = ["/" + String(rng.next() % 100), "/ai/x" + String(rng.next() % 5)]
            route.methods = chance(50) ? ["POST"] : []
            route.stripPath = chance(50)
            route.tags = tags()
            state.insert(.route(route))
            routes.append(route.name)
        }
        var groups: [String] = []
        for _ in 0..<(rng.next() % 3) {
            var group = ConsumerGroup(name: name("group"))
            group.tags = tags()
            state.insert(.consumerGroup(group))
            groups.append(group.name)
        }
        var consumers: [String] = []
        for _ in 0..<(rng.next() % 6) {
            var consumer = Consumer(username: name("user"), customID: chance(30) ? name("cid") : nil)
            consumer.tags = tags()
            guard state.insert(.consumer(consumer)) else { continue }
            consumers.append(consumer.name)
            var key = KeyAuthCredential(consumer: consumer.name, keyHash: KeyHash(key: name("key")))
            key.tags = tags()
            state.insert(.keyAuth(key))
            if let group = groups.isEmpty ? nil : pick(groups) {
                state.insert(.consumerGroupConsumer(ConsumerGroupMembership(consumer: consumer.name, group: group)))
            }
        }
        var proxy = AIProxyConfig()
        proxy.model.name = "anthropic.claude-3-haiku-20240307-v1:0"
        proxy.model.options.awsRegion = pick(["us-east-1", "eu-west-3"])
        proxy.model.options.maxTokens = chance(50) ? Int(1 + rng.next() % 4096) : nil
        proxy.model.options.inputCost = 0.25
        proxy.model.options.outputCost = 1.25
        proxy.model.options.temperature = chance(50) ? 0.7 : nil
        if chance(50) {
            proxy.auth.awsAccessKeyID = Secret("AKID" + String(rng.next() % 1000))
            proxy.auth.awsSecretAccessKey = Secret(name("secret/+"))
        }
        proxy.maxRequestBodySize = chance(50) ? Int(rng.next() % 1_000_000) : nil
        proxy.llmFormat = pick(AIProxyConfig.LLMFormat.allCases)
        var proxyPlugin = Plugin(config: .aiProxy(proxy), scope: PluginScope(service: services[0]))
        proxyPlugin.tags = tags()
        state.insert(.plugin(proxyPlugin))
        for route in routes where chance(50) {
            var keyAuth = KeyAuthConfig()
            keyAuth.keyNames = [pick(["apikey", "x-api-key"])]
            keyAuth.hideCredentials = chance(50)
            state.insert(.plugin(Plugin(config: .keyAuth(keyAuth), scope: PluginScope(route: route))))
        }
        for group in groups {
            var limits = AIRateLimitingAdvancedConfig()
            limits.llmProviders = [
                .init(
                    name: "bedrock",
                    windows: [
                        .init(limit: Double(1 + rng.next() % 1_000_000), windowSize: 86400),
                        .init(limit: pick([0.5, 1.25, 100]), windowSize: 60),
                    ])
            ]
            limits.identifier = pick([.consumer, .consumerGroup, .credential])
            limits.windowType = pick([.sliding, .fixed])
            limits.tokensCountStrategy = pick([.totalTokens, .promptTokens, .completionTokens, .cost])
            limits.enforcement = pick([.soft, .hard])
            limits.errorMessage = name("msg")
            limits.hideClientHeaders = chance(20)
            var plugin = Plugin(
                config: .aiRateLimitingAdvanced(limits),
                scope: PluginScope(service: services[0], consumerGroup: group))
            plugin.instanceName = chance(30) ? name("inst") : nil
            plugin.enabled = chance(90)
            plugin.tags = tags()
            state.insert(.plugin(plugin))
        }
        return state
    }
}

/// A small, seedable generator so that every failing case can be replayed by its seed.
struct SplitMix64 {
    var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
