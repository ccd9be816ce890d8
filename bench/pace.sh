#!/usr/bin/env bash
# bench/pace.sh [SECONDS] [FRACTION...]: what a request costs each process, and what each front adds to the
# p99, as the pace falls from the proxy's maximum rate to a fraction of it.
#   The proxy's maximum rate is measured first (wrk, 64 connections, no pause). Then, for each FRACTION of it
#   (default: 1 0.5 0.25 0.1; 1 is the maximum again, no pause), four setups at the same pace, one after the
#   other: (e) the emulator alone, (n) nginx, (h) the bare SwiftNIO relay (budget-bench relay) and (f)
#   budget-proxyd with budget-controld in front of the emulator. The same setups as macro.sh's half-rate
#   rounds, at more paces, with every process's CPU: user+system time over the requests answered.
#   A front's added p99 is its p99 less the emulator's alone at the same pace.
# CPUs: wrk on core 1; every server on core 0. Every answer must be a 200 (wrk threads' counters read in done(),
# wrk's own non-2xx and socket-error counts): the run exits 1 otherwise, after printing what it measured.
# Every tier's limit is raised past what a run can spend.
# Usage: bench/pace.sh [SECONDS] [FRACTION...]   Results: bench/results/pace-*.md and .json
# CONFIG=debug runs the debug build (for the smoke test only: its figures mean nothing). PACE_APIKEY replaces the
# proxy's API key (production-key); the smoke test sends an unknown one to see the run fail on its 401s.
# Not part of make bench: four setups at four paces take about three minutes at 8 s a run.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-8}
[[ $seconds =~ ^[1-9][0-9]{0,4}$ ]] || { echo "pace.sh: SECONDS is a whole number from 1 to 99999, got '$seconds'" >&2; exit 2; }
shift || true
given=("$@")
[ ${#given[@]} -gt 0 ] || given=(1 0.5 0.25 0.1)
# Each FRACTION as Python writes the number (".5" becomes 0.5), so that it goes into the JSON as it is.
fractions=()
for fraction in "${given[@]}"; do
    fractions+=("$(python3 -c "import sys; f=float(sys.argv[1]); sys.exit(1) if not 0 < f <= 1 else print(f)" "$fraction" 2>/dev/null)") ||
        { echo "pace.sh: a FRACTION is a number in (0, 1], got '$fraction'" >&2; exit 2; }
done
connections=64
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk"; exit 1; }
command -v nginx >/dev/null || { echo "nginx is missing: apt-get install -y nginx"; exit 1; }
source bench/lib.sh
build_programs

start_emulator "$bin"

# nginx in front of the emulator: one worker, keep-alive upstream, no logging.
start_nginx "$emulator"

# The bare NIO relay in front of the same emulator, on the same core.
start_relay "$emulator"

raise_limits examples/consumer-budgets/config.yaml "$work/config.yaml"
start_gateway gateway "$bin" "$emulator" "$work/config.yaml"

converse='{"messages":[{"role":"user","content":[{"text":"Hello"}]}]}'
chat='{"messages":[{"role":"user","content":"Hello"}]}'
apikey=${PACE_APIKEY:-production-key}
model_path='/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse'

# run NAME ADDRESS PATH BODY APIKEY PROCESS...: one wrk run; prints its JSON with "cpu_ticks" added, each
# PROCESS (name=pid) with its ticks over the run.
run() {
    local name=$1 address=$2 path=$3 body=$4 key=$5
    shift 5
    local before=() process
    for process in "$@"; do before+=("$(cpu_ticks "${process#*=}")"); done
    rm -f "$work/$name.json"
    # set -e does not reach into $(run ...): a failed wrk returns from here, and the caller's assignment fails.
    BENCH_PATH=$path BENCH_BODY=$body BENCH_APIKEY=$key BENCH_OUT="$work/$name.json" \
        taskset -c 1 wrk -t1 -c"$connections" -d"${seconds}s" -s bench/request.lua "http://$address" >"$work/wrk.out" 2>&1 ||
        { echo "pace.sh: wrk failed against $name:" >&2; cat "$work/wrk.out" >&2; return 1; }
    local ticks="" i=0
    for process in "$@"; do
        ticks+="${ticks:+, }\"${process%%=*}\": $(( $(cpu_ticks "${process#*=}") - before[i] ))"
        i=$((i + 1))
    done
    python3 -c "import json,sys; r=json.load(open(sys.argv[1])); r['cpu_ticks']=json.loads(sys.argv[2]); print(json.dumps(r))" \
        "$work/$name.json" "{$ticks}"
}

# Warm-up of every path, then the proxy's maximum rate.
for target in "$emulator $model_path $converse" "127.0.0.1:$nginx_port $model_path $converse" \
    "$relay $model_path $converse"; do
    set -- $target
    BENCH_PATH=$2 BENCH_BODY=$3 BENCH_APIKEY="" BENCH_OUT=/dev/null taskset -c 1 wrk -t1 -c8 -d1s -s bench/request.lua "http://$1" >/dev/null
done
BENCH_PATH=/ai/budget BENCH_BODY=$chat BENCH_APIKEY=$apikey BENCH_OUT=/dev/null \
    taskset -c 1 wrk -t1 -c8 -d1s -s bench/request.lua "http://$gateway_address" >/dev/null
maximum=$(run proxy-max "$gateway_address" /ai/budget "$chat" "$apikey")

paces="["
for fraction in "${fractions[@]}"; do
    # The mean pause that holds 64 connections at FRACTION of the maximum (as macro.sh's half rate); none at 1.
    delay=$(python3 -c "import json,sys; r=json.loads(sys.argv[1])['rps']; f=float(sys.argv[2]); print(0 if f >= 1 else max(1, round($connections * 1000 / (r * f) - 1)))" "$maximum" "$fraction")
    if [ "$delay" = 0 ]; then unset BENCH_DELAY_MS; else export BENCH_DELAY_MS=$delay; fi
    e=$(run "emulator-$fraction" "$emulator" "$model_path" "$converse" "" emulator=$emulator_pid)
    n=$(run "nginx-$fraction" "127.0.0.1:$nginx_port" "$model_path" "$converse" "" nginx=$nginx_worker emulator=$emulator_pid)
    h=$(run "relay-$fraction" "$relay" "$model_path" "$converse" "" relay=$relay_pid emulator=$emulator_pid)
    f=$(run "proxy-$fraction" "$gateway_address" /ai/budget "$chat" "$apikey" \
        proxy=$gateway_pid controld=$gateway_controld_pid emulator=$emulator_pid)
    [ "$paces" = "[" ] || paces+=", "
    paces+="{\"fraction\": $fraction, \"delay_ms\": $delay, \"emulator\": $e, \"nginx\": $n, \"relay\": $h, \"proxy\": $f}"
done
paces+="]"
unset BENCH_DELAY_MS

mkdir -p "$results"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
python3 - "$stamp" "$seconds" "$connections" "$maximum" "$paces" "$results" "$config" "$(getconf CLK_TCK)" <<'PY'
import json, sys
stamp, seconds, connections = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
maximum, paces, results, config = json.loads(sys.argv[4]), json.loads(sys.argv[5]), sys.argv[6], sys.argv[7]
hz = int(sys.argv[8])
fronts = ("emulator", "nginx", "relay", "proxy")
bad = []
for run in [maximum] + [pace[who] for pace in paces for who in fronts]:
    run["cpu_us_per_request"] = {name: round(ticks / hz * 1e6 / max(1, run["requests"]), 1)
                                 for name, ticks in run["cpu_ticks"].items()}
for pace in paces:
    for who in fronts:
        run = pace[who]
        run["added_p99_ms"] = None if who == "emulator" else round(run["p99_ms"] - pace["emulator"]["p99_ms"], 3)
        if run["requests"] == 0 or run["non200"] or run["non2xx"] or run["errors"]:
            bad.append(f"{who} at {pace['fraction']:g}: {run['requests']} requests, {run['non200']} non-200 "
                       f"(wrk: {run['non2xx']} non-2xx, {run['errors']} socket errors)")
if maximum["requests"] == 0 or maximum["non200"] or maximum["non2xx"] or maximum["errors"]:
    bad.append(f"the proxy's maximum rate: {maximum['non200']} non-200, {maximum['errors']} socket errors")
summary = {"stamp": stamp, "config": config, "seconds": seconds, "connections": connections,
           "proxy_maximum": maximum, "paces": paces}
base = f"{results}/pace-{stamp}"
with open(base + ".json", "w") as out:
    json.dump(summary, out, indent=2)
names = {"emulator": "(e) emulator alone", "nginx": "(n) nginx -> emulator", "relay": "(h) bare NIO relay -> emulator",
         "proxy": "(f) budget-proxyd -> emulator"}
lines = [f"# bench/pace.sh {seconds} {' '.join(format(p['fraction'], 'g') for p in paces)} ({config} build, {stamp})", "",
         f"The proxy's maximum rate: {maximum['rps']:,.0f} req/s ({maximum['non200']} non-200). Each pace is a fraction of it; "
         "the four setups run one after the other at the same pace. CPU: user+system time over requests answered; "
         "every server on core 0, wrk on core 1.", "",
         "| pace | setup | req/s | p50 ms | p99 ms | added p99 ms | front µs/req | controld µs/req | emulator µs/req | non-200 | socket errors |",
         "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
for pace in paces:
    for who in fronts:
        run = pace[who]
        cpu = run["cpu_us_per_request"]
        added = "-" if run["added_p99_ms"] is None else f"{run['added_p99_ms']:+.2f}"
        front = "-" if who == "emulator" else f"{cpu[who]:.1f}"
        controld = f"{cpu['controld']:.1f}" if "controld" in cpu else "-"
        lines.append(f"| {pace['fraction']:g} (pause {pace['delay_ms']} ms) | {names[who]} | {run['rps']:,.0f} | "
                     f"{run['p50_ms']:.2f} | {run['p99_ms']:.2f} | {added} | {front} | {controld} | "
                     f"{cpu['emulator']:.1f} | {run['non200']} | {run['errors']} |")
if bad:
    lines += ["", "**Not valid**: answers other than 200 (or socket errors): " + "; ".join(bad)]
with open(base + ".md", "w") as out:
    out.write("\n".join(lines) + "\n")
print("\n".join(lines))
print(f"\nwritten: {base}.md, {base}.json")
sys.exit(1 if bad else 0)
PY
