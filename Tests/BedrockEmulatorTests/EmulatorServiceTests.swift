@testable import BedrockEmulator
import Bedrock
import BudgetJSON
import Testing

@Suite("The emulator's model and routing, without sockets")
struct EmulatorServiceTests {
    @Test("generated text has exactly the token count reported, at every size")
    func exactTokens() {
        for tokens in 1...600 {
            let text = ReplyGenerator.text(tokens: tokens, seed: UInt64(tokens), greeting: tokens % 7 == 0)
            #expect(TokenEstimate.tokens(text) == tokens, "\(tokens) tokens: \(text.utf8.count) bytes")
        }
    }

    @Test("reply length follows the ask")
    func lengths() {
        #expect(ReplyGenerator.reply(to: "Hello", maxTokens: 4096).outputTokens == 8)
        #expect(
            ReplyGenerator.reply(to: "Write a 2000 word essay about renewable energy.", maxTokens: 4096).outputTokens
                == 2666)
        #expect(ReplyGenerator.reply(to: "Write a 2,000-word essay", maxTokens: 100).stopReason == "max_tokens")
        let first = ReplyGenerator.reply(to: "Tell me about tides", maxTokens: 4096)
        #expect(first.text == ReplyGenerator.reply(to: "Tell me about tides", maxTokens: 4096).text)
    }

    func service(_ configure: (inout EmulatorConfiguration) -> Void = { _ in }) -> EmulatorService {
        var configuration = EmulatorConfiguration()
        configuration.verifySignatures = false
        configure(&configuration)
        return EmulatorService(configuration: configuration)
    }

    func post(_ path: String, _ body: String, headers: [(String, String)] = []) -> EmulatorRequest {
        EmulatorRequest(method: "POST", path: path, query: "", headers: headers, body: Array(body.utf8))
    }

    let now = AMZDate(epochSeconds: 1_780_000_000)
    let conversePath = "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"

    @Test("routes on the raw path and answers unknown ones as AWS does")
    func routing() {
        guard case .complete(let status, let headers, _) = service().respond(to: post("/foo", "{}"), now: now).response
        else {
            Issue.record("expected a complete response")
            return
        }
        #expect(status == 404)
        #expect(headers.contains { $0.0 == "x-amzn-ErrorType" && $0.1.hasPrefix("UnknownOperationException") })
    }

    @Test("faults from the header, the prompt marker and the default, with latency added up")
    func faults() {
        let body = #"{"messages":[{"role":"user","content":[{"text":"Hi [[emulator-fault:latency-20,error-500]]"}]}]}"#
        let (delay, response) = service().respond(
            to: post(conversePath, body, headers: [("X-Emulator-Fault", "latency-5")]), now: now)
        #expect(delay == 25)  // the header's and the marker's faults add up
        if case .complete(let status, _, _) = response { #expect(status == 500) } else { Issue.record("expected 500") }
        let (markerDelay, markerResponse) = service().respond(to: post(conversePath, body), now: now)
        #expect(markerDelay == 20)
        if case .complete(let status, _, _) = markerResponse {
            #expect(status == 500)
        } else {
            Issue.record("expected 500")
        }
        let throttled = service { $0.defaultFaults = [.throttle] }.respond(
            to: post(conversePath, #"{"messages":[{"role":"user","content":[{"text":"Hi"}]}]}"#), now: now)
        if case .complete(let status, _, _) = throttled.response {
            #expect(status == 429)
        } else {
            Issue.record("expected 429")
        }
        #expect(EmulatorFault.parse("latency-99999") == nil)
        #expect(EmulatorFault.parse("bogus") == nil)
    }

    @Test("a tool offered and named in the prompt is called, and its result answered with text")
    func toolUse() throws {
        let tools =
            #""toolConfig":{"tools":[{"toolSpec":{"name":"weather","inputSchema":{"json":{"type":"object"}}}}]}"#
        let ask = #"{"messages":[{"role":"user","content":[{"text":"What is the weather?"}]}],"# + tools + "}"
        guard case .complete(_, _, let body) = service().respond(to: post(conversePath, ask), now: now).response else {
            Issue.record("expected a response")
            return
        }
        let reply = try JSONParser.parse(body)
        #expect(reply["stopReason"]?.stringValue == "tool_use")
        #expect(
            reply["output"]?["message"]?["content"]?.arrayValue?.first?["toolUse"]?["name"]?.stringValue == "weather")
        let answer =
            #"{"messages":[{"role":"user","content":[{"text":"What is the weather?"}]},"#
            + #"{"role":"assistant","content":[{"toolUse":{"toolUseId":"t1","name":"weather","input":{}}}]},"#
            + #"{"role":"user","content":[{"toolResult":{"toolUseId":"t1","content":[{"text":"sunny"}]}}]}],"# + tools
            + "}"
        guard case .complete(_, _, let second) = service().respond(to: post(conversePath, answer), now: now).response
        else {
            Issue.record("expected a response")
            return
        }
        #expect(try JSONParser.parse(second)["stopReason"]?.stringValue == "end_turn")
    }

    @Test("InvokeModel takes Claude's tools and tool results, streams tool calls, and refuses extraneous keys")
    func invokeTools() throws {
        let invokePath = "/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke"
        let tools = #""tools":[{"name":"get_weather","input_schema":{"type":"object"}}],"tool_choice":{"type":"any"}"#
        let body =
            #"{"anthropic_version":"bedrock-2023-05-31","max_tokens":100,"system":[{"type":"text","text":"Be brief"}],"#
            + tools + #","messages":[{"role":"user","content":"Weather in Oslo?"}]}"#
        guard case .complete(200, _, let reply) = service().respond(to: post(invokePath, body), now: now).response
        else {
            Issue.record("expected a 200")
            return
        }
        let message = try JSONParser.parse(reply)
        #expect(message["stop_reason"]?.stringValue == "tool_use")
        #expect(message["content"]?.arrayValue?.first?["name"]?.stringValue == "get_weather")

        let streamPath = "/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke-with-response-stream"
        guard case .stream(200, _, let frames, _) = service().respond(to: post(streamPath, body), now: now).response
        else {
            Issue.record("expected a stream")
            return
        }
        var decoder = EventStreamDecoder()
        decoder.append(frames.joined())
        var types: [String] = []
        while let frame = try decoder.next() {
            if let (event, _) = ClaudeStreamUsage.chunkEvent(frame), let type = event["type"]?.stringValue {
                types.append(type + (event["delta"]?["type"]?.stringValue.map { ":" + $0 } ?? ""))
            }
        }
        #expect(
            types == [
                "message_start", "content_block_start", "content_block_delta:input_json_delta", "content_block_stop",
                "message_delta", "message_stop",
            ])

        let toolResult =
            #"{"anthropic_version":"bedrock-2023-05-31","max_tokens":100,"# + tools
            + #","messages":[{"role":"user","content":"Weather?"},"#
            + #"{"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"get_weather","input":{}}]},"#
            + #"{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":"Sunny"}]}]}"#
        guard
            case .complete(200, _, let second) = service().respond(to: post(invokePath, toolResult), now: now).response
        else {
            Issue.record("expected a 200 for a tool result")
            return
        }
        #expect(try JSONParser.parse(second)["stop_reason"]?.stringValue == "end_turn")

        let extraneous = #"{"anthropic_version":"bedrock-2023-05-31","max_tokens":10,"model":"m","messages":[]}"#
        guard
            case .complete(400, _, let refusal) = service().respond(to: post(invokePath, extraneous), now: now).response
        else {
            Issue.record("expected a 400")
            return
        }
        #expect(String(decoding: refusal, as: UTF8.self).contains("extraneous key [model] is not permitted"))
    }
}
