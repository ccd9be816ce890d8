import Bedrock
import BudgetJSON

/// An answer that ends a request before it reaches Bedrock or instead of Bedrock's: a stage throws it,
/// `ProxyService` writes it.
struct ProxyAnswer: Error {
    var status: Int
    var body: JSONValue
    var headers: [(String, String)] = []

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
}
