public import BudgetJSON
import Synchronization

/// Bedrock Converse → OpenAI `chat.completion`, and the finish reasons both ways understand.
public enum ChatCompletionRenderer {
    /// Converse `stopReason` → OpenAI `finish_reason`.
    public static func finishReason(_ stopReason: String) -> String {
        switch stopReason {
        case "end_turn", "stop_sequence": return "stop"
        case "max_tokens", "model_context_window_exceeded": return "length"
        case "tool_use": return "tool_calls"
        case "content_filtered", "guardrail_intervened": return "content_filter"
        default: return stopReason
        }
    }

    /// The `chat.completion` object for a Converse reply; `model` is the configured model.
    public static func completion(_ response: ConverseResponse, id: String, created: Int, model: String) -> JSONValue {
        var message: [JSONValue.Member] = [
            .init("role", .string("assistant")),
            .init("content", response.text.isEmpty && !response.toolUses.isEmpty ? .null : .string(response.text)),
        ]
        if !response.toolUses.isEmpty {
            message.append(
                .init(
                    "tool_calls",
                    .array(
                        response.toolUses.map { use in
                            .object([
                                "id": .string(use.id), "type": .string("function"),
                                "function": .object([
                                    "name": .string(use.name), "arguments": .string(use.input.serialized),
                                ]),
                            ])
                        })))
        }
        return .object([
            "id": .string(id),
            "object": .string("chat.completion"),
            "created": .int(created),
            "model": .string(model),
            "choices": .array([
                .object([
                    "index": .int(0), "message": .object(message), "logprobs": .null,
                    "finish_reason": .string(finishReason(response.stopReason)),
                ])
            ]),
            "usage": usage(response.usage),
        ])
    }

    /// `completion(…).serializedBytes`, written straight to bytes when the reply has no tool calls (a plain
    /// chat answer, the proxy's usual one) rather than built as a tree first.
    public static func completionBytes(_ response: ConverseResponse, id: String, created: Int, model: String)
        -> [UInt8]
    {
        guard response.toolUses.isEmpty else {
            return completion(response, id: id, created: created, model: model).serializedBytes
        }
        var out: [UInt8] = []
        out.reserveCapacity(320 + id.utf8.count + model.utf8.count + response.text.utf8.count)
        out += #"{"id":"#.utf8
        JSONValue.writeString(id, into: &out)
        out += #","object":"chat.completion","created":"#.utf8
        out += String(created).utf8
        out += #","model":"#.utf8
        JSONValue.writeString(model, into: &out)
        out += #","choices":[{"index":0,"message":{"role":"assistant","content":"#.utf8
        JSONValue.writeString(response.text, into: &out)
        out += #"},"logprobs":null,"finish_reason":"#.utf8
        JSONValue.writeString(finishReason(response.stopReason), into: &out)
        out += #"}],"usage":{"prompt_tokens":"#.utf8
        out += String(response.usage.inputTokens).utf8
        out += #","completion_tokens":"#.utf8
        out += String(response.usage.outputTokens).utf8
        out += #","total_tokens":"#.utf8
        out += String(response.usage.totalTokens).utf8
        out += "}}".utf8
        return out
    }

    static func usage(_ usage: TokenUsage) -> JSONValue {
        .object([
            "prompt_tokens": .int(usage.inputTokens),
            "completion_tokens": .int(usage.outputTokens),
            "total_tokens": .int(usage.totalTokens),
        ])
    }

    /// A `chatcmpl-…` id: 24 base-36 digits, unique within the process and, from a random seed, across runs.
    public static func newID() -> String {
        let words = CompletionIDs.shared.next()
        let alphabet: StaticString = "0123456789abcdefghijklmnopqrstuvwxyz"
        return String(unsafeUninitializedCapacity: 33) { buffer in
            let prefix: StaticString = "chatcmpl-"
            prefix.withUTF8Buffer { prefix in
                for (index, byte) in prefix.enumerated() { buffer[index] = byte }
            }
            alphabet.withUTF8Buffer { alphabet in
                var (first, second) = words
                for index in 0..<12 {
                    buffer[9 + index] = alphabet[Int(first % 36)]
                    first /= 36
                    buffer[21 + index] = alphabet[Int(second % 36)]
                    second /= 36
                }
            }
            return 33
        }
    }
}

/// Bedrock errors → OpenAI's error shape, keeping the status.
public enum OpenAIErrorBody {
    /// `{"error":{"message","type","code"}}` for an upstream status and Bedrock error name.
    public static func fromBedrock(status: Int, errorType: String, message: String) -> JSONValue {
        .object([
            "error": .object([
                "message": .string(message),
                "type": .string(openAIType(status: status)),
                "code": .string(errorType),
            ])
        ])
    }

    /// The OpenAI error type for a status.
    public static func openAIType(status: Int) -> String {
        switch status {
        case 400, 413, 422: return "invalid_request_error"
        case 401: return "authentication_error"
        case 403: return "permission_error"
        case 404: return "not_found_error"
        case 408, 504: return "timeout_error"
        case 429: return "rate_limit_error"
        default: return status >= 500 ? "server_error" : "api_error"
        }
    }

    /// Reads a Bedrock error reply: the name from `x-amzn-ErrorType` (else the body's `__type`/`code`), the
    /// message from the body's `message`/`Message`.
    public static func fromBedrockReply(status: Int, errorTypeHeader: String?, body: [UInt8]) -> JSONValue {
        let json = try? JSONParser.parse(body)
        let name =
            errorTypeHeader.map(AWSErrorResponse.errorName(fromHeader:))
            ?? json?["__type"]?.stringValue.map(AWSErrorResponse.errorName(fromHeader:))
            ?? json?["code"]?.stringValue ?? "BedrockError"
        let message =
            json?["message"]?.stringValue ?? json?["Message"]?.stringValue
            ?? "Bedrock answered HTTP \(status)"
        return fromBedrock(status: status, errorType: name, message: message)
    }
}

/// The words behind completion ids: a counter mixed with a seed drawn once from the system's generator.
/// SplitMix64's finalizer is a bijection, so two calls never get the same first word; ids name answers and are not
/// secrets, and drawing two words from the system per answer (two getrandom calls) was 1.4% of the proxy's CPU.
final class CompletionIDs: Sendable {
    static let shared = CompletionIDs()

    private let seed: (UInt64, UInt64)
    private let counter = Atomic<UInt64>(0)

    private init() {
        var generator = SystemRandomNumberGenerator()
        seed = (generator.next(), generator.next())
    }

    func next() -> (UInt64, UInt64) {
        let count = counter.wrappingAdd(1, ordering: .relaxed).newValue
        return (Self.mix(seed.0 &+ count), Self.mix(seed.1 ^ (count &* 0x9E37_79B9_7F4A_7C15)))
    }

    /// SplitMix64's output function.
    private static func mix(_ value: UInt64) -> UInt64 {
        var z = value &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
