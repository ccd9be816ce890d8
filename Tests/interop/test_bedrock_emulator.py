"""boto3, AWS's own SDK, against the emulator: all four operations, errors, and the raw event stream."""

import json
import random
import socket
import urllib.error
import urllib.request

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.eventstream import EventStreamBuffer
from botocore.exceptions import ClientError, EventStreamError

from conftest import DOC_KEY_ID, DOC_SECRET, MODEL_ID


def client(endpoint, secret=DOC_SECRET, token=None):
    return boto3.client(
        "bedrock-runtime", region_name="us-east-1", endpoint_url=endpoint,
        aws_access_key_id=DOC_KEY_ID, aws_secret_access_key=secret, aws_session_token=token,
        config=Config(retries={"total_max_attempts": 1}, read_timeout=30),
    )


def user(text):
    return [{"role": "user", "content": [{"text": text}]}]


def test_converse_hello(emulator):
    reply = client(emulator).converse(modelId=MODEL_ID, messages=user("Hello"))
    assert reply["stopReason"] == "end_turn"
    assert reply["output"]["message"]["role"] == "assistant"
    text = reply["output"]["message"]["content"][0]["text"]
    assert text.startswith("Hello!")
    usage = reply["usage"]
    assert usage["inputTokens"] == 2  # "Hello": 5 bytes, one token per four bytes
    assert usage["outputTokens"] == -(-len(text.encode()) // 4)
    assert usage["totalTokens"] == usage["inputTokens"] + usage["outputTokens"]
    assert reply["metrics"]["latencyMs"] > 0


def test_essay_is_long_and_capped_by_max_tokens(emulator):
    bedrock = client(emulator)
    prompt = user("Write a 2000 word essay about renewable energy.")
    full = bedrock.converse(modelId=MODEL_ID, messages=prompt)
    assert full["usage"]["outputTokens"] == 2666 and full["stopReason"] == "end_turn"
    capped = bedrock.converse(modelId=MODEL_ID, messages=prompt, inferenceConfig={"maxTokens": 500})
    assert capped["stopReason"] == "max_tokens"
    assert capped["usage"]["outputTokens"] == 500


def test_converse_stream_events_in_order(emulator):
    response = client(emulator).converse_stream(modelId=MODEL_ID, messages=user("Write a 60 word note about wind"))
    events = [next(iter(event.items())) for event in response["stream"]]
    names = [name for name, _ in events]
    assert names[0] == "messageStart" and events[0][1] == {"role": "assistant"}
    deltas = [body["delta"]["text"] for name, body in events if name == "contentBlockDelta"]
    assert len(deltas) > 3
    assert names[-3:] == ["contentBlockStop", "messageStop", "metadata"]
    assert names == ["messageStart"] + ["contentBlockDelta"] * len(deltas) + names[-3:]
    usage = events[-1][1]["usage"]
    assert usage["outputTokens"] == 80
    assert -(-len("".join(deltas).encode()) // 4) == usage["outputTokens"]


def test_invoke_model_and_token_headers(emulator):
    body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 100, "messages": [{"role": "user", "content": "Hello"}]}
    reply = client(emulator).invoke_model(modelId=MODEL_ID, body=json.dumps(body))
    message = json.loads(reply["body"].read())
    assert reply["contentType"] == "application/json"
    assert message["type"] == "message" and message["stop_reason"] == "end_turn"
    headers = reply["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-amzn-bedrock-input-token-count"] == str(message["usage"]["input_tokens"])
    assert headers["x-amzn-bedrock-output-token-count"] == str(message["usage"]["output_tokens"])
    assert int(headers["x-amzn-bedrock-invocation-latency"]) > 0


def test_invoke_model_with_response_stream(emulator):
    body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 50, "messages": [{"role": "user", "content": "Hi there, write a 30 word note"}]}
    reply = client(emulator).invoke_model_with_response_stream(modelId=MODEL_ID, body=json.dumps(body))
    assert reply["contentType"] == "application/json"
    events = [json.loads(event["chunk"]["bytes"]) for event in reply["body"]]
    types = [event["type"] for event in events]
    assert types[:2] == ["message_start", "content_block_start"]
    assert types[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    metrics = events[-1]["amazon-bedrock-invocationMetrics"]
    assert metrics["outputTokenCount"] == events[-2]["usage"]["output_tokens"] == 40


def test_session_token_is_signed_and_accepted(emulator):
    reply = client(emulator, token="FQoGZXIvYXdzEXAMPLE").converse(modelId=MODEL_ID, messages=user("Hello"))
    assert reply["stopReason"] == "end_turn"


def test_forced_throttle_raises_throttling_exception(emulator):
    bedrock = client(emulator)
    with pytest.raises(bedrock.exceptions.ThrottlingException):
        bedrock.converse(modelId=MODEL_ID, messages=user("Hello [[emulator-fault:throttle]]"))

    def add_fault(request, **_):
        request.headers["x-emulator-fault"] = "error-503"

    bedrock.meta.events.register("before-sign.bedrock-runtime.Converse", add_fault)
    with pytest.raises(bedrock.exceptions.ServiceUnavailableException):
        bedrock.converse(modelId=MODEL_ID, messages=user("Hello"))


def test_mid_stream_throttle_raises_after_the_first_delta(emulator):
    response = client(emulator).converse_stream(modelId=MODEL_ID, messages=user("Write a 50 word note [[emulator-fault:stream-throttle]]"))
    seen = []
    with pytest.raises(EventStreamError) as raised:
        for event in response["stream"]:
            seen.append(next(iter(event)))
    assert seen == ["messageStart", "contentBlockDelta"]
    assert raised.value.response["Error"]["Code"] == "throttlingException"


def test_corrupt_mid_stream_fails_botocore_checksum(emulator):
    # The fault is a real wire fault: botocore's own decoder refuses the frame on its message CRC.
    from botocore.eventstream import ChecksumMismatch
    response = client(emulator).converse_stream(modelId=MODEL_ID, messages=user("Write a 50 word note [[emulator-fault:corrupt-mid-stream]]"))
    seen = []
    with pytest.raises(ChecksumMismatch):
        for event in response["stream"]:
            seen.append(next(iter(event)))
    assert seen == ["messageStart", "contentBlockDelta"]


def test_wrong_secret_is_rejected(emulator):
    with pytest.raises(ClientError) as raised:
        client(emulator, secret="not-the-secret").converse(modelId=MODEL_ID, messages=user("Hello"))
    assert raised.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


@pytest.mark.parametrize("kwargs, message", [
    ({"messages": []}, "A conversation must start with a user message"),
    ({"messages": user("a") + user("b")}, "A conversation must alternate between user and assistant roles"),
    ({"messages": user(" ")}, "The text field in the ContentBlock object at messages.0.content.0 is blank"),
    ({"messages": user("a"), "inferenceConfig": {"maxTokens": 5000}}, "exceeds the model limit of 4096"),
])
def test_validation_errors(emulator, kwargs, message):
    bedrock = client(emulator)
    with pytest.raises(bedrock.exceptions.ValidationException) as raised:
        bedrock.converse(modelId=MODEL_ID, **kwargs)
    assert message in raised.value.response["Error"]["Message"]


def test_unknown_model(emulator):
    bedrock = client(emulator)
    with pytest.raises(bedrock.exceptions.ValidationException) as raised:
        bedrock.converse(modelId="anthropic.claude-v9", messages=user("Hello"))
    assert raised.value.response["Error"]["Message"] == "The provided model identifier is invalid."


def signed(endpoint, path, body: bytes, date=None):
    """A request signed by botocore's own signer and sent with urllib, so the raw body can be read.
    With `date`, it is signed at that instant (as bedrock-wire.md section 6.4 does) instead of now."""
    signer = SigV4Auth(Credentials(DOC_KEY_ID, DOC_SECRET), "bedrock", "us-east-1")
    request = AWSRequest(method="POST", url=endpoint + path, data=body, headers={"Content-Type": "application/json"})
    if date is None:
        signer.add_auth(request)
    else:
        request.headers["X-Amz-Date"] = date
        request.context["timestamp"] = date
        canonical = signer.canonical_request(request)
        signature = signer.signature(signer.string_to_sign(request, canonical), request)
        request.headers["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={DOC_KEY_ID}/{date[:8]}/us-east-1/bedrock/aws4_request, "
            f"SignedHeaders={signer.signed_headers(signer.headers_to_sign(request))}, Signature={signature}")
    prepared = request.prepare()
    return urllib.request.Request(prepared.url, data=body, headers=dict(prepared.headers), method="POST")


def test_stream_frames_checked_one_by_one_with_botocore(emulator):
    path = "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse-stream"
    body = json.dumps({"messages": user("Write a 300 word essay about the sea")}).encode()
    with urllib.request.urlopen(signed(emulator, path, body), timeout=30) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/vnd.amazon.eventstream"
        raw = response.read()
    rng = random.Random(7)
    decoder, frames, seen, offset = EventStreamBuffer(), [], 0, 0
    while offset < len(raw):  # feed in random pieces, as a socket would
        size = rng.randint(1, 97)
        decoder.add_data(raw[offset:offset + size])
        offset += size
        for message in decoder:  # both CRCs are verified here
            seen += message.prelude.total_length
            frames.append(message)
    assert seen == len(raw), "the frames must add up to the whole body (botocore drops a truncated last frame)"
    for message in frames:
        assert message.headers[":message-type"] == "event"
        assert message.headers[":content-type"] == "application/json"
        json.loads(message.payload)
    assert [m.headers[":event-type"] for m in frames][-2:] == ["messageStop", "metadata"]


def test_body_over_20_mb_is_refused(emulator):
    path = "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
    body = json.dumps({"messages": user("x" * (25 * 1024 * 1024))}).encode()
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(signed(emulator, path, body), timeout=60)
    assert raised.value.code == 400
    assert raised.value.headers["x-amzn-ErrorType"].startswith("ValidationException")


def test_date_in_1970_and_missing_authorization_parts(emulator):
    path = "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
    body = json.dumps({"messages": user("Hello")}).encode()
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(signed(emulator, path, body, date="19700101T000000Z"), timeout=30)
    assert raised.value.code == 403
    assert json.loads(raised.value.read())["message"].startswith("Signature expired: 19700101T000000Z")
    request = urllib.request.Request(emulator + path, data=body, method="POST", headers={
        "Content-Type": "application/json", "X-Amz-Date": "20260101T000000Z",
        "Authorization": "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/bedrock/aws4_request"})
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=30)
    assert raised.value.code == 400
    assert raised.value.headers["x-amzn-ErrorType"].startswith("IncompleteSignatureException")


def test_dropped_connection(emulator):
    bedrock = client(emulator)
    with pytest.raises(Exception) as raised:
        bedrock.converse(modelId=MODEL_ID, messages=user("Hello [[emulator-fault:drop]]"))
    assert not isinstance(raised.value, ClientError)


def test_garbage_does_not_stop_the_emulator(emulator):
    host, port = emulator.removeprefix("http://").split(":")
    for payload in [b"\x00\xff garbage\r\n\r\n", b"GET / HTTP/1.1\r\n" + b"X: " + b"a" * 100_000 + b"\r\n\r\n"]:
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(payload)
            sock.settimeout(5)
            try:
                sock.recv(1024)
            except (socket.timeout, ConnectionResetError):
                pass
    assert client(emulator).converse(modelId=MODEL_ID, messages=user("Hello"))["stopReason"] == "end_turn"
