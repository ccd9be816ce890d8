#!/usr/bin/env bash
# Two builds of budget-proxyd side by side, in one run, on one machine: a change against its baseline.
#   bench/compare-builds.sh BASE_BIN_DIR NEW_BIN_DIR [SECONDS] [CONNECTIONS] [ROUNDS]
# Each build gets its own budget-controld with every tier's limit raised far beyond what a run can spend, so
# every answer is a real proxied 200; both proxies share one emulator (signatures not checked). wrk on core 1,
# every server on core 0. Rounds alternate which build goes first. Per run: req/s, p50/p99, wrk's own count of
# non-2xx answers and socket errors (kept by wrk in C, so no Lua state can hide them), and the proxy's CPU per
# request (utime+stime from /proc over requests answered). Exits 1 if any answer was not a 2xx.
# Then the control planes: durable reserve+commit pairs/s, the same client (NEW's budget-bench) against each.
set -euo pipefail
cd "$(dirname "$0")/.."
base=$1; new=$2; seconds=${3:-10}; connections=${4:-64}; rounds=${5:-2}
for tool in wrk taskset; do command -v $tool >/dev/null || { echo "$tool is missing"; exit 1; }; done
. bench/lib.sh

start_emulator "$new"
raise_limits examples/consumer-budgets/config.yaml "$work/config.yaml"
for name in base new; do
    bin=$base; [ $name = new ] && bin=$new
    start_gateway "$name" "$bin" "$emulator" "$work/config.yaml"
    echo "$gateway_pid" >"$work/$name/pid"
done
cat >"$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = os.getenv("BODY")
wrk.headers["Content-Type"] = "application/json"
wrk.headers["apikey"] = "production-key"
LUA
plain='{"messages":[{"role":"user","content":"Hello"}]}'
stream='{"messages":[{"role":"user","content":"Hello"}],"stream":true}'
failed=0
run() {  # name kind body
    local address pid before after out requests
    address=$(sed -n 's/listening on //p' "$work/$1/proxy.out")
    pid=$(cat "$work/$1/pid")
    before=$(awk '{print $14+$15}' "/proc/$pid/stat")
    out=$(BODY=$3 taskset -c 1 wrk -t1 -c"$connections" -d"${seconds}s" --latency -s "$work/post.lua" \
        "http://$address/ai/budget")
    after=$(awk '{print $14+$15}' "/proc/$pid/stat")
    requests=$(echo "$out" | awk '/requests in/ {print $1}')
    WRK_OUT=$out python3 - "$1" "$2" "$requests" "$before" "$after" "$(getconf CLK_TCK)" <<'PY'
import os, re, sys
name, kind, requests, before, after, tick = sys.argv[1], sys.argv[2], int(sys.argv[3]), *map(int, sys.argv[4:])
out = os.environ["WRK_OUT"]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
def ms(p):
    value, unit = re.search(p + r"\s+([\d.]+)(us|ms|s)\b", out).groups()
    return float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]
non2xx = int((re.search(r"Non-2xx or 3xx responses: (\d+)", out) or [0, 0])[1])
errors = sum(map(int, re.findall(r"(?:connect|read|write|timeout) (\d+)", out)))
cpu = (after - before) / tick * 1e6 / max(1, requests)
print(f"| {name} | {kind} | {rps:,.0f} | {ms('50%'):.2f} | {ms('99%'):.2f} | {non2xx} | {errors} | {cpu:.0f} |")
sys.exit(1 if non2xx or errors else 0)
PY
}
for name in base new; do
    BODY=$plain taskset -c 1 wrk -t1 -c8 -d2s -s "$work/post.lua" \
        "http://$(sed -n 's/listening on //p' "$work/$name/proxy.out")/ai/budget" >/dev/null
done
echo "wrk -c$connections, ${seconds} s a run; wrk on core 1, servers on core 0"
echo
echo "| build | body | req/s | p50 ms | p99 ms | non-2xx | socket errors | proxy CPU µs/request |"
echo "|---|---|---:|---:|---:|---:|---:|---:|"
for round in $(seq "$rounds"); do
    order="base new"; [ $((round % 2)) = 0 ] && order="new base"
    for kind in plain stream; do
        body=$plain; [ $kind = stream ] && body=$stream
        for name in $order; do run "$name" "$kind" "$body" || failed=1; done
    done
done

if [ -x "$new/budget-bench" ]; then
    echo
    echo "| build | in flight | pairs per frame | reserve+commit pairs/s |"
    echo "|---|---:|---:|---:|"
    for name in base new; do
        bin=$base; [ $name = new ] && bin=$new
        mkdir -p "$work/ctl-$name/state"
        taskset -c 0 "$bin/budget-controld" --state-dir "$work/ctl-$name/state" \
            --control-socket "$work/ctl-$name/c.sock" --admin-socket "$work/ctl-$name/a.sock" --log-level warning &
        pid=$!
        pids+=($pid)
        for _ in $(seq 100); do [ -S "$work/ctl-$name/c.sock" ] && break; sleep 0.05; done
        for setting in "64 1" "256 1" "64 16"; do
            set -- $setting
            rate=$(taskset -c 1 "$new/budget-bench" control --socket "$work/ctl-$name/c.sock" --seconds 5 \
                --in-flight "$1" --batch "$2" | tail -n 1 | sed -E 's/.*: ([0-9]+) reserve.*/\1/')
            echo "| $name | $1 | $2 | $rate |"
        done
        kill "$pid"
    done
fi
exit $failed
