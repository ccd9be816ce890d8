import Bedrock
import BudgetConfig
import BudgetJSON
import BudgetLedger
import DaemonKit
import Foundation
import Logging
import NIOCore
import NIOHTTP1

/// What the proxy does when the control plane cannot be asked.
public enum ControlPlaneLossPolicy: String, Sendable, CaseIterable {
    /// Refuse with 503 and a body that says why (the default).
    case failClosed = "fail-closed"
    /// Forward without a reservation; usage is charged when the control plane is back.
    case failOpen = "fail-open"
}

/// The hot path. Each request goes through five stages, each of which either passes what it learnt to the
/// next or ends the request with a `ProxyAnswer`:
/// 1. `authenticate`: the route, then key-auth's consumer and groups;
/// 2. `parse`: the body (bounded, read once), the chat request and its limits;
/// 3. `admit`: the budget's reservation, held as a `BudgetHold` (or a 429, or the loss policy);
/// 4. `forward`: signed to Bedrock, the answer translated back (whole or streamed);
/// 5. `charge`: the usage Bedrock reported replaces the hold.
/// These are the stages of OpenAI chat routes; routes with `llm_format: anthropic` or `bedrock` go through the
/// same authenticate, admit and charge with their own parse and forward (`AnthropicMessagesService.swift`,
/// `BedrockPassthroughService.swift`), and early answers are rewritten in their error shape.
final class ProxyService: Sendable {
    /// The service's fixed settings (from flags).
    struct Settings: Sendable {
        var maxBodyBytes: Int
        var lossPolicy: ControlPlaneLossPolicy

        init(maxBodyBytes: Int, lossPolicy: ControlPlaneLossPolicy) {
            self.maxBodyBytes = maxBodyBytes
            self.lossPolicy = lossPolicy
        }
    }

    let link: ControlLink
    let upstream: BedrockUpstream
    let settings: Settings
    let metrics: ProxyMetrics
    let logger: Logger
    let inFlight = Gauge()

    init(link: ControlLink, upstream: BedrockUpstream, settings: Settings, metrics: ProxyMetrics, logger: Logger)
    {
        self.link = link
        self.upstream = upstream
        self.settings = settings
        self.metrics = metrics
        self.logger = logger
    }

    /// Requests being served now.
    var requestsInFlight: Int { inFlight.value }

    /// What the access log line records.
    struct Outcome {
        var status = 0
        var route = "-"
        var consumer = "-"
        var group = "-"
        var promptTokens = 0
        var completionTokens = 0
        var upstream: Duration = .zero
        /// What the client speaks, once its route is known: early answers are written in its error shape.
        var format: AIProxyConfig.LLMFormat = .openai
    }

    /// Serves one request, then records its metrics and its access log line.
    func handle(_ request: ProxyRequest, sink: any ResponseSink) async {
        let started = ContinuousClock.now
        inFlight.add(1)
        var outcome = Outcome()
        do throws(ProxyAnswer) {
            try await serve(request, sink: sink, outcome: &outcome)
        } catch {
            outcome.status = error.status
            if error.status != ProxyAnswer.clientGone.status {
                let answer = outcome.format == .openai ? error : error.rendered(for: outcome.format)
                await sink.respond(
                    status: answer.status, headers: [("Content-Type", "application/json")] + answer.headers,
                    body: answer.body.serializedBytes)
            }
        }
        inFlight.add(-1)
        let total = ContinuousClock.now - started
        metrics.request(route: outcome.route, consumer: outcome.consumer, status: outcome.status)
        metrics.proxyOverhead(total - outcome.upstream)
        logger.info(
            "request",
            metadata: [
                "method": "\(request.method)", "path": "\(request.path)", "route": "\(outcome.route)",
                "consumer": "\(outcome.consumer)", "status": "\(outcome.status)",
                "prompt_tokens": "\(outcome.promptTokens)", "completion_tokens": "\(outcome.completionTokens)",
                "upstream_ms": "\(outcome.upstream.milliseconds)", "total_ms": "\(total.milliseconds)",
            ])
    }

    /// The five stages; an early answer is thrown.
    private func serve(_ request: ProxyRequest, sink: any ResponseSink, outcome: inout Outcome)
        async throws(ProxyAnswer)
    {
        var body = RequestBody(request.body)
        let caller = try authenticate(request, body: &body, outcome: &outcome)
        switch outcome.format {
        case .openai: break
        case .anthropic:
            try await serveAnthropic(request, body: &body, caller: caller, sink: sink, outcome: &outcome)
            return
        case .bedrock:
            try await serveBedrock(request, body: &body, caller: caller, sink: sink, outcome: &outcome)
            return
        }
        let call = try parse(request, body: &body, caller: caller)
        let admission = try await admit(call.ask, caller: caller, outcome: &outcome)
        let hold = BudgetHold(reservation: admission.reservation, link: link)
        try await forward(call, admission: admission, hold: hold, sink: sink, outcome: &outcome)
    }

    // MARK: - 1. Authenticate

    /// Who is calling, on which route.
    struct Caller {
        var tables: ProxyTables
        var route: ProxyTables.CompiledRoute
        var consumer: String?
        var credential: KeyHash?
        var groups: [String]
    }

    /// The route for the request, and the consumer its key belongs to (key-auth: headers named in
    /// `key_names`, then the query, then a top-level string field of a JSON body).
    private func authenticate(_ request: ProxyRequest, body: inout RequestBody, outcome: inout Outcome)
        throws(ProxyAnswer) -> Caller
    {
        guard let tables = link.tables else {
            throw .message(503, "no configuration yet: waiting for the first snapshot from budget-controld")
        }
        guard let route = tables.route(method: request.method, path: request.path) else {
            throw .message(404, "no Route matched with those values")
        }
        outcome.route = route.route.name
        outcome.format = route.aiProxy?.config.llmFormat ?? .openai
        var caller = Caller(tables: tables, route: route, consumer: nil, credential: nil, groups: [])
        if let keyAuth = route.keyAuth {
            let challenge = [("WWW-Authenticate", "Key realm=\"\(keyAuth.realm ?? "budget-gateway")\"")]
            if let key = Self.apiKey(in: request, body: &body, config: keyAuth) {
                guard let owner = tables.owner(of: key) else { throw .message(401, "Unauthorized", headers: challenge) }
                caller.consumer = owner.consumer
                caller.credential = owner.credential
            } else if let anonymous = keyAuth.anonymous {
                caller.consumer = anonymous
            } else {
                throw .message(401, "No API key found in request", headers: challenge)
            }
        }
        outcome.consumer = caller.consumer ?? "-"
        caller.groups = caller.consumer.map(tables.groups(of:)) ?? []
        return caller
    }

    /// A refusal the HTTP layer makes before a request reaches `handle` (a body over the limit, too many header
    /// fields), in the error shape of its route's clients; nil for OpenAI routes and unknown paths (Kong's shape).
    func refusal(method: String, path: String, status: Int, message: String) -> (
        headers: [(String, String)], body: [UInt8]
    )? {
        guard let format = link.tables?.route(method: method, path: path)?.aiProxy?.config.llmFormat,
            format != .openai
        else { return nil }
        let answer = ProxyAnswer.message(status, message).rendered(for: format)
        return (answer.headers, answer.body.serializedBytes)
    }

    /// The API key from the places key-auth looks, in Kong's order. A key name `authorization` reads the
    /// token of `Authorization: Bearer <key>`, which is where the OpenAI SDKs, and the Anthropic SDKs from
    /// version 2, put their `api_key`.
    static func apiKey(in request: ProxyRequest, body: inout RequestBody, config: KeyAuthConfig) -> String? {
        for name in config.keyNames {
            if config.keyInHeader, let value = request.header(name), !value.isEmpty {
                guard name.caseInsensitiveEquals("authorization") else { return value }
                return bearerToken(value)
            }
            if config.keyInQuery, let value = request.queryParameter(name), !value.isEmpty { return value }
        }
        if config.keyInBody, case .success(let json) = body.json {
            for name in config.keyNames {
                if let value = json[name]?.stringValue, !value.isEmpty { return value }
            }
        }
        return nil
    }

    /// The token of an `Authorization: Bearer <token>` value; other schemes are returned whole.
    static func bearerToken(_ value: String) -> String? {
        let scheme = "bearer "
        guard value.utf8.count > scheme.utf8.count, value.prefix(scheme.count).lowercased() == scheme else {
            return value
        }
        let token = value.dropFirst(scheme.count).drop { $0 == " " }
        return token.isEmpty ? nil : String(token)
    }

    // MARK: - 2. Parse

    /// A chat request bound for one ai-proxy.
    struct ChatCall {
        var proxy: ProxyTables.CompiledAIProxy
        var modelID: String
        /// Where the call goes, or why it cannot (answered after admission, as a 500).
        var target: Result<BedrockTarget, UpstreamSetupError>
        var chat: ChatCompletionRequest
        var promptTokens: Int
        /// The effective `max_tokens`: the config's, else the client's, else the model's maximum.
        var maxTokens: Int
        var timeout: TimeAmount

        /// What the budget stages need to know.
        var ask: BudgetAsk { BudgetAsk(proxy: proxy, promptTokens: promptTokens, maxTokens: maxTokens) }
    }

    /// What admission and charging need of a call, whatever format the client speaks.
    struct BudgetAsk {
        var proxy: ProxyTables.CompiledAIProxy
        var promptTokens: Int
        /// The effective `max_tokens`: the config's, else the client's, else the model's maximum.
        var maxTokens: Int
    }

    /// The chat request, checked against the route's ai-proxy: body size, JSON, model, streaming, target.
    private func parse(_ request: ProxyRequest, body: inout RequestBody, caller: Caller) throws(ProxyAnswer)
        -> ChatCall
    {
        let (proxy, modelID, target, limit) = try Self.aiProxy(of: caller, maxBodyBytes: settings.maxBodyBytes)
        guard request.body.count <= limit else {
            throw .message(413, "request body of \(request.body.count) bytes exceeds the limit of \(limit) bytes")
        }
        var chat: ChatCompletionRequest
        do {
            var json = try body.json.get()
            // A key sent in the body (`key_in_body`) is key-auth's, not part of the chat request.
            if let keyAuth = caller.route.keyAuth, keyAuth.keyInBody, case .object(let members) = json {
                json = .object(members.filter { !keyAuth.keyNames.contains($0.name) })
            }
            chat = try ChatCompletionRequest.parse(json)
        } catch {
            throw .badRequest(error)
        }
        if let model = chat.model, !model.isEmpty, model != modelID {
            throw .badRequest(ChatRequestError(param: "model", message: "cannot use own model - must be: \(modelID)"))
        }
        switch proxy.config.responseStreaming {
        case .deny where chat.stream:
            throw .badRequest(
                ChatRequestError(param: "stream", message: "response streaming is not enabled for this LLM"))
        case .always: chat.stream = true
        default: break
        }
        return ChatCall(
            proxy: proxy, modelID: modelID, target: target, chat: chat,
            promptTokens: chat.estimatedPromptTokens,
            maxTokens: proxy.config.model.options.maxTokens ?? chat.maxTokens ?? ClaudeHaiku.maxOutputTokens,
            timeout: .milliseconds(Int64(caller.route.service?.readTimeout ?? 60_000)))
    }

    /// The route's ai-proxy with its model and upstream, and the largest body the route takes (its
    /// `max_request_body_size` within `--max-body-bytes`): where every client format's parse starts.
    static func aiProxy(of caller: Caller, maxBodyBytes: Int) throws(ProxyAnswer) -> (
        proxy: ProxyTables.CompiledAIProxy, modelID: String, target: Result<BedrockTarget, UpstreamSetupError>,
        bodyLimit: Int
    ) {
        guard let proxy = caller.route.aiProxy, let modelID = proxy.config.model.name,
            let target = caller.route.upstream
        else {
            throw .message(503, "route \(caller.route.route.name) has no ai-proxy plugin, so there is no upstream")
        }
        let limit = proxy.config.maxRequestBodySize.flatMap { $0 > 0 ? min($0, maxBodyBytes) : nil } ?? maxBodyBytes
        return (proxy, modelID, target, limit)
    }

    static func bedrockTarget(_ resolved: Result<BedrockTarget, UpstreamSetupError>) throws(ProxyAnswer)
        -> BedrockTarget
    {
        switch resolved {
        case .success(let target): return target
        case .failure(let error):
            throw .upstream(500, errorType: "ConfigurationError", message: error.message)
        }
    }

    // MARK: - 3. Admit

    /// What the budget allows this request.
    struct Admission {
        var budget: BudgetPolicy.Budget?
        /// The reservation to commit or release (0: none).
        var reservation: UInt64 = 0
        /// The windows as they stood at admission, for the response headers.
        var windows: [WindowStatus] = []
        /// `max_tokens` for Bedrock: the call's, clamped by a hard budget.
        var maxTokens: Int
    }

    /// Asks the control plane for a reservation for the budget that applies, if any.
    func admit(_ call: BudgetAsk, caller: Caller, outcome: inout Outcome) async throws(ProxyAnswer)
        -> Admission
    {
        let budget = caller.tables.policy.budget(
            route: caller.route.route.name, service: caller.route.route.service, consumer: caller.consumer,
            groups: caller.groups, credential: caller.credential, provider: call.proxy.config.model.provider)
        outcome.group = budget?.plugin.scope.consumerGroup ?? caller.groups.first ?? "-"
        var admission = Admission(budget: budget, maxTokens: call.maxTokens)
        guard let budget else { return admission }
        let price = budget.units(promptTokens: call.promptTokens, pricing: call.proxy.config.model.options)
        let asked = ContinuousClock.now
        let reservation = await link.reserve(
            ReserveRequest(
                rules: budget.rules, enforcement: budget.enforcement, promptUnits: price.prompt,
                unitsPerCompletionToken: price.perCompletionToken, maxTokens: call.maxTokens))
        metrics.controlPlane(ContinuousClock.now - asked)
        switch reservation {
        case .outcome(.admitted(let id, let allowed, let windows)):
            admission.reservation = id
            admission.windows = windows
            if budget.enforcement == .hard { admission.maxTokens = min(call.maxTokens, allowed) }
            return admission
        case .outcome(.refused(let windows, let retryAfter, let exceeded)):
            metrics.refusal(consumer: outcome.consumer, group: outcome.group)
            let jitter =
                budget.config.retryAfterJitterMax > 0 ? Int.random(in: 0...budget.config.retryAfterJitterMax) : 0
            let headers =
                RateLimitHeaders.headers(windows, for: budget)
                + RateLimitHeaders.retryAfter(
                    windows, exceeded: exceeded, seconds: retryAfter + jitter, hidden: budget.config.hideClientHeaders)
            throw .message(budget.config.errorCode, budget.config.errorMessage, headers: headers)
        case .outcome(.unavailable(let reason)):
            logger.warning("refusing: budget store unavailable", metadata: ["reason": "\(reason)"])
            throw .message(503, reason)
        case .unavailable where Task.isCancelled:
            // The client hung up while its reservation was being asked for: nothing to answer.
            throw ProxyAnswer.clientGone
        case .unavailable(let reason):
            guard settings.lossPolicy == .failOpen else {
                logger.warning("refusing: control plane unavailable", metadata: ["reason": "\(reason)"])
                throw .message(
                    503,
                    "budget control plane unavailable, so budgets cannot be checked; requests are refused until it "
                        + "is back (--on-control-plane-loss fail-closed)")
            }
            return admission
        }
    }

    // MARK: - 4. Forward

    /// Sends the call to Bedrock and answers the client: whole, or streamed as Bedrock's frames arrive.
    private func forward(
        _ call: ChatCall, admission: Admission, hold: consuming BudgetHold, sink: any ResponseSink,
        outcome: inout Outcome
    ) async throws(ProxyAnswer) {
        let target = try Self.bedrockTarget(call.target)
        let overrides = ModelOverrides(
            maxTokens: nil, temperature: call.proxy.config.model.options.temperature,
            topP: call.proxy.config.model.options.topP, topK: call.proxy.config.model.options.topK)
        let body = ConverseTranslator.converseBodyBytes(call.chat, maxTokens: admission.maxTokens, overrides: overrides)
        var common: [(String, String)] = []
        if call.proxy.config.modelNameHeader { common.append(("X-Kong-LLM-Model", "bedrock/\(call.modelID)")) }

        let upstreamStarted = ContinuousClock.now
        let response: UpstreamResponse
        do {
            response = try await upstream.send(
                body, to: target, stream: call.chat.stream, timeout: call.timeout)
        } catch {
            outcome.upstream = ContinuousClock.now - upstreamStarted
            // Cancelled: the client hung up (or the drain ran out of time); there is no one to answer.
            if Task.isCancelled { throw .clientGone }
            let timedOut = Self.isTimeout(error)
            let status = timedOut ? 504 : 502
            if Self.mayHaveReachedBedrock(error) {
                // Sent, but no answer: Bedrock may have run (and billed) it, so the prompt is charged.
                chargePromptEstimate(call: call.ask, admission: admission, hold: hold, outcome: &outcome)
            }
            // The detail (a TLS library's error, say) is for the operator's log, not for the client.
            logger.warning(
                "upstream request failed",
                metadata: ["endpoint": "\(target.endpoint)", "error": "\(error)", "route": "\(outcome.route)"])
            if let reason = Self.cutOff(error) {
                throw .upstream(
                    502, errorType: "UpstreamError", message: "Bedrock's reply was cut off: \(reason)", headers: common)
            }
            throw .upstream(
                status, errorType: timedOut ? "UpstreamTimeout" : "UpstreamUnreachable",
                message: timedOut
                    ? "Bedrock did not answer within \(call.timeout.nanoseconds / 1_000_000) ms"
                    : "cannot reach Bedrock at \(target.endpoint); the gateway's log has the reason",
                headers: common)
        }

        guard response.status.code == 200 else {
            let errorBody = (try? await response.body.collect(upTo: 1 << 20)).map { Array($0.readableBytesView) } ?? []
            outcome.upstream = ContinuousClock.now - upstreamStarted
            metrics.upstream(outcome.upstream)
            let status = Int(response.status.code)
            throw ProxyAnswer(
                status: status,
                body: OpenAIErrorBody.fromBedrockReply(
                    status: status, errorTypeHeader: response.headers.first(name: "x-amzn-ErrorType"), body: errorBody),
                headers: common + RateLimitHeaders.headers(admission.windows, for: admission.budget))
        }

        let reply = ReplyIdentity(
            id: ChatCompletionRenderer.newID(), created: Int(Date().timeIntervalSince1970), modelID: call.modelID)
        if call.chat.stream {
            await stream(
                response, call: call, admission: admission, hold: hold, reply: reply, common: common, sink: sink,
                outcome: &outcome, upstreamStarted: upstreamStarted)
            return
        }
        let bytes: [UInt8]
        do {
            bytes = Array(try await response.body.collect(upTo: 32 << 20).readableBytesView)
        } catch {
            outcome.upstream = ContinuousClock.now - upstreamStarted
            chargePromptEstimate(call: call.ask, admission: admission, hold: hold, outcome: &outcome)
            if Task.isCancelled { throw .clientGone }
            throw .upstream(502, errorType: "UpstreamError", message: "Bedrock's reply was cut off: \(error)")
        }
        outcome.upstream = ContinuousClock.now - upstreamStarted
        metrics.upstream(outcome.upstream)
        let converse: ConverseResponse
        do {
            converse = try ConverseResponse.parse(bytes)
        } catch {
            chargePromptEstimate(call: call.ask, admission: admission, hold: hold, outcome: &outcome)
            throw .upstream(502, errorType: "UpstreamFormatError", message: error.message)
        }
        let charged = charge(converse.usage, call: call.ask, admission: admission, hold: hold, outcome: &outcome)
        let completion = ChatCompletionRenderer.completionBytes(
            converse, id: reply.id, created: reply.created, model: reply.modelID)
        outcome.status = 200
        // One array with room for all: the answer's headers, then the budget's.
        var headers: [(String, String)] = []
        headers.reserveCapacity(1 + common.count + 3 * admission.windows.count)
        headers.append(("Content-Type", "application/json"))
        headers.append(contentsOf: common)
        RateLimitHeaders.append(admission.windows, charged: charged, for: admission.budget, to: &headers)
        await sink.respond(status: 200, headers: headers, body: completion)
    }

    /// The id, creation time and model that every chunk of one completion carries.
    struct ReplyIdentity {
        var id: String
        var created: Int
        var modelID: String
    }

    /// Whether a failed upstream call may have reached Bedrock (it timed out or was cut off after the request
    /// could have been sent), as opposed to failing to connect: then Bedrock may have billed it.
    static func mayHaveReachedBedrock(_ error: any Error) -> Bool {
        guard let error = error as? UpstreamFailure else { return false }
        return error.requestSent && error.kind != .connect && error.kind != .connectTimeout
    }

    /// Whether an upstream failure was a time-out (connect, or no answer within the read time-out).
    static func isTimeout(_ error: any Error) -> Bool {
        (error as? UpstreamFailure)?.isTimeout ?? false
    }

    /// Why a Bedrock reply that had begun did not arrive whole (cut off, or over the size the proxy takes); nil
    /// for a call that failed before its answer began, or timed out.
    static func cutOff(_ error: any Error) -> String? {
        guard let failure = error as? UpstreamFailure, !failure.isTimeout,
            failure.answerBegan || failure.kind == .tooLarge
        else { return nil }
        return failure.detail
    }

    /// ConverseStream → server-sent events, flushed as frames arrive; the final usage (or, when the client
    /// hung up or the stream broke, an estimate from what was generated) is charged.
    private func stream(
        _ response: UpstreamResponse, call: ChatCall, admission: Admission, hold: consuming BudgetHold,
        reply: ReplyIdentity, common: [(String, String)], sink: any ResponseSink, outcome: inout Outcome,
        upstreamStarted: ContinuousClock.Instant
    ) async {
        outcome.status = 200
        var translator = ChatStreamTranslator(
            id: reply.id, created: reply.created, model: reply.modelID, includeUsage: call.chat.includeUsage)
        let clientGone = await relay(
            response, through: &translator,
            headers: common + [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")]
                + RateLimitHeaders.headers(admission.windows, for: admission.budget),
            sink: sink)
        outcome.upstream = ContinuousClock.now - upstreamStarted
        metrics.upstream(outcome.upstream)
        if translator.usage == nil && translator.generatedUTF8Count == 0 && translator.error != nil
            && !clientGone
        {
            return  // failed before generating anything: nothing to charge, the hold is released
        }
        let usage: TokenUsage
        if let reported = translator.usage {
            usage = reported
        } else {
            usage = TokenUsage(inputTokens: call.promptTokens, outputTokens: translator.estimatedCompletionTokens)
            metrics.estimatedCharge(consumer: outcome.consumer, group: outcome.group, tokens: usage.totalTokens)
        }
        _ = charge(usage, call: call.ask, admission: admission, hold: hold, outcome: &outcome)
    }

    // MARK: - 5. Charge

    /// Charges the prompt estimate, counted as an estimate: the request reached Bedrock (or may have), but
    /// its usage never came back.
    func chargePromptEstimate(
        call: BudgetAsk, admission: Admission, hold: consuming BudgetHold, outcome: inout Outcome
    ) {
        let usage = TokenUsage(inputTokens: call.promptTokens, outputTokens: 0)
        if admission.budget != nil {
            metrics.estimatedCharge(consumer: outcome.consumer, group: outcome.group, tokens: usage.totalTokens)
        }
        _ = charge(usage, call: call, admission: admission, hold: hold, outcome: &outcome)
    }

    /// Replaces the hold with the real usage (without a budget there is nothing to charge and the hold, empty,
    /// goes); returns the units charged to the first window, for the Remaining headers.
    func charge(
        _ usage: TokenUsage, call: BudgetAsk, admission: Admission, hold: consuming BudgetHold, outcome: inout Outcome
    ) -> Double {
        outcome.promptTokens = usage.inputTokens
        outcome.completionTokens = usage.outputTokens
        guard let budget = admission.budget else { return 0 }
        let charges = budget.charges(
            promptTokens: usage.inputTokens, completionTokens: usage.outputTokens,
            pricing: call.proxy.config.model.options)
        hold.commit(charges)
        metrics.tokens(
            consumer: outcome.consumer, group: outcome.group, provider: budget.provider.name, tokens: usage.totalTokens)
        return charges.first?.units ?? 0
    }
}

/// A request body, parsed as JSON at most once (key-auth's `key_in_body` and the chat parser share it).
struct RequestBody {
    private let bytes: [UInt8]
    private var parsed: Result<JSONValue, ChatRequestError>?

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    /// The body as JSON, or why it is not.
    var json: Result<JSONValue, ChatRequestError> {
        mutating get {
            if let parsed { return parsed }
            let result: Result<JSONValue, ChatRequestError>
            do {
                result = .success(try JSONParser.parse(bytes))
            } catch {
                result = .failure(
                    ChatRequestError(param: nil, message: "request body is not valid JSON: \(error.description)"))
            }
            parsed = result
            return result
        }
    }
}

extension Duration {
    /// Whole milliseconds, for log lines.
    var milliseconds: Int64 { components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000 }
}
