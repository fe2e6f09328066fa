#!/usr/bin/env bash
# MANUAL TEST: times README.md's "Quick start" on a fresh machine, a new container from the
# bare Debian 12 base image (debootstrap minbase; tests/container/podman-env.sh), as root:
#   1. ./scripts/run.sh until slabd listens (the "slabd ... mode: data ..." line, and
#      `slabd --probe /healthz` from a second `podman exec`), split into apt, configure+build, start
#   2. ./scripts/test.sh (every preset) to its end: wall time, pass/fail, ctest summaries
#
#   tests/container/quickstart_timing.sh            # both (15-40 minutes on 2 cores)
#   tests/container/quickstart_timing.sh run        # only the first
#
# The sources are a fresh `git clone` of this repository's HEAD (committed work only), copied in
# with `podman cp`: the base image has no git, and the README starts after the clone.
# The container gets --cap-add SYS_ADMIN: test_names runs slabd under `unshare --mount` with its
# own /etc/hosts, which needs it (without it that test skips itself, and everything else passes).
# The open-file limit is the containers.conf default of podman-env.sh (20000), which is enough.
# SLABD_QS_RUN_ARGS replaces "--cap-add SYS_ADMIN". Logs stay in $SLABD_CTR/quickstart/;
# the container is removed at the end.
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/container/podman-env.sh
what=${1:-all}
run_args=${SLABD_QS_RUN_ARGS---cap-add SYS_ADMIN}
name=slabd-qs-$$
ctr_setup || exit 1
out=$SLABD_CTR/quickstart
rm -rf "$out" && mkdir -p "$out"

cleanup() {
  [[ -n ${run_pid:-} ]] && kill "$run_pid" 2>/dev/null
  timeout 120 podman rm -f -t 0 "$name" >/dev/null 2>&1
  rm -rf "$out/src"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="${2:-$(now)}" 'BEGIN { printf "%.1f", b - a }'; }
# Prefixes every line with the time it arrived (seconds since the epoch).
stamp() { while IFS= read -r line; do printf '%s %s\n' "$(date +%s.%N)" "$line"; done; }

git clone -q "$PWD" "$out/src" || exit 1
echo "sources: $(git -C "$out/src" log --oneline -1)"
# shellcheck disable=SC2086
timeout 300 podman run -d --name "$name" $run_args --entrypoint sleep "$SLABD_BASE_IMAGE" infinity \
  >/dev/null 2>>"$out/podman.err" || { echo "podman run failed"; cat "$out/podman.err"; exit 1; }
timeout 300 podman cp "$out/src" "$name:/root/slabd" 2>>"$out/podman.err" || exit 1
echo "container: $name ($run_args), nofile $(podman exec "$name" bash -c 'ulimit -n' 2>/dev/null), $(nproc) cores on the host"

# ---- 1. ./scripts/run.sh until slabd listens ----------------------------------------------------
echo "== ./scripts/run.sh"
t0=$(now)
# run.sh execs slabd in the same process: its pid, written first, is slabd's.
podman exec "$name" bash -c 'echo $$ >/tmp/run.pid; cd /root/slabd && exec ./scripts/run.sh' 2>&1 \
  | stamp >"$out/run.log" &
run_pid=$!
probe_at=
deadline=$(( $(date +%s) + 1200 ))
while (( $(date +%s) < deadline )); do
  if podman exec "$name" bash -c '[ -x /root/slabd/build/release/server/slabd ] &&
       /root/slabd/build/release/server/slabd --probe /healthz' >/dev/null 2>&1; then
    probe_at=$(now); break
  fi
  kill -0 "$run_pid" 2>/dev/null || break
  sleep 1
done
ninja_first=$(awk '$2 ~ /^\[1\// { print $1; exit }' "$out/run.log")
apt_last=$(awk -v n="$ninja_first" '$1 < n { t = $1 } END { print t }' "$out/run.log")
ninja_last=$(awk '$2 ~ /^\[[0-9]+\/[0-9]+\]/ { t = $1 } END { print t }' "$out/run.log")
listening=$(awk '/ mode: data / { print $1; exit }' "$out/run.log")
if [[ -n $probe_at && -n $listening ]]; then
  echo "run.sh: slabd listening after $(since "$t0" "$listening") s (probe answered at $(since "$t0" "$probe_at") s)"
  echo "  install-deps.sh run (apt-get update + install): $(since "$t0" "$apt_last") s" \
       "($(( $(grep -o 'installing .*' "$out/run.log" | wc -w) - 1 )) packages named, and their dependencies)"
  echo "  cmake --preset release (configure):            $(since "$apt_last" "$ninja_first") s"
  echo "  build slabd and slabd-load ($(awk '$2 ~ /^\[[0-9]+\/[0-9]+\]/ { n = $2 } END { print n }' "$out/run.log") steps):        $(since "$ninja_first" "$ninja_last") s"
  echo "  start to listening:                            $(since "$ninja_last" "$listening") s"
  grep ' mode: data ' "$out/run.log" | cut -d' ' -f2- | sed 's/^/  log: /'
else
  echo "run.sh: slabd never answered; last lines:"; tail -n 20 "$out/run.log"
fi
podman exec "$name" bash -c 'kill -TERM "$(cat /tmp/run.pid)"' 2>/dev/null
wait "$run_pid"; run_pid=
[[ $what == run ]] && exit 0

# ---- 2. ./scripts/test.sh ---------------------------------------------------------------------
# test.sh stops at the first preset with a failing test (ctest still runs all of that preset's).
echo "== ./scripts/test.sh"
t0=$(now)
timeout 7200 podman exec "$name" bash -c 'cd /root/slabd && ./scripts/test.sh' 2>&1 | stamp >"$out/test.log"
code=${PIPESTATUS[0]}
echo "test.sh: exit code $code after $(since "$t0") s"
apt_end=$(awk '/=== dev: configure/ { print $1; exit }' "$out/test.log")
[[ -n $apt_end ]] && echo "  install-deps.sh test (apt): $(since "$t0" "$apt_end") s"
# Each preset's start, and ctest's summaries.
awk -v t0="$t0" '/=== [a-z]+: configure/ || /tests passed/ || /Total Test time/ || /^[0-9.]+ fuzz/ {
    printf "  +%6.0f s  %s\n", $1 - t0, substr($0, index($0, " ") + 1) }' "$out/test.log"
grep -E 'FAILED|\*\*\*Failed|Timeout|Not Run' "$out/test.log" | cut -d' ' -f2- | sed 's/^/  /' | head -n 40
echo "full logs: $out/run.log, $out/test.log"
exit "$code"
