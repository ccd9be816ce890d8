public import BudgetJSON

/// The parts of a Converse response (or of a ConverseStream's events) that a chat completion needs.
public struct ConverseResponse: Sendable, Hashable {
    /// A `toolUse` content block: the model asks for a tool to be called with `input`.
    public struct ToolUse: Sendable, Hashable {
        public var id: String
        public var name: String
        public var input: JSONValue
    }

    public var text: String
    public var toolUses: [ToolUse]
    /// Converse's stop reason, e.g. `end_turn` or `max_tokens`.
    public var stopReason: String
    public var usage: TokenUsage

    public init(text: String, toolUses: [ToolUse] = [], stopReason: String, usage: TokenUsage) {
        self.text = text
        self.toolUses = toolUses
        self.stopReason = stopReason
        self.usage = usage
    }

    /// Reads a Converse response body; an error names what is missing.
    public static func parse(_ body: [UInt8]) throws(UpstreamFormatError) -> ConverseResponse {
        let json: JSONValue
        do {
            json = try JSONParser.parse(body)
        } catch {
            throw UpstreamFormatError(message: "Converse response is not JSON: \(error)")
        }
        guard let content = json["output"]?["message"]?["content"]?.arrayValue else {
            throw UpstreamFormatError(message: "Converse response has no output.message.content")
        }
        guard let stopReason = json["stopReason"]?.stringValue else {
            throw UpstreamFormatError(message: "Converse response has no stopReason")
        }
        guard let usage = TokenUsage(converse: json["usage"]) else {
            throw UpstreamFormatError(message: "Converse response has no usage.inputTokens/outputTokens")
        }
        var text = ""
        var tools: [ToolUse] = []
        for block in content {
            if let piece = block["text"]?.stringValue { text += piece }
            if let use = block["toolUse"], let id = use["toolUseId"]?.stringValue, let name = use["name"]?.stringValue {
                tools.append(ToolUse(id: id, name: name, input: use["input"] ?? .object([])))
            }
        }
        return ConverseResponse(text: text, toolUses: tools, stopReason: stopReason, usage: usage)
    }
}

extension TokenUsage {
    /// From Converse's `usage` object (`inputTokens`, `outputTokens`).
    public init?(converse usage: JSONValue?) {
        guard let input = usage?["inputTokens"]?.int, let output = usage?["outputTokens"]?.int, input >= 0, output >= 0
        else { return nil }
        self.init(inputTokens: input, outputTokens: output)
    }
}

/// Bedrock sent something that is not what its API model says.
public struct UpstreamFormatError: Error, Sendable, Hashable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}
