"""What every integration test shares: run the real slabd on ephemeral loopback ports, learn the
ports from its start-up line, read /stats, talk to it over sockets, and stop it with SIGTERM.

A test fails when slabd exits with anything but 0 after SIGTERM, or when a sanitizer (ASan, LSan,
UBSan, TSan) wrote a report: the same files run unchanged under the dev, asan and tsan presets.

Every wait here is a bound on how long a broken server may take to fail a test, never a
requirement on speed: the bounds are generous because sanitizer builds run 2-10x slower on a
shared machine.
"""

import array
import contextlib
import ctypes
import fcntl
import json
import os
import re
import resource
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
import unittest
import urllib.request

SLABD = os.environ.get("SLABD", "")

WAIT = 60.0  # for anything the server should do "soon"
IO_TIMEOUT = 30.0  # for each socket operation
POLL = 0.05

START_LINE = re.compile(
    r"slabd \S+ (?P<mode>echo|proxy) mode: data (?P<host>[\d.]+|\[[\da-f:.]+\]):(?P<port>\d+) "
    r"admin (?P<admin_host>[\d.]+):(?P<admin_port>\d+), pool (?P<capacity>\d+) blocks of "
    r"(?P<block>\d+) bytes, (?P<threads>\d+) thread"
)
SANITIZER_REPORTS = (
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "WARNING: ThreadSanitizer",
    "ERROR: ThreadSanitizer",
    "runtime error:",
)

_PR_SET_PDEATHSIG = 1


def _child_setup(nofile):
    """Runs in the child before exec: a ctest timeout that kills the test must take slabd along,
    and some tests need a descriptor limit that slabd cannot raise (soft = hard)."""

    def setup():
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    return setup


class _Drain(threading.Thread):
    """Collects one output stream of the child, so that the child never blocks on a full pipe."""

    def __init__(self, stream, changed):
        super().__init__(daemon=True)
        self.stream = stream
        self.changed = changed
        self.chunks = []

    def run(self):
        for line in iter(self.stream.readline, b""):
            with self.changed:
                self.chunks.append(line.decode("utf-8", "replace"))
                self.changed.notify_all()
        with self.changed:
            self.changed.notify_all()

    def text(self):
        with self.changed:
            return "".join(self.chunks)


def sanitizer_report(text):
    """The first sanitizer marker found in `text`, or None."""
    return next((marker for marker in SANITIZER_REPORTS if marker in text), None)


def run_slabd(*args, timeout=WAIT):
    """Runs slabd to completion (for flags that exit at once): (exit code, stdout, stderr)."""
    done = subprocess.run(
        [SLABD, *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
        preexec_fn=_child_setup(None),
    )
    return done.returncode, done.stdout.decode("utf-8", "replace"), done.stderr.decode("utf-8", "replace")


class Slabd:
    """One running slabd. Start it with SlabdTest.start() so that it is always killed."""

    def __init__(self, args, nofile=None):
        self.argv = [SLABD, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", *args]
        self._changed = threading.Condition()
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=_child_setup(nofile),
        )
        self.pid = self.proc.pid
        self._stdout = _Drain(self.proc.stdout, self._changed)
        self._stderr = _Drain(self.proc.stderr, self._changed)
        self._stdout.start()
        self._stderr.start()
        self.port = self.admin_port = self.capacity = self.threads = None

    # -- lifetime ---------------------------------------------------------------------------
    def wait_ready(self):
        """Waits for the start-up line: slabd logs it once every listener is bound."""
        deadline = time.monotonic() + WAIT
        with self._changed:
            while True:
                m = START_LINE.search("".join(self._stderr.chunks))
                if m:
                    break
                if self.proc.poll() is not None and not self._stderr.is_alive():
                    raise AssertionError(f"slabd exited with {self.proc.returncode} before it was "
                                         f"ready:\n{self.output()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no start-up line on slabd's stderr:\n{self.output()}")
                self._changed.wait(min(left, 0.5))
        self.port = int(m["port"])
        self.admin_port = int(m["admin_port"])
        self.capacity = int(m["capacity"])
        self.threads = int(m["threads"])
        return self

    def running(self):
        return self.proc.poll() is None

    def signal(self, signo):
        if self.running():
            os.kill(self.pid, signo)

    @contextlib.contextmanager
    def stopped(self):
        """SIGSTOP for the block's length: what the kernel queues meanwhile waits for slabd, in the
        order it was queued (epoll's ready list is first in, first out), until SIGCONT."""
        os.kill(self.pid, signal.SIGSTOP)
        try:
            deadline = time.monotonic() + WAIT
            while any(state not in ("T", "t") for state in self._thread_states()):
                if time.monotonic() > deadline:
                    raise AssertionError(f"slabd did not stop on SIGSTOP:\n{self.output()}")
                time.sleep(0.001)
            yield
        finally:
            os.kill(self.pid, signal.SIGCONT)

    def newcomer_behind_a_hang_up(self, leaving, connect):
        """While stopped, a newcomer (`connect()`, sending "newcomer\\n") and then `leaving` hung
        up: slabd's next epoll_wait returns the newcomer first. Returns the newcomer."""
        with self.stopped():
            newcomer = connect()
            newcomer.sendall(b"newcomer\n")
            leaving.close()
        return newcomer

    def _thread_states(self):
        states = []
        for task in os.listdir(f"/proc/{self.pid}/task"):
            try:
                with open(f"/proc/{self.pid}/task/{task}/stat") as f:
                    # The state follows the command name, in parentheses and maybe with spaces.
                    states.append(f.read().rsplit(")", 1)[1].split()[0])
            except FileNotFoundError:
                pass  # a thread that has just exited
        return states

    def wait_exit(self, timeout=WAIT):
        """The exit code, once slabd has exited and its output has been collected."""
        code = self.proc.wait(timeout)
        for drain in (self._stdout, self._stderr):
            drain.join(timeout)
            if not drain.is_alive():
                drain.stream.close()
        return code

    def kill(self):
        """SIGKILL by PID, for cleanup and for tests that kill an upstream on purpose."""
        if self.running():
            os.kill(self.pid, signal.SIGKILL)
        try:
            self.wait_exit()
        except subprocess.TimeoutExpired:
            pass

    # -- output -----------------------------------------------------------------------------
    def stderr(self):
        return self._stderr.text()

    def stdout(self):
        return self._stdout.text()

    def output(self):
        return f"$ {' '.join(self.argv)}\n--- stderr ---\n{self.stderr()}--- stdout ---\n{self.stdout()}"

    def sanitizer_report(self):
        return sanitizer_report(self.stderr() + self.stdout())

    # -- talking to it ----------------------------------------------------------------------
    def connect(self, timeout=IO_TIMEOUT, rcvbuf=None):
        """A client; `rcvbuf` fixes its receive buffer (set before connect, so the window obeys)."""
        if rcvbuf is None:
            return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            s.settimeout(timeout)
            s.connect(("127.0.0.1", self.port))
        except OSError:
            s.close()
            raise
        return s

    def get(self, path, timeout=IO_TIMEOUT):
        url = f"http://127.0.0.1:{self.admin_port}{path}"
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode("utf-8")

    def stats(self):
        status, body = self.get("/stats")
        assert status == 200, f"/stats answered {status}"
        return json.loads(body)

    def wait_stats(self, condition, what, timeout=WAIT):
        """Polls /stats until condition(stats) holds; returns those stats."""
        deadline = time.monotonic() + timeout
        while True:
            s = self.stats()
            if condition(s):
                return s
            if time.monotonic() > deadline:
                raise AssertionError(f"waited {timeout:.0f} s for {what}; last /stats:\n"
                                     f"{json.dumps(s, indent=1)}")
            time.sleep(POLL)


class SlabdTest(unittest.TestCase):
    """Starts slabd instances that are killed whatever happens, and checks how each one ended."""

    def start(self, *args, nofile=None):
        """slabd on ephemeral loopback ports, with `args` after those (a later flag wins)."""
        server = Slabd(list(args), nofile=nofile)
        self.addCleanup(self._finish, server)
        return server.wait_ready()

    def _finish(self, server):
        server.kill()
        report = server.sanitizer_report()
        if report:
            self.fail(f"sanitizer report ({report}) from slabd:\n{server.output()}")

    def stop(self, server):
        """SIGTERM: slabd drains, exits 0, and wrote no sanitizer report."""
        server.signal(signal.SIGTERM)
        try:
            code = server.wait_exit()
        except subprocess.TimeoutExpired:
            self.fail(f"slabd did not exit within {WAIT:.0f} s of SIGTERM:\n{server.output()}")
        self.assertIsNone(server.sanitizer_report(), server.output())
        self.assertEqual(code, 0, f"exit code after SIGTERM\n{server.output()}")

    def write_config(self, text, name="slabd.toml"):
        """A config file in a directory that is removed after the test; returns its path."""
        directory = tempfile.TemporaryDirectory(prefix="slabd-test-")
        self.addCleanup(directory.cleanup)
        path = os.path.join(directory.name, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def connect_all(self, server, n):
        socks = []
        self.addCleanup(close_all, socks)
        for _ in range(n):
            socks.append(server.connect())
        return socks


# -- socket helpers -------------------------------------------------------------------------

def close_all(socks):
    for s in socks:
        try:
            s.close()
        except OSError:
            pass


def pattern(size, seed=0):
    """`size` bytes of consecutive little-endian 32-bit counters from `seed`: no 4-byte-aligned
    window repeats, so a lost, duplicated or reordered chunk cannot go unnoticed."""
    return array.array("I", range(seed, seed + size // 4 + 1)).tobytes()[:size]


def recv_exact(sock, n):
    parts = []
    left = n
    while left > 0:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            raise AssertionError(f"EOF after {n - left} of {n} bytes")
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def recv_to_eof(sock, limit=64 << 20):
    """Everything until EOF; a reset raises ConnectionResetError, which is never a clean close."""
    parts = []
    total = 0
    while True:
        chunk = sock.recv(1 << 16)
        if not chunk:
            return b"".join(parts)
        parts.append(chunk)
        total += len(chunk)
        if total > limit:
            raise AssertionError(f"more than {limit} bytes before EOF")


def first_difference(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


def assert_echo(sock, payload):
    sock.sendall(payload)
    got = recv_exact(sock, len(payload))
    if got != payload:
        raise AssertionError(f"echo differs at byte {first_difference(got, payload)} of {len(payload)}")


class Sender(threading.Thread):
    """Sends `data` on `sock` (then optionally shuts the write side), remembering any error so
    that the receiving side can run concurrently in the test's thread."""

    def __init__(self, sock, data, shutdown=False, repeat=1, chunk=1 << 16):
        super().__init__(daemon=True)
        self.sock, self.data, self.shutdown, self.repeat, self.chunk = sock, data, shutdown, repeat, chunk
        self.error = None
        self.sent = 0

    def run(self):
        try:
            view = memoryview(self.data)
            for _ in range(self.repeat):
                at = 0
                while at < len(view):
                    n = self.sock.send(view[at:at + self.chunk])
                    at += n
                    self.sent += n
            if self.shutdown:
                self.sock.shutdown(socket.SHUT_WR)
        except OSError as e:
            self.error = e

    def finish(self):
        self.join(WAIT)
        if self.is_alive():
            raise AssertionError(f"sender still blocked after {WAIT:.0f} s ({self.sent} bytes sent)")
        if self.error:
            raise self.error


def stream_echo(sock, size, shutdown=False):
    """Streams `size` pattern bytes while reading the echo back concurrently; checks every byte."""
    data = pattern(size)
    sender = Sender(sock, data, shutdown=shutdown)
    sender.start()
    got = 0
    view = memoryview(data)
    while got < size:
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise AssertionError(f"EOF after {got} of {size} echoed bytes")
        if chunk != view[got:got + len(chunk)]:
            raise AssertionError(f"echo differs at byte {got + first_difference(chunk, view[got:got + len(chunk)])}")
        got += len(chunk)
    sender.finish()


def refused_port():
    """A loopback port on which a connect is refused: bound but never listening, and kept bound
    (close the socket when done) so that nothing else can take the port meanwhile."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    return s, s.getsockname()[1]


def readable(socks, timeout=0.0):
    """Those of `socks` with data or EOF to read, waiting up to `timeout` seconds for the first.
    poll(), not select(): a storm's descriptors may pass FD_SETSIZE."""
    poller = select.poll()
    by_fd = {s.fileno(): s for s in socks}
    for fd in by_fd:
        poller.register(fd, select.POLLIN)
    return [by_fd[fd] for fd, _ in poller.poll(int(timeout * 1000))]


def is_readable(sock):
    return bool(readable([sock]))


def wait_readable(socks, count, what):
    """Waits until at least `count` of `socks` are readable; returns those that are."""
    deadline = time.monotonic() + WAIT
    while True:
        ready = readable(socks, 0.1)
        if len(ready) >= count:
            return ready
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {WAIT:.0f} s for {what}: {len(ready)} of {count}")


# -- reliability-suite helpers (test_buffers, test_faults, test_storm) ---------------------

def reset(sock):
    """Closes `sock` with RST (SO_LINGER 0) rather than FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def unacked(sock):
    """Bytes `sock` has queued or sent but not yet seen acknowledged (SIOCOUTQ)."""
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]


def wait_delivered(sock, timeout=WAIT):
    """Waits until the peer's kernel has acknowledged everything sent on `sock`: bytes sent
    before a reset are then bytes the peer received."""
    deadline = time.monotonic() + timeout
    while unacked(sock) > 0:
        if time.monotonic() > deadline:
            raise AssertionError(f"{unacked(sock)} bytes still unacknowledged after {timeout:.0f} s")
        time.sleep(0.01)


def rss_kib(pid):
    """Resident set size of process `pid`, in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def rejected_frees(stats):
    """Every pool's rejected frees (double, foreign, misaligned) in `stats`, by pool and kind:
    each must stay 0."""
    out = {}
    for name, value in stats.items():
        if isinstance(value, dict) and isinstance(value.get("rejected_frees"), dict):
            for kind, n in value["rejected_frees"].items():
                out[f"{name}.{kind}"] = n
    return out


def sanitized_binary(path=None):
    """"asan", "tsan" or None: which sanitizer the slabd binary was built with, so that
    heavy tests can scale themselves down ($SLABD_SANITIZER overrides)."""
    forced = os.environ.get("SLABD_SANITIZER")
    if forced is not None:
        return forced or None
    try:
        with open(path or SLABD, "rb") as f:
            image = f.read()
    except OSError:
        return None
    if b"__tsan_init" in image:
        return "tsan"
    if b"__asan_init" in image:
        return "asan"
    return None


def wait_stalled(server, what, quiet=0.5, extra=lambda s: True):
    """Waits until slabd's byte counters have not moved for `quiet` seconds (and `extra` holds):
    a relay is blocked, not merely slow. Returns those stats."""
    last = {"key": None, "since": 0.0}

    def stalled(s):
        key, now = (s["bytes"]["in"], s["bytes"]["out"]), time.monotonic()
        if key != last["key"]:
            last["key"], last["since"] = key, now
        return now - last["since"] >= quiet and extra(s)

    return server.wait_stats(stalled, what)


def stats_settled(s):
    """No connection left and every block back: what each reliability test ends with."""
    return (s["connections"]["active"] == 0 and s["pool"]["in_use"] == 0
            and s.get("buffers", {}).get("in_use", 0) == 0)


class PyUpstream:
    """An upstream in the test process on 127.0.0.1: each accepted connection runs
    `behaviour(conn, index)` in its own thread (default: echo until EOF, then FIN). Stops by
    itself: accepts poll a stop flag, and every socket has IO_TIMEOUT."""

    def __init__(self, behaviour=None, backlog=128, port=0, host="127.0.0.1"):
        self.behaviour = behaviour or echo_behaviour
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.listener = socket.create_server((host, port), family=family, backlog=backlog)
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.accepted = 0
        self.conns = []
        self.errors = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = []
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)
        self._acceptor.start()

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn.settimeout(IO_TIMEOUT)
            with self._lock:
                index = self.accepted
                self.accepted += 1
                self.conns.append(conn)
            t = threading.Thread(target=self._serve, args=(conn, index), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, conn, index):
        try:
            self.behaviour(conn, index)
        except OSError as e:
            with self._lock:
                self.errors.append(e)
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def wait_accepted(self, n, timeout=WAIT):
        deadline = time.monotonic() + timeout
        while self.accepted < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"the upstream accepted {self.accepted} of {n} connections")
            time.sleep(POLL)

    def close(self):
        self._stop.set()
        self._acceptor.join(WAIT)
        self.listener.close()
        for t in list(self._threads):
            t.join(1.0)
        with self._lock:
            for c in self.conns:
                try:
                    c.close()
                except OSError:
                    pass


def echo_behaviour(conn, index):
    while True:
        chunk = conn.recv(1 << 16)
        if not chunk:
            break
        conn.sendall(chunk)
    conn.shutdown(socket.SHUT_WR)


def main():
    """Entry point of each test file: `python3 test_x.py PATH/TO/slabd [unittest args]`, or with
    the binary in $SLABD."""
    global SLABD
    argv = list(sys.argv)
    if len(argv) > 1 and not argv[1].startswith("-"):
        SLABD = argv.pop(1)
    if not SLABD or not os.access(SLABD, os.X_OK):
        sys.exit(f"usage: {argv[0]} PATH/TO/slabd [unittest options] (got {SLABD!r})")
    # The storm tests hold a few hundred client sockets at once.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < 4096:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 4096, hard))
    unittest.main(argv=argv, verbosity=2)
