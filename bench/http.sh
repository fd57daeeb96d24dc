#!/usr/bin/env bash
# Spindle's apps/hello against nginx under wrk, in one run. Each server runs
# one worker pinned to CPU 0, wrk (one thread) is pinned to CPU 1; rounds
# alternate between the servers (ABBA order, so drift hits both alike), a
# round that other processes disturbed is run again, and every figure is a
# median. Prints one `name value` line per figure on stdout, progress on
# stderr. Ratios are medians of the per-round ratios.
#
# Usage: bench/http.sh [--quick] [--rounds N] [--duration S] [--connections N]
#                      [--idle-conns N]
#   --quick is 2 rounds of 3 s; the environment may set ROUNDS (5), DURATION
#   (10 s), CONNECTIONS (256), IDLE_CONNS (10000; 0 skips the memory test).
# Figures: req/s, p99 latency, server CPU time per request (from
# /proc/PID/task/*/schedstat), resident memory per idle keep-alive connection
# (bench/idle_conns.py). Traffic goes to 127.0.0.1 only.
set -euo pipefail
self=$(realpath "$0")
cd "$(dirname "$self")/.."

rounds=${ROUNDS:-5}
duration=${DURATION:-10}
connections=${CONNECTIONS:-256}
idle_conns=${IDLE_CONNS:-10000}
server_cpu=0
client_cpu=1

usage() {
    sed -n '9,15s/^# \{0,1\}//p' "$self"
}

die() {
    echo "http.sh: $*" >&2
    exit 1
}

while [ $# -gt 0 ]; do
    case $1 in
    --quick) rounds=2 duration=3 ;;
    --rounds) rounds=${2:?}; shift ;;
    --duration) duration=${2:?}; shift ;;
    --connections) connections=${2:?}; shift ;;
    --idle-conns) idle_conns=${2:?}; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
    esac
    shift
done
for v in rounds duration connections idle_conns; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number, not '${!v}'"
done
if [ "$rounds" -lt 1 ] || [ "$duration" -lt 1 ] || [ "$connections" -lt 1 ]; then
    die "rounds, duration and connections must be at least 1"
fi

for tool in wrk nginx taskset python3 curl cmake ninja; do
    command -v "$tool" >/dev/null || die "$tool not found: run scripts/install-deps.sh as root"
done
[ "$(nproc --all)" -ge 2 ] || die "needs 2 CPUs: the servers on CPU $server_cpu, wrk on CPU $client_cpu"

# 10,000 idle connections need as many descriptors in the server and the client.
hard=$(ulimit -Hn)
[ "$hard" = unlimited ] && hard=1048576
ulimit -n "$hard"
need=$((idle_conns + connections + 256))
[ "$hard" -ge "$need" ] || die "needs $need open files, the hard limit is $hard (raise it or lower --idle-conns)"

echo "http.sh: building apps/hello (Release) in build/bench" >&2
cmake -S . -B build/bench -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/bench --target hello >/dev/null
hello=build/bench/hello

# shellcheck source=bench/lib.sh
source bench/lib.sh
bench_init spindle-bench

# Runs a command in the background, remembered for cleanup; waits for it.
run_bounded() {
    "$@" &
    local p=$!
    pids+=("$p")
    local rc=0
    wait "$p" || rc=$?
    forget "$p"
    return "$rc"
}

answers() {
    [ "$(curl -s --noproxy '*' --max-time 2 "http://127.0.0.1:$1/" 2>/dev/null)" = "Hello, World!" ]
}

# Sets server_pid and server_port.
start_spindle() {
    : >"$tmp/hello.log"
    taskset -c "$server_cpu" "$hello" --host 127.0.0.1 --port 0 --workers 1 >"$tmp/hello.log" 2>&1 &
    server_pid=$!
    pids+=("$server_pid")
    server_port=
    for _ in $(seq 50); do
        server_port=$(sed -n 's|.*127\.0\.0\.1:\([0-9]*\)/.*|\1|p' "$tmp/hello.log")
        [ -n "$server_port" ] && break
        alive "$server_pid" || die "hello exited: $(cat "$tmp/hello.log")"
        sleep 0.1
    done
    if [ -z "$server_port" ] || ! answers "$server_port"; then
        die "hello does not answer: $(cat "$tmp/hello.log")"
    fi
}

start_nginx() {
    server_port=$(free_port)
    local dir="$tmp/nginx-$server_port"
    mkdir -p "$dir"
    sed -e "s|@PREFIX@|$dir|g" -e "s|@PORT@|$server_port|g" \
        -e "s|@WORKER_CONNECTIONS@|$(((idle_conns + connections) * 9 / 8 + 1024))|g" \
        bench/nginx.conf.in >"$dir/nginx.conf"
    taskset -c "$server_cpu" nginx -c "$dir/nginx.conf" -p "$dir/" >"$dir/stderr.log" 2>&1 &
    server_pid=$!
    pids+=("$server_pid")
    for _ in $(seq 50); do
        answers "$server_port" && return 0
        alive "$server_pid" || break
        sleep 0.1
    done
    die "nginx does not answer: $(cat "$dir/stderr.log" "$dir/error.log" 2>/dev/null)"
}

# bench NAME PID PORT SECONDS ROUND: one wrk run; ROUND 0 is a warm-up and is
# not recorded. Appends "name round rps p99_ms cpu_us_per_req cpu_load
# others_load" to $tmp/pair, the last being what other processes took of the
# server's CPU.
bench() {
    local name=$1 pid=$2 port=$3 secs=$4 round=$5
    local c0 t0 b0 c1 t1 b1
    b0=$(cpu_busy_ns "$server_cpu")
    c0=$(cpu_ns "$pid")
    t0=$(date +%s%N)
    run_bounded taskset -c "$client_cpu" wrk -t1 -c"$connections" -d"${secs}s" --latency \
        "http://127.0.0.1:$port/" >"$tmp/wrk.out" 2>&1 || die "wrk failed: $(cat "$tmp/wrk.out")"
    t1=$(date +%s%N)
    c1=$(cpu_ns "$pid")
    b1=$(cpu_busy_ns "$server_cpu")
    alive "$pid" || die "$name died during the run"
    [ "$round" -eq 0 ] && return 0
    if grep -qE 'Socket errors|Non-2xx' "$tmp/wrk.out"; then
        echo "http.sh: $name round $round: $(grep -E 'Socket errors|Non-2xx' "$tmp/wrk.out" | tr -s ' ')" >&2
    fi
    awk -v name="$name" -v round="$round" -v cpu="$((c1 - c0))" -v wall="$((t1 - t0))" \
        -v busy="$((b1 - b0))" '
        /requests in/ { reqs = $1 }
        /^Requests\/sec:/ { rps = $2 }
        $1 == "99%" {
            v = $2
            if (v ~ /us$/) { sub(/us$/, "", v); p99 = v / 1000 }
            else if (v ~ /ms$/) { sub(/ms$/, "", v); p99 = v + 0 }
            else if (v ~ /s$/) { sub(/s$/, "", v); p99 = v * 1000 }
            else if (v ~ /m$/) { sub(/m$/, "", v); p99 = v * 60000 }
        }
        END {
            if (!reqs || p99 == "") { print "unparsable wrk output" > "/dev/stderr"; exit 1 }
            others = (busy - cpu) / wall
            printf "%s %d %.0f %.3f %.3f %.3f %.3f\n", name, round, rps, p99, cpu / 1000 / reqs,
                cpu / wall, (others > 0 ? others : 0)
        }' "$tmp/wrk.out" >>"$tmp/pair" || die "cannot read wrk's output: $(cat "$tmp/wrk.out")"
    tail -n1 "$tmp/pair" | awk '{printf "http.sh: round %d %-7s %8d req/s  p99 %6.2f ms  %6.2f us CPU/req  CPU load %.2f (others %.2f)\n", $2, $1, $3, $4, $5, $6, $7}' >&2
}

# round N: one run of each server, in ABBA order over the rounds. If other
# processes took more than 3% of the server's CPU during either run, the
# pair is run again (three tries at most, keeping the least disturbed):
# req/s and latency depend on it.
round() {
    local r=$1 try noisy best=
    for try in 1 2 3; do
        : >"$tmp/pair"
        if [ $((r % 2)) -eq 1 ]; then
            bench spindle "$spindle_pid" "$spindle_port" "$duration" "$r"
            bench nginx "$nginx_pid" "$nginx_port" "$duration" "$r"
        else
            bench nginx "$nginx_pid" "$nginx_port" "$duration" "$r"
            bench spindle "$spindle_pid" "$spindle_port" "$duration" "$r"
        fi
        noisy=$(awk '$7 > m {m = $7} END {print m + 0}' "$tmp/pair")
        if [ -z "$best" ] || awk -v a="$noisy" -v b="$best" 'BEGIN {exit !(a < b)}'; then
            best=$noisy
            cp "$tmp/pair" "$tmp/best"
        fi
        awk -v a="$noisy" 'BEGIN {exit !(a <= 0.03)}' && break
        if [ "$try" -lt 3 ]; then
            echo "http.sh: round $r: other processes used CPU $server_cpu, running it again" >&2
        else
            echo "http.sh: round $r: still disturbed after 3 tries, keeping the least disturbed" >&2
        fi
    done
    cat "$tmp/best" >>"$tmp/runs"
}

echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc --all) CPUs ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1)), kernel $(uname -r), $(nginx -v 2>&1 | sed 's|.*: ||'), load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo "# $rounds rounds of ${duration} s, $connections connections, wrk -t1 on CPU $client_cpu, servers on CPU $server_cpu" >&2

check_quiet http.sh "$server_cpu" "$client_cpu"
start_spindle
spindle_pid=$server_pid spindle_port=$server_port
start_nginx
nginx_pid=$server_pid nginx_port=$server_port

: >"$tmp/runs"
bench spindle "$spindle_pid" "$spindle_port" 2 0
bench nginx "$nginx_pid" "$nginx_port" 2 0
for r in $(seq "$rounds"); do
    round "$r"
done
stop "$spindle_pid"
stop "$nginx_pid"

printf 'spindle_rps %.0f\n' "$(figure spindle 3)"
printf 'nginx_rps %.0f\n' "$(figure nginx 3)"
printf 'ratio_rps %.3f\n' "$(ratio 3)"
printf 'spindle_p99_ms %.2f\n' "$(figure spindle 4)"
printf 'nginx_p99_ms %.2f\n' "$(figure nginx 4)"
printf 'spindle_cpu_us_per_req %.2f\n' "$(figure spindle 5)"
printf 'nginx_cpu_us_per_req %.2f\n' "$(figure nginx 5)"
printf 'ratio_cpu %.3f\n' "$(ratio 5)"
printf 'spindle_cpu_load %.2f\n' "$(figure spindle 6)"
printf 'nginx_cpu_load %.2f\n' "$(figure nginx 6)"
printf 'others_cpu_load %.2f\n' "$(awk '{print $7}' "$tmp/runs" | median)"

# Memory per idle keep-alive connection, each server freshly started so that
# what wrk's connections left in its heap does not count.
if [ "$idle_conns" -gt 0 ]; then
    for name in spindle nginx; do
        "start_$name"
        run_bounded taskset -c "$client_cpu" python3 bench/idle_conns.py --pid "$server_pid" \
            --port "$server_port" --count "$idle_conns" >"$tmp/idle.out" ||
            die "idle connection test against $name failed"
        stop "$server_pid"
        figure=idle_conn_rss_bytes
        [ "$name" = nginx ] && figure=nginx_$figure
        echo "$figure $(awk '$1 == "rss_bytes_per_conn" {print $2}' "$tmp/idle.out")"
    done
fi
