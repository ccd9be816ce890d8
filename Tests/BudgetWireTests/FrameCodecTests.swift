import BudgetWire
import NIOCore
import NIOEmbedded
import Testing

@Suite("Frames on the socket")
struct FrameCodecTests {
    private func decoder(max: Int) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(WireFrameDecoder(maxFrameBytes: max)))
        return channel
    }

    private func bytes(of frame: WireFrame) throws -> ByteBuffer {
        var buffer = ByteBuffer()
        try WireFrameEncoder().encode(data: frame, out: &buffer)
        return buffer
    }

    @Test("a frame encoded and decoded comes back the same, even when it arrives a byte at a time")
    func roundTrip() throws {
        let channel = try decoder(max: 1024)
        let frame = WireFrame(.commit, requestID: 42, payload: Array(0..<200))
        var buffer = try bytes(of: frame)
        while let byte = buffer.readSlice(length: 1) {
            try channel.writeInbound(byte)
        }
        #expect(try channel.readInbound(as: WireFrame.self) == frame)
        #expect(try channel.finish().isClean)
    }

    @Test("a frame longer than the limit is refused from its length field, before its body arrives")
    func tooLong() throws {
        let channel = try decoder(max: 64)
        var header = ByteBuffer()
        header.writeInteger(UInt32(65))
        #expect(throws: WireFrameError.frameTooLong(65, limit: 64)) { try channel.writeInbound(header) }
        _ = try? channel.finish()
    }

    @Test("a length shorter than the header is refused")
    func tooShort() throws {
        let channel = try decoder(max: 64)
        var header = ByteBuffer()
        header.writeInteger(UInt32(3))
        #expect(throws: WireFrameError.frameTooShort(3)) { try channel.writeInbound(header) }
        _ = try? channel.finish()
    }

    @Test("an unknown frame type is refused with the request id it carried")
    func unknownType() throws {
        let channel = try decoder(max: 64)
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt32(WireFrame.headerBytes))
        buffer.writeInteger(UInt8(0x7F))
        buffer.writeInteger(UInt32(9))
        #expect(throws: WireFrameError.unknownType(0x7F, requestID: 9)) { try channel.writeInbound(buffer) }
        _ = try? channel.finish()
    }
}
