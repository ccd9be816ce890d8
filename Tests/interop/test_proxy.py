"""budget-proxyd end to end: real emulator, control plane and proxy processes, real clients (curl, the
OpenAI Python SDK, raw sockets)."""

import concurrent.futures
import http.client
import json
import socket
import subprocess
import time

import openai
import pytest

from conftest import FIXTURE, Gateway, MODEL_ID

HELLO = {"messages": [{"role": "user", "content": "Hello"}]}
ESSAY = {"messages": [{"role": "user", "content": "Write a 2000 word essay about renewable energy."}]}


def post(url, body, key=None, headers=None, raw=None):
    """POST with http.client; returns (status, headers dict (lower-case), parsed JSON or text)."""
    host = url.removeprefix("http://")
    connection = http.client.HTTPConnection(host, timeout=60)
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    if key:
        all_headers["apikey"] = key
    connection.request("POST", "/ai/budget", body=raw if raw is not None else json.dumps(body), headers=all_headers)
    response = connection.getresponse()
    text = response.read().decode()
    connection.close()
    try:
        payload = json.loads(text)
    except ValueError:
        payload = text
    return response.status, {k.lower(): v for k, v in response.getheaders()}, payload


def curl(*args):
    return subprocess.run(["curl", "-s", "-S", *args], capture_output=True, text=True, timeout=60)


def test_three_tiers_pass_with_their_limits(gateway):
    for key, limit in [("dev-team-key", "10000"), ("analytics-key", "50000"), ("production-key", "200000")]:
        out = curl("-i", "-X", "POST", gateway.url + "/ai/budget", "-H", "Content-Type: application/json",
                   "-H", f"apikey: {key}", "-d", json.dumps(HELLO))
        head, _, body = out.stdout.partition("\n\n")  # text mode turns CRLF into LF
        assert head.startswith("HTTP/1.1 200"), out.stdout
        assert f"X-AI-RateLimit-Limit-day-bedrock: {limit}" in head
        assert "X-AI-RateLimit-Remaining-day-bedrock:" in head and "X-AI-RateLimit-Reset-day-bedrock:" in head
        reply = json.loads(body)
        assert reply["object"] == "chat.completion" and reply["model"] == MODEL_ID
        assert reply["choices"][0]["message"]["content"].startswith("Hello!")


def test_basic_tier_exhausted_by_essays_gets_429_while_others_pass(gateway):
    statuses = []
    for _ in range(8):
        status, headers, body = post(gateway.url, ESSAY, key="dev-team-key")
        statuses.append(status)
        if status == 429:
            break
    assert statuses[:4] == [200, 200, 200, 200] and statuses[-1] == 429, statuses
    assert body == {"message": "API rate limit exceeded"}
    assert int(headers["retry-after"]) > 86000  # the first essay's tokens come back in about a day
    assert headers["x-ai-ratelimit-remaining-day-bedrock"] == "0"
    assert headers["x-ai-ratelimit-retry-after-day-bedrock"] == headers["retry-after"]
    # Soft enforcement: the last request admitted may cross the limit, by less than its own usage.
    used = gateway.usage("signify-dev-team")
    assert 10000 <= used < 10000 + 2678
    assert post(gateway.url, HELLO, key="analytics-key")[0] == 200
    assert post(gateway.url, HELLO, key="production-key")[0] == 200


def test_keys_routes_and_bodies(gateway):
    assert post(gateway.url, HELLO) [2] == {"message": "No API key found in request"}
    status, headers, body = post(gateway.url, HELLO, key="wrong-key")
    assert (status, body) == (401, {"message": "Unauthorized"}) and headers["www-authenticate"].startswith("Key ")
    out = curl("-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", gateway.url + "/nowhere", "-d", "{}")
    assert out.stdout == "404"
    assert curl("-X", "GET", gateway.url + "/ai/budget", "-H", "apikey: dev-team-key").stdout \
        == '{"message":"no Route matched with those values"}'
    status, _, body = post(gateway.url, {"model": "gpt-4o", **HELLO}, key="dev-team-key")
    assert status == 400 and body["error"]["message"] == f"model: cannot use own model - must be: {MODEL_ID}"
    status, _, body = post(gateway.url, None, key="dev-team-key", raw='{"messages": 5}')
    assert status == 400 and body["error"]["param"] == "messages"
    status, _, body = post(gateway.url, None, key="dev-team-key", raw=b'{"messages":[{"role":"user","content":"\xff"}]}')
    assert status == 400 and "invalid UTF-8" in body["error"]["message"]
    status, _, body = post(gateway.url, {**HELLO, "presence_penalty": 1}, key="dev-team-key")
    assert status == 400 and body["error"]["param"] == "presence_penalty"
    status, _, _ = post(gateway.url, None, key="dev-team-key", raw="x" * (9 << 20))
    assert status == 413
    assert gateway.usage("signify-dev-team") == 0  # nothing above reached Bedrock


def test_openai_sdk_non_streaming_and_streaming_charge_what_bedrock_reported(gateway):
    client = openai.OpenAI(base_url=gateway.url + "/ai/budget", api_key="unused",
                           default_headers={"apikey": "analytics-key"}, max_retries=0)
    # The SDK appends /chat/completions; the route matches by prefix, as Kong's does.
    reply = client.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "Hello"}])
    assert reply.choices[0].finish_reason == "stop"
    first = reply.usage.total_tokens
    assert gateway.usage("signify-analytics") == first

    chunks = list(client.chat.completions.create(
        model=MODEL_ID, messages=[{"role": "user", "content": "Write a 100 word note about wind"}], stream=True,
        stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["stop"] and len(text) > 300
    usage = chunks[-1].usage
    assert usage.completion_tokens == 133 and not chunks[-1].choices
    time.sleep(0.2)
    assert gateway.usage("signify-analytics") == first + usage.total_tokens


def test_curl_streams_server_sent_events_chunk_by_chunk(gateway):
    body = {"messages": [{"role": "user", "content": "Write a 60 word note"}], "stream": True}
    out = curl("-N", "-X", "POST", gateway.url + "/ai/budget", "-H", "apikey: production-key",
               "-H", "Content-Type: application/json", "-d", json.dumps(body))
    events = [line[6:] for line in out.stdout.split("\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert len(chunks) > 5  # role, several deltas, finish
    time.sleep(0.2)
    assert gateway.usage("signify-production") == 80 + 5  # completion + prompt ("Write a 60 word note": 20 bytes)


def test_http_1_0_clients_get_streams_that_end_with_the_connection(gateway):
    """HTTP/1.0 has no chunked encoding: a stream comes with `Connection: close`, unframed, and ends with the
    connection, also when the client asked to keep it alive. (Before, the head said `Transfer-Encoding: chunked`
    over a body that was not, and with keep-alive the client could not tell where the answer ended.)"""
    body = json.dumps({"messages": [{"role": "user", "content": "Write a 60 word note"}], "stream": True}).encode()
    for keep_alive in (False, True):
        request = (b"POST /ai/budget HTTP/1.0\r\nHost: gateway\r\napikey: production-key\r\n"
                   b"Content-Type: application/json\r\n" + (b"Connection: keep-alive\r\n" if keep_alive else b"")
                   + b"Content-Length: %d\r\n\r\n" % len(body))
        started = time.monotonic()
        answer = raw(gateway.url, request + body, timeout=10)
        assert time.monotonic() - started < 5, "the answer ended by a time-out, not by the connection's close"
        head, _, payload = answer.partition(b"\r\n\r\n")
        lines = head.decode().lower().split("\r\n")
        assert lines[0] == "http/1.0 200 ok", answer[:300]
        assert "connection: close" in lines and not any(line.startswith("transfer-encoding") for line in lines)
        events = [line[6:] for line in payload.decode().split("\n") if line.startswith("data: ")]
        assert events[-1] == "[DONE]" and len(events) > 5
        assert json.loads(events[-2])["choices"][0]["finish_reason"] == "stop"
    time.sleep(0.2)
    assert gateway.usage("signify-production") == 2 * (80 + 5)


def test_upstream_errors_pass_through_and_charge_nothing(gateway):
    for marker, status, code in [("throttle", 429, "ThrottlingException"), ("error-500", 500, "InternalServerException"),
                                 ("error-503", 503, "ServiceUnavailableException")]:
        body = {"messages": [{"role": "user", "content": f"Hello [[emulator-fault:{marker}]]"}]}
        got, _, reply = post(gateway.url, body, key="dev-team-key")
        assert got == status and reply["error"]["code"] == code, reply
    assert gateway.usage("signify-dev-team") == 0


def test_mid_stream_throttle_ends_the_stream_with_an_error_event(gateway):
    body = {"messages": [{"role": "user", "content": "Write a 60 word note [[emulator-fault:stream-throttle]]"}], "stream": True}
    out = curl("-N", "-X", "POST", gateway.url + "/ai/budget", "-H", "apikey: dev-team-key", "-d", json.dumps(body))
    events = [line[6:] for line in out.stdout.split("\n") if line.startswith("data: ")]
    assert json.loads(events[-1])["error"]["code"] == "throttlingException"
    time.sleep(0.2)
    used = gateway.usage("signify-dev-team")
    assert 0 < used < 30  # what was generated before the exception, estimated


def test_corrupt_event_stream_ends_the_openai_stream_with_an_error_event_and_charges_what_was_seen(gateway):
    # A frame whose CRC does not match, from Bedrock: the stream ends with an error event after what came before
    # it, and the usage so far is charged (an estimate: the stream's usage never came). test_formats.py has the
    # Anthropic and Bedrock shapes.
    note = "Write a 60 word note [[emulator-fault:corrupt-mid-stream]]"
    before = gateway.usage("signify-dev-team")
    body = {"messages": [{"role": "user", "content": note}], "stream": True}
    out = curl("-N", "-X", "POST", gateway.url + "/ai/budget", "-H", "apikey: dev-team-key", "-d", json.dumps(body))
    events = [json.loads(line[6:]) for line in out.stdout.split("\n") if line.startswith("data: ")]
    assert events[-1]["error"]["code"] == "EventStreamError" and "CRC" in events[-1]["error"]["message"], events[-1]
    assert any(event.get("choices") and event["choices"][0]["delta"].get("content") for event in events[:-1])
    assert "mangled" not in out.stdout
    time.sleep(0.2)
    used = gateway.usage("signify-dev-team") - before
    assert 0 < used < 30, used
    # The proxy still serves the next stream on the same upstream pool.
    out = curl("-N", "-X", "POST", gateway.url + "/ai/budget", "-H", "apikey: dev-team-key", "-d",
               json.dumps({"messages": [{"role": "user", "content": "Hello"}], "stream": True}))
    assert out.stdout.rstrip().endswith("data: [DONE]"), out.stdout


def test_control_plane_loss_fails_closed_then_recovers(gateway):
    assert post(gateway.url, HELLO, key="dev-team-key")[0] == 200
    gateway.controld.crash()
    status, _, body = post(gateway.url, HELLO, key="dev-team-key")
    assert status == 503 and "fail-closed" in body["message"]
    gateway.start_control_plane()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if post(gateway.url, HELLO, key="dev-team-key")[0] == 200:
            break
        time.sleep(0.2)
    else:
        pytest.fail("the proxy did not pick up the restarted control plane")
    assert gateway.usage("signify-dev-team") >= 20  # the acknowledged first request survived kill -9, plus the last


def small_budget_config(enforcement, limit):
    text = FIXTURE.read_text()
    text = text.replace("limit: [10000]", f"limit: [{limit}]")
    return text.replace("      tokens_count_strategy: total_tokens\n      llm_providers:\n        - name: bedrock            # must match ai-proxy model.provider",
                        f"      tokens_count_strategy: total_tokens\n      enforcement: {enforcement}\n      llm_providers:\n        - name: bedrock", 1)


@pytest.mark.parametrize("enforcement", ["soft", "hard"])
def test_200_concurrent_requests_against_an_almost_spent_budget(binaries, tmp_path, enforcement):
    limit = 3000
    stack = Gateway(binaries, tmp_path, config_text=small_budget_config(enforcement, limit))
    try:
        note = {"messages": [{"role": "user", "content": "Write a 40 word note"}], "max_tokens": 100}
        while stack.usage("signify-dev-team") < limit - 400:
            assert post(stack.url, note, key="dev-team-key")[0] == 200
        with concurrent.futures.ThreadPoolExecutor(max_workers=200) as pool:
            statuses = list(pool.map(lambda _: post(stack.url, note, key="dev-team-key")[0], range(200)))
        assert set(statuses) <= {200, 429} and statuses.count(429) > 150
        time.sleep(0.3)
        used = stack.usage("signify-dev-team")
        one_request = 5 + 53  # prompt "Write a 40 word note" (20 bytes) + a 40-word reply
        if enforcement == "soft":
            assert used < limit + one_request, used
        else:
            assert used <= limit, used
    finally:
        stack.stop()


def test_cost_strategy_counts_dollars_and_does_not_floor_remaining(binaries, tmp_path):
    text = FIXTURE.read_text()
    text = text.replace("tokens_count_strategy: total_tokens", "tokens_count_strategy: cost", 1)
    text = text.replace("limit: [10000]", "limit: [0.01]", 1)
    text = text.replace("                options:\n", "                options:\n                  input_cost: 0.25\n"
                        "                  output_cost: 1.25\n", 1)
    stack = Gateway(binaries, tmp_path, config_text=text)
    try:
        status, headers, reply = post(stack.url, HELLO, key="dev-team-key")
        assert status == 200, reply
        usage = reply["usage"]
        dollars = (usage["prompt_tokens"] * 0.25 + usage["completion_tokens"] * 1.25) / 1_000_000
        assert headers["x-ai-ratelimit-limit-day-bedrock"] == "0.01"
        remaining = float(headers["x-ai-ratelimit-remaining-day-bedrock"])
        assert 0 < remaining < 0.01, headers  # floored, as for tokens, it would read 0
        assert abs(remaining - (0.01 - dollars)) < 1e-12, (remaining, dollars)
        time.sleep(0.2)
        assert abs(stack.usage("signify-dev-team") - dollars) < 1e-12
    finally:
        stack.stop()


def raw(address, payload: bytes, read=True, timeout=5):
    host, port = address.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(payload)
        if not read:
            return b""
        chunks = []
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
        except (socket.timeout, ConnectionResetError):
            pass
        return b"".join(chunks)


def test_bad_input_gets_4xx_or_a_closed_connection_and_the_proxy_keeps_serving(binaries, tmp_path):
    stack = Gateway(binaries, tmp_path, proxy_args=("--read-timeout", "2"))
    try:
        url = stack.url
        assert raw(url, b"\x00\x01garbage\r\n\r\n").startswith(b"HTTP/1.1 400")
        long_header = b"POST /ai/budget HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n"
        assert raw(url, long_header)[:12] in (b"HTTP/1.1 400", b"HTTP/1.1 431", b"")
        many = b"POST /ai/budget HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(10000)) + b"\r\n"
        assert raw(url, many)[:12] in (b"HTTP/1.1 400", b"HTTP/1.1 431", b"")
        assert raw(url, b"POST /ai/budget HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(150))
                   + b"Content-Length: 0\r\n\r\n").startswith(b"HTTP/1.1 431")
        # A Content-Length that lies (says more than is sent): cut off by the read time-out, no crash.
        assert raw(url, b"POST /ai/budget HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{}", timeout=10) == b""
        # Slow-loris: a body that never finishes is cut off by the read time-out.
        started = time.monotonic()
        partial = b"POST /ai/budget HTTP/1.1\r\nHost: x\r\napikey: dev-team-key\r\nContent-Length: 100\r\n\r\n{\"mess"
        assert raw(url, partial, timeout=10) == b""
        assert time.monotonic() - started < 9
        # A key with control characters never matches.
        assert raw(url, b"POST /ai/budget HTTP/1.1\r\nHost: x\r\napikey: dev\x01key\r\nContent-Length: 2\r\n\r\n{}")[:12] \
            in (b"HTTP/1.1 400", b"HTTP/1.1 401")
        # Still serving everyone else.
        assert post(url, HELLO, key="analytics-key")[0] == 200
    finally:
        stack.stop()


def test_status_and_metrics(binaries, tmp_path):
    stack = Gateway(binaries, tmp_path, proxy_args=("--status-listen", "127.0.0.1:0"))
    try:
        assert post(stack.url, HELLO, key="dev-team-key")[0] == 200
        status_url = stack.status_url  # from the "status on ADDRESS" line
        status = json.loads(curl(status_url + "/status").stdout)
        assert status["control_plane"] == "connected" and status["config_version"] == 1
        metrics = curl(status_url + "/metrics").stdout
        assert 'budget_proxy_requests_total{route="signify-ai-budget",consumer="signify-dev-team",status="200"} 1' in metrics
        assert 'budget_proxy_tokens_charged_total{consumer="signify-dev-team",group="signify-basic",provider="bedrock"} 10' in metrics
        assert "budget_proxy_upstream_latency_seconds_bucket" in metrics
    finally:
        stack.stop()


def test_unix_listener_chunked_bodies_and_expect_continue(binaries, tmp_path):
    socket_path = str(tmp_path / "proxy.sock")
    stack = Gateway(binaries, tmp_path, proxy_args=("--listen", f"unix:{socket_path}"))
    try:
        body = json.dumps(HELLO)
        out = curl("--unix-socket", socket_path, "-X", "POST", "http://localhost/ai/budget", "-H", "apikey: dev-team-key",
                   "-H", "Content-Type: application/json", "-d", body)
        assert json.loads(out.stdout)["object"] == "chat.completion", out.stdout + out.stderr
        # A chunked request body, with Expect: 100-continue as curl sends it for uploads.
        out = curl("-i", "-X", "POST", stack.url + "/ai/budget", "-H", "apikey: dev-team-key",
                   "-H", "Transfer-Encoding: chunked", "-H", "Expect: 100-continue", "--data-binary", body)
        assert "HTTP/1.1 100 Continue" in out.stdout and "HTTP/1.1 200 OK" in out.stdout, out.stdout
    finally:
        stack.stop()


def test_fail_open_forwards_and_charges_after_the_control_plane_returns(binaries, tmp_path):
    stack = Gateway(binaries, tmp_path, proxy_args=("--on-control-plane-loss", "fail-open", "--control-timeout-ms", "300"))
    try:
        stack.controld.crash()
        status, _, body = post(stack.url, HELLO, key="dev-team-key")
        assert status == 200 and body["usage"]["total_tokens"] == 10
        stack.start_control_plane()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and stack.usage("signify-dev-team") < 10:
            time.sleep(0.2)
        assert stack.usage("signify-dev-team") == 10
    finally:
        stack.stop()


class DelayingRelay:
    """Sits between budget-proxyd and budget-controld's control socket, passing frames both ways; while `delay` is
    set it holds reservation replies back, and it records the ids of the releases the proxy sends."""

    RESERVE_RESULT, RELEASE = 0x21, 0x24

    def __init__(self, path, upstream):
        import threading
        self.delay = 0.0
        self.admitted, self.released = [], []
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(4)
        self.upstream = upstream
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        import threading
        while True:
            try:
                proxy, _ = self.listener.accept()
            except OSError:
                return
            controld = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            controld.connect(self.upstream)
            threading.Thread(target=self.pump, args=(proxy, controld, False), daemon=True).start()
            threading.Thread(target=self.pump, args=(controld, proxy, True), daemon=True).start()

    @staticmethod
    def frame(source):
        import struct
        header = b""
        while len(header) < 9:
            chunk = source.recv(9 - len(header))
            if not chunk:
                return None
            header += chunk
        length, kind, _ = struct.unpack(">IBI", header)
        body = b""
        while len(body) < length - 5:
            chunk = source.recv(length - 5 - len(body))
            if not chunk:
                return None
            body += chunk
        return kind, header + body

    def pump(self, source, target, from_controld):
        import struct
        try:
            while (frame := self.frame(source)) is not None:
                kind, data = frame
                payload = data[9:]
                if from_controld and kind == self.RESERVE_RESULT and self.delay:
                    if payload[2] == 1:  # u16 count, then u8 1 (admitted) and the u64 reservation id
                        self.admitted.append(struct.unpack(">Q", payload[3:11])[0])
                    time.sleep(self.delay)
                if not from_controld and kind == self.RELEASE:
                    count = struct.unpack(">H", payload[:2])[0]
                    self.released += [struct.unpack(">Q", payload[2 + 8 * i:10 + 8 * i])[0] for i in range(count)]
                target.sendall(data)
        except OSError:
            pass
        finally:
            source.close()
            target.close()

    def close(self):
        self.listener.close()


def test_a_reservation_answered_after_the_time_out_is_released(binaries, tmp_path):
    relay_path = str(tmp_path / "relay.sock")
    relay = DelayingRelay(relay_path, str(tmp_path / "control.sock"))
    stack = Gateway(binaries, tmp_path, proxy_args=("--control-socket", relay_path, "--control-timeout-ms", "200"))
    try:
        assert post(stack.url, HELLO, key="dev-team-key")[0] == 200
        relay.delay = 0.6
        status, _, body = post(stack.url, HELLO, key="dev-team-key")
        assert status == 503, body  # fail-closed: the control plane did not answer within 200 ms
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not set(relay.admitted) <= set(relay.released):
            time.sleep(0.05)
        assert relay.admitted and set(relay.admitted) <= set(relay.released), (relay.admitted, relay.released)
        status = json.loads(stack.budgetctl("status", "--json").stdout)
        assert status["reservations"] == 0, status
    finally:
        stack.stop()
        relay.close()
