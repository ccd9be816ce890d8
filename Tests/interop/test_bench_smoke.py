"""A few seconds of `make bench`'s harness, so that it cannot rot (its figures are not looked at here)."""

import json
import os
import shutil
import subprocess

import pytest

from conftest import ROOT


@pytest.mark.skipif(shutil.which("wrk") is None or shutil.which("nginx") is None, reason="needs wrk and nginx")
def test_macro_benchmark_harness_runs_all_six_setups(tmp_path):
    rows = tmp_path / "rows.jsonl"
    env = dict(os.environ, CONFIG="debug", BENCH_RESULTS=str(tmp_path), BENCH_ROWS=str(rows))
    result = subprocess.run(["bench/macro.sh", "1", "4"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    [summary_file] = list(tmp_path.glob("macro-*.json"))
    summary = json.loads(summary_file.read_text())
    for setup in ["emulator", "nginx", "proxy", "proxy_streaming", "nginx_streaming", "relay"]:
        row = summary["setups"][setup]
        assert row["requests"] > 0 and row["non200"] == 0 and row["non2xx"] == 0 and row["errors"] == 0, (setup, row)
    assert summary["valid"] is True
    # The half-rate figure: three alternated rounds, every answer a 200, the row their median, beside nginx's own
    # median added p99 at the same pace.
    rounds = summary["half_rate"]["rounds"]
    assert len(rounds) == 3, rounds
    for half in rounds:
        for who in ("emulator", "nginx", "relay", "proxy"):
            assert half[who]["requests"] > 0 and half[who]["non200"] == 0 and half[who]["errors"] == 0, half
        assert half["nginx_added_p99_ms"] == half["nginx"]["p99_ms"] - half["emulator"]["p99_ms"], half
    added = sorted(half["proxy_added_p99_ms"] for half in rounds)
    assert summary["half_rate"]["proxy_added_p99_ms"] == added[1], summary["half_rate"]
    nginx_added = sorted(half["nginx_added_p99_ms"] for half in rounds)
    assert summary["half_rate"]["nginx_added_p99_ms"] == nginx_added[1], summary["half_rate"]
    relay_added = sorted(half["relay_added_p99_ms"] for half in rounds)
    assert summary["half_rate"]["relay_added_p99_ms"] == relay_added[1], summary["half_rate"]
    assert "| (c) budget-proxyd -> emulator |" in next(tmp_path.glob("macro-*.md")).read_text()
    assert summary["proxy_cpu_us_per_request"] > 0
    # The CPU per request of each process in front of the emulator, the bare NIO relay's included.
    assert all(summary["front_cpu_us_per_request"][front] > 0 for front in ["nginx", "relay", "proxy"]), summary
    # make bench's one table: each figure beside its baseline from the same run, non-200s counted.
    table = subprocess.run(["python3", "bench/summary.py", str(rows)], cwd=ROOT, capture_output=True, text=True)
    assert table.returncode == 0, table.stdout + table.stderr
    assert "| proxy req/s (every answer a 200) |" in table.stdout and "nginx:" in table.stdout, table.stdout
    assert "| proxy CPU per request |" in table.stdout and "nginx's worker:" in table.stdout, table.stdout
    assert "| bare NIO relay CPU per request (the framework's floor) |" in table.stdout, table.stdout
    assert "| proxy req/s, streaming, like for like |" in table.stdout and "nginx relaying the stream:" in table.stdout
    assert "| proxy added p99 at half its rate (median of 3 rounds: " in table.stdout, table.stdout
    assert "nginx's added p99, same pace (" in table.stdout, table.stdout


@pytest.mark.skipif(shutil.which("redis-server") is None or shutil.which("wrk") is None,
                    reason="needs redis-server and wrk")
def test_fleet_benchmark_harness_runs_local_and_redis(tmp_path):
    rows = tmp_path / "rows.jsonl"
    env = dict(os.environ, CONFIG="debug", BENCH_RESULTS=str(tmp_path), BENCH_ROWS=str(rows))
    result = subprocess.run(["bench/fleet.sh", "1", "4"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "| proxy req/s, 4 connections |" in result.stdout, result.stdout
    written = [json.loads(line) for line in rows.read_text().splitlines()]
    assert {row["measure"] for row in written} == {
        "reserve+commit pairs/s through Redis (always)", "proxy req/s, strategy redis (always)"}
    assert all(row["value"] > 0 and row["baseline_value"] > 0 and row["non200"] == 0 for row in written), written


def test_scale_harness_runs_end_to_end(tmp_path):
    rows = tmp_path / "rows.jsonl"
    env = dict(os.environ, CONFIG="debug", BENCH_ROWS=str(rows))
    result = subprocess.run(["bench/scale.sh", "300"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for line in ["read, decode and validate the file", "encode the snapshot", "sync of 300 consumers:",
                 "budget-proxyd RSS with 1,000 open connections:", "a request as the last consumer: HTTP 200",
                 "one key rotated among 300 consumers:", "the old key afterwards: HTTP 401",
                 "resync of the same 300 consumers (nothing to change), three runs:"]:
        assert line in out, out
    # Its rows for `make bench`'s table: the three timed targets, the rotation checked by status.
    written = [json.loads(line) for line in rows.read_text().splitlines()]
    assert [row["measure"] for row in written[:2]] == [
        "sync of 300 consumers", "one key rotated among 300 consumers: served after its sync returned"], written
    assert len(written) == 3, written
    # The resync row is the median of three runs, which it names.
    prefix = "resync of 300 consumers with nothing to change (median of 3 runs: "
    assert written[2]["measure"].startswith(prefix) and written[2]["measure"].endswith(" s)"), written
    runs = sorted(float(value) for value in written[2]["measure"][len(prefix):-3].split())
    assert len(runs) == 3 and written[2]["value"] == runs[1], written
    assert all(row["value"] > 0 and row["better"] == "lower" and row["non200"] == 0 for row in written), written


@pytest.mark.skipif(shutil.which("wrk") is None or shutil.which("nginx") is None, reason="needs wrk and nginx")
def test_pace_harness_runs_four_setups_at_each_pace(tmp_path):
    env = dict(os.environ, CONFIG="debug", BENCH_RESULTS=str(tmp_path))
    result = subprocess.run(["bench/pace.sh", "1", "1", "0.5"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    [summary_file] = list(tmp_path.glob("pace-*.json"))
    summary = json.loads(summary_file.read_text())
    assert summary["proxy_maximum"]["requests"] > 0 and summary["proxy_maximum"]["non200"] == 0, summary
    assert [pace["fraction"] for pace in summary["paces"]] == [1, 0.5], summary["paces"]
    assert summary["paces"][0]["delay_ms"] == 0 and summary["paces"][1]["delay_ms"] >= 1, summary["paces"]
    processes = {"emulator": {"emulator"}, "nginx": {"nginx", "emulator"}, "relay": {"relay", "emulator"},
                 "proxy": {"proxy", "controld", "emulator"}}
    for pace in summary["paces"]:
        for who, names in processes.items():
            run = pace[who]
            assert run["requests"] > 0 and run["non200"] == 0 and run["non2xx"] == 0 and run["errors"] == 0, run
            assert set(run["cpu_us_per_request"]) == names, run
            if who != "emulator":
                assert run["added_p99_ms"] == round(run["p99_ms"] - pace["emulator"]["p99_ms"], 3), (pace, who)
    # At the maximum rate the proxy and the emulator behind it keep the core busy for the whole second: their
    # CPU cannot be nothing (at 100 ticks a second, the slower paces' smaller shares could round to 0).
    full = summary["paces"][0]["proxy"]["cpu_us_per_request"]
    assert full["proxy"] > 0 and full["emulator"] > 0, full
    assert "| 0.5 (pause " in next(tmp_path.glob("pace-*.md")).read_text()


@pytest.mark.skipif(shutil.which("wrk") is None or shutil.which("nginx") is None, reason="needs wrk and nginx")
def test_pace_harness_fails_a_run_with_answers_other_than_200(tmp_path):
    # An unknown key: every proxied answer is a 401, which the run must not report as a pace.
    env = dict(os.environ, CONFIG="debug", BENCH_RESULTS=str(tmp_path), PACE_APIKEY="no-such-key")
    result = subprocess.run(["bench/pace.sh", "1", "1"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "**Not valid**" in result.stdout and "proxy at 1:" in result.stdout, result.stdout
    bad = subprocess.run(["bench/pace.sh", "1", "2"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "a FRACTION is a number in (0, 1], got '2'" in bad.stderr, bad.stderr
    bad = subprocess.run(["bench/pace.sh", "x"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "SECONDS is a whole number from 1 to 99999, got 'x'" in bad.stderr, bad.stderr
