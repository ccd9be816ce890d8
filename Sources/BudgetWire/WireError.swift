
/// Typed errors, sent as an `error` frame with the request's id.
public enum WireErrorCode: String, Sendable, Codable, Hashable {
    case badFrame = "bad_frame"
    case unsupportedVersion = "unsupported_version"
    case badRequest = "bad_request"
    case forbidden
    /// The state moved since the plan was made, or another sync holds the lock.
    case conflict
    /// The result would not be a valid config.
    case invalidConfig = "invalid_config"
    case notFound = "not_found"
    case unavailable
    case `internal`
}

/// An `error` frame's payload: a typed code and a message for people.
public struct WireErrorBody: Error, Sendable, Codable, Hashable, CustomStringConvertible {
    public var code: WireErrorCode
    public var message: String

    public init(_ code: WireErrorCode, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
