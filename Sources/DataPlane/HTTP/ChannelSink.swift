import Foundation
import NIOCore
import NIOHTTP1
import Synchronization

/// Writes a response to the connection a request came from.
struct ChannelSink: ResponseSink {
    let channel: any Channel
    let keepAlive: Bool
    let version: HTTPVersion

    func start(status: Int, headers: [(String, String)], contentLength: Int?) async throws {
        var httpHeaders = HTTPHeaders(headers)
        if let contentLength {
            httpHeaders.replaceOrAdd(name: "Content-Length", value: String(contentLength))
        } else {
            httpHeaders.replaceOrAdd(name: "Transfer-Encoding", value: "chunked")
        }
        httpHeaders.replaceOrAdd(name: "Date", value: httpDate())
        if !keepAlive { httpHeaders.replaceOrAdd(name: "Connection", value: "close") }
        let head = HTTPResponseHead(
            version: version, status: HTTPResponseStatus(statusCode: status), headers: httpHeaders)
        try await channel.writeAndFlush(HTTPServerResponsePart.head(head))
    }

    func write(_ bytes: [UInt8]) async throws {
        guard !bytes.isEmpty else { return }
        try await channel.writeAndFlush(
            HTTPServerResponsePart.body(.byteBuffer(channel.allocator.buffer(bytes: bytes))))
    }

    func finish() async throws {
        try await channel.writeAndFlush(HTTPServerResponsePart.end(nil))
        if !keepAlive { try? await channel.close() }
    }

    /// Head, body and end written together and flushed once.
    func respond(status: Int, headers: [(String, String)], body: [UInt8]) async {
        var httpHeaders = HTTPHeaders(headers)
        httpHeaders.replaceOrAdd(name: "Content-Length", value: String(body.count))
        httpHeaders.replaceOrAdd(name: "Date", value: httpDate())
        if !keepAlive { httpHeaders.replaceOrAdd(name: "Connection", value: "close") }
        let head = HTTPResponseHead(
            version: version, status: HTTPResponseStatus(statusCode: status), headers: httpHeaders)
        channel.write(HTTPServerResponsePart.head(head), promise: nil)
        channel.write(HTTPServerResponsePart.body(.byteBuffer(channel.allocator.buffer(bytes: body))), promise: nil)
        try? await channel.writeAndFlush(HTTPServerResponsePart.end(nil))
        if !keepAlive { try? await channel.close() }
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
