/// Each entity's fields in decK's names, as the dump, the JSON output and plan diffs show them.
extension Entity {
    /// The entity's fields, in decK's names and order.
    public var fields: FieldValue {
        switch self {
        case .service(let service): return service.fields
        case .route(let route): return route.fields
        case .consumer(let consumer):
            return .compactMap([
                .init("username", .optional(consumer.username)),
                .init("custom_id", .optional(consumer.customID)),
                .init("tags", .strings(consumer.tags)),
            ])
        case .consumerGroup(let group):
            return .map([.init("name", .string(group.name)), .init("tags", .strings(group.tags))])
        case .keyAuth(let credential):
            return .map([
                .init("consumer", .string(credential.consumer)),
                .init("key_hash", .string(credential.keyHash.description)),
                .init("tags", .strings(credential.tags)),
            ])
        case .consumerGroupConsumer(let membership):
            return .map([
                .init("consumer", .string(membership.consumer)),
                .init("consumer_group", .string(membership.group)),
            ])
        case .plugin(let plugin): return plugin.fields
        }
    }
}

extension Service {
    var fields: FieldValue {
        .compactMap([
            .init("name", .string(name)),
            .init("protocol", .string(scheme)),
            .init("host", .string(host)),
            .init("port", .int(port)),
            .init("path", .optional(path)),
            .init("connect_timeout", .int(connectTimeout)),
            .init("read_timeout", .int(readTimeout)),
            .init("write_timeout", .int(writeTimeout)),
            .init("retries", .int(retries)),
            .init("enabled", .bool(enabled)),
            .init("tags", .strings(tags)),
        ])
    }
}

extension Route {
    var fields: FieldValue {
        .compactMap([
            .init("name", .string(name)),
            .init("service", .optional(service)),
            .init("paths", .strings(paths)),
            .init("methods", methods.isEmpty ? .null : .strings(methods)),
            .init("protocols", .strings(protocols)),
            .init("strip_path", .bool(stripPath)),
            .init("preserve_host", .bool(preserveHost)),
            .init("tags", .strings(tags)),
        ])
    }
}

extension Plugin {
    var fields: FieldValue {
        .compactMap([
            .init("name", .string(name)),
            .init("instance_name", .optional(instanceName)),
            .init("service", .optional(scope.service)),
            .init("route", .optional(scope.route)),
            .init("consumer", .optional(scope.consumer)),
            .init("consumer_group", .optional(scope.consumerGroup)),
            .init("enabled", .bool(enabled)),
            .init("protocols", .strings(protocols)),
            .init("config", config.fields),
            .init("tags", .strings(tags)),
        ])
    }
}

extension PluginConfig {
    /// The plugin's `config` fields, in decK's names.
    public var fields: FieldValue {
        switch self {
        case .keyAuth(let config):
            return .compactMap([
                .init("key_names", .strings(config.keyNames)),
                .init("key_in_header", .bool(config.keyInHeader)),
                .init("key_in_query", .bool(config.keyInQuery)),
                .init("key_in_body", .bool(config.keyInBody)),
                .init("hide_credentials", .bool(config.hideCredentials)),
                .init("anonymous", .optional(config.anonymous)),
                .init("run_on_preflight", .bool(config.runOnPreflight)),
                .init("realm", .optional(config.realm)),
            ])
        case .aiProxy(let config):
            let options = config.model.options
            return .compactMap([
                .init("route_type", .string(config.routeType)),
                .init(
                    "auth",
                    .compactMap([
                        .init("aws_access_key_id", .optional(config.auth.awsAccessKeyID)),
                        .init("aws_secret_access_key", .optional(config.auth.awsSecretAccessKey)),
                        .init("allow_override", .bool(config.auth.allowOverride)),
                    ])),
                .init(
                    "model",
                    .compactMap([
                        .init("provider", .string(config.model.provider)),
                        .init("name", .optional(config.model.name)),
                        .init(
                            "options",
                            .compactMap([
                                .init("max_tokens", .optional(options.maxTokens)),
                                .init("input_cost", .optional(options.inputCost)),
                                .init("output_cost", .optional(options.outputCost)),
                                .init("temperature", .optional(options.temperature)),
                                .init("top_p", .optional(options.topP)),
                                .init("top_k", .optional(options.topK)),
                                .init("anthropic_version", .optional(options.anthropicVersion)),
                                .init("upstream_url", .optional(options.upstreamURL)),
                                .init(
                                    "bedrock",
                                    options.awsRegion.map { .map([.init("aws_region", .string($0))]) } ?? .null),
                            ])),
                    ])),
                .init("response_streaming", .string(config.responseStreaming.rawValue)),
                // Written only when not the default, so files and dumps without it stay as they were.
                .init("llm_format", .optional(config.llmFormat == .openai ? nil : config.llmFormat.rawValue)),
                .init("max_request_body_size", .optional(config.maxRequestBodySize)),
                .init("model_name_header", .bool(config.modelNameHeader)),
                .init("logging", .map([.init("log_statistics", .bool(config.logStatistics))])),
            ])
        case .aiRateLimitingAdvanced(let config):
            return .compactMap([
                .init(
                    "llm_providers",
                    .list(
                        config.llmProviders.map { provider in
                            .map([
                                .init("name", .string(provider.name)),
                                .init("limit", .list(provider.windows.map { .numeric($0.limit) })),
                                .init("window_size", .list(provider.windows.map { .int($0.windowSize) })),
                            ])
                        })),
                .init("strategy", .string(config.strategy.rawValue)),
                .init("sync_rate", .optional(config.syncRate)),
                .init("window_type", .string(config.windowType.rawValue)),
                .init("tokens_count_strategy", .string(config.tokensCountStrategy.rawValue)),
                .init("identifier", .string(config.identifier.rawValue)),
                .init("error_code", .int(config.errorCode)),
                .init("error_message", .string(config.errorMessage)),
                .init("hide_client_headers", .bool(config.hideClientHeaders)),
                .init("retry_after_jitter_max", .int(config.retryAfterJitterMax)),
                .init("enforcement", .string(config.enforcement.rawValue)),
                .init("namespace", .optional(config.namespace)),
                .init("redis", config.redis.map(\.fields) ?? .null),
            ])
        }
    }
}

extension AIRateLimitingAdvancedConfig.RedisSettings {
    var fields: FieldValue {
        .compactMap([
            .init("host", .optional(host)),
            .init("port", .int(port)),
            .init("database", .int(database)),
            .init("username", .optional(username)),
            .init("password", .optional(password)),
            .init("ssl", .bool(ssl)),
            .init("ssl_verify", .bool(sslVerify)),
            .init("server_name", .optional(serverName)),
            .init("connect_timeout", .int(timeoutMilliseconds)),
            // Written when they differ from Kong's defaults, so that older dumps read the same.
            .init("send_timeout", .optional(sendTimeoutMilliseconds == 2000 ? nil : sendTimeoutMilliseconds)),
            .init("read_timeout", .optional(readTimeoutMilliseconds == 2000 ? nil : readTimeoutMilliseconds)),
            .init("keepalive_pool_size", .optional(keepalivePoolSize == 256 ? nil : keepalivePoolSize)),
            .init("keepalive_backlog", .optional(keepaliveBacklog)),
            .init("sentinel_master", .optional(sentinelMaster)),
            .init("sentinel_nodes", sentinelNodes.isEmpty ? .null : .list(sentinelNodes.map(Self.nodeFields))),
            .init("sentinel_username", .optional(sentinelUsername)),
            .init("sentinel_password", .optional(sentinelPassword)),
            .init("cluster_nodes", clusterNodes.isEmpty ? .null : .list(clusterNodes.map(Self.nodeFields))),
            .init(
                "cluster_max_redirections", .optional(clusterMaxRedirections == 5 ? nil : clusterMaxRedirections)),
        ])
    }

    private static func nodeFields(_ hostPort: String) -> FieldValue {
        let colon = hostPort.lastIndex(of: ":") ?? hostPort.endIndex
        let port = colon < hostPort.endIndex ? Int(hostPort[hostPort.index(after: colon)...]) : nil
        return .map([.init("host", .string(String(hostPort[..<colon]))), .init("port", .int(port ?? 6379))])
    }
}
