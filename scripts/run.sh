#!/usr/bin/env bash
# Installs what is missing, builds the release binary and runs the daemon in the foreground with
# its built-in defaults (echo on 127.0.0.1:7000, admin on 127.0.0.1:9100). Extra arguments go to
# slabd: run.sh --max-connections 500 --threads 1
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh run
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)" --target slabd slabd-load
exec ./build/release/server/slabd "$@"
