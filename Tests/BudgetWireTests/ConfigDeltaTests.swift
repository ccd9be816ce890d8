import BudgetConfig
import BudgetWire
import NIOCore
import NIOEmbedded
import Testing

@Suite("The snapshotDelta push")
struct ConfigDeltaTests {
    private static let delta = ConfigDelta(
        baseVersion: 41, version: 42,
        changes: [
            AppliedChange(
                action: .delete,
                entity: .keyAuth(KeyAuthCredential(consumer: "alice", keyHash: KeyHash(key: "old"), keyHint: "y-old"))),
            AppliedChange(
                action: .create, entity: .keyAuth(KeyAuthCredential(consumer: "alice", keyHash: KeyHash(key: "new")))),
            AppliedChange(action: .update, entity: .consumer(Consumer(username: "alice", customID: "a-1"))),
            AppliedChange(
                action: .create,
                entity: .consumerGroupConsumer(ConsumerGroupMembership(consumer: "alice", group: "premium"))),
        ])

    private func decodeError(_ json: String) -> String? {
        do {
            _ = try WireJSON.decode(ConfigDelta.self, from: Array(json.utf8))
            return nil
        } catch {
            #expect(error.code == .badRequest)
            return error.message
        }
    }

    @Test("a delta reads back equal after encoding, also through the frame codec as type 0x13")
    func roundTrip() throws {
        let payload = WireJSON.encode(Self.delta)
        #expect(try WireJSON.decode(ConfigDelta.self, from: payload) == Self.delta)

        let frame = WireFrame(.snapshotDelta, requestID: 0, payload: payload)
        var buffer = ByteBuffer()
        try WireFrameEncoder().encode(data: frame, out: &buffer)
        #expect(buffer.getInteger(at: 4, as: UInt8.self) == 0x13)
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(WireFrameDecoder(maxFrameBytes: 1 << 20)))
        try channel.writeInbound(buffer)
        let decoded = try #require(try channel.readInbound(as: WireFrame.self))
        #expect(decoded == frame)
        #expect(try WireJSON.decode(ConfigDelta.self, from: decoded.payload) == Self.delta)
        #expect(try channel.finish().isClean)
    }

    @Test("an empty list of changes is a valid delta (a version bump)")
    func emptyChanges() throws {
        let delta = ConfigDelta(baseVersion: 1, version: 2, changes: [])
        #expect(try WireJSON.decode(ConfigDelta.self, from: WireJSON.encode(delta)) == delta)
    }

    @Test("a version that does not follow the base is refused naming both")
    func versionMustFollowBase() {
        let message = decodeError(#"{"baseVersion":7,"version":7,"changes":[]}"#)
        #expect(message?.contains("version") == true)
        #expect(message?.contains("does not follow baseVersion 7") == true)
    }

    @Test("missing members, a bad change and unknown members are refused with their paths")
    func badPayloads() {
        #expect(decodeError(#"{"version":2,"changes":[]}"#)?.contains("baseVersion") == true)
        #expect(decodeError(#"{"baseVersion":1,"version":2}"#)?.contains("changes") == true)
        let notList = decodeError(#"{"baseVersion":1,"version":2,"changes":{}}"#)
        #expect(notList?.contains("must be a list") == true)
        let badChange = decodeError(
            #"{"baseVersion":1,"version":2,"changes":[{"action":"creating","entity":{"kind":"nope"}}]}"#)
        #expect(badChange?.contains("changes") == true)
        #expect(badChange?.contains("[0]") == true)
        #expect(badChange?.contains("kind") == true)
        let badAction = decodeError(
            #"{"baseVersion":1,"version":2,"changes":[{"action":"renaming","entity":{}}]}"#)
        #expect(badAction?.contains("renaming") == true)
        #expect(decodeError(#"{"baseVersion":1,"version":2,"changes":[],"extra":1}"#)?.contains("extra") == true)
        #expect(decodeError(#"{"baseVersion":-1,"version":2,"changes":[]}"#) != nil)
        #expect(decodeError("[1,2") != nil)
    }

    @Test("the protocol version that introduced deltas is the one spoken")
    func protocolVersion() {
        #expect(WireProtocol.version == 5)
        #expect(FrameType(rawValue: 0x13) == .snapshotDelta)
    }
}
