#!/usr/bin/env bash
# Scale: a config of 100,000 consumers in 3 groups. Measures the sync time, the time for budget-proxyd to
# receive and compile the snapshot (start to "listening on"), the proxy's RSS idle and with 1,000 open
# connections, the control plane's RSS, the time until one rotated key is served (from the start and from the
# return of its sync), and three resyncs of the same file. Usage: bench/scale.sh [CONSUMERS]
set -euo pipefail
cd "$(dirname "$0")/.."
consumers=${1:-100000}
source bench/lib.sh
build_programs
rss() { awk '/VmRSS/ {printf "%.1f MiB", $2/1024}' "/proc/$1/status"; }
elapsed() { awk -v from="$1" -v to="$2" 'BEGIN { printf "%.2f", to - from }'; }

python3 - "$consumers" >"$work/config.yaml" <<'PY'
import sys
n = int(sys.argv[1])
groups = ["basic", "premium", "enterprise"]
limits = {"basic": 10000, "premium": 50000, "enterprise": 200000}
print('_format_version: "3.0"\n_info: {select_tags: [scale]}')
print("services:\n  - name: llm\n    host: bedrock-runtime.us-east-1.amazonaws.com\n    routes:\n      - name: chat\n"
      "        paths: [/ai/budget]\n        plugins:\n          - name: key-auth\n          - name: ai-proxy\n"
      "            config:\n              route_type: llm/v1/chat\n              auth: {aws_access_key_id: AKIDEXAMPLE, "
      "aws_secret_access_key: wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY}\n              model: {provider: bedrock, "
      "name: anthropic.claude-3-haiku-20240307-v1:0, options: {bedrock: {aws_region: us-east-1}}}")
print("consumer_groups:")
for group in groups:
    print(f"  - name: {group}\n    plugins:\n      - name: ai-rate-limiting-advanced\n        config:\n"
          f"          llm_providers: [{{name: bedrock, limit: [{limits[group]}], window_size: [86400]}}]")
print("consumers:")
for i in range(n):
    print(f"  - username: user-{i}\n    groups: [{{name: {groups[i % 3]}}}]\n    keyauth_credentials: [{{key: key-{i}-secret}}]")
PY
echo "config: $consumers consumers, $(du -h "$work/config.yaml" | cut -f1)"
echo "phases of a sync, in one process (budget-bench sync-phases):"
"$bin/budget-bench" sync-phases "$work/config.yaml" | sed 's/^/  /'

mkdir -p "$work/state"
"$bin/bedrock-emulator" --listen 127.0.0.1:0 >"$work/emu.out" &
pids+=($!)
"$bin/budget-controld" --state-dir "$work/state" --control-socket "$work/control.sock" --admin-socket "$work/admin.sock" \
    --log-level warning &
controld=$!
pids+=($controld)
for _ in $(seq 100); do [ -S "$work/admin.sock" ] && break; sleep 0.05; done
sleep 0.5
start=$(date +%s.%N)
"$bin/budgetctl" sync "$work/config.yaml" --socket "$work/admin.sock" | grep "Created:"
end=$(date +%s.%N)
first_sync=$(elapsed "$start" "$end")
printf 'sync of %d consumers: %.2f s\n' "$consumers" "$first_sync"
printf 'budget-controld RSS after sync: %s\n' "$(rss $controld)"

emulator=$(sed 's/listening on //' "$work/emu.out")
start=$(date +%s.%N)
AWS_ENDPOINT_URL_BEDROCK_RUNTIME="http://$emulator" "$bin/budget-proxyd" --listen 127.0.0.1:0 \
    --control-socket "$work/control.sock" --log-level warning >"$work/proxy.out" &
proxy=$!
pids+=($proxy)
for _ in $(seq 600); do grep -q "listening on" "$work/proxy.out" 2>/dev/null && break; sleep 0.05; done
end=$(date +%s.%N)
printf 'snapshot to a new proxy (connect, receive, compile, listen): %.2f s\n' "$(elapsed "$start" "$end")"
address=$(sed -n 's/listening on //p' "$work/proxy.out")
sleep 1
printf 'budget-proxyd RSS idle: %s\n' "$(rss $proxy)"
status=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://$address/ai/budget" -H "apikey: key-$((consumers - 1))-secret" \
    -d '{"messages":[{"role":"user","content":"Hello"}]}')
echo "a request as the last consumer: HTTP $status"
python3 - "$address" "$proxy" <<'PY'
import socket, sys, time
host, port = sys.argv[1].split(":")
sockets = []
for _ in range(1000):
    s = socket.create_connection((host, int(port)))
    s.sendall(b"GET /ai/budget HTTP/1.1\r\nHost: x\r\n\r\n")
    sockets.append(s)
for s in sockets:
    s.recv(4096)
time.sleep(1)
rss = next(line for line in open(f"/proc/{sys.argv[2]}/status") if line.startswith("VmRSS")).split()[1]
print(f"budget-proxyd RSS with 1,000 open connections: {int(rss) / 1024:.1f} MiB")
PY

# A change to one consumer of many: the sync (which dumps and plans against the whole stored config) and the
# time until the proxy honours it, from the start of the sync and from its return (the control plane pushes the
# change as a delta since protocol 5; before, the whole snapshot, which the proxy decoded and compiled again).
sed 's/key: key-0-secret}/key: key-0-rotated}/' "$work/config.yaml" >"$work/config2.yaml"
start=$(date +%s.%N)
"$bin/budgetctl" sync "$work/config2.yaml" --socket "$work/admin.sock" | grep -E "^(creating|deleting|updating)" | sed 's/^/  /'
synced=$(date +%s.%N)
for _ in $(seq 1500); do
    status=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://$address/ai/budget" -H "apikey: key-0-rotated" \
        -d '{"messages":[{"role":"user","content":"Hello"}]}')
    [ "$status" = 200 ] && break
    sleep 0.005
done
rotated_status=$status
end=$(date +%s.%N)
rotated_after_return=$(awk -v from="$synced" -v to="$end" 'BEGIN { printf "%.3f", to - from }')
printf 'one key rotated among %d consumers: sync %.2f s; proxy serving the new key %.2f s after the sync began, %.3f s after it returned\n' \
    "$consumers" "$(elapsed "$start" "$synced")" "$(elapsed "$start" "$end")" "$(awk -v from="$synced" -v to="$end" 'BEGIN { printf "%.3f", to - from }')"
old_key_status=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://$address/ai/budget" -H "apikey: key-0-secret" \
    -d '{"messages":[{"role":"user","content":"Hello"}]}')
echo "the old key afterwards: HTTP $old_key_status"

# The same file again: nothing to change, so the cost is reading the file, the dump of the stored config and the
# plan. Three runs (this VM's speed moves from minute to minute): the row is their median and names all three.
resyncs=()
for _ in 1 2 3; do
    start=$(date +%s.%N)
    # A sync that fails ends the script (set -e): it is not timed as a resync.
    out=$("$bin/budgetctl" sync "$work/config2.yaml" --socket "$work/admin.sock")
    end=$(date +%s.%N)
    # Nor is one that changed something: the row claims a resync with nothing to change.
    if grep -E "^(creating|deleting|updating)" <<<"$out"; then
        echo "the resync changed the config; it was to change nothing" >&2
        exit 1
    fi
    resyncs+=("$(elapsed "$start" "$end")")
done
resync=$(printf '%s\n' "${resyncs[@]}" | sort -n | sed -n 2p)
printf 'resync of the same %d consumers (nothing to change), three runs: %s s; median %.2f s\n' "$consumers" "${resyncs[*]}" "$resync"
if [ -n "${BENCH_ROWS:-}" ]; then
    # The rotation row counts as failed (non-200: 1) unless the new key got a 200 and the old one a 401.
    rotation_bad=$([ "$rotated_status" = 200 ] && [ "$old_key_status" = 401 ] && echo 0 || echo 1)
    cat >>"$BENCH_ROWS" <<ROWS
{"measure": "sync of $consumers consumers", "value": $first_sync, "unit": "s", "better": "lower", "target": 10, "non200": 0}
{"measure": "one key rotated among $consumers consumers: served after its sync returned", "value": $rotated_after_return, "unit": "s", "better": "lower", "target": 0.25, "non200": $rotation_bad}
{"measure": "resync of $consumers consumers with nothing to change (median of 3 runs: ${resyncs[*]} s)", "value": $resync, "unit": "s", "better": "lower", "target": 2, "non200": 0}
ROWS
fi
printf 'RSS at the end: budget-controld %s, budget-proxyd %s\n' "$(rss $controld)" "$(rss $proxy)"
