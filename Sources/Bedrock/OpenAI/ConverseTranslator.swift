public import BudgetJSON

/// Inference settings that the gateway's config imposes over the client's, as Kong's ai-proxy does.
public struct ModelOverrides: Sendable, Hashable {
    public var maxTokens: Int?
    public var temperature: Double?
    public var topP: Double?
    /// Converse's `additionalModelRequestFields.top_k`; OpenAI has no such field.
    public var topK: Int?

    public init(maxTokens: Int? = nil, temperature: Double? = nil, topP: Double? = nil, topK: Int? = nil) {
        self.maxTokens = maxTokens
        self.temperature = temperature
        self.topP = topP
        self.topK = topK
    }
}

/// OpenAI chat → Bedrock Converse, as Kong's ai-proxy maps it (`kong/llm/drivers/bedrock.lua`):
/// system (and developer) messages → `system[]`; user and assistant text → `content[{text}]`;
/// assistant `tool_calls` → `toolUse`; `tool` messages → a user turn of `toolResult`s;
/// `max_tokens` → `inferenceConfig.maxTokens`, `stop` → `stopSequences`, `temperature`, `top_p` → `topP`;
/// `tools` → `toolConfig`. Consecutive turns of one role are merged, since Converse needs them to alternate.
public enum ConverseTranslator {
    /// The Converse body for `request`. `maxTokens` is the effective limit the caller chose
    /// (config, else client, else model maximum); `overrides` win over the client's other settings.
    public static func converseBody(
        _ request: ChatCompletionRequest, maxTokens: Int, overrides: ModelOverrides = ModelOverrides()
    ) -> JSONValue {
        var system: [JSONValue] = []
        var turns: [(role: String, content: [JSONValue])] = []
        func add(_ role: String, _ blocks: [JSONValue]) {
            guard !blocks.isEmpty else { return }
            if let last = turns.last, last.role == role {
                turns[turns.count - 1].content += blocks
            } else {
                turns.append((role, blocks))
            }
        }
        for message in request.messages {
            switch message.role {
            case .system, .developer:
                system += message.text.map { .object(["text": .string($0)]) }
            case .user:
                add("user", message.text.map { .object(["text": .string($0)]) })
            case .assistant:
                var blocks: [JSONValue] = message.text.filter { !$0.isEmpty }.map { .object(["text": .string($0)]) }
                blocks += message.toolCalls.map { call in
                    .object([
                        "toolUse": .object([
                            "toolUseId": .string(call.id), "name": .string(call.name), "input": call.arguments,
                        ])
                    ])
                }
                add("assistant", blocks)
            case .tool:
                let result = JSONValue.object([
                    "toolResult": .object([
                        "toolUseId": .string(message.toolCallID ?? ""),
                        "content": .array(message.text.map { .object(["text": .string($0)]) }),
                    ])
                ])
                add("user", [result])
            }
        }

        var inference: [JSONValue.Member] = [JSONValue.Member("maxTokens", .int(maxTokens))]
        if let temperature = overrides.temperature ?? request.temperature {
            inference.append(.init("temperature", .double(temperature)))
        }
        if let topP = overrides.topP ?? request.topP { inference.append(.init("topP", .double(topP))) }
        if !request.stop.isEmpty { inference.append(.init("stopSequences", .array(request.stop.map { .string($0) }))) }

        var body: [JSONValue.Member] = [
            .init("messages", .array(turns.map { .object(["role": .string($0.role), "content": .array($0.content)]) }))
        ]
        if !system.isEmpty { body.append(.init("system", .array(system))) }
        body.append(.init("inferenceConfig", .object(inference)))
        if let toolConfig = toolConfig(request) { body.append(.init("toolConfig", toolConfig)) }
        if let topK = overrides.topK {
            body.append(.init("additionalModelRequestFields", .object(["top_k": .int(topK)])))
        }
        return .object(body)
    }

    /// `converseBody(…).serializedBytes`, written straight to bytes when the request has no tools and no tool
    /// messages (a plain chat, the proxy's usual request) rather than built as a tree first.
    public static func converseBodyBytes(
        _ request: ChatCompletionRequest, maxTokens: Int, overrides: ModelOverrides = ModelOverrides()
    ) -> [UInt8] {
        let plain =
            request.tools.isEmpty
            && request.messages.allSatisfy { $0.role != .tool && $0.toolCalls.isEmpty }
        guard plain else { return converseBody(request, maxTokens: maxTokens, overrides: overrides).serializedBytes }
        var out: [UInt8] = []
        out.reserveCapacity(160 + request.promptUTF8Count + request.messages.count * 40)
        // The turns: user and assistant text blocks, a role's consecutive messages merged into one turn, messages
        // without a block left out (as `converseBody` does).
        out += #"{"messages":["#.utf8
        var role: ChatCompletionRequest.Role?
        for message in request.messages where message.role == .user || message.role == .assistant {
            var first = true
            for text in message.text where message.role == .user || !text.isEmpty {
                if first && role != message.role {
                    if role != nil { out += "]},".utf8 }
                    out += #"{"role":"#.utf8
                    out += message.role == .user ? #""user""#.utf8 : #""assistant""#.utf8
                    out += #","content":["#.utf8
                    role = message.role
                } else {
                    out.append(UInt8(ascii: ","))
                }
                first = false
                out += #"{"text":"#.utf8
                JSONValue.writeString(text, into: &out)
                out.append(UInt8(ascii: "}"))
            }
        }
        if role != nil { out += "]}".utf8 }
        out.append(UInt8(ascii: "]"))
        var system = true
        for message in request.messages where message.role == .system || message.role == .developer {
            for text in message.text {
                out += system ? #","system":[{"text":"#.utf8 : #",{"text":"#.utf8
                system = false
                JSONValue.writeString(text, into: &out)
                out.append(UInt8(ascii: "}"))
            }
        }
        if !system { out.append(UInt8(ascii: "]")) }
        out += #","inferenceConfig":{"maxTokens":"#.utf8
        out += String(maxTokens).utf8
        if let temperature = overrides.temperature ?? request.temperature {
            out += #","temperature":"#.utf8
            JSONValue.double(temperature).write(into: &out)
        }
        if let topP = overrides.topP ?? request.topP {
            out += #","topP":"#.utf8
            JSONValue.double(topP).write(into: &out)
        }
        if !request.stop.isEmpty {
            out += #","stopSequences":"#.utf8
            JSONValue.array(request.stop.map { .string($0) }).write(into: &out)
        }
        out.append(UInt8(ascii: "}"))
        if let topK = overrides.topK {
            out += #","additionalModelRequestFields":{"top_k":"#.utf8
            out += String(topK).utf8
            out.append(UInt8(ascii: "}"))
        }
        out.append(UInt8(ascii: "}"))
        return out
    }

    private static func toolConfig(_ request: ChatCompletionRequest) -> JSONValue? {
        guard !request.tools.isEmpty, request.toolChoice != ChatCompletionRequest.ToolChoice.none else { return nil }
        let tools = request.tools.map { tool -> JSONValue in
            var spec: [JSONValue.Member] = [.init("name", .string(tool.name))]
            if let description = tool.description { spec.append(.init("description", .string(description))) }
            spec.append(.init("inputSchema", .object(["json": tool.parameters])))
            return .object(["toolSpec": .object(spec)])
        }
        var config: [JSONValue.Member] = [.init("tools", .array(tools))]
        switch request.toolChoice {
        case .required?: config.append(.init("toolChoice", .object(["any": .object([])])))
        case .function(let name)?:
            config.append(.init("toolChoice", .object(["tool": .object(["name": .string(name)])])))
        case .auto?: config.append(.init("toolChoice", .object(["auto": .object([])])))
        case .none?, nil: break
        }
        return .object(config)
    }
}
