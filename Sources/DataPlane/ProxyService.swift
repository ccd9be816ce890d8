import AsyncHTTPClient
import Bedrock
import BudgetConfig
import BudgetJSON
import BudgetLedger
import BudgetWire
import DaemonKit
import Foundation
public import Logging
import NIOCore
import NIOHTTP1

/// What the proxy does when the control plane cannot be asked.
public enum ControlPlaneLossPolicy: String, Sendable, CaseIterable {
    /// Refuse with 503 and a body that says why (the default).
    case failClosed = "fail-closed"
    /// Forward without a reservation; usage is charged when the control plane is back.
    case failOpen = "fail-open"
}

/// The hot path, per request: route, key-auth, body, budget, Bedrock, translation, charge, headers.
public final class ProxyService: Sendable {
    public struct Settings: Sendable {
        public var maxBodyBytes: Int
        public var lossPolicy: ControlPlaneLossPolicy
        public var environment: [String: String]

        public init(maxBodyBytes: Int, lossPolicy: ControlPlaneLossPolicy, environment: [String: String]) {
            self.maxBodyBytes = maxBodyBytes
            self.lossPolicy = lossPolicy
            self.environment = environment
        }
    }

    let link: ControlLink
    let upstream: BedrockUpstream
    let settings: Settings
    let metrics: ProxyMetrics
    let logger: Logger
    let inFlight = LockedCounter()

    public init(link: ControlLink, upstream: BedrockUpstream, settings: Settings, metrics: ProxyMetrics, logger: Logger)
    {
        self.link = link
        self.upstream = upstream
        self.settings = settings
        self.metrics = metrics
        self.logger = logger
    }

    public var requestsInFlight: Int { inFlight.value }

    /// What the access log line records.
    struct Outcome {
        var status = 0
        var route = "-"
        var consumer = "-"
        var group = "-"
        var promptTokens = 0
        var completionTokens = 0
        var upstream: Duration = .zero
    }

    public func handle(_ request: ProxyRequest, sink: any ResponseSink) async {
        let started = ContinuousClock.now
        inFlight.add(1)
        var outcome = Outcome()
        await serve(request, sink: sink, outcome: &outcome)
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

    private func reply(
        _ sink: any ResponseSink, _ outcome: inout Outcome, status: Int, json: JSONValue,
        headers: [(String, String)] = []
    ) async {
        outcome.status = status
        await sink.respond(
            status: status, headers: [("Content-Type", "application/json")] + headers, body: json.serializedBytes)
    }

    private func message(_ text: String) -> JSONValue { .object(["message": .string(text)]) }

    private func serve(_ request: ProxyRequest, sink: any ResponseSink, outcome: inout Outcome) async {
        guard let tables = link.tables else {
            await reply(
                sink, &outcome, status: 503,
                json: message("no configuration yet: waiting for the first snapshot from budget-controld"))
            return
        }
        guard let compiled = tables.route(method: request.method, path: request.path) else {
            await reply(sink, &outcome, status: 404, json: message("no Route matched with those values"))
            return
        }
        outcome.route = compiled.route.name

        // key-auth
        var consumer: String?
        var credential: KeyHash?
        if let keyAuth = compiled.keyAuth {
            let realm = keyAuth.realm ?? "budget-gateway"
            let challenge = [("WWW-Authenticate", "Key realm=\"\(realm)\"")]
            if let key = Self.apiKey(in: request, config: keyAuth) {
                guard let owner = tables.owner(of: key) else {
                    await reply(sink, &outcome, status: 401, json: message("Unauthorized"), headers: challenge)
                    return
                }
                consumer = owner.consumer
                credential = owner.credential
            } else if let anonymous = keyAuth.anonymous {
                consumer = anonymous
            } else {
                await reply(
                    sink, &outcome, status: 401, json: message("No API key found in request"), headers: challenge)
                return
            }
        }
        outcome.consumer = consumer ?? "-"
        let groups = consumer.map(tables.groups(of:)) ?? []

        guard let proxy = compiled.aiProxy, let modelID = proxy.model.name else {
            await reply(
                sink, &outcome, status: 503,
                json: message("route \(compiled.route.name) has no ai-proxy plugin, so there is no upstream"))
            return
        }

        // The body.
        let limit =
            proxy.maxRequestBodySize.flatMap { $0 > 0 ? min($0, settings.maxBodyBytes) : nil } ?? settings.maxBodyBytes
        guard request.body.count <= limit else {
            await reply(
                sink, &outcome, status: 413,
                json: message("request body of \(request.body.count) bytes exceeds the limit of \(limit) bytes"))
            return
        }
        var chat: ChatCompletionRequest
        do {
            chat = try ChatCompletionRequest.parse(request.body)
        } catch {
            await reply(sink, &outcome, status: 400, json: error.body)
            return
        }
        if let model = chat.model, !model.isEmpty, model != modelID {
            await reply(
                sink, &outcome, status: 400,
                json: ChatRequestError(param: "model", message: "cannot use own model - must be: \(modelID)").body)
            return
        }
        switch proxy.responseStreaming {
        case .deny where chat.stream:
            await reply(
                sink, &outcome, status: 400,
                json: ChatRequestError(param: "stream", message: "response streaming is not enabled for this LLM").body)
            return
        case .always: chat.stream = true
        default: break
        }

        // The budget.
        let promptTokens = chat.estimatedPromptTokens
        var maxTokens = proxy.model.options.maxTokens ?? chat.maxTokens ?? ClaudeHaiku.maxOutputTokens
        let budget = tables.policy.budget(
            route: compiled.route.name, service: compiled.route.service, consumer: consumer,
            groups: groups, credential: credential, provider: proxy.model.provider)
        outcome.group = budget?.plugin.scope.consumerGroup ?? groups.first ?? "-"
        var reservationID: UInt64 = 0
        var windows: [WindowStatus] = []
        if let budget {
            let price = budget.units(promptTokens: promptTokens, pricing: proxy.model.options)
            let reserveRequest = ReserveRequest(
                rules: budget.rules, enforcement: budget.enforcement, promptUnits: price.prompt,
                unitsPerCompletionToken: price.perCompletionToken, maxTokens: maxTokens)
            let asked = ContinuousClock.now
            let reservation = await link.reserve(reserveRequest)
            metrics.controlPlane(ContinuousClock.now - asked)
            switch reservation {
            case .outcome(.admitted(let id, let allowed, let status)):
                reservationID = id
                windows = status
                if budget.enforcement == .hard { maxTokens = min(maxTokens, allowed) }
            case .outcome(.refused(let status, let retryAfter, let exceeded)):
                metrics.refusal(consumer: outcome.consumer, group: outcome.group)
                let jitter =
                    budget.config.retryAfterJitterMax > 0 ? Int.random(in: 0...budget.config.retryAfterJitterMax) : 0
                var headers = RateLimitHeaders.headers(status, for: budget)
                headers += RateLimitHeaders.retryAfter(
                    status, exceeded: exceeded, seconds: retryAfter + jitter,
                    hidden: budget.config.hideClientHeaders)
                await reply(
                    sink, &outcome, status: budget.config.errorCode, json: message(budget.config.errorMessage),
                    headers: headers)
                return
            case .unavailable where Task.isCancelled:
                outcome.status = 499  // the client hung up while its reservation was being asked for
                return
            case .unavailable(let reason):
                if settings.lossPolicy == .failClosed {
                    logger.warning("refusing: control plane unavailable", metadata: ["reason": "\(reason)"])
                    await reply(
                        sink, &outcome, status: 503,
                        json: message(
                            "budget control plane unavailable, so budgets cannot be checked; requests are refused until it "
                                + "is back (--on-control-plane-loss fail-closed)"))
                    return
                }
            }
        }

        // Bedrock.
        let view = AIProxyConfigView(
            modelID: modelID, region: proxy.model.options.awsRegion,
            accessKeyID: proxy.auth.awsAccessKeyID?.revealed,
            secretAccessKey: proxy.auth.awsSecretAccessKey?.revealed,
            upstreamURL: proxy.model.options.upstreamURL)
        let target: BedrockTarget
        switch BedrockTarget.resolve(view, environment: settings.environment) {
        case .success(let value): target = value
        case .failure(let error):
            await link.release(reservationID)
            await reply(
                sink, &outcome, status: 500,
                json: OpenAIErrorBody.fromBedrock(status: 500, errorType: "ConfigurationError", message: error.message))
            return
        }
        let overrides = ModelOverrides(
            maxTokens: nil, temperature: proxy.model.options.temperature,
            topP: proxy.model.options.topP, topK: proxy.model.options.topK)
        let body = ConverseTranslator.converseBody(chat, maxTokens: maxTokens, overrides: overrides).serializedBytes
        let timeout = TimeAmount.milliseconds(Int64(compiled.service?.readTimeout ?? 60_000))
        var common: [(String, String)] = []
        if proxy.modelNameHeader { common.append(("X-Kong-LLM-Model", "bedrock/\(modelID)")) }

        let upstreamStarted = ContinuousClock.now
        let response: HTTPClientResponse
        do {
            response = try await upstream.send(body, to: target, stream: chat.stream, timeout: timeout)
        } catch {
            outcome.upstream = ContinuousClock.now - upstreamStarted
            await link.release(reservationID)
            let timedOut =
                "\(error)".contains("deadlineExceeded") || "\(error)".contains("readTimeout")
                || "\(error)".contains("connectTimeout")
            let status = timedOut ? 504 : 502
            await reply(
                sink, &outcome, status: status,
                json: OpenAIErrorBody.fromBedrock(
                    status: status, errorType: timedOut ? "UpstreamTimeout" : "UpstreamUnreachable",
                    message: timedOut
                        ? "Bedrock did not answer within \(timeout.nanoseconds / 1_000_000) ms"
                        : "cannot reach Bedrock: \(error)"),
                headers: common)
            return
        }

        guard response.status.code == 200 else {
            let errorBody = (try? await response.body.collect(upTo: 1 << 20)).map { Array($0.readableBytesView) } ?? []
            outcome.upstream = ContinuousClock.now - upstreamStarted
            metrics.upstream(outcome.upstream)
            await link.release(reservationID)
            let status = Int(response.status.code)
            await reply(
                sink, &outcome, status: status,
                json: OpenAIErrorBody.fromBedrockReply(
                    status: status, errorTypeHeader: response.headers.first(name: "x-amzn-ErrorType"), body: errorBody),
                headers: common + RateLimitHeaders.headers(windows, for: budget))
            return
        }

        let id = ChatCompletionRenderer.newID()
        let created = Int(Date().timeIntervalSince1970)
        if chat.stream {
            await stream(
                response, sink: sink, outcome: &outcome, chat: chat, id: id, created: created, modelID: modelID,
                promptTokens: promptTokens, budget: budget, proxy: proxy, reservationID: reservationID,
                windows: windows, common: common, upstreamStarted: upstreamStarted)
            return
        }
        let bytes: [UInt8]
        do {
            bytes = Array(try await response.body.collect(upTo: 32 << 20).readableBytesView)
        } catch {
            outcome.upstream = ContinuousClock.now - upstreamStarted
            await link.release(reservationID)
            await reply(
                sink, &outcome, status: 502,
                json: OpenAIErrorBody.fromBedrock(
                    status: 502, errorType: "UpstreamError", message: "Bedrock's reply was cut off: \(error)"))
            return
        }
        outcome.upstream = ContinuousClock.now - upstreamStarted
        metrics.upstream(outcome.upstream)
        let converse: ConverseResponse
        do {
            converse = try ConverseResponse.parse(bytes)
        } catch {
            await link.release(reservationID)
            await reply(
                sink, &outcome, status: 502,
                json: OpenAIErrorBody.fromBedrock(status: 502, errorType: "UpstreamFormatError", message: error.message)
            )
            return
        }
        let charged = await charge(
            budget: budget, proxy: proxy, reservationID: reservationID, usage: converse.usage, outcome: &outcome)
        let completion = ChatCompletionRenderer.completion(converse, id: id, created: created, model: modelID)
        await reply(
            sink, &outcome, status: 200, json: completion,
            headers: common
                + RateLimitHeaders.headers(windows, charged: charged, for: budget))
    }

    /// Commits real usage (or releases when there is no budget); returns the units charged.
    private func charge(
        budget: BudgetPolicy.Budget?, proxy: AIProxyConfig, reservationID: UInt64, usage: TokenUsage,
        outcome: inout Outcome
    ) async -> Double {
        outcome.promptTokens = usage.inputTokens
        outcome.completionTokens = usage.outputTokens
        guard let budget else { return 0 }
        let charges = budget.charges(
            promptTokens: usage.inputTokens, completionTokens: usage.outputTokens, pricing: proxy.model.options)
        await link.commit(BudgetMessages.Commit(reservation: reservationID, charges: charges))
        metrics.tokens(
            consumer: outcome.consumer, group: outcome.group, provider: budget.provider.name, tokens: usage.totalTokens)
        return charges.first?.units ?? 0
    }

    /// ConverseStream → server-sent events, flushed as frames arrive; the final usage (or, when the client
    /// hung up or the stream broke, an estimate from what was generated) is charged.
    private func stream(
        _ response: HTTPClientResponse, sink: any ResponseSink, outcome: inout Outcome, chat: ChatCompletionRequest,
        id: String, created: Int, modelID: String, promptTokens: Int, budget: BudgetPolicy.Budget?,
        proxy: AIProxyConfig,
        reservationID: UInt64, windows: [WindowStatus], common: [(String, String)],
        upstreamStarted: ContinuousClock.Instant
    ) async {
        outcome.status = 200
        var translator = ChatStreamTranslator(id: id, created: created, model: modelID, includeUsage: chat.includeUsage)
        var decoder = EventStreamDecoder()
        var clientGone = false
        do {
            try await sink.start(
                status: 200,
                headers: common + [
                    ("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache"),
                ] + RateLimitHeaders.headers(windows, for: budget),
                contentLength: nil)
            reading: for try await buffer in response.body {
                decoder.append(buffer.readableBytesView)
                while let message = try decoder.next() {
                    let bytes = translator.translate(message)
                    if !bytes.isEmpty {
                        do {
                            try await sink.write(bytes)
                        } catch {
                            clientGone = true
                            break reading
                        }
                    }
                    if translator.isFinished { break reading }
                }
            }
            if !translator.isFinished && !clientGone { try? await sink.write(translator.finishWithoutMetadata()) }
        } catch let error as EventStreamError {
            try? await sink.write(
                Array(
                    "data: \(OpenAIErrorBody.fromBedrock(status: 502, errorType: "EventStreamError", message: error.description).serialized)\n\n"
                        .utf8))
        } catch {
            if !translator.isFinished { try? await sink.write(translator.finishWithoutMetadata()) }
        }
        if !clientGone { try? await sink.finish() }
        outcome.upstream = ContinuousClock.now - upstreamStarted
        metrics.upstream(outcome.upstream)
        let usage =
            translator.usage
            ?? TokenUsage(inputTokens: promptTokens, outputTokens: translator.estimatedCompletionTokens)
        if translator.usage == nil && translator.generatedUTF8Count == 0 && translator.error != nil {
            await link.release(reservationID)  // failed before generating anything: nothing to charge
            return
        }
        _ = await charge(budget: budget, proxy: proxy, reservationID: reservationID, usage: usage, outcome: &outcome)
    }

    /// The API key from the places key-auth looks: headers named in `key_names`, then the query, then a
    /// top-level string field of a JSON body.
    static func apiKey(in request: ProxyRequest, config: KeyAuthConfig) -> String? {
        for name in config.keyNames {
            if config.keyInHeader, let value = request.header(name), !value.isEmpty { return value }
            if config.keyInQuery, let value = request.queryParameter(name), !value.isEmpty { return value }
        }
        if config.keyInBody, let json = try? JSONParser.parse(request.body) {
            for name in config.keyNames {
                if let value = json[name]?.stringValue, !value.isEmpty { return value }
            }
        }
        return nil
    }
}

/// `X-AI-RateLimit-*` headers, as Kong names them.
enum RateLimitHeaders {
    /// Kong's window name, or the number of seconds for other sizes.
    static func windowName(_ seconds: Int) -> String { WindowName.named(seconds) ?? String(seconds) }

    static func number(_ value: Double) -> String {
        value.rounded() == value && abs(value) < 9e15 ? String(Int(value)) : String(format: "%.14g", value)
    }

    /// Limit, Remaining and Reset per window (Remaining after `charged` units of this request), unless the
    /// budget hides client headers (or there is none). Remaining is floored to whole tokens, as Kong does, but
    /// not with the `cost` strategy, whose units are dollars.
    static func headers(_ windows: [WindowStatus], charged: Double = 0, for budget: BudgetPolicy.Budget?)
        -> [(String, String)]
    {
        guard let budget, !budget.config.hideClientHeaders else { return [] }
        let floored = budget.config.tokensCountStrategy != .cost
        return windows.flatMap { window -> [(String, String)] in
            let suffix = "\(windowName(window.key.windowSize))-\(window.key.provider)"
            let remaining = max(0, window.remaining - charged)
            return [
                ("X-AI-RateLimit-Limit-\(suffix)", number(window.limit)),
                ("X-AI-RateLimit-Remaining-\(suffix)", number(floored ? floor(remaining) : remaining)),
                ("X-AI-RateLimit-Reset-\(suffix)", String(window.reset)),
            ]
        }
    }

    /// `Retry-After` (always, as HTTP defines it) and the per-window retry headers of the exceeded windows.
    static func retryAfter(_ windows: [WindowStatus], exceeded: [LimitKey], seconds: Int, hidden: Bool) -> [(
        String, String
    )] {
        var headers = [("Retry-After", String(seconds))]
        guard !hidden else { return headers }
        for window in windows where exceeded.contains(window.key) {
            headers.append(
                (
                    "X-AI-RateLimit-Retry-After-\(windowName(window.key.windowSize))-\(window.key.provider)",
                    String(seconds)
                ))
        }
        return headers
    }
}

extension Duration {
    var milliseconds: Int64 { components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000 }
}
