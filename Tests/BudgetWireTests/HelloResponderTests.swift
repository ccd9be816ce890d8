import BudgetWire
import Foundation
import NIOCore
import NIOPosix
import Testing

/// A minimal server: the first frame goes through `HelloResponder`, as the control plane does it.
private final class HelloServerHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = WireFrame
    typealias OutboundOut = WireFrame

    let responder: HelloResponder

    init(responder: HelloResponder) { self.responder = responder }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch Result(catching: { () throws(WireErrorBody) -> Hello in try responder.accept(frame) }) {
        case .success:
            context.writeAndFlush(
                wrapOutboundOut(responder.welcome(requestID: frame.requestID, configVersion: 17)), promise: nil)
        case .failure(let error):
            let body = WireJSON.encode(error)
            context.writeAndFlush(wrapOutboundOut(WireFrame(.error, requestID: frame.requestID, payload: body)))
                .assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        }
    }
}

@Suite("The hello, server side, against a real WireClient")
struct HelloResponderTests {
    /// Runs `body` with a server for `role` on a Unix socket in a temporary directory, removed afterwards.
    private func withServer(role: ClientRole, _ body: (String) async throws -> Void) async throws {
        let responder = HelloResponder(role: role, server: "test-server/1")
        try await withFrameServer({ HelloServerHandler(responder: responder) }, body)
    }

    @Test("a client of the socket's role is welcomed with the server's name and config version")
    func welcomed() async throws {
        try await withServer(role: .dataPlane) { path in
            let client = try await WireClient.connect(
                path: path, role: .dataPlane, client: "test", timeout: .seconds(5))
            #expect(client.welcome.server == "test-server/1")
            #expect(client.welcome.configVersion == 17)
            #expect(client.welcome.protocolVersion == WireProtocol.version)
            await client.close()
        }
    }

    @Test("a client of the other role is refused with a message naming the right socket")
    func wrongRole() async throws {
        try await withServer(role: .admin) { path in
            do {
                _ = try await WireClient.connect(path: path, role: .dataPlane, client: "test", timeout: .seconds(5))
                Issue.record("the data-plane client was welcomed on the admin socket")
            } catch {
                guard case .server(let body)? = error as? WireClientError else {
                    Issue.record("expected a server error, got \(error)")
                    return
                }
                #expect(body.code == .badRequest)
                #expect(body.message.contains("use the control socket"))
            }
        }
    }

    @Test("a first frame that is not a hello is refused")
    func notHello() throws {
        let responder = HelloResponder(role: .admin, server: "s")
        #expect(throws: WireErrorBody(.badRequest, "the first frame must be a hello")) {
            try responder.accept(WireFrame(.request, requestID: 1, payload: []))
        }
    }

    @Test("another protocol version is refused as unsupported")
    func otherVersion() throws {
        let responder = HelloResponder(role: .admin, server: "s")
        let hello = WireJSON.encode(Hello(role: .admin, client: "old", protocolVersion: 1))
        do {
            _ = try responder.accept(WireFrame(.hello, requestID: 1, payload: hello))
            Issue.record("version 1 was accepted")
        } catch {
            #expect(error.code == .unsupportedVersion)
        }
    }
}
