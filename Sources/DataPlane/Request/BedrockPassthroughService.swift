import Bedrock
import BudgetConfig
import BudgetJSON
import Foundation
import Logging
import NIOCore
import NIOHTTP1

/// `llm_format: bedrock`: Bedrock Runtime's own API at `<route>/model/{modelId}/converse`, `converse-stream`,
/// `invoke` and `invoke-with-response-stream`, for AWS SDK clients (boto3's `bedrock-runtime` with
/// `endpoint_url` at the route). The client authenticates with key-auth; its own SigV4 `Authorization` and
/// `X-Amz-*` headers are not forwarded: the request is signed again with the route's credentials. The model id
/// in the path must be the route's `model.name` (percent-decoded, exactly). Replies, errors and event streams
/// go back as Bedrock sent them (streams frame by frame); usage comes from Converse's `usage` and `metadata`,
/// InvokeModel's `X-Amzn-Bedrock-*-Token-Count` headers and the Claude stream's events.
extension ProxyService {
    /// A native Bedrock request bound for one ai-proxy.
    struct NativeCall {
        var ask: BudgetAsk
        var modelID: String
        var target: Result<BedrockTarget, UpstreamSetupError>
        var request: BedrockNativeRequest
        /// Members to drop from the body (a key sent in it for key-auth).
        var removing: [String]
        /// The client's `X-Amzn-Bedrock-*` headers (trace, guardrail, performance, service tier).
        var bedrockHeaders: [(String, String)]
        var timeout: TimeAmount
        /// The body as the client sent it.
        var original: [UInt8]
    }

    func serveBedrock(
        _ request: ProxyRequest, body: inout RequestBody, caller: Caller, sink: any ResponseSink, outcome: inout Outcome
    ) async throws(ProxyAnswer) {
        let call = try parseNative(request, body: &body, caller: caller)
        let admission = try await admit(call.ask, caller: caller, outcome: &outcome)
        let hold = BudgetHold(reservation: admission.reservation, link: link)
        try await forwardNative(call, admission: admission, hold: hold, sink: sink, outcome: &outcome)
    }

    private func parseNative(_ request: ProxyRequest, body: inout RequestBody, caller: Caller) throws(ProxyAnswer)
        -> NativeCall
    {
        let (proxy, modelID, target, limit) = try Self.aiProxy(of: caller, maxBodyBytes: settings.maxBodyBytes)
        guard let (encodedModel, operation) = BedrockNativeRequest.route(request.path) else {
            throw .bedrock(
                AWSErrorResponse(
                    status: 404, type: "UnknownOperationException",
                    message: "this route serves Bedrock Runtime: POST <route>/model/{modelId}/converse, "
                        + "converse-stream, invoke or invoke-with-response-stream"))
        }
        guard request.body.count <= limit else {
            throw .bedrock(
                .validation("request body of \(request.body.count) bytes exceeds the limit of \(limit) bytes"))
        }
        guard encodedModel.removingPercentEncoding == modelID else {
            throw .bedrock(
                .validation(
                    "cannot use own model - must be: \(modelID) (this route serves only its configured model)"))
        }
        if proxy.config.responseStreaming == .deny && operation.isStream {
            throw .bedrock(.validation("response streaming is not enabled for this LLM"))
        }
        let native: BedrockNativeRequest
        var removing: [String] = []
        do throws(AWSErrorResponse) {
            let json: JSONValue
            switch body.json {
            case .success(let value): json = value
            case .failure(let error): throw .validation("Malformed input request: \(error.message)")
            }
            if let keyAuth = caller.route.keyAuth, keyAuth.keyInBody {
                removing = keyAuth.keyNames.filter { json[$0] != nil }
            }
            native = try BedrockNativeRequest.parse(json, operation: operation)
        } catch {
            throw .bedrock(error)
        }
        let bedrockHeaders = request.headers.compactMap { header -> (String, String)? in
            let name = header.name.lowercased()
            guard name.hasPrefix("x-amzn-bedrock-") else { return nil }
            return (name, header.value)
        }
        return NativeCall(
            ask: BudgetAsk(
                proxy: proxy, promptTokens: native.estimatedPromptTokens,
                maxTokens: proxy.config.model.options.maxTokens ?? native.maxTokens ?? ClaudeHaiku.maxOutputTokens),
            modelID: modelID, target: target, request: native, removing: removing, bedrockHeaders: bedrockHeaders,
            timeout: .milliseconds(Int64(caller.route.service?.readTimeout ?? 60_000)), original: request.body)
    }

    /// The request body: the client's bytes as they came, unless the output limit had to change (the config's
    /// `max_tokens`, or a hard budget's clamp) or a key must come out.
    private static func upstreamBody(_ call: NativeCall, admission: Admission) -> [UInt8] {
        // Without a limit of its own, Bedrock gives the model's maximum, which is what was assumed.
        let limitChanged = admission.maxTokens != call.request.maxTokens ?? ClaudeHaiku.maxOutputTokens
        guard limitChanged || !call.removing.isEmpty else { return call.original }
        return call.request.body(maxTokens: admission.maxTokens, removing: call.removing).serializedBytes
    }

    private func forwardNative(
        _ call: NativeCall, admission: Admission, hold: consuming BudgetHold, sink: any ResponseSink,
        outcome: inout Outcome
    ) async throws(ProxyAnswer) {
        let target = try Self.bedrockTarget(call.target)
        let operation = call.request.operation
        var common: [(String, String)] = []
        if call.ask.proxy.config.modelNameHeader { common.append(("X-Kong-LLM-Model", "bedrock/\(call.modelID)")) }
        let started = ContinuousClock.now
        let response: UpstreamResponse
        do {
            response = try await upstream.send(
                Self.upstreamBody(call, admission: admission), to: target,
                operation: operation, bedrockHeaders: call.bedrockHeaders, timeout: call.timeout)
        } catch {
            outcome.upstream = ContinuousClock.now - started
            if Task.isCancelled { throw .clientGone }
            if Self.mayHaveReachedBedrock(error) {
                chargePromptEstimate(call: call.ask, admission: admission, hold: hold, outcome: &outcome)
            }
            logger.warning(
                "upstream request failed",
                metadata: ["endpoint": "\(target.endpoint)", "error": "\(error)", "route": "\(outcome.route)"])
            if Self.cutOff(error) != nil {
                throw .bedrock(
                    AWSErrorResponse(
                        status: 502, type: "InternalServerException", message: "Bedrock's reply was cut off"),
                    headers: common)
            }
            let timedOut = Self.isTimeout(error)
            throw .bedrock(
                AWSErrorResponse(
                    status: timedOut ? 504 : 502, type: timedOut ? "ModelTimeoutException" : "InternalServerException",
                    message: timedOut
                        ? "Bedrock did not answer within \(call.timeout.nanoseconds / 1_000_000) ms"
                        : "cannot reach Bedrock at \(target.endpoint); the gateway's log has the reason"),
                headers: common)
        }
        let passed = Self.passedHeaders(response.headers)
        guard response.status.code == 200 else {
            // Bedrock's error as Bedrock sent it; nothing is charged, the hold is released.
            let errorBody = (try? await response.body.collect(upTo: 1 << 20)).map { Array($0.readableBytesView) } ?? []
            outcome.upstream = ContinuousClock.now - started
            metrics.upstream(outcome.upstream)
            let status = Int(response.status.code)
            var headers = passed + common + RateLimitHeaders.headers(admission.windows, for: admission.budget)
            if let type = response.headers.first(name: "x-amzn-ErrorType") {
                headers.append(("x-amzn-ErrorType", type))
            }
            throw ProxyAnswer(
                status: status,
                body: (try? JSONParser.parse(errorBody)) ?? .object(["message": .string("Bedrock answered \(status)")]),
                headers: headers, isRendered: true)
        }
        if operation.isStream {
            await streamNative(
                response, call: call, admission: admission, hold: hold, headers: passed + common, sink: sink,
                outcome: &outcome, started: started)
            return
        }
        let bytes: [UInt8]
        do {
            bytes = Array(try await response.body.collect(upTo: 32 << 20).readableBytesView)
        } catch {
            outcome.upstream = ContinuousClock.now - started
            chargePromptEstimate(call: call.ask, admission: admission, hold: hold, outcome: &outcome)
            if Task.isCancelled { throw .clientGone }
            throw .bedrock(
                AWSErrorResponse(status: 502, type: "InternalServerException", message: "Bedrock's reply was cut off"))
        }
        outcome.upstream = ContinuousClock.now - started
        metrics.upstream(outcome.upstream)
        let headerUsage = TokenUsage(
            inputHeader: response.headers.first(name: "x-amzn-bedrock-input-token-count"),
            outputHeader: response.headers.first(name: "x-amzn-bedrock-output-token-count"))
        let bodyUsage = (try? JSONParser.parse(bytes)).flatMap {
            operation.isConverse ? TokenUsage(converse: $0["usage"]) : TokenUsage(anthropic: $0["usage"])
        }
        guard let usage = operation.isConverse ? bodyUsage ?? headerUsage : headerUsage ?? bodyUsage else {
            chargePromptEstimate(call: call.ask, admission: admission, hold: hold, outcome: &outcome)
            throw .bedrock(
                AWSErrorResponse(status: 502, type: "InternalServerException", message: "Bedrock's reply has no usage"))
        }
        let charged = charge(usage, call: call.ask, admission: admission, hold: hold, outcome: &outcome)
        outcome.status = 200
        await sink.respond(
            status: 200,
            headers: passed + common
                + RateLimitHeaders.headers(admission.windows, charged: charged, for: admission.budget),
            body: bytes)
    }

    /// Bedrock's reply headers a client of its API reads: the content type, request id and the
    /// `X-Amzn-Bedrock-*` headers (token counts, latency, a stream's payload content type).
    static func passedHeaders(_ headers: HTTPHeaders) -> [(String, String)] {
        headers.compactMap { header in
            let name = header.name.lowercased()
            guard name == "content-type" || name == "x-amzn-requestid" || name.hasPrefix("x-amzn-bedrock-") else {
                return nil
            }
            return (header.name, header.value)
        }
    }

    /// Passes the event stream through frame by frame (each frame checked and re-encoded whole), reading its
    /// usage as it goes; a stream that breaks off ends with an `internalServerException` frame.
    private func streamNative(
        _ response: UpstreamResponse, call: NativeCall, admission: Admission, hold: consuming BudgetHold,
        headers: [(String, String)], sink: any ResponseSink, outcome: inout Outcome, started: ContinuousClock.Instant
    ) async {
        outcome.status = 200
        var relayed = PassthroughRelay(reader: BedrockStreamUsage(operation: call.request.operation))
        _ = await relay(
            response, through: &relayed,
            headers: headers + RateLimitHeaders.headers(admission.windows, for: admission.budget), sink: sink)
        let reader = relayed.reader
        outcome.upstream = ContinuousClock.now - started
        metrics.upstream(outcome.upstream)
        if reader.usage == nil && reader.generatedUTF8Count == 0 && reader.error != nil {
            return  // failed before generating anything: nothing to charge, the hold is released
        }
        let usage: TokenUsage
        if let reported = reader.usage {
            usage = reported
        } else {
            usage = TokenUsage(inputTokens: call.ask.promptTokens, outputTokens: reader.estimatedCompletionTokens)
            metrics.estimatedCharge(consumer: outcome.consumer, group: outcome.group, tokens: usage.totalTokens)
        }
        _ = charge(usage, call: call.ask, admission: admission, hold: hold, outcome: &outcome)
    }
}
