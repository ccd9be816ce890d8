public import NIOCore

/// Splits a byte stream into frames, refusing any frame longer than `maxFrameBytes` from its length
/// field alone, before buffering it.
///
/// With an `assemblyTimeout`, a peer that sends part of a frame and then nothing more is disconnected
/// once that time has passed, so a slow sender cannot hold a connection's buffer forever.
public struct WireFrameDecoder: ByteToMessageDecoder {
    public typealias InboundOut = WireFrame

    /// Longest frame accepted, counted from the length field.
    public let maxFrameBytes: Int
    /// How long a partly received frame may wait for the rest; nil waits for ever.
    public let assemblyTimeout: TimeAmount?
    private var assemblyDeadline: Scheduled<Void>?

    /// A decoder for one connection, with its bounds.
    public init(maxFrameBytes: Int, assemblyTimeout: TimeAmount? = nil) {
        self.maxFrameBytes = maxFrameBytes
        self.assemblyTimeout = assemblyTimeout
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        let state = try decodeFrame(context: context, buffer: &buffer)
        if buffer.readableBytes == 0 {
            assemblyDeadline?.cancel()
            assemblyDeadline = nil
        } else if state == .needMoreData, assemblyDeadline == nil, let assemblyTimeout {
            let channel = context.channel
            assemblyDeadline = context.eventLoop.scheduleTask(in: assemblyTimeout) { channel.close(promise: nil) }
        } else if state == .continue {
            assemblyDeadline?.cancel()
            assemblyDeadline = nil
        }
        return state
    }

    private func decodeFrame(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return .needMoreData }
        guard Int(length) >= WireFrame.headerBytes else { throw WireFrameError.frameTooShort(Int(length)) }
        guard Int(length) <= maxFrameBytes else { throw WireFrameError.frameTooLong(Int(length), limit: maxFrameBytes) }
        guard buffer.readableBytes >= 4 + Int(length) else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: 4)
        guard let typeByte = buffer.readInteger(as: UInt8.self), let requestID = buffer.readInteger(as: UInt32.self),
            let payload = buffer.readBytes(length: Int(length) - WireFrame.headerBytes)
        else { throw WireFrameError.frameTooShort(Int(length)) }
        guard let type = FrameType(rawValue: typeByte) else {
            throw WireFrameError.unknownType(typeByte, requestID: requestID)
        }
        context.fireChannelRead(wrapInboundOut(WireFrame(type, requestID: requestID, payload: payload)))
        return .continue
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws
        -> DecodingState
    {
        assemblyDeadline?.cancel()
        assemblyDeadline = nil
        while try decodeFrame(context: context, buffer: &buffer) == .continue {}
        return .needMoreData
    }
}

/// Writes frames with their length prefix.
public struct WireFrameEncoder: MessageToByteEncoder {
    public typealias OutboundIn = WireFrame

    public init() {}

    public func encode(data: WireFrame, out: inout ByteBuffer) throws { data.write(into: &out) }
}

extension WireFrame {
    /// Appends the frame, with its length prefix, to `buffer`.
    public func write(into buffer: inout ByteBuffer) {
        buffer.reserveCapacity(minimumWritableBytes: 4 + WireFrame.headerBytes + payload.count)
        buffer.writeInteger(UInt32(WireFrame.headerBytes + payload.count))
        buffer.writeInteger(type.rawValue)
        buffer.writeInteger(requestID)
        buffer.writeBytes(payload)
    }
}

/// Why bytes on a socket are not frames of this protocol.
public enum WireFrameError: Error, Sendable, Hashable, CustomStringConvertible {
    case frameTooLong(Int, limit: Int)
    case frameTooShort(Int)
    case unknownType(UInt8, requestID: UInt32)

    public var description: String {
        switch self {
        case .frameTooLong(let length, let limit): return "frame of \(length) bytes exceeds the limit of \(limit) bytes"
        case .frameTooShort(let length): return "frame length \(length) is shorter than the 5-byte header"
        case .unknownType(let type, _): return "unknown frame type 0x\(String(type, radix: 16))"
        }
    }
}
