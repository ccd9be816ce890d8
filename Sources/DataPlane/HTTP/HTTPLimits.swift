/// Bounds of an HTTP listener; budget-proxyd(8) lists them with their flags.
public struct HTTPLimits: Sendable {
    /// Largest request body (default 8 MiB; up to Bedrock's 20 MB).
    public var maxBodyBytes = 8 << 20
    /// Most open client connections; more are closed at once.
    public var maxConnections = 4096
    /// Most header fields in one request; more get 431.
    public var maxHeaderCount = 100
    /// Seconds without a byte either way after which a connection with no request in progress is closed (a
    /// keep-alive connection between requests, or one whose next head has begun and stalled).
    public var idleTimeoutSeconds = 60
    /// Seconds within which a request's head must arrive whole, from the connection's opening for its first
    /// request and from its first bytes for a later one (else 408, or a close if nothing came), and then its body,
    /// from the head (else a close): slow-loris.
    public var readTimeoutSeconds = 30
    /// Seconds a write of an answer may wait for the client to read before the connection is closed, which ends
    /// its request and gives back what it held.
    public var writeTimeoutSeconds = 30
    /// How long a graceful shutdown waits for requests in progress before it cancels them.
    public var drainTimeout: Duration = .seconds(30)

    public init() {}
}
