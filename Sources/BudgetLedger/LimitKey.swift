/// What one counter counts: usage of one provider, under one rate-limit plugin, for one subject
/// (a consumer, a consumer group or a credential), over one window size.
public struct LimitKey: Sendable, Hashable, Comparable, Codable, CustomStringConvertible {
    /// The plugin's identity (its `EntityID` key), so two plugins never share counters, as in Kong.
    public var plugin: String
    /// The `llm_providers[]` name, e.g. `bedrock`.
    public var provider: String
    /// `consumer:<name>`, `consumer-group:<name>` or `credential:<key hash>`.
    public var subject: String
    /// Seconds.
    public var windowSize: Int

    public init(plugin: String, provider: String, subject: String, windowSize: Int) {
        self.plugin = plugin
        self.provider = provider
        self.subject = subject
        self.windowSize = windowSize
    }

    public var description: String { "\(plugin)|\(provider)|\(subject)|\(windowSize)" }

    /// Parses `description`; nil for another form.
    public init?(parsing text: String) {
        let parts = text.split(separator: "|", omittingEmptySubsequences: false)
        guard parts.count == 4, let size = Int(parts[3]), size > 0 else { return nil }
        self.init(plugin: String(parts[0]), provider: String(parts[1]), subject: String(parts[2]), windowSize: size)
    }

    public static func < (lhs: LimitKey, rhs: LimitKey) -> Bool { lhs.description < rhs.description }
}

/// Sliding (exact rolling) or fixed (aligned to the epoch).
public enum WindowKind: String, Sendable, Hashable, Codable {
    case sliding, fixed
}

/// One window a request is checked against: its counter and its limit.
public struct WindowRule: Sendable, Hashable, Codable {
    public var key: LimitKey
    public var kind: WindowKind
    /// Tokens, or dollars with the cost strategy.
    public var limit: Double

    public init(key: LimitKey, kind: WindowKind, limit: Double) {
        self.key = key
        self.kind = kind
        self.limit = limit
    }
}

/// How strictly a budget is kept.
public enum Enforcement: String, Sendable, Hashable, Codable {
    /// Admit while `used + held < limit`; only the last request admitted can cross the limit.
    case soft
    /// Admit while `used + held + prompt < limit` and clamp `max_tokens` to what remains: never exceeded.
    case hard
}

/// Kong's names for window sizes, as its rate-limit headers spell them.
public enum WindowName {
    /// `second`, `minute`, `hour`, `day`, `month` or `year` for 1, 60, 3600, 86400, 2592000 and 31536000 seconds;
    /// nil for any other size.
    public static func named(_ seconds: Int) -> String? {
        switch seconds {
        case 1: return "second"
        case 60: return "minute"
        case 3600: return "hour"
        case 86400: return "day"
        case 2_592_000: return "month"
        case 31_536_000: return "year"
        default: return nil
        }
    }
}
