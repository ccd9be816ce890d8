#!/usr/bin/env bash
# The main job: the seed scenario end to end, on a private runtime directory and free ports.
#
#   make demo                      against the local Bedrock emulator
#   UPSTREAM=aws make demo         against real Bedrock (needs DECK_AWS_ACCESS_KEY_ID/DECK_AWS_SECRET_ACCESS_KEY)
#
# It starts bedrock-emulator, budget-controld and budget-proxyd, syncs examples/consumer-budgets/config.yaml,
# plays the scenario's README (one request per tier, the basic tier spent until 429, usage, reset), and stops
# everything it started, also on failure or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

CONFIG=${CONFIG:-release}
UPSTREAM=${UPSTREAM:-emulator}
bin=$(swift build -c "$CONFIG" --show-bin-path)

if [ -t 1 ]; then
    bold() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
else
    bold() { printf '\n== %s\n' "$*"; }
fi
say() { printf '%s\n' "$*"; }

run_dir=$(mktemp -d "${TMPDIR:-/tmp}/budget-demo.XXXXXX")
pids=()
cleanup() {
    local status=$?
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$run_dir"
    exit $status
}
trap cleanup EXIT INT TERM

wait_for_line() {  # file prefix -> prints the rest of the first line starting with prefix
    for _ in $(seq 300); do
        if line=$(grep -m1 "^$2" "$1" 2>/dev/null); then printf '%s' "${line#"$2"}"; return 0; fi
        sleep 0.1
    done
    say "timed out waiting for '$2' in $1:" >&2; cat "$1" >&2; return 1
}

build() {  # product -> builds it, saying every 15 s how far swift build has come; its output only on failure
    local product=$1 start=$SECONDS said=$SECONDS step="" line status
    local log="$run_dir/build-$product.log"
    set +e
    swift build -c "$CONFIG" --product "$product" 2>&1 | tee "$log" | while :; do
        IFS= read -r -t 15 line
        status=$?
        if [ "$status" = 0 ]; then
            case $line in "["*/*"]"*) step=${line%%]*} step=${step#[} ;; esac
        elif [ "$status" -le 128 ]; then
            break  # the end of swift build's output
        fi
        if ((SECONDS - said >= 15)); then
            said=$SECONDS
            say "  $product: ${step:+step ${step%/*} of ${step#*/}, }$((SECONDS - start)) s"
        fi
    done
    status=${PIPESTATUS[0]}
    set -e
    if [ "$status" != 0 ]; then
        say "swift build --product $product failed:" >&2
        tail -n 40 "$log" >&2
        exit "$status"
    fi
    say "  $product: built in $((SECONDS - start)) s"
}

bold "Building ($CONFIG)"
for product in budgetctl budget-controld budget-proxyd bedrock-emulator; do build "$product"; done
say "binaries in $bin"

mkdir -p "$run_dir/state"
export BUDGETCTL_SOCKET="$run_dir/admin.sock"
proxy_env=()
if [ "$UPSTREAM" = aws ]; then
    : "${DECK_AWS_ACCESS_KEY_ID:?UPSTREAM=aws needs DECK_AWS_ACCESS_KEY_ID}"
    : "${DECK_AWS_SECRET_ACCESS_KEY:?UPSTREAM=aws needs DECK_AWS_SECRET_ACCESS_KEY}"
    bold "Upstream: AWS Bedrock (us-east-1), with your DECK_AWS_* credentials"
else
    export DECK_AWS_ACCESS_KEY_ID=AKIDEXAMPLE
    export DECK_AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY
    "$bin/bedrock-emulator" --listen 127.0.0.1:0 >"$run_dir/emulator.out" 2>"$run_dir/emulator.log" &
    pids+=($!)
    emulator=$(wait_for_line "$run_dir/emulator.out" "listening on ")
    proxy_env=("AWS_ENDPOINT_URL_BEDROCK_RUNTIME=http://$emulator")
    bold "Upstream: the local Bedrock emulator on $emulator"
fi

"$bin/budget-controld" --state-dir "$run_dir/state" --control-socket "$run_dir/control.sock" \
    --admin-socket "$run_dir/admin.sock" --log-level warning 2>"$run_dir/controld.log" &
pids+=($!)
for _ in $(seq 100); do [ -S "$run_dir/admin.sock" ] && break; sleep 0.05; done
say "budget-controld: $("$bin/budgetctl" ping | sed -n 2p)"

bold "budgetctl sync examples/consumer-budgets/config.yaml"
"$bin/budgetctl" sync examples/consumer-budgets/config.yaml

env ${proxy_env[@]+"${proxy_env[@]}"} "$bin/budget-proxyd" --listen 127.0.0.1:0 --control-socket "$run_dir/control.sock" \
    --log-level warning >"$run_dir/proxy.out" 2>"$run_dir/proxy.log" &
pids+=($!)
proxy=$(wait_for_line "$run_dir/proxy.out" "listening on ")
url="http://$proxy/ai/budget"
say ""
say "budget-proxyd is listening on $proxy"

ask() {  # key body -> prints status, rate-limit headers and a short body
    local key=$1 body=$2
    curl -s -D "$run_dir/headers" -o "$run_dir/body" -X POST "$url" -H "Content-Type: application/json" \
        -H "apikey: $key" -d "$body"
    local status; status=$(head -1 "$run_dir/headers" | tr -d '\r')
    say "  $status"
    grep -i -E '^(x-ai-ratelimit|retry-after)' "$run_dir/headers" | tr -d '\r' | sed 's/^/  /'
}

hello='{"messages":[{"role":"user","content":"Hello"}]}'
essay='{"messages":[{"role":"user","content":"Write a 2000 word essay about renewable energy."}]}'
for tier in "Basic:dev-team-key" "Premium:analytics-key" "Enterprise:production-key"; do
    bold "${tier%%:*} tier: apikey ${tier#*:}"
    ask "${tier#*:}" "$hello"
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("  reply:", r["choices"][0]["message"]["content"][:70], "| usage:", r["usage"]["total_tokens"], "tokens")' "$run_dir/body"
done

bold "Exhausting the Basic tier (10,000 tokens a day) with the essay prompt"
for attempt in $(seq 1 10); do
    say "request $attempt:"
    ask dev-team-key "$essay"
    if head -1 "$run_dir/headers" | grep -q " 429"; then
        say "  body: $(cat "$run_dir/body")"
        break
    fi
done

bold "The other tiers still pass"
ask analytics-key "$hello"
ask production-key "$hello"

bold "budgetctl usage"
"$bin/budgetctl" usage

bold "budgetctl reset --select-tag signify-demo --force"
"$bin/budgetctl" reset --select-tag signify-demo --force

bold "Stopping"
for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
for pid in "${pids[@]}"; do wait "$pid" || { say "a daemon exited with $?"; exit 1; }; done
pids=()
say "all daemons stopped cleanly"
