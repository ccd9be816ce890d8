#!/usr/bin/env python3
"""make soak: a bounded loopback fault soak that checks the gateway's budget invariants through faults.

Real processes on a private temporary directory and free loopback ports (the interop tests' helpers, from
Tests/interop/daemons.py): bedrock-emulator (streams slowed), budget-controld (its own state dir and sockets),
budget-proxyd (fail-closed, status listener, JSON access log). Concurrent client threads send plain and
streamed chat requests for SECONDS while the faults below are injected, then the invariants are checked:

  1. hard tiers: usage never exceeds the limit (sampled every second and at the end);
  2. soft tiers: the overshoot is at most the largest single request's tokens;
  3. charged (budgetctl usage) == what the proxy charged request by request (its access log, joined to the
     clients' records by an id in the request path), which is the usage the clients received + the proxy's
     estimates (budget_proxy_estimated_tokens_total) + the usage of requests whose client hung up or lost
     its connection; a kill -9 of budget-proxyd may lose exactly the commits it still had pending;
  4. no holds left on the control plane (budgetctl status: reservations; budgetctl usage: inFlight);
  5. fds and RSS of the daemons flat (per process instance, first sample after warm-up against the last).

Every non-200 answer and every connection error is classified and must be explained by a fault or a spent
budget. Exits 1 on any violation, with the figures. Usage: bench/soak.py [--seconds N] [--clients N] [--seed N]
(SOAK_SECONDS sets the default duration, else 60). BUDGET_BIN_DIR picks the binaries (default: the debug build).
"""

import argparse
import http.client
import json
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Tests" / "interop"))
from daemons import FIXTURE, Gateway, bin_dir, free_port  # noqa: E402

DAY = 86400
MINUTE = 60
RESERVATION_TTL = 20  # budget-controld --reservation-ttl: holds orphaned by a kill -9 of the proxy expire after it
DRAIN_TIMEOUT = 10    # budget-proxyd --drain-timeout
SETTLE_BOUND = 30     # seconds to wait at the end for in-flight work and pending usage
CLIENT_TIMEOUT = 30   # a client's socket time-out
FD_SLACK = 16         # fds: last sample may exceed the first by this many (pooled upstream and client connections)
RSS_SLACK_MIB = 48    # RSS: last sample may exceed the first by this much (allocator arenas growing under load)
RSS_SLACK_RATIO = 0.5  # ... or by this fraction of the first sample, whichever is larger


# ---------------------------------------------------------------------------------------------------- config

class Tier:
    """A consumer group with its one consumer and key. `weight`: its share of the quick clients' requests;
    `slow`: its share of the slow clients' (calls of 2 to 8 s, as real model calls take, so that admitted requests
    are in flight whenever a fault comes, and outlive a control-plane outage)."""

    def __init__(self, name, key, enforcement, windows, weight, slow=0):
        self.name, self.key, self.enforcement, self.weight, self.slow = name, key, enforcement, weight, slow
        self.windows = windows  # [(limit, window_size)]

    @property
    def consumer(self):
        return f"soak-{self.name}"

    @property
    def limited(self):
        return any(limit < 10_000_000 for limit, _ in self.windows)


def make_tiers(seconds):
    # The small limits scale a little with the duration, so that they are spent during a run, not in its first
    # seconds: the soft and hard day tiers at about two thirds of a 60-second run on this 2-core machine (debug).
    scale = max(1.0, seconds / 60) ** 0.5
    return [
        Tier("big", "soak-big-key", "soft", [(100_000_000, DAY)], 70),
        Tier("soft", "soak-soft-key", "soft", [(int(8_000 * scale), DAY)], 15),
        Tier("hard", "soak-hard-key", "hard", [(int(8_000 * scale), DAY)], 15),
        # Spent and given back all the time (a minute's window): admission near the limit through every fault.
        Tier("hard-minute", "soak-hard-minute-key", "hard", [(2_000, MINUTE), (100_000_000, DAY)], 0, slow=50),
        Tier("soft-minute", "soak-soft-minute-key", "soft", [(2_000, MINUTE), (100_000_000, DAY)], 0, slow=50),
    ]


def config_text(tiers):
    """The interop fixture's service and route (key-auth, ai-proxy to Bedrock), with the soak's tiers."""
    fixture = FIXTURE.read_text()
    head = fixture[:fixture.index("consumer_groups:")].replace("signify-demo", "soak")
    lines = [head, "consumer_groups:"]
    for tier in tiers:
        lines += [f"  - name: soak-{tier.name}-group", "    tags: [soak]"]
    lines.append("consumers:")
    for tier in tiers:
        lines += [f"  - username: {tier.consumer}", "    tags: [soak]", "    groups:",
                  f"      - name: soak-{tier.name}-group", "    keyauth_credentials:", f"      - key: {tier.key}",
                  "        tags: [soak]"]
    lines.append("plugins:")
    for tier in tiers:
        limits = ", ".join(str(limit) for limit, _ in tier.windows)
        sizes = ", ".join(str(size) for _, size in tier.windows)
        lines += ["  - name: ai-rate-limiting-advanced", f"    consumer_group: soak-{tier.name}-group",
                  "    tags: [soak]", "    config:", "      strategy: local", "      identifier: consumer",
                  "      window_type: sliding", "      tokens_count_strategy: total_tokens",
                  f"      enforcement: {tier.enforcement}", "      llm_providers:", "        - name: bedrock",
                  f"          limit: [{limits}]", f"          window_size: [{sizes}]"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------- clients

WORDS = [3, 15, 40, 120, 300]
MAX_TOKENS = [None, 8, 32, 64, 256, 1024]
TOPICS = ["wind", "tides", "solar farms", "batteries", "grids"]


class Record:
    """One client request and what the client saw."""
    __slots__ = ("id", "tier", "stream", "hangup", "max_tokens", "start", "end", "outcome", "status", "message",
                 "usage")

    def __init__(self, rid, tier, stream, hangup, max_tokens):
        self.id, self.tier, self.stream, self.hangup, self.max_tokens = rid, tier, stream, hangup, max_tokens
        self.start = self.end = 0.0
        self.outcome = ""   # ok | status | hung-up | refused | conn-error | stream-broken | bad-usage | client-error
        self.status = 0
        self.message = ""
        self.usage = None   # prompt + completion tokens the client received


class Clients:
    """`count` quick client threads and `slow` slow ones, each with its own random generator."""

    def __init__(self, soak, count, slow, rng_seed):
        self.soak = soak
        self.count = count
        self.slow = slow
        self.seed = rng_seed
        self.stop = threading.Event()
        self.records = []
        self.lock = threading.Lock()
        self.next_id = 0
        self.threads = []
        self.active = set()  # records being sent or read

    def new_id(self):
        with self.lock:
            self.next_id += 1
            return self.next_id

    def start(self):
        for index in range(self.count + self.slow):
            thread = threading.Thread(target=self.run, args=(random.Random(self.seed * 1000 + index),
                                                             index >= self.count), daemon=True)
            thread.start()
            self.threads.append(thread)

    def join(self, timeout):
        self.stop.set()
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.1, deadline - time.monotonic()))
        return [thread for thread in self.threads if thread.is_alive()]

    def run(self, rng, slow):
        tiers = self.soak.tiers
        weights = [tier.slow if slow else tier.weight for tier in tiers]
        while not self.stop.is_set():
            tier = rng.choices(tiers, weights)[0]
            latency = rng.randrange(2000, 8000, 100) if slow else None
            self.request(rng, tier, stream=rng.random() < 0.4, hangup=rng.random() < 0.06, latency=latency)

    def request(self, rng, tier, stream, hangup, latency=None):
        max_tokens = rng.choice(MAX_TOKENS)
        record = Record(self.new_id(), tier.name, stream, hangup, max_tokens)
        text = f"Write a {rng.choice(WORDS)} word note about {rng.choice(TOPICS)}"
        if latency is None and rng.random() < 0.25:
            latency = rng.choice([100, 300, 800, 1500, 3000])  # some requests span a control-plane restart
        if latency:
            text += f" [[emulator-fault:latency-{latency}]]"
        if hangup and not stream and not latency:
            text += " [[emulator-fault:latency-400]]"  # so that the hang-up comes while Bedrock is answering
        body = {"messages": [{"role": "user", "content": text}]}
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        record.start = self.soak.now()
        with self.lock:
            self.active.add(record)
        try:
            self.send(record, tier, json.dumps(body), rng)
        except Exception as error:  # noqa: BLE001 (a bug here is reported as an unexplained answer, not lost)
            record.outcome, record.message = "client-error", repr(error)
        finally:
            record.end = self.soak.now()
            with self.lock:
                self.active.discard(record)
                self.records.append(record)
        # Back off a little, as a real client would, instead of spinning.
        if record.outcome in ("refused", "conn-error") or record.status == 503:
            time.sleep(rng.uniform(0.05, 0.15))
        elif record.status == 429:
            time.sleep(rng.uniform(0.2, 1.0))
        return record

    def send(self, record, tier, body, rng):
        host, port = self.soak.proxy_address
        connection = http.client.HTTPConnection(host, port, timeout=CLIENT_TIMEOUT)
        try:
            try:
                connection.request("POST", f"/ai/budget/soak/{record.id}", body=body,
                                   headers={"apikey": tier.key, "Content-Type": "application/json",
                                            "Connection": "close"})
            except ConnectionRefusedError:
                record.outcome = "refused"
                return
            except OSError as error:
                record.outcome, record.message = "conn-error", f"sending: {error!r}"
                return
            if record.hangup and not record.stream:
                time.sleep(rng.uniform(0.02, 0.3))
                record.outcome = "hung-up"
                return
            try:
                response = connection.getresponse()
            except (OSError, http.client.HTTPException) as error:
                record.outcome, record.message = "conn-error", f"before the status: {error!r}"
                return
            record.status = response.status
            if response.status != 200:
                try:
                    payload = json.loads(response.read())
                    record.message = payload.get("message") or json.dumps(payload.get("error", payload))[:200]
                except (OSError, ValueError, http.client.HTTPException) as error:
                    record.message = f"unreadable body: {error!r}"
                record.outcome = "status"
                return
            if not record.stream:
                try:
                    payload = json.loads(response.read())
                    usage = payload["usage"]
                    if usage["total_tokens"] != usage["prompt_tokens"] + usage["completion_tokens"]:
                        record.outcome, record.message = "bad-usage", json.dumps(usage)
                        return
                    record.usage = usage["total_tokens"]
                    record.outcome = "ok"
                except (OSError, ValueError, KeyError, http.client.HTTPException) as error:
                    record.outcome, record.message = "conn-error", f"reading the answer: {error!r}"
                return
            self.read_stream(record, response, rng)
        finally:
            connection.close()

    @staticmethod
    def read_stream(record, response, rng):
        leave_after = rng.randint(1, 4) if record.hangup else None
        events = 0
        done = False
        try:
            while True:
                line = response.readline()  # de-chunked
                if not line:
                    break
                if not line.startswith(b"data: "):
                    continue
                data = line[6:].strip()
                events += 1
                if data == b"[DONE]":
                    done = True
                    break
                chunk = json.loads(data)
                if "error" in chunk:
                    record.message = json.dumps(chunk["error"])[:200]
                elif chunk.get("usage"):
                    record.usage = chunk["usage"]["total_tokens"]
                if leave_after is not None and events >= leave_after:
                    record.outcome = "hung-up"
                    record.usage = None  # not seen: the client left before the end
                    response.close()  # hang up mid-stream (the connection is closed next)
                    return
        except (OSError, ValueError, http.client.HTTPException) as error:
            record.message = f"mid-stream: {error!r}"
        if done and record.usage is not None and not record.message:
            record.outcome = "ok"
        elif record.hangup:
            record.outcome = "hung-up"  # the stream was shorter than where the client meant to leave
            record.usage = record.usage if done else None
            if done:
                record.outcome = "ok"
        else:
            record.outcome = "stream-broken"


# ---------------------------------------------------------------------------------------------------- helpers

def http_get(url, timeout=3.0):
    host, port = url.removeprefix("http://").split("/")[0].split(":")
    path = "/" + url.removeprefix("http://").split("/", 1)[1]
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


METRIC_LINE = re.compile(r'^(\w+)(?:\{(.*)\})? ([0-9.eE+-]+)$')


def parse_metrics(text):
    """Prometheus text → {(name, frozenset(labels)): value}."""
    out = {}
    for line in text.splitlines():
        match = METRIC_LINE.match(line.strip())
        if not match:
            continue
        labels = frozenset(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        out[(match.group(1), labels)] = float(match.group(3))
    return out


def metric_sum(metrics, name):
    return sum(value for (metric, _), value in metrics.items() if metric == name)


def proc_sample(pid):
    try:
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        rss = 0
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])  # kB
        return fds, rss
    except OSError:
        return None


# ---------------------------------------------------------------------------------------------------- the soak

class Soak:
    def __init__(self, args):
        self.args = args
        self.seconds = args.seconds
        self.rng = random.Random(args.seed)
        self.tiers = make_tiers(self.seconds)
        self.tier = {tier.name: tier for tier in self.tiers}
        self.events = []          # (t, text): faults and what they found
        self.outages = []         # [start, end]: control plane down (kill -9 to the proxy reconnected)
        self.proxy_down = []      # [start, end, kind]: proxy not accepting (SIGTERM/kill to ready again)
        self.kill_notes = []      # per kill -9 of the proxy: its pid, log, pending commits and requests in flight
        self.metric_lifetimes = []  # the /metrics of each proxy instance, scraped before its stop
        self.samples = defaultdict(list)  # (program, pid) -> [(t, fds, rss_kb, phase)]
        self.final_proxy_status = None  # the proxy's /status once settled
        self.usage_max = defaultdict(float)  # (consumer, window) -> max used seen
        self.usage_series = defaultdict(list)  # (consumer, window) -> [(t, used)]
        self.usage_samples = 0
        self.status_samples = []  # (t, the proxy's /status)
        self.lock = threading.Lock()
        self.t0 = time.monotonic()
        self.violations = []
        self.notes = []
        self.background = []  # fault threads still running (restarts)
        self.stop_notes = []  # the same as kill_notes, for the graceful stop
        self.closing = threading.Event()
        self.drained = threading.Event()  # the proxy stopped by SIGTERM has finished its requests
        self.clients = None
        self.gateway = None

    # -- setup

    def start(self, work):
        self.work = work
        (work / "logs").mkdir()
        self.proxy_port = free_port()
        self.status_port = free_port()
        # A state directory, as the shipped unit gives it: usage the control plane has not acknowledged is spooled
        # there across the proxy's stops and crashes.
        (work / "proxyd-state").mkdir()
        self.proxy_args = ("--status-listen", f"127.0.0.1:{self.status_port}", "--on-control-plane-loss", "fail-closed",
                           "--log-format", "json", "--log-level", "info", "--drain-timeout", str(DRAIN_TIMEOUT),
                           "--state-directory", str(work / "proxyd-state"))
        # Fixed ports, so that a restarted proxy keeps its clients' address.
        self.gateway = Gateway(self.args.bin_dir, work, emulator_args=("--stream-delay-ms", "2"),
                               proxy_args=self.proxy_args, config_text=config_text(self.tiers),
                               controld_args=("--reservation-ttl", str(RESERVATION_TTL)), log_dir=work / "logs",
                               proxy_listen=f"127.0.0.1:{self.proxy_port}")
        self.proxy = self.gateway.proxy
        self.proxy_address = ("127.0.0.1", self.proxy_port)

    def start_proxy(self):
        self.proxy = self.gateway.start_proxy(*self.proxy_args, listen=f"127.0.0.1:{self.proxy_port}")
        self.proxy_address = ("127.0.0.1", self.proxy_port)
        return self.proxy

    def now(self):
        return time.monotonic() - self.t0

    def event(self, text):
        with self.lock:
            self.events.append((self.now(), text))
        if self.args.verbose:
            print(f"  [{self.now():6.1f}s] {text}", flush=True)

    def status(self):
        try:
            code, text = http_get(self.gateway.status_url + "/status")
            return json.loads(text) if code == 200 else None
        except (OSError, ValueError):
            return None

    def metrics(self):
        try:
            code, text = http_get(self.gateway.status_url + "/metrics")
            return parse_metrics(text) if code == 200 else None
        except OSError:
            return None

    def budgetctl_json(self, *args, timeout=10):
        try:
            out = self.gateway.budgetctl(*args, "--json", timeout=timeout)
        except Exception:  # noqa: BLE001 (a time-out while the control plane is down)
            return None
        if out.returncode != 0:
            return None
        try:
            return json.loads(out.stdout)
        except ValueError:
            return None

    def daemons(self):
        return [("bedrock-emulator", self.gateway.emulator), ("budget-controld", self.gateway.controld),
                ("budget-proxyd", self.proxy)]

    def sample_processes(self, phase):
        for program, daemon in self.daemons():
            if daemon.process.poll() is None:
                sample = proc_sample(daemon.pid)
                if sample:
                    with self.lock:
                        self.samples[(program, daemon.pid)].append((self.now(), *sample, phase))

    # -- monitor: usage, proxy status, process samples, every second

    def monitor(self, stop):
        while not stop.wait(1.0):
            self.sample_processes("load")
            rows = self.budgetctl_json("usage", timeout=5)
            if rows is not None:
                self.note_usage(rows)
            status = self.status()
            if status is not None:
                self.status_samples.append((self.now(), status))

    def note_usage(self, rows):
        now = self.now()
        with self.lock:
            self.usage_samples += 1
            for row in rows:
                key = (row["consumer"], int(row["windowSize"]))
                self.usage_max[key] = max(self.usage_max[key], float(row["used"]))
                self.usage_series[key].append((now, float(row["used"])))

    # -- faults

    def schedule(self):
        """The faults, in seconds from the start of the load: a kill -9 of budget-controld about every 20 s (the
        first at 8 ± 3 s, then 20 ± 5 s apart), each restarted 0.3 to 2 s later. The proxy's graceful restart
        (SIGTERM) comes 0.5 s into the first control-plane outage, which lasts until the proxy has finished the
        requests it had in flight, plus 0.5 s: the stop must then deliver the usage it could not deliver yet
        (within its 5 s). Its kill -9 comes 0.8 s into an outage in the middle of the run (of 1.5 to 2.5 s): it has
        usage pending, which it may lose. At least one outage (the last) has no proxy fault, so requests admitted
        before it finish after it: their holds and commits cross the restart. With fewer than three outages the
        kill -9 of the proxy comes between them, and orphans the holds of its requests in flight. The emulator
        stalls (SIGSTOP) for 1.5 s late in the run."""
        seconds = self.seconds
        rng = self.rng
        kills = []
        t = 8 + rng.uniform(-3, 3)
        while t < seconds - 5:
            kills.append(t)
            t += 20 + rng.uniform(-5, 5)
        graceful_pair = kills[0] if kills else None
        middle = kills[1:-1]
        kill_pair = min(middle, key=lambda k: abs(k - 0.5 * seconds)) if middle else None
        plan = [(t, "controld-kill", "until-drained" if t == graceful_pair else rng.uniform(1.5, 2.5)
                 if t == kill_pair else rng.uniform(0.3, 2.0)) for t in kills]
        graceful = graceful_pair + 0.5 if graceful_pair is not None else 0.3 * seconds
        if kill_pair is not None:
            proxy_kill = kill_pair + 0.8
        elif len(kills) == 2:
            proxy_kill = (kills[0] + kills[1]) / 2 + 1.5
        else:
            proxy_kill = 0.6 * seconds
        plan += [(graceful, "proxy-sigterm", None), (proxy_kill, "proxy-kill", None)]
        for _ in range(200):
            stall = rng.uniform(0.6 * seconds, 0.85 * seconds)
            if all(abs(stall - k) > 3 for k in kills + [proxy_kill, graceful]):
                break
        plan.append((stall, "emulator-stall", 1.5))
        return sorted(plan)

    def faults(self, plan, load_started, stop):
        for at, kind, parameter in plan:
            if stop.wait(max(0.0, load_started + at - time.monotonic())):
                return
            self.attempt(kind, getattr(self, kind.replace("-", "_")), parameter)

    def attempt(self, kind, fault, *args):
        try:
            fault(*args)
        except Exception as error:  # noqa: BLE001
            self.fail(f"fault {kind} failed: {error!r}")
            self.event(f"{kind} FAILED: {error!r}")

    def controld_kill(self, downtime):
        """kill -9, and a restart on the same state dir and sockets `downtime` seconds later (in the background,
        so that other faults can come during the outage); "until-drained": 0.5 s after the stopping proxy has
        finished the requests it had in flight."""
        self.sample_processes("before kill")
        started = self.now()
        self.gateway.controld.crash()
        self.event(f"kill -9 budget-controld (pid {self.gateway.controld.pid}), down for "
                   + ("as long as the proxy's drain + 0.5 s" if downtime == "until-drained" else f"{downtime:.1f} s"))
        thread = threading.Thread(target=self.attempt, args=("controld-restart", self.controld_restart, started,
                                                             downtime), daemon=True)
        thread.start()
        self.background.append(thread)

    def controld_restart(self, started, downtime):
        if downtime == "until-drained":
            self.drained.wait(DRAIN_TIMEOUT + 10)
            downtime = 0.5
        if self.closing.wait(downtime):
            return  # the soak is being torn down: start nothing more
        self.gateway.start_control_plane()
        restarted = self.now()
        reconnected = self.wait_proxy_connected(15)
        self.outages.append([started, reconnected if reconnected is not None else restarted + 15])
        self.event(f"budget-controld restarted (pid {self.gateway.controld.pid}) after {restarted - started:.1f} s; "
                   f"proxy reconnected {'at %.1f s' % reconnected if reconnected is not None else 'NOT within 15 s'}")

    def wait_proxy_connected(self, bound):
        deadline = time.monotonic() + bound
        while time.monotonic() < deadline:
            status = self.status()
            if status and status.get("control_plane") == "connected":
                return self.now()
            time.sleep(0.05)
        return None

    def scrape_lifetime(self, how):
        metrics = self.metrics()
        self.metric_lifetimes.append({"pid": self.proxy.pid, "how": how, "metrics": metrics or {}})
        if metrics is None:
            self.notes.append(f"the metrics of proxy pid {self.proxy.pid} could not be scraped before its {how}")

    def proxy_sigterm(self, _):
        self.sample_processes("before stop")
        self.scrape_lifetime("SIGTERM")
        log = self.proxy.log
        offset = log.stat().st_size
        status = self.status() or {}
        started = self.now()
        old = self.proxy
        self.stop_notes.append({"pid": old.pid, "log": log, "offset": offset, "pending": status.get("pending_commits"),
                                "in_flight": status.get("requests_in_flight"), "t": started,
                                "control_plane": status.get("control_plane")})
        # The requests it has to finish: those in flight at the clients, and whole answers whose clients hung up
        # (the proxy finishes them: Bedrock bills them) in the last 8.5 s (the longest latency asked for, 8 s).
        with self.clients.lock:
            draining = {r.id for r in self.clients.active}
            draining |= {r.id for r in self.clients.records if r.hangup and not r.stream and r.start > started - 8.5}
        os.kill(old.pid, signal.SIGTERM)
        watcher = threading.Thread(target=self.watch_drain, args=(old, draining), daemon=True)
        watcher.start()
        self.background.append(watcher)
        try:
            code = old.process.wait(timeout=DRAIN_TIMEOUT + 10)
        except Exception:  # noqa: BLE001
            old.crash()
            code = "killed after the drain bound"
        self.event(f"SIGTERM budget-proxyd (pid {old.pid}): exit {code} after {self.now() - started:.1f} s "
                   f"(in flight {status.get('requests_in_flight')}, pending commits {status.get('pending_commits')})")
        if code != 0:
            self.fail(f"budget-proxyd exited {code} on SIGTERM (expected 0)")
        self.start_proxy()
        self.proxy_down.append([started, self.now(), "SIGTERM"])
        self.event(f"budget-proxyd restarted (pid {self.proxy.pid})")

    def watch_drain(self, proxy, ids):
        """Sets `drained` once every request in `ids` has its access-log line (the proxy has finished it) or has
        turned out not to have reached it (refused, connection lost), or the drain's bound has passed. Not on the
        proxy's exit: a proxy that waits for the control plane before exiting must not make it wait longer."""
        deadline = time.monotonic() + DRAIN_TIMEOUT + 2
        pending = set(ids)
        seen = set()
        with open(proxy.log, "rb") as log:
            buffer = b""
            while pending and time.monotonic() < deadline:
                buffer += log.read()
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    match = re.search(rb'"path":"\\?/ai\\?/budget\\?/soak\\?/(\d+)"', line)
                    if match:
                        seen.add(int(match.group(1)))
                with self.clients.lock:
                    gone = {r.id for r in self.clients.records if r.id in pending and r.outcome in ("refused", "conn-error")}
                pending -= seen | gone
                time.sleep(0.05)
        self.event("the stopping proxy has finished its requests" if not pending else
                   f"the stopping proxy has not finished {len(pending)} requests within {DRAIN_TIMEOUT + 2} s")
        self.drained.set()

    def proxy_kill(self, _):
        self.sample_processes("before kill")
        self.scrape_lifetime("kill -9")
        log = self.proxy.log
        offset = log.stat().st_size
        status = self.status() or {}
        started = self.now()
        old = self.proxy
        old.crash()
        pending = status.get("pending_commits")
        self.kill_notes.append({"pid": old.pid, "log": log, "offset": offset, "pending": pending,
                                "in_flight": status.get("requests_in_flight"), "t": started})
        self.event(f"kill -9 budget-proxyd (pid {old.pid}): pending commits {pending}, "
                   f"in flight {status.get('requests_in_flight')}")
        self.start_proxy()
        self.proxy_down.append([started, self.now(), "kill -9"])
        self.event(f"budget-proxyd restarted (pid {self.proxy.pid}) after {self.now() - started:.1f} s")

    def emulator_stall(self, seconds):
        pid = self.gateway.emulator.pid
        os.kill(pid, signal.SIGSTOP)
        self.event(f"SIGSTOP bedrock-emulator (pid {pid}) for {seconds} s")
        try:
            time.sleep(seconds)
        finally:
            os.kill(pid, signal.SIGCONT)

    # -- the run

    def close(self):
        """Stops the clients and every process started, by PID (also after a failure)."""
        self.closing.set()
        if self.clients is not None:
            self.clients.stop.set()
        for thread in self.background:
            thread.join(30)
        if self.gateway is not None:
            self.gateway.stop()

    def run(self):
        clients = self.clients = Clients(self, self.args.clients, self.args.slow_clients, self.args.seed)
        # Warm-up: a few of each kind, then the first process samples (idle).
        warm = random.Random(self.args.seed + 1)
        for tier in self.tiers:
            for stream in (False, True):
                clients.request(warm, tier, stream=stream, hangup=False, latency=0)
        time.sleep(0.5)
        self.sample_processes("start")
        plan = self.schedule()
        offset = self.now()
        self.event("load: %d quick and %d slow clients for %d s; faults planned at %s" % (
            self.args.clients, self.args.slow_clients, self.seconds,
            ", ".join(f"{offset + at:.1f}s {kind}" for at, kind, _ in plan)))
        stop = threading.Event()
        monitor = threading.Thread(target=self.monitor, args=(stop,), daemon=True)
        load_started = time.monotonic()
        faults = threading.Thread(target=self.faults, args=(plan, load_started, stop), daemon=True)
        monitor.start()
        clients.start()
        faults.start()
        time.sleep(self.seconds)
        stuck = clients.join(CLIENT_TIMEOUT + 5)
        if stuck:
            self.fail(f"{len(stuck)} client threads still waiting {CLIENT_TIMEOUT + 5} s after the load")
        stop.set()
        faults.join(60)
        for thread in self.background:
            thread.join(60)
        monitor.join(10)
        self.settle(clients)

    def wait_settled(self, bound):
        """Polls the proxy's /status until nothing is in flight and no usage is pending; the last status."""
        deadline = time.monotonic() + bound
        status = None
        while time.monotonic() < deadline:
            status = self.status()
            if status and status.get("control_plane") == "connected" and status.get("pending_commits") == 0 \
                    and status.get("requests_in_flight") == 0:
                return status, True
            time.sleep(0.2)
        return status, False

    def settle(self, clients):
        """After the load: in-flight work finishes and the proxy delivers its pending usage (bounded), then the
        final readings."""
        status, settled = self.wait_settled(SETTLE_BOUND)
        if not settled:
            self.fail(f"the proxy did not settle within {SETTLE_BOUND} s (nothing in flight, nothing pending): "
                      f"{status}")
        self.event(f"settled: {status}")
        # Holds orphaned by the kill -9 of the proxy live until the reservation TTL; the control plane expires
        # them on its next reservation, so one probe request (counted like any other) comes after the TTL.
        if self.kill_notes:
            wait = self.kill_notes[-1]["t"] + RESERVATION_TTL + 1.5 - self.now()
            if wait > 0:
                self.event(f"waiting {wait:.1f} s for the holds orphaned by the proxy's kill -9 to expire "
                           f"(--reservation-ttl {RESERVATION_TTL})")
                time.sleep(wait)
        clients.request(random.Random(0), self.tier["big"], stream=False, hangup=False, latency=0)
        self.final_proxy_status, _ = self.wait_settled(5)
        self.final_status = self.budgetctl_json("status")
        self.final_usage = self.budgetctl_json("usage")
        if self.final_usage is not None:
            self.note_usage(self.final_usage)
        self.sample_processes("end")
        self.scrape_lifetime("end of the run")

    # -- the checks

    def proxy_log_lines(self):
        """Every access-log line of every proxy instance, by request id."""
        lines = {}
        by_log = defaultdict(list)
        for log in sorted((self.work / "logs").glob("budget-proxyd-*.log")):
            with open(log, "rb") as handle:
                offset = 0
                for raw in handle:
                    start = offset
                    offset += len(raw)
                    try:
                        entry = json.loads(raw)
                    except ValueError:
                        continue
                    if entry.get("message") != "request" or not entry.get("path", "").startswith("/ai/budget/soak/"):
                        continue
                    rid = int(entry["path"].rsplit("/", 1)[1])
                    tokens = int(entry["prompt_tokens"]) + int(entry["completion_tokens"])
                    item = {"status": int(entry["status"]), "tokens": tokens, "log": log, "offset": start,
                            "consumer": entry.get("consumer")}
                    if rid in lines:
                        self.fail(f"request {rid} logged twice by the proxy")
                    lines[rid] = item
                    by_log[log].append((start, rid, item))
        return lines, by_log

    def check(self):
        """Every check as table rows (check, figures, verdict); violations are added to `self.violations`."""
        records = sorted(self.clients.records, key=lambda r: r.id)
        logged, by_log = self.proxy_log_lines()
        final = {(row["consumer"], int(row["windowSize"])): row for row in self.final_usage or []}
        if self.final_usage is None:
            self.fail("budgetctl usage --json failed at the end")
        rows = self.check_answers(records)
        rows += self.check_limits(logged, final)
        rows += self.check_charges(records, logged, by_log, final)
        rows += self.check_holds()
        rows += self.check_processes()
        # For a post-mortem: every request (what the client saw, what the proxy charged) and the timeline.
        with open(self.work / "records.jsonl", "w") as out:
            for r in records:
                out.write(json.dumps({name: getattr(r, name) for name in Record.__slots__}
                                     | {"logged": logged.get(r.id, {}).get("tokens")}) + "\n")
        (self.work / "timeline.json").write_text(json.dumps({
            "events": self.events, "proxy_status": self.status_samples,
            "usage": {f"{consumer} {window}": series for (consumer, window), series in self.usage_series.items()},
            "processes": {f"{program} {pid}": samples for (program, pid), samples in self.samples.items()},
        }))
        return rows

    def fail(self, text):
        self.violations.append(text)

    def check_answers(self, records):
        """Every answer other than a 200, and every connection that failed, explained by a spent budget or a
        fault that was going on at the time."""
        outcomes = Counter()
        unexplained = []
        explained = Counter()

        def during(windows, r, tail):
            return any(start - 0.2 <= r.end and r.start <= end + tail for start, end, *_ in windows)

        for r in records:
            outcomes[r.outcome if r.outcome != "status" else str(r.status)] += 1
            if r.outcome in ("ok", "hung-up"):
                continue
            if r.outcome == "status" and r.status == 429:
                if r.message == "API rate limit exceeded" and self.tier[r.tier].limited:
                    explained[f"429 {r.tier}: its budget is spent"] += 1
                    continue
            elif r.outcome == "status" and r.status == 503 and "fail-closed" in r.message:
                # From the kill to the proxy's reconnection, plus a reservation's time-out (2 s) for requests
                # that were waiting for the control plane when it went.
                if during(self.outages, r, 2.5):
                    explained["503 fail-closed while budget-controld was down"] += 1
                    continue
            elif r.outcome == "refused" and during(self.proxy_down, r, 0.5):
                explained["connection refused while budget-proxyd restarted"] += 1
                continue
            elif r.outcome == "conn-error" and during(self.proxy_down, r, 0.5):
                explained["connection lost across a budget-proxyd stop or kill"] += 1
                continue
            elif r.outcome == "stream-broken" and during([w for w in self.proxy_down if w[2] == "kill -9"], r, 0.5):
                # A graceful stop lets streams in flight finish (--drain-timeout): only a kill -9 may cut one.
                explained["stream cut by the kill -9 of budget-proxyd"] += 1
                continue
            unexplained.append(r)
        rows = [("requests", f"{len(records)} ({', '.join(f'{k}: {v}' for k, v in sorted(outcomes.items()))})",
                 "info")]
        rows += [("  explained", f"{count} × {text}", "ok") for text, count in sorted(explained.items())]
        if unexplained:
            kinds = Counter(f"{r.outcome} {r.status or ''} {r.message[:90]}".strip() for r in unexplained)
            rows += [("  UNEXPLAINED", f"{count} × {text}", "FAIL") for text, count in kinds.most_common(8)]
            first = unexplained[0]
            self.fail(f"{len(unexplained)} answers not explained by a fault or a spent budget (first: request "
                      f"{first.id}, {first.tier}, {first.outcome} {first.status} {first.message[:120]!r} at "
                      f"{first.start:.1f} s)")
        faults = Counter(text.split(" (")[0] for _, text in self.events
                         if text.startswith(("kill -9", "SIGTERM", "SIGSTOP")))
        rows.append(("faults injected", ", ".join(f"{v} × {k}" for k, v in sorted(faults.items())) or "none", "info"))
        rows.append(("clients that hung up", f"{sum(1 for r in records if r.hangup)} "
                     f"({sum(1 for r in records if r.hangup and r.stream)} of them mid-stream)", "info"))
        return rows

    def check_limits(self, logged, final):
        """1 and 2: the most used seen in each limited window (budgetctl usage every second, and at the end)."""
        rows = []
        largest = defaultdict(int)
        for item in logged.values():
            largest[item["consumer"]] = max(largest[item["consumer"]], item["tokens"])
        for tier in self.tiers:
            for limit, window in tier.windows:
                if limit >= 10_000_000:
                    continue
                most = self.usage_max.get((tier.consumer, window), 0.0)
                end = float(final.get((tier.consumer, window), {}).get("used", 0))
                name = f"{tier.consumer} ({tier.enforcement}, {limit}/{'day' if window == DAY else '%d s' % window})"
                if tier.enforcement == "hard":
                    ok = most <= limit
                    rows.append((f"1. hard, never over: {name}", f"most used {most:.0f} (end {end:.0f}) <= {limit}",
                                 "ok" if ok else "FAIL"))
                    if not ok:
                        self.fail(f"hard tier {tier.consumer}: used {most:.0f} > limit {limit} (window {window} s), "
                                  f"overshoot {most - limit:.0f}{self.when_over(tier.consumer, window, limit)}")
                else:
                    bound = limit + largest[tier.consumer]
                    ok = most <= bound
                    rows.append((f"2. soft, over by <= 1 request: {name}",
                                 f"most used {most:.0f} (end {end:.0f}): over by {max(0.0, most - limit):.0f} "
                                 f"<= largest request {largest[tier.consumer]}", "ok" if ok else "FAIL"))
                    if not ok:
                        self.fail(f"soft tier {tier.consumer}: used {most:.0f} is over its limit {limit} by "
                                  f"{most - limit:.0f}, more than the largest request ({largest[tier.consumer]})"
                                  f"{self.when_over(tier.consumer, window, bound)}")
                if most < limit * 0.95:
                    self.notes.append(f"{name} was not spent (most used {most:.0f}): its check proved little")
        rows.append(("   usage samples", f"{self.usage_samples} (budgetctl usage --json, every second)", "info"))
        return rows

    def when_over(self, consumer, window, bound):
        """When usage was first seen over `bound`, and the fault just before that."""
        over = [t for t, used in self.usage_series.get((consumer, window), []) if used > bound]
        if not over:
            return ""
        before = [(t, text) for t, text in self.events if t <= over[0] and not text.startswith(("load", "settled"))]
        last = f"; the last fault before it, at {before[-1][0]:.1f} s: {before[-1][1]}" if before else ""
        return f" — first seen over at {over[0]:.1f} s{last}"

    def check_charges(self, records, logged, by_log, final):
        """3: what the control plane charged against what the proxy charged request by request (its access log,
        joined to the clients' records by the id in the path), and that against what the clients received."""
        rows = []
        consumers = {tier.name: tier.consumer for tier in self.tiers}
        disagree = []
        expected = Counter()
        parts = Counter()
        for r in records:
            item = logged.get(r.id)
            if item is None:
                if r.usage is not None:  # received, then the proxy was killed before its log line
                    expected[consumers[r.tier]] += r.usage
                    parts["received"] += r.usage
                continue
            expected[consumers[r.tier]] += item["tokens"]
            if r.usage is not None:
                parts["received"] += r.usage
                if r.usage != item["tokens"]:
                    disagree.append((r.id, r.usage, item["tokens"]))
            elif r.hangup and not r.stream:
                parts["hung up, whole answer"] += item["tokens"]
            elif r.hangup:
                parts["hung up mid-stream"] += item["tokens"]
            else:
                parts[f"cut ({r.outcome})"] += item["tokens"]
        estimated = sum(metric_sum(life["metrics"], "budget_proxy_estimated_tokens_total")
                        for life in self.metric_lifetimes)

        # Usage a kill -9 of the proxy may lose: its pending commits just before the kill, plus the charges it
        # logged after that reading; the queue is first in, first out, so they are its last charges in log order.
        # The same figure for the graceful stop is what it had to deliver (no allowance: a stop delivers).
        for note in self.kill_notes + self.stop_notes:
            charges = [item for _, _, item in by_log.get(note["log"], []) if item["tokens"] > 0]
            note["after"] = sum(1 for start, _, item in by_log.get(note["log"], [])
                                if start >= note["offset"] and item["tokens"] > 0)
            note["at_risk_commits"] = count = (note["pending"] or 0) + note["after"]
            note["at_risk"] = Counter()
            for item in charges[-count:] if count else []:
                note["at_risk"][item["consumer"]] += item["tokens"]
            note["at_risk_tokens"] = sum(note["at_risk"].values())

        # Per consumer, so that usage charged twice for one cannot hide behind usage lost for another.
        over, short = {}, {}
        charged = 0.0
        allowance_total = 0
        for tier in self.tiers:
            consumer = tier.consumer
            used = float(final.get((consumer, DAY), {}).get("used", 0))
            charged += used
            allowance = sum(note["at_risk"][consumer] for note in self.kill_notes)
            allowance_total += allowance
            diff = used - expected[consumer]
            ok = -allowance <= diff <= 0
            rows.append((f"3. charged == proxy charged: {consumer}", f"{used:.0f} against {expected[consumer]}: "
                         f"{diff:+.0f} (allowed -{allowance}..0)", "ok" if ok else "FAIL"))
            if diff > 0:
                over[consumer] = diff
            elif diff < -allowance:
                short[consumer] = -diff - allowance
        total = sum(expected.values())
        breakdown = " + ".join(f"{k} {v}" for k, v in sorted(parts.items(), key=lambda kv: -kv[1]) if v)
        rows.append(("   all consumers", f"charged {charged:.0f}; proxy charged {total} = {breakdown}; "
                     f"difference {charged - total:+.0f} (allowed -{allowance_total}..0)", "info"))
        for note in self.kill_notes:
            rows.append(("   kill -9 of the proxy", f"pid {note['pid']}: {note['pending']} commits pending + "
                         f"{note['after']} charged after that reading = {note['at_risk_tokens']} tokens it may lose; "
                         f"{note['in_flight']} requests in flight", "info"))
        for note in self.stop_notes:
            rows.append(("   SIGTERM of the proxy", f"pid {note['pid']} (control plane {note['control_plane']}): "
                         f"{note['pending']} commits pending + {note['after']} charged while draining = "
                         f"{note['at_risk_tokens']} tokens it must deliver; {note['in_flight']} requests in flight",
                         "info"))
        if over:
            self.fail(f"charged more than the proxy charged request by request, by {sum(over.values()):.0f} tokens "
                      f"({', '.join(f'{c} +{v:.0f}' for c, v in over.items())}): usage charged more than once")
        if short:
            lost = sum(short.values())
            hint = ""
            for note in self.stop_notes:
                if note["at_risk_tokens"] and all(short[c] <= note["at_risk"][c] for c in short):
                    exact = all(short[c] == note["at_risk"][c] for c in set(short) | set(note["at_risk"]))
                    hint = (f"; the graceful stop of proxy pid {note['pid']} (control plane {note['control_plane']} "
                            f"then) had {note['at_risk_tokens']} tokens in {note['at_risk_commits']} commits to "
                            f"deliver{' — exactly the shortfall, consumer by consumer' if exact else ''}")
            self.fail(f"{lost:.0f} tokens of usage lost beyond what the kill -9 of the proxy explains "
                      f"({', '.join(f'{c} -{v:.0f}' for c, v in short.items())}){hint}")

        rows.append(("3. received == proxy charged, each request",
                     f"{len(disagree)} of {sum(1 for r in records if r.usage is not None and r.id in logged)} differ",
                     "FAIL" if disagree else "ok"))
        if disagree:
            self.fail(f"{len(disagree)} requests where the usage the client received differs from what the proxy "
                      f"charged (id, received, charged): {disagree[:5]}")
        # The proxy estimates only streams that ended without Bedrock's usage: its metric cannot exceed what was
        # charged for the streams whose clients did not see the end.
        unseen_streams = sum(logged[r.id]["tokens"] for r in records
                             if r.stream and r.usage is None and r.id in logged)
        ok = estimated <= unseen_streams
        rows.append(("3. estimates <= unfinished streams", f"budget_proxy_estimated_tokens_total {estimated:.0f} "
                     f"(over {len(self.metric_lifetimes)} proxy lifetimes) <= {unseen_streams}", "ok" if ok else "FAIL"))
        if not ok:
            self.fail(f"the proxy's estimated tokens ({estimated:.0f}) exceed what it charged for streams whose "
                      f"clients did not see the end ({unseen_streams})")
        not_logged = Counter(f"{r.outcome} {r.status or ''}".strip() for r in records
                             if r.id not in logged and r.outcome != "refused")
        if not_logged:
            rows.append(("   not in the access log", ", ".join(f"{v} × {k}" for k, v in not_logged.items())
                         + " (the proxy was stopped or killed while they were in flight)", "info"))
        return rows

    def check_holds(self):
        """4: no reservation left on the control plane (budgetctl status) nor held on a consumer (budgetctl usage)."""
        reservations = (self.final_status or {}).get("reservations")
        held = {row["consumer"]: row["inFlight"] for row in self.final_usage or [] if row.get("inFlight")}
        ok = reservations == 0 and not held
        if not ok:
            self.fail(f"holds left on the control plane at the end: {reservations} reservations, held by consumer "
                      f"{held}")
        return [("4. no holds left", f"reservations {reservations}, held {held or 0}", "ok" if ok else "FAIL")]

    def check_processes(self):
        """5: per process instance, the first sample after its warm-up against its last one."""
        rows = []
        for (program, pid), samples in sorted(self.samples.items()):
            first = [sample for sample in samples if sample[3] == "start"]
            if not first:  # started during the load: 3 s after its start
                first = [sample for sample in samples if sample[0] >= samples[0][0] + 3]
            if not first or samples[-1][0] - first[0][0] < 10:
                continue  # lived too short to say anything
            (t0, fds0, rss0, phase0), (t1, fds1, rss1, phase1) = first[0], samples[-1]
            # A sample under load counts the clients' connections and the proxy's to Bedrock. At the end, the
            # emulator still holds the keep-alive connections the proxy pools (closed after 60 s unused), which
            # the proxy's /status counts.
            fd_slack = FD_SLACK + (0 if phase1 == "end" else 2 * (self.args.clients + self.args.slow_clients))
            if program == "bedrock-emulator" and phase1 == "end":
                fd_slack += (self.final_proxy_status or {}).get("upstream_connections", 0)
            rss_slack = max(RSS_SLACK_MIB * 1024, rss0 * RSS_SLACK_RATIO)
            ok = fds1 <= fds0 + fd_slack and rss1 <= rss0 + rss_slack
            rows.append((f"5. flat: {program} pid {pid}", f"fds {fds0} -> {fds1} (+{fd_slack} allowed), RSS "
                         f"{rss0 / 1024:.1f} -> {rss1 / 1024:.1f} MiB, over {t1 - t0:.0f} s ({phase0} -> {phase1})",
                         "ok" if ok else "FAIL"))
            if not ok:
                self.fail(f"{program} pid {pid} grew: fds {fds0} -> {fds1} (+{fd_slack} allowed), RSS {rss0} -> "
                          f"{rss1} kB (+{rss_slack:.0f} allowed)")
        return rows


def print_table(rows):
    width = max(len(row[0]) for row in rows)
    for check, figures, verdict in rows:
        mark = {"ok": "ok  ", "FAIL": "FAIL", "info": "    "}[verdict]
        print(f"{mark} {check.ljust(width)}  {figures}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=int(os.environ.get("SOAK_SECONDS", "60")))
    parser.add_argument("--clients", type=int, default=8, help="quick client threads (default 8)")
    parser.add_argument("--slow-clients", type=int, default=6,
                        help="client threads whose calls take 2 to 8 s, on the minute tiers (default 6)")
    parser.add_argument("--seed", type=int, default=int(os.environ.get("SOAK_SEED", str(int(time.time()) % 100000))))
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, state) at the end")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="where the work directory is made (default: the system's temporary directory)")
    parser.add_argument("--verbose", "-v", action="store_true", help="print faults as they happen")
    args = parser.parse_args()
    args.bin_dir = bin_dir()
    if args.seconds < 20:
        parser.error("--seconds must be at least 20")
    work = Path(tempfile.mkdtemp(prefix="budget-soak-", dir=args.work_dir))
    soak = Soak(args)
    print(f"soak: {args.seconds} s, {args.clients} + {args.slow_clients} clients, seed {args.seed}, binaries "
          f"{args.bin_dir}", flush=True)
    failed = True
    try:
        soak.start(work)
        soak.run()
        rows = soak.check()
        print()
        print_table(rows)
        for note in soak.notes:
            print(f"note: {note}")
        print()
        for at, text in soak.events:
            print(f"  [{at:6.1f}s] {text}")
        failed = bool(soak.violations)
        if failed:
            print(f"\nsoak FAILED: {len(soak.violations)} violations (seed {args.seed}; work dir {work}):")
            for violation in soak.violations:
                print(f"  - {violation}")
        else:
            print(f"\nsoak passed: every invariant held (seed {args.seed})")
    finally:
        soak.close()
        if args.keep or failed:
            print(f"work dir kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
