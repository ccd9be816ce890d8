import Foundation
import NIOCore
import NIOHTTP1
import Synchronization

/// Writes a response to the connection a request came from, as HTTP/1.1 bytes (NIO's parser reads requests; the
/// proxy frames its own answers, which spares a handler and a header table per response). A write that the
/// client leaves unread for `writeTimeout` closes the connection (then the write fails, and the request ends as
/// if the client hung up).
struct ChannelSink: ResponseSink {
    let channel: any Channel
    let keepAlive: Bool
    let version: HTTPVersion
    let writeTimeout: TimeAmount
    /// A `HEAD` request: its answer has the headers of the body, not the body.
    let headOnly: Bool
    /// Whether the body that `start` began is chunked; on the channel's loop.
    private let chunked: NIOLoopBoundBox<Bool>

    init(channel: any Channel, keepAlive: Bool, version: HTTPVersion, writeTimeout: TimeAmount, headOnly: Bool = false)
    {
        self.channel = channel
        self.keepAlive = keepAlive
        self.version = version
        self.writeTimeout = writeTimeout
        self.headOnly = headOnly
        self.chunked = NIOLoopBoundBox(false, eventLoop: channel.eventLoop)
    }

    /// Writes and flushes `bytes`, closing the connection if the write has not completed within `writeTimeout`.
    private func writeWithDeadline(_ bytes: ByteBuffer) async throws {
        let channel = self.channel
        let timeout = writeTimeout
        @Sendable func write() -> EventLoopFuture<Void> {
            let written = channel.writeAndFlush(bytes)
            // Usually the socket takes the bytes at once and the write is done by now (a completed future runs
            // its callback at once): no timer then.
            let done = NIOLoopBoundBox(false, eventLoop: channel.eventLoop)
            written.whenComplete { _ in done.value = true }
            guard !done.value else { return written }
            let deadline = channel.eventLoop.scheduleTask(in: timeout) { channel.close(promise: nil) }
            written.whenComplete { _ in deadline.cancel() }
            return written
        }
        // On the channel's loop (budget-proxyd runs its tasks there) without a hop through its task queue.
        try await (channel.eventLoop.inEventLoop ? write() : channel.eventLoop.flatSubmit(write)).get()
    }

    /// Whether the client speaks HTTP/1.0, which has no chunked encoding: a body of unknown length is then
    /// ended by closing the connection.
    private var isHTTP10: Bool { version.major < 1 || (version.major == 1 && version.minor == 0) }

    func start(status: Int, headers: [(String, String)], contentLength: Int?) async throws {
        let chunked = contentLength == nil && !isHTTP10 && !headOnly
        let close = !keepAlive || (contentLength == nil && isHTTP10)
        var buffer = channel.allocator.buffer(capacity: 256)
        ResponseHead.write(
            version: version, status: status, headers: headers,
            framing: contentLength.map { .length($0) } ?? (chunked ? .chunked : .untilClose), close: close,
            into: &buffer)
        // Written now, flushed on the loop's next turn: when the body's first bytes are at hand (they usually
        // arrive in the read that brought the answer's head), they are written before that turn and the head goes
        // in their system call; when they are not, the head goes out at once, a sign of life for the client.
        let channel = self.channel
        let box = self.chunked
        let head = buffer
        @Sendable func write() {
            box.value = chunked
            channel.write(head, promise: nil)
            channel.eventLoop.execute { channel.flush() }
        }
        guard channel.eventLoop.inEventLoop else {
            try await channel.eventLoop.submit(write).get()
            return
        }
        guard channel.isActive else { throw ChannelError.ioOnClosedChannel }
        write()
    }

    /// `bytes` as the body's next part: a chunk when the body is chunked, else as they are; on the loop.
    private func bodyPart(_ bytes: [UInt8], last: Bool) -> ByteBuffer {
        guard chunked.value else {
            return channel.allocator.buffer(bytes: headOnly ? [] : bytes)
        }
        var buffer = channel.allocator.buffer(capacity: bytes.count + 16)
        if !bytes.isEmpty {
            buffer.writeString(String(bytes.count, radix: 16))
            buffer.writeStaticString("\r\n")
            buffer.writeBytes(bytes)
            buffer.writeStaticString("\r\n")
        }
        if last { buffer.writeStaticString("0\r\n\r\n") }
        return buffer
    }

    /// `bodyPart`, from the channel's loop (where budget-proxyd's tasks run, so usually without a hop).
    private func bodyPartOnLoop(_ bytes: [UInt8], last: Bool) async throws -> ByteBuffer {
        guard !channel.eventLoop.inEventLoop else { return bodyPart(bytes, last: last) }
        return try await channel.eventLoop.submit { bodyPart(bytes, last: last) }.get()
    }

    func write(_ bytes: [UInt8]) async throws {
        guard !bytes.isEmpty else { return }
        let part = try await bodyPartOnLoop(bytes, last: false)
        // While the connection takes what it is given (under NIO's 64 KiB high-water mark), a chunk is written
        // and flushed without waiting for it: `finish` waits for the end, and so for everything before it. A
        // client that reads slowly (or has gone) makes each chunk wait, bounded by the write time-out.
        if channel.isActive && channel.isWritable {
            channel.writeAndFlush(part, promise: nil)
            return
        }
        try await writeWithDeadline(part)
    }

    func finish() async throws {
        try await finish(last: [])
    }

    func finish(last bytes: [UInt8]) async throws {
        try await writeWithDeadline(bodyPartOnLoop(bytes, last: true))
        // An HTTP/1.0 client's streamed body ends with the connection (`start`).
        if !keepAlive || isHTTP10 { try? await channel.close() }
    }

    /// Head and body written together and flushed once.
    func respond(status: Int, headers: [(String, String)], body: [UInt8]) async {
        await respond(status: status, headers: headers, body: body, close: !keepAlive)
    }

    /// A whole answer; with `close`, the connection closes once it is written.
    func respond(status: Int, headers: [(String, String)], body: [UInt8], close: Bool, thenClose: Bool = true)
        async
    {
        let withBody = !headOnly && ResponseHead.mayHaveBody(status)
        var buffer = channel.allocator.buffer(capacity: 256 + (withBody ? body.count : 0))
        ResponseHead.write(
            version: version, status: status, headers: headers, framing: .length(body.count), close: close,
            into: &buffer)
        if withBody { buffer.writeBytes(body) }
        // Bounded for every answer, small ones too: a client that pipelines requests and never reads fills the
        // socket's buffers with answers of any size.
        try? await writeWithDeadline(buffer)
        if close && thenClose { try? await channel.close() }
    }
}

/// A response's status line and header block, written as bytes.
enum ResponseHead {
    enum Framing {
        case length(Int)
        case chunked
        /// HTTP/1.0 with no length: the body ends when the connection closes.
        case untilClose
    }

    /// 1xx, 204 and 304 answers have no body, and so no length.
    static func mayHaveBody(_ status: Int) -> Bool { status >= 200 && status != 204 && status != 304 }

    /// The status line, the caller's headers, then the framing headers, `Date` and `Connection: close` (which
    /// this writer owns: the caller's are left out). A header whose name is not a token or whose value holds CR,
    /// LF or NUL is left out, so that no value can split the response (NIO's validator refused such a response
    /// whole; none of the proxy's headers can hold one: Bedrock's come through NIO's parser, the rest are its own).
    static func write(
        version: HTTPVersion, status: Int, headers: [(String, String)], framing: Framing, close: Bool,
        into buffer: inout ByteBuffer
    ) {
        if version.major == 1 && version.minor == 1 {
            buffer.writeStaticString("HTTP/1.1 ")
        } else {
            buffer.writeString("HTTP/\(version.major).\(version.minor) ")
        }
        buffer.writeString(String(status))
        buffer.writeStaticString(" ")
        buffer.writeString(HTTPResponseStatus(statusCode: status).reasonPhrase)
        buffer.writeStaticString("\r\n")
        for (name, value) in headers where HeaderField.isValid(name: name, value: value) && !isOwned(name) {
            buffer.writeHeaderField(name: name, value: value)
        }
        if mayHaveBody(status) {
            switch framing {
            case .length(let length):
                buffer.writeHeaderField(name: "Content-Length", value: String(length))
            case .chunked:
                buffer.writeStaticString("Transfer-Encoding: chunked\r\n")
            case .untilClose:
                break
            }
        }
        buffer.writeHeaderField(name: "Date", value: httpDate())
        if close { buffer.writeStaticString("Connection: close\r\n") }
        buffer.writeStaticString("\r\n")
    }

    /// The headers this writer sets itself.
    private static func isOwned(_ name: String) -> Bool {
        switch name.utf8.count {
        case 4: name.caseInsensitiveEquals("date")
        case 10: name.caseInsensitiveEquals("connection")
        case 14: name.caseInsensitiveEquals("content-length")
        case 17: name.caseInsensitiveEquals("transfer-encoding")
        default: false
        }
    }
}

/// An HTTP `Date` header value, formatted once a second rather than once a response.
func httpDate() -> String {
    HTTPDateCache.shared.value(at: Int(Date().timeIntervalSince1970))
}

/// The `Date` header of the current second, shared by every connection.
final class HTTPDateCache: Sendable {
    static let shared = HTTPDateCache()
    private let current = Mutex((second: -1, text: ""))

    func value(at now: Int) -> String {
        current.withLock { current in
            if now != current.second {
                current = (now, Self.format(now))
            }
            return current.text
        }
    }

    /// RFC 9110's IMF-fixdate, in GMT.
    private static func format(_ epochSecond: Int) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        return formatter.string(from: Date(timeIntervalSince1970: TimeInterval(epochSecond)))
    }
}
