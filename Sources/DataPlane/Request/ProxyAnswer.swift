import Bedrock
import BudgetConfig
import BudgetJSON

/// An answer that ends a request before it reaches Bedrock or instead of Bedrock's: a stage throws it,
/// `ProxyService` writes it.
struct ProxyAnswer: Error {
    var status: Int
    var body: JSONValue
    var headers: [(String, String)] = []
    /// True when the body is already in the client's format (a format's own validation error, a Bedrock error
    /// passed through); otherwise it is in Kong's or OpenAI's shape and `rendered(for:)` rewrites it.
    var isRendered = false

    /// The client hung up before anything was answered: logged as 499, nothing is written.
    static let clientGone = ProxyAnswer(status: 499, body: .null)

    /// `{"message": text}`, Kong's shape for the gateway's own refusals.
    static func message(_ status: Int, _ text: String, headers: [(String, String)] = []) -> ProxyAnswer {
        ProxyAnswer(status: status, body: .object(["message": .string(text)]), headers: headers)
    }

    /// An OpenAI-style error body for a request the chat parser refused.
    static func badRequest(_ error: ChatRequestError) -> ProxyAnswer {
        ProxyAnswer(status: 400, body: error.body)
    }

    /// An OpenAI-style error body for an upstream failure.
    static func upstream(
        _ status: Int, errorType: String, message: String, headers: [(String, String)] = []
    ) -> ProxyAnswer {
        ProxyAnswer(
            status: status, body: OpenAIErrorBody.fromBedrock(status: status, errorType: errorType, message: message),
            headers: headers)
    }

    /// An answer whose body is already in the client's format.
    static func rendered(_ status: Int, body: JSONValue, headers: [(String, String)] = []) -> ProxyAnswer {
        ProxyAnswer(status: status, body: body, headers: headers, isRendered: true)
    }

    /// A Bedrock error, as Bedrock answers it: `x-amzn-ErrorType` and `{"message": …}`.
    static func bedrock(_ error: AWSErrorResponse, headers: [(String, String)] = []) -> ProxyAnswer {
        ProxyAnswer(
            status: error.status, body: .object(["message": .string(error.message)]),
            headers: [("x-amzn-ErrorType", error.errorTypeHeader)] + headers, isRendered: true)
    }

    /// The same answer in the error shape of `format`'s clients, so that their SDKs raise the matching
    /// exception (the Anthropic SDK's `RateLimitError` for a 429, boto3's `ThrottlingException`).
    func rendered(for format: AIProxyConfig.LLMFormat) -> ProxyAnswer {
        guard !isRendered else { return self }
        let text = body["message"]?.stringValue ?? body["error"]?["message"]?.stringValue ?? "HTTP \(status)"
        switch format {
        case .openai:
            return self
        case .anthropic:
            return .rendered(status, body: AnthropicErrorBody.body(status: status, message: text), headers: headers)
        case .bedrock:
            return .bedrock(
                AWSErrorResponse(status: status, type: Self.bedrockErrorName(status: status), message: text),
                headers: headers)
        }
    }

    /// The Bedrock exception name botocore maps a gateway status to.
    static func bedrockErrorName(status: Int) -> String {
        switch status {
        case 400, 413: return "ValidationException"
        case 401: return "UnrecognizedClientException"
        case 403: return "AccessDeniedException"
        case 404: return "ResourceNotFoundException"
        case 408, 504: return "ModelTimeoutException"
        case 429: return "ThrottlingException"
        case 503: return "ServiceUnavailableException"
        default: return "InternalServerException"
        }
    }
}
