"""make soak's harness (bench/soak.py) for 60 seconds (SOAK_SECONDS overrides): the budget invariants through
kill -9s of the control plane, a graceful restart and a kill -9 of the proxy, clients that hang up and a stalled
Bedrock. It fails on any violation, with the harness's table (and its work directory, logs included) in the
message."""

import os
import subprocess
import sys

from conftest import ROOT


def test_budget_invariants_hold_through_a_fault_soak(binaries, tmp_path):
    seconds = int(os.environ.get("SOAK_SECONDS", "60"))
    env = dict(os.environ, BUDGET_BIN_DIR=str(binaries))
    result = subprocess.run([sys.executable, "bench/soak.py", "--seconds", str(seconds), "--work-dir", str(tmp_path)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=seconds + 240)
    assert result.returncode == 0, result.stdout + result.stderr
