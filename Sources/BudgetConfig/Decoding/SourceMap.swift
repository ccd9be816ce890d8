/// Where each entity (and some of its fields) came from, so that problems found after reading, such
/// as a dangling reference, are reported at the line a user wrote.
///
/// Recorded as lists, in order: a file of 100,000 consumers records some 400,000 origins, and is usually read
/// without a problem that needs one. Tables are built only for lookups (`indexed()`).
public struct SourceMap: Sendable {
    /// The file position and YAML path of a definition.
    public struct Origin: Sendable, Hashable {
        public var location: SourceLocation
        public var path: YAMLPath
    }

    /// One field of one entity; a flat key, so a large file does not build a small map per entity.
    fileprivate struct FieldKey: Hashable {
        var entity: EntityID
        var field: String
    }

    /// Each entity's definition, once, in the order they were added.
    private var origins: [(entity: EntityID, origin: Origin)] = []
    /// Field origins in the order recorded; a later one of a field replaces an earlier one.
    private var fieldOrigins: [(key: FieldKey, origin: Origin)] = []

    /// An empty map.
    public init() {}

    /// Records where `id` was defined; the caller records each entity once (the first definition).
    mutating func record(_ id: EntityID, at origin: Origin) {
        origins.append((id, origin))
    }

    mutating func record(_ id: EntityID, field: String, at origin: Origin) {
        fieldOrigins.append((FieldKey(entity: id, field: field), origin))
    }

    mutating func reserveCapacity(_ count: Int) {
        origins.reserveCapacity(count)
    }

    /// The map as tables, for lookups.
    public func indexed() -> Index { Index(self) }

    /// A `SourceMap`'s lookups.
    public struct Index: Sendable {
        private var origins: [EntityID: Origin]
        private var fieldOrigins: [FieldKey: Origin]

        fileprivate init(_ map: SourceMap) {
            origins = Dictionary(map.origins, uniquingKeysWith: { first, _ in first })
            fieldOrigins = Dictionary(map.fieldOrigins, uniquingKeysWith: { _, later in later })
        }

        /// Where the entity `id` was defined, if it came from a file.
        public func origin(of id: EntityID) -> Origin? { origins[id] }

        /// Adds the definition of an entity recorded in the map after this index was made.
        mutating func record(_ id: EntityID, at origin: Origin) {
            if origins[id] == nil { origins[id] = origin }
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
}
