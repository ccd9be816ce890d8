import BudgetConfig
import BudgetJSON

/// The control plane's view of itself, for `budgetctl status`.
public struct ServerStatus: Sendable, Codable, Hashable {
    public var server: String
    public var configVersion: UInt64
    /// Data planes connected now.
    public var dataPlanes: Int
    /// The SQLite store's file.
    public var storePath: String
    /// Entities in the current config.
    public var entities: Int
    /// Counters in the ledger.
    public var counters: Int
    /// Reservations of requests in flight.
    public var reservations: Int
    public var uptimeSeconds: Int

    public init(
        server: String, configVersion: UInt64, dataPlanes: Int, storePath: String, entities: Int,
        counters: Int, reservations: Int, uptimeSeconds: Int
    ) {
        self.server = server
        self.configVersion = configVersion
        self.dataPlanes = dataPlanes
        self.storePath = storePath
        self.entities = entities
        self.counters = counters
        self.reservations = reservations
        self.uptimeSeconds = uptimeSeconds
    }
}

extension ServerStatus {
    var wireFields: FieldValue {
        .map([
            .init("server", .string(server)),
            .init("configVersion", .int(Int(clamping: configVersion))),
            .init("dataPlanes", .int(dataPlanes)),
            .init("storePath", .string(storePath)),
            .init("entities", .int(entities)),
            .init("counters", .int(counters)),
            .init("reservations", .int(reservations)),
            .init("uptimeSeconds", .int(uptimeSeconds)),
        ])
    }

    init(wireJSON reader: inout JSONObjectReader) throws(JSONShapeError) {
        self.init(
            server: try reader.string("server"), configVersion: try reader.uint64("configVersion"),
            dataPlanes: try reader.int("dataPlanes"), storePath: try reader.string("storePath"),
            entities: try reader.int("entities"), counters: try reader.int("counters"),
            reservations: try reader.int("reservations"), uptimeSeconds: try reader.int("uptimeSeconds"))
    }
}
