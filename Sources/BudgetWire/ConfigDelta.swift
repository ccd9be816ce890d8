public import BudgetConfig
public import BudgetJSON

/// A config change pushed to data planes (frame `snapshotDelta`, protocol version 5): the changes that take
/// the config from version `baseVersion` to version `version`, in the order they were applied, in the form an
/// apply request carries them (an entity as it will be for create and update, as it was for delete).
///
/// A data plane applies a delta only when its config is at `baseVersion`; any other base is a gap (a push it
/// missed), and it must get a whole snapshot instead (budget-proxyd reconnects: every connection starts with one).
/// A delta at or below the data plane's version is stale and ignored.
public struct ConfigDelta: Sendable, Hashable {
    /// The version the changes apply to.
    public var baseVersion: UInt64
    /// The version they make; greater than `baseVersion`.
    public var version: UInt64
    public var changes: [AppliedChange]

    public init(baseVersion: UInt64, version: UInt64, changes: [AppliedChange]) {
        self.baseVersion = baseVersion
        self.version = version
        self.changes = changes
    }
}

extension ConfigDelta: WireMessage {
    public var wireFields: FieldValue {
        .map([
            .init("baseVersion", .int(Int(clamping: baseVersion))),
            .init("version", .int(Int(clamping: version))),
            .init("changes", .list(changes.map(\.wireFields))),
        ])
    }

    public init(wireJSON value: JSONValue) throws(JSONShapeError) {
        var reader = try JSONObjectReader(value)
        let base = try reader.uint64("baseVersion")
        let version = try reader.uint64("version")
        guard version > base else {
            throw JSONShapeError(at: "version", "\(version) does not follow baseVersion \(base)")
        }
        let changes = try AppliedChange.list(wireJSON: try reader.required("changes"), member: "changes")
        self.init(baseVersion: base, version: version, changes: changes)
        try reader.finish()
    }
}
