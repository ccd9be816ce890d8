import BudgetJSON

/// The usage of a Bedrock event stream that the gateway passes through unchanged: ConverseStream's final
/// `metadata` event, or for InvokeModelWithResponseStream the Claude events in its `chunk` frames.
public struct BedrockStreamUsage: Sendable, Hashable {
    public let operation: BedrockOperation
    private var claude = ClaudeStreamUsage()
    private var converseUsage: TokenUsage?
    private var converseGenerated = 0
    /// The error an exception frame reported, if one did (the stream ends there).
    public private(set) var error: AWSErrorResponse?

    public init(operation: BedrockOperation) { self.operation = operation }

    /// The usage Bedrock reported, once it has.
    public var usage: TokenUsage? {
        operation.isConverse ? converseUsage : (claude.isComplete ? claude.usage : nil)
    }

    /// True once the stream's last event (Converse's `metadata`, Claude's `message_stop`) or an error was seen.
    public var isFinished: Bool {
        error != nil || (operation.isConverse ? converseUsage != nil : claude.isComplete)
    }

    /// Bytes of generated text seen so far.
    public var generatedUTF8Count: Int { operation.isConverse ? converseGenerated : claude.generatedUTF8Count }

    /// The completion tokens to charge when no usage arrived: an estimate from what was generated.
    public var estimatedCompletionTokens: Int {
        if !operation.isConverse { return claude.estimatedCompletionTokens }
        return converseGenerated == 0 ? 0 : TokenEstimate.tokens(utf8Count: converseGenerated)
    }

    /// Takes one frame into account.
    public mutating func observe(_ message: EventStreamMessage) {
        if let failure = ClaudeStreamUsage.streamError(message) {
            error = failure
            return
        }
        if !operation.isConverse {
            if let (event, _) = ClaudeStreamUsage.chunkEvent(message) { claude.observe(event) }
            return
        }
        switch message.string(":event-type") {
        case "contentBlockDelta":
            guard let payload = try? JSONParser.parse(message.payload) else { return }
            let delta = payload["delta"]
            converseGenerated +=
                (delta?["text"]?.stringValue ?? delta?["toolUse"]?["input"]?.stringValue ?? "").utf8.count
        case "metadata":
            guard let payload = try? JSONParser.parse(message.payload) else { return }
            converseUsage = TokenUsage(converse: payload["usage"])
        default:
            break
        }
    }
}
