import BudgetJSON

/// InvokeModelWithResponseStream frames → the Anthropic Messages API's server-sent events.
///
/// Each `chunk` frame's `bytes` is one Anthropic streaming event (`message_start`, `content_block_start`,
/// `content_block_delta`, `content_block_stop`, `message_delta`, `message_stop`); it is re-emitted as
/// `event: <type>\ndata: <the same JSON>\n\n`, and a `ping` follows `message_start`, as Anthropic's API
/// sends one. An exception frame becomes an `error` event and ends the stream. `usage` is what the caller
/// charges.
public struct AnthropicStreamTranslator: Sendable {
    /// What the events said about usage.
    public private(set) var tracker = ClaudeStreamUsage()
    /// True once `message_stop` or an error event has been produced.
    public private(set) var isFinished = false
    /// The error that ended the stream, if one did.
    public private(set) var error: AWSErrorResponse?

    public init() {}

    /// The usage Bedrock reported, once it has.
    public var usage: TokenUsage? { tracker.isComplete ? tracker.usage : nil }

    /// The SSE bytes for one event-stream message.
    public mutating func translate(_ message: EventStreamMessage) -> [UInt8] {
        guard !isFinished else { return [] }
        if let failure = ClaudeStreamUsage.streamError(message) { return fail(failure) }
        guard message.string(":event-type") == "chunk" else { return [] }
        guard let (event, bytes) = ClaudeStreamUsage.chunkEvent(message), let type = event["type"]?.stringValue
        else {
            return fail(
                AWSErrorResponse(
                    status: 502, type: "UpstreamFormatError",
                    message: "Bedrock sent a chunk that is not a base64 Anthropic event"))
        }
        tracker.observe(event)
        var out = Array("event: \(type)\ndata: ".utf8)
        // One SSE data line: Bedrock's JSON is compact, but a raw newline would end the line early.
        if bytes.contains(UInt8(ascii: "\n")) || bytes.contains(UInt8(ascii: "\r")) {
            out += event.serializedBytes
        } else {
            out += bytes
        }
        out += Array("\n\n".utf8)
        if type == "message_start" { out += Array("event: ping\ndata: {\"type\": \"ping\"}\n\n".utf8) }
        if type == "message_stop" { isFinished = true }
        return out
    }

    /// What to send when the upstream stream ends before `message_stop` (a dropped connection): an error event.
    public mutating func finishWithoutStop() -> [UInt8] {
        guard !isFinished else { return [] }
        return fail(
            AWSErrorResponse(
                status: 502, type: "IncompleteStream", message: "Bedrock's stream ended before message_stop"))
    }

    private mutating func fail(_ failure: AWSErrorResponse) -> [UInt8] {
        error = failure
        isFinished = true
        return AnthropicErrorBody.event(status: failure.status, message: failure.message)
    }
}
