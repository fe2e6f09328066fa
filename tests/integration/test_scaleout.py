"""Scale-out on an existing engine: two slabd instances behind a real HAProxy (Debian's package),
configured by deploy/haproxy/haproxy.cfg, which health-checks each instance's /readyz. Fill one
instance's pool past its ready headroom: HAProxy marks it down and sends every newcomer to the
other, and not one client is refused; drain it, and it takes clients again."""

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error

import harness

CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "deploy", "haproxy", "haproxy.cfg")
CAPACITY, HEADROOM = 10, 3  # /readyz is 503 from 8 connections on


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HAProxy:
    def __init__(self, test, instances):
        self.dir = tempfile.mkdtemp(prefix="slabd-haproxy-")
        test.addCleanup(shutil.rmtree, self.dir, True)
        self.port = free_port()
        self.socket_path = os.path.join(self.dir, "admin.sock")
        with open(CONFIG) as f:
            text = f.read()
        # The shipped file, with this test's addresses, a stats socket and a fast check interval.
        text = text.replace("global\n", f"global\n    stats socket {self.socket_path} mode 600 level admin\n", 1)
        text = text.replace("bind :7000", f"bind 127.0.0.1:{self.port}")
        text = text.replace("inter 1s", "inter 100ms")
        text = re.sub(r"    server slabd1 .*\n    server slabd2 .*\n",
                      "".join(f"    server slabd{i + 1} 127.0.0.1:{s.port} check port {s.admin_port}\n"
                              for i, s in enumerate(instances)), text)
        cfg = os.path.join(self.dir, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write(text)
        self.proc = subprocess.Popen(["haproxy", "-db", "-f", cfg], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     preexec_fn=harness._child_setup(None))
        test.addCleanup(self.stop)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(harness.WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stderr.close()

    def states(self):
        """Each server's status as HAProxy's stats socket says it: UP, DOWN..."""
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(harness.IO_TIMEOUT)
                s.connect(self.socket_path)
                s.sendall(b"show stat\n")
                text = harness.recv_to_eof(s).decode()
        except OSError:
            return {}
        lines = text.splitlines()
        header = lines[0].lstrip("# ").split(",")
        rows = [dict(zip(header, line.split(","))) for line in lines[1:] if line]
        return {r["svname"]: r["status"].split()[0] for r in rows if r["svname"].startswith("slabd")}

    def wait_states(self, want, what):
        deadline = time.monotonic() + harness.WAIT
        while self.states() != want:
            if self.proc.poll() is not None:
                raise AssertionError(f"haproxy exited: {self.proc.stderr.read().decode()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"waited for {what}: HAProxy says {self.states()}")
            time.sleep(harness.POLL)

    def connect(self):
        return socket.create_connection(("127.0.0.1", self.port), timeout=harness.IO_TIMEOUT)


class ScaleOutTest(harness.SlabdTest):
    def test_a_full_instance_is_skipped_until_it_drains(self):
        self.assertIsNotNone(shutil.which("haproxy"), "haproxy is installed by scripts/install-deps.sh")
        config = self.write_config(f"[admin]\nready_headroom = {HEADROOM}\n")
        one, two = (self.start("--config", config, "--max-connections", str(CAPACITY), "--threads", "1")
                    for _ in range(2))
        lb = HAProxy(self, [one, two])
        lb.wait_states({"slabd1": "UP", "slabd2": "UP"}, "both instances up")

        # Fill the first one past its headroom, straight to it.
        direct = self.connect_all(one, CAPACITY - HEADROOM + 1)
        for i, s in enumerate(direct):
            harness.assert_echo(s, b"direct %d" % i)
        self.assertEqual(http_status(one, "/readyz"), 503)
        lb.wait_states({"slabd1": "DOWN", "slabd2": "UP"}, "the full instance marked down")

        # Every newcomer goes to the other one, and is served.
        held = []
        self.addCleanup(harness.close_all, held)
        for i in range(CAPACITY - HEADROOM):
            s = lb.connect()
            held.append(s)
            harness.assert_echo(s, b"through haproxy %d" % i)
        s1, s2 = one.stats(), two.stats()
        self.assertEqual(s1["connections"]["accepted"], len(direct), "nothing more reached the full one")
        self.assertEqual(s2["connections"]["active"], len(held))
        self.assertEqual((s1["connections"]["refused"], s2["connections"]["refused"]), (0, 0))

        # It drains and comes back.
        harness.close_all(direct)
        one.wait_stats(lambda s: s["connections"]["active"] == 0, "the first instance drained")
        lb.wait_states({"slabd1": "UP", "slabd2": "UP"}, "the drained instance back up")
        for i in range(4):
            s = lb.connect()
            held.append(s)
            harness.assert_echo(s, b"after the drain %d" % i)
        s1, s2 = one.stats(), two.stats()
        self.assertEqual(s1["connections"]["active"], 4, "leastconn sends the newcomers to the emptier one")
        self.assertEqual((s1["connections"]["refused"], s2["connections"]["refused"]), (0, 0))


def http_status(server, path):
    try:
        return server.get(path)[0]
    except urllib.error.HTTPError as e:
        return e.code


if __name__ == "__main__":
    harness.main()
