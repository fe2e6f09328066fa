#!/usr/bin/env bash
# MANUAL / RELEASE TEST of the container image: not part of ctest or CI, too slow for every run
# (a cold image build is about 4 minutes on 2 cores; the checks after it about 1 minute).
#
#   sudo tests/container/test_image.sh        # as root: podman, vfs storage under /tmp/slabd-ctr
#
# Sets podman up if needed (tests/container/podman-env.sh: packages, vfs storage, runc, a
# debootstrap base image when no registry is reachable; idempotent), builds the Dockerfile, and
# checks what the image promises:
#   1. the build (unit tests and smoke test inside it) passes; its wall time is printed
#   2. the container runs slabd as PID 1, as a non-root user, and turns healthy (the
#      HEALTHCHECK, run with `podman healthcheck run`: this podman has no systemd to time it)
#   3. echo through the published data port (a Python client on the host), and slabd-load
#      inside the container
#   4. the admin endpoint answers inside the container, and NOT through a published port by
#      default; with `--admin 0.0.0.0:9100` it does (and the HEALTHCHECK still passes)
#   5. with clients connected, `podman stop -t 30` drains: exit code 0, the stop takes the
#      grace (10 s) and less than grace + 5 s, a client is still served during the drain, new
#      connections are refused, every open client gets its bytes and a clean EOF (FIN, not a
#      reset) when the grace ends, and the log shows the drain
# Every check prints "ok"/"FAIL"; the exit code is the number of failures (0: all passed).
# Removes its containers, and the image unless SLABD_KEEP_IMAGE=1. Environment:
#   SLABD_IMAGE (localhost/slabd:test)   SLABD_SKIP_BUILD=1 (use an existing SLABD_IMAGE)
#   SLABD_TEST_PORT_BASE (17000: host ports 17000, 17001, 17100, 17101 on 127.0.0.1)
#   SLABD_CTR (/tmp/slabd-ctr), SLABD_CTR_SYSTEM=1: see podman-env.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/container/podman-env.sh

image=${SLABD_IMAGE:-localhost/slabd:test}
base=${SLABD_TEST_PORT_BASE:-17000}
data_a=$base admin_a=$((base + 100)) data_b=$((base + 1)) admin_b=$((base + 101))
grace=10    # [timeouts] shutdown_grace in the image's config (deploy/slabd.toml's default)
margin=5
run_id=$$
ctr_a=slabd-test-a-$run_id
ctr_b=slabd-test-b-$run_id
work=$(mktemp -d)
failures=0

ok() { echo "ok   $*"; }
fail() { echo "FAIL $*"; failures=$((failures + 1)); }
check() {  # check DESCRIPTION COMMAND...
  local what=$1; shift
  if "$@"; then ok "$what"; else fail "$what"; fi
}
podman_q() { timeout 120 podman "$@" 2>>"$work/podman.err"; }

cleanup() {
  local code=$?
  [[ -n ${client_pid:-} ]] && kill "$client_pid" 2>/dev/null
  timeout 60 podman rm -f -t 0 "$ctr_a" "$ctr_b" >/dev/null 2>&1
  if [[ ${SLABD_KEEP_IMAGE:-0} != 1 && ${SLABD_SKIP_BUILD:-0} != 1 ]]; then
    timeout 120 podman rmi -f "$image" >/dev/null 2>&1
    # The build stage's layers (about 1 GB each under vfs).
    timeout 120 podman image prune -f >/dev/null 2>&1
  fi
  rm -rf "$work"
  exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A small stdlib-only client: echo, HTTP GET, and the drain scenario.
cat >"$work/client.py" <<'PY'
import json, socket, sys, time

def connect(port, timeout=5):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.settimeout(timeout)
    return s

def echo(s, payload):
    s.sendall(payload)
    got = b""
    while len(got) < len(payload):
        chunk = s.recv(65536)
        if not chunk:
            raise EOFError("EOF after %d of %d bytes" % (len(got), len(payload)))
        got += chunk
    if got != payload:
        raise ValueError("echoed bytes differ")

def cmd_echo(port):
    with connect(int(port)) as s:
        for i in range(3):
            echo(s, b"hello through the published port %d\n" % i)
    payload = bytes(range(256)) * 1024  # 256 KiB, more than one buffer block
    with connect(int(port)) as s:
        echo(s, payload)
    print("echoed 3 lines and 256 KiB")

def cmd_get(port, path):
    # Exit 0 with the status line if an HTTP answer came; 3 if no HTTP answer could be had.
    try:
        with connect(int(port), timeout=3) as s:
            s.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path.encode())
            answer = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                answer += chunk
    except OSError as e:
        print("no answer: %s" % (e.__class__.__name__ if not str(e) else e))
        return 3
    if not answer.startswith(b"HTTP/"):
        print("no HTTP answer (%d bytes)" % len(answer))
        return 3
    head, _, body = answer.partition(b"\r\n\r\n")
    print(head.split(b"\r\n")[0].decode(), body[:60].decode(errors="replace").strip())
    return 0

def cmd_drain(port, n, ready_file, stopping_file, out_file):
    """Opens n connections, echoes on each, says ready, waits for the stop to begin, then checks
    that a client is still served, that a new connection is refused, and reads every client to
    its end: 'eof' (FIN) or 'reset'."""
    port, n = int(port), int(n)
    conns = [connect(port) for _ in range(n)]
    for i, s in enumerate(conns):
        echo(s, b"before the stop %d\n" % i)
    open(ready_file, "w").close()
    deadline = time.monotonic() + 30
    while not __import__("os").path.exists(stopping_file):
        if time.monotonic() > deadline:
            raise SystemExit("the stop never began")
        time.sleep(0.05)
    time.sleep(1.5)  # SIGTERM has arrived by now; the grace is 10 s
    result = {"served_during_drain": None, "new_connection": None, "clients": []}
    try:
        echo(conns[0], b"during the drain\n")
        result["served_during_drain"] = True
    except Exception as e:
        result["served_during_drain"] = repr(e)
    try:
        connect(port, timeout=2).close()
        result["new_connection"] = "accepted"
    except ConnectionRefusedError:
        result["new_connection"] = "refused"
    except ConnectionResetError:
        result["new_connection"] = "reset"
    except OSError as e:
        result["new_connection"] = repr(e)
    start = time.monotonic()
    for s in conns:
        s.settimeout(40)
        try:
            data = s.recv(65536)
            result["clients"].append("eof" if data == b"" else "data %r" % data[:40])
        except ConnectionResetError:
            result["clients"].append("reset")
        except OSError as e:
            result["clients"].append(repr(e))
        s.close()
    result["eof_after_s"] = round(time.monotonic() - start + 1.5, 1)
    with open(out_file, "w") as f:
        json.dump(result, f)

if __name__ == "__main__":
    sys.exit(globals()["cmd_" + sys.argv[1]](*sys.argv[2:]) or 0)
PY
client() { timeout 60 python3 "$work/client.py" "$@"; }

wait_healthy() {  # wait_healthy CONTAINER: `podman healthcheck run` until it passes (30 s)
  local i
  for i in $(seq 60); do
    if timeout 20 podman healthcheck run "$1" >/dev/null 2>>"$work/podman.err"; then
      echo "    healthy after ${i} healthcheck run(s)"
      return 0
    fi
    sleep 0.5
  done
  return 1
}
health_status() {
  podman_q inspect --format '{{.State.Health.Status}}' "$1" 2>/dev/null \
    || podman_q inspect --format '{{.State.Healthcheck.Status}}' "$1"
}

echo "== setup (podman, storage under ${SLABD_CTR})"
ctr_setup || { echo "FAIL podman set-up"; exit 1; }
for port in "$data_a" "$admin_a" "$data_b" "$admin_b"; do
  if ss -Hltn "sport = :$port" | grep -q .; then echo "FAIL port $port is busy; set SLABD_TEST_PORT_BASE"; exit 1; fi
done

echo "== 1. build $image"
if [[ ${SLABD_SKIP_BUILD:-0} == 1 ]]; then
  echo "    skipped (SLABD_SKIP_BUILD=1)"
else
  start=$(date +%s)
  if timeout 1200 podman build --format docker -t "$image" . >"$work/build.log" 2>&1; then
    ok "podman build --format docker: $(($(date +%s) - start)) s (unit tests: $(grep -o '[0-9]*% tests passed.*' "$work/build.log"); $(grep -o '^smoke: ok' "$work/build.log"))"
  else
    tail -n 40 "$work/build.log"
    fail "podman build ($(($(date +%s) - start)) s)"
    exit 1
  fi
fi
check "the image keeps its HEALTHCHECK (docker format)" \
  bash -c "timeout 60 buildah inspect --type image '$image' 2>/dev/null | grep -q -- '--probe'"
echo "    image size: $(podman_q image inspect --format '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1 / 1e6}')"

echo "== 2. run (defaults): data published on 127.0.0.1:$data_a, admin port published too (127.0.0.1:$admin_a)"
podman_q run -d --name "$ctr_a" --stop-timeout 15 \
  -p "127.0.0.1:$data_a:7000" -p "127.0.0.1:$admin_a:9100" "$image" --threads 2 >/dev/null \
  || { fail "podman run"; exit 1; }
check "the container turns healthy" wait_healthy "$ctr_a"
status=$(health_status "$ctr_a")
check "podman inspect health status: $status" test "$status" = healthy
pid1=$(podman_q exec "$ctr_a" cat /proc/1/cmdline | tr '\0' ' ')
check "PID 1 is slabd: $pid1" bash -c "[[ '$pid1' == /usr/local/bin/slabd* ]]"
uid=$(podman_q exec "$ctr_a" awk '/^Uid:/ {print $2}' /proc/1/status)
check "slabd runs as uid $uid (not root)" test "${uid:-0}" != 0

echo "== 3. echo"
answer=$(client echo "$data_a" 2>&1); code=$?
check "echo through the published data port: $answer" test "$code" = 0
check "slabd-load rr inside the container" \
  bash -c "timeout 30 podman exec '$ctr_a' slabd-load rr --target 127.0.0.1:7000 -c 1 --messages 3 >'$work/load.out' 2>>'$work/podman.err'"
sed 's/^/    /' "$work/load.out" | head -n 8

echo "== 4. admin endpoint"
check "admin answers inside the container (slabd --probe /stats)" \
  bash -c "timeout 30 podman exec '$ctr_a' slabd --config /etc/slabd/slabd.toml --probe /stats 2>>'$work/podman.err' | grep -q '\"pool\"'"
answer=$(client get "$admin_a" /healthz); code=$?
check "admin NOT reachable through its published port by default ($answer)" test "$code" = 3
podman_q run -d --name "$ctr_b" -p "127.0.0.1:$data_b:7000" -p "127.0.0.1:$admin_b:9100" \
  "$image" --threads 1 --admin 0.0.0.0:9100 >/dev/null || fail "podman run --admin 0.0.0.0:9100"
check "with --admin 0.0.0.0:9100 the container still turns healthy" wait_healthy "$ctr_b"
answer=$(client get "$admin_b" /healthz); code=$?
check "with --admin 0.0.0.0:9100 admin reachable from outside: /healthz $answer" test "$code" = 0
answer=$(client get "$admin_b" /stats); code=$?
check "  and /stats: $answer" test "$code" = 0
start=$(date +%s.%N)
podman_q stop -t 30 "$ctr_b" >/dev/null
took=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
code=$(podman_q inspect --format '{{.State.ExitCode}}' "$ctr_b")
check "idle container stops at once on SIGTERM: ${took} s, exit code $code" \
  bash -c "[[ '$code' == 0 ]] && awk 'BEGIN { exit !($took < 5) }'"

echo "== 5. drain: 5 clients connected, podman stop -t 30"
rm -f "$work/ready" "$work/stopping" "$work/drain.json"
python3 "$work/client.py" drain "$data_a" 5 "$work/ready" "$work/stopping" "$work/drain.json" \
  >"$work/drain.out" 2>&1 &
client_pid=$!
for _ in $(seq 100); do [[ -e $work/ready ]] && break; sleep 0.1; done
check "5 clients connected and echoed" test -e "$work/ready"
start=$(date +%s.%N)
touch "$work/stopping"
podman_q stop -t 30 "$ctr_a" >/dev/null
took=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
wait "$client_pid"; client_pid=
code=$(podman_q inspect --format '{{.State.ExitCode}}' "$ctr_a")
check "exit code $code after podman stop" test "$code" = 0
check "the stop took ${took} s: the grace (${grace} s) and less than grace + ${margin} s" \
  awk "BEGIN { exit !($took >= $grace - 1 && $took < $grace + $margin) }"
if [[ -s $work/drain.json ]]; then
  echo "    client saw: $(cat "$work/drain.json")"
  check "a client was served during the drain" grep -q '"served_during_drain": true' "$work/drain.json"
  check "a new connection during the drain was refused" grep -q '"new_connection": "refused"' "$work/drain.json"
  check "every open client got a clean EOF, none a reset" \
    grep -q '"clients": \["eof", "eof", "eof", "eof", "eof"\]' "$work/drain.json"
else
  cat "$work/drain.out"
  fail "the drain client reported nothing"
fi
# slabd logs to stderr, which podman logs replays on its own stderr.
timeout 60 podman logs "$ctr_a" >"$work/logs" 2>&1
grep -v '^time=' "$work/logs" | sed 's/^/    log: /' | tail -n 4
check "the log shows the drain" grep -q "received signal 15, draining (grace ${grace}000 ms)" "$work/logs"
check "the log shows a clean end" grep -q "slabd stopped: " "$work/logs"

echo "== $failures failure(s)"
exit "$failures"
