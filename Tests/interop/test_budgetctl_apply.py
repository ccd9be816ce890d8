"""budgetctl against a control plane that misbehaves on purpose (a Python server speaking the frame protocol of
budget-protocol(7)): what it says when the apply is refused, and when the answer never comes."""

import json
import os
import socket
import struct
import subprocess
import threading
import time

from conftest import DECK_ENV, FIXTURE

HELLO, WELCOME, ERROR, REQUEST, RESPONSE = 0x01, 0x02, 0x03, 0x10, 0x11


def read_frame(connection):
    def exactly(count):
        data = b""
        while len(data) < count:
            chunk = connection.recv(count - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    length, kind, request_id = struct.unpack(">IBI", exactly(9))
    return kind, request_id, json.loads(exactly(length - 5) or b"null")


def send_frame(connection, kind, request_id, payload):
    body = json.dumps(payload).encode()
    connection.sendall(struct.pack(">IBI", len(body) + 5, kind, request_id) + body)


class FakeControlPlane:
    """Welcomes budgetctl, reports an empty config, then answers the apply with `on_apply` (or never)."""

    def __init__(self, path, on_apply):
        self.applies = []
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(1)
        self.on_apply = on_apply
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        connection, _ = self.listener.accept()
        try:
            while True:
                kind, request_id, payload = read_frame(connection)
                if kind == HELLO:
                    send_frame(connection, WELCOME, request_id,
                               {"protocolVersion": payload["protocolVersion"], "server": "fake", "configVersion": 0})
                elif kind == REQUEST and payload["op"] == "dump":
                    send_frame(connection, RESPONSE, request_id, {"configVersion": 0, "state": []})
                elif kind == REQUEST and payload["op"] == "apply":
                    self.applies.append(payload)
                    if self.on_apply is not None:
                        send_frame(connection, *self.on_apply(request_id))
        except (EOFError, OSError):
            pass
        finally:
            connection.close()

    def close(self):
        self.listener.close()


def sync(binaries, socket_path, *flags):
    return subprocess.run([str(binaries / "budgetctl"), "sync", str(FIXTURE), "--socket", socket_path, *flags],
                          capture_output=True, text=True, timeout=60, env={**os.environ, **DECK_ENV})


def test_a_refused_apply_says_nothing_was_changed(binaries, tmp_path):
    path = str(tmp_path / "admin.sock")
    fake = FakeControlPlane(path, lambda request_id: (ERROR, request_id, {"code": "conflict", "message": "moved"}))
    try:
        out = sync(binaries, path)
        assert out.returncode == 1, out
        assert len(fake.applies) == 1 and len(fake.applies[0]["changes"]) == 19
        assert out.stderr.splitlines()[-2:] == ["Error: moved", "Error: nothing was changed"], out.stderr
    finally:
        fake.close()


def test_an_apply_without_answer_is_not_reported_as_nothing_changed(binaries, tmp_path):
    path = str(tmp_path / "admin.sock")
    fake = FakeControlPlane(path, None)
    try:
        started = time.monotonic()
        out = sync(binaries, path, "--timeout", "1")
        assert time.monotonic() - started < 20
        assert out.returncode == 1, out
        assert "the control plane did not answer in time" in out.stderr
        assert "may or may not have applied the changes; run budgetctl diff" in out.stderr
        assert "nothing was changed" not in out.stderr, out.stderr
    finally:
        fake.close()


def test_timeout_is_bounded(binaries, tmp_path):
    out = subprocess.run([str(binaries / "budgetctl"), "ping", "--timeout", "0"], capture_output=True, text=True)
    assert out.returncode != 0 and "--timeout: 1 to 3600 seconds" in out.stderr, out
