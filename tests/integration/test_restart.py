"""Restart without refusing anyone (issue 10): slabd-load churns connections while slabd is
restarted ten times through the handover socket. Each new process takes over the listening
sockets (and the locked pidfile) of the one before, which then drains and exits 0; not one
connection attempt is refused, reset or left unanswered."""

import json
import os
import signal
import subprocess
import tempfile
import time

import harness

SLABD_LOAD = os.environ.get("SLABD_LOAD", "")
RESTARTS = 10
# Connections per second, open loop: a stalled take-over would show as late connections, not as
# a client politely waiting. Whether the server kept up is printed, not asserted: under the
# sanitizers it may not.
CHURN_RATE = 2000
# Each process serves this many before the next restart: half a second of churn at full rate.
SERVED_EACH = 1000


class ChurnedRestarts(harness.SlabdTest):
    """A handover socket, a pidfile and slabd-load churning at CHURN_RATE, for each test."""

    def handover_args(self):
        self.assertTrue(SLABD_LOAD, "SLABD_LOAD names the slabd-load binary")
        directory = tempfile.TemporaryDirectory(prefix="slabd-test-")
        self.addCleanup(directory.cleanup)
        self.pidfile = os.path.join(directory.name, "slabd.pid")
        self.report = os.path.join(directory.name, "churn.json")
        return ["--threads", "2", "--handover-socket", os.path.join(directory.name, "handover.sock"),
                "--pidfile", self.pidfile]

    def start_churn(self, port):
        self.churn = subprocess.Popen(
            [SLABD_LOAD, "churn", "--target", f"127.0.0.1:{port}", "-c", "32",
             "--rate", str(CHURN_RATE), "-d", "600", "--timeout", "10", "--json", self.report,
             "--progress", "3600"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.addCleanup(lambda: self.churn.poll() is None and self.churn.kill())

    def finish_churn(self):
        """Ends the churn; asserts that no connection failed, was reset or was refused."""
        self.churn.send_signal(signal.SIGINT)
        output = self.churn.communicate(timeout=harness.WAIT)[0].decode("utf-8", "replace")
        with open(self.report) as f:
            r = json.load(f)
        failed = {k: v for k, v in r["outcomes"].items() if k != "ok" and v}
        self.assertEqual(failed, {}, f"no connection failed, was reset or refused:\n{output}")
        self.assertEqual((r["mismatches"], r["errors"]), (0, 0), output)
        self.assertTrue(r["passed"], output)
        self.assertGreater(r["outcomes"]["ok"], 0)
        return r


class RestartTest(ChurnedRestarts):
    def test_ten_restarts_under_churn_lose_no_connection(self):
        args = self.handover_args()
        pidfile = self.pidfile
        current = self.start(*args)
        port, admin_port = current.port, current.admin_port
        self.start_churn(port)
        current.wait_stats(lambda s: s["connections"]["accepted"] > 200, "churn under way")

        started = time.monotonic()
        for i in range(RESTARTS):
            before = current
            current = self.start(*args)
            self.assertEqual((current.port, current.admin_port), (port, admin_port),
                             "the new process listens where the old one did")
            try:
                code = before.wait_exit()
            except subprocess.TimeoutExpired:
                self.fail(f"restart {i}: the old process did not drain and exit:\n{before.output()}")
            self.assertEqual(code, 0, before.output())
            self.assertIsNone(before.sanitizer_report(), before.output())
            self.assertIn(f"handover: pid {current.pid} serves the listeners now", before.stderr())
            self.assertIn(", 0 refused", before.stderr().splitlines()[-1])
            with open(pidfile) as f:
                self.assertEqual(int(f.read()), current.pid, "the pidfile names the new process")
            current.wait_stats(lambda s: s["connections"]["accepted"] >= SERVED_EACH,
                               f"churn after restart {i}")
        elapsed = time.monotonic() - started

        r = self.finish_churn()
        served = r["outcomes"]["ok"]
        s = current.stats()
        self.assertEqual(s["connections"]["refused"], 0)
        print(f"\n{RESTARTS} restarts in {elapsed:.1f} s under churn offered at {CHURN_RATE}/s: "
              f"{served} connections at {r['conns_per_s']:.0f}/s, none failed, latency p99 "
              f"{r['latency_us']['p99'] / 1000:.1f} ms, max {r['latency_us']['max'] / 1000:.1f} ms",
              flush=True)
        self.stop(current)
        self.assertFalse(os.path.exists(pidfile))


def gone(pid):
    """Exited: no such process, or a zombie its new parent has not reaped yet."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def wait_until(condition, what):
    deadline = time.monotonic() + harness.WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {harness.WAIT:.0f} s for {what}")
        time.sleep(harness.POLL)


class RestartInPlaceTest(ChurnedRestarts):
    def test_sigusr2_starts_the_successor_itself_under_churn(self):
        """SIGUSR2: slabd starts its own program again, which takes the listeners over the
        handover socket (nginx's binary upgrade, with the handover's no-refusal guarantee)."""
        first = self.start(*self.handover_args())
        pidfile = self.pidfile
        self.start_churn(first.port)
        pid = first.pid
        for i in range(3):
            first.wait_stats(lambda s: s["connections"]["accepted"] >= SERVED_EACH, f"churn before upgrade {i}")
            os.kill(pid, signal.SIGUSR2)
            wait_until(lambda: gone(pid), f"pid {pid} to hand over and exit")
            with open(pidfile) as f:
                successor = int(f.read())
            self.assertNotEqual(successor, pid)
            # Not this test's child: stopped by pid whatever happens.
            self.addCleanup(lambda p=successor: gone(p) or os.kill(p, signal.SIGKILL))
            pid = successor
        first.wait_stats(lambda s: s["connections"]["accepted"] >= SERVED_EACH, "churn after the last upgrade")
        r = self.finish_churn()
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: gone(pid), "the last one to stop")
        log = first.stderr()
        self.assertEqual(log.count("SIGUSR2: started pid"), 3, log)
        stops = [line for line in log.splitlines() if "slabd stopped:" in line]
        self.assertEqual(len(stops), 4, log)
        self.assertTrue(all(line.endswith(", 0 refused") for line in stops), log)
        self.assertIsNone(first.sanitizer_report(), log)
        print(f"\n3 restarts in place under churn at {CHURN_RATE}/s: {r['outcomes']['ok']} connections, "
              f"none failed, p99 {r['latency_us']['p99'] / 1000:.1f} ms", flush=True)

    def test_sigusr2_without_a_handover_socket_changes_nothing(self):
        server = self.start()
        server.signal(signal.SIGUSR2)
        deadline = time.monotonic() + harness.WAIT
        while "SIGUSR2: a restart in place needs daemon.handover_socket" not in server.stderr():
            self.assertLess(time.monotonic(), deadline, server.output())
            time.sleep(harness.POLL)
        with server.connect() as s:
            harness.assert_echo(s, b"still here")
        self.stop(server)


if __name__ == "__main__":
    harness.main()
