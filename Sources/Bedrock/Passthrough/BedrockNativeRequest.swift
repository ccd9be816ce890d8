public import BudgetJSON

/// One of the four Bedrock Runtime operations the gateway passes through for `llm_format: bedrock`.
public enum BedrockOperation: String, Sendable, Hashable, CaseIterable {
    case converse
    case converseStream = "converse-stream"
    case invoke
    case invokeStream = "invoke-with-response-stream"

    /// Whether the reply is an event stream.
    public var isStream: Bool { self == .converseStream || self == .invokeStream }
    /// Whether the body is Converse's (else it is the model's own, Claude's Messages body).
    public var isConverse: Bool { self == .converse || self == .converseStream }
}

/// A request in Bedrock Runtime's own API (`/model/{modelId}/{operation}`), read for what the budget needs:
/// the prompt's size and the output limit (Converse's `inferenceConfig.maxTokens`, Claude's `max_tokens`),
/// which a hard budget may lower. Everything else goes to Bedrock as the client sent it.
public struct BedrockNativeRequest: Sendable, Hashable {
    public var operation: BedrockOperation
    /// The client's output limit, if it set one.
    public var maxTokens: Int?
    /// UTF-8 bytes of the prompt's text, for the prompt-token estimate.
    public var promptUTF8Count: Int
    private var json: JSONValue

    /// The prompt-token estimate: about one token per four bytes, as for OpenAI chat.
    public var estimatedPromptTokens: Int { TokenEstimate.tokens(utf8Count: promptUTF8Count) }

    /// The model id (percent-encoded, as in the path) and operation of a path that ends in
    /// `/model/{modelId}/{operation}`, or nil.
    public static func route(_ path: String) -> (encodedModelID: String, operation: BedrockOperation)? {
        // A model id is one segment: an ARN's slashes are percent-encoded in the path.
        let segments = path.split(separator: "/", omittingEmptySubsequences: false)
        guard segments.count >= 3, segments[segments.count - 3] == "model", !segments[segments.count - 2].isEmpty,
            let operation = BedrockOperation(rawValue: String(segments[segments.count - 1]))
        else { return nil }
        return (String(segments[segments.count - 2]), operation)
    }

    /// Reads a request body for `operation`; a body Bedrock would refuse for its shape is a
    /// `ValidationException` naming the field.
    public static func parse(_ json: JSONValue, operation: BedrockOperation) throws(AWSErrorResponse)
        -> BedrockNativeRequest
    {
        guard json.members != nil else {
            throw .validation("Malformed input request: expected a JSON object, found \(json.kindDescription).")
        }
        var count = 0
        var maxTokens: Int?
        if operation.isConverse {
            guard json["messages"]?.arrayValue != nil else {
                throw .validation("Malformed input request: messages: expected an array of messages.")
            }
            if let value = json["inferenceConfig"]?["maxTokens"] {
                guard let number = value.int, number >= 1 else {
                    throw .validation("inferenceConfig.maxTokens: expected an integer of at least 1.")
                }
                maxTokens = number
            }
            count += textBytes(json["system"]) + textBytes(json["messages"])
            count += json["toolConfig"]?["tools"]?.serialized.utf8.count ?? 0
        } else {
            if let value = json["max_tokens"] {
                guard let number = value.int, number >= 1 else {
                    throw .validation("Malformed input request: max_tokens: expected an integer of at least 1.")
                }
                maxTokens = number
            }
            count += textBytes(json["system"]) + textBytes(json["messages"]) + textBytes(json["prompt"])
            count += json["tools"]?.serialized.utf8.count ?? 0
        }
        return BedrockNativeRequest(operation: operation, maxTokens: maxTokens, promptUTF8Count: count, json: json)
    }

    /// The body with the output limit set to `maxTokens` (Converse: `inferenceConfig.maxTokens`; InvokeModel:
    /// `max_tokens`) and the members named in `removing` left out.
    public func body(maxTokens: Int, removing: [String] = []) -> JSONValue {
        guard case .object(var members) = json else { return json }
        members.removeAll { removing.contains($0.name) }
        func set(_ members: inout [JSONValue.Member], _ name: String, _ value: JSONValue) {
            if let index = members.firstIndex(where: { $0.name == name }) {
                members[index].value = value
            } else {
                members.append(.init(name, value))
            }
        }
        if operation.isConverse {
            var inference = members.first { $0.name == "inferenceConfig" }?.value.members ?? []
            set(&inference, "maxTokens", .int(maxTokens))
            set(&members, "inferenceConfig", .object(inference))
        } else {
            set(&members, "max_tokens", .int(maxTokens))
        }
        return .object(members)
    }

    /// UTF-8 bytes of the text in a Converse or Claude body part: strings, tool inputs and results; binary
    /// sources (images, documents) are left out.
    static func textBytes(_ value: JSONValue?) -> Int {
        guard let value else { return 0 }
        switch value {
        case .string(let text): return text.utf8.count
        case .array(let items): return items.reduce(0) { $0 + textBytes($1) }
        case .object(let members):
            return members.reduce(0) { total, member in
                switch member.name {
                case "type", "id", "toolUseId", "tool_use_id", "source", "bytes", "format", "cachePoint",
                    "cache_control", "role", "status":
                    return total
                // Structured parts (a tool's input, a tool result's `json`) count as their JSON text: a prompt
                // estimate below the real input would let a hard budget be overshot.
                case "input", "json": return total + member.value.serialized.utf8.count
                default: return total + textBytes(member.value)
                }
            }
        default: return 0
        }
    }
}
