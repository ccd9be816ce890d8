"""Shared fixtures: the built daemons (daemons.py), started on free loopback ports and stopped by PID."""

import pytest

# Re-exported: the tests import these from conftest.
from daemons import (DECK_ENV, DOC_KEY_ID, DOC_SECRET, FIXTURE, MODEL_ID, ROOT, ControlPlane, Daemon,  # noqa: F401
                     Gateway, bin_dir, free_port)


@pytest.fixture(scope="session")
def binaries():
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


@pytest.fixture
def gateway(binaries, tmp_path):
    """A fresh gateway per test, with the fixture synced."""
    stack = Gateway(binaries, tmp_path)
    try:
        yield stack
    finally:
        stack.stop()
