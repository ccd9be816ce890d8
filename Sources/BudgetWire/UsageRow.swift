import BudgetConfig
import BudgetJSON

/// One row of `budgetctl usage`.
public struct UsageRow: Sendable, Codable, Hashable {
    public var consumer: String
    /// The governing plugin's consumer group, else the consumer's first group.
    public var group: String?
    public var provider: String
    /// Seconds.
    public var windowSize: Int
    /// Committed units in the window.
    public var used: Double
    /// Units held by requests in flight.
    public var inFlight: Double
    public var limit: Double
    public var remaining: Double
    /// Epoch second at which tokens next come back.
    public var reset: Int64
    /// The `tokens_count_strategy` the units are in.
    public var strategy: String

    public init(
        consumer: String, group: String?, provider: String, windowSize: Int, used: Double, inFlight: Double,
        limit: Double, remaining: Double, reset: Int64, strategy: String
    ) {
        self.consumer = consumer
        self.group = group
        self.provider = provider
        self.windowSize = windowSize
        self.used = used
        self.inFlight = inFlight
        self.limit = limit
        self.remaining = remaining
        self.reset = reset
        self.strategy = strategy
    }
}

extension UsageRow {
    var wireFields: FieldValue {
        .compactMap([
            .init("consumer", .string(consumer)),
            .init("group", .optional(group)),
            .init("provider", .string(provider)),
            .init("windowSize", .int(windowSize)),
            .init("used", .number(used)),
            .init("inFlight", .number(inFlight)),
            .init("limit", .number(limit)),
            .init("remaining", .number(remaining)),
            .init("reset", .int(Int(reset))),
            .init("strategy", .string(strategy)),
        ])
    }

    init(wireJSON reader: inout JSONObjectReader) throws(JSONShapeError) {
        self.init(
            consumer: try reader.string("consumer"), group: try reader.optionalString("group"),
            provider: try reader.string("provider"), windowSize: try reader.int("windowSize"),
            used: try reader.double("used"), inFlight: try reader.double("inFlight"), limit: try reader.double("limit"),
            remaining: try reader.double("remaining"), reset: Int64(try reader.int("reset")),
            strategy: try reader.string("strategy"))
    }
}
