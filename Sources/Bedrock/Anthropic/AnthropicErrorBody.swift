public import BudgetJSON

/// Errors in the Anthropic API's shape, `{"type":"error","error":{"type":…,"message":…}}`, with the error
/// type the Anthropic SDKs map to their exception classes (`RateLimitError` for `rate_limit_error`, …).
public enum AnthropicErrorBody {
    /// The Anthropic error type for an HTTP status.
    public static func errorType(status: Int) -> String {
        switch status {
        case 400, 422: return "invalid_request_error"
        case 401: return "authentication_error"
        case 403: return "permission_error"
        case 404: return "not_found_error"
        case 413: return "request_too_large"
        case 429: return "rate_limit_error"
        case 503, 529: return "overloaded_error"
        case 504, 408: return "timeout_error"
        default: return "api_error"
        }
    }

    /// The error body for `status` and `message`.
    public static func body(status: Int, message: String) -> JSONValue {
        .object([
            "type": .string("error"),
            "error": .object(["type": .string(errorType(status: status)), "message": .string(message)]),
        ])
    }

    /// The error event of a stream that failed after it started, as the Anthropic API sends it.
    public static func event(status: Int, message: String) -> [UInt8] {
        var text = "event: error\ndata: "
        body(status: status, message: message).write(into: &text)
        text += "\n\n"
        return Array(text.utf8)
    }
}
