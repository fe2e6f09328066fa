#!/usr/bin/env bash
# The side-by-side benchmark: slabd against a minimal epoll loop and the classic Asio server as
# echo servers, and against HAProxy and nginx as TCP proxies. The headline figure is the
# server's own CPU time per operation, read from /proc/PID/stat around each load run.
#
#   bench/compare.sh [--duration SECONDS] [--repeat N] [--quick] [--only TABLE,...]
#                    [--baseline REV] [--limits] [--connection-log]
#
# --duration: seconds per load run (default 5). --repeat: load runs per row (default 3), each
# row showing the medians and the spread of its runs: on a shared machine one run's CPU per
# operation can be 25% off, enough to rank servers wrongly. The servers of a group take turns,
# one run each per round, so that a slow drift of the machine reaches them all alike. The
# memory rows run once (they are not noisy). --quick: 1 s runs, one run per row unless
# --repeat says otherwise, and no 10,000-connection rows, to check the script itself.
# --only: the tables to run, of echo, client, growth, proxy and bulk (default all). A change to slabd is
# judged against what came before it: --baseline REV builds slabd as of git revision REV (in a
# worktree under build/) and runs it as the server "slabd@REV" beside slabd in every echo
# group and in the proxy and bulk tables; --limits adds "slabd+limits", slabd with every [limits] key on but set so high that
# nobody is refused, which prices the admission checks themselves; --connection-log adds
# "slabd+connlog", slabd with log.connections on at its default rate, logging to
# build/release/connlog-PORT.log, which prices the connection log.
# A server's row counts only if the load saturated it: every load row shows the server's CPU
# over the run's wall time and flags a row under 90% (the load, or the machine, was the limit).
# One client core cannot saturate a server with churn, so the echo table runs churn a second
# time with the server held to 15% of its core by a cgroup CPU quota (as root; skipped where no
# cgroup is writable), its CPU shown against the quota; each churn group keeps one server port.
# The client table checks the load itself: slabd-load beside a minimal C epoll client
# (bench/peers/epoll_client.c), with the same threads and connections against the same server
# process in each round, and the ratio of their rates (the median of the rounds' ratios).
# Markdown tables go to stdout, progress to stderr, every run as JSON to
# build/release/compare.json. Exit status 1 when any run failed.
#
# Each server runs as a child of this script on 127.0.0.1, ports 18000-18999, with its
# configuration in a temporary directory: the server under test on core 0, the load (and a
# proxy's backend) on core 1, so the machine needs 2 cores. Peers come from Debian packages,
# installed here when missing: the tests never need them, so scripts/install-deps.sh stays
# without them.
set -euo pipefail
export LC_ALL=C # EPOCHREALTIME and awk must agree on the decimal point

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
command_line="bench/compare.sh${*:+ $*}"

say() { echo "compare: $*" >&2; }
die() { say "$*"; exit 1; }
usage() {
  echo "usage: bench/compare.sh [--duration SECONDS] [--repeat N] [--quick] [--only TABLE,...] [--baseline REV] [--limits] [--connection-log]" >&2
  exit 2
}

duration=
repeat=
quick=0
only=echo,client,growth,proxy,bulk
baseline=
limits=0
connection_log=0
while (($#)); do
  case $1 in
    --duration) (($# >= 2)) || usage; duration=$2; shift 2 ;;
    --repeat) (($# >= 2)) || usage; repeat=$2; shift 2 ;;
    --quick) quick=1; shift ;;
    --only) (($# >= 2)) || usage; only=$2; shift 2 ;;
    --baseline) (($# >= 2)) || usage; baseline=$2; shift 2 ;;
    --limits) limits=1; shift ;;
    --connection-log) connection_log=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
    *) usage ;;
  esac
done
if ((quick)); then duration=${duration:-1} repeat=${repeat:-1}; fi
duration=${duration:-5}
repeat=${repeat:-3}
# iperf3 takes whole seconds only.
[[ $duration =~ ^[1-9][0-9]*$ ]] || die "--duration wants a whole number of seconds, got '$duration'"
[[ $repeat =~ ^[1-9][0-9]*$ ]] || die "--repeat wants a whole number of runs, got '$repeat'"
for table in ${only//,/ }; do
  [[ $table =~ ^(echo|client|growth|proxy|bulk)$ ]] || die "--only: '$table' is not one of echo, client, growth, proxy, bulk"
done
(($(nproc) >= 2)) || die "needs 2 cores (server on core 0, load on core 1); this machine has $(nproc)"

# 10,000 held connections take 10,000 descriptors in the server and as many in the client;
# children inherit this limit.
ulimit -n 20000 2>/dev/null || die "needs 20,000 file descriptors per process; the hard limit is $(ulimit -Hn)"

slabd=build/release/server/slabd
slabd_load=build/release/loadtest/slabd-load
epoll_echo=build/release/bench/epoll-echo
epoll_client=build/release/bench/epoll-client
asio_echo=build/release/bench/asio-classic-echo
stream_module=/usr/lib/nginx/modules/ngx_stream_module.so
out_json=build/release/compare.json

install_peers() {
  local packages=(haproxy nginx-light libnginx-mod-stream wrk iperf3) missing=() p status
  command -v dpkg-query >/dev/null 2>&1 || die "install ${packages[*]} (Debian package names) first"
  for p in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [[ $status == installed ]] || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  local sudo=()
  if ((EUID != 0)); then
    command -v sudo >/dev/null 2>&1 || die "need root or sudo to install: ${missing[*]}"
    sudo=(sudo)
  fi
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

build() {
  ./scripts/install-deps.sh bench >&2
  # The release preset leaves the benchmarks out (scripts/run.sh needs none of their libraries).
  cmake --preset release -DSLABD_BUILD_BENCH=ON >&2
  cmake --build --preset release --target slabd slabd-load epoll-echo epoll-client asio-classic-echo >&2
}

# slabd as of $baseline, built like the release preset from a worktree of that revision; sets
# $baseline_slabd and $baseline_kind.
build_baseline() {
  local sha
  sha=$(git rev-parse --short "$baseline^{commit}" 2>/dev/null) || die "--baseline: '$baseline' is not a git revision"
  local tree=$root/build/baseline-$sha-src dir=$root/build/baseline-$sha
  if [[ ! -d $tree ]]; then
    git worktree prune
    git worktree add --detach "$tree" "$sha" >&2
  fi
  [[ -f $dir/CMakeCache.txt ]] ||
    cmake -S "$tree" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="-O2 -DNDEBUG" \
      -DSLABD_BUILD_TESTS=OFF -DSLABD_BUILD_BENCH=OFF >&2
  cmake --build "$dir" --target slabd >&2
  baseline_slabd=$dir/server/slabd
  baseline_kind=slabd@$sha
}

# ---- children ---------------------------------------------------------------------------------
# Every process this script starts is recorded here by PID, and only those are ever signalled
# (plus, when stopping one, the processes it forked itself: nginx's worker).

tmp=$(mktemp -d -t slabd-compare.XXXXXX)
runs_file=$tmp/runs.jsonl
children=()

forget() {
  local keep=() p
  for p in "${children[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
  children=("${keep[@]}")
}

running() { # PID: alive and not a zombie
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat%% *} != Z ]]
}

any_running() {
  local p
  for p in "$@"; do running "$p" && return 0; done
  return 1
}

# SIGTERM to each PID, SIGKILL to whatever of them and their children is left after 10 s. Every
# server here exits within a second of SIGTERM (slabd's drain is cut to 1 s by its config).
stop() {
  local family=() p i
  for p in "$@"; do
    family+=("$p")
    mapfile -t -O "${#family[@]}" family < <(pgrep -P "$p" || true)
    kill -TERM "$p" 2>/dev/null || true
  done
  for ((i = 0; i < 100; i++)); do
    any_running "${family[@]}" || break
    sleep 0.1
  done
  for p in "${family[@]}"; do
    if running "$p"; then
      say "pid $p ignored SIGTERM for 10 s, killing it"
      kill -KILL "$p" 2>/dev/null || true
    fi
  done
  for p in "$@"; do
    wait "$p" 2>/dev/null || true
    forget "$p"
  done
}

cleanup() {
  ((${#children[@]} == 0)) || stop "${children[@]}"
  [[ -z $cap_cgroup ]] || rmdir "$cap_cgroup" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Starts CMD... in the background on CPU core CORE ("" = any core), stdout to OUT and stderr to
# OUT.err; sets $spawned. With LIMIT, `timeout` ends it after LIMIT seconds (a load); without,
# $spawned is the command's own PID (taskset execs it), as the CPU and memory readings of a
# server need, and the row stops it.
spawn() {
  local core=$1 out=$2 limit=$3 wrap=()
  shift 3
  [[ -z $limit ]] || wrap=(timeout -k 5 "$limit")
  [[ -z $core ]] || wrap+=(taskset -c "$core")
  "${wrap[@]}" "$@" >"$out" 2>"$out.err" &
  spawned=$!
  children+=("$spawned")
}

# Waits for a load started with spawn, in the background so that a signal reaches the trap at
# once rather than after the run; sets $load_rc.
finish() {
  load_rc=0
  wait "$1" || load_rc=$?
  forget "$1"
}

next_port=18000
take_port() { # sets $taken: the next port of 18000-18999 nobody listens on
  while [[ -n $(ss -Hltn "sport = :$next_port") ]]; do next_port=$((next_port + 1)); done
  ((next_port <= 18999)) || die "no free port left in 18000-18999"
  taken=$next_port
  next_port=$((next_port + 1))
}

# A listening socket queues connections even before the server calls accept, so a listener is
# enough; checking it opens no connection that a proxy would pass on. 10 s at most.
wait_listening() { # PID PORT
  local i
  for ((i = 0; i < 200; i++)); do
    running "$1" || return 1
    [[ -z $(ss -Hltn "sport = :$2") ]] || return 0
    sleep 0.05
  done
  return 1
}

# utime + stime in clock ticks of PID and its children (nginx: master and worker).
cpu_ticks() {
  local total=0 p stat fields
  for p in "$1" $(pgrep -P "$1" || true); do
    stat=$(cat "/proc/$p/stat" 2>/dev/null) || continue
    read -ra fields <<<"${stat##*) }"
    total=$((total + fields[11] + fields[12])) # fields 14 and 15 of stat; this array starts at 3
  done
  echo "$total"
}

vmrss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

fd_count() {
  local fds=("/proc/$1/fd/"*)
  echo "${#fds[@]}"
}

last_line() { # FILE...: the last non-empty line of the first file that has one
  local f line
  for f in "$@"; do
    line=$(grep -v '^[[:space:]]*$' "$f" 2>/dev/null | tail -n 1 | cut -c 1-200 || true)
    [[ -z $line ]] || { echo "$line"; return; }
  done
  echo "no output"
}

# $run: the round a load run belongs to (rounds sets it); a row's runs share table, group and
# server, and compare.py takes their medians.
run=1
record() { python3 bench/compare.py record "$runs_file" "run=$run" "$@"; }

# Calls CMD... once per round, $run the round's number. CMD runs every server of a group once,
# so the servers take turns rather than each running its N times back to back.
rounds() {
  local run
  for ((run = 1; run <= repeat; run++)); do "$@"; done
}

run_label() { ((repeat == 1)) || echo " (run $run of $repeat)"; }

# ---- servers --------------------------------------------------------------------------------
# start_server KIND CORE PORT [UPSTREAM] sets $server_pid once the port listens, or returns 1
# with $server_error set. KIND: slabd (echo, or proxy with an upstream), epoll-echo,
# asio-classic-echo, haproxy, haproxy-splice, nginx (stream proxy), nginx-http, iperf3.

start_slabd() { # BINARY CORE PORT [UPSTREAM] [limits|pp2|connlog]
  local binary=$1 conf=$tmp/slabd-$3.toml args
  take_port
  # A row stops the server after its load has finished; there is nothing to drain for 10 s.
  printf '[timeouts]\nshutdown_grace = "1s"\n' >"$conf"
  case ${5:-} in
    # Every admission check runs, and none refuses: each row's connections come from at most
    # two addresses, and churn stays far below a million newcomers a second.
    limits) printf '[limits]\nmax_per_source = 20000\naccept_rate = 1000000\naccept_burst = 1000000\n' >>"$conf" ;;
    pp2) printf '[proxy]\nsend_proxy = "v2"\n' >>"$conf" ;;
    # A file on disk, as in production: a line per close at up to the default 1000 a second.
    connlog) printf '[log]\nconnections = true\nfile = "%s"\n' "$root/build/release/connlog-$3.log" >>"$conf" ;;
  esac
  args=(--config "$conf" --listen "127.0.0.1:$3" --admin "127.0.0.1:$taken" --threads 1
        --max-connections 20000 --log-level warn)
  if [[ -n ${4:-} ]]; then args+=(--mode proxy --upstream "$4"); else args+=(--mode echo); fi
  spawn "$2" "$tmp/slabd-$3.log" "" "$binary" "${args[@]}"
}

start_haproxy() { # CORE PORT UPSTREAM [splice|pp2]
  local conf=$tmp/haproxy-$2.cfg splice= send_proxy=
  # splice-auto would splice only when HAProxy guesses it pays off; the row is meant to show
  # what splicing itself does.
  [[ ${4:-} != splice ]] || splice=$'    option splice-request\n    option splice-response'
  [[ ${4:-} != pp2 ]] || send_proxy=" send-proxy-v2"
  cat >"$conf" <<EOF
global
    nbthread 1
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
$splice
listen proxy
    bind 127.0.0.1:$2
    server upstream $3$send_proxy
EOF
  spawn "$1" "$tmp/haproxy-$2.log" "" haproxy -db -f "$conf"
}

# nginx with one worker under its master (its CPU is counted over both), every file it writes
# inside $tmp. The stream module is loaded for the HTTP backend too: it costs nothing there,
# and load_module has to come first in the file.
start_nginx_with() { # CORE PORT CONFIG-BODY
  local conf=$tmp/nginx-$2.conf
  cat >"$conf" <<EOF
load_module $stream_module;
worker_processes 1;
pid $tmp/nginx-$2.pid;
error_log $tmp/nginx-$2.error.log warn;
events { worker_connections 4096; }
$3
EOF
  spawn "$1" "$tmp/nginx-$2.log" "" nginx -c "$conf" -p "$tmp/" -e "$tmp/nginx-$2.error.log" -g 'daemon off;'
}

start_nginx_stream() { # CORE PORT UPSTREAM
  start_nginx_with "$1" "$2" "stream { server { listen 127.0.0.1:$2; proxy_pass $3; } }"
}

# Also listens, for the proxies that send a PROXY v2 header, on $backend_pp_port with
# proxy_protocol.
start_nginx_http() { # CORE PORT
  local t=$tmp/nginx-$2-temp
  mkdir -p "$t" # nginx creates the last level of a temp path only
  take_port
  backend_pp_port=$taken
  # keepalive_requests: nginx closes a keep-alive connection after 1,000 requests by default,
  # which would make the proxies' rows partly a connection-churn test.
  start_nginx_with "$1" "$2" "http {
  access_log off;
  keepalive_requests 1000000000;
  client_body_temp_path $t/body; proxy_temp_path $t/proxy; fastcgi_temp_path $t/fastcgi;
  uwsgi_temp_path $t/uwsgi; scgi_temp_path $t/scgi;
  server { listen 127.0.0.1:$2; listen 127.0.0.1:$backend_pp_port proxy_protocol;
           location / { default_type text/plain; return 200 \"hello\"; } }
}"
}

start_server() { # KIND CORE PORT [UPSTREAM]
  local kind=$1 core=$2 port=$3 upstream=${4:-}
  server_pid=
  case $kind in
    slabd) start_slabd "$slabd" "$core" "$port" "$upstream" ;;
    slabd+limits) start_slabd "$slabd" "$core" "$port" "$upstream" limits ;;
    slabd+connlog) start_slabd "$slabd" "$core" "$port" "$upstream" connlog ;;
    slabd+pp2) start_slabd "$slabd" "$core" "$port" "$upstream" pp2 ;;
    haproxy+pp2) start_haproxy "$core" "$port" "$upstream" pp2 ;;
    slabd@*) start_slabd "$baseline_slabd" "$core" "$port" "$upstream" ;;
    epoll-echo) spawn "$core" "$tmp/epoll-$port.log" "" "$epoll_echo" "$port" 127.0.0.1 ;;
    asio-classic-echo) spawn "$core" "$tmp/asio-$port.log" "" "$asio_echo" "$port" 127.0.0.1 ;;
    haproxy) start_haproxy "$core" "$port" "$upstream" ;;
    haproxy-splice) start_haproxy "$core" "$port" "$upstream" splice ;;
    nginx) start_nginx_stream "$core" "$port" "$upstream" ;;
    nginx-http) start_nginx_http "$core" "$port" ;;
    iperf3) spawn "$core" "$tmp/iperf3-$port.log" "" iperf3 -s -p "$port" -B 127.0.0.1 ;;
    *) die "unknown server kind $kind" ;;
  esac
  local pid=$spawned
  if wait_listening "$pid" "$port"; then
    server_pid=$pid
    # Every thread of the process goes (cgroup.procs, not tasks); epoll-echo and the classic
    # Asio server fork nothing.
    [[ -z $server_cap ]] || echo "$pid" >"$cap_cgroup/cgroup.procs"
    return 0
  fi
  if running "$pid"; then server_error="not listening on $port after 10 s"; else server_error="exited"; fi
  stop "$pid"
  server_error="$kind $server_error: $(last_line "$tmp/"*"-$port.log.err" "$tmp/"*"-$port.log" "$tmp/nginx-$port.error.log")"
  return 1
}

# ---- loads ----------------------------------------------------------------------------------
# measure SERVER_PID CORE OUT LIMIT CMD... runs the load CMD and sets $cpu_fields: the server's
# CPU ticks and the wall time over the run, as KEY=VALUEs for record, or $load_failed when the
# load could not be judged by its own output.

# The user+system seconds of this script's reaped children so far (bash's `times`), which take in
# a load's own time once it has been waited for, through timeout and taskset.
# Not in a command substitution: that subshell's `times` would count its own children.
children_cpu_s() { # sets $children_cpu
  times >"$tmp/times"
  children_cpu=$(awk 'END { split($0, f, /[ ms]+/); print f[1] * 60 + f[2] + f[3] * 60 + f[4] }' "$tmp/times")
}

measure() {
  local pid=$1 core=$2 out=$3 limit=$4 before t0 t1 load0
  shift 4
  before=$(cpu_ticks "$pid")
  children_cpu_s
  load0=$children_cpu
  t0=$EPOCHREALTIME
  spawn "$core" "$out" "$limit" "$@"
  finish "$spawned"
  t1=$EPOCHREALTIME
  measured "$pid" "$before" "$t0" "$t1" "$limit"
  children_cpu_s
  cpu_fields+=("load_cpu_s=$(awk "BEGIN { print $children_cpu - $load0 }")")
}

measured() { # PID CPU-TICKS-BEFORE T0 T1 LIMIT, after finish
  local pid=$1 before=$2 t0=$3 t1=$4 limit=$5
  load_failed=
  cpu_fields=("rc=$load_rc")
  if ! running "$pid"; then
    load_failed="server exited during the run"
    return
  fi
  cpu_fields+=("cpu_ticks=$(($(cpu_ticks "$pid") - before))" "clk_tck=$(getconf CLK_TCK)"
               "wall_s=$(awk "BEGIN { print $t1 - $t0 }")")
  if ((load_rc == 124 || load_rc == 137)); then
    load_failed="load did not finish within $limit s"
  fi
}

# One row: a fresh server of KIND on core 0, CMD... (with {PORT} replaced by its port) on
# LOAD_CORE, parsed by PARSER, then the server stopped.
run_row() { # TABLE GROUP KIND LOAD_CORE PARSER LIMIT CMD...
  local table=$1 group=$2 kind=$3 core=$4 parser=$5 limit=$6 out
  shift 6
  say "$table / $group / $kind$(run_label)"
  local fields=("table=$table" "group=$group" "server=$kind" "parser=$parser" ${server_cap:+"cpu_cap=$server_cap"})
  local port=$group_port
  [[ -n $port ]] || { take_port; port=$taken; }
  if ! start_server "$kind" 0 "$port" "${upstream:-}"; then
    record "${fields[@]}" "failed=$server_error"
    return
  fi
  out=$tmp/row-$port
  measure "$server_pid" "$core" "$out" "$limit" "${@//\{PORT\}/$port}"
  stop "$server_pid"
  finish_row "$out" "${fields[@]}"
}

finish_row() { # OUT FIELDS...
  local out=$1
  shift
  if [[ -n $load_failed ]]; then
    record "$@" "${cpu_fields[@]}" "failed=$load_failed"
  else
    # slabd-load writes its report with --json; wrk and iperf3 to stdout.
    local output=$out
    [[ ! -f $out.json ]] || output=$out.json
    record "$@" "${cpu_fields[@]}" "output=$output" "log_line=$(last_line "$out.err" "$out")"
  fi
}

slabd_load_row() { # TABLE GROUP KIND LOAD_CORE SLABD-LOAD-ARGS...
  local table=$1 group=$2 kind=$3 core=$4
  shift 4
  # Beyond -d: connecting, the graceful end, and slabd-load's 5 s operation timeout.
  run_row "$table" "$group" "$kind" "$core" slabd-load $((duration + 30)) \
    "$slabd_load" "$@" --target '127.0.0.1:{PORT}' -d "$duration" --json "$tmp/row-{PORT}.json"
}

# Memory per idle connection: VmRSS before, and once the server holds a descriptor for every
# connection (the accept is where each server allocates its per-connection state).
hold_row() { # KIND
  local kind=$1 conns=10000 fields port pid out before t0 fds0 rss0 rss1= i
  fields=("table=hold" "group=hold" "server=$kind" "parser=hold" "connections=$conns")
  say "hold / $conns idle connections / $kind"
  take_port
  port=$taken
  if ! start_server "$kind" 0 "$port"; then
    record "${fields[@]}" "failed=$server_error"
    return
  fi
  pid=$server_pid out=$tmp/row-$port
  rss0=$(vmrss_kb "$pid") fds0=$(fd_count "$pid")
  before=$(cpu_ticks "$pid") t0=$EPOCHREALTIME
  spawn 1 "$out" $((duration + 40)) "$slabd_load" hold --target "127.0.0.1:$port" -c "$conns" \
    -s 16 -d "$duration" --connect-rate 5000 --json "$out.json"
  local load=$spawned
  # The ramp takes conns/5000 s; the hold then lasts $duration s.
  for ((i = 0; i < (conns / 5000 + 15) * 10; i++)); do
    running "$load" || break
    if (($(fd_count "$pid") >= fds0 + conns)); then
      sleep 0.5 # the proof echoes that follow the accepts
      rss1=$(vmrss_kb "$pid")
      break
    fi
    sleep 0.1
  done
  finish "$load"
  measured "$pid" "$before" "$t0" "$EPOCHREALTIME" $((duration + 40))
  stop "$pid"
  if [[ -z $load_failed && -z $rss1 ]]; then
    load_failed="the server never held $conns connections at once"
  fi
  finish_row "$out" "${fields[@]}" "rss_before_kb=$rss0" "rss_held_kb=${rss1:-0}"
}

skip_row() { # TABLE GROUP KIND
  say "$1 / $2 / $3: skipped (--quick)"
  record "table=$1" "group=$2" "server=$3" "skipped=--quick"
}

# ---- tables ---------------------------------------------------------------------------------

echo_servers=(slabd epoll-echo asio-classic-echo)

each_echo_server() { # TABLE GROUP SLABD-LOAD-ARGS...
  local table=$1 group=$2 kind
  shift 2
  for kind in "${echo_servers[@]}"; do slabd_load_row "$table" "$group" "$kind" 1 "$@"; done
}

# Is the client the limit? Two client threads against the cheapest server: the server's CPU
# column should approach 100% of its core. Pinned, the two threads share core 1; unpinned they
# may also take time from the server's core, so both are shown, taking turns as servers do.
two_client_threads() {
  slabd_load_row echo "rr 64 B x 100, 2 client threads on core 1" epoll-echo 1 rr -c 100 -s 64 --threads 2
  slabd_load_row echo "rr 64 B x 100, 2 client threads unpinned" epoll-echo "" rr -c 100 -s 64 --threads 2
}

# A saturated churn row needs a server slower than its client, and on loopback the connecting
# side does most of the work: the handshake of both ends (SYN, SYN-ACK, ACK and the accept queue)
# runs in the softirq of whoever sent the packet, so mostly on the client's core, which tops
# out at about 14,000 connections a second with the server's core three quarters idle. So the
# server gets a CPU quota (a cgroup, 15% of a core in 10 ms periods): a server that uses its
# whole quota is saturated, and CPU per connection compares like for like. Its rows show CPU
# use as a share of the quota.
cap_cgroup=
server_cap=
setup_cap_cgroup() { # sets $cap_cgroup, or returns 1 with $cap_error set
  local v1=/sys/fs/cgroup/cpu v2=/sys/fs/cgroup
  if [[ -w $v1/cgroup.procs && -f $v1/cpu.cfs_quota_us ]]; then
    cap_cgroup=$v1/slabd-compare-$$
    mkdir "$cap_cgroup" && echo 10000 >"$cap_cgroup/cpu.cfs_period_us" &&
      echo $((cap_percent * 100)) >"$cap_cgroup/cpu.cfs_quota_us" && return 0
  elif [[ -f $v2/cgroup.controllers && -w $v2/cgroup.subtree_control ]] &&
    grep -qw cpu "$v2/cgroup.controllers" && { grep -qw cpu "$v2/cgroup.subtree_control" ||
      echo +cpu >"$v2/cgroup.subtree_control"; } 2>/dev/null; then
    cap_cgroup=$v2/slabd-compare-$$
    mkdir "$cap_cgroup" && echo "$((cap_percent * 100)) 10000" >"$cap_cgroup/cpu.max" && return 0
  fi
  [[ -z $cap_cgroup ]] || rmdir "$cap_cgroup" 2>/dev/null || true
  cap_cgroup=
  cap_error="no writable cgroup CPU controller (needs root, cgroup v1 cpu or v2 with +cpu)"
  return 1
}
cap_percent=15

capped_churn() {
  local group="churn x 50, server held to $cap_percent% of its core" kind
  if [[ -z $cap_cgroup ]] && ! setup_cap_cgroup; then
    for kind in "${echo_servers[@]}"; do record "table=echo" "group=$group" "server=$kind" "skipped=$cap_error"; done
    return
  fi
  server_cap=0.$cap_percent
  churn_rounds "$group"
  server_cap=
}

# Churn leaves a TIME_WAIT socket on the client's side per connection for 60 s, and the kernel
# looks every packet up in the hash table they fill: a server on a fresh port per run would meet
# more of them run after run (CPU per connection rose from 16 to 25 µs over twelve runs), and
# past net.ipv4.tcp_max_tw_buckets the client stops keeping them and gets 2.5 times faster. On
# one port, the client's ports recycle their own TIME_WAITs (net.ipv4.tcp_tw_reuse), so their
# number stays near the ephemeral range and every run of the group meets the same table.
group_port=
churn_rounds() { # GROUP
  take_port
  group_port=$taken
  rounds each_echo_server echo "$1" churn -c 50 -s 64
  group_port=
}

echo_table() {
  local kind
  rounds each_echo_server echo "rr 64 B x 1" rr -c 1 -s 64
  rounds each_echo_server echo "rr 64 B x 100" rr -c 100 -s 64
  churn_rounds "churn x 50"
  capped_churn
  rounds two_client_threads
  for kind in "${echo_servers[@]}"; do
    if ((quick)); then skip_row hold hold "$kind"; else hold_row "$kind"; fi
  done
}

# The client table: one server process per round, and both clients against it in turn (which goes
# first alternates by round), so that a ratio compares the clients and not two servers or two
# moments of the machine.
client_pair() { # THREADS SERVER_KIND
  local threads=$1 kind=$2 group port pid out first second c
  group="rr 64 B x 100, $threads client thread$( ((threads == 1)) || echo s) on core 1, $kind"
  say "client / $group$(run_label)"
  take_port
  port=$taken
  if ! start_server "$kind" 0 "$port"; then
    for c in epoll-client slabd-load; do
      record "table=client" "group=$group" "server=$c" "parser=$c" "failed=$server_error"
    done
    return
  fi
  pid=$server_pid out=$tmp/client-$port
  first=epoll-client second=slabd-load
  ((run % 2)) || { first=slabd-load second=epoll-client; }
  for c in "$first" "$second"; do
    if [[ $c == epoll-client ]]; then
      measure "$pid" 1 "$out-$c" $((duration + 30)) "$epoll_client" 127.0.0.1 "$port" 100 64 \
        "$duration" "$threads"
    else
      measure "$pid" 1 "$out-$c" $((duration + 30)) "$slabd_load" rr -c 100 -s 64 \
        --threads "$threads" --target "127.0.0.1:$port" -d "$duration" --json "$out-$c.json"
    fi
    finish_row "$out-$c" "table=client" "group=$group" "server=$c" "parser=$c"
  done
  stop "$pid"
}

client_round() {
  local threads kind
  for kind in epoll-echo slabd; do
    for threads in 1 2; do client_pair "$threads" "$kind"; done
  done
}

client_table() {
  rounds client_round
}

growth_table() {
  local conns kind source
  for conns in 10 100 1000 10000; do
    # One source address gives ~28,000 ephemeral ports towards one server port, and churn rows
    # leave thousands of them in TIME_WAIT.
    source=()
    ((conns < 1000)) || source=(--source 127.0.0.1,127.0.0.2)
    if ((quick && conns >= 10000)); then
      for kind in "${echo_servers[@]}"; do skip_row growth "$conns" "$kind"; done
    else
      rounds each_echo_server growth "$conns" rr -c "$conns" -s 64 "${source[@]}"
    fi
  done
}

# A proxy table: BACKEND_KIND on core 1 for all rounds, the proxies in turn on core 0 in front
# of it, each measured with LOAD... (on core 1, {PORT} the proxy's port) and parsed by PARSER;
# each round first the load straight to the backend, the limit.
proxy_rows() { # TABLE GROUP BACKEND_KIND PARSER LIMIT PROXIES -- LOAD...
  local table=$1 group=$2 backend_kind=$3 parser=$4 limit=$5 proxies=() kind backend_port
  shift 5
  while [[ $1 != -- ]]; do proxies+=("$1"); shift; done
  shift
  say "$table: $backend_kind backend on core 1"
  take_port
  backend_port=$taken
  if ! start_server "$backend_kind" 1 "$backend_port"; then
    for kind in direct "${proxies[@]}"; do
      record "table=$table" "group=$group" "server=$kind" "parser=$parser" "failed=backend: $server_error"
    done
    return
  fi
  local backend=$server_pid
  rounds proxy_round "$@"
  stop "$backend"
}

proxy_round() { # LOAD..., called by proxy_rows, whose variables it uses
  local kind out=$tmp/row-direct-$backend_port-$run
  say "$table / $group / direct$(run_label)"
  measure "$backend" 1 "$out" "$limit" "${@//\{PORT\}/$backend_port}"
  finish_row "$out" "table=$table" "group=$group" "server=direct" "parser=$parser" "limit=1"
  for kind in "${proxies[@]}"; do
    local to=$backend_port
    # The proxies that send a PROXY header go to the backend's listener that expects one.
    [[ $kind != *+pp2 ]] || to=$backend_pp_port
    upstream=127.0.0.1:$to run_row "$table" "$group" "$kind" 1 "$parser" "$limit" "$@"
  done
}

# With --baseline, the proxy and bulk tables also run slabd as of that revision.
proxy_table() {
  proxy_rows proxy "HTTP GET, 5 B body" nginx-http wrk $((duration + 15)) \
    slabd haproxy nginx slabd+pp2 haproxy+pp2 ${baseline_kind:+"$baseline_kind"} -- \
    wrk -t1 -c50 -d "${duration}s" --latency 'http://127.0.0.1:{PORT}/'
}

bulk_table() {
  proxy_rows bulk "iperf3" iperf3 iperf3 $((duration + 20)) \
    slabd haproxy haproxy-splice nginx ${baseline_kind:+"$baseline_kind"} -- \
    iperf3 -c 127.0.0.1 -p '{PORT}' -t "$duration" -J
}

# ---- main -----------------------------------------------------------------------------------

install_peers
build
[[ -r $stream_module ]] || die "$stream_module missing (package libnginx-mod-stream)"
if [[ -n $baseline ]]; then
  build_baseline
  echo_servers+=("$baseline_kind")
fi
((limits == 0)) || echo_servers+=(slabd+limits)
((connection_log == 0)) || echo_servers+=(slabd+connlog)

git_commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[[ -z $(git status --porcelain 2>/dev/null) ]] || git_commit+=" (with uncommitted changes)"
meta=(
  "command=$command_line"
  "machine=$(nproc) cores, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), kernel $(uname -r)"
  "peers=HAProxy $(haproxy -v | awk 'NR == 1 { print $3 }'), nginx $(nginx -v 2>&1 | sed 's|.*/||'), wrk $(wrk -v 2>&1 | awk 'NR == 1 { print $2 }' || true), iperf3 $(iperf3 --version | awk 'NR == 1 { print $2 }')"
  "commit=$git_commit"
  "duration=$duration s per run"
  "repeat=$repeat interleaved runs per row, the tables show their medians (memory rows: 1 run)"
  "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
)

for table in ${only//,/ }; do "${table}_table"; done

status=0
python3 bench/compare.py report "$runs_file" "$out_json" "${meta[@]}" || status=$?
say "every run and row saved in $out_json"
exit "$status"
