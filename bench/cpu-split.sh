#!/usr/bin/env bash
# Where the server's CPU per operation goes: kernel or user space, slabd beside the minimal epoll
# server. Each round runs both in turn, pinned as compare.sh pins them (server on core 0, the
# load on core 1): `slabd-load churn -c 50 -s 64` (per connection), or with --rr N `slabd-load rr
# -c N -s 64` over 127.0.0.1 and 127.0.0.2 (per message). perf samples the server's CPU clock
# over the whole load run; the samples in the kernel and in user space, over the operations the
# client completed, give microseconds per operation. perf's own sampling costs a little on top,
# the same for both servers.
#
#   bench/cpu-split.sh [--rounds N] [--duration SECONDS] [--rr CONNECTIONS]
#
# Needs the release build with the benchmarks (bench/compare.sh makes it) and perf (Debian:
# linux-perf, installed here if missing). Every process it starts stops by itself: servers are
# killed by PID when their round ends, and perf and the load have their own time limits.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=3
duration=5
rr=
frequency=2000
while (($#)); do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --rr) rr=$2; shift 2 ;;
    *) echo "usage: bench/cpu-split.sh [--rounds N] [--duration SECONDS] [--rr CONNECTIONS]" >&2; exit 2 ;;
  esac
done
[[ $rounds =~ ^[1-9][0-9]*$ && $duration =~ ^[1-9][0-9]*$ && $rr =~ ^([1-9][0-9]*)?$ ]] || {
  echo "cpu-split: --rounds, --duration and --rr take whole numbers" >&2
  exit 2
}
if [[ -n $rr ]]; then
  load=(rr -c "$rr" -s 64 --source "127.0.0.1,127.0.0.2")
  unit=msg
else
  load=(churn -c 50 -s 64)
  unit=conn
fi

slabd=build/release/server/slabd
slabd_load=build/release/loadtest/slabd-load
epoll_echo=build/release/bench/epoll-echo
for binary in "$slabd" "$slabd_load" "$epoll_echo"; do
  [[ -x $binary ]] || { echo "cpu-split: $binary missing: run bench/compare.sh once to build it" >&2; exit 2; }
done
if ! command -v perf >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends linux-perf >&2
fi

tmp=$(mktemp -d)
server=
cleanup() {
  [[ -z $server ]] || kill "$server" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

# One run: KIND on core 0 at PORT under the load; prints "kind kernel_us user_us operations".
run() {
  local kind=$1 port=$2 conns
  if [[ $kind == slabd ]]; then
    taskset -c 0 "$slabd" --threads 1 --mode echo --listen "127.0.0.1:$port" \
      --admin "127.0.0.1:$((port + 1))" --log-level warn >/dev/null 2>&1 &
  else
    taskset -c 0 "$epoll_echo" "$port" 127.0.0.1 >/dev/null 2>&1 &
  fi
  server=$!
  sleep 1
  timeout -s INT $((duration + 10)) perf record -q -e cpu-clock -F "$frequency" \
    -o "$tmp/perf.data" -p "$server" >/dev/null 2>&1 &
  local recorder=$!
  sleep 0.2
  timeout $((duration + 60)) taskset -c 1 "$slabd_load" "${load[@]}" \
    --target "127.0.0.1:$port" -d "$duration" --json "$tmp/load.json" >/dev/null 2>&1 || true
  # slabd-load's report: messages measured, one per connection under churn.
  conns=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["msgs"])' \
    "$tmp/load.json" 2>/dev/null || true)
  rm -f "$tmp/load.json"
  kill -INT "$recorder" 2>/dev/null || true
  wait "$recorder" || true
  kill "$server"
  wait "$server" 2>/dev/null || true
  server=
  if [[ ! $conns =~ ^[1-9][0-9]*$ ]]; then
    echo "cpu-split: the load against $kind completed nothing" >&2
    exit 1
  fi
  perf report -i "$tmp/perf.data" --sort dso -n --stdio 2>/dev/null |
    awk -v kind="$kind" -v conns="$conns" -v hz="$frequency" '
      /^#/ || NF < 3 { next }
      { if ($3 == "[kernel.kallsyms]") kernel += $2; else user += $2 }
      END { printf "%s %.3f %.3f %d\n", kind, kernel * 1e6 / hz / conns, user * 1e6 / hz / conns, conns }'
}

port=17900
echo "server       kernel µs/$unit  user µs/$unit  total  ${unit}s"
for ((r = 1; r <= rounds; r++)); do
  for kind in slabd epoll-echo; do
    port=$((port + 2))
    # Not in a pipeline: run() must set $server in this shell, for the exit trap.
    run "$kind" "$port" >"$tmp/row"
    awk '{ printf "%-12s %14.2f %13.2f %6.2f  %d\n", $1, $2, $3, $2 + $3, $4 }' "$tmp/row"
    cat "$tmp/row" >>"$tmp/rows"
  done
done
awk '{ k[$1] += $2; u[$1] += $3; n[$1]++ }
     END { for (s in n) printf "mean %-7s %14.2f %13.2f %6.2f\n", s, k[s] / n[s], u[s] / n[s], (k[s] + u[s]) / n[s] }' \
  "$tmp/rows" | sort
