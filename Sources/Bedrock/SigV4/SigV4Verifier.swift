/// Checks SigV4 `Authorization` headers as AWS does, for the emulator.
///
/// The signature is recomputed over the request exactly as received (the raw path, the headers named
/// in `SignedHeaders`) and compared in constant time. Failures carry AWS's error name, status and
/// message, so SDKs raise the exception they would raise against AWS.
package struct SigV4Verifier: Sendable {
    /// Secret keys (and optional required session tokens) by access key id.
    package var credentials: [String: AWSCredentials]
    /// The service every scope must name (`bedrock` for Bedrock Runtime).
    package var service: String
    /// How far the request's date may be from the verifier's clock, in seconds (AWS allows 5 minutes).
    package var maxClockSkew: Int64 = 300

    /// A verifier that accepts `credentials`; of two with one access key id, the first wins.
    package init(credentials: [AWSCredentials], service: String) {
        self.credentials = Dictionary(credentials.map { ($0.accessKeyID, $0) }) { first, _ in first }
        self.service = service
    }

    /// What a verified request was signed for.
    package struct Verified: Sendable, Hashable {
        package var accessKeyID: String
        package var region: String
        package var date: AMZDate
    }

    /// The parts of an `Authorization: AWS4-HMAC-SHA256 …` header.
    package struct Authorization: Sendable, Hashable {
        package var accessKeyID: String
        /// `YYYYMMDD`, from the credential scope.
        package var dateStamp: String
        package var region: String
        package var service: String
        /// The lowercase header names of `SignedHeaders`, in order.
        package var signedHeaders: [String]
        /// The signature, in lowercase hex.
        package var signature: String

        /// Parses the header; the failure names every missing part, as AWS's message does.
        package static func parse(_ header: String) -> Result<Authorization, AWSErrorResponse> {
            let prefix = "AWS4-HMAC-SHA256 "
            guard header.hasPrefix(prefix) else {
                return .failure(
                    .incompleteSignature(
                        "Authorization header must use the AWS4-HMAC-SHA256 algorithm."))
            }
            var parameters: [String: String] = [:]
            for part in header.dropFirst(prefix.count).split(separator: ",") {
                let trimmed = part.trimmingCharacters(in: " ")
                guard let equals = trimmed.firstIndex(of: "=") else { continue }
                parameters[String(trimmed[..<equals])] = String(trimmed[trimmed.index(after: equals)...])
            }
            var missing: [String] = []
            for name in ["Credential", "Signature", "SignedHeaders"] where (parameters[name] ?? "").isEmpty {
                missing.append("Authorization header requires '\(name)' parameter.")
            }
            if !missing.isEmpty { return .failure(.incompleteSignature(missing.joined(separator: " "))) }
            let credential = (parameters["Credential"] ?? "").split(separator: "/", omittingEmptySubsequences: false)
            guard credential.count == 5, credential[4] == "aws4_request", !credential[0].isEmpty else {
                return .failure(
                    .incompleteSignature(
                        "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term.")
                )
            }
            let signature = parameters["Signature"] ?? ""
            guard signature.count == 64, signature.utf8.allSatisfy({ isLowerHex($0) }) else {
                return .failure(
                    .invalidSignature(
                        "The request signature we calculated does not match the signature "
                            + "you provided. Check your AWS Secret Access Key and signing method. Consult the service "
                            + "documentation for details."))
            }
            return .success(
                Authorization(
                    accessKeyID: String(credential[0]), dateStamp: String(credential[1]), region: String(credential[2]),
                    service: String(credential[3]),
                    signedHeaders: (parameters["SignedHeaders"] ?? "").split(separator: ";").map { $0.lowercased() },
                    signature: signature))
        }
    }

    /// Verifies a request. `headers` are as received (any case); `path` is the raw request path
    /// without its query; `now` is the verifier's clock.
    package func verify(
        method: String, path: String, query: String, headers: [(String, String)], body: some Sequence<UInt8>,
        now: AMZDate
    ) -> Result<Verified, AWSErrorResponse> {
        func header(_ name: String) -> [String] {
            headers.filter { $0.0.lowercased() == name }.map(\.1)
        }
        guard let authorizationHeader = header("authorization").first else {
            return .failure(
                AWSErrorResponse(
                    status: 403, type: "MissingAuthenticationTokenException",
                    message: "Missing Authentication Token"))
        }
        let authorization: Authorization
        switch Authorization.parse(authorizationHeader) {
        case .success(let parsed): authorization = parsed
        case .failure(let failure): return .failure(failure)
        }
        guard let dateText = header("x-amz-date").first ?? header("date").first, let date = AMZDate(dateText) else {
            return .failure(
                .incompleteSignature(
                    "Authorization header requires existence of either a 'X-Amz-Date' "
                        + "or a 'Date' header."))
        }
        if date.epochSeconds < now.epochSeconds - maxClockSkew {
            return .failure(
                .invalidSignature(
                    "Signature expired: \(date) is now earlier than "
                        + "\(AMZDate(epochSeconds: now.epochSeconds - maxClockSkew)) (\(now) - 5 min.)"))
        }
        if date.epochSeconds > now.epochSeconds + maxClockSkew {
            return .failure(
                .invalidSignature(
                    "Signature not yet current: \(date) is still later than "
                        + "\(AMZDate(epochSeconds: now.epochSeconds + maxClockSkew)) (\(now) + 5 min.)"))
        }
        guard let known = credentials[authorization.accessKeyID] else {
            return .failure(
                AWSErrorResponse(
                    status: 403, type: "UnrecognizedClientException",
                    message: "The security token included in the request is invalid."))
        }
        guard authorization.service == service else {
            return .failure(.invalidSignature("Credential should be scoped to correct service: '\(service)'. "))
        }
        guard authorization.dateStamp == date.dateStamp else {
            return .failure(
                .invalidSignature(
                    "Date in Credential scope does not match YYYYMMDD from ISO-8601 "
                        + "version of date from HTTP: '\(authorization.dateStamp)' != '\(date.dateStamp)', from '\(date)'."
                ))
        }
        guard authorization.signedHeaders.contains("host") else {
            return .failure(.invalidSignature("'Host' must be a 'SignedHeader' in the AWS Authorization."))
        }
        if let token = known.sessionToken, header("x-amz-security-token").first != token {
            return .failure(
                AWSErrorResponse(
                    status: 403, type: "UnrecognizedClientException",
                    message: "The security token included in the request is invalid."))
        }
        var signedValues: [(String, String)] = []
        for name in authorization.signedHeaders {
            let values = header(name)
            guard !values.isEmpty else {
                return .failure(
                    .invalidSignature(
                        "The request signature we calculated does not match the signature "
                            + "you provided: signed header '\(name)' is missing from the request."))
            }
            for value in values { signedValues.append((name, value)) }
        }
        let signer = SigV4Signer(
            credentials: known, region: authorization.region, service: authorization.service)
        let canonical = SigV4.canonicalRequest(
            method: method, path: path, query: query, headers: signedValues, payloadSHA256: SigV4.hexSHA256(body))
        let expected = signer.signature(canonicalRequest: canonical.text, date: date)
        guard constantTimeEqual(Array(expected.utf8), Array(authorization.signature.utf8)) else {
            return .failure(
                .invalidSignature(
                    "The request signature we calculated does not match the signature "
                        + "you provided. Check your AWS Secret Access Key and signing method. Consult the service "
                        + "documentation for details."))
        }
        return .success(Verified(accessKeyID: authorization.accessKeyID, region: authorization.region, date: date))
    }
}

/// Compares two byte strings in time that depends only on their lengths.
package func constantTimeEqual(_ lhs: [UInt8], _ rhs: [UInt8]) -> Bool {
    guard lhs.count == rhs.count else { return false }
    var difference: UInt8 = 0
    for index in lhs.indices { difference |= lhs[index] ^ rhs[index] }
    return difference == 0
}

private func isLowerHex(_ byte: UInt8) -> Bool {
    (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(byte)
}

extension Substring {
    func trimmingCharacters(in character: Character) -> Substring {
        var result = self
        while result.first == character { result = result.dropFirst() }
        while result.last == character { result = result.dropLast() }
        return result
    }
}
