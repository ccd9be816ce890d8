/// Tokens as Bedrock reports them for one call.
public struct TokenUsage: Sendable, Hashable {
    public var inputTokens: Int
    public var outputTokens: Int

    public init(inputTokens: Int, outputTokens: Int) {
        self.inputTokens = inputTokens
        self.outputTokens = outputTokens
    }

    public var totalTokens: Int { inputTokens + outputTokens }
}

/// The rough token count used where the provider's count is not known yet (a prompt before it is
/// sent, text seen before a client hung up): one token per four UTF-8 bytes, at least one.
package enum TokenEstimate {
    /// The estimate for text of `utf8Count` UTF-8 bytes.
    package static func tokens(utf8Count: Int) -> Int { max(1, (utf8Count + 3) / 4) }

    /// The estimate for `text`.
    package static func tokens(_ text: String) -> Int { tokens(utf8Count: text.utf8.count) }
}

/// Claude 3 Haiku on Bedrock: the model this gateway is built around.
public enum ClaudeHaiku {
    /// The Bedrock model ID.
    public static let modelID = "anthropic.claude-3-haiku-20240307-v1:0"
    /// The most output tokens the model produces, which is also what Bedrock reserves against quotas.
    public static let maxOutputTokens = 4096
}
