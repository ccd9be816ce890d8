import BudgetWire
import Foundation
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// A server that welcomes, then answers each reserve frame after the milliseconds its payload's first two bytes
/// say (65,535: never), echoing the payload; the replies of one read burst go out in one flush.
private final class SlowServerHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = WireFrame
    typealias OutboundOut = WireFrame

    let responder = HelloResponder(role: .dataPlane, server: "slow-server/1")

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        guard frame.type == .reserve else {
            context.writeAndFlush(
                wrapOutboundOut(responder.welcome(requestID: frame.requestID, configVersion: 1)), promise: nil)
            return
        }
        let delay = Int(frame.payload[0]) << 8 | Int(frame.payload[1])
        guard delay != 0xFFFF else { return }
        let reply = WireFrame(.reserveResult, requestID: frame.requestID, payload: frame.payload)
        context.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(Int64(delay))) {
            context.writeAndFlush(self.wrapOutboundOut(reply), promise: nil)
        }
    }
}

@Suite("WireClient's calls: replies matched by id, a time-out per call")
struct WireClientTests {
    private func withServer(_ body: (String) async throws -> Void) async throws {
        try await withFrameServer({ SlowServerHandler() }, body)
    }

    private static func payload(delay: Int, tag: UInt8) -> [UInt8] { [UInt8(delay >> 8), UInt8(delay & 0xFF), tag] }

    /// The call's reply or its error.
    private static func outcome(_ call: () async throws(WireClientError) -> WireFrame) async
        -> Result<WireFrame, WireClientError>
    {
        do { return .success(try await call()) } catch { return .failure(error) }
    }

    /// Seconds `body` took, and its result.
    private static func timed<T>(_ body: () async -> T) async -> (T, Double) {
        let started = ContinuousClock.now
        let value = await body()
        let elapsed = ContinuousClock.now - started
        return (value, Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
    }

    @Test("many calls at once are each answered with their own reply")
    func concurrentCalls() async throws {
        try await withServer { path in
            let client = try await WireClient.connect(path: path, role: .dataPlane, client: "test")
            let replies = try await withThrowingTaskGroup(of: (UInt8, [UInt8]).self) { group in
                for tag in 0..<200 {
                    group.addTask {
                        let payload = Self.payload(delay: tag % 3, tag: UInt8(tag))
                        return (UInt8(tag), try await client.call(.reserve, payload: payload).payload)
                    }
                }
                return try await group.reduce(into: [:]) { $0[$1.0] = $1.1 }
            }
            #expect(replies.count == 200)
            for (tag, payload) in replies { #expect(payload == Self.payload(delay: Int(tag) % 3, tag: tag)) }
            await client.close()
        }
    }

    @Test("a short time-out after a long one fails at its own deadline; the long one at its own")
    func shortAfterLong() async throws {
        try await withServer { path in
            let client = try await WireClient.connect(path: path, role: .dataPlane, client: "test")
            async let long = Self.timed {
                await Self.outcome { () async throws(WireClientError) -> WireFrame in
                    try await client.call(.reserve, payload: Self.payload(delay: 0xFFFF, tag: 1), timeout: .seconds(3))
                }
            }
            try await Task.sleep(for: .milliseconds(50))
            let (short, shortSeconds) = await Self.timed {
                await Self.outcome { () async throws(WireClientError) -> WireFrame in
                    try await client.call(
                        .reserve, payload: Self.payload(delay: 0xFFFF, tag: 2), timeout: .milliseconds(300))
                }
            }
            guard case .failure(.timeout) = short else {
                Issue.record("expected a time-out, got \(short)")
                return
            }
            #expect(shortSeconds >= 0.25 && shortSeconds < 2, "the 300-ms call ended after \(shortSeconds) s")
            let (longResult, longSeconds) = await long
            guard case .failure(.timeout) = longResult else {
                Issue.record("expected a time-out, got \(longResult)")
                return
            }
            #expect(longSeconds >= 2.9 && longSeconds < 6, "the 3-s call ended after \(longSeconds) s")
            await client.close()
        }
    }

    @Test("a reply after the time-out goes to lateReply; a timely one still comes back on the same connection")
    func lateReply() async throws {
        try await withServer { path in
            let client = try await WireClient.connect(path: path, role: .dataPlane, client: "test")
            let late = Mutex<[UInt8]?>(nil)
            let (result, _) = await Self.timed {
                await Self.outcome { () async throws(WireClientError) -> WireFrame in
                    try await client.call(
                        .reserve, payload: Self.payload(delay: 600, tag: 7), timeout: .milliseconds(200),
                        lateReply: { frame in late.withLock { $0 = frame.payload } })
                }
            }
            guard case .failure(.timeout) = result else {
                Issue.record("expected a time-out, got \(result)")
                return
            }
            var waited = 0
            while late.withLock({ $0 }) == nil && waited < 50 {
                try await Task.sleep(for: .milliseconds(100))
                waited += 1
            }
            #expect(late.withLock { $0 } == Self.payload(delay: 600, tag: 7))
            let timely = try await client.call(.reserve, payload: Self.payload(delay: 10, tag: 8), timeout: .seconds(5))
            #expect(timely.payload == Self.payload(delay: 10, tag: 8))
            await client.close()
        }
    }

    @Test("a call on a closed connection fails at once, not at its deadline")
    func closedConnection() async throws {
        try await withServer { path in
            let client = try await WireClient.connect(path: path, role: .dataPlane, client: "test")
            await client.close()
            let (result, seconds) = await Self.timed {
                await Self.outcome { () async throws(WireClientError) -> WireFrame in
                    try await client.call(.reserve, payload: Self.payload(delay: 0, tag: 1), timeout: .seconds(20))
                }
            }
            guard case .failure(.closed) = result else {
                Issue.record("expected closed, got \(result)")
                return
            }
            #expect(seconds < 5)
        }
    }
}
