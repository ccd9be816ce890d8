"""A fleet sharing budgets through Redis (`strategy: redis`), from outside: several nodes (each its own
budget-controld, budget-proxyd and store) on one real redis-server, real HTTP clients, Redis killed, restarted
with and without its data, misconfigured, and failed over by a sentinel.

The invariants are read where they live: in Redis (`budget:c:*` hashes, `t` used and `h` held), through
`budgetctl usage` and `budgetctl status` on each node, and from what the clients got (the `usage.total_tokens`
of every 200)."""

import collections
import concurrent.futures
import http.client
import json
import os
import re
import signal
import threading
import time

import pytest

from conftest import FIXTURE, MODEL_ID, Gateway
from daemons import RedisServer

NOTE = {"model": MODEL_ID, "messages": [{"role": "user", "content": "Write a 40 word note"}], "max_tokens": 100}
# 300 ms at Bedrock: requests are in flight when Redis dies, and their usage must reach it afterwards.
SLOW_NOTE = {"model": MODEL_ID, "messages": [{"role": "user", "content": "Write a 40 word note [[emulator-fault:latency-300]]"}],
             "max_tokens": 100}
LONG_NOTE = {"model": MODEL_ID, "messages": [{"role": "user", "content": "Write a 300 word note"}], "max_tokens": 500}
GROUPS = {"signify-basic": "signify-dev-team", "signify-premium": "signify-analytics",
          "signify-enterprise": "signify-production"}
KEYS = {"signify-dev-team": "dev-team-key", "signify-analytics": "analytics-key",
        "signify-production": "production-key"}
DEFAULT_LIMITS = {"signify-basic": 10000, "signify-premium": 50000, "signify-enterprise": 200000}


# MARK: - Config


def _yaml_scalar(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value)  # a JSON string is a YAML string


def _redis_yaml(redis: dict, indent: int) -> str:
    pad = " " * indent
    lines = []
    for name, value in redis.items():
        if isinstance(value, list):
            lines.append(f"{pad}{name}:")
            for item in value:
                first = True
                for key, inner in item.items():
                    lines.append(f"{pad}  {'- ' if first else '  '}{key}: {_yaml_scalar(inner)}")
                    first = False
        else:
            lines.append(f"{pad}{name}: {_yaml_scalar(value)}")
    return "\n".join(lines) + "\n"


def fleet_config(redis=None, limits=None, enforcement=None, extra_consumers=()):
    """The fixture with its budget plugins rewritten: `strategy: redis` (sync_rate 0, the `redis` block given) or,
    with `redis=None`, `strategy: local`; `limits` and `enforcement` per consumer group; `extra_consumers`:
    (username, group, key) added."""
    limits = {**DEFAULT_LIMITS, **(limits or {})}
    enforcement = enforcement or {}
    text = FIXTURE.read_text()
    head, _, _ = text.partition("\n# One budget plugin per consumer group")
    for username, group, key in extra_consumers:
        head += (f"\n  - username: {username}\n    tags: [signify-demo]\n    groups:\n      - name: {group}\n"
                 f"    keyauth_credentials:\n      - key: {key}\n        tags: [signify-demo]")
    plugins = ["\nplugins:"]
    for group in GROUPS:
        if redis is None:
            strategy = "      strategy: local\n"
        else:
            strategy = "      strategy: redis\n      sync_rate: 0\n      redis:\n" + _redis_yaml(redis, 8)
        mode = f"      enforcement: {enforcement[group]}\n" if group in enforcement else ""
        plugins.append(
            f"  - name: ai-rate-limiting-advanced\n    consumer_group: {group}\n    tags: [signify-demo]\n    config:\n"
            f"{strategy}      identifier: consumer\n      window_type: sliding\n"
            f"      tokens_count_strategy: total_tokens\n{mode}      llm_providers:\n        - name: bedrock\n"
            f"          limit: [{limits[group]}]\n          window_size: [86400]")
    return head + "\n" + "\n".join(plugins) + "\n"


def plain(redis: RedisServer, **extra) -> dict:
    return {"host": "127.0.0.1", "port": redis.port, **extra}


# MARK: - Clients


class Reply:
    def __init__(self, status, headers, text, node=None, started=None, ended=None):
        self.status = status
        self.headers = headers
        self.text = text
        self.node = node
        self.started = started
        self.ended = ended
        try:
            self.json = json.loads(text)
        except ValueError:
            self.json = None

    @property
    def tokens(self) -> int:
        """usage.total_tokens of a 200, else 0."""
        if self.status != 200 or not isinstance(self.json, dict):
            return 0
        return int(self.json["usage"]["total_tokens"])

    @property
    def message(self) -> str:
        if isinstance(self.json, dict):
            return str(self.json.get("message") or self.json.get("error") or self.text)
        return self.text

    def __repr__(self):
        return f"Reply({self.status}, {self.text[:300]!r})"


def post(url, body=NOTE, key="dev-team-key", node=None, timeout=60) -> Reply:
    started = time.monotonic()
    connection = http.client.HTTPConnection(url.removeprefix("http://"), timeout=timeout)
    try:
        connection.request("POST", "/ai/budget", body=json.dumps(body),
                           headers={"Content-Type": "application/json", "apikey": key})
        response = connection.getresponse()
        text = response.read().decode()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, text, node, started,
                     time.monotonic())
    finally:
        connection.close()


def wait_for(predicate, seconds, step=0.05, what="the condition"):
    """Polls `predicate` until it returns a true value (returned) or the deadline passes (None)."""
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(step)


class Load:
    """Threads that send requests round-robin over the nodes' proxies until stopped, recording every reply."""

    def __init__(self, nodes, key="production-key", body=NOTE, workers=6):
        self.nodes = nodes
        self.key = key
        self.body = body
        self.replies = []
        self.errors = []
        self.lock = threading.Lock()
        self.halt = threading.Event()
        self.threads = [threading.Thread(target=self._work, args=(i,), daemon=True) for i in range(workers)]
        for thread in self.threads:
            thread.start()

    def _work(self, index):
        n = index
        while not self.halt.is_set():
            node = self.nodes[n % len(self.nodes)]
            n += 1
            try:
                reply = post(node.url, self.body, key=self.key, node=node, timeout=30)
            except (OSError, http.client.HTTPException) as error:
                with self.lock:
                    self.errors.append(repr(error))
                continue
            with self.lock:
                self.replies.append(reply)
            if reply.status != 200:
                time.sleep(0.02)  # a refusal comes at once: do not spin

    def since(self, moment):
        with self.lock:
            return [r for r in self.replies if r.started >= moment]

    def stop(self):
        self.halt.set()
        for thread in self.threads:
            thread.join(timeout=60)
        return self.replies


# MARK: - Reading the fleet


def counter_keys(redis: RedisServer, consumer: str, password=None):
    out = redis.cli("--scan", "--pattern", f"budget:c:*|consumer:{consumer}|*", password=password)
    return [line for line in out.split("\n") if line]


def redis_counter(redis: RedisServer, consumer: str, password=None):
    """(used, held) of `consumer`'s counters in Redis (summed over its keys; one per window)."""
    used = held = 0.0
    for key in counter_keys(redis, consumer, password):
        t = redis.cli("HGET", key, "t", password=password)
        h = redis.cli("HGET", key, "h", password=password)
        used += float(t or 0)
        held += float(h or 0)
    return used, held


def usage_row(gateway: Gateway, consumer: str) -> dict:
    out = gateway.budgetctl("usage", consumer, "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    return rows[0] if rows else {"used": 0, "inFlight": 0}


def status(gateway: Gateway):
    out = gateway.budgetctl("status", timeout=30)
    return out


def status_json(gateway: Gateway) -> dict:
    out = gateway.budgetctl("status", "--json", timeout=30)
    assert out.returncode == 0, (out.stdout, out.stderr)
    return json.loads(out.stdout)


def status_line(text: str, name: str) -> str:
    for line in text.split("\n"):
        if line.startswith(name + ":"):
            return line.partition(":")[2].strip()
    return ""


def settle(redis, consumers, seconds=10, password=None):
    """Waits until no units are held in Redis for `consumers` and their totals stopped moving; returns
    {consumer: (used, held)}."""
    last = {}

    def quiet():
        nonlocal last
        now = {c: redis_counter(redis, c, password) for c in consumers}
        steady = now == last and all(held == 0 for _, held in now.values())
        last = now
        return steady

    wait_for(quiet, seconds, step=0.3)
    return last


def converged(redis, nodes, password=None):
    """The fleet config version in Redis, once every node has announced itself and says it has that version;
    else None."""
    version = redis.cli("HGET", "budget:config", "version", password=password)
    if not version:
        return None
    names = {n.name for n in nodes}
    for node in nodes:
        fleet_status = status_json(node)["fleet"]
        if fleet_status["fleetVersion"] != int(version) or {x["name"] for x in fleet_status["nodes"]} != names:
            return None
    return int(version)


def logs_of(*gateways) -> str:
    text = []
    for gateway in gateways:
        for log in gateway.logs:
            if log.exists():
                text.append(f"--- {log.name} ({gateway.tmp.name})\n{log.read_text()[-3000:]}")
    return "\n".join(text)


def stop_all(*gateways):
    """Stops every daemon by PID; returns {(node, program): exit code}."""
    codes = {}
    for gateway in gateways:
        if gateway is None:
            continue
        for daemon in reversed(gateway.daemons):
            program = daemon.process.args[0].rsplit("/", 1)[-1]
            codes[(gateway.tmp.name, program, daemon.pid)] = daemon.stop()
    return codes


@pytest.fixture
def fleet(binaries, tmp_path):
    """Starts nodes on demand (`fleet.node(name, config, *controld_args)`), Redis servers
    (`fleet.redis(**kw)`), and stops them all by PID at the end, also when the test failed."""

    class Fleet:
        def __init__(self):
            self.gateways = []
            self.servers = []
            (tmp_path / "logs").mkdir()

        def redis(self, **kw):
            server = RedisServer(tmp_path / f"redis-{len(self.servers)}", **kw)
            self.servers.append(server)
            return server

        def node(self, name, config, *controld_args, log_level="notice"):
            directory = tmp_path / name
            directory.mkdir()
            logs = tmp_path / "logs" / name
            logs.mkdir()
            gateway = Gateway(binaries, directory, config_text=config,
                              controld_args=("--node-name", name, *controld_args, "--log-level", log_level),
                              log_dir=logs)
            gateway.name = name
            self.gateways.append(gateway)
            return gateway

        def stop(self):
            codes = stop_all(*self.gateways)
            self.gateways = []
            return codes

    fleet = Fleet()
    try:
        yield fleet
    finally:
        stop_all(*fleet.gateways)
        for server in fleet.servers:
            server.stop()


def pre_spend(nodes, key, consumer, target, redis=None):
    """Spends `consumer`'s budget up to at least `target`, alternating nodes; returns the replies."""
    replies = []
    spent = 0
    n = 0
    while spent < target:
        body = LONG_NOTE if target - spent > 800 else NOTE
        reply = post(nodes[n % len(nodes)].url, body, key=key)
        n += 1
        assert reply.status == 200, reply
        replies.append(reply)
        spent += reply.tokens
    return replies


# MARK: - 1. Shared budgets hold fleet-wide under concurrency

HARD_LIMIT = 3000
SOFT_LIMIT = 4000


def concurrent_load(nodes, total=200, workers=32):
    """`total` requests at once, alternating proxies and, within each proxy, the hard consumer (dev-team) and
    the soft one (analytics)."""
    plan = [(nodes[i % 2], "dev-team-key" if (i // 2) % 2 == 0 else "analytics-key") for i in range(total)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda p: post(p[0].url, NOTE, key=p[1], node=p[0]), plan))


def by_key(replies, key_consumer):
    return [r for r in replies if r.consumer == key_consumer]


def test_two_nodes_on_one_redis_hold_hard_and_soft_budgets_fleet_wide_under_200_concurrent_requests(fleet):
    redis = fleet.redis()
    config = fleet_config(plain(redis), limits={"signify-basic": HARD_LIMIT, "signify-premium": SOFT_LIMIT},
                          enforcement={"signify-basic": "hard", "signify-premium": "soft"})
    a = fleet.node("node-a", config)
    b = fleet.node("node-b", config)

    # Spent from both nodes: each sees the other's spending.
    hard_before = pre_spend([a, b], "dev-team-key", "signify-dev-team", HARD_LIMIT - 1000)
    soft_before = pre_spend([a, b], "analytics-key", "signify-analytics", SOFT_LIMIT - 300)
    hard_spent = sum(r.tokens for r in hard_before)
    soft_spent = sum(r.tokens for r in soft_before)
    assert wait_for(lambda: usage_row(b, "signify-analytics")["used"] == soft_spent, 3), \
        (usage_row(b, "signify-analytics"), soft_spent)

    replies = concurrent_load([a, b])
    for i, reply in enumerate(replies):
        reply.consumer = "signify-dev-team" if (i // 2) % 2 == 0 else "signify-analytics"
    assert {r.status for r in replies} <= {200, 429}, [r for r in replies if r.status not in (200, 429)][:3]
    hard = by_key(replies, "signify-dev-team")
    soft = by_key(replies, "signify-analytics")
    def spread(group):
        return dict(collections.Counter((r.node.name, r.status) for r in group))
    for name, group in (("hard", hard), ("soft", soft)):
        # The limits bind: some refused.
        assert any(r.status == 429 for r in group), (name, spread(group))
    # Both nodes admitted some of the load. Not of each budget: the soft one's last 300 tokens admit about five
    # requests, one or two at a time (each holds its 100 max tokens), and all five fell to one node in about one
    # run in twenty.
    assert {r.node.name for r in hard + soft if r.status == 200} == {"node-a", "node-b"}, \
        (spread(hard), spread(soft))

    counted = settle(redis, ["signify-dev-team", "signify-analytics"])
    hard_used, hard_held = counted["signify-dev-team"]
    soft_used, soft_held = counted["signify-analytics"]
    hard_tokens = hard_spent + sum(r.tokens for r in hard)
    soft_tokens = soft_spent + sum(r.tokens for r in soft)
    largest_soft = max(r.tokens for r in soft_before + soft if r.status == 200)
    report = (f"hard: redis used {hard_used} held {hard_held}, clients got {hard_tokens}; soft: redis used "
              f"{soft_used} held {soft_held}, clients got {soft_tokens}, largest reply {largest_soft}")
    print(report, {s: sum(r.status == s for r in replies) for s in (200, 429)})
    # No holds left once every request finished.
    assert hard_held == 0 and soft_held == 0, report
    # Every charge landed exactly once.
    assert hard_used == hard_tokens and soft_used == soft_tokens, report
    # Hard: never over the limit; soft: over by less than one request.
    assert hard_used <= HARD_LIMIT, report
    assert soft_used < SOFT_LIMIT + largest_soft, report
    # Both nodes' budgetctl show the fleet's usage (Redis's), not their own share.
    for node in (a, b):
        row_hard, row_soft = usage_row(node, "signify-dev-team"), usage_row(node, "signify-analytics")
        assert (row_hard["used"], row_soft["used"]) == (hard_used, soft_used), (node.name, row_hard, row_soft)
        assert row_hard["inFlight"] == 0 and row_soft["inFlight"] == 0, (row_hard, row_soft)
    codes = fleet.stop()
    assert set(codes.values()) == {0}, codes


def test_the_same_load_on_two_local_nodes_lets_each_admit_its_own_budget(fleet):
    """The contrast: with strategy local each node has its own store, so the fleet admits about twice a budget."""
    config = fleet_config(None, limits={"signify-basic": HARD_LIMIT, "signify-premium": SOFT_LIMIT},
                          enforcement={"signify-basic": "hard", "signify-premium": "soft"})
    a = fleet.node("node-a", config)
    b = fleet.node("node-b", config)
    hard_before = pre_spend([a, b], "dev-team-key", "signify-dev-team", HARD_LIMIT - 1000)
    soft_before = pre_spend([a, b], "analytics-key", "signify-analytics", SOFT_LIMIT - 300)
    replies = concurrent_load([a, b])
    for i, reply in enumerate(replies):
        reply.consumer = "signify-dev-team" if (i // 2) % 2 == 0 else "signify-analytics"
    time.sleep(0.5)  # commits: the per-node numbers below are compared with bounds, not with the clients' sum
    per_node = {n.name: (usage_row(n, "signify-dev-team")["used"], usage_row(n, "signify-analytics")["used"])
                for n in (a, b)}
    hard_total = sum(r.tokens for r in hard_before) + sum(r.tokens for r in by_key(replies, "signify-dev-team"))
    soft_total = sum(r.tokens for r in soft_before) + sum(r.tokens for r in by_key(replies, "signify-analytics"))
    # Each node holds its own bound ...
    for hard_used, _ in per_node.values():
        assert hard_used <= HARD_LIMIT, per_node
    # ... but the fleet as a whole spends far more than one budget: each node spent (nearly) a whole one.
    assert all(h > HARD_LIMIT - 200 and s > SOFT_LIMIT - 200 for h, s in per_node.values()), per_node
    assert hard_total > 1.5 * HARD_LIMIT and soft_total > 1.5 * SOFT_LIMIT, (hard_total, soft_total, per_node)


# MARK: - 2. Config travels through Redis


def test_a_sync_on_node_a_reaches_node_b_within_2_seconds(fleet):
    redis = fleet.redis()
    a = fleet.node("node-a", fleet_config(plain(redis)))
    b = fleet.node("node-b", fleet_config(plain(redis)))
    assert wait_for(lambda: len(status_json(b)["fleet"]["nodes"]) == 2, 5), status(b).stdout
    before = status_json(b)["fleet"]["fleetVersion"]
    assert post(b.url, NOTE, key="new-team-key").status == 401

    new = a.tmp / "new.yaml"
    new.write_text(fleet_config(plain(redis), extra_consumers=[("signify-newcomer", "signify-basic", "new-team-key")]))
    out = a.budgetctl("sync", str(new))
    assert out.returncode == 0, out.stderr
    synced = time.monotonic()
    served = wait_for(lambda: post(b.url, NOTE, key="new-team-key").status == 200 and time.monotonic(), 2.0)
    assert served, f"node B still refuses the new key 2 s after the sync on A\n{logs_of(a, b)}"
    print(f"node B served the new key {served - synced:.3f} s after the sync on node A returned")

    def advanced():
        fleet_status = status_json(b)["fleet"]
        names = {n["name"] for n in fleet_status["nodes"]}
        return fleet_status["fleetVersion"] > before and names == {"node-a", "node-b"} and fleet_status
    assert wait_for(advanced, 3, step=0.2), status(b).stdout
    text = status(b).stdout
    assert int(re.search(r"version (\d+)", status_line(text, "fleet config")).group(1)) > before, text
    assert status_line(text, "fleet nodes") == "2", text
    assert re.search(r"^\s+node-a:", text, re.M) and re.search(r"^\s+node-b:", text, re.M), text
    # B's own store has the config (it keeps serving with it) and its usage lands in the fleet's Redis.
    assert usage_row(a, "signify-newcomer")["used"] > 0 or wait_for(
        lambda: usage_row(a, "signify-newcomer")["used"] > 0, 2), usage_row(a, "signify-newcomer")


def test_a_sync_right_after_another_node_started_is_not_undone_by_that_nodes_older_config(fleet):
    """Node B starts with the file it was provisioned with (its own `budgetctl sync`); a moment later the operator
    syncs a new config on node A. The later sync must win on both nodes: B's older config must not come back
    through Redis and revert A."""
    redis = fleet.redis()
    a = fleet.node("node-a", fleet_config(plain(redis)))
    b = fleet.node("node-b", fleet_config(plain(redis)))
    path = a.tmp / "newer.yaml"
    path.write_text(fleet_config(plain(redis), limits={"signify-basic": 13000}))
    out = a.budgetctl("sync", str(path))  # after B's sync returned: this is the newest config
    assert out.returncode == 0, out.stderr
    assert usage_row(a, "signify-dev-team")["limit"] == 13000
    assert wait_for(lambda: converged(redis, [a, b]), 5, step=0.2), status(a).stdout
    time.sleep(1.0)  # two more polls: a revert would show
    limits = {n.name: usage_row(n, "signify-dev-team")["limit"] for n in (a, b)}
    assert limits == {"node-a": 13000, "node-b": 13000}, \
        f"{limits}\n" + "\n".join(line for log in a.logs + b.logs if log.exists()
                                   for line in log.read_text().splitlines() if "config" in line)


# MARK: - 3. Redis killed and restarted with its data


@pytest.mark.parametrize("policy", ["fail-closed", "count-locally"])
def test_redis_killed_mid_load_and_restarted_with_its_aof(fleet, policy):
    redis = fleet.redis(aof=True)
    config = fleet_config(plain(redis))
    a = fleet.node("node-a", config, "--on-redis-loss", policy)
    b = fleet.node("node-b", config, "--on-redis-loss", policy)
    load = Load([a, b], body=SLOW_NOTE, workers=8)
    try:
        assert wait_for(lambda: sum(1 for r in load.since(0) if r.status == 200) >= 20, 10), load.replies[:3]
        killed = time.monotonic()
        redis.crash()
        # The outage: long enough for both policies to show.
        if policy == "fail-closed":
            assert wait_for(lambda: [r for r in load.since(killed + 0.2) if r.status == 503], 10), load.since(killed)[-5:]
        else:
            def counted_locally():
                line = status_line(status(a).stdout, "without redis")
                m = re.match(r"([\d.]+) s, ([\d.]+) units counted locally", line)
                return m and float(m.group(1)) > 0 and float(m.group(2)) > 0 and line
            line = wait_for(counted_locally, 10, step=0.2)
            assert line, status(a).stdout + status(a).stderr
        time.sleep(1.0)  # keep the load running against the outage for a while
        outage = [r for r in load.since(killed + 0.2) if r.ended is not None]
        redis.restart()
        restarted = time.monotonic()
        # Back within a few seconds, on both nodes.
        for node in (a, b):
            assert wait_for(lambda: any(r.status == 200 and r.node is node for r in load.since(restarted)), 8), \
                (node.name, load.since(restarted)[-5:], logs_of(a, b))
        back = {node.name: min(r.ended for r in load.since(restarted) if r.status == 200 and r.node is node)
                - restarted for node in (a, b)}
        time.sleep(1.0)
    finally:
        replies = load.stop()
    assert not load.errors, load.errors[:5]
    # Requests admitted before the kill and answered during the outage: their commits had to wait for Redis.
    across = [r for r in replies if r.status == 200 and r.started < killed < r.ended]
    assert across, "no request was in flight across the kill"
    during = [r for r in outage if r.started >= killed + 0.2]
    if policy == "fail-closed":
        refused = [r for r in during if r.status == 503]
        assert refused, during[:5]
        assert {r.status for r in replies} <= {200, 503}, {r.status for r in replies}
        for reply in refused:
            assert "Redis" in reply.message and f"127.0.0.1:{redis.port}" in reply.message, reply
            assert "cannot be reached" in reply.message or "unavailable" in reply.message, reply
    else:
        assert during and all(r.status == 200 for r in during), [r for r in during if r.status != 200][:5]
        assert all(r.status == 200 for r in replies), [r for r in replies if r.status != 200][:5]
    # No daemon died.
    for node in (a, b):
        assert all(d.process.poll() is None for d in node.daemons), (node.name, logs_of(node))

    # Everything the clients were answered is in Redis, once.
    clients = sum(r.tokens for r in replies)
    assert wait_for(lambda: redis_counter(redis, "signify-production")[0] >= clients, 15, step=0.3), \
        (redis_counter(redis, "signify-production"), clients, logs_of(a, b))
    time.sleep(2.5)  # a resend would come within 2 s: it must not count again
    used, _ = redis_counter(redis, "signify-production")
    assert used == clients, (used, clients, f"{len(replies)} replies, {sum(r.status == 200 for r in replies)} 200s")
    for node in (a, b):
        assert usage_row(node, "signify-production")["used"] == used
    print(f"{policy}: back after restart {back}; {len(replies)} replies ({len(across)} across the kill, "
          f"{len(during)} during the outage), {clients} tokens, all in Redis")
    if policy == "count-locally":
        line = status_line(status(b).stdout, "without redis")
        m = re.match(r"([\d.]+) s, ([\d.]+) units counted locally", line)
        assert m and float(m.group(1)) > 0, line
    codes = fleet.stop()
    assert set(codes.values()) == {0}, codes


# MARK: - 4. Redis restarted empty


def test_redis_restarted_empty_the_fleet_starts_again_from_zero_and_republishes_its_config(fleet):
    redis = fleet.redis()
    config = fleet_config(plain(redis))
    a = fleet.node("node-a", config)
    b = fleet.node("node-b", config)
    before = sum(post(n.url, NOTE, key="production-key").tokens for n in (a, b, a, b))
    assert wait_for(lambda: redis_counter(redis, "signify-production")[0] == before, 3)

    redis.restart()  # no AOF: empty
    assert redis.cli("DBSIZE") in ("0", "1", "2", "3", "4", "5")  # the nodes may have written already
    after = []
    for node in (a, b):
        reply = wait_for(lambda: (r := post(node.url, NOTE, key="production-key")).status == 200 and r, 10, step=0.1)
        assert reply, (node.name, post(node.url, NOTE, key="production-key"), logs_of(a, b))
        after.append(reply)
    after += [post(n.url, NOTE, key="production-key") for n in (a, b)]
    assert all(r.status == 200 for r in after), after
    spent_after = sum(r.tokens for r in after)

    # The config is published again, and every node ends up on the fleet's (new) version.
    assert wait_for(lambda: redis.cli("HGET", "budget:config", "version"), 5), redis.cli("KEYS", "*")
    # (Whether each node's own idea of the fleet version follows is checked by the test after this one.)
    version = int(redis.cli("HGET", "budget:config", "version"))
    assert version in (1, 2), version  # documented: the fleet config version starts again at 1 or 2

    def listed():
        statuses = [status_json(n)["fleet"] for n in (a, b)]
        return all(s["fleetVersion"] >= 1 and {x["name"] for x in s["nodes"]} == {"node-a", "node-b"}
                   for s in statuses) and statuses
    assert wait_for(listed, 5, step=0.2), (status(a).stdout, status(b).stdout)
    assert status_line(status(a).stdout, "fleet nodes") == "2"
    assert wait_for(lambda: redis_counter(redis, "signify-production")[0] == spent_after, 5), \
        (redis_counter(redis, "signify-production"), spent_after, before)
    for node in (a, b):
        assert usage_row(node, "signify-production")["used"] == spent_after


def test_after_redis_restarted_empty_a_sync_on_one_node_still_reaches_the_other(fleet):
    """A fleet with some config history (several syncs), then Redis restarted empty: the fleet config version
    starts again low, and a later sync must still travel."""
    redis = fleet.redis()
    a = fleet.node("node-a", fleet_config(plain(redis)))
    b = fleet.node("node-b", fleet_config(plain(redis)))
    assert wait_for(lambda: converged(redis, [a, b]), 5, step=0.2), status(a).stdout
    for limit in (11000, 12000, 13000):
        path = a.tmp / f"c{limit}.yaml"
        path.write_text(fleet_config(plain(redis), limits={"signify-basic": limit}))
        assert a.budgetctl("sync", str(path)).returncode == 0
        assert wait_for(lambda: usage_row(b, "signify-dev-team").get("limit") == limit, 3), usage_row(b, "signify-dev-team")
    history = wait_for(lambda: converged(redis, [a, b]), 3, step=0.2)
    assert history and history >= 4, history

    redis.restart()
    assert wait_for(lambda: redis.cli("HGET", "budget:config", "version"), 5), "the config was not re-published"
    assert wait_for(lambda: post(b.url, NOTE).status == 200, 10)
    path = a.tmp / "new.yaml"
    path.write_text(fleet_config(plain(redis), limits={"signify-basic": 13000},
                                 extra_consumers=[("signify-newcomer", "signify-basic", "new-team-key")]))
    out = a.budgetctl("sync", str(path))
    assert out.returncode == 0, out.stderr
    synced = time.monotonic()
    published = redis.cli("HGET", "budget:config", "version")
    served = wait_for(lambda: post(b.url, NOTE, key="new-team-key").status == 200 and time.monotonic(), 3)
    assert served, (f"node B never took the config synced on node A after Redis restarted empty (fleet version "
                    f"before the restart {history}, published after {published}, B says "
                    f"{status_json(b)['fleet']['fleetVersion']})\n{status(b).stdout}\n{logs_of(b)}")
    print(f"after the empty restart, B served the new key {served - synced:.3f} s after the sync")
    # And each node's status says the fleet's version, not the one from before the restart.
    assert wait_for(lambda: converged(redis, [a, b]), 3, step=0.2), \
        (redis.cli("HGET", "budget:config", "version"), [status_json(n)["fleet"]["fleetVersion"] for n in (a, b)])


# MARK: - 5. Misconfigured Redis


def test_wrong_password_is_reported_without_the_password_and_requests_get_503(fleet):
    redis = fleet.redis(args=("--requirepass", "the-right-secret"))
    secret = "wrong-pw-7f3a9c"
    node = fleet.node("node-a", fleet_config(plain(redis, password=secret)))  # the sync succeeded (Gateway checks)

    def unreachable():
        out = status(node)
        line = status_line(out.stdout, "redis")
        return "unreachable: " in line and (out, line)  # before the first attempt it says only "unreachable"
    got = wait_for(unreachable, 5, step=0.2)
    assert got, status(node).stdout
    out, line = got
    assert re.search(r"auth|WRONGPASS|password", line, re.I), line
    assert f"127.0.0.1:{redis.port}" in line, line
    reply = post(node.url, NOTE, key="dev-team-key")
    assert reply.status == 503 and "Redis" in reply.message and f"127.0.0.1:{redis.port}" in reply.message, reply
    assert re.search(r"auth|WRONGPASS|password", reply.message, re.I), reply
    everything = out.stdout + out.stderr + status(node).stdout + json.dumps(status_json(node)) + reply.text
    everything += logs_of(node)
    assert secret not in everything, "the configured password is shown"
    dump = node.budgetctl("dump")  # documented: "the file holds no secret"
    assert dump.returncode == 0 and "password" in dump.stdout and secret not in dump.stdout + dump.stderr
    assert node.controld.process.poll() is None and node.proxy.process.poll() is None


def test_ssl_against_a_plaintext_redis_is_a_clear_tls_error_and_503(fleet):
    redis = fleet.redis()
    node = fleet.node("node-a", fleet_config(plain(redis, ssl=True, ssl_verify=False)))

    def unreachable():
        line = status_line(status(node).stdout, "redis")
        return "unreachable: " in line and line  # before the first attempt it says only "unreachable"
    line = wait_for(unreachable, 8, step=0.2)
    assert line, status(node).stdout
    print("status:", line)
    assert re.search(r"TLS|SSL|handshake", line, re.I), line
    reply = wait_for(lambda: (r := post(node.url, NOTE, key="dev-team-key")).status != 200 and r, 5)
    assert reply and reply.status == 503, reply
    assert "Redis" in reply.message and f"127.0.0.1:{redis.port}" in reply.message, reply
    assert node.controld.process.poll() is None and node.proxy.process.poll() is None


# MARK: - 6. Sentinel failover


def test_sentinel_failover_moves_the_fleet_to_the_new_master(fleet):
    master = fleet.redis()
    replica = fleet.redis(args=("--replicaof", "127.0.0.1", str(master.port)))
    assert wait_for(lambda: "master_link_status:up" in replica.cli("INFO", "replication"), 10)
    sentinel = fleet.redis(sentinel_of=("m", master.port))

    def replica_ready():  # the sentinel knows the replica, connected and linked (else FAILOVER: NOGOODSLAVE)
        fields = sentinel.cli("SENTINEL", "replicas", "m").split("\n")
        info = dict(zip(fields[0::2], fields[1::2]))
        return info.get("flags") == "slave" and info.get("master-link-status") == "ok"
    assert wait_for(replica_ready, 15, step=0.2), sentinel.cli("SENTINEL", "replicas", "m")
    redis_block = {"sentinel_master": "m", "sentinel_role": "master",
                   "sentinel_nodes": [{"host": "127.0.0.1", "port": sentinel.port}]}
    a = fleet.node("node-a", fleet_config(redis_block))
    b = fleet.node("node-b", fleet_config(redis_block))
    before = [post(n.url, NOTE, key="production-key") for n in (a, b)]
    assert all(r.status == 200 for r in before), before
    first = sum(r.tokens for r in before)
    assert wait_for(lambda: redis_counter(master, "signify-production")[0] == first, 3)
    assert wait_for(lambda: status_json(a)["fleet"].get("redisAddress") == f"127.0.0.1:{master.port}", 5), \
        status(a).stdout

    assert sentinel.cli("SENTINEL", "FAILOVER", "m") == "OK"
    assert wait_for(lambda: sentinel.cli("SENTINEL", "get-master-addr-by-name", "m").split("\n")[-1]
                    == str(replica.port), 15, step=0.2)
    failed_over = time.monotonic()
    # Traffic keeps flowing; within ~15 s both nodes are on the new master (status shows its address).
    after = []
    moved = {}
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and len(moved) < 2:
        for node in (a, b):
            reply = post(node.url, NOTE, key="production-key")
            after.append(reply)
            if node.name not in moved and reply.status == 200 \
                    and status_json(node)["fleet"].get("redisAddress") == f"127.0.0.1:{replica.port}":
                moved[node.name] = round(time.monotonic() - failed_over, 1)
        time.sleep(0.2)
    assert len(moved) == 2, (f"after 15 s the nodes are still on the old master: {moved}; old master role "
                             f"{master.cli('ROLE').split()[0]}\n{status(a).stdout}\n{logs_of(a, b)}")
    for node in (a, b):
        reply = post(node.url, NOTE, key="production-key")
        assert reply.status == 200, reply
        after.append(reply)
    print(f"nodes on the new master after {moved} s; {sum(r.status == 200 for r in after)} requests served since")
    # Usage continues on the new master, from where the old one was, and nothing the clients got is lost.
    total = first + sum(r.tokens for r in after)
    got = wait_for(lambda: (u := redis_counter(replica, "signify-production")[0]) == total and u, 5)
    assert got, (f"new master counts {redis_counter(replica, 'signify-production')[0]}, the clients got {total} "
                 f"({first} before the failover); the old master (role {master.cli('ROLE').split()[0]}) counts "
                 f"{redis_counter(master, 'signify-production')[0]}")
    for node in (a, b):
        assert usage_row(node, "signify-production")["used"] == total


def test_a_stalled_redis_answers_within_the_deadline_and_leaves_no_holds(fleet):
    """Redis stopped (SIGSTOP) under load, fail-closed: a request waits at most about 1.5 s for it (the later ones
    are answered at once while the first call hangs), every refusal names Redis, and after SIGCONT the holds Redis
    granted to reservations that had already been answered 503 are released (they pinned the budget before)."""
    redis = fleet.redis()
    config = fleet_config(plain(redis), limits={"signify-enterprise": 1_000_000})
    a = fleet.node("node-a", config)
    load = Load([a], body=NOTE, workers=4)
    try:
        assert wait_for(lambda: sum(1 for r in load.since(0) if r.status == 200) >= 10, 10), load.replies[:3]
        stopped = time.monotonic()
        os.kill(redis.process.pid, signal.SIGSTOP)
        try:
            time.sleep(5)
        finally:
            os.kill(redis.process.pid, signal.SIGCONT)
        resumed = time.monotonic()
        assert wait_for(lambda: any(r.status == 200 for r in load.since(resumed)), 10), load.since(resumed)[-3:]
    finally:
        replies = load.stop()
    assert not load.errors, load.errors[:5]
    stalled = [r for r in replies if r.started >= stopped + 0.1 and r.ended is not None and r.ended <= resumed]
    refused = [r for r in stalled if r.status == 503]
    assert refused, stalled[:5]
    assert all("Redis" in r.message for r in refused), refused[:3]
    worst = max(r.ended - r.started for r in refused)
    assert worst < 1.9, f"a refusal took {worst:.2f} s"
    # Every token the clients got is counted once, and nothing stays held once all requests are done.
    total = sum(r.tokens for r in replies if r.status == 200)
    assert wait_for(lambda: redis_counter(redis, "signify-production") == (total, 0), 15), \
        (redis_counter(redis, "signify-production"), total)
