/// Where a Redis server is and how to talk to it: address (or Sentinel), database, credentials, TLS, timeouts.
public struct RedisEndpoint: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int
    /// Selected after connecting when not 0.
    public var database: Int
    /// With a password: `AUTH username password` (an ACL user); without: `AUTH password`.
    public var username: String?
    public var password: String?
    /// nil: plain TCP.
    public var tls: TLS?
    public var connectTimeout: Duration = .seconds(2)
    /// A write that cannot be flushed within it fails (and closes the connection).
    public var sendTimeout: Duration = .seconds(2)
    /// From writing a pipeline to its last reply; past it the connection is closed.
    public var readTimeout: Duration = .seconds(2)
    /// When set, `host` and `port` are ignored: the master is asked of the sentinels.
    public var sentinel: Sentinel?

    /// TLS settings (swift-nio-ssl).
    public struct TLS: Sendable, Hashable {
        /// Verify the server's certificate chain and name.
        public var verify: Bool
        /// The name sent (SNI) and verified; nil: the host.
        public var serverName: String?
        /// PEM file of the CA certificates to trust; nil: the system's.
        public var caFile: String?

        public init(verify: Bool = false, serverName: String? = nil, caFile: String? = nil) {
            self.verify = verify
            self.serverName = serverName
            self.caFile = caFile
        }
    }

    /// Redis Sentinel: the monitored master's name and the sentinels to ask for its address. The sentinels are
    /// reached with the endpoint's TLS settings.
    public struct Sentinel: Sendable, Hashable {
        public var master: String
        public var nodes: [HostPort]
        /// Credentials for the sentinels themselves (not the master's).
        public var username: String?
        public var password: String?

        public init(master: String, nodes: [HostPort], username: String? = nil, password: String? = nil) {
            self.master = master
            self.nodes = nodes
            self.username = username
            self.password = password
        }
    }

    public struct HostPort: Sendable, Hashable, CustomStringConvertible {
        public var host: String
        public var port: Int

        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }

        /// `host:port` (IPv6 hosts in brackets).
        public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
    }

    public init(
        host: String, port: Int = 6379, database: Int = 0, username: String? = nil, password: String? = nil,
        tls: TLS? = nil, sentinel: Sentinel? = nil
    ) {
        self.host = host
        self.port = port
        self.database = database
        self.username = username
        self.password = password
        self.tls = tls
        self.sentinel = sentinel
    }

    /// `host:port/db`, or `sentinel <master>@<nodes>/db`; never a password.
    public var description: String {
        if let sentinel {
            return "sentinel \(sentinel.master)@\(sentinel.nodes.map(\.description).joined(separator: ","))/\(database)"
        }
        return "\(HostPort(host: host, port: port))/\(database)"
    }
}

/// Why a call failed. The message names the endpoint and never contains a password.
public struct RedisError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Hashable {
        /// The TCP connection could not be made (or broke during the connection's set-up).
        case connect
        /// AUTH was refused, or the server wants a password that is not configured.
        case authentication
        /// The TLS handshake failed (or its configuration could not be loaded).
        case tls
        /// No reply within the read timeout, or a write not flushed within the send timeout.
        case timeout
        /// The server sent something that is not RESP2.
        case protocolViolation
        /// A reply larger than `Limits.maxReplyBytes` (or an array of more than 1M elements).
        case replyTooLarge
        /// The connection closed before the reply, the client was closed, or the queue is full.
        case closed
        /// No sentinel gave a usable master.
        case sentinel
        /// The server refused a command the client needs (SELECT, SCRIPT LOAD).
        case server
    }

    public var kind: Kind
    public var message: String

    public init(kind: Kind, message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}

/// What a client knows about its connection, for status pages and health checks.
public struct RedisHealth: Sendable, Hashable {
    public var connected: Bool
    /// The message of the last error, kept after recovery.
    public var lastError: String?
    /// The server actually connected (the master, behind a Sentinel), `host:port`.
    public var address: String?
    /// Consecutive failed connection attempts and failed calls; 0 after a success.
    public var failures: Int

    public init(connected: Bool = false, lastError: String? = nil, address: String? = nil, failures: Int = 0) {
        self.connected = connected
        self.lastError = lastError
        self.address = address
        self.failures = failures
    }
}
