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


class RestartTest(harness.SlabdTest):
    def test_ten_restarts_under_churn_lose_no_connection(self):
        self.assertTrue(SLABD_LOAD, "SLABD_LOAD names the slabd-load binary")
        directory = tempfile.TemporaryDirectory(prefix="slabd-test-")
        self.addCleanup(directory.cleanup)
        sock = os.path.join(directory.name, "handover.sock")
        pidfile = os.path.join(directory.name, "slabd.pid")
        report = os.path.join(directory.name, "churn.json")
        args = ["--threads", "2", "--handover-socket", sock, "--pidfile", pidfile]
        current = self.start(*args)
        port, admin_port = current.port, current.admin_port

        churn = subprocess.Popen(
            [SLABD_LOAD, "churn", "--target", f"127.0.0.1:{port}", "-c", "32",
             "--rate", str(CHURN_RATE), "-d", "600", "--timeout", "10", "--json", report,
             "--progress", "3600"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.addCleanup(lambda: churn.poll() is None and churn.kill())
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

        churn.send_signal(signal.SIGINT)
        output = churn.communicate(timeout=harness.WAIT)[0].decode("utf-8", "replace")
        with open(report) as f:
            r = json.load(f)
        failed = {k: v for k, v in r["outcomes"].items() if k != "ok" and v}
        self.assertEqual(failed, {}, f"no connection failed, was reset or refused:\n{output}")
        self.assertEqual((r["mismatches"], r["errors"]), (0, 0), output)
        self.assertTrue(r["passed"], output)
        served = r["outcomes"]["ok"]
        self.assertGreater(served, 0)
        s = current.stats()
        self.assertEqual(s["connections"]["refused"], 0)
        print(f"\n{RESTARTS} restarts in {elapsed:.1f} s under churn offered at {CHURN_RATE}/s: "
              f"{served} connections at {r['conns_per_s']:.0f}/s, none failed, latency p99 "
              f"{r['latency_us']['p99'] / 1000:.1f} ms, max {r['latency_us']['max'] / 1000:.1f} ms",
              flush=True)
        self.stop(current)
        self.assertFalse(os.path.exists(pidfile))


if __name__ == "__main__":
    harness.main()
