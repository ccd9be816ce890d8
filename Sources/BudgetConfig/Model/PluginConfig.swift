/// The typed config of one of the plugins this gateway runs. Any other plugin name is an error
/// when a file is read, never silently ignored.
public enum PluginConfig: Sendable, Hashable, Codable {
    case keyAuth(KeyAuthConfig)
    case aiProxy(AIProxyConfig)
    case aiRateLimitingAdvanced(AIRateLimitingAdvancedConfig)

    /// The plugin names this gateway understands, as Kong spells them.
    public static let supportedNames = ["key-auth", "ai-proxy", "ai-rate-limiting-advanced"]

    /// The plugin's name as Kong spells it.
    public var pluginName: String {
        switch self {
        case .keyAuth: return "key-auth"
        case .aiProxy: return "ai-proxy"
        case .aiRateLimitingAdvanced: return "ai-rate-limiting-advanced"
        }
    }
}

/// key-auth: which request fields carry the API key, and whether to strip it before forwarding.
public struct KeyAuthConfig: Sendable, Hashable, Codable {
    /// The header, query and body field names that may carry the key.
    public var keyNames: [String] = ["apikey"]
    public var keyInHeader: Bool = true
    public var keyInQuery: Bool = true
    public var keyInBody: Bool = false
    /// Whether the key is removed from the request before it is forwarded.
    public var hideCredentials: Bool = false
    /// A consumer (username or id) to treat unauthenticated requests as; nil refuses them with 401.
    public var anonymous: String?
    /// Whether `OPTIONS` preflight requests need a key too.
    public var runOnPreflight: Bool = true
    /// The realm of the `WWW-Authenticate` header on 401s.
    public var realm: String?

    public init() {}
}

/// ai-proxy: what clients speak (`llm_format`) in, Bedrock out.
public struct AIProxyConfig: Sendable, Hashable, Codable {
    /// Whether clients may ask for a streamed reply (`allow`), may not (`deny`), or always get one.
    public enum ResponseStreaming: String, Sendable, Hashable, CaseIterable, Codable {
        case allow, deny, always
    }

    /// The API clients of the route speak (Kong's `llm_format`); every format reaches Bedrock and meets the
    /// same budgets.
    public enum LLMFormat: String, Sendable, Hashable, CaseIterable, Codable {
        /// OpenAI chat completions at the route's path, translated to Converse (the default).
        case openai
        /// The Anthropic Messages API at `<route>/v1/messages`, forwarded to InvokeModel.
        case anthropic
        /// Bedrock Runtime's own API at `<route>/model/{modelId}/…`, re-signed and passed through.
        case bedrock

        /// The values Kong's schema knows that this gateway does not serve.
        public static let kongOnly = ["gemini", "cohere", "huggingface"]
    }

    /// Always `llm/v1/chat`, the only route type this gateway serves.
    public var routeType: String = "llm/v1/chat"
    public var auth = Auth()
    public var model = Model()
    public var responseStreaming: ResponseStreaming = .allow
    /// What clients of the route speak.
    public var llmFormat: LLMFormat = .openai
    /// Largest request body in bytes; nil leaves the data plane's own limit, 0 means that limit too.
    public var maxRequestBodySize: Int?
    /// Whether responses carry `X-Kong-LLM-Model`.
    public var modelNameHeader: Bool = true
    /// Kong's `logging.log_statistics`, kept so that a file round-trips.
    public var logStatistics: Bool = false

    public init() {}

    /// The AWS keys to sign with, instead of the data plane's own credentials.
    public struct Auth: Sendable, Hashable, Codable {
        public var awsAccessKeyID: Secret?
        public var awsSecretAccessKey: Secret?
        /// Whether a client's own credentials may replace these.
        public var allowOverride: Bool = false

        public init() {}
    }

    /// The provider (only `bedrock`), the model name and its options.
    public struct Model: Sendable, Hashable, Codable {
        public var provider: String = "bedrock"
        public var name: String?
        public var options = Options()

        public init() {}
    }

    /// `model.options`: inference settings, prices and where Bedrock is.
    public struct Options: Sendable, Hashable, Codable {
        /// Overrides the client's `max_tokens` when set, as Kong does.
        public var maxTokens: Int?
        /// Dollars per 1M prompt tokens, for `tokens_count_strategy: cost`.
        public var inputCost: Double?
        /// Dollars per 1M completion tokens.
        public var outputCost: Double?
        public var temperature: Double?
        public var topP: Double?
        public var topK: Int?
        /// Kong's `anthropic_version`, kept so that a file round-trips.
        public var anthropicVersion: String?
        /// Replaces `https://bedrock-runtime.<region>.amazonaws.com`.
        public var upstreamURL: String?
        /// The Bedrock region; nil leaves the data plane's own.
        public var awsRegion: String?

        public init() {}
    }
}

/// ai-rate-limiting-advanced: token budgets per provider and window.
public struct AIRateLimitingAdvancedConfig: Sendable, Hashable, Codable {
    /// Where Kong keeps the counters: `local`, `cluster` or `redis`.
    public enum Strategy: String, Sendable, Hashable, CaseIterable, Codable { case local, cluster, redis }
    /// Whether a window slides or resets at fixed boundaries.
    public enum WindowType: String, Sendable, Hashable, CaseIterable, Codable { case sliding, fixed }
    /// What a request is charged: which tokens, or their cost in dollars.
    public enum TokensCountStrategy: String, Sendable, Hashable, CaseIterable, Codable {
        case totalTokens = "total_tokens"
        case promptTokens = "prompt_tokens"
        case completionTokens = "completion_tokens"
        case cost
    }
    /// Whose budget a request is charged to.
    public enum Identifier: String, Sendable, Hashable, CaseIterable, Codable {
        case consumer
        case consumerGroup = "consumer-group"
        case credential
    }
    /// Our extension field: `soft` admits while tokens remain (overshoot at most one request);
    /// `hard` clamps `max_tokens` so the budget is never exceeded.
    public enum Enforcement: String, Sendable, Hashable, CaseIterable, Codable { case soft, hard }

    /// The message of a refusal, this gateway's default (Kong's own reads differently).
    public static let defaultErrorMessage = "API rate limit exceeded"

    public var llmProviders: [ProviderLimits] = []
    public var strategy: Strategy = .local
    /// Kong's counter sync interval in seconds, validated against `strategy`.
    public var syncRate: Double?
    public var windowType: WindowType = .sliding
    public var tokensCountStrategy: TokensCountStrategy = .totalTokens
    public var identifier: Identifier = .consumer
    /// The HTTP status of a refusal.
    public var errorCode: Int = 429
    public var errorMessage: String = Self.defaultErrorMessage
    /// Whether replies leave out the rate-limit headers.
    public var hideClientHeaders: Bool = false
    /// Seconds of random jitter added to Retry-After.
    public var retryAfterJitterMax: Int = 0
    public var enforcement: Enforcement = .soft
    public var redis: RedisSettings?
    /// Kong's counter namespace, kept so that a file round-trips.
    public var namespace: String?

    public init() {}

    /// Whether the plugin's counters and holds live in the fleet's Redis: `strategy: redis` with any `sync_rate`
    /// but -1 (Kong's "this node's memory only", which counts here as `local` does).
    public var countsInRedis: Bool { strategy == .redis && syncRate != -1 && redis != nil }

    /// One `llm_providers[]` entry: a provider name and its windows.
    public struct ProviderLimits: Sendable, Hashable, Codable {
        public var name: String
        public var windows: [WindowLimit]

        public init(name: String, windows: [WindowLimit]) {
            self.name = name
            self.windows = windows
        }
    }

    /// `limit[i]` tokens (or dollars, with the cost strategy) per `window_size[i]` seconds.
    public struct WindowLimit: Sendable, Hashable, Codable {
        public var limit: Double
        public var windowSize: Int

        public init(limit: Double, windowSize: Int) {
            self.limit = limit
            self.windowSize = windowSize
        }
    }

    /// The Redis connection of `strategy: redis` (Kong's `redis` block): the fleet's shared counters, holds and
    /// config. Every field Kong defines is read, so a Kong file loads unchanged; the ones this gateway has no
    /// use for (pool sizes, cluster redirections) are kept so that a dump writes them back.
    public struct RedisSettings: Sendable, Hashable, Codable {
        public var host: String?
        public var port: Int = 6379
        public var database: Int = 0
        public var username: String?
        public var password: Secret?
        public var ssl: Bool = false
        public var sslVerify: Bool = false
        public var serverName: String?
        /// `connect_timeout` in milliseconds.
        public var timeoutMilliseconds: Int = 2000
        /// `send_timeout` in milliseconds.
        public var sendTimeoutMilliseconds: Int = 2000
        /// `read_timeout` in milliseconds.
        public var readTimeoutMilliseconds: Int = 2000
        /// Kept for round trips: one pipelined connection per node is used.
        public var keepalivePoolSize: Int = 256
        public var keepaliveBacklog: Int?
        public var sentinelMaster: String?
        /// `master` (the only role that takes the counters' writes).
        public var sentinelRole: String = "master"
        public var sentinelNodes: [String] = []
        public var sentinelUsername: String?
        public var sentinelPassword: Secret?
        public var clusterNodes: [String] = []
        public var clusterMaxRedirections: Int = 5

        public init() {}

        /// Whether a host, sentinel or cluster node is named.
        public var hasEndpoint: Bool { host != nil || !sentinelNodes.isEmpty || !clusterNodes.isEmpty }
    }
}
