/// Decodes the `config` of the three plugins, field by field, with Kong's defaults and ranges.
struct PluginConfigDecoder {
    let context: DecodeContext

    /// Provider names Kong's ai-rate-limiting-advanced and ai-proxy schemas know.
    static let kongProviders = [
        "anthropic", "azure", "bedrock", "cohere", "gemini", "huggingface", "llama2", "mistral", "openai",
        "requestPrompt", "customCost",
    ]

    // MARK: key-auth

    func keyAuth(_ reader: MappingReader?) -> KeyAuthConfig {
        var config = KeyAuthConfig()
        guard let reader else { return config }
        if let names = reader.strings("key_names") {
            for (index, name) in names.enumerated()
            where !name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") }) {
                let item = reader.list("key_names")[index]
                context.error(
                    "key names may hold only letters, digits, _ and -", at: item.node.location, path: item.path)
            }
            if names.isEmpty {
                context.error(
                    "key_names needs at least one name", at: reader.location, path: reader.pathOf("key_names"))
            } else {
                config.keyNames = names
            }
        }
        config.keyInHeader = reader.bool("key_in_header", default: true)
        config.keyInQuery = reader.bool("key_in_query", default: true)
        config.keyInBody = reader.bool("key_in_body", default: false)
        config.hideCredentials = reader.bool("hide_credentials", default: false)
        config.anonymous = reader.string("anonymous")
        config.runOnPreflight = reader.bool("run_on_preflight", default: true)
        config.realm = reader.string("realm")
        if !config.keyInHeader && !config.keyInQuery && !config.keyInBody {
            context.error(
                "key_in_header, key_in_query and key_in_body are all false, so no key can ever be found",
                at: reader.location, path: reader.path)
        }
        reader.finish(ignoring: ["identity_realms": .any])
        return config
    }

    // MARK: ai-proxy

    func aiProxy(_ reader: MappingReader) -> AIProxyConfig? {
        var config = AIProxyConfig()
        if let routeType = reader.string("route_type", required: true), routeType != config.routeType {
            context.error(
                "route_type \"\(routeType)\" is not supported; this gateway serves \"llm/v1/chat\"",
                at: reader.value("route_type")?.location ?? reader.location, path: reader.pathOf("route_type"))
        }
        if let auth = reader.mapping("auth", kind: "ai-proxy auth") {
            config.auth.awsAccessKeyID = auth.string("aws_access_key_id").map(Secret.init)
            config.auth.awsSecretAccessKey = auth.string("aws_secret_access_key").map(Secret.init)
            config.auth.allowOverride = auth.bool("allow_override", default: false)
            if (config.auth.awsAccessKeyID == nil) != (config.auth.awsSecretAccessKey == nil) {
                context.error(
                    "set both aws_access_key_id and aws_secret_access_key, or neither (then the AWS "
                        + "environment of the data plane is used)", at: auth.location, path: auth.path)
            }
            if config.auth.allowOverride {
                context.error(
                    "must be false for provider bedrock, as Kong requires",
                    at: auth.value("allow_override")?.location ?? auth.location, path: auth.pathOf("allow_override"))
            }
            auth.finish(ignoring: [
                "header_name": .null, "header_value": .null, "param_name": .null, "param_value": .null,
                "param_location": .null, "azure_use_managed_identity": .bool(false), "azure_client_id": .null,
                "azure_client_secret": .null, "azure_tenant_id": .null, "gcp_use_service_account": .bool(false),
                "gcp_service_account_json": .null, "gcp_oauth_scopes": .any,
            ])
        }
        if let model = reader.mapping("model", kind: "ai-proxy model") {
            if let provider = model.string("provider", required: true) {
                if provider != "bedrock" {
                    let known = Self.kongProviders.contains(provider)
                    context.error(
                        known
                            ? "provider \"\(provider)\" is not supported; this gateway forwards to \"bedrock\""
                            : "unknown provider \"\(provider)\"; this gateway forwards to \"bedrock\"",
                        at: model.value("provider")?.location ?? model.location, path: model.pathOf("provider"))
                }
                config.model.provider = provider
            }
            config.model.name = model.string("name", required: true)
            if let options = model.mapping("options", kind: "ai-proxy model options") {
                decodeModelOptions(options, into: &config.model.options)
            }
            model.finish()
        } else {
            context.error(
                "model is required (provider: bedrock and the model name)", at: reader.location, path: reader.path)
        }
        config.responseStreaming = reader.choice("response_streaming", default: .allow)
        if let size = reader.integer("max_request_body_size", in: 0...20_000_000, unit: "bytes") {
            config.maxRequestBodySize = size
        }
        config.modelNameHeader = reader.bool("model_name_header", default: true)
        if let logging = reader.mapping("logging", kind: "ai-proxy logging") {
            config.logStatistics = logging.bool("log_statistics", default: false)
            logging.finish(ignoring: ["log_payloads": .bool(false)])
        }
        if let format = reader.string("llm_format") {
            if let known = AIProxyConfig.LLMFormat(rawValue: format) {
                config.llmFormat = known
            } else {
                let served = AIProxyConfig.LLMFormat.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")
                context.error(
                    AIProxyConfig.LLMFormat.kongOnly.contains(format)
                        ? "llm_format \"\(format)\" is not served by this gateway yet; it serves \(served)"
                        : "unknown llm_format \"\(format)\"; expected one of \(served)",
                    at: reader.value("llm_format")?.location ?? reader.location, path: reader.pathOf("llm_format"))
            }
        }
        reader.finish(ignoring: ["genai_category": .string("text/generation")])
        return config
    }

    private func decodeModelOptions(_ options: MappingReader, into result: inout AIProxyConfig.Options) {
        result.maxTokens = options.integer("max_tokens", in: 1...1_000_000)
        result.inputCost = options.number("input_cost", in: 0...1_000_000)
        result.outputCost = options.number("output_cost", in: 0...1_000_000)
        result.temperature = options.number("temperature", in: 0...5)
        result.topP = options.number("top_p", in: 0...1)
        result.topK = options.integer("top_k", in: 0...500)
        result.anthropicVersion = options.string("anthropic_version")
        if let url = options.string("upstream_url") {
            if ServiceURL(url) != nil {
                result.upstreamURL = url
            } else {
                context.error(
                    "expected an http:// or https:// URL",
                    at: options.value("upstream_url")?.location ?? options.location,
                    path: options.pathOf("upstream_url"))
            }
        }
        if let bedrock = options.mapping("bedrock", kind: "ai-proxy bedrock options") {
            if let region = bedrock.string("aws_region") {
                if region.allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "-") }) {
                    result.awsRegion = region
                } else {
                    context.error(
                        "expected an AWS region such as us-east-1",
                        at: bedrock.value("aws_region")?.location ?? bedrock.location,
                        path: bedrock.pathOf("aws_region"))
                }
            }
            bedrock.finish(
                ignoring: [
                    "performance_config_latency": .null, "embeddings_normalize": .bool(false),
                    "video_output_s3_uri": .null,
                ],
                unsupported: [
                    "aws_assume_role_arn": "assuming a role is not supported; give the data plane credentials directly",
                    "aws_role_session_name":
                        "assuming a role is not supported; give the data plane credentials directly",
                    "aws_sts_endpoint_url":
                        "assuming a role is not supported; give the data plane credentials directly",
                ])
        }
        options.finish(ignoring: [
            "azure_instance": .null, "azure_api_version": .any, "azure_deployment_id": .null,
            "llama2_format": .null, "mistral_format": .null, "upstream_path": .null, "gemini": .null,
            "huggingface": .null, "cohere": .null, "dashscope": .null, "databricks": .null,
            "embeddings_dimensions": .null,
        ])
    }

    // MARK: ai-rate-limiting-advanced

    func aiRateLimiting(_ reader: MappingReader) -> AIRateLimitingAdvancedConfig? {
        var config = AIRateLimitingAdvancedConfig()
        let providers = reader.list("llm_providers")
        if providers.isEmpty {
            context.error(
                "llm_providers needs at least one entry (name, limit, window_size)",
                at: reader.value("llm_providers")?.location ?? reader.location, path: reader.pathOf("llm_providers"))
        }
        var seen: Set<String> = []
        for (node, path) in providers {
            guard let entry = MappingReader(node, path: path, kind: "llm_providers entry", context: context) else {
                continue
            }
            let windows = decodeWindows(entry)
            if let name = entry.string("name", required: true) {
                if !Self.kongProviders.contains(name) {
                    var message =
                        "unknown provider \"\(name)\"; expected one of \(Self.kongProviders.joined(separator: ", "))"
                    if let suggestion = closestName(to: name, among: Self.kongProviders) {
                        message += "; did you mean \"\(suggestion)\"?"
                    }
                    context.error(
                        message, at: entry.value("name")?.location ?? node.location, path: entry.pathOf("name"))
                } else if name == "requestPrompt" || name == "customCost" {
                    context.error(
                        "provider \"\(name)\" runs Lua functions and is not supported; count tokens with a real provider",
                        at: entry.value("name")?.location ?? node.location, path: entry.pathOf("name"))
                } else if !seen.insert(name).inserted {
                    context.error(
                        "Provider '\(name)' is not unique", at: entry.value("name")?.location ?? node.location,
                        path: entry.pathOf("name"))
                } else if let windows {
                    config.llmProviders.append(.init(name: name, windows: windows))
                }
            }
            entry.finish()
        }
        config.strategy = reader.choice("strategy", default: .local)
        config.syncRate = reader.number("sync_rate", in: -1...86_400)
        if let rate = config.syncRate, rate > 0 && rate < 0.02 || rate < 0 && rate != -1 {
            context.error(
                "sync_rate is -1, 0, or at least 0.02 seconds",
                at: reader.value("sync_rate")?.location ?? reader.location,
                path: reader.pathOf("sync_rate"))
        }
        if config.strategy == .local, let rate = config.syncRate, rate > -1 {
            context.error(
                "sync_rate cannot be configured when using a local strategy",
                at: reader.value("sync_rate")?.location ?? reader.location, path: reader.pathOf("sync_rate"))
        }
        if config.strategy != .local && config.syncRate == nil {
            context.error("sync_rate is required if not using a local strategy", at: reader.location, path: reader.path)
        }
        config.windowType = reader.choice("window_type", default: .sliding)
        config.tokensCountStrategy = reader.choice("tokens_count_strategy", default: .totalTokens)
        if let identifier = reader.value("identifier"), case .scalar(let scalar) = identifier.value,
            ["header", "ip", "path", "service"].contains(scalar.text)
        {
            context.error(
                "identifier \"\(scalar.text)\" is not supported; budgets are kept per consumer, "
                    + "consumer-group or credential", at: identifier.location, path: reader.pathOf("identifier"))
        } else {
            config.identifier = reader.choice("identifier", default: .consumer)
        }
        config.errorCode = reader.integer("error_code", in: 400...599) ?? 429
        config.errorMessage =
            reader.string("error_message", allowEmpty: true) ?? AIRateLimitingAdvancedConfig.defaultErrorMessage
        config.hideClientHeaders = reader.bool("hide_client_headers", default: false)
        config.retryAfterJitterMax = reader.integer("retry_after_jitter_max", in: 0...3600, unit: "seconds") ?? 0
        config.enforcement = reader.choice("enforcement", default: .soft)
        config.namespace = reader.string("namespace")
        if let redis = reader.mapping("redis", kind: "redis settings") {
            config.redis = decodeRedis(redis)
        }
        if config.strategy == .redis && config.redis?.hasEndpoint != true {
            context.error(
                "No redis config provided: strategy \"redis\" needs redis.host (or redis.sentinel_nodes or "
                    + "redis.cluster_nodes); set one, or use strategy: local",
                at: reader.value("strategy")?.location ?? reader.location,
                path: reader.pathOf("strategy"))
        }
        if config.strategy == .redis, let redis = config.redis, !redis.clusterNodes.isEmpty {
            context.error(
                "Redis Cluster (redis.cluster_nodes) is not supported: a reservation updates all of a consumer's "
                    + "counters in one atomic script, which Cluster allows only within one hash slot; use one Redis "
                    + "(redis.host) or Sentinel (redis.sentinel_master and sentinel_nodes)",
                at: reader.value("redis")?.location ?? reader.location, path: reader.pathOf("redis"))
        }
        if config.strategy == .cluster {
            context.error(
                "strategy \"cluster\" (counters in Kong's database) is not supported: use local (this node) or "
                    + "redis (shared by several nodes)",
                at: reader.value("strategy")?.location ?? reader.location, path: reader.pathOf("strategy"))
        }
        reader.finish(
            ignoring: [
                "error_hide_providers": .bool(false), "dictionary_name": .string("kong_rate_limiting_counters"),
                "disable_penalty": .bool(false), "llm_format": .string("openai"),
                "decrease_by_fractions_in_redis": .bool(false), "header_name": .null, "path": .null,
            ],
            unsupported: [
                "request_prompt_count_function": "Lua count functions are not supported",
                "custom_cost_count_function": "Lua cost functions are not supported",
                "policies": "policy mode is not supported; give llm_providers with limit and window_size",
            ])
        return config
    }

    /// `limit` and `window_size`: arrays of equal, non-zero length (or single numbers, as before Kong 3.10).
    private func decodeWindows(_ entry: MappingReader) -> [AIRateLimitingAdvancedConfig.WindowLimit]? {
        func items(_ key: String) -> [(node: ConfigNode, path: YAMLPath)]? {
            guard let node = entry.value(key) else {
                entry.context.error("\(key) is required", at: entry.location, path: entry.path)
                return nil
            }
            if case .sequence = node.value { return entry.list(key) }
            return [(node, entry.pathOf(key))]
        }
        guard let limits = items("limit"), let sizes = items("window_size") else { return nil }
        if limits.isEmpty || sizes.isEmpty {
            context.error("limit and window_size need at least one value each", at: entry.location, path: entry.path)
            return nil
        }
        if limits.count != sizes.count {
            context.error(
                "There must be a matching number of window limits and sizes (limit has \(limits.count), "
                    + "window_size has \(sizes.count))", at: entry.value("window_size")?.location ?? entry.location,
                path: entry.pathOf("window_size"))
            return nil
        }
        if limits.count > ConfigLimits.maxWindowsPerProvider {
            context.error(
                "at most \(ConfigLimits.maxWindowsPerProvider) windows per provider, found \(limits.count)",
                at: entry.value("limit")?.location ?? entry.location, path: entry.pathOf("limit"))
            return nil
        }
        var windows: [AIRateLimitingAdvancedConfig.WindowLimit] = []
        var sizesSeen: Set<Int> = []
        var failed = false
        for (limitItem, sizeItem) in zip(limits, sizes) {
            let limit = MappingReader.number(
                limitItem.node, path: limitItem.path, in: 0.000001...1e15, context: context)
            let size = MappingReader.integer(
                sizeItem.node, path: sizeItem.path, in: 1...31_536_000, unit: "seconds",
                context: context)
            guard let limit, let size else { failed = true; continue }
            if !sizesSeen.insert(size).inserted {
                context.error(
                    "window_size \(size) appears twice for this provider", at: sizeItem.node.location,
                    path: sizeItem.path)
                failed = true
                continue
            }
            windows.append(.init(limit: limit, windowSize: size))
        }
        return failed ? nil : windows
    }

    private func decodeRedis(_ reader: MappingReader) -> AIRateLimitingAdvancedConfig.RedisSettings {
        var redis = AIRateLimitingAdvancedConfig.RedisSettings()
        redis.host = reader.string("host")
        redis.port = reader.integer("port", in: 1...65535) ?? 6379
        redis.database = reader.integer("database", in: 0...1000) ?? 0
        redis.username = reader.string("username")
        redis.password = reader.string("password").map(Secret.init)
        redis.ssl = reader.bool("ssl", default: false)
        redis.sslVerify = reader.bool("ssl_verify", default: false)
        redis.serverName = reader.string("server_name")
        // Kong's deprecated `timeout` sets all three.
        let timeout = reader.integer("timeout", in: 1...600_000, unit: "ms")
        redis.timeoutMilliseconds = reader.integer("connect_timeout", in: 1...600_000, unit: "ms") ?? timeout ?? 2000
        redis.sendTimeoutMilliseconds = reader.integer("send_timeout", in: 1...600_000, unit: "ms") ?? timeout ?? 2000
        redis.readTimeoutMilliseconds = reader.integer("read_timeout", in: 1...600_000, unit: "ms") ?? timeout ?? 2000
        redis.keepalivePoolSize = reader.integer("keepalive_pool_size", in: 1...2_147_483_646) ?? 256
        redis.keepaliveBacklog = reader.integer("keepalive_backlog", in: 0...2_147_483_646)
        redis.sentinelMaster = reader.string("sentinel_master")
        if let role = reader.value("sentinel_role"), case .scalar(let scalar) = role.value, !scalar.isNull {
            if ["master", "slave", "any"].contains(scalar.text) {
                if scalar.text != "master" {
                    context.error(
                        "sentinel_role \"\(scalar.text)\" is not supported: budgets are written on every request, "
                            + "and only the master takes writes; use sentinel_role: master",
                        at: role.location, path: reader.pathOf("sentinel_role"))
                }
            } else {
                context.error(
                    "sentinel_role must be one of master, slave, any", at: role.location,
                    path: reader.pathOf("sentinel_role"))
            }
        }
        redis.sentinelNodes = nodeList(reader, "sentinel_nodes")
        redis.sentinelUsername = reader.string("sentinel_username")
        redis.sentinelPassword = reader.string("sentinel_password").map(Secret.init)
        redis.clusterNodes = nodeList(reader, "cluster_nodes")
        redis.clusterMaxRedirections = reader.integer("cluster_max_redirections", in: 1...1000) ?? 5
        if (redis.sentinelMaster == nil) != redis.sentinelNodes.isEmpty {
            context.error(
                redis.sentinelMaster == nil
                    ? "sentinel_nodes needs sentinel_master (the name the sentinels monitor)"
                    : "sentinel_master needs sentinel_nodes (the sentinels to ask for the master)",
                at: reader.location, path: reader.path)
        }
        reader.finish(ignoring: [
            "sentinel_role": .any, "connection_is_proxied": .bool(false), "cloud_authentication": .null,
        ])
        return redis
    }

    /// Redis `sentinel_nodes`/`cluster_nodes`: `{host (or ip), port}` entries, kept as `host:port`.
    private func nodeList(_ reader: MappingReader, _ key: String) -> [String] {
        reader.list(key).compactMap { node, path in
            guard let entry = MappingReader(node, path: path, kind: "redis node", context: context) else { return nil }
            let host = entry.string("host") ?? entry.string("ip")
            let port = entry.integer("port", in: 1...65535) ?? 6379
            entry.finish()
            guard let host else {
                context.error("host is required", at: node.location, path: path)
                return nil
            }
            return "\(host):\(port)"
        }
    }
}
