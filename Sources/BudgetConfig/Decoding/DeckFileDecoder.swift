import Dispatch
import Synchronization

/// Decodes one decK file's entities, in every nesting form decK accepts, into a `StateBuilder`.
struct DeckFileDecoder {
    let context: DecodeContext
    let builder: StateBuilder
    /// This file's `_info.select_tags`, added to each entity it declares.
    private var selectTags: [String] = []
    /// Threads that may read a long `consumers` list at once (`decodeConsumers`).
    private let workers: Int

    init(context: DecodeContext, builder: StateBuilder, workers: Int = 1) {
        self.context = context
        self.builder = builder
        self.workers = workers
    }

    /// Top-level keys of Kong's decK format that name entities this gateway does not have.
    static let unsupportedTopLevel: [String: String] = Dictionary(
        uniqueKeysWithValues: [
            "upstreams", "certificates", "ca_certificates", "snis", "vaults", "partials", "key_sets", "keys",
            "filter_chains", "custom_entities", "licenses", "workspaces", "rbac_roles", "rbac_users",
            "consumer_group_consumers", "plugin_configs", "degraphql_routes", "graphql_ratelimiting_cost_decorations",
        ].map { ($0, "\($0) are not supported by this gateway; remove this section") })

    /// Reads the document; returns its select tags (and where they are) when it declares any.
    mutating func decode(_ root: ConfigNode) -> (tags: [String], location: SourceLocation)? {
        let documentPath = YAMLPath()
        guard case .mapping = root.value else {
            context.error(
                "the document is \(root.kindDescription); a decK file is a mapping with "
                    + "_format_version, services, consumers, consumer_groups and plugins", at: root.location,
                path: documentPath)
            return nil
        }
        guard let file = MappingReader(root, path: documentPath, kind: "decK file", context: context) else {
            return nil
        }

        if let version = file.value("_format_version") {
            let text: String? = if case .scalar(let scalar) = version.value { scalar.text } else { nil }
            if text != ConfigLoader.formatVersion && text != "3" {
                context.error(
                    "expected \"\(ConfigLoader.formatVersion)\" (decK's format for Kong 3.x), found "
                        + (text.map { "\"\($0)\"" } ?? version.kindDescription), at: version.location,
                    path: file.pathOf("_format_version"))
            }
        } else {
            context.error(
                "_format_version is required; add _format_version: \"\(ConfigLoader.formatVersion)\"",
                at: root.location, path: documentPath)
        }

        var declared: (tags: [String], location: SourceLocation)?
        if let info = file.mapping("_info", kind: "_info") {
            if let tags = info.strings("select_tags") {
                selectTags = normalizeTags(tags)
                declared = (selectTags, info.value("select_tags")?.location ?? info.location)
                if tags.count > 5 {
                    context.error(
                        "at most 5 select tags are allowed, as decK enforces", at: info.location,
                        path: info.pathOf("select_tags"))
                }
            }
            info.finish(unsupported: [
                "default_lookup_tags": "default_lookup_tags is not supported; sync all related files together instead"
            ])
        }

        for (node, path) in file.list("services") { decodeService(node, path: path) }
        for (node, path) in file.list("routes") { decodeRoute(node, path: path, service: nil) }
        for (node, path) in file.list("consumer_groups") { decodeConsumerGroup(node, path: path) }
        decodeConsumers(file.list("consumers"))
        for (node, path) in file.list("plugins") { decodePlugin(node, path: path, parent: PluginScope()) }

        file.finish(
            ignoring: ["_workspace": .null, "_konnect": .any, "_transform": .bool(true)],
            unsupported: Self.unsupportedTopLevel)
        return declared
    }

    // MARK: - Shared pieces

    private func tags(_ reader: MappingReader) -> [String] {
        normalizeTags((reader.strings("tags") ?? []) + selectTags)
    }

    /// A name reference: `name`, or `{name: name}` as decK dumps write it. References by id are refused.
    private func reference(_ reader: MappingReader, _ key: String, to kind: String) -> (name: String, node: ConfigNode)?
    {
        guard let node = reader.value(key) else { return nil }
        switch node.value {
        case .scalar(let scalar) where !scalar.text.isEmpty:
            return (scalar.text, node)
        case .mapping:
            guard let ref = MappingReader(node, path: reader.pathOf(key), kind: "\(kind) reference", context: context)
            else { return nil }
            let name = ref.string("name")
            if ref.has("id") && name == nil {
                context.error(
                    "references by id are not supported; refer to the \(kind) by name",
                    at: node.location, path: reader.pathOf(key))
            } else if name == nil {
                context.error("name is required", at: node.location, path: reader.pathOf(key))
            }
            ref.finish(ignoring: ["id": .any])
            return name.map { ($0, node) }
        default:
            context.error(
                "expected the name of a \(kind), found \(node.kindDescription)", at: node.location,
                path: reader.pathOf(key))
            return nil
        }
    }

    static let timestampFields: IgnoredFields = ["id": .any, "created_at": .any, "updated_at": .any]

    // MARK: - Services and routes

    private func decodeService(_ node: ConfigNode, path: YAMLPath) {
        guard let reader = MappingReader(node, path: path, kind: "service", context: context) else { return }
        let name = reader.string("name", required: true)
        var service = Service(name: name ?? "")
        if let url = reader.string("url") {
            if let parsed = ServiceURL(url) {
                service.scheme = parsed.scheme
                service.host = parsed.host
                service.port = parsed.port
                service.path = parsed.path
            } else {
                context.error(
                    "expected a URL such as https://host:443/path", at: reader.value("url")?.location ?? node.location,
                    path: reader.pathOf("url"))
            }
        }
        service.scheme = reader.choice("protocol", default: ServiceProtocol(rawValue: service.scheme) ?? .http).rawValue
        if let host = reader.string("host") { service.host = host }
        service.port = reader.integer("port", in: 1...65535) ?? service.port
        if let path = reader.string("path") {
            if path.hasPrefix("/") {
                service.path = path
            } else {
                context.error(
                    "a service path starts with \"/\"", at: reader.value("path")?.location ?? node.location,
                    path: reader.pathOf("path"))
            }
        }
        if service.host.isEmpty && !reader.has("url") {
            context.error("host (or url) is required", at: node.location, path: path)
        }
        let timeoutRange = 1...2_147_483_646
        service.connectTimeout =
            reader.integer("connect_timeout", in: timeoutRange, unit: "ms") ?? service.connectTimeout
        service.readTimeout = reader.integer("read_timeout", in: timeoutRange, unit: "ms") ?? service.readTimeout
        service.writeTimeout = reader.integer("write_timeout", in: timeoutRange, unit: "ms") ?? service.writeTimeout
        service.retries = reader.integer("retries", in: 0...32767) ?? service.retries
        service.enabled = reader.bool("enabled", default: true)
        service.tags = tags(reader)
        if name != nil {
            builder.add(.service(service), at: node.location, path: path)
        }
        for (routeNode, routePath) in reader.list("routes") {
            decodeRoute(routeNode, path: routePath, service: name)
        }
        for (pluginNode, pluginPath) in reader.list("plugins") {
            decodePlugin(pluginNode, path: pluginPath, parent: PluginScope(service: name))
        }
        reader.finish(
            ignoring: Self.timestampFields.merging([
                "tls_verify": .null, "tls_verify_depth": .null, "ca_certificates": .null, "client_certificate": .null,
                "tls_sans": .null,
            ]) { $1 })
    }

    private func decodeRoute(_ node: ConfigNode, path: YAMLPath, service parentService: String?) {
        guard let reader = MappingReader(node, path: path, kind: "route", context: context) else { return }
        let name = reader.string("name", required: true)
        var route = Route(name: name ?? "")
        route.service = parentService
        if parentService == nil, let (service, serviceNode) = reference(reader, "service", to: "service") {
            route.service = service
            if let name {
                builder.recordField(
                    EntityID(.route, name), "service", at: serviceNode.location, path: reader.pathOf("service"))
            }
        } else if parentService != nil, reader.has("service") {
            context.error(
                "a route nested under a service cannot name another service", at: node.location,
                path: reader.pathOf("service"))
        }
        for (index, path) in (reader.strings("paths") ?? []).enumerated() {
            let location = reader.list("paths")[index].node.location
            let itemPath = reader.pathOf("paths").appending(index: index)
            if path.hasPrefix("~") {
                context.error(
                    "regex paths are not supported; give a prefix such as /ai/budget", at: location, path: itemPath)
            } else if !path.hasPrefix("/") {
                context.error("a path starts with \"/\"", at: location, path: itemPath)
            } else if path.contains(where: { $0.isWhitespace || $0.asciiValue.map { $0 < 0x20 } == true }) {
                context.error("a path cannot contain spaces or control characters", at: location, path: itemPath)
            } else {
                route.paths.append(path)
            }
        }
        for (index, method) in (reader.strings("methods") ?? []).enumerated() {
            let item = reader.list("methods")[index]
            if method.allSatisfy({ $0.isASCII && ($0.isUppercase || $0 == "-" || $0 == "_") }) {
                route.methods.append(method)
            } else {
                context.error(
                    "expected an HTTP method in capitals, such as POST", at: item.node.location, path: item.path)
            }
        }
        route.methods = Array(Set(route.methods)).sorted()
        if let protocols = reader.strings("protocols") {
            let allowed: Set = ["http", "https"]
            for (index, value) in protocols.enumerated() where !allowed.contains(value) {
                let item = reader.list("protocols")[index]
                context.error(
                    "protocol \"\(value)\" is not supported; routes here serve http and https",
                    at: item.node.location, path: item.path)
            }
            route.protocols = Array(Set(protocols).intersection(allowed)).sorted()
            if route.protocols.isEmpty { route.protocols = ["http", "https"] }
        }
        if route.paths.isEmpty && reader.value("paths") == nil {
            context.error(
                "paths is required: this gateway matches routes by path prefix", at: node.location, path: path)
        }
        route.stripPath = reader.bool("strip_path", default: true)
        route.preserveHost = reader.bool("preserve_host", default: false)
        route.tags = tags(reader)
        if name != nil {
            builder.add(.route(route), at: node.location, path: path)
        }
        for (pluginNode, pluginPath) in reader.list("plugins") {
            decodePlugin(pluginNode, path: pluginPath, parent: PluginScope(route: name))
        }
        let matchingNotSupported =
            "route matching by this field is not supported; routes match by path prefix and method"
        reader.finish(
            ignoring: Self.timestampFields.merging([
                "regex_priority": .int(0), "path_handling": .string("v0"), "https_redirect_status_code": .int(426),
                "request_buffering": .bool(true), "response_buffering": .bool(true), "priority": .any,
            ]) { $1 },
            unsupported: [
                "hosts": matchingNotSupported, "headers": matchingNotSupported, "snis": matchingNotSupported,
                "sources": matchingNotSupported, "destinations": matchingNotSupported,
                "expression": matchingNotSupported,
            ])
    }

    // MARK: - Consumers, credentials and groups

    /// Consumers read per thread, at least: fewer are read on the calling thread alone.
    static let consumersPerPart = 1_024

    /// Reads the `consumers` list. A long one is cut into `workers` parts in order, read at once
    /// (`DispatchQueue.concurrentPerform`, as `Planner` compares a large config), each into a log of what it read
    /// (entities, field origins, problems) in order. Then, part by part, this builder takes each log in its order
    /// (`StateBuilder.replay`): a consumer or key defined twice is found as reading in one go finds it, and every
    /// problem is recorded in the same order. The state and the messages are what reading the list in one go
    /// gives, byte for byte, the 500-message limit included.
    ///
    /// 100,000 consumers took about 0.8 s to read on one core of the development machine, the largest step of a
    /// resync. The calling thread reads parts too and blocks until all are read, so the work ends even when
    /// Dispatch can give it no other thread.
    private func decodeConsumers(_ consumers: [(node: ConfigNode, path: YAMLPath)]) {
        // A consumer usually brings a credential and a membership: room for them up front, instead of growing
        // (and rehashing) the tables over and over for a large file.
        builder.reserveCapacity(3 * consumers.count)
        let parts = min(workers, consumers.count / Self.consumersPerPart)
        guard parts > 1 else {
            for (node, path) in consumers { decodeConsumer(node, path: path) }
            return
        }
        let size = (consumers.count + parts - 1) / parts
        let slices = stride(from: 0, to: consumers.count, by: size).map {
            consumers[$0..<min($0 + size, consumers.count)]
        }
        let logged = Mutex<[Int: DecodedPart]>([:])
        let selectTags = self.selectTags
        DispatchQueue.concurrentPerform(iterations: slices.count) { index in
            let part = Self.readPart(slices[index], selectTags: selectTags)
            logged.withLock { $0[index] = part }
        }
        let read = logged.withLock { $0 }
        for index in slices.indices {
            if let part = read[index] { builder.replay(part) }
        }
    }

    /// Reads `consumers` as the file's decoder would, into a log of what it found, in order.
    private static func readPart(
        _ consumers: ArraySlice<(node: ConfigNode, path: YAMLPath)>, selectTags: [String]
    ) -> DecodedPart {
        let log = DecodedPart.Log()
        let context = DecodeContext(limits: .standard, log: log)
        let builder = StateBuilder(context: context)
        builder.reserveCapacity(3 * consumers.count)
        var decoder = DeckFileDecoder(context: context, builder: builder)
        decoder.selectTags = selectTags
        for (node, path) in consumers { decoder.decodeConsumer(node, path: path) }
        return DecodedPart(events: log.events)
    }

    private func decodeConsumer(_ node: ConfigNode, path: YAMLPath) {
        guard let reader = MappingReader(node, path: path, kind: "consumer", context: context) else { return }
        let username = reader.string("username")
        let customID = reader.string("custom_id")
        if username == nil && customID == nil {
            context.error("a consumer needs a username or a custom_id", at: node.location, path: path)
        }
        var consumer = Consumer(username: username, customID: customID)
        consumer.tags = tags(reader)
        let name = consumer.name
        if !name.isEmpty {
            builder.add(.consumer(consumer), at: node.location, path: path)
        }
        for (credentialNode, credentialPath) in reader.list("keyauth_credentials") {
            decodeKeyAuth(credentialNode, path: credentialPath, consumer: name)
        }
        for (groupNode, groupPath) in reader.list("groups") {
            let groupName: String?
            var nameNode = groupNode
            var namePath = groupPath
            if case .scalar(let scalar) = groupNode.value {
                groupName = scalar.text.isEmpty ? nil : scalar.text
            } else if let group = MappingReader(
                groupNode, path: groupPath, kind: "consumer group reference", context: context)
            {
                groupName = group.string("name", required: true)
                if let value = group.value("name") { nameNode = value; namePath = groupPath.appending("name") }
                group.finish(ignoring: Self.timestampFields.merging(["tags": .any]) { $1 })
            } else {
                groupName = nil
            }
            if let groupName, !name.isEmpty {
                let membership = ConsumerGroupMembership(consumer: name, group: groupName)
                builder.add(
                    .consumerGroupConsumer(membership), at: nameNode.location, path: namePath)
                builder.recordField(membership.id, "name", at: nameNode.location, path: namePath)
            }
        }
        for (pluginNode, pluginPath) in reader.list("plugins") {
            decodePlugin(pluginNode, path: pluginPath, parent: PluginScope(consumer: name.isEmpty ? nil : name))
        }
        let otherCredentials = "only key-auth credentials are supported by this gateway"
        reader.finish(
            ignoring: Self.timestampFields,
            unsupported: [
                "acls": otherCredentials, "basicauth_credentials": otherCredentials,
                "hmacauth_credentials": otherCredentials,
                "jwt_secrets": otherCredentials, "oauth2_credentials": otherCredentials,
                "mtls_auth_credentials": otherCredentials,
            ])
    }

    private func decodeKeyAuth(_ node: ConfigNode, path: YAMLPath, consumer: String) {
        guard let reader = MappingReader(node, path: path, kind: "key-auth credential", context: context) else {
            return
        }
        let key = reader.string("key")
        let hashText = reader.string("key_hash")
        var credential: KeyAuthCredential?
        switch (key, hashText) {
        case (let key?, nil):
            if key.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
                context.error(
                    "a key cannot contain control characters (it travels in an HTTP header)",
                    at: reader.value("key")?.location ?? node.location, path: reader.pathOf("key"))
            } else {
                credential = KeyAuthCredential(
                    consumer: consumer, keyHash: KeyHash(key: key),
                    keyHint: String(key.suffix(5)))
            }
        case (nil, let hashText?):
            if let hash = KeyHash(parsing: hashText) {
                credential = KeyAuthCredential(consumer: consumer, keyHash: hash)
            } else {
                context.error(
                    "expected sha256: followed by 64 lowercase hex digits, as budgetctl dump writes",
                    at: reader.value("key_hash")?.location ?? node.location, path: reader.pathOf("key_hash"))
            }
        case (_?, _?):
            context.error("give key or key_hash, not both", at: node.location, path: path)
        case (nil, nil):
            if !reader.has("key") {
                context.error("key is required (this gateway does not generate keys)", at: node.location, path: path)
            }
        }
        if var credential, !consumer.isEmpty {
            credential.tags = tags(reader)
            builder.add(
                .keyAuth(credential), at: node.location, path: path)
        }
        reader.finish(
            ignoring: Self.timestampFields.merging(["consumer": .any]) { $1 },
            unsupported: [
                "ttl": "ttl is not supported: keys here do not expire; rotate keys with sync instead"
            ])
    }

    private func decodeConsumerGroup(_ node: ConfigNode, path: YAMLPath) {
        guard let reader = MappingReader(node, path: path, kind: "consumer group", context: context) else { return }
        let name = reader.string("name", required: true)
        var group = ConsumerGroup(name: name ?? "")
        group.tags = tags(reader)
        if name != nil {
            builder.add(.consumerGroup(group), at: node.location, path: path)
        }
        for (memberNode, memberPath) in reader.list("consumers") {
            var username: String?
            var at = memberNode.location
            var atPath = memberPath
            if case .scalar(let scalar) = memberNode.value, !scalar.text.isEmpty {
                username = scalar.text
            } else if let member = MappingReader(
                memberNode, path: memberPath, kind: "consumer reference", context: context)
            {
                username = member.string("username") ?? member.string("custom_id")
                if username == nil {
                    context.error("username is required", at: memberNode.location, path: memberPath)
                } else if let value = member.value("username") ?? member.value("custom_id") {
                    at = value.location
                    atPath = memberPath.appending(member.has("username") ? "username" : "custom_id")
                }
                member.finish(ignoring: Self.timestampFields.merging(["tags": .any]) { $1 })
            }
            if let username, let name {
                let membership = ConsumerGroupMembership(consumer: username, group: name)
                builder.add(
                    .consumerGroupConsumer(membership), at: at, path: atPath)
                builder.recordField(membership.id, "username", at: at, path: atPath)
            }
        }
        for (pluginNode, pluginPath) in reader.list("plugins") {
            decodePlugin(pluginNode, path: pluginPath, parent: PluginScope(consumerGroup: name))
        }
        reader.finish(ignoring: Self.timestampFields)
    }

    // MARK: - Plugins

    private func decodePlugin(_ node: ConfigNode, path: YAMLPath, parent: PluginScope) {
        guard let reader = MappingReader(node, path: path, kind: "plugin", context: context) else { return }
        let name = reader.string("name", required: true)
        var scope = parent
        var refLocations: [(String, ConfigNode)] = []
        func scopeRef(_ key: String, kind: String, _ slot: WritableKeyPath<PluginScope, String?>) {
            guard let (refName, refNode) = reference(reader, key, to: kind) else { return }
            if scope[keyPath: slot] != nil {
                context.error(
                    "this plugin is nested under a \(kind) already", at: refNode.location, path: reader.pathOf(key))
                return
            }
            scope[keyPath: slot] = refName
            refLocations.append((key, refNode))
        }
        scopeRef("service", kind: "service", \.service)
        scopeRef("route", kind: "route", \.route)
        scopeRef("consumer", kind: "consumer", \.consumer)
        scopeRef("consumer_group", kind: "consumer group", \.consumerGroup)

        var config: PluginConfig?
        let configReader = reader.mapping("config", kind: "\(name ?? "plugin") config")
        let decoder = PluginConfigDecoder(context: context)
        switch name {
        case "key-auth":
            config = .keyAuth(decoder.keyAuth(configReader))
        case "ai-proxy":
            if let configReader {
                config = decoder.aiProxy(configReader).map { .aiProxy($0) }
            } else {
                context.error(
                    "config is required for ai-proxy (route_type and model at least)", at: node.location, path: path)
            }
        case "ai-rate-limiting-advanced":
            if let configReader {
                config = decoder.aiRateLimiting(configReader).map { .aiRateLimitingAdvanced($0) }
            } else {
                context.error(
                    "config is required for ai-rate-limiting-advanced (llm_providers at least)",
                    at: node.location, path: path)
            }
        case let other?:
            let supported = PluginConfig.supportedNames.joined(separator: ", ")
            var message = "plugin \"\(other)\" is not supported by this gateway (supported: \(supported))"
            if let suggestion = closestName(to: other, among: PluginConfig.supportedNames) {
                message += "; did you mean \"\(suggestion)\"?"
            }
            context.error(message, at: reader.value("name")?.location ?? node.location, path: reader.pathOf("name"))
        case nil:
            break
        }

        if var plugin = config.map({ Plugin(config: $0, scope: scope) }) {
            plugin.instanceName = reader.string("instance_name")
            plugin.enabled = reader.bool("enabled", default: true)
            if let protocols = reader.strings("protocols") {
                let known: Set = [
                    "grpc", "grpcs", "http", "https", "ws", "wss", "tcp", "tls", "udp", "tls_passthrough",
                ]
                for (index, value) in protocols.enumerated() where !known.contains(value) {
                    let item = reader.list("protocols")[index]
                    context.error("unknown protocol \"\(value)\"", at: item.node.location, path: item.path)
                }
                plugin.protocols = Array(Set(protocols)).sorted()
            }
            plugin.tags = tags(reader)
            builder.add(
                .plugin(plugin), at: node.location, path: path)
            for (key, refNode) in refLocations {
                builder.recordField(plugin.id, key, at: refNode.location, path: reader.pathOf(key))
            }
            recordConfigLocations(plugin, reader: configReader)
        } else {
            _ = reader.value("instance_name"); _ = reader.value("enabled"); _ = reader.value("protocols")
            _ = reader.value("tags")
        }
        reader.finish(ignoring: Self.timestampFields.merging(["ordering": .null, "partials": .null]) { $1 })
    }

    /// Remembers where rate-limit provider names and identifiers are, for cross-entity errors.
    private func recordConfigLocations(_ plugin: Plugin, reader: MappingReader?) {
        guard let reader, case .mapping(let pairs) = reader.node.value else { return }
        for pair in pairs {
            let fieldPath = reader.pathOf(pair.key)
            builder.recordField(plugin.id, "config.\(pair.key)", at: pair.value.location, path: fieldPath)
            guard pair.key == "llm_providers", case .sequence(let items) = pair.value.value else { continue }
            for (index, item) in items.enumerated() {
                guard case .mapping(let fields) = item.value, let name = fields.first(where: { $0.key == "name" })
                else {
                    continue
                }
                builder.recordField(
                    plugin.id, "config.llm_providers[\(index)].name", at: name.value.location,
                    path: fieldPath.appending(index: index).appending("name"))
            }
        }
    }
}

/// The service protocols Kong allows; routes here serve HTTP, so only http and https are accepted.
enum ServiceProtocol: String, CaseIterable {
    case http, https
}

/// A service `url:` shorthand split into its parts.
struct ServiceURL {
    var scheme: String
    var host: String
    var port: Int
    var path: String?

    init?(_ text: String) {
        guard let schemeEnd = text.firstRange(of: "://") else { return nil }
        scheme = String(text[..<schemeEnd.lowerBound]).lowercased()
        guard scheme == "http" || scheme == "https" else { return nil }
        let rest = text[schemeEnd.upperBound...]
        let authorityEnd = rest.firstIndex(of: "/") ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        path = authorityEnd == rest.endIndex ? nil : String(rest[authorityEnd...])
        if let colon = authority.lastIndex(of: ":"), !authority.hasSuffix("]") {
            guard let parsed = Int(authority[authority.index(after: colon)...]), (1...65535).contains(parsed) else {
                return nil
            }
            host = String(authority[..<colon])
            port = parsed
        } else {
            host = String(authority)
            port = scheme == "https" ? 443 : 80
        }
        guard !host.isEmpty, !host.contains(where: { $0.isWhitespace }) else { return nil }
    }
}

/// What one part of a long `consumers` list gathers as it is read (`DeckFileDecoder.decodeConsumers`):
/// everything its builder and context were given, in order, for the file's builder to take in turn
/// (`StateBuilder.replay`).
struct DecodedPart: Sendable {
    enum Event: Sendable {
        /// An entity defined at `origin`.
        case entity(Entity, SourceMap.Origin)
        /// Where a field of an entity was written.
        case field(EntityID, String, SourceMap.Origin)
        case diagnostic(Diagnostic)
        /// A once-per-field warning, given unless the run gave one for `key` already.
        case onceWarning(key: String, Diagnostic)
    }

    /// The events of one part as they happen, on the thread that reads it.
    final class Log {
        var events: [Event] = []
    }

    var events: [Event]
}
