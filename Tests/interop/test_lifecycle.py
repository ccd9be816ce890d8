"""budget-proxyd's lifecycle from outside: refusals on pipelined connections, slow senders' bounds, and stops
(SIGTERM) that end within their bounds whatever clients and the control plane do."""

import json
import os
import re
import select
import signal
import socket
import subprocess
import time

from conftest import Gateway

HELLO = b'{"messages":[{"role":"user","content":"Hello"}]}'


def request(path: bytes, body: bytes = b"", key: bytes = b"", extra: bytes = b"") -> bytes:
    headers = b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    if key:
        headers += b"apikey: " + key + b"\r\n"
    return headers + extra + b"Content-Length: %d\r\n\r\n" % len(body) + body


def address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def exchange(url: str, payload: bytes, timeout: float = 5, half_close: bool = False) -> bytes:
    """Sends `payload` (then shuts down the sending side, with `half_close`) and reads until the proxy closes."""
    with socket.create_connection(address(url), timeout=timeout) as sock:
        sock.sendall(payload)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        chunks = []
        try:
            while data := sock.recv(65536):
                chunks.append(data)
        except (socket.timeout, ConnectionResetError):
            pass
        return b"".join(chunks)


def read_until(sock: socket.socket, reply: bytes, done) -> bytes:
    """Reads onto `reply` until `done(reply)`; the connection must not close first."""
    while not done(reply):
        chunk = sock.recv(65536)
        assert chunk, reply
        reply += chunk
    return reply


def statuses(reply: bytes) -> list[bytes]:
    """The status of each response in `reply` (a body is followed directly by the next status line)."""
    return re.findall(rb"HTTP/1\.1 (\d{3}) ", reply)


def stuck_reader(stack) -> socket.socket:
    """A client with a tiny receive buffer that sends 40 pipelined streamed essays and never reads: enough that
    their answers fill both sockets' buffers, so the proxy's writes stall."""
    essay = b'{"stream":true,"messages":[{"role":"user","content":"Write a 5000 word essay"}]}'
    reader = socket.socket()
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    reader.connect(address(stack.url))
    reader.sendall(b"".join(request(b"/ai/budget", essay, b"production-key") for _ in range(40)))
    return reader


def in_flight(stack, consumer):
    out = stack.budgetctl("usage", consumer, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)[0]["inFlight"]


def wait_until_nothing_in_flight(stack, consumer, seconds=15):
    deadline = time.monotonic() + seconds
    while in_flight(stack, consumer) > 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    return in_flight(stack, consumer)


def test_a_refusal_pipelined_behind_an_answer_comes_in_order_and_the_proxy_survives(binaries, tmp_path):
    stack = Gateway(binaries, tmp_path, proxy_args=("--max-body-bytes", "2048"))
    try:
        answered = request(b"/nowhere")
        too_many_headers = request(b"/ai/budget", extra=b"".join(b"X-H%d: v\r\n" % i for i in range(120)))
        too_large = request(b"/ai/budget", body=b"x" * 4096, key=b"dev-team-key")
        assert statuses(exchange(stack.url, answered + too_many_headers)) == [b"404", b"431"]
        assert statuses(exchange(stack.url, answered + too_large)) == [b"404", b"413"]
        # Nothing pipelined behind a refusal is served: the connection closes after the refusal.
        assert statuses(exchange(stack.url, answered + too_large + answered)) == [b"404", b"413"]
        assert stack.proxy.process.poll() is None, stack.proxy.process.stderr.read()
        assert statuses(exchange(stack.url, request(b"/ai/budget", HELLO, b"dev-team-key")
                                 + request(b"/ai/budget", HELLO, b"dev-team-key"))) == [b"200", b"200"]
    finally:
        stack.stop()


def test_pipelined_answers_interim_and_refusals_keep_their_order(binaries, tmp_path):
    stack = Gateway(binaries, tmp_path)
    try:
        hello = request(b"/ai/budget", HELLO, b"dev-team-key")
        # Three requests read at once, then bytes that do not parse: three answers in order, then the 400.
        reply = exchange(stack.url, hello * 3 + b"\x00garbage\r\n\r\n")
        assert statuses(reply) == [b"200", b"200", b"200", b"400"], reply
        assert b"malformed HTTP request" in reply and reply.count(b"Connection: close") == 1
        # A request that asks to close: what is pipelined behind it is not served.
        closing = request(b"/ai/budget", HELLO, b"dev-team-key", extra=b"Connection: close\r\n")
        assert statuses(exchange(stack.url, closing + hello)) == [b"200"]
        # A HEAD answer carries its headers, not its body: the next answer follows its blank line directly.
        head = b"HEAD /nowhere HTTP/1.1\r\nHost: x\r\n\r\n"
        reply = exchange(stack.url, head + request(b"/nowhere"), timeout=2)
        assert statuses(reply) == [b"404", b"404"], reply
        assert reply.split(b"\r\n\r\n", 1)[1].startswith(b"HTTP/1.1 404"), reply
        # Expect: 100-continue pipelined behind a request: the 100 comes after the first answer, not inside it.
        with socket.create_connection(address(stack.url), timeout=5) as sock:
            waiting = (b"POST /ai/budget HTTP/1.1\r\nHost: x\r\napikey: dev-team-key\r\nExpect: 100-continue\r\n"
                       b"Content-Length: %d\r\n\r\n" % len(HELLO))
            sock.sendall(hello + waiting)
            reply = read_until(sock, b"", lambda reply: b"100 Continue" in reply)
            first, interim = reply.split(b"HTTP/1.1 100 Continue\r\n\r\n", 1)
            assert statuses(first) == [b"200"] and first.endswith(b"}"), first
            sock.sendall(HELLO)
            reply = read_until(sock, interim, lambda reply: b"\r\n\r\n" in reply and reply.endswith(b"}"))
            assert statuses(reply) == [b"200"], reply
    finally:
        stack.stop()


def test_a_client_that_shuts_down_its_sending_side_gets_its_answers(binaries, tmp_path):
    stack = Gateway(binaries, tmp_path)
    try:
        hello = request(b"/ai/budget", HELLO, b"dev-team-key")
        stream = request(b"/ai/budget", b'{"stream":true,"messages":[{"role":"user","content":"Hello"}]}',
                         b"dev-team-key")
        # The proxy closes once both are answered: `exchange` returns at the close, long before its time-out.
        started = time.monotonic()
        reply = exchange(stack.url, hello + stream, timeout=10, half_close=True)
        assert time.monotonic() - started < 8
        assert statuses(reply) == [b"200", b"200"], reply
        assert reply.endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n"), reply[-200:]
        # A request cut short by the shutdown is refused and closed, not left hanging.
        started = time.monotonic()
        assert statuses(exchange(stack.url, hello[:-5], timeout=10, half_close=True)) == [b"400"]
        assert time.monotonic() - started < 8
    finally:
        stack.stop()


def dribble(sock: socket.socket, data: bytes, seconds: float, step: int = 1) -> tuple[bytes, float | None]:
    """Sends `data` `step` bytes a second on `sock` (nothing if empty) while reading what comes back, for at most
    `seconds`: what the proxy answered, and after how long it closed the connection (None: still open)."""
    started = time.monotonic()
    reply = b""
    sent = 0
    while (now := time.monotonic()) < started + seconds:
        if sent < len(data) and now >= started + sent // step:
            try:
                sock.sendall(data[sent:sent + step])
            except (BrokenPipeError, ConnectionResetError):
                return reply, now - started
            sent += step
        next_send = started + sent // step if sent < len(data) else started + seconds
        readable, _, _ = select.select([sock], [], [], max(0.0, min(next_send, started + seconds) - time.monotonic()))
        if readable:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return reply, time.monotonic() - started
            reply += chunk
    return reply, None


SLOW_HEAD = b"GET /ai/budget HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"z" * 30


def test_a_head_sent_a_byte_a_second_gets_408_and_a_close_at_the_read_timeout(binaries, tmp_path):
    stack = Gateway(binaries, tmp_path, proxy_args=("--read-timeout", "2"))
    try:
        with socket.create_connection(address(stack.url), timeout=5) as sock:
            reply, closed_after = dribble(sock, SLOW_HEAD, 10)
        assert closed_after is not None, "the proxy kept a connection whose head never ends"
        assert 1.9 <= closed_after < 4, closed_after
        assert statuses(reply) == [b"408"], reply
        assert b"\r\nConnection: close\r\n" in reply
        assert reply.endswith(b'{"message":"the request head did not arrive within 2 seconds"}'), reply
        assert stack.proxy.process.poll() is None
    finally:
        stack.stop()


def test_a_connection_that_sends_nothing_is_closed_at_the_read_timeout(binaries, tmp_path):
    stack = Gateway(binaries, tmp_path, proxy_args=("--read-timeout", "2"))
    try:
        with socket.create_connection(address(stack.url), timeout=5) as sock:
            reply, closed_after = dribble(sock, b"", 10)
        assert closed_after is not None, "the proxy kept a connection that sent nothing"
        assert 1.9 <= closed_after < 4, closed_after
        assert reply == b""
    finally:
        stack.stop()


def test_keep_alive_idle_is_bounded_by_the_idle_timeout_and_a_later_slow_head_by_the_read_timeout(binaries, tmp_path):
    stack = Gateway(binaries, tmp_path, proxy_args=("--read-timeout", "2", "--idle-timeout", "5"))
    try:
        answered = request(b"/nowhere")
        # Between requests, with nothing sent, the read time-out does not apply: the idle time-out does.
        with socket.create_connection(address(stack.url), timeout=5) as idle:
            idle.sendall(answered)
            reply, closed_after = dribble(idle, b"", 10)
        assert statuses(reply) == [b"404"], reply
        assert closed_after is not None and 4.5 <= closed_after < 7.5, closed_after
        # A next head that starts after a pause longer than the read time-out gets the whole bound from its first
        # byte, and no more.
        with socket.create_connection(address(stack.url), timeout=5) as sock:
            sock.sendall(answered)
            first, closed_after = dribble(sock, b"", 3)
            assert statuses(first) == [b"404"] and closed_after is None
            reply, closed_after = dribble(sock, SLOW_HEAD, 10)
        assert closed_after is not None and 1.9 <= closed_after < 4, closed_after
        assert statuses(reply) == [b"408"], reply
    finally:
        stack.stop()


def test_a_slow_head_within_the_read_timeout_is_served_past_the_idle_timeout(binaries, tmp_path):
    """Bytes of a head are traffic: the idle time-out does not cut a head the read time-out still allows."""
    stack = Gateway(binaries, tmp_path, proxy_args=("--read-timeout", "8", "--idle-timeout", "2"))
    try:
        head = request(b"/nowhere", extra=b"Connection: close\r\n")
        with socket.create_connection(address(stack.url), timeout=5) as sock:
            reply, closed_after = dribble(sock, head, 10, step=len(head) // 5 + 1)
        assert statuses(reply) == [b"404"], reply
        assert closed_after is not None and 3.5 <= closed_after < 6, closed_after
    finally:
        stack.stop()


def test_sigterm_finishes_a_request_in_flight_then_exits_0(binaries, tmp_path):
    stack = Gateway(binaries, tmp_path)
    try:
        slow = b'{"messages":[{"role":"user","content":"[[emulator-fault:latency-1500]] Hello"}]}'
        with socket.create_connection(address(stack.url), timeout=10) as sock:
            sock.sendall(request(b"/ai/budget", slow, b"production-key"))
            time.sleep(0.3)
            started = time.monotonic()
            os.kill(stack.proxy.process.pid, signal.SIGTERM)
            reply = b""
            while data := sock.recv(65536):
                reply += data
                if b"\r\n\r\n" in reply and b'"usage"' in reply:
                    break
        assert statuses(reply) == [b"200"]
        assert stack.proxy.process.wait(timeout=10) == 0
        assert time.monotonic() - started < 5
        # The usage of the drained request reached the control plane before the proxy exited.
        assert stack.usage("signify-production") > 0
    finally:
        stack.stop()


def test_sigterm_with_a_client_that_stopped_reading_ends_at_the_drain_bound(binaries, tmp_path):
    stack = Gateway(binaries, tmp_path, proxy_args=("--drain-timeout", "2"))
    try:
        reader = stuck_reader(stack)
        try:
            time.sleep(2)
            started = time.monotonic()
            os.kill(stack.proxy.process.pid, signal.SIGTERM)
            assert stack.proxy.process.wait(timeout=20) == 0
            assert time.monotonic() - started < 10
        finally:
            reader.close()
    finally:
        stack.stop()


def test_sigterm_while_the_control_plane_hangs_exits_at_once(binaries, tmp_path):
    stack = Gateway(binaries, tmp_path)
    try:
        stack.proxy.stop()
        os.kill(stack.controld.process.pid, signal.SIGSTOP)
        try:
            env = dict(os.environ, AWS_ENDPOINT_URL_BEDROCK_RUNTIME=f"http://{stack.emulator_address}")
            proxy = subprocess.Popen(
                [str(binaries / "budget-proxyd"), "--listen", "127.0.0.1:0", "--control-socket", stack.control,
                 "--log-level", "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
            try:
                time.sleep(1.5)  # connected, waiting for the hello's answer
                started = time.monotonic()
                proxy.send_signal(signal.SIGTERM)
                assert proxy.wait(timeout=20) == 0
                assert time.monotonic() - started < 3
            finally:
                if proxy.poll() is None:
                    proxy.kill()
                    proxy.wait()
        finally:
            os.kill(stack.controld.process.pid, signal.SIGCONT)
    finally:
        stack.stop()


def test_after_a_control_plane_kill_holds_in_flight_are_reestablished_and_late_commits_release_only_theirs(
        binaries, tmp_path):
    """Requests admitted before a kill -9 of budget-controld keep their holds across its restart (the proxy
    re-establishes them on reconnecting, before new work); when they finish, their commits charge their usage
    and release their own holds, and the holds of requests admitted by the restarted control plane stay."""
    import concurrent.futures
    stack = Gateway(binaries, tmp_path)
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=4)
    try:
        def chat(text):
            body = b'{"messages":[{"role":"user","content":"%s"}]}' % text.encode()
            closing = request(b"/ai/budget", body, b"analytics-key", extra=b"Connection: close\r\n")
            return statuses(exchange(stack.url, closing, timeout=30))

        before = [pool.submit(chat, f"Hi A{i} [[emulator-fault:latency-4000]]") for i in (1, 2)]
        time.sleep(0.5)
        held_before = in_flight(stack, "signify-analytics")
        stack.controld.crash()
        stack.start_control_plane()
        time.sleep(1.5)  # the proxy reconnects (backoff from 100 ms) and re-establishes the two holds
        assert in_flight(stack, "signify-analytics") == held_before
        after = [pool.submit(chat, f"Hi B{i} [[emulator-fault:latency-6000]]") for i in (1, 2)]
        time.sleep(0.5)
        held = in_flight(stack, "signify-analytics")
        assert held == 2 * held_before, (held, held_before)  # the same prompts: the same holds
        assert [f.result(timeout=20) for f in before] == [[b"200"], [b"200"]]
        time.sleep(0.5)  # their commits reach the restarted control plane
        assert in_flight(stack, "signify-analytics") == held - held_before
        assert stack.usage("signify-analytics") > 0
        assert [f.result(timeout=20) for f in after] == [[b"200"], [b"200"]]
    finally:
        pool.shutdown(wait=True)
        stack.stop()


def test_a_client_that_stops_reading_is_disconnected_and_its_holds_given_back(binaries, tmp_path):
    stack = Gateway(binaries, tmp_path, proxy_args=("--write-timeout", "2"))
    try:
        reader = stuck_reader(stack)
        try:
            time.sleep(1)
            assert in_flight(stack, "signify-production") > 0  # the stuck stream holds its budget
            # Bounded by the write time-out (2 s) plus the request in flight reaching its end; generous, as a loaded
            # machine (a parallel build) once took longer than 15 s.
            assert wait_until_nothing_in_flight(stack, "signify-production", seconds=40) == 0
            assert stack.usage("signify-production") > 0  # charged for what was generated
            # Everyone else is still served.
            assert statuses(exchange(stack.url, request(b"/ai/budget", HELLO, b"analytics-key",
                                                        extra=b"Connection: close\r\n"))) == [b"200"]
        finally:
            reader.close()
    finally:
        stack.stop()


def test_a_client_that_hangs_up_is_charged_what_bedrock_reported(binaries, tmp_path):
    """The request reached Bedrock, which bills it: the hang-up does not cancel it, and its usage is charged."""
    stack = Gateway(binaries, tmp_path)
    try:
        slow = b'{"messages":[{"role":"user","content":"[[emulator-fault:latency-1500]] Hello"}]}'
        with socket.create_connection(address(stack.url), timeout=10) as sock:
            sock.sendall(request(b"/ai/budget", slow, b"dev-team-key"))
            time.sleep(0.4)  # admitted, the Bedrock call under way
        assert in_flight(stack, "signify-dev-team") > 0
        assert wait_until_nothing_in_flight(stack, "signify-dev-team", seconds=10) == 0
        assert stack.usage("signify-dev-team") > 0
        # The connection is gone; the proxy serves others.
        assert statuses(exchange(stack.url, request(b"/ai/budget", HELLO, b"analytics-key",
                                                    extra=b"Connection: close\r\n"))) == [b"200"]
    finally:
        stack.stop()


def test_requests_queued_behind_one_are_not_started_once_their_client_has_gone(binaries, tmp_path):
    """Pipelined requests read ahead of their turn are not served to a client that has closed its connection:
    the one in progress runs to its end (Bedrock bills it); of the rest, at most the next may start before the
    proxy's write of the first answer meets the closed connection."""
    stack = Gateway(binaries, tmp_path)
    try:
        slow = b'{"messages":[{"role":"user","content":"[[emulator-fault:latency-700]] Hello"}]}'
        one = request(b"/ai/budget", slow, b"dev-team-key")
        with socket.create_connection(address(stack.url), timeout=10) as sock:
            sock.sendall(one * 6)
            time.sleep(0.3)  # all six read, the first under way
        assert wait_until_nothing_in_flight(stack, "signify-dev-team", seconds=15) == 0
        time.sleep(0.5)
        single = stack.usage("signify-dev-team")
        assert single > 0
        # What one such request costs, from a client that stays: at most two of the six were charged.
        assert statuses(exchange(stack.url, one, timeout=10)) == [b"200"]
        time.sleep(0.5)
        each = stack.usage("signify-dev-team") - single
        assert each > 0 and single <= 2 * each, (single, each)
    finally:
        stack.stop()


def test_a_client_that_pipelines_and_never_reads_is_disconnected_at_the_write_timeout(binaries, tmp_path):
    """Small answers pile up in the socket's buffers too: the write time-out bounds them, not only streams."""
    stack = Gateway(binaries, tmp_path, proxy_args=("--write-timeout", "2"))
    try:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(address(stack.url))
        sock.setblocking(False)
        many = request(b"/nowhere") * 50
        started = time.monotonic()
        closed_after = None
        while time.monotonic() - started < 30:
            try:
                sock.send(many)
            except BlockingIOError:
                time.sleep(0.01)
            except OSError:
                closed_after = time.monotonic() - started
                break
        sock.close()
        assert closed_after is not None and closed_after < 20, closed_after
        assert stack.proxy.process.poll() is None
        assert statuses(exchange(stack.url, request(b"/ai/budget", HELLO, b"analytics-key",
                                                    extra=b"Connection: close\r\n"))) == [b"200"]
    finally:
        stack.stop()


def test_sigterm_gives_back_the_holds_of_the_requests_the_drain_cancelled(binaries, tmp_path):
    stack = Gateway(binaries, tmp_path, proxy_args=("--drain-timeout", "2"))
    try:
        slow = b'{"messages":[{"role":"user","content":"[[emulator-fault:latency-300]] Hello"}]}'
        clients = []
        for _ in range(6):
            sock = socket.create_connection(address(stack.url), timeout=30)
            sock.sendall(request(b"/ai/budget", slow, b"production-key") * 20)
            clients.append(sock)
        time.sleep(1)
        os.kill(stack.proxy.process.pid, signal.SIGTERM)
        assert stack.proxy.process.wait(timeout=15) == 0
        for sock in clients:
            sock.close()
        # Cancelled at the drain bound with their reservations held: given back before the exit, not left to
        # expire after the reservation's lifetime (600 s).
        assert in_flight(stack, "signify-production") == 0
    finally:
        stack.stop()


def proxied_tokens(stack, key=b"production-key") -> int:
    """One chat request answered 200; the total tokens Bedrock reported for it."""
    reply = exchange(stack.url, request(b"/ai/budget", HELLO, key, extra=b"Connection: close\r\n"), timeout=10)
    assert statuses(reply) == [b"200"], reply[:300]
    return json.loads(reply.split(b"\r\n\r\n", 1)[1])["usage"]["total_tokens"]


def wait_for_usage(stack, consumer, expected, seconds=15):
    deadline = time.monotonic() + seconds
    while stack.usage(consumer) != expected and time.monotonic() < deadline:
        time.sleep(0.2)
    return stack.usage(consumer)


def test_usage_queued_while_the_control_plane_is_away_survives_a_proxy_stop_and_a_proxy_crash(binaries, tmp_path):
    """With --state-directory, usage the control plane has not acknowledged is spooled: a SIGTERM of the proxy
    while the control plane is down writes it, a kill -9 loses at most the last checkpoint's 2 s, and the next
    proxy delivers it first; commits keep their origin, so nothing is charged twice."""
    spool_dir = tmp_path / "proxyd"
    spool_dir.mkdir()
    spool = spool_dir / "pending-usage.spool"
    proxy_args = ("--state-directory", str(spool_dir), "--on-control-plane-loss", "fail-open")
    stack = Gateway(binaries, tmp_path, proxy_args=proxy_args)
    try:
        charged_before = proxied_tokens(stack)
        assert wait_for_usage(stack, "signify-production", charged_before) == charged_before
        # 1. The control plane goes away; requests are served fail-open; the proxy stops gracefully.
        stack.controld.crash()
        first = sum(proxied_tokens(stack) for _ in range(20))
        assert stack.proxy.stop() == 0
        assert spool.exists() and spool.stat().st_size > 8
        stack.start_control_plane()
        stack.proxy = stack.start_proxy(*proxy_args)
        assert wait_for_usage(stack, "signify-production", charged_before + first) == charged_before + first
        # 2. Away again; this time the proxy is killed, after a checkpoint.
        stack.controld.crash()
        second = sum(proxied_tokens(stack) for _ in range(20))
        time.sleep(3)  # a checkpoint every 2 s
        os.kill(stack.proxy.process.pid, signal.SIGKILL)
        stack.proxy.process.wait()
        stack.start_control_plane()
        stack.proxy = stack.start_proxy(*proxy_args)
        expected = charged_before + first + second
        assert wait_for_usage(stack, "signify-production", expected) == expected
        # Delivered: the next checkpoint removes the spool.
        deadline = time.monotonic() + 10
        while spool.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not spool.exists()
        # A spool that is not one is moved aside with a message, and the proxy starts.
        assert stack.proxy.stop() == 0
        spool.write_bytes(b"not a spool")
        stack.proxy = stack.start_proxy(*proxy_args)
        assert (spool_dir / "pending-usage.spool.unreadable").exists()
        assert stack.usage("signify-production") == expected
    finally:
        stack.stop()


def test_a_stream_whose_client_hangs_up_before_the_first_byte_is_charged_the_prompt(binaries, tmp_path):
    """Bedrock runs (and bills) the call though the client left before its first byte: the prompt estimate is
    charged and nothing stays held (before, such a stream was charged 0)."""
    stack = Gateway(binaries, tmp_path)
    try:
        body = b'{"stream":true,"messages":[{"role":"user","content":"[[emulator-fault:latency-2000]] Hello"}]}'
        with socket.create_connection(address(stack.url), timeout=5) as sock:
            sock.sendall(request(b"/ai/budget", body, b"dev-team-key"))
            time.sleep(0.5)
        assert wait_until_nothing_in_flight(stack, "signify-dev-team") == 0
        deadline = time.monotonic() + 10
        while stack.usage("signify-dev-team") == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert 0 < stack.usage("signify-dev-team") < 40  # the prompt, about 15 tokens; nothing was generated
    finally:
        stack.stop()
