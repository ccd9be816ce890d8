#!/usr/bin/env bash
# Reserve+commit pairs per second over budget-controld's control socket, from one pipelining client,
# with durable group commit (every commit acknowledged after SQLite has it).
# Usage: bench/control-throughput.sh [SECONDS]
# After a 2-s warm-up: three runs at one pair a frame and 64 in flight (the row of make bench is their median),
# then one each at 256 in flight, and at 16 and 64 pairs a frame.
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
# The first seconds of a fresh control plane create its counters and rows: a 2-s warm-up first, not counted.
taskset -c 1 "$bin/budget-bench" control --socket "$work/control.sock" --seconds 2 --in-flight 64 --batch 1 |
    sed 's/^/warm-up: /'
# The target's setting, three runs: this VM's speed moves from minute to minute, so the row is their median, and
# the row names all three.
runs=()
for _ in 1 2 3; do
    line=$(taskset -c 1 "$bin/budget-bench" control --socket "$work/control.sock" --seconds "$seconds" \
        --in-flight 64 --batch 1)
    echo "$line"
    runs+=("$(sed -E 's/.*: ([0-9]+) reserve\+commit pairs\/s.*/\1/' <<<"$line")")
done
for setting in "256 1" "64 16" "16 64"; do
    set -- $setting
    taskset -c 1 "$bin/budget-bench" control --socket "$work/control.sock" --seconds "$seconds" \
        --in-flight "$1" --batch "$2"
done
if [ -n "${BENCH_ROWS:-}" ]; then
    median=$(printf '%s\n' "${runs[@]}" | sort -n | sed -n 2p)
    echo "{\"measure\": \"control plane reserve+commit pairs/s (1 per frame, 64 in flight; median of 3 runs: ${runs[*]})\", \"value\": $median, \"unit\": \"pairs/s\", \"target\": 50000, \"non200\": 0}" >>"$BENCH_ROWS"
fi
