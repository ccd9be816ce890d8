
/// Who is connecting: a data plane (control.sock) or budgetctl (admin.sock).
public enum ClientRole: String, Sendable, Codable {
    case dataPlane = "data-plane"
    case admin
}

/// The first frame of every connection.
public struct Hello: Sendable, Codable, Hashable {
    /// The protocol version the client speaks; it must be the server's.
    public var protocolVersion: Int
    public var role: ClientRole
    /// Name and version of the client, for logs and `status`.
    public var client: String

    public init(role: ClientRole, client: String, protocolVersion: Int = WireProtocol.version) {
        self.protocolVersion = protocolVersion
        self.role = role
        self.client = client
    }
}

/// The answer to a hello.
public struct Welcome: Sendable, Codable, Hashable {
    /// The protocol version the server speaks.
    public var protocolVersion: Int
    /// Name and version of the server.
    public var server: String
    /// The config version at the time of the welcome.
    public var configVersion: UInt64
    /// Seconds a hold lives without being renewed (`--reservation-ttl`): a data plane renews the holds of its
    /// requests in flight well within it. Nil from a server that does not say.
    public var reservationLifetime: Int64?

    public init(server: String, configVersion: UInt64, reservationLifetime: Int64? = nil) {
        protocolVersion = WireProtocol.version
        self.server = server
        self.configVersion = configVersion
        self.reservationLifetime = reservationLifetime
    }
}
