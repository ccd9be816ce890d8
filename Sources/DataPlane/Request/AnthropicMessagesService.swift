import Bedrock
import BudgetConfig
import BudgetJSON
import Foundation
import Logging
import NIOCore
import NIOHTTP1

/// `llm_format: anthropic`: the Anthropic Messages API at `POST <route>/v1/messages`, forwarded to Bedrock's
/// InvokeModel (or InvokeModelWithResponseStream), whose Claude body and replies are the Messages API's own
/// shapes (see `AnthropicMessagesRequest` for why InvokeModel rather than Converse). The stages are the OpenAI
/// path's: parse, admit (the same budgets), forward, charge; errors are in Anthropic's error shape.
extension ProxyService {
    /// A Messages request bound for one ai-proxy.
    struct MessagesCall {
        var ask: BudgetAsk
        var modelID: String
        var target: Result<BedrockTarget, UpstreamSetupError>
        var request: AnthropicMessagesRequest
        var betas: [String]
        var timeout: TimeAmount
    }

    func serveAnthropic(
        _ request: ProxyRequest, body: inout RequestBody, caller: Caller, sink: any ResponseSink, outcome: inout Outcome
    ) async throws(ProxyAnswer) {
        let call = try parseMessages(request, body: &body, caller: caller)
        let admission = try await admit(call.ask, caller: caller, outcome: &outcome)
        let hold = BudgetHold(reservation: admission.reservation, link: link)
        try await forwardMessages(call, admission: admission, hold: hold, sink: sink, outcome: &outcome)
    }

    /// Checks the path, body size, JSON, the Messages API's fields and the model.
    private func parseMessages(_ request: ProxyRequest, body: inout RequestBody, caller: Caller) throws(ProxyAnswer)
        -> MessagesCall
    {
        let (proxy, modelID, target, limit) = try Self.aiProxy(of: caller, maxBodyBytes: settings.maxBodyBytes)
        guard request.path.hasSuffix("/v1/messages") else {
            throw .message(
                404, "this route speaks the Anthropic Messages API: POST <route>/v1/messages; \(request.path) is not it"
            )
        }
        guard request.body.count <= limit else {
            throw .message(413, "request body of \(request.body.count) bytes exceeds the limit of \(limit) bytes")
        }
        var messages: AnthropicMessagesRequest
        do throws(AnthropicRequestError) {
            var json: JSONValue
            switch body.json {
            case .success(let value): json = value
            case .failure(let error): throw AnthropicRequestError(error.message)
            }
            if let keyAuth = caller.route.keyAuth, keyAuth.keyInBody, case .object(let members) = json {
                json = .object(members.filter { !keyAuth.keyNames.contains($0.name) })
            }
            messages = try AnthropicMessagesRequest.parse(json)
        } catch {
            throw .rendered(400, body: error.body)
        }
        guard Self.modelMatches(messages.model, configured: modelID) else {
            throw .rendered(
                400,
                body: AnthropicRequestError(
                    at: "model",
                    "cannot use own model - must be: \(modelID) (or \(Self.anthropicName(of: modelID)))"
                ).body)
        }
        switch proxy.config.responseStreaming {
        case .deny where messages.stream:
            throw .rendered(
                400, body: AnthropicRequestError(at: "stream", "response streaming is not enabled for this LLM").body)
        case .always: messages.stream = true
        default: break
        }
        let betas = (request.header("anthropic-beta") ?? "").split(separator: ",").map {
            String($0.trimmingCharacters(in: .whitespaces))
        }.filter { !$0.isEmpty }
        return MessagesCall(
            ask: BudgetAsk(
                proxy: proxy, promptTokens: messages.estimatedPromptTokens,
                maxTokens: proxy.config.model.options.maxTokens ?? messages.maxTokens),
            modelID: modelID, target: target, request: messages, betas: betas,
            timeout: .milliseconds(Int64(caller.route.service?.readTimeout ?? 60_000)))
    }

    /// Whether a client's `model` names the route's: the Bedrock id itself, or Anthropic's name for it
    /// (the id without the `anthropic.` prefix and the `-v1:0` version, e.g. `claude-3-haiku-20240307`), which
    /// is what Anthropic SDK clients send.
    static func modelMatches(_ model: String, configured: String) -> Bool {
        model == configured || model == anthropicName(of: configured)
    }

    /// `anthropic.claude-3-haiku-20240307-v1:0` → `claude-3-haiku-20240307`.
    static func anthropicName(of modelID: String) -> String {
        var name = Substring(modelID)
        if let dot = name.firstIndex(of: "."), name[..<dot] == "anthropic" || name[..<dot].count == 2 {
            name = name[name.index(after: dot)...]  // the provider, or a cross-region profile's "us."
            if name.hasPrefix("anthropic.") { name = name.dropFirst("anthropic.".count) }
        }
        if let version = name.range(of: "-v", options: .backwards), name[version.upperBound...].contains(":") {
            name = name[..<version.lowerBound]
        }
        return String(name)
    }

    private func forwardMessages(
        _ call: MessagesCall, admission: Admission, hold: consuming BudgetHold, sink: any ResponseSink,
        outcome: inout Outcome
    ) async throws(ProxyAnswer) {
        let target = try Self.bedrockTarget(call.target)
        let options = call.ask.proxy.config.model.options
        let body = call.request.invokeBody(
            maxTokens: admission.maxTokens,
            overrides: ModelOverrides(temperature: options.temperature, topP: options.topP, topK: options.topK),
            betas: call.betas
        ).serializedBytes
        var common: [(String, String)] = []
        if call.ask.proxy.config.modelNameHeader { common.append(("X-Kong-LLM-Model", "bedrock/\(call.modelID)")) }

        let started = ContinuousClock.now
        let response: UpstreamResponse
        do {
            response = try await upstream.send(
                body, to: target, operation: call.request.stream ? .invokeStream : .invoke, timeout: call.timeout)
        } catch {
            outcome.upstream = ContinuousClock.now - started
            if Task.isCancelled { throw .clientGone }
            if Self.mayHaveReachedBedrock(error) {
                chargePromptEstimate(call: call.ask, admission: admission, hold: hold, outcome: &outcome)
            }
            logger.warning(
                "upstream request failed",
                metadata: ["endpoint": "\(target.endpoint)", "error": "\(error)", "route": "\(outcome.route)"])
            if let reason = Self.cutOff(error) {
                throw .message(502, "Bedrock's reply was cut off: \(reason)", headers: common)
            }
            let timedOut = Self.isTimeout(error)
            throw .message(
                timedOut ? 504 : 502,
                timedOut
                    ? "Bedrock did not answer within \(call.timeout.nanoseconds / 1_000_000) ms"
                    : "cannot reach Bedrock at \(target.endpoint); the gateway's log has the reason",
                headers: common)
        }
        guard response.status.code == 200 else {
            throw await upstreamError(
                response, started: started, admission: admission, common: common, outcome: &outcome)
        }
        if call.request.stream {
            await streamMessages(
                response, call: call, admission: admission, hold: hold, common: common, sink: sink, outcome: &outcome,
                started: started)
            return
        }
        let bytes: [UInt8]
        do {
            bytes = Array(try await response.body.collect(upTo: 32 << 20).readableBytesView)
        } catch {
            outcome.upstream = ContinuousClock.now - started
            chargePromptEstimate(call: call.ask, admission: admission, hold: hold, outcome: &outcome)
            if Task.isCancelled { throw .clientGone }
            throw .message(502, "Bedrock's reply was cut off: \(error)")
        }
        outcome.upstream = ContinuousClock.now - started
        metrics.upstream(outcome.upstream)
        // The reply is already a Messages API response; it goes to the client byte for byte.
        let usage =
            TokenUsage(
                inputHeader: response.headers.first(name: "x-amzn-bedrock-input-token-count"),
                outputHeader: response.headers.first(name: "x-amzn-bedrock-output-token-count"))
            ?? (try? JSONParser.parse(bytes)).flatMap { TokenUsage(anthropic: $0["usage"]) }
        guard let usage else {
            chargePromptEstimate(call: call.ask, admission: admission, hold: hold, outcome: &outcome)
            throw .message(502, "Bedrock's InvokeModel reply has no usage")
        }
        let charged = charge(usage, call: call.ask, admission: admission, hold: hold, outcome: &outcome)
        outcome.status = 200
        await sink.respond(
            status: 200,
            headers: [("Content-Type", "application/json")] + common
                + RateLimitHeaders.headers(admission.windows, charged: charged, for: admission.budget),
            body: bytes)
    }

    /// A Bedrock error reply, as an answer in Anthropic's error shape with the same status.
    func upstreamError(
        _ response: UpstreamResponse, started: ContinuousClock.Instant, admission: Admission,
        common: [(String, String)], outcome: inout Outcome
    ) async -> ProxyAnswer {
        let errorBody = (try? await response.body.collect(upTo: 1 << 20)).map { Array($0.readableBytesView) } ?? []
        outcome.upstream = ContinuousClock.now - started
        metrics.upstream(outcome.upstream)
        let status = Int(response.status.code)
        let json = try? JSONParser.parse(errorBody)
        let name = response.headers.first(name: "x-amzn-ErrorType").map(AWSErrorResponse.errorName(fromHeader:))
        let message =
            json?["message"]?.stringValue ?? json?["Message"]?.stringValue ?? "Bedrock answered HTTP \(status)"
        return .rendered(
            status,
            body: AnthropicErrorBody.body(status: status, message: name.map { "\($0): \(message)" } ?? message),
            headers: common + RateLimitHeaders.headers(admission.windows, for: admission.budget))
    }

    /// InvokeModelWithResponseStream → Anthropic server-sent events, flushed as frames arrive; the final usage
    /// (or, when the client hung up or the stream broke, an estimate from what was generated) is charged.
    private func streamMessages(
        _ response: UpstreamResponse, call: MessagesCall, admission: Admission, hold: consuming BudgetHold,
        common: [(String, String)], sink: any ResponseSink, outcome: inout Outcome, started: ContinuousClock.Instant
    ) async {
        outcome.status = 200
        var translator = AnthropicStreamTranslator()
        let clientGone = await relay(
            response, through: &translator,
            headers: common + [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")]
                + RateLimitHeaders.headers(admission.windows, for: admission.budget),
            sink: sink)
        outcome.upstream = ContinuousClock.now - started
        metrics.upstream(outcome.upstream)
        if translator.usage == nil && translator.tracker.generatedUTF8Count == 0 && translator.error != nil
            && !clientGone
        {
            return  // failed before generating anything: nothing to charge, the hold is released
        }
        let usage: TokenUsage
        if let reported = translator.usage {
            usage = reported
        } else {
            usage = TokenUsage(
                inputTokens: translator.tracker.usage?.inputTokens ?? call.ask.promptTokens,
                outputTokens: translator.tracker.estimatedCompletionTokens)
            metrics.estimatedCharge(consumer: outcome.consumer, group: outcome.group, tokens: usage.totalTokens)
        }
        _ = charge(usage, call: call.ask, admission: admission, hold: hold, outcome: &outcome)
    }
}
