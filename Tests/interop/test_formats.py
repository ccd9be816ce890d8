"""llm_format anthropic and bedrock end to end: the real Anthropic Python SDK and boto3's bedrock-runtime client
against the proxy (in front of the emulator), under the same budgets as OpenAI chat. Every test checks that the
tokens charged equal the usage the client was told."""

import json
import time

import anthropic
import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

from conftest import FIXTURE, Gateway, MODEL_ID

# Two more routes on the fixture's service: one per client format, with the same key-auth (plus the header the
# Anthropic SDK sends its key in) and the same Bedrock model.
FORMAT_ROUTES = """
  - name: signify-formats
    host: bedrock-runtime.us-east-1.amazonaws.com
    tags: [signify-demo]
    routes:
      - name: signify-ai-anthropic
        paths: [/ai/anthropic]
        methods: [POST]
        tags: [signify-demo]
        plugins:
          - name: key-auth
            tags: [signify-demo]
            config: {key_names: [apikey, x-api-key, authorization], hide_credentials: true}
          - name: ai-proxy
            tags: [signify-demo]
            config:
              route_type: llm/v1/chat
              llm_format: anthropic
              auth:
                aws_access_key_id: ${{ env "DECK_AWS_ACCESS_KEY_ID" }}
                aws_secret_access_key: ${{ env "DECK_AWS_SECRET_ACCESS_KEY" }}
              model: {provider: bedrock, name: anthropic.claude-3-haiku-20240307-v1:0, options: {bedrock: {aws_region: us-east-1}}}
      - name: signify-ai-bedrock
        paths: [/ai/bedrock]
        methods: [POST]
        tags: [signify-demo]
        plugins:
          - name: key-auth
            tags: [signify-demo]
            config: {key_names: [apikey]}
          - name: ai-proxy
            tags: [signify-demo]
            config:
              route_type: llm/v1/chat
              llm_format: bedrock
              auth:
                aws_access_key_id: ${{ env "DECK_AWS_ACCESS_KEY_ID" }}
                aws_secret_access_key: ${{ env "DECK_AWS_SECRET_ACCESS_KEY" }}
              model: {provider: bedrock, name: anthropic.claude-3-haiku-20240307-v1:0, options: {bedrock: {aws_region: us-east-1}}}
"""


def config_with_formats(fixture_text=None):
    text = fixture_text if fixture_text is not None else FIXTURE.read_text()
    head, sep, tail = text.partition("\nconsumer_groups:")
    assert sep, "the fixture's layout changed"
    return head.rstrip("\n") + "\n" + FORMAT_ROUTES + sep + tail


@pytest.fixture
def stack(binaries, tmp_path):
    gateway = Gateway(binaries, tmp_path, config_text=config_with_formats())
    try:
        yield gateway
    finally:
        gateway.stop()


def charged(stack, consumer, expected, timeout=5.0):
    """The consumer's usage once it reaches `expected` (commits are asynchronous), or what it is at the end."""
    deadline = time.monotonic() + timeout
    used = stack.usage(consumer)
    while used != expected and time.monotonic() < deadline:
        time.sleep(0.05)
        used = stack.usage(consumer)
    return used


def claude(stack, key="analytics-key"):
    return anthropic.Anthropic(base_url=stack.url + "/ai/anthropic", api_key=key, max_retries=0)


def bedrock(stack, key="analytics-key"):
    # Credentials the gateway has never heard of: its own signature is dropped and the request signed again.
    client = boto3.client("bedrock-runtime", region_name="us-east-1", endpoint_url=stack.url + "/ai/bedrock",
                          aws_access_key_id="AKIDCLIENTONLY", aws_secret_access_key="not-the-gateways-secret",
                          config=Config(retries={"total_max_attempts": 1}))

    def add_key(request, **_):
        request.headers["apikey"] = key

    client.meta.events.register("before-send.bedrock-runtime.*", add_key)
    return client


# MARK: - Anthropic Messages API

def test_anthropic_sdk_plain_message_is_charged_its_usage(stack):
    message = claude(stack).messages.create(
        model="claude-3-haiku-20240307", max_tokens=200, system="Be brief.", extra_body={"temperature": 0.5, "top_k": 40},
        stop_sequences=["\n\nHuman:"], metadata={"user_id": "u-1"},
        messages=[{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi!"},
                  {"role": "user", "content": [{"type": "text", "text": "Write a 30 word note"}]}])
    assert message.type == "message" and message.role == "assistant" and message.stop_reason == "end_turn"
    assert message.content[0].type == "text" and len(message.content[0].text) > 100
    assert message.usage.output_tokens == 40
    total = message.usage.input_tokens + message.usage.output_tokens
    assert charged(stack, "signify-analytics", total) == total


def test_anthropic_sdk_raw_response_carries_budget_headers_and_bedrock_id_is_accepted(stack):
    raw = claude(stack).messages.with_raw_response.create(
        model=MODEL_ID, max_tokens=50, messages=[{"role": "user", "content": "Hello"}])
    assert raw.headers["x-ai-ratelimit-limit-day-bedrock"] == "50000"
    assert raw.headers["x-kong-llm-model"] == f"bedrock/{MODEL_ID}"
    message = raw.parse()
    total = message.usage.input_tokens + message.usage.output_tokens
    assert charged(stack, "signify-analytics", total) == total


def test_anthropic_sdk_stream_yields_every_event_and_is_charged_its_usage(stack):
    kinds = []
    with claude(stack).messages.stream(
            model="claude-3-haiku-20240307", max_tokens=300,
            messages=[{"role": "user", "content": "Write a 60 word note about wind"}]) as stream:
        for event in stream:
            kinds.append(event.type)
        final = stream.get_final_message()
        text = stream.get_final_text()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    for kind in ("content_block_start", "content_block_delta", "content_block_stop", "message_delta"):
        assert kind in kinds
    assert final.stop_reason == "end_turn" and len(text) > 200
    assert final.usage.output_tokens == 80
    total = final.usage.input_tokens + final.usage.output_tokens
    assert charged(stack, "signify-analytics", total) == total


def test_anthropic_sdk_stream_sends_ping_and_sse_event_names(stack):
    import http.client
    connection = http.client.HTTPConnection(stack.url.removeprefix("http://"), timeout=30)
    body = {"model": "claude-3-haiku-20240307", "max_tokens": 20, "stream": True,
            "messages": [{"role": "user", "content": "Hello"}]}
    connection.request("POST", "/ai/anthropic/v1/messages", body=json.dumps(body),
                       headers={"x-api-key": "production-key", "anthropic-version": "2023-06-01",
                                "content-type": "application/json"})
    response = connection.getresponse()
    assert response.status == 200 and response.getheader("content-type") == "text/event-stream"
    text = response.read().decode()
    names = [line[7:] for line in text.split("\n") if line.startswith("event: ")]
    assert names[:2] == ["message_start", "ping"] and names[-1] == "message_stop"
    datas = [json.loads(line[6:]) for line in text.split("\n") if line.startswith("data: ")]
    assert [d["type"] for d in datas] == names
    usage = datas[0]["message"]["usage"]["input_tokens"] + [d for d in datas if d["type"] == "message_delta"][0]["usage"]["output_tokens"]
    assert charged(stack, "signify-production", usage) == usage


def test_anthropic_sdk_tools_round_trip(stack):
    client = claude(stack)
    tools = [{"name": "get_weather", "description": "Weather for a city",
              "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}}}]
    first = client.messages.create(
        model="claude-3-haiku-20240307", max_tokens=200, tools=tools, tool_choice={"type": "any"},
        messages=[{"role": "user", "content": "What is the weather in Paris?"}])
    assert first.stop_reason == "tool_use"
    use = first.content[0]
    assert use.type == "tool_use" and use.name == "get_weather" and use.input["query"].startswith("What is")
    second = client.messages.create(
        model="claude-3-haiku-20240307", max_tokens=200, tools=tools,
        messages=[{"role": "user", "content": "What is the weather in Paris?"},
                  {"role": "assistant", "content": [block.model_dump() for block in first.content]},
                  {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "Sunny, 21 C"}]}])
    assert second.stop_reason == "end_turn" and second.content[0].type == "text"
    with client.messages.stream(model="claude-3-haiku-20240307", max_tokens=200, tools=tools,
                                tool_choice={"type": "tool", "name": "get_weather"},
                                messages=[{"role": "user", "content": "Weather in Oslo"}]) as stream:
        streamed = stream.get_final_message()
    assert streamed.stop_reason == "tool_use" and streamed.content[-1].input == {"query": "Weather in Oslo"}
    total = sum(m.usage.input_tokens + m.usage.output_tokens for m in (first, second, streamed))
    assert charged(stack, "signify-analytics", total) == total


def test_anthropic_sdk_errors_map_to_its_exception_classes(stack):
    with pytest.raises(anthropic.AuthenticationError) as caught:
        claude(stack, key="wrong-key").messages.create(
            model="claude-3-haiku-20240307", max_tokens=10, messages=[{"role": "user", "content": "Hello"}])
    assert caught.value.body == {"type": "error", "error": {"type": "authentication_error", "message": "Unauthorized"}}
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude(stack).messages.create(model="gpt-4o", max_tokens=10, messages=[{"role": "user", "content": "Hello"}])
    assert caught.value.body["error"]["type"] == "invalid_request_error"
    assert "model: cannot use own model" in caught.value.body["error"]["message"]
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude(stack).messages.create(model="claude-3-haiku-20240307", max_tokens=0,
                                      messages=[{"role": "user", "content": "Hello"}])
    assert caught.value.body["error"]["message"].startswith("max_tokens:")
    with pytest.raises(anthropic.RateLimitError):  # Bedrock's own throttling, in Anthropic's shape
        claude(stack).messages.create(model="claude-3-haiku-20240307", max_tokens=10,
                                      messages=[{"role": "user", "content": "Hello [[emulator-fault:throttle]]"}])
    with pytest.raises(anthropic.InternalServerError):
        claude(stack).messages.create(model="claude-3-haiku-20240307", max_tokens=10,
                                      messages=[{"role": "user", "content": "Hello [[emulator-fault:error-500]]"}])
    assert stack.usage("signify-analytics") == 0


def test_anthropic_sdk_over_budget_raises_rate_limit_error_with_retry_after(stack):
    client = claude(stack, key="dev-team-key")
    spent = 0
    with pytest.raises(anthropic.RateLimitError) as caught:
        for _ in range(10):
            message = client.messages.create(model="claude-3-haiku-20240307", max_tokens=4096,
                                             messages=[{"role": "user", "content": "Write a 2000 word essay"}])
            spent += message.usage.input_tokens + message.usage.output_tokens
    error = caught.value
    assert error.status_code == 429
    assert error.body == {"type": "error", "error": {"type": "rate_limit_error", "message": "API rate limit exceeded"}}
    assert int(error.response.headers["retry-after"]) > 0
    assert error.response.headers["x-ai-ratelimit-remaining-day-bedrock"] == "0"
    assert charged(stack, "signify-dev-team", spent) == spent >= 10000


# MARK: - Bedrock's own API

def test_boto3_converse_and_invoke_model_are_charged_their_usage(stack):
    client = bedrock(stack)
    reply = client.converse(modelId=MODEL_ID, messages=[{"role": "user", "content": [{"text": "Hello"}]}],
                            inferenceConfig={"maxTokens": 100})
    assert reply["stopReason"] == "end_turn" and reply["output"]["message"]["content"][0]["text"].startswith("Hello!")
    headers = reply["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-ai-ratelimit-limit-day-bedrock"] == "50000"
    total = reply["usage"]["totalTokens"]
    assert charged(stack, "signify-analytics", total) == total

    body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 100,
            "messages": [{"role": "user", "content": "Write a 30 word note"}]}
    out = client.invoke_model(modelId=MODEL_ID, body=json.dumps(body))
    message = json.loads(out["body"].read())
    headers = out["ResponseMetadata"]["HTTPHeaders"]
    counted = int(headers["x-amzn-bedrock-input-token-count"]) + int(headers["x-amzn-bedrock-output-token-count"])
    assert counted == message["usage"]["input_tokens"] + message["usage"]["output_tokens"]
    assert out["contentType"] == "application/json"
    assert charged(stack, "signify-analytics", total + counted) == total + counted


def test_boto3_streams_pass_through_and_are_charged_their_usage(stack):
    client = bedrock(stack, key="production-key")
    events = list(client.converse_stream(
        modelId=MODEL_ID, messages=[{"role": "user", "content": [{"text": "Write a 60 word note"}]}])["stream"])
    kinds = [next(iter(e)) for e in events]
    assert kinds[0] == "messageStart" and kinds[-2:] == ["messageStop", "metadata"]
    total = events[-1]["metadata"]["usage"]["totalTokens"]
    assert charged(stack, "signify-production", total) == total

    body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 200,
            "messages": [{"role": "user", "content": "Write a 40 word note"}]}
    out = client.invoke_model_with_response_stream(modelId=MODEL_ID, body=json.dumps(body))
    chunks = [json.loads(e["chunk"]["bytes"]) for e in out["body"]]
    assert chunks[0]["type"] == "message_start" and chunks[-1]["type"] == "message_stop"
    metrics = chunks[-1]["amazon-bedrock-invocationMetrics"]
    streamed = metrics["inputTokenCount"] + metrics["outputTokenCount"]
    assert charged(stack, "signify-production", total + streamed) == total + streamed
    # One consumer's usage across all formats: an OpenAI chat call adds to the same counter.
    import openai
    chat = openai.OpenAI(base_url=stack.url + "/ai/budget", api_key="unused",
                         default_headers={"apikey": "production-key"}, max_retries=0)
    used = chat.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "Hello"}]).usage.total_tokens
    assert charged(stack, "signify-production", total + streamed + used) == total + streamed + used


def test_a_corrupt_bedrock_frame_ends_anthropic_and_bedrock_streams_in_their_error_shape(stack):
    # The emulator sends the second text delta with a byte changed, so its CRC fails in the proxy's decoder: the
    # Anthropic SDK sees an error event after the first delta, boto3 an exception frame; the mangled text reaches
    # neither, and what was generated before is charged (an estimate: the stream's usage never came).
    note = "Write a 60 word note [[emulator-fault:corrupt-mid-stream]]"
    seen = []
    with pytest.raises(anthropic.APIStatusError) as raised:
        with claude(stack).messages.stream(model="claude-3-haiku-20240307", max_tokens=300,
                                           messages=[{"role": "user", "content": note}]) as stream:
            for event in stream:
                seen.append(event.type)
    assert "content_block_delta" in seen and "message_stop" not in seen
    assert "EventStreamError" in str(raised.value) and "mangled" not in str(raised.value)
    used = charged(stack, "signify-analytics", -1, timeout=1.0)
    assert 0 < used < 30, used

    events = []
    with pytest.raises(botocore.exceptions.EventStreamError) as failed:
        for event in bedrock(stack, key="production-key").converse_stream(
                modelId=MODEL_ID, messages=[{"role": "user", "content": [{"text": note}]}])["stream"]:
            events.append(event)
    assert [next(iter(e)) for e in events] == ["messageStart", "contentBlockDelta"]
    assert "mangled" not in json.dumps(events)
    assert failed.value.response["Error"]["Code"] == "internalServerException"
    assert "cannot be decoded" in failed.value.response["Error"]["Message"], failed.value.response
    used = charged(stack, "signify-production", -1, timeout=1.0)
    assert 0 < used < 30, used


def test_boto3_refusals_are_bedrock_errors(stack):
    client = bedrock(stack, key="dev-team-key")
    with pytest.raises(client.exceptions.ValidationException) as caught:
        client.converse(modelId="anthropic.claude-3-sonnet-20240229-v1:0",
                        messages=[{"role": "user", "content": [{"text": "Hello"}]}])
    assert "cannot use own model" in caught.value.response["Error"]["Message"]
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        bedrock(stack, key="wrong-key").converse(modelId=MODEL_ID, messages=[{"role": "user", "content": [{"text": "Hi"}]}])
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 401
    # Bedrock's own errors pass through as Bedrock sent them.
    with pytest.raises(client.exceptions.ServiceUnavailableException):
        client.converse(modelId=MODEL_ID, messages=[{"role": "user", "content": [{"text": "Hi [[emulator-fault:error-503]]"}]}])
    assert stack.usage("signify-dev-team") == 0

    spent = 0
    with pytest.raises(client.exceptions.ThrottlingException) as caught:
        for _ in range(10):
            reply = client.converse(modelId=MODEL_ID,
                                    messages=[{"role": "user", "content": [{"text": "Write a 2000 word essay"}]}])
            spent += reply["usage"]["totalTokens"]
    error = caught.value.response
    assert error["Error"] == {"Code": "ThrottlingException", "Message": "API rate limit exceeded"}
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert int(error["ResponseMetadata"]["HTTPHeaders"]["retry-after"]) > 0
    # A stream is refused before it starts: a plain HTTP error, raised by the call itself.
    with pytest.raises(client.exceptions.ThrottlingException):
        client.converse_stream(modelId=MODEL_ID, messages=[{"role": "user", "content": [{"text": "Hello"}]}])
    with pytest.raises(client.exceptions.ThrottlingException):
        client.invoke_model_with_response_stream(modelId=MODEL_ID, body=json.dumps(
            {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}]}))
    assert charged(stack, "signify-dev-team", spent) == spent >= 10000


def test_hard_budget_clamps_each_formats_output_limit(binaries, tmp_path):
    text = (config_with_formats()
            .replace("      tokens_count_strategy: total_tokens\n",
                     "      tokens_count_strategy: total_tokens\n      enforcement: hard\n")
            .replace("limit: [10000]", "limit: [300]").replace("limit: [50000]", "limit: [300]"))
    stack = Gateway(binaries, tmp_path, config_text=text)
    try:
        # The prompt estimate of "Write a 2000 word essay" is 6 tokens, so max_tokens is clamped to 294.
        message = claude(stack, key="dev-team-key").messages.create(
            model="claude-3-haiku-20240307", max_tokens=4096,
            messages=[{"role": "user", "content": "Write a 2000 word essay"}])
        assert message.stop_reason == "max_tokens" and message.usage.output_tokens == 294
        first = message.usage.input_tokens + message.usage.output_tokens
        assert charged(stack, "signify-dev-team", first) == first == 300
        with pytest.raises(anthropic.RateLimitError):
            claude(stack, key="dev-team-key").messages.create(
                model="claude-3-haiku-20240307", max_tokens=10, messages=[{"role": "user", "content": "Hello"}])

        client = bedrock(stack, key="analytics-key")
        reply = client.converse(modelId=MODEL_ID, inferenceConfig={"maxTokens": 4096},
                                messages=[{"role": "user", "content": [{"text": "Write a 2000 word essay"}]}])
        assert reply["stopReason"] == "max_tokens" and reply["usage"]["outputTokens"] == 294
        assert charged(stack, "signify-analytics", 300) == reply["usage"]["totalTokens"] == 300
    finally:
        stack.stop()


def test_a_body_over_the_proxys_limit_is_refused_in_each_formats_shape(binaries, tmp_path):
    """The HTTP layer refuses a body over --max-body-bytes before the request is routed; the refusal still
    comes in the route's error shape, so the SDKs raise their own classes."""
    import urllib.request
    gateway = Gateway(binaries, tmp_path, config_text=config_with_formats(), proxy_args=("--max-body-bytes", "4096"))
    try:
        body = json.dumps({"max_tokens": 10, "messages": [{"role": "user", "content": "x" * 6000}]}).encode()

        def post(path):
            request = urllib.request.Request(gateway.url + path, data=body, method="POST",
                                             headers={"apikey": "analytics-key", "Content-Type": "application/json"})
            try:
                urllib.request.urlopen(request, timeout=10)
            except urllib.error.HTTPError as error:
                return error.code, dict(error.headers), json.loads(error.read())
            raise AssertionError("expected a 413")

        status, _, answer = post("/ai/anthropic/v1/messages")
        assert status == 413 and answer["type"] == "error", answer
        assert answer["error"]["type"] == "request_too_large", answer
        status, headers, answer = post(f"/ai/bedrock/model/{MODEL_ID}/converse")
        assert status == 413 and headers.get("x-amzn-ErrorType", "").startswith("ValidationException"), (headers, answer)
        assert "exceeds the limit" in answer["message"]
        status, _, answer = post("/ai/budget")
        assert status == 413 and answer == {"message": "request body of %d bytes exceeds the limit of 4096 bytes"
                                            % len(body)}
    finally:
        gateway.stop()
