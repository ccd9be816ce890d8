/// Kong's precedence among route-level plugins of one kind: the one on the route, else the one on its
/// service, else the global one. Consumer- and consumer-group-scoped plugins take no part here.
public enum PluginPrecedence {
    /// The enabled plugin that `extract` accepts (it returns the plugin's typed config) which serves `route`.
    public static func forRoute<T>(_ route: Route, plugins: [Plugin], _ extract: (PluginConfig) -> T?) -> T? {
        let candidates = plugins.compactMap { plugin -> (PluginScope, T)? in
            guard plugin.enabled, plugin.scope.consumer == nil, plugin.scope.consumerGroup == nil,
                let value = extract(plugin.config)
            else { return nil }
            return (plugin.scope, value)
        }
        if let match = candidates.first(where: { $0.0.route == route.name }) { return match.1 }
        if let service = route.service,
            let match = candidates.first(where: { $0.0.route == nil && $0.0.service == service })
        {
            return match.1
        }
        return candidates.first { $0.0.isGlobal }?.1
    }
}
