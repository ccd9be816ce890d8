import Bedrock
import BudgetJSON
import Testing

@Suite("OpenAI chat ⇄ Bedrock Converse")
struct TranslationTests {
    func request(_ json: String) throws -> ChatCompletionRequest {
        try ChatCompletionRequest.parse(Array(json.utf8))
    }

    func refusal(_ json: String) -> ChatRequestError? {
        do {
            _ = try request(json)
            return nil
        } catch let error as ChatRequestError {
            return error
        } catch {
            return nil
        }
    }

    @Test("the seed's request becomes a Converse body with the effective max tokens")
    func seedRequest() throws {
        let chat = try request(#"{"messages":[{"role":"user","content":"Hello"}]}"#)
        let body = ConverseTranslator.converseBody(chat, maxTokens: 4096)
        #expect(
            body.serialized
                == #"{"messages":[{"role":"user","content":[{"text":"Hello"}]}],"inferenceConfig":{"maxTokens":4096}}"#)
        #expect(chat.estimatedPromptTokens == 2)
        #expect(!chat.stream)
    }

    @Test("system messages, text parts, parameters and stop sequences map as Kong maps them")
    func fullMapping() throws {
        let chat = try request(
            """
            {"model":"m","messages":[
              {"role":"system","content":"be brief"},
              {"role":"user","content":[{"type":"text","text":"Hi"},{"type":"text","text":"there"}]},
              {"role":"assistant","content":"Hello"},
              {"role":"user","content":"Bye"}],
             "max_tokens":100,"temperature":0.5,"top_p":0.9,"stop":"END","stream":true,
             "stream_options":{"include_usage":true},"user":"u-1"}
            """)
        #expect(chat.includeUsage && chat.stream && chat.model == "m")
        let body = ConverseTranslator.converseBody(chat, maxTokens: 100)
        #expect(body["system"]?.serialized == #"[{"text":"be brief"}]"#)
        #expect(
            body["messages"]?.serialized == #"[{"role":"user","content":[{"text":"Hi"},{"text":"there"}]},"#
                + #"{"role":"assistant","content":[{"text":"Hello"}]},{"role":"user","content":[{"text":"Bye"}]}]"#)
        #expect(
            body["inferenceConfig"]?.serialized
                == #"{"maxTokens":100,"temperature":0.5,"topP":0.9,"stopSequences":["END"]}"#)
    }

    @Test("configured overrides win over the client's settings; top_k goes to additionalModelRequestFields")
    func overrides() throws {
        let chat = try request(#"{"messages":[{"role":"user","content":"Hi"}],"temperature":0.9}"#)
        let body = ConverseTranslator.converseBody(
            chat, maxTokens: 256, overrides: ModelOverrides(temperature: 0.1, topK: 40))
        #expect(body["inferenceConfig"]?.serialized == #"{"maxTokens":256,"temperature":0.1}"#)
        #expect(body["additionalModelRequestFields"]?.serialized == #"{"top_k":40}"#)
    }

    @Test("tools, tool calls and tool results map to toolConfig, toolUse and toolResult")
    func tools() throws {
        let chat = try request(
            """
            {"messages":[
              {"role":"user","content":"Weather?"},
              {"role":"assistant","content":null,"tool_calls":[{"id":"t1","type":"function","function":{"name":"get","arguments":"{\\"city\\":\\"Oslo\\"}"}}]},
              {"role":"tool","tool_call_id":"t1","content":"cold"}],
             "tools":[{"type":"function","function":{"name":"get","description":"weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}],
             "tool_choice":"required"}
            """)
        let body = ConverseTranslator.converseBody(chat, maxTokens: 50)
        #expect(
            body["messages"]?.serialized == #"[{"role":"user","content":[{"text":"Weather?"}]},"#
                + #"{"role":"assistant","content":[{"toolUse":{"toolUseId":"t1","name":"get","input":{"city":"Oslo"}}}]},"#
                + #"{"role":"user","content":[{"toolResult":{"toolUseId":"t1","content":[{"text":"cold"}]}}]}]"#)
        #expect(
            body["toolConfig"]?.serialized
                == #"{"tools":[{"toolSpec":{"name":"get","description":"weather","inputSchema":"#
                + #"{"json":{"type":"object","properties":{"city":{"type":"string"}}}}}}],"toolChoice":{"any":{}}}"#)
    }

    @Test(
        "what cannot be mapped is a 400 naming the field",
        arguments: [
            (#"{"messages":[{"role":"user","content":"x"}],"presence_penalty":0.5}"#, "presence_penalty"),
            (#"{"messages":[{"role":"user","content":"x"}],"n":2}"#, "n"),
            (#"{"messages":[{"role":"user","content":"x"}],"bogus":1}"#, "bogus"),
            (#"{"messages":5}"#, "messages"),
            (#"{"messages":[]}"#, "messages"),
            (
                #"{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}"#,
                "messages[0].content[0].type"
            ),
            (#"{"messages":[{"role":"wizard","content":"x"}]}"#, "messages[0].role"),
            (#"{"messages":[{"role":"user","content":"x"}],"temperature":1.5}"#, "temperature"),
            (#"{"messages":[{"role":"user","content":"x"}],"max_tokens":0}"#, "max_tokens"),
            (#"{"messages":[{"role":"tool","content":"x"}]}"#, "messages[0].tool_call_id"),
            (
                #"{"messages":[{"role":"user","content":"x"}],"stream_options":{"include_usage":true}}"#,
                "stream_options"
            ),
        ])
    func refusals(json: String, param: String) {
        let error = refusal(json)
        #expect(error?.param == param, "\(json)")
        #expect(error?.body["error"]?["type"]?.stringValue == "invalid_request_error")
    }

    @Test("malformed JSON is a 400 with the byte offset")
    func malformedJSON() {
        #expect(
            refusal(#"{"messages": [}"#)?.message.hasPrefix("request body is not valid JSON: invalid JSON at byte 14")
                == true)
    }

    @Test("completion ids: chatcmpl- and 24 base-36 digits, none repeated in 100,000")
    func completionIDs() {
        var seen = Set<String>()
        for _ in 0..<100_000 {
            let id = ChatCompletionRenderer.newID()
            #expect(id.utf8.count == 33 && id.hasPrefix("chatcmpl-"))
            #expect(id.utf8.dropFirst(9).allSatisfy { (48...57).contains($0) || (97...122).contains($0) })
            seen.insert(id)
        }
        #expect(seen.count == 100_000)
    }

    @Test(
        "a Converse reply becomes a chat.completion with mapped finish reasons",
        arguments: [
            ("end_turn", "stop"), ("max_tokens", "length"), ("stop_sequence", "stop"), ("tool_use", "tool_calls"),
            ("content_filtered", "content_filter"),
        ])
    func response(stopReason: String, finishReason: String) throws {
        let body =
            #"{"output":{"message":{"role":"assistant","content":[{"text":"Hello!"}]}},"stopReason":""# + stopReason
            + #"","usage":{"inputTokens":12,"outputTokens":3,"totalTokens":15},"metrics":{"latencyMs":321}}"#
        let converse = try ConverseResponse.parse(Array(body.utf8))
        let completion = ChatCompletionRenderer.completion(
            converse, id: "chatcmpl-1", created: 1700000000, model: "anthropic.claude-3-haiku-20240307-v1:0")
        #expect(
            completion.serialized == #"{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"#
                + #""model":"anthropic.claude-3-haiku-20240307-v1:0","choices":[{"index":0,"message":{"role":"assistant","#
                + #""content":"Hello!"},"logprobs":null,"finish_reason":""# + finishReason + #""}],"#
                + #""usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}}"#)
        // The bytes the proxy writes are the tree's.
        #expect(
            ChatCompletionRenderer.completionBytes(
                converse, id: "chatcmpl-1", created: 1700000000, model: "anthropic.claude-3-haiku-20240307-v1:0")
                == completion.serializedBytes)
    }

    @Test(
        "a Converse body written straight to bytes is the tree's JSON: turns merged, system, options, tools",
        arguments: [
            #"{"messages":[{"role":"user","content":"Hello"}]}"#,
            #"{"messages":[{"role":"system","content":"be \"brief\""},{"role":"developer","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},{"role":"user","content":"one"},{"role":"user","content":[{"type":"text","text":"two"},{"type":"text","text":"three\n"}]},{"role":"assistant","content":""},{"role":"assistant","content":"ok é \u0001"},{"role":"user","content":"again"}],"temperature":0.5,"top_p":1,"stop":["x","y"]}"#,
            #"{"messages":[{"role":"assistant","content":"first"},{"role":"user","content":""}],"temperature":0.25}"#,
            #"{"messages":[{"role":"system","content":"only system"}]}"#,
            #"{"messages":[{"role":"user","content":"call"},{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},{"role":"tool","tool_call_id":"c1","content":"42"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}]}"#,
        ])
    func converseBodyBytes(body: String) throws {
        let chat = try ChatCompletionRequest.parse(Array(body.utf8))
        for overrides in [ModelOverrides(), ModelOverrides(temperature: 0.1, topP: 0.9, topK: 40)] {
            let written = ConverseTranslator.converseBodyBytes(chat, maxTokens: 321, overrides: overrides)
            #expect(
                written == ConverseTranslator.converseBody(chat, maxTokens: 321, overrides: overrides).serializedBytes,
                "\(String(decoding: written, as: UTF8.self))")
        }
    }

    @Test(
        "a completion written straight to bytes is the tree's JSON, whatever its text, tool calls or usage",
        arguments: [
            #"{"output":{"message":{"role":"assistant","content":[{"text":"line\n\"quoted\" \u0001 é"}]}},"stopReason":"weird_reason","usage":{"inputTokens":0,"outputTokens":0,"totalTokens":0}}"#,
            #"{"output":{"message":{"role":"assistant","content":[]}},"stopReason":"end_turn","usage":{"inputTokens":7,"outputTokens":0,"totalTokens":7}}"#,
            #"{"output":{"message":{"role":"assistant","content":[{"toolUse":{"toolUseId":"t1","name":"f","input":{"a":1}}}]}},"stopReason":"tool_use","usage":{"inputTokens":5,"outputTokens":9,"totalTokens":14}}"#,
        ])
    func completionBytes(body: String) throws {
        let converse = try ConverseResponse.parse(Array(body.utf8))
        let tree = ChatCompletionRenderer.completion(converse, id: "chatcmpl-\"x\"", created: 0, model: "m\u{7}")
        #expect(
            ChatCompletionRenderer.completionBytes(converse, id: "chatcmpl-\"x\"", created: 0, model: "m\u{7}")
                == tree.serializedBytes)
    }

    @Test("Bedrock errors keep their status in OpenAI's error shape")
    func errors() {
        let body = OpenAIErrorBody.fromBedrockReply(
            status: 429, errorTypeHeader: "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/",
            body: Array(#"{"message":"Too many requests, please wait before trying again."}"#.utf8))
        #expect(
            body.serialized == #"{"error":{"message":"Too many requests, please wait before trying again.","#
                + #""type":"rate_limit_error","code":"ThrottlingException"}}"#)
    }
}

@Suite("ConverseStream → OpenAI server-sent events")
struct StreamTranslationTests {
    func events(_ items: [(String, String)]) -> [EventStreamMessage] {
        items.map { EventStreamMessage.event($0.0, payload: Array($0.1.utf8)) }
    }

    let plainReply: [(String, String)] = [
        ("messageStart", #"{"role":"assistant"}"#),
        ("contentBlockDelta", #"{"delta":{"text":"Hel"},"contentBlockIndex":0}"#),
        ("contentBlockDelta", #"{"delta":{"text":"lo"},"contentBlockIndex":0}"#),
        ("contentBlockStop", #"{"contentBlockIndex":0}"#),
        ("messageStop", #"{"stopReason":"end_turn"}"#),
        ("metadata", #"{"usage":{"inputTokens":5,"outputTokens":2,"totalTokens":7},"metrics":{"latencyMs":10}}"#),
    ]

    func run(_ messages: [EventStreamMessage], includeUsage: Bool) -> (String, ChatStreamTranslator) {
        var translator = ChatStreamTranslator(id: "c1", created: 1, model: "m", includeUsage: includeUsage)
        var out: [UInt8] = []
        for message in messages { out += translator.translate(message) }
        return (String(decoding: out, as: UTF8.self), translator)
    }

    @Test("role first, text deltas, a finish chunk, a usage chunk when asked, then [DONE]")
    func plain() {
        let (text, translator) = run(events(plainReply), includeUsage: true)
        let prefix =
            #"data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":"#
        #expect(
            text == prefix + #"{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}"# + "\n\n"
                + prefix + #"{"content":"Hel"},"logprobs":null,"finish_reason":null}]}"# + "\n\n"
                + prefix + #"{"content":"lo"},"logprobs":null,"finish_reason":null}]}"# + "\n\n"
                + prefix + #"{},"logprobs":null,"finish_reason":"stop"}]}"# + "\n\n"
                + #"data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"#
                + #""usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"# + "\n\n"
                + "data: [DONE]\n\n")
        #expect(translator.usage == TokenUsage(inputTokens: 5, outputTokens: 2))
        #expect(translator.isFinished)
    }

    @Test("events that carry nothing for OpenAI clients are not read: an empty contentBlockStop, an unknown event")
    func ignoredEventsAreNotParsed() {
        var items = plainReply
        items[3] = ("contentBlockStop", "")
        items.insert(("someFutureEvent", "not JSON"), at: 3)
        let (text, translator) = run(events(items), includeUsage: false)
        #expect(text == run(events(plainReply), includeUsage: false).0)
        #expect(translator.error == nil && translator.isFinished)
        // An event that is read still has to be JSON.
        items[1] = ("contentBlockDelta", "")
        let (broken, failed) = run(events(items), includeUsage: false)
        #expect(failed.error?.type == "UpstreamFormatError" && broken.contains("UpstreamFormatError"))
    }

    @Test("without include_usage there is no usage chunk, but usage is still handed over for charging")
    func noUsageChunk() {
        let (text, translator) = run(events(plainReply), includeUsage: false)
        #expect(!text.contains("\"usage\""))
        #expect(text.hasSuffix("data: [DONE]\n\n"))
        #expect(translator.usage?.totalTokens == 7)
    }

    @Test("a mid-stream exception becomes an error event and ends the stream")
    func exception() {
        var messages = events(Array(plainReply.prefix(2)))
        messages.append(.exception("throttlingException", payload: Array(#"{"message":"Too many requests"}"#.utf8)))
        messages += events(Array(plainReply.suffix(2)))
        let (text, translator) = run(messages, includeUsage: true)
        #expect(
            text.hasSuffix(
                #"data: {"error":{"message":"Too many requests","type":"rate_limit_error","code":"throttlingException"}}"#
                    + "\n\n"))
        #expect(!text.contains("[DONE]"))
        #expect(translator.usage == nil)
        #expect(translator.estimatedCompletionTokens == 1)
        #expect(translator.error?.status == 429)
    }
}
