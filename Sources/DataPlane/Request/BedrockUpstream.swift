import Bedrock
import BudgetConfig
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL

/// Where and as whom one ai-proxy reaches Bedrock, with what every request to it repeats worked out once
/// (per config snapshot): the `Host` header that is signed and the model's paths. A class, immutable, so that a
/// request's stages share it rather than retain each of its strings at every copy.
final class BedrockTarget: Sendable, Hashable {
    /// `scheme://host[:port]`, without a path.
    let endpoint: String
    /// The endpoint's scheme, host and port, where connections go.
    let origin: UpstreamOrigin
    let region: String
    let modelID: String
    let credentials: AWSCredentials
    /// The `Host` header sent to the endpoint (no default port), which is what is signed.
    let hostHeader: String
    /// `/model/{id}/converse`, the id percent-encoded as Bedrock's paths need.
    let conversePath: String
    /// `/model/{id}/converse-stream`.
    let converseStreamPath: String
    /// `/model/{id}/invoke`, for the Anthropic and Bedrock formats.
    let invokePath: String
    /// `/model/{id}/invoke-with-response-stream`.
    let invokeStreamPath: String
    /// The four paths as SigV4 canonicalizes them (percent-encoded once more), in `BedrockOperation` order.
    let canonicalPaths: [String]

    /// Targets are equal when their endpoint, region, model and credentials are (the rest derives from them).
    static func == (left: BedrockTarget, right: BedrockTarget) -> Bool {
        left === right
            || (left.endpoint == right.endpoint && left.region == right.region && left.modelID == right.modelID
                && left.credentials == right.credentials)
    }

    func hash(into hasher: inout Hasher) {
        hasher.combine(endpoint)
        hasher.combine(region)
        hasher.combine(modelID)
        hasher.combine(credentials)
    }

    /// Nil when `endpoint` is not `http(s)://host[:port]`.
    init?(endpoint: String, region: String, modelID: String, credentials: AWSCredentials) {
        guard let origin = UpstreamOrigin(endpoint: endpoint) else { return nil }
        self.origin = origin
        self.endpoint = endpoint
        self.region = region
        self.modelID = modelID
        self.credentials = credentials
        hostHeader = Self.host(of: endpoint)
        let model = "/model/" + SigV4.percentEncode(modelID, keepingSlash: false)
        conversePath = model + "/converse"
        converseStreamPath = model + "/converse-stream"
        invokePath = model + "/invoke"
        invokeStreamPath = model + "/invoke-with-response-stream"
        canonicalPaths = [conversePath, converseStreamPath, invokePath, invokeStreamPath].map(SigV4.canonicalURI)
    }

    /// The path of `operation` as SigV4 signs it.
    func canonicalPath(for operation: BedrockOperation) -> String {
        switch operation {
        case .converse: canonicalPaths[0]
        case .converseStream: canonicalPaths[1]
        case .invoke: canonicalPaths[2]
        case .invokeStream: canonicalPaths[3]
        }
    }

    /// The path of `operation` on this target's model.
    func path(for operation: BedrockOperation) -> String {
        switch operation {
        case .converse: conversePath
        case .converseStream: converseStreamPath
        case .invoke: invokePath
        case .invokeStream: invokeStreamPath
        }
    }

    /// The target for an ai-proxy config: `upstream_url` (scheme, host and port), else
    /// `AWS_ENDPOINT_URL_BEDROCK_RUNTIME`, else the regional endpoint; credentials from the plugin, else the
    /// AWS environment; region from `bedrock.aws_region`, else `AWS_REGION` / `AWS_DEFAULT_REGION`.
    static func resolve(_ config: AIProxyConfigView, environment: [String: String]) -> Result<
        BedrockTarget, UpstreamSetupError
    > {
        guard let region = config.region ?? environment["AWS_REGION"] ?? environment["AWS_DEFAULT_REGION"],
            !region.isEmpty
        else {
            return .failure(
                UpstreamSetupError(
                    message: "AWS region not specified anywhere: set model.options.bedrock.aws_region or AWS_REGION"))
        }
        let credentials: AWSCredentials
        if let id = config.accessKeyID, let secret = config.secretAccessKey {
            credentials = AWSCredentials(accessKeyID: id, secretAccessKey: secret)
        } else if let fromEnvironment = AWSCredentials(environment: environment) {
            credentials = fromEnvironment
        } else {
            return .failure(
                UpstreamSetupError(
                    message: "no AWS credentials: set the ai-proxy auth.aws_* fields or "
                        + "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for budget-proxyd"))
        }
        let override = config.upstreamURL ?? environment["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"]
        let endpoint = override.map(Self.origin) ?? "https://bedrock-runtime.\(region).amazonaws.com"
        guard
            let target = BedrockTarget(
                endpoint: endpoint, region: region, modelID: config.modelID, credentials: credentials)
        else {
            return .failure(
                UpstreamSetupError(
                    message: "the Bedrock endpoint \(endpoint) is not http(s)://host[:port] (from "
                        + (config.upstreamURL != nil ? "model.options.upstream_url" : "AWS_ENDPOINT_URL_BEDROCK_RUNTIME")
                        + ")"))
        }
        return .success(target)
    }

    /// `scheme://authority` of a URL.
    static func origin(_ url: String) -> String {
        guard let schemeEnd = url.firstRange(of: "://") else { return url }
        let rest = url[schemeEnd.upperBound...]
        let authorityEnd = rest.firstIndex(of: "/") ?? rest.endIndex
        return String(url[..<authorityEnd])
    }

    /// The `Host` header for `endpoint`: its authority without a default port (as HTTP clients send it).
    static func host(of endpoint: String) -> String {
        var authority = endpoint
        if let schemeEnd = authority.firstRange(of: "://") { authority = String(authority[schemeEnd.upperBound...]) }
        if endpoint.hasPrefix("https://") && authority.hasSuffix(":443") { authority.removeLast(4) }
        if endpoint.hasPrefix("http://") && authority.hasSuffix(":80") { authority.removeLast(3) }
        return authority
    }
}

/// The parts of an ai-proxy config the upstream needs, as plain values.
struct AIProxyConfigView: Sendable, Hashable {
    var modelID: String
    var region: String?
    var accessKeyID: String?
    var secretAccessKey: String?
    var upstreamURL: String?

    /// The view of an ai-proxy config; nil when it names no model.
    init?(_ config: AIProxyConfig) {
        guard let modelID = config.model.name else { return nil }
        self.modelID = modelID
        region = config.model.options.awsRegion
        accessKeyID = config.auth.awsAccessKeyID?.revealed
        secretAccessKey = config.auth.awsSecretAccessKey?.revealed
        upstreamURL = config.model.options.upstreamURL
    }
}

/// Why an ai-proxy cannot reach Bedrock (no region, no credentials): answered as a 500 to its requests.
struct UpstreamSetupError: Error, Sendable, Hashable, CustomStringConvertible {
    var message: String
    var description: String { message }
}

/// Bedrock Runtime over HTTPS (or HTTP to an emulator): pooled connections, SigV4 on every request.
final class BedrockUpstream: Sendable {
    let client: UpstreamClient

    /// `caBundle` (a PEM file, as the AWS SDKs' `AWS_CA_BUNDLE`) replaces the system's trust roots for HTTPS
    /// to Bedrock, for an endpoint behind a private CA.
    /// - Throws: `UpstreamSetupError` when the bundle cannot be read as PEM certificates.
    init(eventLoopGroup: any EventLoopGroup, caBundle: String? = nil, connectTimeout: TimeAmount = .seconds(10))
        throws(UpstreamSetupError)
    {
        var settings = UpstreamClient.Settings()
        settings.connectTimeout = connectTimeout
        if let caBundle {
            let certificates: [NIOSSLCertificate]
            do {
                certificates = try NIOSSLCertificate.fromPEMFile(caBundle)
            } catch {
                throw UpstreamSetupError(message: "AWS_CA_BUNDLE \(caBundle): cannot read PEM certificates: \(error)")
            }
            guard !certificates.isEmpty else {
                throw UpstreamSetupError(message: "AWS_CA_BUNDLE \(caBundle): no certificate in the file")
            }
            settings.trustRoots = certificates
        }
        do {
            client = try UpstreamClient(group: eventLoopGroup, settings: settings)
        } catch {
            throw UpstreamSetupError(message: "cannot set up TLS for Bedrock: \(error)")
        }
    }

    func shutdown() async {
        await client.shutdown()
    }

    /// Sends a Converse (or ConverseStream) body, signed, and returns the response: whole, or with its body
    /// to be read as it arrives when `stream`.
    func send(_ body: [UInt8], to target: BedrockTarget, stream: Bool, timeout: TimeAmount) async throws
        -> UpstreamResponse
    {
        try await send(body, to: target, operation: stream ? .converseStream : .converse, timeout: timeout)
    }

    /// Sends a body for `operation` on the target's model, signed with the target's credentials, and returns
    /// the response (its body streamed for a streaming operation, else collected up to 32 MiB).
    /// `bedrockHeaders` (a client's `X-Amzn-Bedrock-*` headers, lower-case names) are signed and sent too;
    /// nothing else of a client's request is. `timeout` bounds the wait for the answer and each gap in it.
    /// - Throws: `UpstreamFailure`, or `CancellationError`.
    func send(
        _ body: [UInt8], to target: BedrockTarget, operation: BedrockOperation,
        bedrockHeaders: [(String, String)] = [], timeout: TimeAmount
    ) async throws -> UpstreamResponse {
        let path = target.path(for: operation)
        let signer = SigV4Signer(credentials: target.credentials, region: target.region, service: "bedrock")
        let date = AMZDate(epochSeconds: Int64(Date().timeIntervalSince1970))
        // The headers to sign: host, content-type, then the client's Bedrock headers (one array, made once).
        var headers: [(String, String)] = []
        headers.reserveCapacity(bedrockHeaders.count + 4)
        headers.append(("host", target.hostHeader))
        headers.append(("content-type", "application/json"))
        headers.append(contentsOf: bedrockHeaders)
        if operation == .invokeStream && !bedrockHeaders.contains(where: { $0.0 == "x-amzn-bedrock-accept" }) {
            headers.append(("x-amzn-bedrock-accept", "application/json"))
        }
        let signed = signer.sign(
            method: "POST", canonicalPath: target.canonicalPath(for: operation), headers: headers,
            payloadSHA256: SigV4.hexSHA256(body), date: date)
        var requestHeaders: [(String, String)] = []
        requestHeaders.reserveCapacity(headers.count + signed.count + 1)  // Content-Length is written on sending
        requestHeaders.append(("Host", target.hostHeader))
        requestHeaders.append(contentsOf: headers.dropFirst())
        requestHeaders.append(
            ("Accept", operation.isStream ? "application/vnd.amazon.eventstream" : "application/json"))
        for header in signed { requestHeaders.append((header.name, header.value)) }
        return try await client.send(
            UpstreamRequest(path: path, headers: requestHeaders, body: body), to: target.origin,
            streaming: operation.isStream, readTimeout: timeout)
    }
}
