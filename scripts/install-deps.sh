#!/usr/bin/env bash
# Installs every Debian 12 package Spindle needs to build, test and benchmark.
# Idempotent: packages already present are left alone; run as root.
set -euo pipefail

PKGS=(
    build-essential cmake ninja-build pkg-config clang clang-format
    libclang-rt-14-dev
    libevent-dev libcmocka-dev node-llhttp libwslay-dev libssl-dev
    python3 curl wrk nginx-light valgrind procps
)

missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing packages: ${missing[*]}; run this script as root" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
