public import BudgetJSON

/// An OpenAI chat-completions request, validated field by field.
///
/// Every field is either mapped to Converse or refused with an error naming it: nothing a client sends
/// is silently dropped. `user` and `metadata` are the exceptions: they describe the caller and change
/// nothing about the reply, so they are accepted and not forwarded.
public struct ChatCompletionRequest: Sendable, Hashable {
    /// A message's author, by OpenAI's `role` names.
    public enum Role: String, Sendable, Hashable { case system, developer, user, assistant, tool }

    /// A function call an assistant message made.
    public struct ToolCall: Sendable, Hashable {
        public var id: String
        public var name: String
        /// The function arguments, parsed from the JSON string OpenAI carries them in.
        public var arguments: JSONValue
    }

    /// One entry of `messages`.
    public struct Message: Sendable, Hashable {
        public var role: Role
        /// Text parts, in order; empty for an assistant message that only calls tools.
        public var text: [String]
        public var toolCalls: [ToolCall]
        /// For `tool` messages: the call this answers.
        public var toolCallID: String?
    }

    /// A function the model may call: its name, description and JSON Schema parameters.
    public struct Tool: Sendable, Hashable {
        public var name: String
        public var description: String?
        public var parameters: JSONValue
    }

    /// `tool_choice`: whether the model may, must or must not call a tool, or which one.
    public enum ToolChoice: Sendable, Hashable {
        case auto, none, required
        case function(String)
    }

    /// The `model` field as sent; the route decides the model actually called.
    public var model: String?
    public var messages: [Message]
    /// `max_completion_tokens` or `max_tokens`.
    public var maxTokens: Int?
    public var temperature: Double?
    public var topP: Double?
    /// Stop sequences.
    public var stop: [String] = []
    /// Whether the reply is streamed as server-sent events.
    public var stream = false
    /// `stream_options.include_usage`: whether a streamed reply ends with a usage chunk.
    public var includeUsage = false
    public var tools: [Tool] = []
    public var toolChoice: ToolChoice?

    /// Every UTF-8 byte of text the prompt carries (system, messages, tool results and calls, tool specs),
    /// for the prompt-token estimate.
    public var promptUTF8Count: Int {
        var count = 0
        for message in messages {
            for part in message.text { count += part.utf8.count }
            for call in message.toolCalls { count += call.name.utf8.count + call.arguments.serialized.utf8.count }
        }
        for tool in tools {
            count += tool.name.utf8.count + (tool.description?.utf8.count ?? 0) + tool.parameters.serialized.utf8.count
        }
        return count
    }

    /// The prompt-token estimate: about one token per four bytes.
    public var estimatedPromptTokens: Int { TokenEstimate.tokens(utf8Count: promptUTF8Count) }

    /// Parses and validates a request body.
    public static func parse(_ body: [UInt8]) throws(ChatRequestError) -> ChatCompletionRequest {
        let json: JSONValue
        do {
            json = try JSONParser.parse(body)
        } catch {
            throw ChatRequestError(param: nil, message: "request body is not valid JSON: \(error.description)")
        }
        return try parse(json)
    }

    static let acceptedUnmapped: Set<String> = ["user", "metadata"]
    static let refusedFields: [String: String] = [
        "n": "only one choice (n: 1) is supported",
        "logprobs": "log probabilities are not available from Bedrock Converse",
        "top_logprobs": "log probabilities are not available from Bedrock Converse",
        "logit_bias": "logit_bias is not available from Bedrock Converse",
        "presence_penalty": "presence_penalty has no Bedrock Converse equivalent",
        "frequency_penalty": "frequency_penalty has no Bedrock Converse equivalent",
        "response_format": "response_format is not supported by this gateway's Bedrock translation",
        "seed": "seed has no Bedrock Converse equivalent",
        "functions": "the legacy functions field is not supported; use tools",
        "function_call": "the legacy function_call field is not supported; use tool_choice",
        "parallel_tool_calls": "parallel_tool_calls has no Bedrock Converse equivalent",
        "audio": "audio output is not supported", "modalities": "only text output is supported",
        "prediction": "predicted outputs are not supported", "store": "stored completions are not supported",
        "service_tier": "service_tier is not supported", "reasoning_effort": "reasoning_effort is not supported",
        "web_search_options": "web search is not supported",
    ]

    /// Validates an already parsed request body.
    public static func parse(_ json: JSONValue) throws(ChatRequestError) -> ChatCompletionRequest {
        guard let members = json.members else {
            throw ChatRequestError(
                param: nil, message: "request body must be a JSON object, found \(json.kindDescription)")
        }
        var request = ChatCompletionRequest(messages: [])
        for member in members {
            let name = member.name
            let value = member.value
            switch name {
            case "model":
                guard let model = value.stringValue else { throw .type(name, "a string", value) }
                request.model = model
            case "messages":
                request.messages = try parseMessages(value)
            case "max_tokens", "max_completion_tokens":
                if value.isNull { continue }
                guard let tokens = value.int, tokens >= 1 else { throw .type(name, "a positive integer", value) }
                if let earlier = request.maxTokens, earlier != tokens {
                    throw ChatRequestError(param: name, message: "max_tokens and max_completion_tokens disagree")
                }
                request.maxTokens = tokens
            case "temperature":
                if value.isNull { continue }
                // Passed through unchanged, as Kong does; Claude on Bedrock takes 0…1, not OpenAI's 0…2.
                guard let number = value.double, (0...1).contains(number) else {
                    throw .type(name, "a number from 0 to 1 (Claude's range on Bedrock)", value)
                }
                request.temperature = number
            case "top_p":
                if value.isNull { continue }
                guard let number = value.double, (0...1).contains(number) else {
                    throw .type(name, "a number from 0 to 1", value)
                }
                request.topP = number
            case "stop":
                request.stop = try parseStop(value)
            case "stream":
                if value.isNull { continue }
                guard let flag = value.boolValue else { throw .type(name, "true or false", value) }
                request.stream = flag
            case "stream_options":
                if value.isNull { continue }
                guard let options = value.members else { throw .type(name, "an object", value) }
                for option in options {
                    guard option.name == "include_usage" else {
                        throw ChatRequestError(param: "stream_options.\(option.name)", message: "unknown stream option")
                    }
                    guard let flag = option.value.boolValue else {
                        throw .type("stream_options.include_usage", "true or false", option.value)
                    }
                    request.includeUsage = flag
                }
            case "tools":
                request.tools = try parseTools(value)
            case "tool_choice":
                request.toolChoice = try parseToolChoice(value)
            case "n":
                if value.isNull || value.int == 1 { continue }
                throw ChatRequestError(param: name, message: refusedFields[name] ?? "")
            default:
                if acceptedUnmapped.contains(name) { continue }
                if let reason = refusedFields[name] {
                    if value.isNull || value == .bool(false) { continue }
                    throw ChatRequestError(param: name, message: reason)
                }
                throw ChatRequestError(param: name, message: "unknown field \"\(name)\"")
            }
        }
        guard !request.messages.isEmpty else {
            throw ChatRequestError(param: "messages", message: "messages is required and must not be empty")
        }
        if !request.stream && request.includeUsage {
            throw ChatRequestError(param: "stream_options", message: "stream_options is only allowed with stream: true")
        }
        return request
    }

    private static func parseMessages(_ value: JSONValue) throws(ChatRequestError) -> [Message] {
        guard let items = value.arrayValue else { throw .type("messages", "an array", value) }
        var messages: [Message] = []
        for (index, item) in items.enumerated() {
            let path = "messages[\(index)]"
            guard let members = item.members else { throw .type(path, "an object", item) }
            guard let roleText = item["role"]?.stringValue else {
                throw ChatRequestError(param: "\(path).role", message: "role is required")
            }
            guard let role = Role(rawValue: roleText) else {
                throw ChatRequestError(
                    param: "\(path).role",
                    message: "unknown role \"\(roleText)\"; expected system, developer, user, assistant or tool")
            }
            var message = Message(role: role, text: [], toolCalls: [], toolCallID: nil)
            for member in members {
                switch member.name {
                case "role": continue
                case "content":
                    message.text = try parseContent(
                        member.value, path: "\(path).content", allowNull: role == .assistant)
                case "name": continue  // a participant's name, not part of the prompt's meaning for Bedrock
                case "tool_calls" where role == .assistant:
                    message.toolCalls = try parseToolCalls(member.value, path: "\(path).tool_calls")
                case "tool_call_id" where role == .tool:
                    guard let id = member.value.stringValue, !id.isEmpty else {
                        throw .type("\(path).tool_call_id", "a non-empty string", member.value)
                    }
                    message.toolCallID = id
                case "refusal" where role == .assistant:
                    if !member.value.isNull {
                        throw ChatRequestError(param: "\(path).refusal", message: "refusal cannot be sent to Bedrock")
                    }
                default:
                    throw ChatRequestError(
                        param: "\(path).\(member.name)",
                        message: "field \"\(member.name)\" is not supported on a \(role.rawValue) message")
                }
            }
            if role == .tool && message.toolCallID == nil {
                throw ChatRequestError(param: "\(path).tool_call_id", message: "a tool message needs tool_call_id")
            }
            if message.text.isEmpty && message.toolCalls.isEmpty {
                throw ChatRequestError(param: "\(path).content", message: "content is required")
            }
            messages.append(message)
        }
        return messages
    }

    private static func parseContent(_ value: JSONValue, path: String, allowNull: Bool) throws(ChatRequestError)
        -> [String]
    {
        switch value {
        case .null where allowNull:
            return []
        case .string(let text):
            return [text]
        case .array(let parts):
            var texts: [String] = []
            for (index, part) in parts.enumerated() {
                let partPath = "\(path)[\(index)]"
                guard let type = part["type"]?.stringValue else {
                    throw ChatRequestError(param: "\(partPath).type", message: "type is required")
                }
                guard type == "text" else {
                    throw ChatRequestError(
                        param: "\(partPath).type",
                        message: "content part type \"\(type)\" is not supported; only text is")
                }
                guard let text = part["text"]?.stringValue else {
                    throw .type("\(partPath).text", "a string", part["text"] ?? .null)
                }
                if let extra = part.members?.first(where: { $0.name != "type" && $0.name != "text" }) {
                    throw ChatRequestError(
                        param: "\(partPath).\(extra.name)", message: "unknown field \"\(extra.name)\" in a text part")
                }
                texts.append(text)
            }
            return texts
        default:
            throw .type(path, "a string or an array of text parts", value)
        }
    }

    private static func parseToolCalls(_ value: JSONValue, path: String) throws(ChatRequestError) -> [ToolCall] {
        guard let items = value.arrayValue else { throw .type(path, "an array", value) }
        var calls: [ToolCall] = []
        for (index, item) in items.enumerated() {
            let callPath = "\(path)[\(index)]"
            guard let id = item["id"]?.stringValue, !id.isEmpty else {
                throw ChatRequestError(param: "\(callPath).id", message: "id is required")
            }
            if let type = item["type"]?.stringValue, type != "function" {
                throw ChatRequestError(param: "\(callPath).type", message: "only function tool calls are supported")
            }
            guard let name = item["function"]?["name"]?.stringValue, !name.isEmpty else {
                throw ChatRequestError(param: "\(callPath).function.name", message: "function.name is required")
            }
            let argumentsText = item["function"]?["arguments"]?.stringValue ?? "{}"
            let arguments: JSONValue
            do {
                arguments = try JSONParser.parse(argumentsText)
            } catch {
                throw ChatRequestError(
                    param: "\(callPath).function.arguments", message: "arguments is not a JSON string: \(error)")
            }
            calls.append(ToolCall(id: id, name: name, arguments: arguments))
        }
        return calls
    }

    private static func parseStop(_ value: JSONValue) throws(ChatRequestError) -> [String] {
        switch value {
        case .null: return []
        case .string(let text):
            guard !text.isEmpty else {
                throw ChatRequestError(param: "stop", message: "stop sequences must not be empty")
            }
            return [text]
        case .array(let items):
            var stops: [String] = []
            for (index, item) in items.enumerated() {
                guard let text = item.stringValue, !text.isEmpty else {
                    throw .type("stop[\(index)]", "a non-empty string", item)
                }
                stops.append(text)
            }
            guard stops.count <= 4 else {
                throw ChatRequestError(param: "stop", message: "at most 4 stop sequences are allowed")
            }
            return stops
        default:
            throw .type("stop", "a string or an array of strings", value)
        }
    }

    private static func parseTools(_ value: JSONValue) throws(ChatRequestError) -> [Tool] {
        if value.isNull { return [] }
        guard let items = value.arrayValue else { throw .type("tools", "an array", value) }
        var tools: [Tool] = []
        for (index, item) in items.enumerated() {
            let path = "tools[\(index)]"
            guard item["type"]?.stringValue == "function" else {
                throw ChatRequestError(param: "\(path).type", message: "only function tools are supported")
            }
            guard let function = item["function"], let name = function["name"]?.stringValue, !name.isEmpty else {
                throw ChatRequestError(param: "\(path).function.name", message: "function.name is required")
            }
            let parameters = function["parameters"] ?? .object(["type": .string("object"), "properties": .object([])])
            guard parameters.members != nil else { throw .type("\(path).function.parameters", "an object", parameters) }
            if let strict = function["strict"], strict == .bool(true) {
                throw ChatRequestError(
                    param: "\(path).function.strict", message: "strict function calling is not supported")
            }
            tools.append(Tool(name: name, description: function["description"]?.stringValue, parameters: parameters))
        }
        return tools
    }

    private static func parseToolChoice(_ value: JSONValue) throws(ChatRequestError) -> ToolChoice? {
        switch value {
        case .null: return nil
        case .string("auto"): return .auto
        case .string("none"): return ToolChoice.none
        case .string("required"): return .required
        case .object:
            guard value["type"]?.stringValue == "function", let name = value["function"]?["name"]?.stringValue else {
                throw ChatRequestError(
                    param: "tool_choice", message: "expected {\"type\":\"function\",\"function\":{\"name\":…}}")
            }
            return .function(name)
        default:
            throw .type("tool_choice", "auto, none, required or a function choice", value)
        }
    }
}

/// A client request that cannot be translated: 400 with OpenAI's error shape, naming the field.
public struct ChatRequestError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The offending field's path, such as `messages[1].content`.
    public var param: String?
    /// What is wrong, for the client.
    public var message: String

    public init(param: String?, message: String) {
        self.param = param
        self.message = message
    }

    public var description: String { param.map { "\($0): \(message)" } ?? message }

    static func type(_ param: String, _ expected: String, _ found: JSONValue) -> ChatRequestError {
        let what = if case .number(let text) = found { text } else { found.kindDescription }
        return ChatRequestError(param: param, message: "expected \(expected), found \(what)")
    }

    /// `{"error":{"message","type":"invalid_request_error","param","code"}}`.
    public var body: JSONValue {
        .object([
            "error": .object([
                "message": .string(description),
                "type": .string("invalid_request_error"),
                "param": param.map { .string($0) } ?? .null,
                "code": .null,
            ])
        ])
    }
}
