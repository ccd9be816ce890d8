public import BudgetJSON

extension TokenUsage {
    /// From an Anthropic `usage` object (`input_tokens`, `output_tokens`), as in an InvokeModel reply.
    public init?(anthropic usage: JSONValue?) {
        guard let input = usage?["input_tokens"]?.int, let output = usage?["output_tokens"]?.int, input >= 0,
            output >= 0
        else { return nil }
        self.init(inputTokens: input, outputTokens: output)
    }

    /// From InvokeModel's `X-Amzn-Bedrock-Input-Token-Count` and `X-Amzn-Bedrock-Output-Token-Count` headers.
    public init?(inputHeader: String?, outputHeader: String?) {
        guard let input = inputHeader.flatMap({ Int($0) }), let output = outputHeader.flatMap({ Int($0) }),
            input >= 0, output >= 0
        else { return nil }
        self.init(inputTokens: input, outputTokens: output)
    }
}

/// The usage of a Claude stream from InvokeModelWithResponseStream, read from its Anthropic events:
/// `message_start` (input tokens), `message_delta` (output tokens so far) and, authoritative when
/// present, the `amazon-bedrock-invocationMetrics` that Bedrock adds to `message_stop`.
public struct ClaudeStreamUsage: Sendable, Hashable {
    private var inputTokens: Int?
    private var outputTokens: Int?
    private var metrics: TokenUsage?
    /// Bytes of generated text (and tool input) seen, for an estimate when the stream breaks off.
    public private(set) var generatedUTF8Count = 0
    /// True once `message_stop` has been seen.
    public private(set) var isComplete = false

    public init() {}

    /// The usage Bedrock reported: its invocation metrics, else the counts of the message events.
    public var usage: TokenUsage? {
        if let metrics { return metrics }
        guard let inputTokens, let outputTokens else { return nil }
        return TokenUsage(inputTokens: inputTokens, outputTokens: outputTokens)
    }

    /// The completion tokens to charge when no usage arrived: an estimate from what was generated.
    public var estimatedCompletionTokens: Int {
        if let outputTokens { return outputTokens }
        return generatedUTF8Count == 0 ? 0 : TokenEstimate.tokens(utf8Count: generatedUTF8Count)
    }

    /// Takes one Anthropic streaming event into account.
    public mutating func observe(_ event: JSONValue) {
        switch event["type"]?.stringValue {
        case "message_start":
            if let input = event["message"]?["usage"]?["input_tokens"]?.int { inputTokens = input }
        case "content_block_delta":
            let delta = event["delta"]
            generatedUTF8Count +=
                (delta?["text"]?.stringValue ?? delta?["partial_json"]?.stringValue
                ?? delta?["thinking"]?.stringValue ?? "").utf8.count
        case "message_delta":
            if let output = event["usage"]?["output_tokens"]?.int { outputTokens = output }
            if let input = event["usage"]?["input_tokens"]?.int, inputTokens == nil { inputTokens = input }
        case "message_stop":
            isComplete = true
            let invocation = event["amazon-bedrock-invocationMetrics"]
            if let input = invocation?["inputTokenCount"]?.int, let output = invocation?["outputTokenCount"]?.int {
                metrics = TokenUsage(inputTokens: input, outputTokens: output)
            }
        default:
            break
        }
    }

    /// The Anthropic event a `chunk` frame carries (its JSON and its bytes), or nil for another frame or
    /// a chunk that is not base64 of JSON.
    public static func chunkEvent(_ message: EventStreamMessage) -> (json: JSONValue, bytes: [UInt8])? {
        guard message.string(":message-type") ?? "event" == "event", message.string(":event-type") == "chunk",
            let payload = try? JSONParser.parse(message.payload), let encoded = payload["bytes"]?.stringValue,
            let bytes = Base64.decode(encoded), let json = try? JSONParser.parse(bytes)
        else { return nil }
        return (json, bytes)
    }

    /// The error an exception (or error) frame reports, or nil for an event.
    public static func streamError(_ message: EventStreamMessage) -> AWSErrorResponse? {
        let kind = message.string(":message-type") ?? "event"
        guard kind == "exception" || kind == "error" else { return nil }
        let name = message.string(":exception-type") ?? message.string(":error-code") ?? "InternalServerException"
        let payload = try? JSONParser.parse(message.payload)
        let text = payload?["message"]?.stringValue ?? message.string(":error-message") ?? "Bedrock stream failed"
        return AWSErrorResponse(
            status: ChatStreamTranslator.status(forStreamException: name), type: name, message: text)
    }
}
