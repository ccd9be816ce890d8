#!/usr/bin/env bash
# Reserve+commit pairs per second over budget-controld's control socket, from one pipelining client,
# with durable group commit (every commit acknowledged after SQLite has it).
# Usage: bench/control-throughput.sh [SECONDS]
# CONTROLD_BIN=path measures another budget-controld build (a baseline) with this build's client.
# budget-controld runs on core 0 and the client on core 1 (taskset), so they never share a CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-5}
swift build -c release --product budget-controld >/dev/null
swift build -c release --product budget-bench >/dev/null
bin=$(swift build -c release --show-bin-path)
work=$(mktemp -d)
mkdir -p "$work/state"
trap 'kill "${pid:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
taskset -c 0 "${CONTROLD_BIN:-$bin/budget-controld}" --state-dir "$work/state" --control-socket "$work/control.sock" \
    --admin-socket "$work/admin.sock" --log-level warning &
pid=$!
for _ in $(seq 100); do [ -S "$work/control.sock" ] && break; sleep 0.05; done
for setting in "64 1" "256 1" "64 16" "16 64"; do
    set -- $setting
    line=$(taskset -c 1 "$bin/budget-bench" control --socket "$work/control.sock" --seconds "$seconds" \
        --in-flight "$1" --batch "$2")
    echo "$line"
    if [ -n "${BENCH_ROWS:-}" ] && [ "$setting" = "64 1" ]; then
        pairs=$(sed -E 's/.*: ([0-9]+) reserve\+commit pairs\/s.*/\1/' <<<"$line")
        echo "{\"measure\": \"control plane reserve+commit pairs/s (1 per frame, 64 in flight)\", \"value\": $pairs, \"unit\": \"pairs/s\", \"target\": 50000, \"non200\": 0}" >>"$BENCH_ROWS"
    fi
done
