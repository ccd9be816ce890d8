/// An HTTP request as the proxy handles it: fully read (bounded) before it is handled.
struct ProxyRequest: Sendable {
    var method: String
    /// The path without the query.
    var path: String
    /// The raw query, without `?`.
    var query: String
    var headers: [(name: String, value: String)]
    var body: [UInt8]

    init(method: String, path: String, query: String, headers: [(name: String, value: String)], body: [UInt8]) {
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
    }

    /// The first value of a header, by case-insensitive name.
    func header(_ name: String) -> String? {
        headers.first { $0.name.caseInsensitiveEquals(name) }?.value
    }

    /// A query parameter, percent-decoded.
    func queryParameter(_ name: String) -> String? {
        for pair in query.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, parts[0] == name else { continue }
            return percentDecode(String(parts[1]))
        }
        return nil
    }
}

/// Where a response goes: the HTTP connection it came from.
protocol ResponseSink: Sendable {
    /// Sends the status and headers (they may wait for the body's first bytes to be flushed with them);
    /// `contentLength` nil means a chunked body. Throws when the client has gone.
    func start(status: Int, headers: [(String, String)], contentLength: Int?) async throws
    /// Sends and flushes body bytes; throws once the client has gone.
    func write(_ bytes: [UInt8]) async throws
    func finish() async throws
    /// Sends the body's last bytes and ends it, flushed together.
    func finish(last bytes: [UInt8]) async throws
    /// A whole response (status, headers and body) at once.
    func respond(status: Int, headers: [(String, String)], body: [UInt8]) async
}

extension ResponseSink {
    func finish(last bytes: [UInt8]) async throws {
        try await write(bytes)
        try await finish()
    }

    /// A whole response in one go: the default sends head, body and end one by one.
    func respond(status: Int, headers: [(String, String)], body: [UInt8]) async {
        try? await start(status: status, headers: headers, contentLength: body.count)
        try? await write(body)
        try? await finish()
    }
}

extension String {
    func caseInsensitiveEquals(_ other: String) -> Bool {
        utf8.count == other.utf8.count && lowercased() == other.lowercased()
    }
}

func percentDecode(_ text: String) -> String? {
    var bytes: [UInt8] = []
    var iterator = Array(text.utf8).makeIterator()
    while let byte = iterator.next() {
        if byte == UInt8(ascii: "%") {
            guard let high = iterator.next(), let low = iterator.next(),
                let value = UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16)
            else { return nil }
            bytes.append(value)
        } else if byte == UInt8(ascii: "+") {
            bytes.append(UInt8(ascii: " "))
        } else {
            bytes.append(byte)
        }
    }
    return String(validating: bytes, as: UTF8.self)
}
