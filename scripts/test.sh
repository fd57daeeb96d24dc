#!/usr/bin/env bash
# Sets everything up and runs the whole test suite twice: a normal build with
# gcc and -Werror, then an AddressSanitizer + UndefinedBehaviorSanitizer build
# with clang (also -Werror). Exits non-zero if anything fails.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh

jobs=$(nproc)
run_suite() {
    local dir=$1 cc=$2; shift 2
    cmake -S . -B "$dir" -G Ninja -DCMAKE_C_COMPILER="$cc" -DSP_WERROR=ON "$@" >/dev/null
    cmake --build "$dir" -j "$jobs"
    (cd "$dir" && ctest --output-on-failure -j "$jobs")
}

echo "== normal build (gcc, -Werror) =="
run_suite build/release gcc -DCMAKE_BUILD_TYPE=RelWithDebInfo
echo "== sanitizer build (clang, ASan + UBSan, -Werror) =="
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    run_suite build/asan clang -DCMAKE_BUILD_TYPE=Debug -DSP_SANITIZE=ON
