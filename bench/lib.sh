# What the benchmark scripts share; sourced after `cd` to the repository's root.
#   work     a temporary directory, removed at exit
#   pids     the processes a script starts (append with pids+=($!)); killed and reaped at exit
#   free_port          a free loopback TCP port
#   wait_line FILE RE  waits up to 10 s for a line matching RE in FILE (prints FILE and fails otherwise)
#   raise_limits SOURCE DEST  the config SOURCE with every tier's every limit raised past what a run can spend
#   start_gateway NAME BIN_DIR EMULATOR CONFIG  budget-controld (config CONFIG synced) and budget-proxyd of
#                      BIN_DIR on core 0, in $work/NAME, forwarding to EMULATOR (host:port); sets gateway_address
#                      (the proxy's host:port), gateway_pid (the proxy's) and gateway_controld_pid
#   start_emulator BIN_DIR  bedrock-emulator of BIN_DIR on core 0, one thread, not re-checking signatures (the
#                      proxy still signs every request; the interop tests prove the signatures against a checking
#                      emulator); sets emulator (its host:port) and emulator_pid
#   build_programs     builds the five programs (release, or CONFIG=debug) and sets config, bin (their directory)
#                      and results (BENCH_RESULTS, or bench/results)
#   start_nginx EMULATOR  nginx on core 0 as a plain reverse proxy in front of EMULATOR (host:port): one worker,
#                      keep-alive upstream, no logging; sets nginx_port and nginx_worker (the worker's pid)
#   cpu_ticks PID      a process's user+system CPU so far, in clock ticks (all its threads, ended ones too)
#   start_relay EMULATOR  the bare SwiftNIO relay (budget-bench relay, from $bin) on core 0 in front of EMULATOR;
#                      sets relay (its host:port) and relay_pid
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

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

build_programs() {
    config=${CONFIG:-release}
    for program in bedrock-emulator budget-controld budget-proxyd budgetctl budget-bench; do
        swift build -c "$config" --product "$program" >/dev/null
    done
    bin=$(swift build -c "$config" --show-bin-path)
    results=${BENCH_RESULTS:-bench/results}
}

start_emulator() {
    taskset -c 0 "$1/bedrock-emulator" --listen 127.0.0.1:0 --threads 1 --no-verify >"$work/emu.out" 2>&1 &
    emulator_pid=$!
    pids+=($emulator_pid)
    wait_line "$work/emu.out" "listening on"
    emulator=$(sed 's/listening on //' "$work/emu.out")
}

start_nginx() {
    nginx_port=$(free_port)
    mkdir -p "$work/nginx"
    cat >"$work/nginx/nginx.conf" <<NGINX
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $work/nginx/body;
    proxy_temp_path $work/nginx/proxy;
    upstream emulator { server $1; keepalive 128; }
    server {
        listen 127.0.0.1:$nginx_port;
        location / {
            proxy_pass http://emulator;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
NGINX
    taskset -c 0 nginx -c "$work/nginx/nginx.conf" -g 'daemon off;' &
    pids+=($!)
    for _ in $(seq 100); do [ -s "$work/nginx/nginx.pid" ] && break; sleep 0.05; done
    nginx_worker=$(pgrep -P "$(cat "$work/nginx/nginx.pid" 2>/dev/null)" | head -1 || true)
    [ -n "$nginx_worker" ] || { echo "nginx's worker did not start"; cat "$work/nginx/error.log"; return 1; }
}

start_relay() {
    taskset -c 0 "$bin/budget-bench" relay --upstream "$1" >"$work/relay.out" 2>&1 &
    relay_pid=$!
    pids+=($relay_pid)
    wait_line "$work/relay.out" "listening on"
    relay=$(sed 's/listening on //' "$work/relay.out")
}
