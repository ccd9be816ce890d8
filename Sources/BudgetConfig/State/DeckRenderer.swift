/// Renders a `ConfigState` as a decK format 3.0 file, nested as `deck gateway dump` nests it:
/// routes under their service, credentials and group memberships under their consumer, plugins at
/// the top level with their scope by name. Reading the output back gives the same state.
public struct DeckRenderer: Sendable {
    /// Whether secrets are written or masked.
    public var secrets: YAMLEmitter.SecretStyle

    public init(secrets: YAMLEmitter.SecretStyle) { self.secrets = secrets }

    /// The file for `state`, with `_info.select_tags` when `selectTags` is not empty.
    public func render(_ state: ConfigState, selectTags: [String] = []) -> String {
        var document: [FieldValue.Field] = [.init("_format_version", .string(ConfigLoader.formatVersion))]
        if !selectTags.isEmpty {
            document.append(.init("_info", .map([.init("select_tags", .strings(selectTags))])))
        }
        let routes = state.routes
        let services = state.services.map { service -> FieldValue in
            var fields = fieldList(Entity.service(service).fields)
            let nested = routes.filter { $0.service == service.name }
            if !nested.isEmpty {
                fields.append(
                    .init("routes", .list(nested.map { .map(fieldList(Entity.route($0).fields, dropping: "service")) }))
                )
            }
            return .map(fields)
        }
        if !services.isEmpty { document.append(.init("services", .list(services))) }
        let loose = routes.filter { route in route.service.map { state[EntityID(.service, $0)] == nil } ?? true }
        if !loose.isEmpty { document.append(.init("routes", .list(loose.map { Entity.route($0).fields }))) }

        let groups = state.consumerGroups.map { Entity.consumerGroup($0).fields }
        if !groups.isEmpty { document.append(.init("consumer_groups", .list(groups))) }

        let credentials = Dictionary(grouping: state.keyAuthCredentials, by: \.consumer)
        let memberships = Dictionary(grouping: state.memberships, by: \.consumer)
        let consumers = state.consumers.map { consumer -> FieldValue in
            var fields = fieldList(Entity.consumer(consumer).fields)
            if let groups = memberships[consumer.name], !groups.isEmpty {
                fields.append(.init("groups", .list(groups.map { .map([.init("name", .string($0.group))]) })))
            }
            if let keys = credentials[consumer.name], !keys.isEmpty {
                fields.append(
                    .init(
                        "keyauth_credentials",
                        .list(
                            keys.map {
                                .map(fieldList(Entity.keyAuth($0).fields, dropping: "consumer"))
                            })))
            }
            return .map(fields)
        }
        if !consumers.isEmpty { document.append(.init("consumers", .list(consumers))) }

        let plugins = state.plugins.map { Entity.plugin($0).fields }
        if !plugins.isEmpty { document.append(.init("plugins", .list(plugins))) }
        return YAMLEmitter(secrets: secrets).document(document)
    }

    private func fieldList(_ value: FieldValue, dropping dropped: String? = nil) -> [FieldValue.Field] {
        guard case .map(let fields) = value else { return [] }
        return fields.filter { $0.name != dropped }
    }
}
