public import BudgetJSON

/// An Anthropic Messages API request (`POST /v1/messages`), checked, and turned into the body of a Bedrock
/// InvokeModel call for Claude.
///
/// Why InvokeModel and not Converse: Bedrock's Claude body *is* the Messages API body without `model` and
/// `stream` and with `anthropic_version: bedrock-2023-05-31`, so content blocks, tools, `tool_choice`,
/// `top_k` and whatever Anthropic adds later go through unchanged, and the reply (whole, or the stream's
/// `chunk.bytes`) is already in Anthropic's shapes. A trip through Converse would lose fields both ways.
public struct AnthropicMessagesRequest: Sendable, Hashable {
    /// The client's `model`.
    public var model: String
    /// Whether the client asked for server-sent events.
    public var stream: Bool
    /// The client's `max_tokens` (required by the API).
    public var maxTokens: Int
    /// UTF-8 bytes of the prompt's text (system, messages, tool specs), for the prompt-token estimate.
    public var promptUTF8Count: Int
    /// The members that go to Bedrock as they came, in the client's order.
    private var forwarded: [JSONValue.Member]

    /// Members the gateway handles itself: `model` and `stream` are in Bedrock's path, `anthropic_version`
    /// and `max_tokens` are set by the gateway, and `metadata` (an end-user id) is not part of Bedrock's
    /// Claude body, which rejects unknown keys.
    static let handled: Set<String> = ["model", "stream", "metadata", "anthropic_version", "max_tokens"]

    /// The version string Bedrock's Claude body needs.
    public static let bedrockVersion = "bedrock-2023-05-31"

    /// The prompt-token estimate: about one token per four bytes, as for OpenAI chat.
    public var estimatedPromptTokens: Int { TokenEstimate.tokens(utf8Count: promptUTF8Count) }

    /// Checks a request body against the Messages API; an error names the field.
    public static func parse(_ json: JSONValue) throws(AnthropicRequestError) -> AnthropicMessagesRequest {
        guard let members = json.members else {
            throw AnthropicRequestError("request body must be a JSON object, found \(json.kindDescription)")
        }
        guard let model = json["model"]?.stringValue, !model.isEmpty else {
            throw AnthropicRequestError(at: "model", "Field required (a string)")
        }
        guard let maxTokens = json["max_tokens"]?.int else {
            throw AnthropicRequestError(at: "max_tokens", "Field required (an integer)")
        }
        guard maxTokens >= 1 else { throw AnthropicRequestError(at: "max_tokens", "must be at least 1") }
        var stream = false
        if let value = json["stream"], !value.isNull {
            guard let flag = value.boolValue else { throw .type("stream", "a boolean", value) }
            stream = flag
        }
        var count = 0
        count += try system(json["system"])
        count += try messages(json["messages"])
        if let tools = json["tools"], !tools.isNull {
            guard let list = tools.arrayValue else { throw .type("tools", "an array", tools) }
            for (index, tool) in list.enumerated() {
                guard tool.members != nil, tool["name"]?.stringValue != nil else {
                    throw AnthropicRequestError(at: "tools.\(index).name", "Field required (a string)")
                }
                count += tool.serialized.utf8.count
            }
        }
        if let choice = json["tool_choice"], !choice.isNull, choice["type"]?.stringValue == nil {
            throw AnthropicRequestError(at: "tool_choice.type", "Field required (auto, any, tool or none)")
        }
        if let stops = json["stop_sequences"], !stops.isNull {
            guard let list = stops.arrayValue, list.allSatisfy({ $0.stringValue != nil }) else {
                throw .type("stop_sequences", "an array of strings", stops)
            }
        }
        for (name, range) in [("temperature", 0.0...1.0), ("top_p", 0.0...1.0)] {
            if let value = json[name], !value.isNull {
                guard let number = value.double else { throw .type(name, "a number", value) }
                guard range.contains(number) else { throw AnthropicRequestError(at: name, "must be from 0 to 1") }
            }
        }
        if let value = json["top_k"], !value.isNull {
            guard let number = value.int, number >= 0 else { throw .type("top_k", "a non-negative integer", value) }
        }
        if let value = json["metadata"], !value.isNull, value.members == nil {
            throw .type("metadata", "an object", value)
        }
        return AnthropicMessagesRequest(
            model: model, stream: stream, maxTokens: maxTokens, promptUTF8Count: count,
            forwarded: members.filter { !handled.contains($0.name) })
    }

    /// The InvokeModel body: `anthropic_version`, the effective `max_tokens` (config, client or a hard
    /// budget's clamp), then the client's members in order, with the route's `overrides` applied and
    /// `betas` (the `anthropic-beta` header) as `anthropic_beta` unless the body has its own.
    public func invokeBody(maxTokens: Int, overrides: ModelOverrides = ModelOverrides(), betas: [String] = [])
        -> JSONValue
    {
        var members: [JSONValue.Member] = [
            .init("anthropic_version", .string(Self.bedrockVersion)), .init("max_tokens", .int(maxTokens)),
        ]
        members += forwarded
        func set(_ name: String, _ value: JSONValue) {
            if let index = members.firstIndex(where: { $0.name == name }) {
                members[index].value = value
            } else {
                members.append(.init(name, value))
            }
        }
        if let temperature = overrides.temperature { set("temperature", .double(temperature)) }
        if let topP = overrides.topP { set("top_p", .double(topP)) }
        if let topK = overrides.topK { set("top_k", .int(topK)) }
        if !betas.isEmpty && !members.contains(where: { $0.name == "anthropic_beta" }) {
            members.append(.init("anthropic_beta", .array(betas.map { .string($0) })))
        }
        return .object(members)
    }

    // MARK: - Checks

    private static func system(_ value: JSONValue?) throws(AnthropicRequestError) -> Int {
        guard let value, !value.isNull else { return 0 }
        if let text = value.stringValue { return text.utf8.count }
        guard let blocks = value.arrayValue else { throw .type("system", "a string or an array of blocks", value) }
        var count = 0
        for (index, block) in blocks.enumerated() {
            guard block["type"]?.stringValue == "text", let text = block["text"]?.stringValue else {
                throw AnthropicRequestError(
                    at: "system.\(index)", "expected a text block ({\"type\":\"text\",\"text\":…})")
            }
            count += text.utf8.count
        }
        return count
    }

    private static func messages(_ value: JSONValue?) throws(AnthropicRequestError) -> Int {
        guard let value, let list = value.arrayValue else {
            throw AnthropicRequestError(at: "messages", "Field required (an array of messages)")
        }
        guard !list.isEmpty else { throw AnthropicRequestError(at: "messages", "at least one message is required") }
        var count = 0
        for (index, message) in list.enumerated() {
            guard let role = message["role"]?.stringValue, role == "user" || role == "assistant" else {
                throw AnthropicRequestError(at: "messages.\(index).role", "Input should be 'user' or 'assistant'")
            }
            guard let content = message["content"] else {
                throw AnthropicRequestError(at: "messages.\(index).content", "Field required")
            }
            if let text = content.stringValue {
                count += text.utf8.count
                continue
            }
            guard let blocks = content.arrayValue else {
                throw .type("messages.\(index).content", "a string or an array of content blocks", content)
            }
            for (blockIndex, block) in blocks.enumerated() {
                guard block["type"]?.stringValue != nil else {
                    throw AnthropicRequestError(
                        at: "messages.\(index).content.\(blockIndex).type", "Field required (text, image, tool_use, …)")
                }
                count += textBytes(block)
            }
        }
        return count
    }

    /// UTF-8 bytes of the text in a content block, tool inputs and results included; binary sources
    /// (base64 images and documents) are not text and are left out of the estimate.
    static func textBytes(_ value: JSONValue) -> Int {
        switch value {
        case .string(let text): return text.utf8.count
        case .array(let items): return items.reduce(0) { $0 + textBytes($1) }
        case .object(let members):
            return members.reduce(0) { total, member in
                switch member.name {
                case "type", "id", "tool_use_id", "source", "cache_control": return total
                case "input": return total + member.value.serialized.utf8.count
                default: return total + textBytes(member.value)
                }
            }
        default: return 0
        }
    }
}

/// A Messages request the gateway refuses: 400 `invalid_request_error`, naming the field.
public struct AnthropicRequestError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The offending field's path, such as `messages.1.content`.
    public var path: String?
    public var message: String

    public init(at path: String? = nil, _ message: String) {
        self.path = path
        self.message = message
    }

    public init(_ message: String) { self.init(at: nil, message) }

    public var description: String { path.map { "\($0): \(message)" } ?? message }

    static func type(_ path: String, _ expected: String, _ found: JSONValue) -> AnthropicRequestError {
        let what = if case .number(let text) = found { text } else { found.kindDescription }
        return AnthropicRequestError(at: path, "expected \(expected), found \(what)")
    }

    /// `{"type":"error","error":{"type":"invalid_request_error","message":…}}`.
    public var body: JSONValue { AnthropicErrorBody.body(status: 400, message: description) }
}
