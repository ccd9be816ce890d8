/// Bounds of an HTTP listener; budget-proxyd(8) lists them with their flags.
public struct HTTPLimits: Sendable {
    /// Largest request body (default 8 MiB; up to Bedrock's 20 MB).
    public var maxBodyBytes = 8 << 20
    /// Most open client connections; more are closed at once.
    public var maxConnections = 4096
    /// Most header fields in one request; more get 431.
    public var maxHeaderCount = 100
    /// Seconds after which a connection with no request in progress is closed.
    public var idleTimeoutSeconds = 60
    /// Seconds within which a request must arrive whole, head and body, from its first byte (slow-loris).
    public var readTimeoutSeconds = 30
    /// How long a graceful shutdown waits for requests in progress before it cancels them.
    public var drainTimeout: Duration = .seconds(30)

    public init() {}
}
