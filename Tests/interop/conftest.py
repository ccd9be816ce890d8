"""Shared fixtures: the built daemons, started on free loopback ports and stopped by PID."""

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC_KEY_ID = "AKIDEXAMPLE"
DOC_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
MODEL_ID = "anthropic.claude-3-haiku-20240307-v1:0"


def bin_dir() -> Path:
    """Where `swift build` put the executables (BUDGET_BIN_DIR overrides)."""
    if "BUDGET_BIN_DIR" in os.environ:
        return Path(os.environ["BUDGET_BIN_DIR"])
    out = subprocess.run(["swift", "build", "--show-bin-path"], cwd=ROOT, check=True, capture_output=True, text=True)
    return Path(out.stdout.strip())


class Daemon:
    """A process started by a test; `stop()` ends it by PID, also when the test failed."""

    def __init__(self, args, ready_prefix: str, timeout: float = 20.0):
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + timeout
        line = ""
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if line.startswith(ready_prefix) or self.process.poll() is not None:
                break
        if not line.startswith(ready_prefix):
            self.stop()
            raise RuntimeError(f"{args[0]} did not start: {line!r} {self.process.stderr.read()!r}")
        self.ready_line = line.strip()

    def stop(self):
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode


@pytest.fixture(scope="session")
def binaries() -> Path:
    return bin_dir()


@pytest.fixture(scope="session")
def emulator(binaries):
    """A signature-checking emulator on a free port; yields its base URL."""
    daemon = Daemon([str(binaries / "bedrock-emulator"), "--listen", "127.0.0.1:0", "--threads", "2"], "listening on ")
    port = int(daemon.ready_line.rsplit(":", 1)[1])
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        assert daemon.stop() == 0, "the emulator must exit 0 on SIGTERM"
