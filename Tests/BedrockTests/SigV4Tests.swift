import Bedrock
import Testing

@Suite("SigV4 signing against AWS's and botocore's vectors")
struct SigV4Tests {
    let example = AWSCredentials.documentationExample
    let suiteDate = AMZDate("20150830T123600Z")

    func signature(_ headers: [(name: String, value: String)]) -> String? {
        headers.first { $0.name == "Authorization" }?.value.split(separator: "=").last.map(String.init)
    }

    @Test("AMZDate converts both ways")
    func dates() {
        #expect(AMZDate("20150830T123600Z")?.epochSeconds == 1_440_938_160)
        #expect(AMZDate(epochSeconds: 1_440_938_160).description == "20150830T123600Z")
        #expect(AMZDate(epochSeconds: 0).description == "19700101T000000Z")
        #expect(AMZDate("20241301T000000Z") == nil)
        #expect(AMZDate("2024-01-01T00:00:00Z") == nil)
    }

    @Test(
        "the official suite's get-vanilla, post-vanilla and get-vanilla-with-session-token",
        arguments: [
            ("GET", nil as String?, "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
            ("POST", nil, "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"),
            (
                "GET", "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267",
                "07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8"
            ),
        ])
    func suite(method: String, token: String?, expected: String) throws {
        var credentials = example
        credentials.sessionToken = token
        let signer = SigV4Signer(credentials: credentials, region: "us-east-1", service: "service")
        let headers = signer.sign(
            method: method, path: "/", headers: [("Host", "example.amazonaws.com")],
            body: [], date: try #require(suiteDate))
        #expect(signature(headers) == expected)
        let signedHeaders = token == nil ? "host;x-amz-date" : "host;x-amz-date;x-amz-security-token"
        #expect(headers.last?.value.contains("SignedHeaders=\(signedHeaders),") == true)
        #expect(headers.contains { $0.name == "X-Amz-Security-Token" } == (token != nil))
    }

    @Test("the Bedrock vector: double-encoded model id in the canonical URI")
    func bedrockVector() throws {
        let signer = SigV4Signer(credentials: example, region: "us-east-1", service: "bedrock")
        let path = "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
        let body = Array(#"{"messages":[{"role":"user","content":[{"text":"Hi"}]}]}"#.utf8)
        let date = try #require(AMZDate("20240101T000000Z"))
        let headers = [("Host", "bedrock-runtime.us-east-1.amazonaws.com"), ("Content-Type", "application/json")]
        let canonical = SigV4.canonicalRequest(
            method: "POST", path: path, query: "", headers: headers + [("X-Amz-Date", date.description)],
            payloadSHA256: SigV4.hexSHA256(body))
        #expect(
            canonical.text == """
                POST
                /model/anthropic.claude-3-haiku-20240307-v1%253A0/converse

                content-type:application/json
                host:bedrock-runtime.us-east-1.amazonaws.com
                x-amz-date:20240101T000000Z

                content-type;host;x-amz-date
                45e583fed2564dc00e823303d7609f8587af7f685b993cb0f998afc0d480b01d
                """)
        #expect(
            signer.stringToSign(canonicalRequest: canonical.text, date: date) == """
                AWS4-HMAC-SHA256
                20240101T000000Z
                20240101/us-east-1/bedrock/aws4_request
                25eb5b299c447d41bbd7708fc2c5d340e984d414f0333e1798aed72d51428024
                """)
        let signed = signer.sign(method: "POST", path: path, headers: headers, body: body, date: date)
        #expect(signature(signed) == "480b78fcb0753cd946eeee7f0829f8b2028dca03d82a61d421346d1dac52f1d5")
        #expect(
            signed.last?.value == "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-east-1/bedrock/aws4_request, "
                + "SignedHeaders=content-type;host;x-amz-date, "
                + "Signature=480b78fcb0753cd946eeee7f0829f8b2028dca03d82a61d421346d1dac52f1d5")
    }

    /// Vectors computed with botocore 1.43.11's `SigV4Auth` (see bedrock-wire.md §6.4), which double-encodes
    /// paths for every service but S3 and sorts query pairs.
    @Test(
        "botocore vectors: query sorting, unreserved characters, UTF-8 and spaces in paths",
        arguments: [
            ("/", "Param2=value2&Param1=value1", "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"),
            (
                "/",
                "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz=-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
                "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197"
            ),
            ("/%E1%88%B4", "", "697b34846207a3f72246f99d74ae1ee4fe54f44bb06730c58a0d339eb079596d"),
            ("/example%20space/", "", "446b817944c553435b35e813c261ff4e161fff982d1bacdef1c87f6785dd1662"),
        ])
    func botocoreVectors(path: String, query: String, expected: String) throws {
        let signer = SigV4Signer(credentials: example, region: "us-east-1", service: "service")
        let headers = signer.sign(
            method: "GET", path: path, query: query, headers: [("Host", "example.amazonaws.com")],
            body: [], date: try #require(suiteDate))
        #expect(signature(headers) == expected)
    }

    @Test("botocore vector with a session token, a local endpoint and another region")
    func sessionTokenLocal() throws {
        let credentials = AWSCredentials(
            accessKeyID: "AKIDEXAMPLE", secretAccessKey: example.secretAccessKey,
            sessionToken: "FQoGZXIvYXdzEXAMPLETOKEN")
        let signer = SigV4Signer(credentials: credentials, region: "eu-west-3", service: "bedrock")
        let headers = signer.sign(
            method: "POST", path: "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse-stream",
            headers: [("Host", "127.0.0.1:9100"), ("Content-Type", "application/json")],
            body: Array(#"{"messages":[]}"#.utf8), date: try #require(AMZDate("20261129T151328Z")))
        #expect(signature(headers) == "7a5109758963fd6fb5262b270e9d9b3fcbfac5a9e7ee78d8314d50975cca5ffd")
    }

    @Test("canonical URIs drop dot segments and repeated slashes, as botocore does")
    func canonicalURI() {
        #expect(SigV4.canonicalURI("") == "/")
        #expect(SigV4.canonicalURI("/a/./b/../c//d/") == "/a/c/d/")
        #expect(SigV4.canonicalURI("/x y") == "/x%20y")
    }

    @Test("credentials never print their secret")
    func secretsMasked() {
        let text = "\(AWSCredentials(accessKeyID: "AKID", secretAccessKey: "s3cret", sessionToken: "tok"))"
        #expect(!text.contains("s3cret") && !text.contains("tok)") && text.contains("[masked]"))
    }
}

@Suite("SigV4 verification, for the emulator")
struct SigV4VerifierTests {
    let verifier = SigV4Verifier(credentials: [.documentationExample], service: "bedrock")
    let path = "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
    let body = Array(#"{"messages":[{"role":"user","content":[{"text":"Hi"}]}]}"#.utf8)
    let date = AMZDate(epochSeconds: 1_780_000_000)

    func signedHeaders(
        credentials: AWSCredentials = .documentationExample, date: AMZDate? = nil,
        service: String = "bedrock"
    ) -> [(String, String)] {
        let base = [("Host", "127.0.0.1:9100"), ("Content-Type", "application/json")]
        let signer = SigV4Signer(credentials: credentials, region: "us-east-1", service: service)
        return base
            + signer.sign(method: "POST", path: path, headers: base, body: body, date: date ?? self.date)
            .map { ($0.name, $0.value) }
    }

    func verify(_ headers: [(String, String)], body: [UInt8]? = nil, now: AMZDate? = nil) -> Result<
        SigV4Verifier.Verified, AWSErrorResponse
    > {
        verifier.verify(
            method: "POST", path: path, query: "", headers: headers, body: body ?? self.body, now: now ?? date)
    }

    @Test("a correctly signed request verifies, with its key and region")
    func valid() {
        guard case .success(let verified) = verify(signedHeaders()) else {
            Issue.record("expected success")
            return
        }
        #expect(verified.accessKeyID == "AKIDEXAMPLE" && verified.region == "us-east-1")
    }

    @Test("a changed body, a wrong secret or an unknown key are refused as AWS refuses them")
    func refused() {
        guard case .failure(let tampered) = verify(signedHeaders(), body: Array("{}".utf8)) else {
            Issue.record("tampered body accepted")
            return
        }
        #expect(tampered.status == 403 && tampered.type == "InvalidSignatureException")
        let wrongSecret = AWSCredentials(accessKeyID: "AKIDEXAMPLE", secretAccessKey: "wrong")
        guard case .failure(let bad) = verify(signedHeaders(credentials: wrongSecret)) else {
            Issue.record("wrong secret accepted")
            return
        }
        #expect(bad.type == "InvalidSignatureException")
        #expect(bad.message.hasPrefix("The request signature we calculated does not match"))
        guard
            case .failure(let unknown) = verify(
                signedHeaders(credentials: AWSCredentials(accessKeyID: "AKIDOTHER", secretAccessKey: "x")))
        else {
            Issue.record("unknown key accepted")
            return
        }
        #expect(unknown.status == 403 && unknown.type == "UnrecognizedClientException")
    }

    @Test("a clock skew over five minutes, or a date in 1970, is refused")
    func skew() {
        guard case .failure(let old) = verify(signedHeaders(date: AMZDate(epochSeconds: 0))) else {
            Issue.record("1970 accepted")
            return
        }
        #expect(old.type == "InvalidSignatureException")
        #expect(old.message.hasPrefix("Signature expired: 19700101T000000Z is now earlier than"))
        guard case .failure(let future) = verify(signedHeaders(date: AMZDate(epochSeconds: date.epochSeconds + 301)))
        else {
            Issue.record("future accepted")
            return
        }
        #expect(future.message.hasPrefix("Signature not yet current:"))
        if case .failure = verify(signedHeaders(date: AMZDate(epochSeconds: date.epochSeconds - 299))) {
            Issue.record("a skew under five minutes must pass")
        }
    }

    @Test("malformed Authorization headers get IncompleteSignatureException naming what is missing")
    func malformed() {
        let base: [(String, String)] = [("Host", "h"), ("X-Amz-Date", date.description)]
        guard case .failure(let none) = verify(base) else { Issue.record("no auth accepted"); return }
        #expect(none.status == 403 && none.type == "MissingAuthenticationTokenException")
        guard
            case .failure(let partial) = verify(
                base + [
                    ("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260528/us-east-1/bedrock/aws4_request")
                ])
        else {
            Issue.record("partial accepted")
            return
        }
        #expect(partial.status == 400 && partial.type == "IncompleteSignatureException")
        #expect(
            partial.message == "Authorization header requires 'Signature' parameter. "
                + "Authorization header requires 'SignedHeaders' parameter.")
        guard case .failure(let other) = verify(base + [("Authorization", "Basic dXNlcjpwYXNz")]) else {
            Issue.record("basic accepted")
            return
        }
        #expect(other.type == "IncompleteSignatureException")
        guard case .failure(let wrongService) = verify(signedHeaders(service: "s3")) else {
            Issue.record("wrong service accepted")
            return
        }
        #expect(wrongService.message == "Credential should be scoped to correct service: 'bedrock'. ")
    }
}
