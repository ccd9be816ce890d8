# What the benchmark scripts share; sourced after `cd` to the repository's root.
#   work     a temporary directory, removed at exit
#   pids     the processes a script starts (append with pids+=($!)); killed and reaped at exit
#   free_port          a free loopback TCP port
#   wait_line FILE RE  waits up to 10 s for a line matching RE in FILE (prints FILE and fails otherwise)
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
