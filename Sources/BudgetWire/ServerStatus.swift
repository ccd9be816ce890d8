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
    /// The fleet this node belongs to, when its config keeps budgets in Redis.
    public var fleet: FleetStatus?

    public init(
        server: String, configVersion: UInt64, dataPlanes: Int, storePath: String, entities: Int,
        counters: Int, reservations: Int, uptimeSeconds: Int, fleet: FleetStatus? = nil
    ) {
        self.fleet = fleet
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
            .init("fleet", fleet?.wireFields ?? .null),
        ])
    }

    init(wireJSON reader: inout JSONObjectReader) throws(JSONShapeError) {
        self.init(
            server: try reader.string("server"), configVersion: try reader.uint64("configVersion"),
            dataPlanes: try reader.int("dataPlanes"), storePath: try reader.string("storePath"),
            entities: try reader.int("entities"), counters: try reader.int("counters"),
            reservations: try reader.int("reservations"), uptimeSeconds: try reader.int("uptimeSeconds"),
            fleet: try reader.optionalObject("fleet") { fleet throws(JSONShapeError) in try FleetStatus(wireJSON: &fleet) })
    }
}

/// This node's place in a fleet sharing Redis (`strategy: redis`), for `budgetctl status`.
public struct FleetStatus: Sendable, Codable, Hashable {
    /// This node's name.
    public var node: String
    /// The fleet's Redis (`host:port/db`, or the Sentinel master), never with its password.
    public var redis: String
    public var redisConnected: Bool
    /// The server connected (the master, behind Sentinel).
    public var redisAddress: String?
    /// The last error talking to Redis, if any since it was last reached.
    public var redisError: String?
    /// `--on-redis-loss`.
    public var lossPolicy: String
    /// The fleet config version this node has.
    public var fleetVersion: UInt64
    /// Seconds this node spent without Redis since it started, and units it counted locally meanwhile.
    public var awaySeconds: Double
    public var fallbackUnits: Double
    /// The nodes that announced themselves in Redis.
    public var nodes: [Node]

    public struct Node: Sendable, Codable, Hashable {
        public var name: String
        public var configVersion: UInt64
        public var fleetVersion: UInt64
        /// Seconds since it last announced itself (every second while it reaches Redis).
        public var silentSeconds: Int
        public var awaySeconds: Double
        public var fallbackUnits: Double

        public init(
            name: String, configVersion: UInt64, fleetVersion: UInt64, silentSeconds: Int, awaySeconds: Double,
            fallbackUnits: Double
        ) {
            self.name = name
            self.configVersion = configVersion
            self.fleetVersion = fleetVersion
            self.silentSeconds = silentSeconds
            self.awaySeconds = awaySeconds
            self.fallbackUnits = fallbackUnits
        }
    }

    public init(
        node: String, redis: String, redisConnected: Bool, redisAddress: String?, redisError: String?,
        lossPolicy: String, fleetVersion: UInt64, awaySeconds: Double, fallbackUnits: Double, nodes: [Node]
    ) {
        self.node = node
        self.redis = redis
        self.redisConnected = redisConnected
        self.redisAddress = redisAddress
        self.redisError = redisError
        self.lossPolicy = lossPolicy
        self.fleetVersion = fleetVersion
        self.awaySeconds = awaySeconds
        self.fallbackUnits = fallbackUnits
        self.nodes = nodes
    }

    var wireFields: FieldValue {
        .map([
            .init("node", .string(node)), .init("redis", .string(redis)), .init("redisConnected", .bool(redisConnected)),
            .init("redisAddress", .optional(redisAddress)), .init("redisError", .optional(redisError)),
            .init("lossPolicy", .string(lossPolicy)), .init("fleetVersion", .int(Int(clamping: fleetVersion))),
            .init("awaySeconds", .number(awaySeconds)), .init("fallbackUnits", .number(fallbackUnits)),
            .init(
                "nodes",
                .list(
                    nodes.map { node in
                        .map([
                            .init("name", .string(node.name)),
                            .init("configVersion", .int(Int(clamping: node.configVersion))),
                            .init("fleetVersion", .int(Int(clamping: node.fleetVersion))),
                            .init("silentSeconds", .int(node.silentSeconds)),
                            .init("awaySeconds", .number(node.awaySeconds)),
                            .init("fallbackUnits", .number(node.fallbackUnits)),
                        ])
                    })),
        ])
    }

    init(wireJSON reader: inout JSONObjectReader) throws(JSONShapeError) {
        var nodes: [Node] = []
        for (index, item) in try reader.array("nodes").enumerated() {
            nodes.append(
                try JSONObjectReader.read(item, at: "nodes[\(index)]") { node throws(JSONShapeError) in
                    Node(
                        name: try node.string("name"), configVersion: try node.uint64("configVersion"),
                        fleetVersion: try node.uint64("fleetVersion"), silentSeconds: try node.int("silentSeconds"),
                        awaySeconds: try node.optionalDouble("awaySeconds") ?? 0,
                        fallbackUnits: try node.optionalDouble("fallbackUnits") ?? 0)
                })
        }
        self.init(
            node: try reader.string("node"), redis: try reader.string("redis"),
            redisConnected: try reader.bool("redisConnected"), redisAddress: try reader.optionalString("redisAddress"),
            redisError: try reader.optionalString("redisError"), lossPolicy: try reader.string("lossPolicy"),
            fleetVersion: try reader.uint64("fleetVersion"), awaySeconds: try reader.optionalDouble("awaySeconds") ?? 0,
            fallbackUnits: try reader.optionalDouble("fallbackUnits") ?? 0, nodes: nodes)
    }
}
