import Foundation
import NIOCore
import NIOHTTP1
import Synchronization

/// Writes a response to the connection a request came from. A write that the client leaves unread for
/// `writeTimeout` closes the connection (then the write fails, and the request ends as if the client hung up).
struct ChannelSink: ResponseSink {
    let channel: any Channel
    let keepAlive: Bool
    let version: HTTPVersion
    let writeTimeout: TimeAmount

    /// Writes and flushes `part`, closing the connection if the write has not completed within `writeTimeout`.
    private func writeWithDeadline(_ part: HTTPServerResponsePart) async throws {
        let channel = self.channel
        let timeout = writeTimeout
        @Sendable func write() -> EventLoopFuture<Void> {
            let written = channel.writeAndFlush(part)
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
        var httpHeaders = Self.headers(headers)
        if let contentLength {
            httpHeaders.set(name: "Content-Length", value: String(contentLength))
        } else if !isHTTP10 {
            httpHeaders.set(name: "Transfer-Encoding", value: "chunked")
        }
        httpHeaders.set(name: "Date", value: httpDate())
        if !keepAlive || (contentLength == nil && isHTTP10) { httpHeaders.set(name: "Connection", value: "close") }
        let head = HTTPResponseHead(
            version: version, status: HTTPResponseStatus(statusCode: status), headers: httpHeaders)
        // Written now, flushed on the loop's next turn: when the body's first bytes are at hand (they usually
        // arrive in the read that brought the answer's head), they are written before that turn and the head goes
        // in their system call; when they are not, the head goes out at once, a sign of life for the client.
        let channel = self.channel
        let part = HTTPServerResponsePart.head(head)
        @Sendable func write() {
            channel.write(part, promise: nil)
            channel.eventLoop.execute { channel.flush() }
        }
        guard channel.eventLoop.inEventLoop else {
            try await channel.eventLoop.submit(write).get()
            return
        }
        guard channel.isActive else { throw ChannelError.ioOnClosedChannel }
        write()
    }

    func write(_ bytes: [UInt8]) async throws {
        guard !bytes.isEmpty else { return }
        let part = HTTPServerResponsePart.body(.byteBuffer(channel.allocator.buffer(bytes: bytes)))
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
        try await writeWithDeadline(.end(nil))
        // An HTTP/1.0 client's streamed body ends with the connection (`start`).
        if !keepAlive || isHTTP10 { try? await channel.close() }
    }

    func finish(last bytes: [UInt8]) async throws {
        if !bytes.isEmpty {
            channel.write(
                HTTPServerResponsePart.body(.byteBuffer(channel.allocator.buffer(bytes: bytes))), promise: nil)
        }
        try await finish()
    }

    /// Head, body and end written together and flushed once.
    func respond(status: Int, headers: [(String, String)], body: [UInt8]) async {
        var httpHeaders = Self.headers(headers)
        httpHeaders.set(name: "Content-Length", value: String(body.count))
        httpHeaders.set(name: "Date", value: httpDate())
        if !keepAlive { httpHeaders.set(name: "Connection", value: "close") }
        let head = HTTPResponseHead(
            version: version, status: HTTPResponseStatus(statusCode: status), headers: httpHeaders)
        channel.write(HTTPServerResponsePart.head(head), promise: nil)
        channel.write(HTTPServerResponsePart.body(.byteBuffer(channel.allocator.buffer(bytes: body))), promise: nil)
        // A small answer fits the socket's buffers whether or not the client reads; only a large one can stall.
        if body.count > 64 << 10 {
            try? await writeWithDeadline(.end(nil))
        } else {
            try? await channel.writeAndFlush(HTTPServerResponsePart.end(nil))
        }
        if !keepAlive { try? await channel.close() }
    }
}

extension ChannelSink {
    /// `headers`, with room for the three the sink adds.
    fileprivate static func headers(_ headers: [(String, String)]) -> HTTPHeaders {
        var httpHeaders = HTTPHeaders()
        httpHeaders.reserveCapacity(headers.count + 3)
        for (name, value) in headers { httpHeaders.add(name: name, value: value) }
        return httpHeaders
    }
}

extension HTTPHeaders {
    /// `replaceOrAdd` without its cost when the name is not there yet (the usual case: `remove` copies).
    mutating func set(name: String, value: String) {
        if contains(name: name) {
            replaceOrAdd(name: name, value: value)
        } else {
            add(name: name, value: value)
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
