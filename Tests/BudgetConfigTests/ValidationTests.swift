import BudgetConfig
import Testing

@Suite("Validation rules, each with its location")
struct ValidationTests {
    /// Errors of a file whose only rate-limit plugin has `config`.
    func rateLimitErrors(_ config: String) -> [String] {
        load(minimalFile(rateLimitConfig: config)).errorLines
    }

    @Test("more windows than a reservation carries is a located error, not a budget that cannot be charged")
    func tooManyWindows() {
        let count = ConfigLimits.maxWindowsPerProvider + 1
        let limits = Array(repeating: "10", count: count).joined(separator: ", ")
        let sizes = (1...count).map { String($0 * 60) }.joined(separator: ", ")
        let errors = rateLimitErrors("llm_providers: [{name: bedrock, limit: [\(limits)], window_size: [\(sizes)]}]")
        #expect(errors.count == 1)
        #expect(
            errors.first?.hasSuffix(
                "plugins[0].config.llm_providers[0].limit: at most 64 windows per provider, found 65") == true)
        let fine = ConfigLimits.maxWindowsPerProvider
        #expect(rateLimitErrors(
            "llm_providers: [{name: bedrock, limit: [\(Array(repeating: "10", count: fine).joined(separator: ", "))], "
                + "window_size: [\((1...fine).map { String($0 * 60) }.joined(separator: ", "))]}]").isEmpty)
    }

    @Test(
        "limit must be a positive, finite number",
        arguments: [
            (
                "[0]",
                "config.yaml:19:47: plugins[0].config.llm_providers[0].limit[0]: 0 is out of range: expected a number greater than 0 and at most 1000000000000000"
            ),
            (
                "[-5]",
                "config.yaml:19:47: plugins[0].config.llm_providers[0].limit[0]: -5 is out of range: expected a number greater than 0 and at most 1000000000000000"
            ),
            (
                "[1e30]",
                "config.yaml:19:47: plugins[0].config.llm_providers[0].limit[0]: 1e30 is out of range: expected a number greater than 0 and at most 1000000000000000"
            ),
            (
                "[lots]",
                "config.yaml:19:47: plugins[0].config.llm_providers[0].limit[0]: expected a number greater than 0 and at most 1000000000000000, found a string"
            ),
        ])
    func limitRange(limit: String, expected: String) {
        #expect(rateLimitErrors("llm_providers: [{name: bedrock, limit: \(limit), window_size: [60]}]") == [expected])
    }

    @Test(
        "window_size must be whole seconds within a year",
        arguments: [
            ("[0.5]", "expected an integer (seconds) from 1 to 31536000, found 0.5"),
            ("[0]", "0 is out of range: expected an integer (seconds) from 1 to 31536000"),
            ("[31536001]", "31536001 is out of range: expected an integer (seconds) from 1 to 31536000"),
        ])
    func windowSize(size: String, message: String) {
        #expect(
            rateLimitErrors("llm_providers: [{name: bedrock, limit: [10], window_size: \(size)}]")
                == ["config.yaml:19:66: plugins[0].config.llm_providers[0].window_size[0]: \(message)"])
    }

    @Test("llm_format openai, anthropic and bedrock are served; Kong's other formats and typos are located errors")
    func llmFormats() {
        func file(_ format: String) -> String {
            minimalFile().replacing(
                "route_type: llm/v1/chat", with: "route_type: llm/v1/chat\n              llm_format: \(format)")
        }
        for format in AIProxyConfig.LLMFormat.allCases {
            let loaded = load(file(format.rawValue))
            #expect(loaded.errorLines == [])
            let formats = loaded.state.plugins.compactMap { plugin -> AIProxyConfig.LLMFormat? in
                if case .aiProxy(let config) = plugin.config { config.llmFormat } else { nil }
            }
            #expect(formats == [format])
        }
        #expect(
            load(file("gemini")).errorLines == [
                "config.yaml:13:27: services[0].routes[0].plugins[1].config.llm_format: llm_format \"gemini\" is not "
                    + "served by this gateway yet; it serves \"openai\", \"anthropic\", \"bedrock\""
            ])
        #expect(
            load(file("antropic")).errorLines == [
                "config.yaml:13:27: services[0].routes[0].plugins[1].config.llm_format: unknown llm_format "
                    + "\"antropic\"; expected one of \"openai\", \"anthropic\", \"bedrock\""
            ])
    }

    @Test("86400.0 is accepted as whole seconds")
    func integralFloat() {
        #expect(rateLimitErrors("llm_providers: [{name: bedrock, limit: [10], window_size: [86400.0]}]") == [])
    }

    @Test("limit and window_size arrays must have the same, non-zero length")
    func arrayLengths() {
        #expect(
            rateLimitErrors("llm_providers: [{name: bedrock, limit: [10, 20], window_size: [60]}]") == [
                "config.yaml:19:69: plugins[0].config.llm_providers[0].window_size: There must be a matching number of "
                    + "window limits and sizes (limit has 2, window_size has 1)"
            ])
        #expect(
            rateLimitErrors("llm_providers: [{name: bedrock, limit: [], window_size: []}]") == [
                "config.yaml:19:23: plugins[0].config.llm_providers[0]: limit and window_size need at least one value each"
            ])
        #expect(
            rateLimitErrors("llm_providers: []") == [
                "config.yaml:19:22: plugins[0].config.llm_providers: llm_providers needs at least one entry (name, limit, window_size)"
            ])
    }

    @Test("provider names are Kong's, unique, and match the ai-proxy of the governed routes")
    func providers() {
        #expect(
            rateLimitErrors("llm_providers: [{name: bedrok, limit: [10], window_size: [60]}]") == [
                "config.yaml:19:30: plugins[0].config.llm_providers[0].name: unknown provider \"bedrok\"; expected one of "
                    + "anthropic, azure, bedrock, cohere, gemini, huggingface, llama2, mistral, openai, requestPrompt, "
                    + "customCost; did you mean \"bedrock\"?"
            ])
        #expect(
            rateLimitErrors(
                """
                llm_providers:
                  - {name: bedrock, limit: [10], window_size: [60]}
                  - {name: bedrock, limit: [20], window_size: [3600]}
                """) == ["config.yaml:21:18: plugins[0].config.llm_providers[1].name: Provider 'bedrock' is not unique"]
        )
        #expect(
            rateLimitErrors("llm_providers: [{name: openai, limit: [10], window_size: [60]}]") == [
                "config.yaml:19:30: plugins[0].config.llm_providers[0].name: provider \"openai\" matches no ai-proxy "
                    + "model.provider on the routes this plugin governs (route chat uses \"bedrock\"), so it would never count tokens"
            ])
    }

    @Test("strategy redis needs a redis block and a sync_rate; local refuses a sync_rate")
    func strategies() {
        #expect(
            rateLimitErrors(
                """
                strategy: redis
                sync_rate: 1
                llm_providers: [{name: bedrock, limit: [10], window_size: [60]}]
                """) == [
                    "config.yaml:19:17: plugins[0].config.strategy: No redis config provided: strategy \"redis\" needs "
                        + "redis.host (or redis.sentinel_nodes or redis.cluster_nodes); set one, or use strategy: local"
                ])
        #expect(
            rateLimitErrors(
                """
                strategy: redis
                sync_rate: 1
                redis: {host: 127.0.0.1}
                llm_providers: [{name: bedrock, limit: [10], window_size: [60]}]
                """) == [])
        #expect(
            rateLimitErrors(
                """
                strategy: cluster
                llm_providers: [{name: bedrock, limit: [10], window_size: [60]}]
                """) == [
                    "config.yaml:19:7: plugins[0].config: sync_rate is required if not using a local strategy",
                    "config.yaml:19:17: plugins[0].config.strategy: strategy \"cluster\" (counters in Kong's database) is "
                        + "not supported: use local (this node) or redis (shared by several nodes)",
                ])
        #expect(
            rateLimitErrors(
                """
                sync_rate: 5
                llm_providers: [{name: bedrock, limit: [10], window_size: [60]}]
                """) == [
                    "config.yaml:19:18: plugins[0].config.sync_rate: sync_rate cannot be configured when using a local strategy"
                ])
    }

    @Test("Kong's whole redis block loads; Cluster, a replica role and half a Sentinel setting are located errors")
    func redisBlock() {
        let kong = """
            strategy: redis
            sync_rate: 0
            redis:
              host: redis.internal
              port: 6380
              database: 2
              username: budget
              password: s3cret
              ssl: true
              ssl_verify: true
              server_name: redis.internal
              connect_timeout: 1000
              send_timeout: 1500
              read_timeout: 2500
              keepalive_pool_size: 64
              keepalive_backlog: 16
              sentinel_master: null
              sentinel_role: master
              sentinel_nodes: null
              sentinel_username: null
              sentinel_password: null
              cluster_nodes: null
              cluster_max_redirections: 5
              connection_is_proxied: false
            llm_providers: [{name: bedrock, limit: [10], window_size: [60]}]
            """
        #expect(rateLimitErrors(kong) == [])
        let loaded = load(minimalFile(rateLimitConfig: kong))
        let redis = loaded.state.fleetRedis
        #expect(redis?.readTimeoutMilliseconds == 2500)
        #expect(redis?.sendTimeoutMilliseconds == 1500)
        #expect(redis?.keepalivePoolSize == 64)
        #expect(loaded.state.redisCountedPlugins.count == 1)
        #expect(
            rateLimitErrors(
                """
                strategy: redis
                sync_rate: 0
                redis: {cluster_nodes: [{ip: 10.0.0.1, port: 7000}]}
                llm_providers: [{name: bedrock, limit: [10], window_size: [60]}]
                """).first?.contains("Redis Cluster (redis.cluster_nodes) is not supported") == true)
        #expect(
            rateLimitErrors(
                """
                strategy: redis
                sync_rate: 0
                redis: {sentinel_master: m, sentinel_role: slave, sentinel_nodes: [{host: 10.0.0.1, port: 26379}]}
                llm_providers: [{name: bedrock, limit: [10], window_size: [60]}]
                """).first?.contains("sentinel_role \"slave\" is not supported") == true)
        #expect(
            rateLimitErrors(
                """
                strategy: redis
                sync_rate: 0
                redis: {sentinel_master: m}
                llm_providers: [{name: bedrock, limit: [10], window_size: [60]}]
                """).contains { $0.contains("sentinel_master needs sentinel_nodes") })
        // sync_rate -1 keeps the counters on each node.
        let perNode = load(
            minimalFile(
                rateLimitConfig: """
                    strategy: redis
                    sync_rate: -1
                    redis: {host: 127.0.0.1}
                    llm_providers: [{name: bedrock, limit: [10], window_size: [60]}]
                    """))
        #expect(perNode.errorLines == [])
        #expect(perNode.state.redisCountedPlugins.isEmpty)
        #expect(perNode.state.fleetRedis?.host == "127.0.0.1")
    }

    @Test("identifier consumer-group needs a plugin scoped to a consumer group")
    func groupIdentifier() {
        #expect(
            rateLimitErrors(
                """
                identifier: consumer-group
                llm_providers: [{name: bedrock, limit: [10], window_size: [60]}]
                """
            ).first?.hasPrefix("config.yaml:19:19: plugins[0].config.identifier: identifier \"consumer-group\" shares")
                == true)
        #expect(
            rateLimitErrors(
                """
                identifier: ip
                llm_providers: [{name: bedrock, limit: [10], window_size: [60]}]
                """) == [
                    "config.yaml:19:19: plugins[0].config.identifier: identifier \"ip\" is not supported; budgets are "
                        + "kept per consumer, consumer-group or credential"
                ])
    }

    @Test("the cost strategy needs prices on the ai-proxy")
    func costNeedsPrices() {
        #expect(
            rateLimitErrors(
                """
                tokens_count_strategy: cost
                llm_providers: [{name: bedrock, limit: [0.5], window_size: [86400]}]
                """) == [
                    "config.yaml:19:30: plugins[0].config.tokens_count_strategy: tokens_count_strategy \"cost\" needs "
                        + "model.options.input_cost and output_cost on the ai-proxy of route chat"
                ])
    }

    @Test("unknown fields and plugins are errors with a suggestion")
    func unknownNames() {
        let loaded = load(
            minimalFile(
                """
                consumers:
                  - username: alice
                    custom_di: a
                plugins:
                  - name: rate-limiting
                    config: {minute: 5}
                """))
        #expect(
            loaded.errorLines == [
                "config.yaml:18:5: consumers[0].custom_di: unknown field \"custom_di\" in consumer; did you mean \"custom_id\"?",
                "config.yaml:20:11: plugins[0].name: plugin \"rate-limiting\" is not supported by this gateway (supported: "
                    + "key-auth, ai-proxy, ai-rate-limiting-advanced)",
            ])
    }

    @Test("names, keys and references: duplicates and dangling references are located")
    func uniquenessAndReferences() {
        let loaded = load(
            minimalFile(
                """
                consumer_groups: [{name: gold}]
                consumers:
                  - username: alice
                    keyauth_credentials: [{key: shared}]
                  - username: bob
                    keyauth_credentials: [{key: shared}]
                    groups: [{name: silver}]
                  - username: alice
                plugins:
                  - name: key-auth
                    route: nowhere
                """))
        #expect(
            loaded.errorLines == [
                "config.yaml:21:27: consumers[1].keyauth_credentials[0]: this key is already the key of consumer alice "
                    + "(first at config.yaml:19:27, consumers[0].keyauth_credentials[0]); keys must be unique",
                "config.yaml:22:21: consumers[1].groups[0].name: consumer group \"silver\" is not defined",
                "config.yaml:23:5: consumers[2]: consumer \"alice\" is defined more than once (first at config.yaml:18:5, consumers[0])",
                "config.yaml:26:12: plugins[0].route: route \"nowhere\" is not defined",
            ])
    }

    @Test("an empty key and a key with control characters are refused")
    func badKeys() {
        let loaded = load(
            """
            _format_version: "3.0"
            consumers:
              - username: alice
                keyauth_credentials: [{key: ""}, {key: "a\\u0007b"}]
            """)
        #expect(
            loaded.errorLines == [
                "config.yaml:4:33: consumers[0].keyauth_credentials[0].key: must not be empty",
                "config.yaml:4:44: consumers[0].keyauth_credentials[1].key: a key cannot contain control characters (it travels in an HTTP header)",
            ])
    }

    @Test("a real Kong dump's default fields load quietly; set ones are named once")
    func kongDumpFields() {
        let loaded = load(
            """
            _format_version: "3.0"
            _workspace: null
            services:
              - name: s1
                host: example.com
                protocol: https
                port: 443
                retries: 5
                connect_timeout: 60000
                tls_verify: null
                ca_certificates: null
                enabled: true
                routes:
                  - name: r1
                    paths: [/a]
                    regex_priority: 0
                    path_handling: v0
                    https_redirect_status_code: 426
                    request_buffering: true
                    response_buffering: true
                    hosts: null
                    strip_path: true
                  - name: r2
                    paths: [/b]
                    path_handling: v1
                  - name: r3
                    paths: [/c]
                    path_handling: v1
            """)
        #expect(loaded.errorLines == [])
        #expect(
            loaded.warningLines == [
                "config.yaml:25:9: warning: services[0].routes[1].path_handling: route field path_handling has no effect "
                    + "in this gateway and is ignored"
            ])
    }

    @Test("Kong fields that change routing here are refused, not ignored")
    func unsupportedMatching() {
        let loaded = load(
            minimalFile(
                """
                routes:
                  - name: by-host
                    service: llm
                    paths: [/x]
                    hosts: [example.com]
                """))
        #expect(
            loaded.errorLines == [
                "config.yaml:20:5: routes[0].hosts: route matching by this field is not supported; routes match by path prefix and method"
            ])
    }

    @Test("ai-proxy: only bedrock and llm/v1/chat, both AWS keys or neither, allow_override false")
    func aiProxyRules() {
        let loaded = load(
            """
            _format_version: "3.0"
            plugins:
              - name: ai-proxy
                config:
                  route_type: llm/v1/embeddings
                  auth: {aws_access_key_id: AKID, allow_override: true}
                  model: {provider: openai, name: gpt-4o}
            """)
        #expect(
            loaded.errorLines == [
                "config.yaml:5:19: plugins[0].config.route_type: route_type \"llm/v1/embeddings\" is not supported; this gateway serves \"llm/v1/chat\"",
                "config.yaml:6:13: plugins[0].config.auth: set both aws_access_key_id and aws_secret_access_key, or neither "
                    + "(then the AWS environment of the data plane is used)",
                "config.yaml:6:55: plugins[0].config.auth.allow_override: must be false for provider bedrock, as Kong requires",
                "config.yaml:7:25: plugins[0].config.model.provider: provider \"openai\" is not supported; this gateway forwards to \"bedrock\"",
            ])
    }

    @Test("every problem is reported, not only the first")
    func allProblems() {
        let loaded = load(
            """
            _format_version: "2.1"
            services: [{name: a}]
            consumers: [{tags: [x]}]
            upstreams: [{name: u}]
            """)
        #expect(
            loaded.errorLines == [
                "config.yaml:1:18: _format_version: expected \"3.0\" (decK's format for Kong 3.x), found \"2.1\"",
                "config.yaml:2:12: services[0]: host (or url) is required",
                "config.yaml:3:13: consumers[0]: a consumer needs a username or a custom_id",
                "config.yaml:4:1: upstreams: upstreams are not supported by this gateway; remove this section",
            ])
    }
}
