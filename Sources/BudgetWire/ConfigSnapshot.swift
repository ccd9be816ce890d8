public import BudgetConfig
public import BudgetJSON
import EntityCodec

/// A complete config pushed to data planes on connect and on every change.
public struct ConfigSnapshot: Sendable, Hashable {
    /// The store's config version; it only grows.
    public var version: UInt64
    public var state: ConfigState

    public init(version: UInt64, state: ConfigState) {
        self.version = version
        self.state = state
    }
}

extension ConfigSnapshot: WireMessage {
    public var wireFields: FieldValue {
        .map([.init("version", .int(Int(clamping: version))), .init("state", state.codecFields)])
    }

    public init(wireJSON value: JSONValue) throws(JSONShapeError) {
        var reader = try JSONObjectReader(value)
        let version = try reader.uint64("version")
        let state: ConfigState
        do {
            state = try ConfigState(codecJSON: try reader.required("state"))
        } catch {
            throw error.within("state")
        }
        self.init(version: version, state: state)
        try reader.finish()
    }
}
