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

    def __init__(self, args, ready_prefix: str, timeout: float = 30.0, env=None):
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
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


FIXTURE = ROOT / "Tests" / "BudgetConfigTests" / "Fixtures" / "kong-consumer-budgets.yaml"
DECK_ENV = {"DECK_AWS_ACCESS_KEY_ID": DOC_KEY_ID, "DECK_AWS_SECRET_ACCESS_KEY": DOC_SECRET}


class Gateway:
    """The whole product on temporary sockets and free ports: emulator, control plane and proxy."""

    def __init__(self, binaries: Path, tmp: Path, emulator_args=(), proxy_args=(), config_text=None):
        self.binaries = binaries
        self.tmp = tmp
        (tmp / "state").mkdir()
        self.admin = str(tmp / "admin.sock")
        self.control = str(tmp / "control.sock")
        self.daemons = []
        self.emulator = self._start([str(binaries / "bedrock-emulator"), "--listen", "127.0.0.1:0", "--threads", "1",
                                     *emulator_args], "listening on ")
        self.emulator_address = self.emulator.ready_line.removeprefix("listening on ")
        self.start_control_plane()
        config = tmp / "config.yaml"
        config.write_text(config_text if config_text is not None else FIXTURE.read_text())
        out = self.budgetctl("sync", str(config))
        assert out.returncode == 0, out.stderr
        self.proxy = self.start_proxy(*proxy_args)

    def _start(self, args, ready, env=None):
        daemon = Daemon(args, ready, env=env)
        self.daemons.append(daemon)
        return daemon

    def start_control_plane(self):
        self.controld = ControlPlane([str(self.binaries / "budget-controld"), "--state-dir", str(self.tmp / "state"),
                                      "--control-socket", self.control, "--admin-socket", self.admin,
                                      "--log-level", "warning"], self.admin)
        self.daemons.append(self.controld)
        return self.controld

    def start_proxy(self, *args):
        env = dict(os.environ, AWS_ENDPOINT_URL_BEDROCK_RUNTIME=f"http://{self.emulator_address}")
        proxy = self._start([str(self.binaries / "budget-proxyd"), "--listen", "127.0.0.1:0",
                             "--control-socket", self.control, "--log-level", "warning", *args], "listening on ", env)
        self.url = "http://" + proxy.ready_line.removeprefix("listening on ")
        return proxy

    def budgetctl(self, *args):
        env = dict(os.environ, BUDGETCTL_SOCKET=self.admin, **DECK_ENV)
        return subprocess.run([str(self.binaries / "budgetctl"), *args], env=env, capture_output=True, text=True, timeout=60)

    def usage(self, consumer):
        import json
        out = self.budgetctl("usage", consumer, "--json")
        assert out.returncode == 0, out.stderr
        rows = json.loads(out.stdout)
        return rows[0]["used"] if rows else 0

    def stop(self):
        for daemon in reversed(self.daemons):
            daemon.stop()


class ControlPlane(Daemon):
    """budget-controld: ready when its admin socket accepts connections."""

    def __init__(self, args, admin_socket, timeout=20.0):
        import socket as socketlib
        if os.path.exists(admin_socket):
            os.unlink(admin_socket)
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socketlib.socket(socketlib.AF_UNIX) as probe:
                    probe.connect(admin_socket)
                    break
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError(f"budget-controld exited: {self.process.stderr.read()!r}")
                time.sleep(0.02)
        self.ready_line = "ready"

    def crash(self):
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()


@pytest.fixture
def gateway(binaries, tmp_path):
    """A fresh gateway per test, with the fixture synced."""
    stack = Gateway(binaries, tmp_path)
    try:
        yield stack
    finally:
        stack.stop()
