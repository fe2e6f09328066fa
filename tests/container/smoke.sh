#!/usr/bin/env bash
# Smoke test of a built slabd, run by the Dockerfile's build stage (and usable on any build):
#   tests/container/smoke.sh BIN_DIR CONFIG
# BIN_DIR holds slabd and slabd-load; CONFIG is the file the server and its probe both read (the
# image's /etc/slabd/slabd.toml). Checks --version, --help, --check-config of deploy/slabd.toml
# and of CONFIG, then starts slabd with CONFIG, waits for `slabd --probe /healthz` (the image's
# HEALTHCHECK command), sends three echoes with slabd-load, and stops it with SIGTERM: exit 0 and
# the drain in its log. Needs ports 7000 and 9100 free on 127.0.0.1 (a build container's own
# loopback). About 1 s.
set -euo pipefail
bin=${1:?usage: smoke.sh BIN_DIR CONFIG}
config=${2:?usage: smoke.sh BIN_DIR CONFIG}
cd "$(dirname "$0")/../.."
slabd=$bin/slabd
load=$bin/slabd-load
fail() { echo "smoke: FAIL: $*" >&2; exit 1; }

"$slabd" --version | grep -q '^slabd [0-9]' || fail "slabd --version"
"$slabd" --help | grep -q 'Usage: slabd' || fail "slabd --help"
"$load" --version | grep -q '^slabd-load [0-9]' || fail "slabd-load --version"
"$slabd" --check-config --config deploy/slabd.toml >/dev/null || fail "--check-config deploy/slabd.toml"
"$slabd" --check-config --config "$config" >/dev/null || fail "--check-config $config"

log=$(mktemp)
"$slabd" --config "$config" --threads 1 2>"$log" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 100); do
  "$slabd" --config "$config" --probe /healthz >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; fail "slabd exited at start"; }
  sleep 0.1
done
"$slabd" --config "$config" --probe /healthz >/dev/null || { cat "$log" >&2; fail "--probe /healthz"; }
"$load" rr --target 127.0.0.1:7000 -c 1 --messages 3 || fail "slabd-load rr: 3 echoes"
kill -TERM "$pid"
code=0
wait "$pid" || code=$?
trap 'rm -f "$log"' EXIT
cat "$log"
((code == 0)) || fail "slabd exited $code after SIGTERM"
grep -q 'draining' "$log" || fail "no drain in the log"
grep -q 'slabd stopped' "$log" || fail "no 'slabd stopped' in the log"
echo "smoke: ok"
