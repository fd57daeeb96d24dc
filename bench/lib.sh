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

# The median of the numbers on standard input, one a line.
median() {
    sort -g | awk '{v[NR] = $1} END {if (NR) print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}

# figure NAME COLUMN: the median of one column of $tmp/runs over the rows
# whose first field is NAME (rows: name round figures...).
figure() {
    awk -v n="$1" -v c="$2" '$1 == n {print $c}' "$tmp/runs" | median
}

# ratio COLUMN: the median over rounds of spindle's value over nginx's.
ratio() {
    awk -v c="$1" '$1 == "spindle" {s[$2] = $c} $1 == "nginx" {n[$2] = $c}
        END {for (r in s) if (n[r] > 0) print s[r] / n[r]}' "$tmp/runs" | median
}

# Nanoseconds pid's threads have spent on a CPU.
cpu_ns() {
    cat /proc/"$1"/task/*/schedstat | awk '{s += $1} END {printf "%.0f\n", s}'
}

# Nanoseconds CPU $1 has been busy (anyone, steal included) since boot.
cpu_busy_ns() {
    awk -v cpu="cpu$1" -v hz="$(getconf CLK_TCK)" \
        '$1 == cpu {printf "%.0f\n", ($2 + $3 + $4 + $7 + $8 + $9) * 1e9 / hz}' /proc/stat
}

# check_quiet NAME CPU...: warns (as NAME) about each CPU already more than
# 10% busy: other processes share it, and the figures will be noisy.
check_quiet() {
    local name=$1 b0 b1 t0 t1 cpu
    shift
    for cpu in "$@"; do
        b0=$(cpu_busy_ns "$cpu")
        t0=$(date +%s%N)
        sleep 1
        b1=$(cpu_busy_ns "$cpu")
        t1=$(date +%s%N)
        awk -v b="$((b1 - b0))" -v t="$((t1 - t0))" -v cpu="$cpu" -v name="$name" 'b / t > 0.1 {
            printf "%s: warning: CPU %d is %.0f%% busy before the run: figures will be noisy\n",
                name, cpu, 100 * b / t}' >&2 </dev/null
    done
}

bench_init() {
    tmp=$(mktemp -d "/tmp/$1.XXXXXX")
    trap cleanup EXIT
    trap 'exit 130' INT TERM
}
