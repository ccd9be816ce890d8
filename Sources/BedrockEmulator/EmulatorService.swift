package import Bedrock
import BudgetJSON
import Foundation

/// One HTTP request as the emulator sees it: the raw path (still percent-encoded), the query, the headers
/// as received, and the body.
package struct EmulatorRequest: Sendable {
    package var method: String
    /// The path as received, still percent-encoded.
    package var path: String
    /// The query string without its `?`.
    package var query: String
    package var headers: [(String, String)]
    package var body: [UInt8]

    package init(method: String, path: String, query: String, headers: [(String, String)], body: [UInt8]) {
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
    }

    func header(_ name: String) -> String? {
        headers.first { $0.0.lowercased() == name }?.1
    }
}

/// What to send back.
package enum EmulatorResponse: Sendable {
    /// A whole response.
    case complete(status: Int, headers: [(String, String)], body: [UInt8])
    /// A chunked response of event-stream frames; `dropAfter` closes the connection after that many frames.
    case stream(status: Int, headers: [(String, String)], frames: [[UInt8]], dropAfter: Int?)
    /// Close the connection without a response.
    case drop
}

/// The emulator's behaviour without I/O: routing, SigV4, validation, faults and deterministic replies.
package struct EmulatorService: Sendable {
    /// How this instance behaves.
    package let configuration: EmulatorConfiguration
    private let verifier: SigV4Verifier

    /// A service that behaves as `configuration` says.
    package init(configuration: EmulatorConfiguration) {
        self.configuration = configuration
        verifier = SigV4Verifier(credentials: configuration.credentials, service: "bedrock")
    }

    enum Operation: String {
        case converse
        case converseStream = "converse-stream"
        case invoke
        case invokeStream = "invoke-with-response-stream"
    }

    /// The response to `request` at `now`, and how long to wait before sending it.
    package func respond(to request: EmulatorRequest, now: AMZDate) -> (
        delayMilliseconds: Int, response: EmulatorResponse
    ) {
        let segments = request.path.split(separator: "/", omittingEmptySubsequences: false)
        guard request.method == "POST", segments.count == 4, segments[0].isEmpty, segments[1] == "model",
            let operation = Operation(rawValue: String(segments[3]))
        else {
            return (0, error(AWSErrorResponse(status: 404, type: "UnknownOperationException", message: "")))
        }
        if configuration.verifySignatures {
            let result = verifier.verify(
                method: request.method, path: request.path, query: request.query,
                headers: request.headers, body: request.body, now: now)
            if case .failure(let failure) = result { return (0, error(failure)) }
        }
        guard request.body.count <= configuration.maxBodyBytes else {
            return (0, error(.validation("Input is too long for requested model.")))
        }
        let modelID = String(segments[2]).removingPercentEncoding ?? String(segments[2])
        guard configuration.models.contains(modelID) else {
            return (0, error(.validation("The provided model identifier is invalid.")))
        }
        let json: JSONValue
        do {
            json = try JSONParser.parse(request.body)
        } catch {
            return (
                0,
                self.error(
                    .validation(
                        "Malformed input request: \(error.description), please reformat your input and try again."))
            )
        }

        let parsed: Result<Conversation, AWSErrorResponse>
        switch operation {
        case .converse, .converseStream:
            parsed = Conversation.converse(json, modelMaxTokens: configuration.modelMaxTokens)
        case .invoke, .invokeStream: parsed = Conversation.anthropic(json, modelMaxTokens: configuration.modelMaxTokens)
        }
        let conversation: Conversation
        switch parsed {
        case .success(let value): conversation = value
        case .failure(let failure): return (0, error(failure))
        }

        var faults = request.header(EmulatorFault.headerName).flatMap(EmulatorFault.parse) ?? []
        faults += EmulatorFault.fromMarker(in: conversation.lastUserText)
        if faults.isEmpty { faults = configuration.defaultFaults }
        let delay = faults.reduce(0) { total, fault in
            if case .latency(let milliseconds) = fault { return total + milliseconds }
            return total
        }
        if faults.contains(.drop) { return (delay, .drop) }
        if faults.contains(.throttle) { return (delay, error(.throttling)) }
        if faults.contains(.internalError) { return (delay, error(.internalServer)) }
        if faults.contains(.unavailable) { return (delay, error(.serviceUnavailable)) }

        let reply = conversation.reply()
        let midStream: MidStreamFault? =
            faults.contains(.streamThrottle)
            ? .throttle
            : faults.contains(.dropMidStream) ? .drop : faults.contains(.corruptMidStream) ? .corrupt : nil
        switch operation {
        case .converse: return (delay, converse(conversation, reply))
        case .converseStream: return (delay, converseStream(reply, conversation: conversation, fault: midStream))
        case .invoke: return (delay, invoke(conversation, reply, modelID: modelID))
        case .invokeStream: return (delay, invokeStream(conversation, reply, fault: midStream))
        }
    }

    enum MidStreamFault { case throttle, drop, corrupt }

    /// `frame` with one byte of its payload changed, so that its message CRC no longer matches.
    static func corrupted(_ frame: [UInt8]) -> [UInt8] {
        var frame = frame
        frame[frame.count - 5] ^= 0x20  // the payload's last byte, just before the message CRC
        return frame
    }

    /// The frame that ends a stream with a `throttlingException`, as Bedrock sends it mid-stream.
    static let throttlingFrame = EventStreamEncoder.encode(
        .exception(
            "throttlingException",
            payload: JSONValue.object(["message": .string(AWSErrorResponse.throttling.message)]).serializedBytes))

    // MARK: - Responses

    private func requestID() -> String { UUID().uuidString.lowercased() }

    func error(_ failure: AWSErrorResponse) -> EmulatorResponse {
        .complete(
            status: failure.status,
            headers: [
                ("Content-Type", "application/json"), ("x-amzn-RequestId", requestID()),
                ("x-amzn-ErrorType", failure.errorTypeHeader),
            ], body: failure.body)
    }

    private func converse(_ conversation: Conversation, _ reply: Conversation.Reply) -> EmulatorResponse {
        var content: [JSONValue] = []
        if !reply.text.isEmpty { content.append(.object(["text": .string(reply.text)])) }
        if let tool = reply.toolUse {
            content.append(
                .object([
                    "toolUse": .object([
                        "toolUseId": .string(tool.id), "name": .string(tool.name), "input": tool.input,
                    ])
                ]))
        }
        let body = JSONValue.object([
            "output": .object(["message": .object(["role": .string("assistant"), "content": .array(content)])]),
            "stopReason": .string(reply.stopReason),
            "usage": usageJSON(reply),
            "metrics": .object(["latencyMs": .int(reply.latencyMilliseconds)]),
        ])
        return .complete(
            status: 200,
            headers: [
                ("Content-Type", "application/json"), ("x-amzn-RequestId", requestID()),
            ], body: body.serializedBytes)
    }

    private func usageJSON(_ reply: Conversation.Reply) -> JSONValue {
        .object([
            "inputTokens": .int(reply.inputTokens), "outputTokens": .int(reply.outputTokens),
            "totalTokens": .int(reply.inputTokens + reply.outputTokens),
        ])
    }

    private func converseStream(_ reply: Conversation.Reply, conversation: Conversation, fault: MidStreamFault?)
        -> EmulatorResponse
    {
        func event(_ type: String, _ payload: JSONValue) -> [UInt8] {
            EventStreamEncoder.encode(.event(type, payload: payload.serializedBytes))
        }
        var frames = [event("messageStart", .object(["role": .string("assistant")]))]
        let deltas = ReplyGenerator.deltas(of: reply.text)
        var dropAfter: Int?
        for (index, delta) in deltas.enumerated() {
            frames.append(
                event(
                    "contentBlockDelta",
                    .object([
                        "delta": .object(["text": .string(delta)]), "contentBlockIndex": .int(0),
                    ])))
            if index == 0, let fault {
                switch fault {
                case .throttle:
                    frames.append(Self.throttlingFrame)
                    return .stream(status: 200, headers: streamHeaders(), frames: frames, dropAfter: nil)
                case .drop:
                    dropAfter = frames.count
                case .corrupt:
                    frames.append(
                        Self.corrupted(
                            event(
                                "contentBlockDelta",
                                .object(["delta": .object(["text": .string(" mangled")]), "contentBlockIndex": .int(0)])
                            )))
                    return .stream(status: 200, headers: streamHeaders(), frames: frames, dropAfter: nil)
                }
            }
        }
        var blockIndex = deltas.isEmpty ? 0 : 1
        if !deltas.isEmpty { frames.append(event("contentBlockStop", .object(["contentBlockIndex": .int(0)]))) }
        if let tool = reply.toolUse {
            frames.append(
                event(
                    "contentBlockStart",
                    .object([
                        "start": .object([
                            "toolUse": .object(["toolUseId": .string(tool.id), "name": .string(tool.name)])
                        ]),
                        "contentBlockIndex": .int(blockIndex),
                    ])))
            frames.append(
                event(
                    "contentBlockDelta",
                    .object([
                        "delta": .object(["toolUse": .object(["input": .string(tool.input.serialized)])]),
                        "contentBlockIndex": .int(blockIndex),
                    ])))
            frames.append(event("contentBlockStop", .object(["contentBlockIndex": .int(blockIndex)])))
            blockIndex += 1
        }
        frames.append(event("messageStop", .object(["stopReason": .string(reply.stopReason)])))
        frames.append(
            event(
                "metadata",
                .object([
                    "usage": usageJSON(reply), "metrics": .object(["latencyMs": .int(reply.latencyMilliseconds)]),
                ])))
        return .stream(status: 200, headers: streamHeaders(), frames: frames, dropAfter: dropAfter)
    }

    private func streamHeaders(extra: [(String, String)] = []) -> [(String, String)] {
        [("Content-Type", "application/vnd.amazon.eventstream"), ("x-amzn-RequestId", requestID())] + extra
    }

    private func invoke(_ conversation: Conversation, _ reply: Conversation.Reply, modelID: String) -> EmulatorResponse
    {
        var content: [JSONValue] = []
        if !reply.text.isEmpty { content.append(.object(["type": .string("text"), "text": .string(reply.text)])) }
        if let tool = reply.toolUse {
            content.append(
                .object([
                    "type": .string("tool_use"), "id": .string(tool.id), "name": .string(tool.name),
                    "input": tool.input,
                ]))
        }
        let body = JSONValue.object([
            "id": .string("msg_bdrk_" + requestID().replacingOccurrences(of: "-", with: "").prefix(24)),
            "type": .string("message"), "role": .string("assistant"), "model": .string("claude-3-haiku-20240307"),
            "content": .array(content), "stop_reason": .string(reply.stopReason), "stop_sequence": .null,
            "usage": .object(["input_tokens": .int(reply.inputTokens), "output_tokens": .int(reply.outputTokens)]),
        ])
        return .complete(
            status: 200,
            headers: [
                ("Content-Type", "application/json"), ("x-amzn-RequestId", requestID()),
                ("X-Amzn-Bedrock-Invocation-Latency", String(reply.latencyMilliseconds)),
                ("X-Amzn-Bedrock-Output-Token-Count", String(reply.outputTokens)),
                ("X-Amzn-Bedrock-Input-Token-Count", String(reply.inputTokens)),
            ], body: body.serializedBytes)
    }

    private func invokeStream(_ conversation: Conversation, _ reply: Conversation.Reply, fault: MidStreamFault?)
        -> EmulatorResponse
    {
        func chunk(_ event: JSONValue) -> [UInt8] {
            let encoded = Data(event.serializedBytes).base64EncodedString()
            return EventStreamEncoder.encode(
                .event(
                    "chunk",
                    payload: JSONValue.object([
                        "bytes": .string(encoded), "p": .string("abcdefghijkl"),
                    ]).serializedBytes))
        }
        let messageID = "msg_bdrk_" + requestID().replacingOccurrences(of: "-", with: "").prefix(24)
        var frames = [
            chunk(
                .object([
                    "type": .string("message_start"),
                    "message": .object([
                        "id": .string(String(messageID)), "type": .string("message"), "role": .string("assistant"),
                        "model": .string("claude-3-haiku-20240307"), "content": .array([]), "stop_reason": .null,
                        "stop_sequence": .null,
                        "usage": .object(["input_tokens": .int(reply.inputTokens), "output_tokens": .int(1)]),
                    ]),
                ]))
        ]
        let deltas = ReplyGenerator.deltas(of: reply.text)
        if !deltas.isEmpty {
            frames.append(
                chunk(
                    .object([
                        "type": .string("content_block_start"), "index": .int(0),
                        "content_block": .object(["type": .string("text"), "text": .string("")]),
                    ])))
        }
        var dropAfter: Int?
        for (index, delta) in deltas.enumerated() {
            frames.append(
                chunk(
                    .object([
                        "type": .string("content_block_delta"), "index": .int(0),
                        "delta": .object(["type": .string("text_delta"), "text": .string(delta)]),
                    ])))
            if index == 0, let fault {
                switch fault {
                case .throttle:
                    frames.append(Self.throttlingFrame)
                    return .stream(
                        status: 200,
                        headers: streamHeaders(extra: [("X-Amzn-Bedrock-Content-Type", "application/json")]),
                        frames: frames, dropAfter: nil)
                case .drop:
                    dropAfter = frames.count
                case .corrupt:
                    frames.append(
                        Self.corrupted(
                            chunk(
                                .object([
                                    "type": .string("content_block_delta"), "index": .int(0),
                                    "delta": .object(["type": .string("text_delta"), "text": .string(" mangled")]),
                                ]))))
                    return .stream(
                        status: 200,
                        headers: streamHeaders(extra: [("X-Amzn-Bedrock-Content-Type", "application/json")]),
                        frames: frames, dropAfter: nil)
                }
            }
        }
        if !deltas.isEmpty { frames.append(chunk(.object(["type": .string("content_block_stop"), "index": .int(0)]))) }
        if let tool = reply.toolUse {
            // A tool call: its block, then its input as `input_json_delta` pieces, as Claude streams them.
            let index = deltas.isEmpty ? 0 : 1
            frames.append(
                chunk(
                    .object([
                        "type": .string("content_block_start"), "index": .int(index),
                        "content_block": .object([
                            "type": .string("tool_use"), "id": .string(tool.id), "name": .string(tool.name),
                            "input": .object([]),
                        ]),
                    ])))
            frames.append(
                chunk(
                    .object([
                        "type": .string("content_block_delta"), "index": .int(index),
                        "delta": .object([
                            "type": .string("input_json_delta"), "partial_json": .string(tool.input.serialized),
                        ]),
                    ])))
            frames.append(chunk(.object(["type": .string("content_block_stop"), "index": .int(index)])))
        }
        frames.append(
            chunk(
                .object([
                    "type": .string("message_delta"),
                    "delta": .object(["stop_reason": .string(reply.stopReason), "stop_sequence": .null]),
                    "usage": .object(["output_tokens": .int(reply.outputTokens)]),
                ])))
        frames.append(
            chunk(
                .object([
                    "type": .string("message_stop"),
                    "amazon-bedrock-invocationMetrics": .object([
                        "inputTokenCount": .int(reply.inputTokens), "outputTokenCount": .int(reply.outputTokens),
                        "invocationLatency": .int(reply.latencyMilliseconds),
                        "firstByteLatency": .int(reply.latencyMilliseconds / 2),
                    ]),
                ])))
        return .stream(
            status: 200, headers: streamHeaders(extra: [("X-Amzn-Bedrock-Content-Type", "application/json")]),
            frames: frames, dropAfter: dropAfter)
    }
}
