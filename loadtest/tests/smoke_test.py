#!/usr/bin/env python3
"""slabd-load against the real slabd, on ephemeral loopback ports: every mode runs briefly and
verifies its echoes, and `hold` past --max-connections sees exactly the surplus refused cleanly.

Usage: smoke_test.py PATH/TO/slabd PATH/TO/slabd-load
Every bound here is generous (sanitizer builds are several times slower), and the whole test
takes a few seconds.
"""

import ctypes
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

WAIT = 20.0
SANITIZER_REPORTS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "WARNING: ThreadSanitizer",
                     "runtime error:")
PORT_LINE = re.compile(r"data 127\.0\.0\.1:(\d+) admin")


def die_with_parent():
    """Runs in the child before exec: if ctest kills this script, slabd goes too."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Slabd:
    def __init__(self, binary, *args):
        self.proc = subprocess.Popen(
            [binary, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--threads", "1", *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            preexec_fn=die_with_parent)
        self.lines = []
        self.port_known = threading.Event()
        self.port = None
        threading.Thread(target=self._drain, daemon=True).start()
        if not self.port_known.wait(WAIT):
            self.stop()
            raise AssertionError("slabd logged no data port:\n" + self.log())

    def _drain(self):
        for raw in iter(self.proc.stderr.readline, b""):
            line = raw.decode("utf-8", "replace")
            self.lines.append(line)
            m = PORT_LINE.search(line)
            if m and self.port is None:
                self.port = int(m.group(1))
                self.port_known.set()

    def log(self):
        return "".join(self.lines)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for marker in SANITIZER_REPORTS:
            if marker in self.log():
                raise AssertionError(f"slabd wrote a sanitizer report:\n{self.log()}")


def load(binary, port, workdir, *args):
    """Runs slabd-load to completion and returns its exit code and JSON report."""
    report = os.path.join(workdir, "report.json")
    if os.path.exists(report):
        os.remove(report)
    argv = [binary, args[0], "--target", f"127.0.0.1:{port}", "--json", report, "--timeout", "10", *args[1:]]
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=WAIT,
                          preexec_fn=die_with_parent)
    out = done.stdout.decode("utf-8", "replace") + done.stderr.decode("utf-8", "replace")
    print(f"$ {' '.join(argv)}\n{out}", flush=True)
    for marker in SANITIZER_REPORTS:
        assert marker not in out, f"slabd-load wrote a sanitizer report ({marker})"
    with open(report) as f:
        return done.returncode, json.load(f)


def check(condition, what, report):
    if not condition:
        raise AssertionError(f"{what}\nreport: {json.dumps(report, indent=1)}")


def outcomes(report, **expected):
    """The outcome counts, every one not named being zero."""
    want = {name: 0 for name in report["outcomes"]}
    want.update(expected)
    return report["outcomes"] == want


def ends_with_its_connections(slabd_load, port):
    """A progress line falling due just as the last connection finished used to re-arm the
    progress timer after the run had ended: slabd-load then printed progress for ever and ignored
    SIGTERM. A progress line every 0.5 ms makes that moment likely in each of these runs."""
    argv = [slabd_load, "rr", "--target", f"127.0.0.1:{port}", "-c", "1", "-s", "64", "-d", "0.1",
            "--progress", "0.0005"]
    for i in range(30):
        try:
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=10,
                                  preexec_fn=die_with_parent)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"run {i}: slabd-load still running 10 s after a 0.1 s run")
        assert done.returncode == 0, f"run {i}: exit code {done.returncode}"


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    slabd, slabd_load = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory() as workdir:
        server = Slabd(slabd)
        try:
            code, r = load(slabd_load, server.port, workdir, "rr", "-c", "4", "-s", "64", "--messages", "1000",
                           "--threads", "2")
            check(code == 0 and r["passed"], "rr did not pass", r)
            check(r["msgs"] == 1000 and r["mismatches"] == 0, "rr: 1000 verified echoes", r)
            check(outcomes(r, ok=4), "rr: four clean connections", r)
            check(r["bytes"]["sent"] == r["bytes"]["received"] == 64_000, "rr: bytes both ways", r)
            check(0 < r["latency_us"]["p50"] <= r["latency_us"]["p99"] <= r["latency_us"]["max"], "rr: latencies", r)

            code, r = load(slabd_load, server.port, workdir, "rate", "-c", "4", "--rate", "4000",
                           "--messages", "1000", "-s", "100")
            check(code == 0 and r["msgs"] == 1000 and outcomes(r, ok=4), "rate: 1000 messages on schedule", r)

            code, r = load(slabd_load, server.port, workdir, "churn", "-c", "2", "--messages", "100")
            check(code == 0 and r["msgs"] == 100 and outcomes(r, ok=100), "churn: 100 connections", r)
            check(r["conns_per_s"] > 0, "churn: connections per second", r)

            # Paced churn never runs ahead of its schedule: 200 connections at 1,000/s start
            # over at least 0.199 s, however fast the server answers.
            code, r = load(slabd_load, server.port, workdir, "churn", "-c", "4", "--rate", "1000",
                           "--messages", "200")
            check(code == 0 and r["msgs"] == 200 and outcomes(r, ok=200), "paced churn: 200 connections", r)
            check(r["rate"] == 1000 and r["duration_s"] >= 0.199, "paced churn: on schedule", r)

            code, r = load(slabd_load, server.port, workdir, "bulk", "-c", "2", "-s", "65536",
                           "--messages", "64")
            check(code == 0 and r["mismatches"] == 0 and outcomes(r, ok=2), "bulk: streamed both ways", r)
            check(r["bytes"]["received"] == 64 * 65536, "bulk: every byte echoed", r)

            ends_with_its_connections(slabd_load, server.port)
        finally:
            server.stop()

        full = Slabd(slabd, "--max-connections", "10")
        try:
            code, r = load(slabd_load, full.port, workdir, "hold", "-c", "20", "-d", "0.5")
            check(code == 0 and r["passed"], "hold past capacity: refusals are not errors", r)
            check(outcomes(r, ok=10, refused_cleanly=10), "hold: 10 held, 10 refused cleanly", r)
            check(r["msgs"] == 10 and r["mismatches"] == 0, "hold: one verified echo per held connection", r)
        finally:
            full.stop()

        busy = Slabd(slabd, "--max-connections", "3", "--busy-message", "busy, try later")
        try:
            code, r = load(slabd_load, busy.port, workdir, "hold", "-c", "6", "-d", "0.5", "-s", "8")
            check(code == 0 and outcomes(r, ok=3, refused_cleanly=3), "hold: a busy line and EOF is a clean refusal", r)
            check(r["busy_lines"] == 3 and r["mismatches"] == 0, "hold: busy lines are not mismatches", r)
        finally:
            busy.stop()
    print("smoke test passed")


if __name__ == "__main__":
    main()
