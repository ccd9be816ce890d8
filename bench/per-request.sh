#!/usr/bin/env bash
# What budget-proxyd does per proxied request, counted rather than timed (so this VM's speed does not matter):
#   bench/per-request.sh BIN_DIR [plain|stream] [SECONDS]
# Starts the emulator (signatures not checked), budget-controld and budget-proxyd from BIN_DIR (a release build)
# with every tier's limit raised so that every answer is a 200, drives the proxy with wrk (64 connections), and
# counts for SECONDS, with perf's uprobes and syscall tracepoints on the proxy alone: malloc calls, Swift
# Concurrency jobs run (swift_job_run), reference counting (swift_retain, swift_release) and system calls, each divided by the requests served, which a uprobe on
# ProxyService.handle counts. Needs root (perf probe) and linux-perf. Uprobes slow the proxy down; the counts
# per request do not depend on it. Exits 1 unless every answer was a 200 (bench/request.lua counts statuses).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(cd "$1" && pwd); kind=${2:-plain}; seconds=${3:-2}
for tool in wrk taskset perf nm; do command -v $tool >/dev/null || { echo "$tool is missing"; exit 1; }; done
. bench/lib.sh
group="budgetbench$$"
trap 'perf probe -q -d "$group:*" 2>/dev/null || true; cleanup' EXIT

start_emulator "$bin"
raise_limits examples/consumer-budgets/config.yaml "$work/config.yaml"
start_gateway gateway "$bin" "$emulator" "$work/config.yaml"
proxy_pid=$gateway_pid
address=$gateway_address

# The probes: ProxyService.handle (its specialization for the channel's sink), malloc, swift_job_run.
nm "$bin/budget-proxyd" >"$work/symbols"
handle=$(awk '/ t .*ProxyServiceC6handle_4sinkyAA0C7RequestV_AA12ResponseSink_pt.*Tg5$/ && !found {print $1; found=1}' \
    "$work/symbols")
[ -n "$handle" ] || { echo "ProxyService.handle not found in $bin/budget-proxyd"; exit 1; }
ldd "$bin/budget-proxyd" >"$work/libraries"
libc=$(awk '$1 == "libc.so.6" {print $3}' "$work/libraries")
concurrency=$(awk '$1 == "libswift_Concurrency.so" {print $3}' "$work/libraries")
core=$(awk '$1 == "libswiftCore.so" {print $3}' "$work/libraries")
perf probe -q -x "$bin/budget-proxyd" -a "$group:handle=0x$handle"
perf probe -q -x "$libc" -a "$group:malloc=malloc"
perf probe -q -x "$concurrency" -a "$group:job=swift_job_run"
perf probe -q -x "$core" -a "$group:retain=swift_retain"
perf probe -q -x "$core" -a "$group:release=swift_release"

case $kind in
plain) body='{"messages":[{"role":"user","content":"Hello"}]}' ;;
stream) body='{"messages":[{"role":"user","content":"Hello"}],"stream":true}' ;;
*) echo "kind is plain or stream"; exit 1 ;;
esac
BENCH_PATH=/ai/budget BENCH_BODY=$body BENCH_APIKEY=production-key BENCH_OUT="$work/wrk.json" taskset -c 1 \
    wrk -t1 -c64 -d"$((seconds + 3))s" -s bench/request.lua "http://$address" >/dev/null 2>&1 &
wrk_pid=$!
sleep 1
perf stat -x, -o "$work/counts" -p "$proxy_pid" \
    -e "$group:handle,$group:malloc,$group:job,$group:retain,$group:release" \
    -e syscalls:sys_enter_read,syscalls:sys_enter_write,syscalls:sys_enter_writev \
    -e syscalls:sys_enter_epoll_ctl,syscalls:sys_enter_epoll_wait -- sleep "$seconds"
wait $wrk_pid
python3 - "$work/counts" "$kind" <<'PY'
import sys
counts = {}
for line in open(sys.argv[1]):
    fields = line.strip().split(",")
    if len(fields) > 2 and fields[0].isdigit():
        counts[fields[2].split(":", 1)[-1]] = int(fields[0])
requests = counts.pop("handle", 0)
if requests == 0:
    sys.exit("no request was served while counting")
print(f"budget-proxyd, {sys.argv[2]} requests: {requests} served while counting")
print("| per request | count |")
print("|---|---:|")
names = {"malloc": "malloc calls", "job": "Swift Concurrency jobs run", "retain": "swift_retain calls",
         "release": "swift_release calls"}
for name, value in counts.items():
    label = names.get(name, name.replace("sys_enter_", "system call "))
    print(f"| {label} | {value / requests:.2f} |")
PY
# Every answer of the run, the counted seconds included, must be a 200 (request.lua counts each status).
python3 - "$work/wrk.json" <<'PY'
import json, sys
run = json.load(open(sys.argv[1]))
if run["requests"] == 0 or run["non200"] or run["non2xx"] or run["errors"]:
    sys.exit(f"not every answer was a 200 ({run}): the counts are not of proxied requests")
PY
