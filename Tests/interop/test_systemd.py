"""The daemons under systemd's socket activation (systemd-socket-activate), and the shipped units."""

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import DOC_KEY_ID, DOC_SECRET, FIXTURE, ROOT, ControlPlane, Daemon, free_port

pytestmark = pytest.mark.skipif(shutil.which("systemd-socket-activate") is None,
                                reason="needs systemd-socket-activate (Debian package systemd)")


class NotifySocket:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self, path: Path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.messages = []

    def wait_for(self, text, timeout=15.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in message for message in self.messages):
                return True
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except socket.timeout:
                pass
        return False


def test_units_pass_systemd_analyze_verify(binaries, tmp_path):
    for unit in (ROOT / "systemd").glob("*.s*"):
        if unit.suffix in (".socket", ".service"):
            (tmp_path / unit.name).write_text(unit.read_text().replace("@bindir@", str(binaries)))
    units = sorted(str(path) for path in tmp_path.iterdir())
    assert len(units) == 6
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", *units], capture_output=True, text=True)
    # verify exits 0 even for unknown keys; any output at all is a problem.
    assert result.returncode == 0 and result.stdout == "" and result.stderr == "", result.stdout + result.stderr


def budgetctl(binaries, admin, *args):
    env = dict(os.environ, BUDGETCTL_SOCKET=admin, DECK_AWS_ACCESS_KEY_ID=DOC_KEY_ID, DECK_AWS_SECRET_ACCESS_KEY=DOC_SECRET)
    return subprocess.run([str(binaries / "budgetctl"), *args], env=env, capture_output=True, text=True, timeout=60)


def test_control_plane_serves_inherited_sockets_and_notifies(binaries, tmp_path):
    notify = NotifySocket(tmp_path / "notify.sock")
    admin, control = str(tmp_path / "admin.sock"), str(tmp_path / "control.sock")
    (tmp_path / "state").mkdir()
    process = subprocess.Popen([
        "systemd-socket-activate", "-l", admin, "-l", control, "--fdname=admin:control",
        "-E", f"NOTIFY_SOCKET={notify.path}", "-E", "WATCHDOG_USEC=400000",
        str(binaries / "budget-controld"), "--state-dir", str(tmp_path / "state"),
        "--control-socket", str(tmp_path / "unused-control.sock"), "--admin-socket", str(tmp_path / "unused-admin.sock"),
    ], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(100):
            if os.path.exists(admin):
                break
            time.sleep(0.05)
        # The first connection starts the daemon, which serves it on the inherited descriptor.
        result = budgetctl(binaries, admin, "sync", str(FIXTURE))
        assert result.returncode == 0 and "Created: 19" in result.stdout, result.stderr
        assert notify.wait_for("READY=1")
        assert notify.wait_for("WATCHDOG=1")
        assert not os.path.exists(tmp_path / "unused-admin.sock")  # it did not bind its own
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert any("STOPPING=1" in m for m in notify.messages) or notify.wait_for("STOPPING=1", timeout=2)


def test_data_plane_keeps_its_socket_across_a_control_plane_restart(binaries, tmp_path):
    emulator = Daemon([str(binaries / "bedrock-emulator"), "--listen", "127.0.0.1:0", "--threads", "1"], "listening on ")
    admin, control = str(tmp_path / "admin.sock"), str(tmp_path / "control.sock")
    (tmp_path / "state").mkdir()
    controld_args = [str(binaries / "budget-controld"), "--state-dir", str(tmp_path / "state"), "--control-socket", control,
                     "--admin-socket", admin, "--log-level", "warning"]
    controld = ControlPlane(controld_args, admin)
    notify = NotifySocket(tmp_path / "notify.sock")
    port = free_port()
    proxy = None
    try:
        assert budgetctl(binaries, admin, "sync", str(FIXTURE)).returncode == 0
        proxy = subprocess.Popen([
            "systemd-socket-activate", "-l", f"127.0.0.1:{port}", "--fdname=http",
            "-E", f"NOTIFY_SOCKET={notify.path}",
            "-E", f"AWS_ENDPOINT_URL_BEDROCK_RUNTIME=http://{emulator.ready_line.removeprefix('listening on ')}",
            str(binaries / "budget-proxyd"), "--control-socket", control, "--listen", "127.0.0.1:1",
        ], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(0.3)

        def ask():
            out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "10", "-X", "POST",
                                  f"http://127.0.0.1:{port}/ai/budget", "-H", "apikey: dev-team-key",
                                  "-d", '{"messages":[{"role":"user","content":"Hello"}]}'], capture_output=True, text=True)
            return out.stdout

        assert ask() == "200"  # the first connection started the proxy on the inherited socket
        assert notify.wait_for("READY=1")
        controld.stop()
        assert ask() == "503"  # fail-closed while the control plane is away, same socket
        controld = ControlPlane(controld_args, admin)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and ask() != "200":
            time.sleep(0.2)
        assert ask() == "200"
    finally:
        if proxy:
            proxy.terminate()
            proxy.wait(timeout=40)
        controld.stop()
        emulator.stop()


def test_make_install_lays_out_programs_units_sysusers_and_man_pages(tmp_path):
    result = subprocess.run(["make", "install", f"DESTDIR={tmp_path}", "PREFIX=/usr", "CONFIG=debug"], cwd=ROOT,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    for program in ["budgetctl", "budget-controld", "budget-proxyd", "bedrock-emulator"]:
        assert os.access(tmp_path / "usr/bin" / program, os.X_OK)
    service = (tmp_path / "usr/lib/systemd/system/budget-controld.service").read_text()
    assert "ExecStart=/usr/bin/budget-controld " in service and "@bindir@" not in service
    assert (tmp_path / "usr/lib/sysusers.d/budget.conf").read_text().startswith("#")
    for page in ["man1/budgetctl.1", "man1/bedrock-emulator.1", "man5/budget.yaml.5", "man7/budget-protocol.7",
                 "man8/budget-controld.8", "man8/budget-proxyd.8"]:
        assert (tmp_path / "usr/share/man" / page).exists(), page
