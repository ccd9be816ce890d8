/// The server side of the hello (the client side is `WireClient.connect`): a connection's first frame
/// checked against the socket it arrived on, and the welcome that answers it.
public struct HelloResponder: Sendable {
    /// Who this socket serves.
    public var role: ClientRole
    /// Name and version of the server, as the welcome carries it.
    public var server: String
    /// Seconds a hold lives without renewal, told to data planes in the welcome.
    public var reservationLifetime: Int64?

    public init(role: ClientRole, server: String, reservationLifetime: Int64? = nil) {
        self.role = role
        self.server = server
        self.reservationLifetime = reservationLifetime
    }

    /// The hello in `frame`, if it may open a connection on this socket.
    /// - Throws: the error to send back under the frame's id before closing the connection: the frame is
    ///   not a hello, does not decode, speaks another protocol version, or comes from the other role.
    public func accept(_ frame: WireFrame) throws(WireErrorBody) -> Hello {
        guard frame.type == .hello else { throw WireErrorBody(.badRequest, "the first frame must be a hello") }
        let hello: Hello
        do {
            hello = try WireJSON.decode(Hello.self, from: frame.payload)
        } catch {
            throw WireErrorBody(.badRequest, "hello: \(error.message)")
        }
        guard hello.protocolVersion == WireProtocol.version else {
            throw WireErrorBody(
                .unsupportedVersion,
                "protocol version \(hello.protocolVersion) is not "
                    + "supported; this control plane speaks version \(WireProtocol.version)")
        }
        guard hello.role == role else {
            throw WireErrorBody(
                .badRequest,
                "a \(hello.role.rawValue) client connected to the \(role.socketName) socket; "
                    + "use the \(hello.role.socketName) socket")
        }
        return hello
    }

    /// The welcome frame that answers the hello with id `requestID`.
    public func welcome(requestID: UInt32, configVersion: UInt64) -> WireFrame {
        WireFrame(
            .welcome, requestID: requestID,
            payload: WireJSON.encode(
                Welcome(server: server, configVersion: configVersion, reservationLifetime: reservationLifetime)))
    }
}

extension ClientRole {
    /// The socket this role connects to, as messages name it.
    package var socketName: String { self == .admin ? "admin" : "control" }
}
