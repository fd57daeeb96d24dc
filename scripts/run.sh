#!/usr/bin/env bash
# Sets everything up, builds Spindle and runs the main program: the example
# HTTP server apps/hello on 127.0.0.1:8080 (extra arguments go to it, e.g.
# --port 9090 --workers 2; Ctrl-C or SIGTERM stops it gracefully).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build/release -j "$(nproc)"
exec build/release/hello --host 127.0.0.1 --port 8080 "$@"
