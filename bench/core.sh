#!/usr/bin/env bash
# Runs bench_core several times and prints the median of each figure, one
# `name value` line each. Usage: bench/core.sh [runs] [tasks]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh
runs=${1:-5}
tasks=${2:-100000}
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build/release --target bench_core >/dev/null
out=$(for _ in $(seq "$runs"); do build/release/bench_core "$tasks"; done)
for name in $(echo "$out" | awk '{print $1}' | sort -u); do
    echo "$name $(echo "$out" | awk -v n="$name" '$1 == n {print $2}' | median)"
done
