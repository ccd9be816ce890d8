import Crypto
import Synchronization

/// AWS Signature Version 4 for any service and region, as botocore's `SigV4Auth` computes it.
///
/// Paths are canonicalized as for every service but S3: dot segments and repeated slashes are
/// removed, then the path as sent (already percent-encoded) is percent-encoded once more, so
/// `…v1%3A0` on the wire is `…v1%253A0` in the canonical request.
public struct SigV4Signer: Sendable {
    public var credentials: AWSCredentials
    public var region: String
    public var service: String

    public init(credentials: AWSCredentials, region: String, service: String) {
        self.credentials = credentials
        self.region = region
        self.service = service
    }

    /// The headers to add to a request: `X-Amz-Date`, `X-Amz-Security-Token` with session credentials,
    /// and `Authorization`. `headers` are those to sign (at least `host`; `content-type` for a body).
    public func sign(
        method: String, path: String, query: String = "", headers: [(String, String)],
        payloadSHA256: String, date: AMZDate
    ) -> [(name: String, value: String)] {
        sign(
            method: method, canonicalPath: SigV4.canonicalURI(path), query: query, headers: headers,
            payloadSHA256: payloadSHA256, date: date)
    }

    /// Signs a request whose path is already canonicalized (`SigV4.canonicalURI`), for a caller that sends many
    /// requests to one path.
    public func sign(
        method: String, canonicalPath: String, query: String = "", headers: [(String, String)],
        payloadSHA256: String, date: AMZDate
    ) -> [(name: String, value: String)] {
        let stamp = stamp(date)
        var signed = headers
        var added: [(name: String, value: String)] = [("X-Amz-Date", stamp.amzDate)]
        signed.append(("x-amz-date", stamp.amzDate))
        if let token = credentials.sessionToken {
            signed.append(("x-amz-security-token", token))
            added.append(("X-Amz-Security-Token", token))
        }
        let canonical = SigV4.canonicalRequest(
            method: method, canonicalPath: canonicalPath, query: query, headers: signed, payloadSHA256: payloadSHA256)
        added.append(
            (
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=\(credentials.accessKeyID)/\(stamp.scope), "
                    + "SignedHeaders=\(canonical.signedHeaders), Signature=\(signature(canonical.text, stamp))"
            ))
        return added
    }

    /// Signs with the body's hash computed here.
    public func sign(
        method: String, path: String, query: String = "", headers: [(String, String)], body: some Sequence<UInt8>,
        date: AMZDate
    ) -> [(name: String, value: String)] {
        sign(
            method: method, path: path, query: query, headers: headers, payloadSHA256: SigV4.hexSHA256(body), date: date
        )
    }

    /// The forms of a request's date that a signature uses, formatted once per signature.
    private struct Stamp {
        /// `YYYYMMDDTHHMMSSZ`.
        var amzDate: String
        /// `YYYYMMDD`.
        var dateStamp: String
        /// `date/region/service/aws4_request`.
        var scope: String
    }

    private func stamp(_ date: AMZDate) -> Stamp {
        let amzDate = date.description
        let dateStamp = String(amzDate.prefix(8))
        return Stamp(amzDate: amzDate, dateStamp: dateStamp, scope: "\(dateStamp)/\(region)/\(service)/aws4_request")
    }

    /// `date/region/service/aws4_request`.
    public func scope(_ date: AMZDate) -> String { stamp(date).scope }

    /// SigV4's string to sign: algorithm, date, scope and the hash of the canonical request.
    public func stringToSign(canonicalRequest: String, date: AMZDate) -> String {
        stringToSign(canonicalRequest, stamp(date))
    }

    /// The hex signature of a canonical request.
    public func signature(canonicalRequest: String, date: AMZDate) -> String {
        signature(canonicalRequest, stamp(date))
    }

    private func stringToSign(_ canonicalRequest: String, _ stamp: Stamp) -> String {
        "AWS4-HMAC-SHA256\n\(stamp.amzDate)\n\(stamp.scope)\n\(SigV4.hexSHA256(canonicalRequest.utf8))"
    }

    private func signature(_ canonicalRequest: String, _ stamp: Stamp) -> String {
        let mac = HMAC<SHA256>.authenticationCode(
            for: Array(stringToSign(canonicalRequest, stamp).utf8), using: signingKey(dateStamp: stamp.dateStamp))
        return hex(mac)
    }

    /// kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request"), derived once
    /// per key, day, region and service (the derivation is a large share of a signature's cost; bench/README.md).
    func signingKey(dateStamp: String) -> SymmetricKey {
        let cacheKey = SigningKeyCache.Key(
            accessKeyID: credentials.accessKeyID, secret: credentials.secretAccessKey, dateStamp: dateStamp,
            region: region, service: service)
        if let cached = SigningKeyCache.shared.key(for: cacheKey) { return cached }
        var key = SymmetricKey(data: Array(("AWS4" + credentials.secretAccessKey).utf8))
        for part in [dateStamp, region, service, "aws4_request"] {
            key = SymmetricKey(data: Array(HMAC<SHA256>.authenticationCode(for: Array(part.utf8), using: key)))
        }
        SigningKeyCache.shared.store(key, for: cacheKey)
        return key
    }
}

/// Derived signing keys, bounded (64 entries; cleared when full), shared by every signer and verifier
/// of the process. The secret is part of the key, so a rotated secret never finds an old entry.
final class SigningKeyCache: Sendable {
    static let shared = SigningKeyCache()
    static let capacity = 64

    struct Key: Hashable, Sendable {
        var accessKeyID: String
        var secret: String
        var dateStamp: String
        var region: String
        var service: String
    }

    private let entries = Mutex<[Key: [UInt8]]>([:])

    func key(for key: Key) -> SymmetricKey? {
        entries.withLock { $0[key] }.map { SymmetricKey(data: $0) }
    }

    func store(_ value: SymmetricKey, for key: Key) {
        let bytes = value.withUnsafeBytes { Array($0) }
        entries.withLock { entries in
            if entries.count >= Self.capacity { entries.removeAll() }
            entries[key] = bytes
        }
    }
}

/// The canonical forms SigV4 is computed over.
public enum SigV4 {
    /// A canonical request and the `SignedHeaders` list it was built with.
    public struct CanonicalRequest: Sendable, Hashable {
        public var text: String
        public var signedHeaders: String
    }

    /// The canonical request: method, canonical path and query, sorted headers, payload hash.
    public static func canonicalRequest(
        method: String, path: String, query: String, headers: [(String, String)], payloadSHA256: String
    ) -> CanonicalRequest {
        canonicalRequest(
            method: method, canonicalPath: canonicalURI(path), query: query, headers: headers,
            payloadSHA256: payloadSHA256)
    }

    /// The canonical request for a path already canonicalized (`canonicalURI`), which a caller that signs many
    /// requests to one path works out once. Headers with one name are joined in the order given.
    public static func canonicalRequest(
        method: String, canonicalPath: String, query: String, headers: [(String, String)], payloadSHA256: String
    ) -> CanonicalRequest {
        // Lower-cased names, values with whitespace collapsed, sorted by name (stably: a repeated name keeps its
        // values in order), then one line per name.
        var entries = headers.map { (name: $0.0.lowercased(), value: collapseWhitespace($0.1)) }
        if !entries.isEmpty {
            for index in 1..<entries.count {
                var position = index
                let entry = entries[index]
                while position > 0 && entries[position - 1].name > entry.name {
                    entries[position] = entries[position - 1]
                    position -= 1
                }
                entries[position] = entry
            }
        }
        var text = ""
        text.reserveCapacity(256 + canonicalPath.utf8.count + query.utf8.count)
        text += method.uppercased()
        text += "\n"
        text += canonicalPath
        text += "\n"
        text += canonicalQuery(query)
        text += "\n"
        var signedHeaders = ""
        var index = 0
        while index < entries.count {
            let name = entries[index].name
            text += name
            text += ":"
            text += entries[index].value
            index += 1
            while index < entries.count && entries[index].name == name {
                text += ","
                text += entries[index].value
                index += 1
            }
            text += "\n"
            if !signedHeaders.isEmpty { signedHeaders += ";" }
            signedHeaders += name
        }
        text += "\n"
        text += signedHeaders
        text += "\n"
        text += payloadSHA256
        return CanonicalRequest(text: text, signedHeaders: signedHeaders)
    }

    /// The path with dot segments and empty segments removed, then percent-encoded once more
    /// (only unreserved characters, `/` and `~` are kept).
    public static func canonicalURI(_ path: String) -> String {
        guard !path.isEmpty else { return "/" }
        var segments: [Substring] = []
        for segment in path.split(separator: "/", omittingEmptySubsequences: true) where segment != "." {
            if segment == ".." {
                if !segments.isEmpty { segments.removeLast() }
            } else {
                segments.append(segment)
            }
        }
        var normalized = path.hasPrefix("/") ? "/" : ""
        normalized += segments.joined(separator: "/")
        if path.hasSuffix("/") && !segments.isEmpty { normalized += "/" }
        return percentEncode(normalized, keepingSlash: true)
    }

    /// Query pairs sorted as botocore sorts the already-encoded pairs of a URL.
    public static func canonicalQuery(_ query: String) -> String {
        guard !query.isEmpty else { return "" }
        let pairs = query.split(separator: "&", omittingEmptySubsequences: false).map { pair -> (String, String) in
            guard let equals = pair.firstIndex(of: "=") else { return (String(pair), "") }
            return (String(pair[..<equals]), String(pair[pair.index(after: equals)...]))
        }
        return pairs.sorted { ($0.0, $0.1) < ($1.0, $1.1) }.map { "\($0.0)=\($0.1)" }.joined(separator: "&")
    }

    /// RFC 3986 percent-encoding of everything but `A-Z a-z 0-9 - _ . ~` (and `/` when asked).
    public static func percentEncode(_ text: String, keepingSlash: Bool) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."),
                UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            case UInt8(ascii: "/") where keepingSlash:
                out += "/"
            default:
                out += "%" + hexDigits[Int(byte >> 4)] + hexDigits[Int(byte & 0x0F)]
            }
        }
        return out
    }

    /// The SHA-256 of `bytes`, in lowercase hex.
    public static func hexSHA256(_ bytes: some Sequence<UInt8>) -> String {
        var hasher = SHA256()
        if bytes.withContiguousStorageIfAvailable({ hasher.update(bufferPointer: UnsafeRawBufferPointer($0)) }) == nil {
            hasher.update(data: Array(bytes))
        }
        return hex(hasher.finalize())
    }

    static func collapseWhitespace(_ value: String) -> String {
        value.split(whereSeparator: { $0 == " " || $0 == "\t" }).joined(separator: " ")
    }

    private static let hexDigits = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "A", "B", "C", "D", "E", "F"]
}

/// Lowercase hex of a digest or MAC.
func hex(_ bytes: some Sequence<UInt8>) -> String {
    let digits: StaticString = "0123456789abcdef"
    var out: [UInt8] = []
    out.reserveCapacity(64)
    digits.withUTF8Buffer { digits in
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0F)])
        }
    }
    return String(decoding: out, as: UTF8.self)
}
