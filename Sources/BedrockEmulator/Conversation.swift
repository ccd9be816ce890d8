import Bedrock
import BudgetJSON

/// A validated request to the emulator's model, from a Converse body or an Anthropic Messages body,
/// with the checks Bedrock makes and its error messages.
struct Conversation {
    struct Reply {
        var text: String
        var inputTokens: Int
        var outputTokens: Int
        var stopReason: String
        var toolUse: (id: String, name: String, input: JSONValue)?
        var latencyMilliseconds: Int
    }

    enum ToolChoice { case auto, any, tool(String) }

    var lastUserText = ""
    var lastUserIsToolResult = false
    var promptUTF8Count = 0
    var maxTokens: Int
    var tools: [String] = []
    var toolChoice: ToolChoice = .auto

    /// The deterministic reply: a tool call when tools are offered and called for, else text.
    func reply() -> Reply {
        let inputTokens = TokenEstimate.tokens(utf8Count: promptUTF8Count)
        if !tools.isEmpty && !lastUserIsToolResult, let tool = chosenTool() {
            let input = JSONValue.object(["query": .string(String(lastUserText.prefix(64)))])
            let outputTokens = min(maxTokens, TokenEstimate.tokens(tool + input.serialized))
            let id = "tooluse_" + String(ReplyGenerator.fnv1a(lastUserText + tool), radix: 36)
            return Reply(
                text: "", inputTokens: inputTokens, outputTokens: outputTokens, stopReason: "tool_use",
                toolUse: (id, tool, input), latencyMilliseconds: 100 + outputTokens / 10)
        }
        let generated = ReplyGenerator.reply(to: lastUserText, maxTokens: maxTokens)
        return Reply(
            text: generated.text, inputTokens: inputTokens, outputTokens: generated.outputTokens,
            stopReason: generated.stopReason, toolUse: nil,
            latencyMilliseconds: 100 + generated.outputTokens / 10)
    }

    private func chosenTool() -> String? {
        switch toolChoice {
        case .any: return tools.first
        case .tool(let name): return tools.contains(name) ? name : nil
        case .auto: return tools.first { lastUserText.lowercased().contains($0.lowercased()) }
        }
    }

    static let converseMembers: Set<String> = [
        "messages", "system", "inferenceConfig", "toolConfig", "guardrailConfig", "additionalModelRequestFields",
        "promptVariables", "additionalModelResponseFieldPaths", "requestMetadata", "performanceConfig", "serviceTier",
        "outputConfig",
    ]

    /// A Converse or ConverseStream body.
    static func converse(_ json: JSONValue, modelMaxTokens: Int) -> Result<Conversation, AWSErrorResponse> {
        guard let members = json.members else {
            return .failure(.validation("Malformed input request: expected a JSON object."))
        }
        if let extra = members.first(where: { !converseMembers.contains($0.name) }) {
            return .failure(
                .validation(
                    "Malformed input request: extraneous key [\(extra.name)] is not permitted, "
                        + "please reformat your input and try again."))
        }
        var conversation = Conversation(maxTokens: modelMaxTokens)
        if let inference = json["inferenceConfig"] {
            if let maxTokens = inference["maxTokens"] {
                guard let value = maxTokens.int else {
                    return .failure(constraint("inferenceConfig.maxTokens", maxTokens, "be an integer"))
                }
                guard value >= 1 else {
                    return .failure(
                        constraint("inferenceConfig.maxTokens", maxTokens, "have value greater than or equal to 1"))
                }
                guard value <= modelMaxTokens else {
                    return .failure(
                        .validation(
                            "The maximum tokens you requested exceeds the model limit of "
                                + "\(modelMaxTokens). Try again with a maximum tokens value that is lower than \(modelMaxTokens)."
                        ))
                }
                conversation.maxTokens = value
            }
            for name in ["temperature", "topP"] {
                if let value = inference[name], !(value.double.map { (0...1).contains($0) } ?? false) {
                    return .failure(constraint("inferenceConfig.\(name)", value, "have value less than or equal to 1"))
                }
            }
        }
        for (index, block) in (json["system"]?.arrayValue ?? []).enumerated() {
            if let text = block["text"]?.stringValue {
                if text.trimmingWhitespace().isEmpty {
                    return .failure(
                        .validation(
                            "The text field in the SystemContentBlock object at system.\(index) is blank. "
                                + "Add text to the text field, and try again."))
                }
                conversation.promptUTF8Count += text.utf8.count
            }
        }
        if let toolConfig = json["toolConfig"] {
            conversation.tools = (toolConfig["tools"]?.arrayValue ?? []).compactMap {
                $0["toolSpec"]?["name"]?.stringValue
            }
            if let specs = toolConfig["tools"]?.arrayValue {
                for spec in specs { conversation.promptUTF8Count += spec.serialized.utf8.count }
            }
            if toolConfig["toolChoice"]?["any"] != nil { conversation.toolChoice = .any }
            if let name = toolConfig["toolChoice"]?["tool"]?["name"]?.stringValue {
                conversation.toolChoice = .tool(name)
            }
        }
        guard let messages = json["messages"]?.arrayValue, !messages.isEmpty,
            messages.first?["role"]?.stringValue == "user"
        else {
            return .failure(
                .validation(
                    "A conversation must start with a user message. Try again with a conversation "
                        + "that starts with a user message."))
        }
        var previousRole: String?
        for (index, message) in messages.enumerated() {
            guard let role = message["role"]?.stringValue, role == "user" || role == "assistant" else {
                return .failure(
                    constraint(
                        "messages.\(index + 1).member.role", message["role"] ?? .null,
                        "satisfy enum value set: [user, assistant]"))
            }
            if role == previousRole {
                return .failure(
                    .validation(
                        "A conversation must alternate between user and assistant roles. Make sure "
                            + "the conversation alternates between user and assistant roles and try again."))
            }
            previousRole = role
            guard let content = message["content"]?.arrayValue, !content.isEmpty else {
                return .failure(
                    .validation(
                        "The content field in the Message object at messages.\(index) is empty. "
                            + "Add a ContentBlock object to the content field and try again."))
            }
            var userText = ""
            var toolResult = false
            for (blockIndex, block) in content.enumerated() {
                if let text = block["text"]?.stringValue {
                    if text.trimmingWhitespace().isEmpty {
                        return .failure(
                            .validation(
                                "The text field in the ContentBlock object at messages.\(index)."
                                    + "content.\(blockIndex) is blank. Add text to the text field, and try again."))
                    }
                    conversation.promptUTF8Count += text.utf8.count
                    userText += text
                } else if let result = block["toolResult"] {
                    toolResult = true
                    for part in result["content"]?.arrayValue ?? [] {
                        conversation.promptUTF8Count +=
                            part["text"]?.stringValue?.utf8.count ?? part.serialized.utf8.count
                    }
                } else if let use = block["toolUse"] {
                    conversation.promptUTF8Count +=
                        (use["name"]?.stringValue ?? "").utf8.count
                        + (use["input"]?.serialized.utf8.count ?? 0)
                } else {
                    return .failure(
                        .validation(
                            "The content block at messages.\(index).content.\(blockIndex) is not "
                                + "supported by the emulator (text, toolUse and toolResult are)."))
                }
            }
            if role == "user" {
                conversation.lastUserText = userText
                conversation.lastUserIsToolResult = toolResult && userText.isEmpty
            }
        }
        return .success(conversation)
    }

    /// The members Bedrock's Claude Messages body may have; any other is refused, as Bedrock does.
    static let anthropicMembers: Set<String> = [
        "anthropic_version", "anthropic_beta", "max_tokens", "system", "messages", "temperature", "top_p", "top_k",
        "stop_sequences", "tools", "tool_choice", "thinking",
    ]

    /// An InvokeModel body in Anthropic's Messages format for Claude.
    static func anthropic(_ json: JSONValue, modelMaxTokens: Int) -> Result<Conversation, AWSErrorResponse> {
        guard let members = json.members else {
            return .failure(.validation("Malformed input request: expected a JSON object."))
        }
        if let extra = members.first(where: { !anthropicMembers.contains($0.name) }) {
            return .failure(
                .validation(
                    "Malformed input request: #: extraneous key [\(extra.name)] is not permitted, "
                        + "please reformat your input and try again."))
        }
        guard json["anthropic_version"]?.stringValue == "bedrock-2023-05-31" else {
            return .failure(
                .validation(
                    "Malformed input request: #: required key [anthropic_version] not found or "
                        + "not bedrock-2023-05-31, please reformat your input and try again."))
        }
        guard let maxTokens = json["max_tokens"]?.int else {
            return .failure(
                .validation(
                    "Malformed input request: #: required key [max_tokens] not found, please "
                        + "reformat your input and try again."))
        }
        guard (1...modelMaxTokens).contains(maxTokens) else {
            return .failure(
                .validation("max_tokens: \(maxTokens) is out of range; the model allows 1 to \(modelMaxTokens)."))
        }
        var conversation = Conversation(maxTokens: maxTokens)
        if let system = json["system"]?.stringValue {
            conversation.promptUTF8Count += system.utf8.count
        } else if let blocks = json["system"]?.arrayValue {
            for block in blocks { conversation.promptUTF8Count += block["text"]?.stringValue?.utf8.count ?? 0 }
        }
        if let tools = json["tools"]?.arrayValue {
            conversation.tools = tools.compactMap { $0["name"]?.stringValue }
            for tool in tools { conversation.promptUTF8Count += tool.serialized.utf8.count }
            switch json["tool_choice"]?["type"]?.stringValue {
            case "any": conversation.toolChoice = .any
            case "tool": conversation.toolChoice = .tool(json["tool_choice"]?["name"]?.stringValue ?? "")
            case "none": conversation.tools = []
            default: break
            }
        }
        guard let messages = json["messages"]?.arrayValue, !messages.isEmpty else {
            return .failure(
                .validation(
                    "Malformed input request: #: required key [messages] not found, please reformat "
                        + "your input and try again."))
        }
        for (index, message) in messages.enumerated() {
            guard let role = message["role"]?.stringValue, role == "user" || role == "assistant" else {
                return .failure(.validation("messages.\(index).role: Input should be 'user' or 'assistant'"))
            }
            var text = ""
            var toolResult = false
            if let content = message["content"]?.stringValue {
                guard !content.trimmingWhitespace().isEmpty else {
                    return .failure(.validation("messages: text content blocks must be non-empty"))
                }
                text = content
            } else if let blocks = message["content"]?.arrayValue, !blocks.isEmpty {
                for (blockIndex, block) in blocks.enumerated() {
                    switch block["type"]?.stringValue {
                    case "text":
                        guard let piece = block["text"]?.stringValue, !piece.trimmingWhitespace().isEmpty else {
                            return .failure(.validation("messages: text content blocks must be non-empty"))
                        }
                        text += piece
                    case "tool_use":
                        conversation.promptUTF8Count +=
                            (block["name"]?.stringValue ?? "").utf8.count + (block["input"]?.serialized.utf8.count ?? 0)
                    case "tool_result":
                        toolResult = true
                        if let result = block["content"]?.stringValue {
                            conversation.promptUTF8Count += result.utf8.count
                        } else {
                            for part in block["content"]?.arrayValue ?? [] {
                                conversation.promptUTF8Count += part["text"]?.stringValue?.utf8.count ?? 0
                            }
                        }
                    default:
                        return .failure(
                            .validation(
                                "messages.\(index).content.\(blockIndex).type: the emulator supports text, "
                                    + "tool_use and tool_result blocks"))
                    }
                }
            } else {
                return .failure(.validation("messages.\(index).content: Field required"))
            }
            conversation.promptUTF8Count += text.utf8.count
            if role == "user" {
                conversation.lastUserText = text
                conversation.lastUserIsToolResult = toolResult && text.isEmpty
            }
        }
        return .success(conversation)
    }

    private static func constraint(_ path: String, _ value: JSONValue, _ rule: String) -> AWSErrorResponse {
        let shown = value.stringValue ?? value.serialized
        return .validation(
            "1 validation error detected: Value '\(shown)' at '\(path)' failed to satisfy constraint: "
                + "Member must \(rule)")
    }
}

extension String {
    func trimmingWhitespace() -> Substring {
        let scalars = unicodeScalars
        guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }),
            let last = scalars.lastIndex(where: { !$0.properties.isWhitespace })
        else { return "" }
        return Substring(scalars[first...last])
    }
}
