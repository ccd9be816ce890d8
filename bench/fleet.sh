#!/usr/bin/env bash
# strategy: redis against strategy: local, side by side in one run (issue 14):
#   control plane: reserve+commit pairs/s over the control socket (budget-bench, one pair per frame, 64 in
#     flight), on a plugin counted in this node's store, then on one counted in the fleet's Redis
#   proxy: wrk through budget-proxyd with the example config, strategy local, then strategy redis
# Every server (emulator, controld, proxy, redis-server) runs on core 0 and the load on core 1, as in macro.sh.
# Every proxied answer must be a 200 and every reservation admitted, else the run fails.
# Usage: bench/fleet.sh [SECONDS] [CONNECTIONS]      Results: bench/results/fleet-*.md
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-5}
connections=${2:-64}
command -v redis-server >/dev/null || { echo "redis-server is missing: apt-get install -y redis-server"; exit 1; }
source bench/lib.sh
build_programs
export DECK_AWS_ACCESS_KEY_ID=AKIDEXAMPLE DECK_AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY

redis_port=$(free_port)
# Every write on disk before Redis answers, as the guarantees need (budget-controld(8)).
taskset -c 0 redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly yes --appendfsync always \
    --dir "$work" >"$work/redis.out" &
pids+=($!)
for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.05; done

start_emulator "$bin"

# The example config with limits no run can spend, as local and as redis.
sed -E 's/limit: \[[0-9, ]+\]/limit: [1000000000000]/' examples/consumer-budgets/config.yaml >"$work/local.yaml"
sed -E "s/^( *)strategy: local.*/\1strategy: redis\n\1sync_rate: 0\n\1redis: {host: 127.0.0.1, port: $redis_port}/" \
    "$work/local.yaml" >"$work/redis.yaml"
grep -q "strategy: redis" "$work/redis.yaml" || { echo "bench/fleet.sh: no plugin was switched to redis" >&2; exit 1; }

start_stack() {  # name config
    mkdir -p "$work/$1"
    taskset -c 0 "$bin/budget-controld" --state-dir "$work/$1" --control-socket "$work/$1/control.sock" \
        --admin-socket "$work/$1/admin.sock" --log-level warning &
    pids+=($!)
    controld=$!
    for _ in $(seq 100); do [ -S "$work/$1/admin.sock" ] && break; sleep 0.05; done
    "$bin/budgetctl" sync "$2" --socket "$work/$1/admin.sock" >/dev/null
    AWS_ENDPOINT_URL_BEDROCK_RUNTIME="http://$emulator" taskset -c 0 "$bin/budget-proxyd" --listen 127.0.0.1:0 \
        --control-socket "$work/$1/control.sock" --log-level warning >"$work/$1/proxy.out" &
    pids+=($!)
    proxy_pid=$!
    wait_line "$work/$1/proxy.out" "listening on"
    proxy=$(sed -n 's/listening on //p' "$work/$1/proxy.out")
    sleep 0.5
}
stop_stack() {  # the proxy first, so that it does not log the control plane's going
    kill "$proxy_pid" 2>/dev/null || true; wait "$proxy_pid" 2>/dev/null || true
    kill "$controld" 2>/dev/null || true; wait "$controld" 2>/dev/null || true
}

chat='{"messages":[{"role":"user","content":"Hello"}]}'
wrk_run() {  # out address
    BENCH_PATH=/ai/budget BENCH_BODY=$chat BENCH_APIKEY=production-key BENCH_OUT=/dev/null \
        taskset -c 1 wrk -t1 -c8 -d1s -s bench/request.lua "http://$2" >/dev/null
    BENCH_PATH=/ai/budget BENCH_BODY=$chat BENCH_APIKEY=production-key BENCH_OUT="$work/$1.json" \
        taskset -c 1 wrk -t1 -c"$connections" -d"${seconds}s" -s bench/request.lua "http://$2" >/dev/null
    cat "$work/$1.json"
}
pairs() {  # socket plugin
    local line
    # A run that budget-bench calls not valid (a reservation refused) fails the script, as before.
    line=$(taskset -c 1 "$bin/budget-bench" control --socket "$1" --seconds "$seconds" --in-flight 64 --batch 1 \
        --plugin "$2") || { echo "$line" >&2; return 1; }
    # To stderr through the shell's own descriptor: `tee /dev/stderr` reopens the file when stderr is one
    # (`make bench >log 2>&1`), and truncated everything the run had logged before.
    echo "$line" >&2
    sed -E 's/.*: ([0-9]+) reserve\+commit pairs\/s.*/\1/' <<<"$line"
}

start_stack local "$work/local.yaml"
local_pairs=$(pairs "$work/local/control.sock" bench)
local_wrk=$(wrk_run local "$proxy")
stop_stack
start_stack redis "$work/redis.yaml"
curl -sf -o /dev/null -H 'apikey: production-key' -H 'content-type: application/json' -d "$chat" "http://$proxy/ai/budget"
plugin=$(redis-cli -p "$redis_port" --scan --pattern 'budget:c:*' | head -1 | sed -E 's/^budget:c:([^|]*)\|.*/\1/')
[ -n "$plugin" ] || { echo "bench/fleet.sh: no counter in Redis after the warm-up" >&2; exit 1; }
redis_pairs=$(pairs "$work/redis/control.sock" "$plugin")
redis_wrk=$(wrk_run redis "$proxy")
# The same with Redis writing its log at once but syncing it to disk once a second (Redis's default): what
# survives a kill -9 of Redis, as budget-controld's SQLite (synchronous=normal) does; "always" also survives
# power loss.
redis-cli -p "$redis_port" config set appendfsync everysec >/dev/null
everysec_pairs=$(pairs "$work/redis/control.sock" "$plugin")
everysec_wrk=$(wrk_run redis-everysec "$proxy")
stop_stack

mkdir -p "$results"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
python3 - "$stamp" "$seconds" "$connections" "$config" "$local_pairs" "$redis_pairs" "$local_wrk" "$redis_wrk" "$results" \
    "$everysec_pairs" "$everysec_wrk" <<'PY'
import json, sys
stamp, seconds, connections, config = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
local_pairs, redis_pairs = float(sys.argv[5]), float(sys.argv[6])
local_wrk, redis_wrk, results = json.loads(sys.argv[7]), json.loads(sys.argv[8]), sys.argv[9]
everysec_pairs, everysec_wrk = float(sys.argv[10]), json.loads(sys.argv[11])
lines = [f"# strategy redis against local, {stamp} ({config} build)", "",
         f"Servers (emulator, controld, proxy, redis-server) on core 0, load on core 1; {seconds} s each. Redis with "
         "appendonly yes and appendfsync always (an fsync before each reply), then everysec (survives a kill -9 of "
         "Redis, as budget-controld's SQLite store at synchronous=normal does).", "",
         "| measure | local | redis, always | ratio | redis, everysec | ratio | non-200 (local, always, everysec) |",
         "|---|---:|---:|---:|---:|---:|---|",
         f"| reserve+commit pairs/s (1 per frame, 64 in flight) | {local_pairs:.0f} | {redis_pairs:.0f} | "
         f"{redis_pairs / local_pairs:.2f} | {everysec_pairs:.0f} | {everysec_pairs / local_pairs:.2f} | - |",
         f"| proxy req/s, {connections} connections | {local_wrk['rps']:.0f} | {redis_wrk['rps']:.0f} | "
         f"{redis_wrk['rps'] / local_wrk['rps']:.2f} | {everysec_wrk['rps']:.0f} | {everysec_wrk['rps'] / local_wrk['rps']:.2f} | "
         f"{local_wrk['non200']}, {redis_wrk['non200']}, {everysec_wrk['non200']} |",
         f"| proxy p99 ms | {local_wrk['p99_ms']:.2f} | {redis_wrk['p99_ms']:.2f} | | {everysec_wrk['p99_ms']:.2f} | | |"]
bad = [row for row in (local_wrk, redis_wrk, everysec_wrk) if row["non200"] or row["non2xx"] or row["errors"]]
import os
if os.environ.get("BENCH_ROWS"):
    def failures(row): return row["non200"] + row["non2xx"] + row["errors"]
    with open(os.environ["BENCH_ROWS"], "a") as out:
        for row in [
            {"measure": "reserve+commit pairs/s through Redis (always)", "value": redis_pairs, "unit": "pairs/s",
             "baseline": "local store", "baseline_value": local_pairs, "non200": 0},
            {"measure": "proxy req/s, strategy redis (always)", "value": redis_wrk["rps"], "unit": "req/s",
             "baseline": "strategy local", "baseline_value": local_wrk["rps"], "non200": failures(redis_wrk)},
        ]:
            out.write(json.dumps(row) + "\n")
if bad:
    lines += ["", "**Not valid: answers other than 200 (or socket errors).**"]
text = "\n".join(lines) + "\n"
open(f"{results}/fleet-{stamp}.md", "w").write(text)
print(text)
sys.exit(1 if bad else 0)
PY
