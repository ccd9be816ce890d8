/// The upstream a route belongs to. With ai-proxy on its routes, the real upstream is Bedrock;
/// the service still carries the time-outs, retries and the on/off switch.
public struct Service: Sendable, Hashable, Codable {
    public var name: String
    public var scheme: String = "http"
    public var host: String = ""
    public var port: Int = 80
    public var path: String?
    /// Milliseconds, as Kong counts them.
    public var connectTimeout: Int = 60_000
    public var readTimeout: Int = 60_000
    public var writeTimeout: Int = 60_000
    public var retries: Int = 5
    public var enabled: Bool = true
    public var tags: [String] = []

    public init(name: String) { self.name = name }
}

/// A route: requests whose path starts with one of `paths` (and whose method is in `methods`, when
/// set) go to its service and through its plugins.
public struct Route: Sendable, Hashable, Codable {
    public var name: String
    /// The service's name; nil for a route without one.
    public var service: String?
    /// Prefix matches; each starts with `/`.
    public var paths: [String] = []
    /// Upper-case methods; empty means any method.
    public var methods: [String] = []
    public var protocols: [String] = ["http", "https"]
    /// Whether the matched prefix is removed from the path sent upstream.
    public var stripPath: Bool = true
    /// Whether the client's `Host` is sent upstream.
    public var preserveHost: Bool = false
    public var tags: [String] = []

    public init(name: String) { self.name = name }
}

/// A caller, known by `username` and/or `custom_id` (at least one is set).
public struct Consumer: Sendable, Hashable, Codable {
    public var username: String?
    public var customID: String?
    public var tags: [String] = []

    public init(username: String?, customID: String?) {
        self.username = username
        self.customID = customID
    }

    /// The name the consumer is known by in output and references: its username, else its custom_id.
    public var name: String { username ?? customID ?? "" }
}

/// A key-auth credential. Only the key's hash is kept; `keyHint` (its last five characters, when the
/// key was given in plaintext) serves output only and takes no part in equality.
public struct KeyAuthCredential: Sendable, Hashable, Codable {
    /// The owning consumer's name.
    public var consumer: String
    public var keyHash: KeyHash
    /// Seconds the credential lives, as Kong's `ttl`; nil for ever.
    public var ttl: Int?
    public var tags: [String] = []
    /// The key's last five characters, when it was given in plaintext.
    public var keyHint: String?

    public init(consumer: String, keyHash: KeyHash, keyHint: String? = nil) {
        self.consumer = consumer
        self.keyHash = keyHash
        self.keyHint = keyHint
    }

    /// How output names the credential, as decK does: the key's last five characters, or a hash label.
    public var displayName: String { keyHint ?? keyHash.shortLabel }

    public static func == (lhs: KeyAuthCredential, rhs: KeyAuthCredential) -> Bool {
        lhs.consumer == rhs.consumer && lhs.keyHash == rhs.keyHash && lhs.ttl == rhs.ttl && lhs.tags == rhs.tags
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(consumer)
        hasher.combine(keyHash)
        hasher.combine(ttl)
        hasher.combine(tags)
    }
}

/// A consumer group (a tier); plugins scoped to it apply to its members.
public struct ConsumerGroup: Sendable, Hashable, Codable {
    public var name: String
    public var tags: [String] = []

    public init(name: String) { self.name = name }
}

/// One consumer's membership of one group.
public struct ConsumerGroupMembership: Sendable, Hashable, Codable {
    public var consumer: String
    public var group: String

    public init(consumer: String, group: String) {
        self.consumer = consumer
        self.group = group
    }
}

/// What a plugin is attached to; all nil means global. References are by name.
public struct PluginScope: Sendable, Hashable, Codable {
    public var service: String?
    public var route: String?
    public var consumer: String?
    public var consumerGroup: String?

    public init(service: String? = nil, route: String? = nil, consumer: String? = nil, consumerGroup: String? = nil) {
        self.service = service
        self.route = route
        self.consumer = consumer
        self.consumerGroup = consumerGroup
    }

    /// Whether the plugin applies everywhere.
    public var isGlobal: Bool { service == nil && route == nil && consumer == nil && consumerGroup == nil }

    /// decK's wording: `for route X and consumer-group Y`, or `(global)`.
    public var phrase: String {
        var parts: [String] = []
        if let service { parts.append("service \(service)") }
        if let route { parts.append("route \(route)") }
        if let consumer { parts.append("consumer \(consumer)") }
        if let consumerGroup { parts.append("consumer-group \(consumerGroup)") }
        return parts.isEmpty ? "(global)" : "for " + parts.joined(separator: " and ")
    }
}

/// A plugin instance: its name, where it applies, whether it is on, and its typed config.
public struct Plugin: Sendable, Hashable, Codable {
    public var scope: PluginScope
    /// Kong's `instance_name`, an optional label.
    public var instanceName: String?
    public var enabled: Bool = true
    public var protocols: [String] = ["grpc", "grpcs", "http", "https"]
    public var config: PluginConfig
    public var tags: [String] = []

    public init(config: PluginConfig, scope: PluginScope) {
        self.config = config
        self.scope = scope
    }

    /// The plugin's name, from its config.
    public var name: String { config.pluginName }
}
