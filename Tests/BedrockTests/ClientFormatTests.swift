@testable import Bedrock
import BudgetJSON
import Testing

@Suite("Anthropic Messages API and Bedrock passthrough")
struct ClientFormatTests {
    func json(_ text: String) throws -> JSONValue { try JSONParser.parse(text) }

    func chunk(_ event: String) -> EventStreamMessage {
        let payload = JSONValue.object(["bytes": .string(Base64.encode(Array(event.utf8))), "p": .string("abc")])
        return .event("chunk", payload: payload.serializedBytes)
    }

    @Test("a Messages body becomes Claude's InvokeModel body: model, stream and metadata out, version and limit in")
    func invokeBody() throws {
        let request = try AnthropicMessagesRequest.parse(
            json(
                #"{"model":"claude-3-haiku-20240307","max_tokens":500,"stream":true,"metadata":{"user_id":"u"},"#
                    + #""system":"be brief","messages":[{"role":"user","content":"Hi"}],"top_k":5,"#
                    + #""tools":[{"name":"t","input_schema":{"type":"object"}}],"tool_choice":{"type":"any"}}"#))
        #expect(request.stream && request.maxTokens == 500 && request.model == "claude-3-haiku-20240307")
        let body = request.invokeBody(maxTokens: 120, overrides: ModelOverrides(temperature: 0.2), betas: ["b1"])
        #expect(
            body.serialized
                == #"{"anthropic_version":"bedrock-2023-05-31","max_tokens":120,"system":"be brief","#
                + #""messages":[{"role":"user","content":"Hi"}],"top_k":5,"#
                + #""tools":[{"name":"t","input_schema":{"type":"object"}}],"tool_choice":{"type":"any"},"#
                + #""temperature":0.2,"anthropic_beta":["b1"]}"#)
        // "be brief" + "Hi" + the tool's JSON.
        #expect(request.promptUTF8Count == 8 + 2 + #"{"name":"t","input_schema":{"type":"object"}}"#.utf8.count)
    }

    @Test("bad Messages bodies are refused with the field's path, in Anthropic's error shape")
    func refusals() throws {
        let cases: [(String, String)] = [
            (#"{"max_tokens":1,"messages":[]}"#, "model"),
            (#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#, "max_tokens"),
            (#"{"model":"m","max_tokens":0,"messages":[{"role":"user","content":"x"}]}"#, "max_tokens"),
            (#"{"model":"m","max_tokens":1,"messages":[{"role":"system","content":"x"}]}"#, "messages.0.role"),
            (
                #"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"text":"x"}]}]}"#,
                "messages.0.content.0.type"
            ),
            (
                #"{"model":"m","max_tokens":1,"temperature":3,"messages":[{"role":"user","content":"x"}]}"#,
                "temperature"
            ),
            (
                #"{"model":"m","max_tokens":1,"system":[{"type":"image"}],"messages":[{"role":"user","content":"x"}]}"#,
                "system.0"
            ),
        ]
        for (text, path) in cases {
            #expect(throws: AnthropicRequestError.self) { try AnthropicMessagesRequest.parse(json(text)) }
            let value = try json(text)
            do throws(AnthropicRequestError) {
                _ = try AnthropicMessagesRequest.parse(value)
            } catch {
                #expect(error.path == path, "\(text)")
                #expect(error.body["type"]?.stringValue == "error")
                #expect(error.body["error"]?["type"]?.stringValue == "invalid_request_error")
            }
        }
        #expect(AnthropicErrorBody.errorType(status: 429) == "rate_limit_error")
        #expect(AnthropicErrorBody.errorType(status: 529) == "overloaded_error")
        #expect(AnthropicErrorBody.errorType(status: 413) == "request_too_large")
    }

    @Test("a Claude stream becomes Anthropic SSE events with a ping, and Bedrock's metrics are its usage")
    func streamTranslation() throws {
        var translator = AnthropicStreamTranslator()
        var out = ""
        for event in [
            #"{"type":"message_start","message":{"id":"m","usage":{"input_tokens":7,"output_tokens":1}}}"#,
            #"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            #"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello there"}}"#,
            #"{"type":"content_block_stop","index":0}"#,
            #"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":3}}"#,
            #"{"type":"message_stop","amazon-bedrock-invocationMetrics":{"inputTokenCount":8,"outputTokenCount":4}}"#,
        ] {
            #expect(translator.usage == nil)
            out += String(decoding: translator.translate(chunk(event)), as: UTF8.self)
        }
        #expect(translator.isFinished)
        #expect(translator.usage == TokenUsage(inputTokens: 8, outputTokens: 4))
        let names = out.split(separator: "\n").filter { $0.hasPrefix("event: ") }.map { $0.dropFirst(7) }
        #expect(
            names == [
                "message_start", "ping", "content_block_start", "content_block_delta", "content_block_stop",
                "message_delta", "message_stop",
            ])
        #expect(
            out.contains(
                #"data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello there"}}"#))
    }

    @Test("without invocation metrics the message events give the usage; an exception frame is an error event")
    func streamFallbacksAndErrors() throws {
        var usage = ClaudeStreamUsage()
        usage.observe(try json(#"{"type":"message_start","message":{"usage":{"input_tokens":5}}}"#))
        usage.observe(try json(#"{"type":"message_delta","usage":{"output_tokens":9}}"#))
        #expect(usage.usage == TokenUsage(inputTokens: 5, outputTokens: 9))

        var translator = AnthropicStreamTranslator()
        let frame = EventStreamMessage.exception(
            "throttlingException", payload: Array(#"{"message":"Too many requests"}"#.utf8))
        let out = String(decoding: translator.translate(frame), as: UTF8.self)
        #expect(out.hasPrefix("event: error\ndata: "))
        #expect(out.contains(#""type":"rate_limit_error","message":"Too many requests""#))
        #expect(translator.isFinished && translator.error?.status == 429)
    }

    @Test("native paths name the model and operation; the limit is read and rewritten in each body's place")
    func nativeRequests() throws {
        let route = BedrockNativeRequest.route("/ai/bedrock/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse")
        #expect(route?.encodedModelID == "anthropic.claude-3-haiku-20240307-v1%3A0" && route?.operation == .converse)
        #expect(
            BedrockNativeRequest.route("/ai/bedrock/model/m/invoke-with-response-stream")?.operation == .invokeStream)
        #expect(BedrockNativeRequest.route("/ai/bedrock/model/m/count-tokens") == nil)
        #expect(BedrockNativeRequest.route("/ai/bedrock/converse") == nil)

        let converse = try BedrockNativeRequest.parse(
            json(#"{"messages":[{"role":"user","content":[{"text":"Hello"}]}],"inferenceConfig":{"maxTokens":900}}"#),
            operation: .converse)
        #expect(converse.maxTokens == 900 && converse.promptUTF8Count == 5)
        // A tool result's json counts as its JSON text: numbers and keys are prompt tokens too (an estimate of
        // almost nothing let a hard budget be overshot by the whole real input).
        let result = #"{"rows":[1234567,2345678,3456789],"total":7037034}"#
        let withJSON = try BedrockNativeRequest.parse(
            json(
                #"{"messages":[{"role":"user","content":[{"toolResult":{"toolUseId":"t1","content":[{"json":"#
                    + result + #"}]}}]}]}"#),
            operation: .converse)
        #expect(withJSON.promptUTF8Count >= result.utf8.count)
        #expect(
            converse.body(maxTokens: 50).serialized
                == #"{"messages":[{"role":"user","content":[{"text":"Hello"}]}],"inferenceConfig":{"maxTokens":50}}"#)
        let invoke = try BedrockNativeRequest.parse(
            json(
                #"{"anthropic_version":"bedrock-2023-05-31","max_tokens":10,"apikey":"k","messages":[{"role":"user","content":"Hi"}]}"#
            ),
            operation: .invoke)
        #expect(invoke.maxTokens == 10 && invoke.promptUTF8Count == 2)
        #expect(
            invoke.body(maxTokens: 7, removing: ["apikey"]).serialized
                == #"{"anthropic_version":"bedrock-2023-05-31","max_tokens":7,"messages":[{"role":"user","content":"Hi"}]}"#
        )
        #expect(throws: AWSErrorResponse.self) { try BedrockNativeRequest.parse(json("[]"), operation: .converse) }
        #expect(throws: AWSErrorResponse.self) {
            try BedrockNativeRequest.parse(
                json(#"{"messages":[],"inferenceConfig":{"maxTokens":0}}"#), operation: .converse)
        }
    }

    @Test("passthrough streams yield Converse's metadata usage and the Claude chunks' metrics")
    func passthroughUsage() throws {
        var converse = BedrockStreamUsage(operation: .converseStream)
        converse.observe(
            .event("contentBlockDelta", payload: Array(#"{"delta":{"text":"Hello"},"contentBlockIndex":0}"#.utf8)))
        #expect(converse.usage == nil && converse.estimatedCompletionTokens == 2 && !converse.isFinished)
        converse.observe(
            .event("metadata", payload: Array(#"{"usage":{"inputTokens":3,"outputTokens":4,"totalTokens":7}}"#.utf8)))
        #expect(converse.usage == TokenUsage(inputTokens: 3, outputTokens: 4) && converse.isFinished)

        var invoke = BedrockStreamUsage(operation: .invokeStream)
        invoke.observe(chunk(#"{"type":"message_start","message":{"usage":{"input_tokens":5}}}"#))
        invoke.observe(chunk(#"{"type":"message_delta","usage":{"output_tokens":6}}"#))
        #expect(invoke.usage == nil)
        invoke.observe(chunk(#"{"type":"message_stop"}"#))
        #expect(invoke.usage == TokenUsage(inputTokens: 5, outputTokens: 6) && invoke.isFinished)
        #expect(TokenUsage(inputHeader: "12", outputHeader: "3") == TokenUsage(inputTokens: 12, outputTokens: 3))
        #expect(TokenUsage(inputHeader: "x", outputHeader: "3") == nil)
    }

    @Test("base64 round-trips and refuses what is not base64")
    func base64() {
        for text in ["", "a", "ab", "abc", "abcd", "{\"type\":\"ping\"}"] {
            #expect(Base64.decode(Base64.encode(Array(text.utf8))) == Array(text.utf8))
        }
        #expect(Base64.encode(Array("ab".utf8)) == "YWI=")
        #expect(Base64.decode("YWI") == nil && Base64.decode("Y!I=") == nil && Base64.decode("YW==YWI=") == nil)
    }
}
