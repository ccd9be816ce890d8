import BudgetJSON

/// An error as Bedrock Runtime answers it: a status, the `x-amzn-ErrorType` name and a message body.
public struct AWSErrorResponse: Error, Sendable, Hashable, CustomStringConvertible {
    /// The HTTP status.
    public var status: Int
    /// The error name, e.g. `ThrottlingException`.
    public var type: String
    public var message: String

    public init(status: Int, type: String, message: String) {
        self.status = status
        self.type = type
        self.message = message
    }

    public var description: String { "\(status) \(type): \(message)" }

    /// The `x-amzn-ErrorType` header value, with the coral suffix the real service adds.
    public var errorTypeHeader: String {
        let namespace =
            [
                "InvalidSignatureException", "IncompleteSignatureException", "UnrecognizedClientException",
                "MissingAuthenticationTokenException", "SerializationException",
            ].contains(type)
            ? "com.amazon.coral.service" : "com.amazon.bedrock"
        return "\(type):http://internal.amazon.com/coral/\(namespace)/"
    }

    /// The JSON body: `{"message": …}`.
    public var body: [UInt8] { JSONValue.object(["message": .string(message)]).serializedBytes }

    static func incompleteSignature(_ message: String) -> AWSErrorResponse {
        AWSErrorResponse(status: 400, type: "IncompleteSignatureException", message: message)
    }

    static func invalidSignature(_ message: String) -> AWSErrorResponse {
        AWSErrorResponse(status: 403, type: "InvalidSignatureException", message: message)
    }

    /// 400 `ValidationException`: the request does not fit the API model.
    public static func validation(_ message: String) -> AWSErrorResponse {
        AWSErrorResponse(status: 400, type: "ValidationException", message: message)
    }

    /// 429 `ThrottlingException`, with Bedrock's own message.
    public static let throttling = AWSErrorResponse(
        status: 429, type: "ThrottlingException", message: "Too many requests, please wait before trying again.")
    /// 500 `InternalServerException`, with Bedrock's own message.
    public static let internalServer = AWSErrorResponse(
        status: 500, type: "InternalServerException",
        message: "The server encountered an internal error while processing the request.")
    /// 503 `ServiceUnavailableException`, with Bedrock's own message.
    public static let serviceUnavailable = AWSErrorResponse(
        status: 503, type: "ServiceUnavailableException",
        message: "The service is temporarily unavailable. Please try again later.")

    /// The error name without the `:http://…` suffix, as botocore cuts it from `x-amzn-ErrorType`.
    public static func errorName(fromHeader header: String) -> String {
        var name = Substring(header)
        if let colon = name.firstIndex(of: ":") { name = name[..<colon] }
        if let hash = name.firstIndex(of: "#") { name = name[..<hash] }
        return String(name)
    }
}
