#!/usr/bin/env bash
# Non-streaming throughput of bedrock-emulator with wrk, signature checking on and off.
# Usage: bench/emulator-throughput.sh [SECONDS] [CONNECTIONS]
# The emulator gets one core (taskset -c 0, one event-loop thread) and wrk the other (taskset -c 1),
# so the two never compete for a CPU and runs are comparable on this 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10}
connections=${2:-64}
bin=$(swift build -c release --show-bin-path)
swift build -c release --product bedrock-emulator >/dev/null
work=$(mktemp -d)
trap 'kill "${pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT

run() {  # $1 = label, rest = emulator flags
    local label=$1; shift
    taskset -c 0 "$bin/bedrock-emulator" --listen 127.0.0.1:0 --threads 1 "$@" >"$work/out" &
    pid=$!
    for _ in $(seq 50); do grep -q listening "$work/out" && break; sleep 0.1; done
    local address; address=$(sed 's/listening on //' "$work/out")
    python3 bench/sign_request.py "$address" >"$work/request.lua"
    local result
    result=$(taskset -c 1 wrk -t1 -c"$connections" -d"${duration}s" --latency -s "$work/request.lua" "http://$address")
    kill "$pid"; wait "$pid" 2>/dev/null || true
    local rps p50 p99
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$result")
    p50=$(awk '$1=="50%" {print $2}' <<<"$result")
    p99=$(awk '$1=="99%" {print $2}' <<<"$result")
    local errors; errors=$(grep -E "Non-2xx|Socket errors" <<<"$result" || true)
    printf '| %-22s | %10s | %8s | %8s | %s\n' "$label" "$rps" "$p50" "$p99" "${errors:-no errors} |"
}

echo "| emulator (1 core)      |      req/s |      p50 |      p99 | errors |"
echo "|------------------------|-----------:|---------:|---------:|--------|"
run "signatures checked"
run "signatures not checked" --no-verify
