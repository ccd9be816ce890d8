package import BudgetConfig
package import BudgetJSON

/// Entities in the codec's JSON form (format `EntityCodec.formatVersion`): an entity's decK fields
/// (`Entity.fields`, the form of dumps and diffs) with secrets in the clear, plus its `kind` and, for a
/// credential, the `key_hint` output uses.
///
/// Written by hand, in both directions, rather than with synthesized `Codable` and Foundation's coders:
/// a sync moves every entity through this four times (request, store, snapshot out, snapshot in), and
/// Foundation's coders were several times slower (figures in bench/README.md). Reading is strict: a
/// missing, mistyped or unknown member is an error that names where it is.
extension Entity {
    /// The entity as the codec writes it.
    package var codecFields: FieldValue {
        guard case .map(var fields) = self.fields else { return self.fields }
        fields.insert(.init("kind", .string(id.kind.rawValue)), at: 0)
        if case .keyAuth(let credential) = self, let hint = credential.keyHint {
            fields.append(.init("key_hint", .string(hint)))
        }
        return .map(fields)
    }

    /// `codecFields` as compact JSON: the body the store keeps for each entity.
    package var codecBytes: [UInt8] { EntityCodec.compactJSON(codecFields) }

    /// Reads what `codecBytes` wrote.
    /// - Throws: `EntityCodecError` saying what is wrong and where.
    package init(codecBytes bytes: [UInt8]) throws(EntityCodecError) {
        do {
            // As large as budgetctl lets a whole command's input be, so no stored entity can be refused on reading.
            let limits = JSONParser.Limits(maxDepth: 16, maxBytes: ConfigLimits().maxTotalBytes)
            self = try Entity(codecJSON: try JSONParser.parse(bytes, limits: limits))
        } catch {
            // A JSONParseError (with its byte offset) or a JSONShapeError (with its path).
            throw EntityCodecError(description: "\(error)")
        }
    }

    /// Reads what `codecFields` wrote.
    package init(codecJSON value: JSONValue) throws(JSONShapeError) {
        var reader = try JSONObjectReader(value)
        self = try Self.read(&reader)
        try reader.finish()
    }

    private static func read(_ reader: inout JSONObjectReader) throws(JSONShapeError) -> Entity {
        let kindName = try reader.string("kind")
        guard let kind = EntityKind(rawValue: kindName) else {
            throw JSONShapeError(at: "kind", "\"\(kindName)\" is not a kind of entity")
        }
        switch kind {
        case .consumer:
            var consumer = Consumer(
                username: try reader.optionalString("username"), customID: try reader.optionalString("custom_id"))
            guard consumer.username != nil || consumer.customID != nil else {
                throw JSONShapeError("needs a username or a custom_id")
            }
            consumer.tags = try reader.strings("tags")
            return .consumer(consumer)
        case .consumerGroup:
            var group = ConsumerGroup(name: try reader.string("name"))
            group.tags = try reader.strings("tags")
            return .consumerGroup(group)
        case .service:
            var service = Service(name: try reader.string("name"))
            service.scheme = try reader.string("protocol")
            service.host = try reader.string("host")
            service.port = try reader.int("port")
            service.path = try reader.optionalString("path")
            service.connectTimeout = try reader.int("connect_timeout")
            service.readTimeout = try reader.int("read_timeout")
            service.writeTimeout = try reader.int("write_timeout")
            service.retries = try reader.int("retries")
            service.enabled = try reader.bool("enabled")
            service.tags = try reader.strings("tags")
            return .service(service)
        case .route:
            var route = Route(name: try reader.string("name"))
            route.service = try reader.optionalString("service")
            route.paths = try reader.strings("paths")
            route.methods = try reader.strings("methods")
            route.protocols = try reader.strings("protocols")
            route.stripPath = try reader.bool("strip_path")
            route.preserveHost = try reader.bool("preserve_host")
            route.tags = try reader.strings("tags")
            return .route(route)
        case .keyAuth:
            let consumer = try reader.string("consumer")
            let hashText = try reader.string("key_hash")
            guard let hash = KeyHash(parsing: hashText) else {
                throw JSONShapeError(at: "key_hash", "must be sha256:<64 lowercase hex digits>")
            }
            var credential = KeyAuthCredential(consumer: consumer, keyHash: hash)
            credential.ttl = try reader.optionalInt("ttl")
            credential.tags = try reader.strings("tags")
            credential.keyHint = try reader.optionalString("key_hint")
            return .keyAuth(credential)
        case .consumerGroupConsumer:
            return .consumerGroupConsumer(
                ConsumerGroupMembership(
                    consumer: try reader.string("consumer"), group: try reader.string("consumer_group")))
        case .plugin:
            let name = try reader.string("name")
            let config = try reader.object("config") { config throws(JSONShapeError) in
                try PluginConfig.read(name: name, &config)
            }
            var plugin = Plugin(
                config: config,
                scope: PluginScope(
                    service: try reader.optionalString("service"), route: try reader.optionalString("route"),
                    consumer: try reader.optionalString("consumer"),
                    consumerGroup: try reader.optionalString("consumer_group")))
            plugin.instanceName = try reader.optionalString("instance_name")
            plugin.enabled = try reader.bool("enabled")
            plugin.protocols = try reader.strings("protocols")
            plugin.tags = try reader.strings("tags")
            return .plugin(plugin)
        }
    }
}

extension PluginConfig {
    fileprivate static func read(name: String, _ reader: inout JSONObjectReader) throws(JSONShapeError)
        -> PluginConfig
    {
        switch name {
        case "key-auth":
            var config = KeyAuthConfig()
            config.keyNames = try reader.strings("key_names")
            config.keyInHeader = try reader.bool("key_in_header")
            config.keyInQuery = try reader.bool("key_in_query")
            config.keyInBody = try reader.bool("key_in_body")
            config.hideCredentials = try reader.bool("hide_credentials")
            config.anonymous = try reader.optionalString("anonymous")
            config.runOnPreflight = try reader.bool("run_on_preflight")
            config.realm = try reader.optionalString("realm")
            return .keyAuth(config)
        case "ai-proxy":
            return .aiProxy(try readAIProxy(&reader))
        case "ai-rate-limiting-advanced":
            return .aiRateLimitingAdvanced(try readRateLimiting(&reader))
        default:
            throw JSONShapeError("belongs to plugin \"\(name)\", which this gateway does not run")
        }
    }

    private static func readAIProxy(_ reader: inout JSONObjectReader) throws(JSONShapeError) -> AIProxyConfig {
        var config = AIProxyConfig()
        config.routeType = try reader.string("route_type")
        config.auth = try reader.object("auth") { auth throws(JSONShapeError) in
            var value = AIProxyConfig.Auth()
            value.awsAccessKeyID = try auth.optionalString("aws_access_key_id").map(Secret.init)
            value.awsSecretAccessKey = try auth.optionalString("aws_secret_access_key").map(Secret.init)
            value.allowOverride = try auth.bool("allow_override")
            return value
        }
        config.model = try reader.object("model") { model throws(JSONShapeError) in
            var value = AIProxyConfig.Model()
            value.provider = try model.string("provider")
            value.name = try model.optionalString("name")
            value.options = try model.object("options") { options throws(JSONShapeError) in
                var value = AIProxyConfig.Options()
                value.maxTokens = try options.optionalInt("max_tokens")
                value.inputCost = try options.optionalDouble("input_cost")
                value.outputCost = try options.optionalDouble("output_cost")
                value.temperature = try options.optionalDouble("temperature")
                value.topP = try options.optionalDouble("top_p")
                value.topK = try options.optionalInt("top_k")
                value.anthropicVersion = try options.optionalString("anthropic_version")
                value.upstreamURL = try options.optionalString("upstream_url")
                value.awsRegion = try options.optionalObject("bedrock") { bedrock throws(JSONShapeError) in
                    try bedrock.string("aws_region")
                }
                return value
            }
            return value
        }
        let streaming = try reader.string("response_streaming")
        guard let responseStreaming = AIProxyConfig.ResponseStreaming(rawValue: streaming) else {
            throw JSONShapeError(at: "response_streaming", "\"\(streaming)\" is not allow, deny or always")
        }
        config.responseStreaming = responseStreaming
        // Absent in entities stored before formats other than OpenAI chat were served.
        if let format = try reader.optionalString("llm_format") {
            guard let llmFormat = AIProxyConfig.LLMFormat(rawValue: format) else {
                throw JSONShapeError(at: "llm_format", "\"\(format)\" is not openai, anthropic or bedrock")
            }
            config.llmFormat = llmFormat
        }
        config.maxRequestBodySize = try reader.optionalInt("max_request_body_size")
        config.modelNameHeader = try reader.bool("model_name_header")
        config.logStatistics = try reader.object("logging") { logging throws(JSONShapeError) in
            try logging.bool("log_statistics")
        }
        return config
    }

    private static func readRateLimiting(_ reader: inout JSONObjectReader) throws(JSONShapeError)
        -> AIRateLimitingAdvancedConfig
    {
        typealias Config = AIRateLimitingAdvancedConfig
        var config = Config()
        for (index, item) in try reader.array("llm_providers").enumerated() {
            let provider = try JSONObjectReader.read(item, at: "[\(index)]") {
                provider throws(JSONShapeError) -> Config.ProviderLimits in
                let name = try provider.string("name")
                let limits = try provider.required("limit").arrayValue ?? []
                let sizes = try provider.required("window_size").arrayValue ?? []
                guard limits.count == sizes.count else {
                    throw JSONShapeError("limit and window_size must have the same length")
                }
                var windows: [Config.WindowLimit] = []
                for (limit, size) in zip(limits, sizes) {
                    guard let limit = limit.double, limit > 0, let size = size.int, size > 0 else {
                        throw JSONShapeError("limit and window_size must hold positive numbers")
                    }
                    windows.append(Config.WindowLimit(limit: limit, windowSize: size))
                }
                return Config.ProviderLimits(name: name, windows: windows)
            }
            config.llmProviders.append(provider)
        }
        config.strategy = try enumeration("strategy", &reader)
        config.syncRate = try reader.optionalDouble("sync_rate")
        config.windowType = try enumeration("window_type", &reader)
        config.tokensCountStrategy = try enumeration("tokens_count_strategy", &reader)
        config.identifier = try enumeration("identifier", &reader)
        config.errorCode = try reader.int("error_code")
        config.errorMessage = try reader.string("error_message")
        config.hideClientHeaders = try reader.bool("hide_client_headers")
        config.retryAfterJitterMax = try reader.int("retry_after_jitter_max")
        config.enforcement = try enumeration("enforcement", &reader)
        config.namespace = try reader.optionalString("namespace")
        config.redis = try reader.optionalObject("redis") { redis throws(JSONShapeError) in
            var value = Config.RedisSettings()
            value.host = try redis.optionalString("host")
            value.port = try redis.int("port")
            value.database = try redis.int("database")
            value.username = try redis.optionalString("username")
            value.password = try redis.optionalString("password").map(Secret.init)
            value.ssl = try redis.bool("ssl")
            value.sslVerify = try redis.bool("ssl_verify")
            value.serverName = try redis.optionalString("server_name")
            value.timeoutMilliseconds = try redis.int("connect_timeout")
            value.sendTimeoutMilliseconds = try redis.optionalInt("send_timeout") ?? 2000
            value.readTimeoutMilliseconds = try redis.optionalInt("read_timeout") ?? 2000
            value.keepalivePoolSize = try redis.optionalInt("keepalive_pool_size") ?? 256
            value.keepaliveBacklog = try redis.optionalInt("keepalive_backlog")
            value.sentinelMaster = try redis.optionalString("sentinel_master")
            value.sentinelNodes = try nodes("sentinel_nodes", &redis)
            value.sentinelUsername = try redis.optionalString("sentinel_username")
            value.sentinelPassword = try redis.optionalString("sentinel_password").map(Secret.init)
            value.clusterNodes = try nodes("cluster_nodes", &redis)
            value.clusterMaxRedirections = try redis.optionalInt("cluster_max_redirections") ?? 5
            return value
        }
        return config
    }

    private static func enumeration<T: RawRepresentable & CaseIterable>(
        _ name: String, _ reader: inout JSONObjectReader
    ) throws(JSONShapeError) -> T where T.RawValue == String {
        let text = try reader.string(name)
        guard let value = T(rawValue: text) else {
            let allowed = T.allCases.map(\.rawValue).joined(separator: ", ")
            throw JSONShapeError(at: name, "\"\(text)\" is not one of \(allowed)")
        }
        return value
    }

    /// Redis nodes are written as `{host, port}` and kept as `host:port`.
    private static func nodes(_ name: String, _ reader: inout JSONObjectReader) throws(JSONShapeError) -> [String] {
        var nodes: [String] = []
        for (index, item) in try reader.array(name).enumerated() {
            let node = try JSONObjectReader.read(item, at: "[\(index)]") { node throws(JSONShapeError) in
                "\(try node.string("host")):\(try node.int("port"))"
            }
            nodes.append(node)
        }
        return nodes
    }
}

extension ConfigState {
    /// The state as the codec writes it: a list of entities in no particular order (readers do not depend on
    /// one, and sorting every identity would cost time for nothing).
    package var codecFields: FieldValue { .list(entities.values.map(\.codecFields)) }

    /// Reads what `codecFields` wrote; two entities with one identity are an error.
    package init(codecJSON value: JSONValue) throws(JSONShapeError) {
        guard case .array(let items) = value else {
            throw JSONShapeError("expected a list of entities, found \(value.kindDescription)")
        }
        self.init()
        reserveCapacity(items.count)
        for (index, item) in items.enumerated() {
            let entity: Entity
            do {
                entity = try Entity(codecJSON: item)
            } catch {
                throw error.within("[\(index)]")
            }
            guard insert(entity) else { throw JSONShapeError(at: "[\(index)]", "repeats \(entity.id)") }
        }
    }
}

/// An entity's JSON that does not read back: not JSON, or not the shape `Entity.codecFields` writes.
package struct EntityCodecError: Error, Sendable, CustomStringConvertible {
    package var description: String
}
