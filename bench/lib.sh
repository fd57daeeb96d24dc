# Shared by the benchmark scripts (sourced): a temporary directory and the
# background processes to stop on exit, whatever way the script ends.
# bench_init PREFIX: makes $tmp (/tmp/PREFIX.XXXXXX) and installs the traps.

pids=()

# True while pid runs (a zombie waiting to be reaped does not count).
alive() {
    local st
    st=$(sed -n 's/.*) \(.\).*/\1/p' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$st" ] && [ "$st" != Z ]
}

forget() {
    local p keep=()
    for p in "${pids[@]}"; do
        [ "$p" = "$1" ] || keep+=("$p")
    done
    pids=("${keep[@]}")
}

# Asks pid to stop, kills it after 5 s, and reaps it.
stop() {
    kill -TERM "$1" 2>/dev/null || true
    for _ in $(seq 50); do
        alive "$1" || break
        sleep 0.1
    done
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    forget "$1"
}

cleanup() {
    local p
    for p in "${pids[@]}"; do
        stop "$p"
    done
    rm -rf "$tmp"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

bench_init() {
    tmp=$(mktemp -d "/tmp/$1.XXXXXX")
    trap cleanup EXIT
    trap 'exit 130' INT TERM
}
