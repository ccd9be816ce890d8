/// Where each entity (and some of its fields) came from, so that problems found after reading, such
/// as a dangling reference, are reported at the line a user wrote.
public struct SourceMap: Sendable {
    /// The file position and YAML path of a definition.
    public struct Origin: Sendable, Hashable {
        public var location: SourceLocation
        public var path: YAMLPath
    }

    /// One field of one entity; a flat key, so a large file does not build a small map per entity.
    private struct FieldKey: Hashable {
        var entity: EntityID
        var field: String
    }

    private var origins: [EntityID: Origin] = [:]
    private var fieldOrigins: [FieldKey: Origin] = [:]

    /// An empty map.
    public init() {}

    mutating func record(_ id: EntityID, at origin: Origin) {
        if let first = origins.updateValue(origin, forKey: id) { origins[id] = first }
    }

    mutating func record(_ id: EntityID, field: String, at origin: Origin) {
        fieldOrigins[FieldKey(entity: id, field: field)] = origin
    }

    /// Where the entity `id` was defined, if it came from a file.
    public func origin(of id: EntityID) -> Origin? { origins[id] }

    mutating func reserveCapacity(_ count: Int) {
        origins.reserveCapacity(count)
        fieldOrigins.reserveCapacity(count)
    }

    /// The diagnostic for `issue`, at the field's own place when it was recorded, else at the entity.
    public func diagnostic(for issue: StateIssue) -> Diagnostic {
        if let field = issue.field, let origin = fieldOrigins[FieldKey(entity: issue.entity, field: field)] {
            return Diagnostic(issue.severity, at: origin.location, path: origin.path, issue.message)
        }
        if let origin = origins[issue.entity] {
            var path = origin.path
            if let field = issue.field { path = path.appending(field) }
            return Diagnostic(issue.severity, at: origin.location, path: path, issue.message)
        }
        return Diagnostic(issue.severity, at: nil, path: YAMLPath(), issue.description)
    }
}
