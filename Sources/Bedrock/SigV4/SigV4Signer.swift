import Crypto
import protocol Foundation.ContiguousBytes
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
        signed.reserveCapacity(headers.count + 2)
        var added: [(name: String, value: String)] = []
        added.reserveCapacity(3)
        added.append(("X-Amz-Date", stamp.amzDate))
        signed.append(("x-amz-date", stamp.amzDate))
        if let token = credentials.sessionToken {
            signed.append(("x-amz-security-token", token))
            added.append(("X-Amz-Security-Token", token))
        }
        let canonical = SigV4.canonicalRequest(
            method: method, canonicalPath: canonicalPath, query: query, headers: signed, payloadSHA256: payloadSHA256)
        let signature = signature(canonical.text, stamp)
        var authorization = ""
        authorization.reserveCapacity(
            80 + credentials.accessKeyID.utf8.count + stamp.scope.utf8.count + canonical.signedHeaders.utf8.count)
        authorization += "AWS4-HMAC-SHA256 Credential="
        authorization += credentials.accessKeyID
        authorization += "/"
        authorization += stamp.scope
        authorization += ", SignedHeaders="
        authorization += canonical.signedHeaders
        authorization += ", Signature="
        authorization += signature
        added.append(("Authorization", authorization))
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
    struct Stamp: Sendable {
        /// `YYYYMMDDTHHMMSSZ`.
        var amzDate: String
        /// `YYYYMMDD`.
        var dateStamp: String
        /// `date/region/service/aws4_request`.
        var scope: String
    }

    private func stamp(_ date: AMZDate) -> Stamp {
        // A second's stamp is the same for every request signed in it: the last one made is kept.
        if let last = StampMemo.shared.last(date, region: region, service: service) { return last }
        let amzDate = date.description
        let dateStamp = String(amzDate.prefix(8))
        var scope = ""
        scope.reserveCapacity(dateStamp.utf8.count + region.utf8.count + service.utf8.count + 16)
        scope += dateStamp
        scope += "/"
        scope += region
        scope += "/"
        scope += service
        scope += "/aws4_request"
        let stamp = Stamp(amzDate: amzDate, dateStamp: dateStamp, scope: scope)
        StampMemo.shared.keep(stamp, of: date, region: region, service: service)
        return stamp
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
        String(decoding: stringToSignBytes(canonicalRequest, stamp), as: UTF8.self)
    }

    /// The string to sign, as the bytes the HMAC reads.
    private func stringToSignBytes(_ canonicalRequest: String, _ stamp: Stamp) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(17 + 16 + 1 + stamp.scope.utf8.count + 1 + 64)
        bytes.append(contentsOf: "AWS4-HMAC-SHA256\n".utf8)
        bytes.append(contentsOf: stamp.amzDate.utf8)
        bytes.append(UInt8(ascii: "\n"))
        bytes.append(contentsOf: stamp.scope.utf8)
        bytes.append(UInt8(ascii: "\n"))
        var text = canonicalRequest
        bytes.append(contentsOf: hex(text.withUTF8 { SHA256.hash(data: $0) }).utf8)
        return bytes
    }

    private func signature(_ canonicalRequest: String, _ stamp: Stamp) -> String {
        var mac = signingMAC(dateStamp: stamp.dateStamp)
        mac.update(data: stringToSignBytes(canonicalRequest, stamp))
        return hex(mac.finalize())
    }

    /// kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request"), derived once
    /// per key, day, region and service (the derivation is a large share of a signature's cost; bench/README.md).
    func signingKey(dateStamp: String) -> SymmetricKey { signing(dateStamp: dateStamp).key }

    /// An HMAC keyed with the signing key and nothing written yet: copying it costs less than keying a new one.
    func signingMAC(dateStamp: String) -> HMAC<SHA256> { signing(dateStamp: dateStamp).mac }

    private func signing(dateStamp: String) -> SigningKeyCache.Signing {
        let cacheKey = SigningKeyCache.Key(
            accessKeyID: credentials.accessKeyID, secret: credentials.secretAccessKey, dateStamp: dateStamp,
            region: region, service: service)
        if let cached = SigningKeyCache.shared.signing(for: cacheKey) { return cached }
        var key = SymmetricKey(data: Array(("AWS4" + credentials.secretAccessKey).utf8))
        for part in [dateStamp, region, service, "aws4_request"] {
            key = SymmetricKey(data: Array(HMAC<SHA256>.authenticationCode(for: Array(part.utf8), using: key)))
        }
        let signing = SigningKeyCache.Signing(key: key, mac: HMAC<SHA256>(key: key))
        SigningKeyCache.shared.store(signing, for: cacheKey)
        return signing
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

    /// A derived key, and an HMAC keyed with it. swift-crypto marks neither Sendable; both are values whose
    /// storage is never written once made (an HMAC copies its state before its first update), so sharing them
    /// between threads is safe.
    struct Signing: @unchecked Sendable {
        let key: SymmetricKey
        let mac: HMAC<SHA256>
    }

    private struct Entries {
        var byKey: [Key: Signing] = [:]
        /// The entry found or stored last: a proxy signs for one key, day, region and service nearly always,
        /// and comparing with it (the same strings, so mostly identity checks) costs less than hashing five.
        var last: (key: Key, value: Signing)?
    }

    private let entries = Mutex(Entries())

    func signing(for key: Key) -> Signing? {
        entries.withLock { entries -> Signing? in
            if let last = entries.last, last.key == key { return last.value }
            guard let found = entries.byKey[key] else { return nil }
            entries.last = (key, found)
            return found
        }
    }

    func store(_ value: Signing, for key: Key) {
        entries.withLock { entries in
            if entries.byKey.count >= Self.capacity { entries.byKey.removeAll() }
            entries.byKey[key] = value
            entries.last = (key, value)
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
        var entries = headers.map { (name: lowercasedName($0.0), value: collapseWhitespace($0.1)) }
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
        signedHeaders.reserveCapacity(entries.reduce(0) { $0 + $1.name.utf8.count + 1 })
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
        // Most values have nothing to collapse: no tab, no space at either end, no two spaces in a row.
        var previous = UInt8(ascii: " ")
        var clean = true
        for byte in value.utf8 {
            if byte == UInt8(ascii: "\t") || (byte == UInt8(ascii: " ") && previous == UInt8(ascii: " ")) {
                clean = false
                break
            }
            previous = byte
        }
        if clean && previous != UInt8(ascii: " ") { return value }
        return value.split(whereSeparator: { $0 == " " || $0 == "\t" }).joined(separator: " ")
    }

    /// A header name in lower case (the name itself when it already is).
    static func lowercasedName(_ name: String) -> String {
        name.utf8.contains { $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") } ? name.lowercased() : name
    }

    private static let hexDigits = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "A", "B", "C", "D", "E", "F"]
}

/// Lowercase hex of a digest or MAC.
func hex(_ value: some ContiguousBytes) -> String {
    value.withUnsafeBytes { hex(bytes: $0) }
}

private func hex(bytes: UnsafeRawBufferPointer) -> String {
    let digits: StaticString = "0123456789abcdef"
    // Written into the string's own storage: one allocation.
    return String(unsafeUninitializedCapacity: bytes.count * 2) { out in
        digits.withUTF8Buffer { digits in
            var index = 0
            for byte in bytes {
                out[index] = digits[Int(byte >> 4)]
                out[index + 1] = digits[Int(byte & 0x0F)]
                index += 2
            }
            return index
        }
    }
}

/// The stamp of the second signed last, per region and service.
final class StampMemo: Sendable {
    static let shared = StampMemo()

    private struct Entry {
        var epochSeconds: Int64
        var region: String
        var service: String
        var stamp: SigV4Signer.Stamp
    }

    private let entry = Mutex<Entry?>(nil)

    func last(_ date: AMZDate, region: String, service: String) -> SigV4Signer.Stamp? {
        entry.withLock { entry in
            guard let entry, entry.epochSeconds == date.epochSeconds, entry.region == region,
                entry.service == service
            else { return nil }
            return entry.stamp
        }
    }

    func keep(_ stamp: SigV4Signer.Stamp, of date: AMZDate, region: String, service: String) {
        entry.withLock {
            $0 = Entry(epochSeconds: date.epochSeconds, region: region, service: service, stamp: stamp)
        }
    }
}
