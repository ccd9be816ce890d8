import BudgetJSON

/// ConverseStream events → OpenAI `chat.completion.chunk` server-sent events.
///
/// Feed each decoded event-stream message to `translate(_:)` and write what it returns to the client
/// as it comes. The first chunk carries the role; text deltas follow; `messageStop` gives the
/// finish_reason chunk; `metadata` gives the usage (a usage chunk when the client asked with
/// `stream_options.include_usage`) and ends the stream with `data: [DONE]`. An exception frame becomes
/// an error event and ends the stream. `usage` is what the caller charges.
public struct ChatStreamTranslator: Sendable {
    /// The completion id every chunk carries.
    public let id: String
    /// The `created` time every chunk carries, in epoch seconds.
    public let created: Int
    /// The model name every chunk carries.
    public let model: String
    /// Whether the client asked for a usage chunk (`stream_options.include_usage`).
    public let includeUsage: Bool

    /// The usage of the final `metadata` event, once it has arrived.
    public private(set) var usage: TokenUsage?
    /// Bytes of generated text seen so far, for an estimate when the stream ends without usage.
    public private(set) var generatedUTF8Count = 0
    /// True once `[DONE]` or an error event has been produced.
    public private(set) var isFinished = false
    /// The error that ended the stream, if one did.
    public private(set) var error: AWSErrorResponse?

    private var sentRole = false
    private var finishReason: String?
    private var toolIndexes: [Int: Int] = [:]
    /// `data: {"id":…,"object":"chat.completion.chunk","created":…,"model":…,"choices":[{"index":0,"delta":`,
    /// the same for every chunk of the stream, written once.
    private let chunkPrefix: [UInt8]

    public init(id: String, created: Int, model: String, includeUsage: Bool) {
        self.id = id
        self.created = created
        self.model = model
        self.includeUsage = includeUsage
        var prefix = Array(#"data: {"id":"#.utf8)
        JSONValue.writeString(id, into: &prefix)
        prefix += #","object":"chat.completion.chunk","created":"#.utf8
        prefix += String(created).utf8
        prefix += #","model":"#.utf8
        JSONValue.writeString(model, into: &prefix)
        prefix += #","choices":[{"index":0,"delta":"#.utf8
        chunkPrefix = prefix
    }

    /// The completion tokens to charge when no usage arrived: an estimate from the text seen.
    public var estimatedCompletionTokens: Int {
        generatedUTF8Count == 0 ? 0 : TokenEstimate.tokens(utf8Count: generatedUTF8Count)
    }

    /// The SSE bytes (`data: …\n\n`, possibly several events) for one event-stream message.
    public mutating func translate(_ message: EventStreamMessage) -> [UInt8] {
        guard !isFinished else { return [] }
        let kind = message.string(":message-type") ?? "event"
        if kind == "exception" || kind == "error" {
            let name = message.string(":exception-type") ?? message.string(":error-code") ?? "InternalServerException"
            let payload = try? JSONParser.parse(message.payload)
            let text = payload?["message"]?.stringValue ?? message.string(":error-message") ?? "Bedrock stream failed"
            return fail(AWSErrorResponse(status: Self.status(forStreamException: name), type: name, message: text))
        }
        let eventType = message.string(":event-type")
        // contentBlockStop, and events Converse may add later, carry nothing for OpenAI clients: their payload is not
        // read (nor required to be JSON), as the Anthropic and Bedrock relays do not require it.
        switch eventType {
        case "messageStart", "contentBlockStart", "contentBlockDelta", "messageStop", "metadata": break
        default: return []
        }
        guard let payload = try? JSONParser.parse(message.payload) else {
            return fail(
                AWSErrorResponse(
                    status: 502, type: "UpstreamFormatError",
                    message: "Bedrock sent an event whose payload is not JSON"))
        }
        var out: [UInt8] = []
        switch eventType {
        case "messageStart":
            out += roleChunkIfNeeded()
        case "contentBlockStart":
            out += roleChunkIfNeeded()
            if let use = payload["start"]?["toolUse"], let block = payload["contentBlockIndex"]?.int {
                let index = toolIndexes.count
                toolIndexes[block] = index
                out += chunk(
                    delta: .object([
                        "tool_calls": .array([
                            .object([
                                "index": .int(index), "id": .string(use["toolUseId"]?.stringValue ?? ""),
                                "type": .string("function"),
                                "function": .object([
                                    "name": .string(use["name"]?.stringValue ?? ""), "arguments": .string(""),
                                ]),
                            ])
                        ])
                    ]))
            }
        case "contentBlockDelta":
            out += roleChunkIfNeeded()
            if let text = payload["delta"]?["text"]?.stringValue {
                generatedUTF8Count += text.utf8.count
                out += chunk(delta: .object(["content": .string(text)]))
            } else if let input = payload["delta"]?["toolUse"]?["input"]?.stringValue,
                let block = payload["contentBlockIndex"]?.int, let index = toolIndexes[block]
            {
                generatedUTF8Count += input.utf8.count
                out += chunk(
                    delta: .object([
                        "tool_calls": .array([
                            .object(["index": .int(index), "function": .object(["arguments": .string(input)])])
                        ])
                    ]))
            }
        case "messageStop":
            let reason = ChatCompletionRenderer.finishReason(payload["stopReason"]?.stringValue ?? "end_turn")
            finishReason = reason
            out += roleChunkIfNeeded()
            out += chunk(delta: .object([]), finishReason: reason)
        case "metadata":
            usage = TokenUsage(converse: payload["usage"])
            if includeUsage, let usage {
                out += event(
                    .object([
                        "id": .string(id), "object": .string("chat.completion.chunk"), "created": .int(created),
                        "model": .string(model), "choices": .array([]), "usage": ChatCompletionRenderer.usage(usage),
                    ]))
            }
            out += Array("data: [DONE]\n\n".utf8)
            isFinished = true
        default:
            break  // the events above carry nothing for OpenAI clients
        }
        return out
    }

    /// What to send when the upstream stream ends without `metadata` (a dropped connection): an error event.
    public mutating func finishWithoutMetadata() -> [UInt8] {
        guard !isFinished else { return [] }
        return fail(
            AWSErrorResponse(
                status: 502, type: "IncompleteStream",
                message: "Bedrock's stream ended before its final metadata event"))
    }

    private mutating func fail(_ failure: AWSErrorResponse) -> [UInt8] {
        error = failure
        isFinished = true
        return event(
            OpenAIErrorBody.fromBedrock(status: failure.status, errorType: failure.type, message: failure.message))
    }

    private mutating func roleChunkIfNeeded() -> [UInt8] {
        guard !sentRole else { return [] }
        sentRole = true
        return chunk(delta: .object(["role": .string("assistant"), "content": .string("")]))
    }

    /// One `chat.completion.chunk` event: the stream's prefix, the delta, and the finish reason (byte for byte
    /// what the whole object would serialize to, without building it for every chunk).
    private func chunk(delta: JSONValue, finishReason: String? = nil) -> [UInt8] {
        var out = chunkPrefix
        out.reserveCapacity(chunkPrefix.count + 96)
        delta.write(into: &out)
        out += #","logprobs":null,"finish_reason":"#.utf8
        if let finishReason {
            JSONValue.writeString(finishReason, into: &out)
        } else {
            out += "null".utf8
        }
        out += "}]}\n\n".utf8
        return out
    }

    private func event(_ value: JSONValue) -> [UInt8] {
        var out = Array("data: ".utf8)
        value.write(into: &out)
        out += "\n\n".utf8
        return out
    }

    /// The HTTP status Bedrock gives the error a stream exception names.
    public static func status(forStreamException name: String) -> Int {
        switch name.lowercased() {
        case "throttlingexception": return 429
        case "validationexception": return 400
        case "modelstreamerrorexception": return 424
        case "modeltimeoutexception": return 408
        case "serviceunavailableexception": return 503
        default: return 500
        }
    }
}
