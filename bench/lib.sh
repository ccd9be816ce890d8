# What the benchmark scripts share; sourced after `cd` to the repository's root.
#   work     a temporary directory, removed at exit
#   pids     the processes a script starts (append with pids+=($!)); killed and reaped at exit
#   free_port          a free loopback TCP port
#   wait_line FILE RE  waits up to 10 s for a line matching RE in FILE (prints FILE and fails otherwise)
#   raise_limits SOURCE DEST  the config SOURCE with every tier's every limit raised past what a run can spend
#   start_gateway NAME BIN_DIR EMULATOR CONFIG  budget-controld (config CONFIG synced) and budget-proxyd of
#                      BIN_DIR on core 0, in $work/NAME, forwarding to EMULATOR (host:port); sets gateway_address
#                      (the proxy's host:port), gateway_pid (the proxy's) and gateway_controld_pid
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_line() { for _ in $(seq 200); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done; cat "$1"; return 1; }
raise_limits() {
    sed -E 's/limit: \[[0-9, ]+\]/limit: [1000000000000]/' "$1" >"$2"
    if grep -E 'limit: \[' "$2" | grep -vq 'limit: \[1000000000000\]'; then
        echo "a limit in $1 was not raised" >&2
        return 1
    fi
}
start_gateway() {
    local dir="$work/$1"
    mkdir -p "$dir/state"
    taskset -c 0 "$2/budget-controld" --state-dir "$dir/state" --control-socket "$dir/c.sock" \
        --admin-socket "$dir/a.sock" --log-level warning >"$dir/controld.out" 2>&1 &
    gateway_controld_pid=$!
    pids+=($gateway_controld_pid)
    for _ in $(seq 100); do [ -S "$dir/a.sock" ] && break; sleep 0.05; done
    DECK_AWS_ACCESS_KEY_ID=AKIDEXAMPLE DECK_AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY \
        "$2/budgetctl" sync "$4" --socket "$dir/a.sock" >/dev/null
    AWS_ENDPOINT_URL_BEDROCK_RUNTIME="http://$3" taskset -c 0 "$2/budget-proxyd" --listen 127.0.0.1:0 \
        --control-socket "$dir/c.sock" --log-level warning >"$dir/proxy.out" 2>&1 &
    gateway_pid=$!
    pids+=($gateway_pid)
    wait_line "$dir/proxy.out" "listening on"
    gateway_address=$(sed -n 's/listening on //p' "$dir/proxy.out")
}
