#!/usr/bin/env python3
"""Soak: churn + streaming against a release slabd for --minutes (default 10), printing RSS, open
descriptors and error counts (from /stats) every --every seconds (default 30) as a table, then a
verdict: RSS growth, descriptor growth, errors. Not part of CI.

  scripts/soak.py --slabd build/release/server/slabd --load build/release/loadtest/slabd-load
Exit status: 0 when the verdict passes, 1 otherwise."""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

START = re.compile(r"data [\d.]+:(\d+) admin [\d.]+:(\d+)")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def stats(admin):
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/stats", timeout=10) as r:
        return json.loads(r.read())


def error_counts(s):
    c = s["connections"]
    rejected = sum(v for p in s.values() if isinstance(p, dict) and isinstance(p.get("rejected_frees"), dict)
                   for v in p["rejected_frees"].values())
    return {"closed_error": c["closed"]["error"], "accept_errors": c["accept_errors"],
            "refused": c["refused"] if isinstance(c["refused"], int) else sum(c["refused"].values()),
            "rejected_frees": rejected}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slabd", default="build/release/server/slabd")
    ap.add_argument("--load", default="build/release/loadtest/slabd-load")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--every", type=float, default=30.0, help="seconds between rows")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--churn", type=int, default=8, help="churn connections")
    ap.add_argument("--streams", type=int, default=32, help="streaming (rr) connections")
    ap.add_argument("--rss-growth", type=float, default=10.0, help="allowed RSS growth, percent")
    ap.add_argument("--fd-growth", type=int, default=16, help="allowed descriptor growth")
    a = ap.parse_args()
    seconds = int(a.minutes * 60)

    err = tempfile.TemporaryFile()
    server = subprocess.Popen([a.slabd, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
                               "--threads", str(a.threads), "--idle-timeout", "0"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 30
        while True:
            err.seek(0)
            m = START.search(err.read().decode("utf-8", "replace"))
            if m:
                break
            if server.poll() is not None or time.monotonic() > deadline:
                sys.exit("slabd did not start")
            time.sleep(0.1)
        port, admin = m.group(1), m.group(2)
        target = f"127.0.0.1:{port}"
        tmp = tempfile.mkdtemp(prefix="slabd-soak-")
        loads = {
            "churn": [a.load, "churn", "--target", target, "-c", str(a.churn), "-s", "64",
                      "-d", str(seconds), "--json", f"{tmp}/churn.json"],
            "stream": [a.load, "rr", "--target", target, "-c", str(a.streams), "-s", "16384",
                       "-d", str(seconds), "--json", f"{tmp}/stream.json"],
        }
        procs = {k: subprocess.Popen(v, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL) for k, v in loads.items()}
        print(f"soak: slabd {a.slabd} ({a.threads} threads), churn x{a.churn} + rr x{a.streams} "
              f"16 KiB, {a.minutes:g} min, a row every {a.every:g} s", flush=True)
        head = f"{'t (s)':>6} {'RSS KiB':>9} {'fds':>5} {'active':>6} {'accepted':>10} " \
               f"{'closed_err':>10} {'accept_err':>10} {'refused':>7} {'rej_free':>8} {'pool_in_use':>11}"
        print(head)
        rows = []
        t0 = time.monotonic()
        next_row = a.every
        while True:
            now = time.monotonic() - t0
            if now >= next_row or all(p.poll() is not None for p in procs.values()):
                s = stats(admin)
                e = error_counts(s)
                row = (int(now), rss_kib(server.pid), len(os.listdir(f"/proc/{server.pid}/fd")),
                       s["connections"]["active"], s["connections"]["accepted"], e["closed_error"],
                       e["accept_errors"], e["refused"], e["rejected_frees"], s["pool"]["in_use"])
                rows.append(row)
                print(f"{row[0]:>6} {row[1]:>9} {row[2]:>5} {row[3]:>6} {row[4]:>10} {row[5]:>10} "
                      f"{row[6]:>10} {row[7]:>7} {row[8]:>8} {row[9]:>11}", flush=True)
                next_row += a.every
                if all(p.poll() is not None for p in procs.values()):
                    break
            if server.poll() is not None:
                print("slabd exited during the soak", flush=True)
                break
            time.sleep(0.5)
        load_errors = {}
        for k, p in procs.items():
            p.wait(60)
            try:
                with open(f"{tmp}/{k}.json") as f:
                    rep = json.load(f)
                load_errors[k] = (rep["errors"], rep["mismatches"], p.returncode)
            except (OSError, ValueError, KeyError):
                load_errors[k] = ("no report", "-", p.returncode)
        # Growth from the first row (warm) to the last row taken under load.
        loaded = [r for r in rows if r[3] > 0] or rows
        first, last = loaded[0], loaded[-1]
        rss_growth = 100.0 * (last[1] - first[1]) / max(first[1], 1)
        fd_growth = last[2] - first[2]
        final = rows[-1]
        errors = final[5] + final[6] + final[7] + final[8]
        client_errors = sum(v[0] + v[1] for v in load_errors.values() if isinstance(v[0], int))
        ok = (server.poll() is None and rss_growth <= a.rss_growth and fd_growth <= a.fd_growth
              and errors == 0 and client_errors == 0
              and all(isinstance(v[0], int) and v[2] == 0 for v in load_errors.values()))
        print(f"verdict: RSS {first[1]} -> {last[1]} KiB ({rss_growth:+.1f}%, limit {a.rss_growth:g}%), "
              f"fds {first[2]} -> {last[2]} ({fd_growth:+d}, limit {a.fd_growth}), server errors {errors}, "
              f"client errors/mismatches/exit {load_errors} -> {'PASS' if ok else 'FAIL'}", flush=True)
        return 0 if ok else 1
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()


if __name__ == "__main__":
    sys.exit(main())
