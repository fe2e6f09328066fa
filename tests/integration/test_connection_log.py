"""Connection log and per-connection histograms (issue 13), against the real binary.

log.connections writes one line per closed connection, in the [log] format: the client (its PROXY
header's address under accept_proxy), shard, upstream, duration, bytes each way, close reason.
Past log.connections_rate lines are skipped, counted in /stats and /metrics, and reported in a
periodic line. The histograms count every closed connection into fixed buckets, the same in
/stats and /metrics."""

import json
import os
import re
import signal
import socket
import time

import harness
import test_proxy_protocol as pp
from harness import WAIT, SlabdTest

# Sizes that land in distinct buckets of byte_bounds (0, 64, 256, 1 Ki, 4 Ki, ..., 1 Gi).
SIZES = [0, 1, 64, 65, 1000, 5000, 70000]
BYTE_BOUNDS = [0, 64, 256] + [1 << s for s in range(10, 31, 2)]
TEXT_LINE = re.compile(
    r"connection closed client=(?P<client>\S+) shard=(?P<shard>\d+) upstream=(?P<upstream>\S+) "
    r"duration_ms=(?P<duration>\d+\.\d{3}) bytes_in=(?P<bytes_in>\d+) "
    r"bytes_out=(?P<bytes_out>\d+) reason=(?P<reason>\w+)$"
)
SKIPPED_LINE = re.compile(r"(\d+) connection log lines skipped")


def echo_once(server, payload, header=b""):
    """One client: header and payload, half-close, read the echo to EOF; returns its port."""
    with server.connect() as s:
        s.sendall(header + payload)
        s.shutdown(socket.SHUT_WR)
        got = harness.recv_to_eof(s)
        assert got == payload, f"echo of {len(payload)} bytes came back as {len(got)}"
        return s.getsockname()[1]


def json_lines(server):
    lines = []
    for line in server.stderr().splitlines():
        if '"connection closed"' in line:
            lines.append(json.loads(line))
    return lines


def text_lines(server):
    return [m for m in (TEXT_LINE.search(line) for line in server.stderr().splitlines()) if m]


def wait_for(server, condition, what):
    """Polls until condition() holds: the writer drains its rings every 100 ms."""
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"waited {WAIT:.0f} s for {what}; log:\n{server.stderr()}"
        time.sleep(harness.POLL)


def metric_samples(body, name):
    """{labels text: value} for the samples of metric `name` in a /metrics body."""
    samples = {}
    for line in body.splitlines():
        m = re.match(rf"{name}(?:\{{(.*)\}})? (\S+)$", line)
        if m:
            samples[m.group(1) or ""] = float(m.group(2))
    return samples


class ConnectionLogTest(SlabdTest):
    def test_json_lines_name_each_connection(self):
        server = self.start("--threads", "2", "--log-connections", "--log-format", "json")
        ports = [echo_once(server, harness.pattern(n)) for n in SIZES]
        wait_for(server, lambda: len(json_lines(server)) == len(SIZES), "a line per connection")
        by_port = {}
        for line in json_lines(server):
            self.assertEqual(line["level"], "info")
            host, port = line["client"].rsplit(":", 1)
            self.assertEqual(host, "127.0.0.1")
            by_port[int(port)] = line
        self.assertEqual(sorted(by_port), sorted(ports))
        for port, size in zip(ports, SIZES):
            line = by_port[port]
            self.assertIn(line["shard"], (0, 1))
            self.assertEqual(line["upstream"], "-")
            self.assertEqual((line["bytes_in"], line["bytes_out"]), (size, size))
            self.assertEqual(line["reason"], "client_eof")
            self.assertIsInstance(line["duration_ms"], float)
        self.assertEqual(server.stats()["connection_log"]["skipped"], 0)
        self.stop(server)

    def test_text_lines_and_the_reason_of_a_timeout(self):
        server = self.start("--log-connections", "--idle-timeout", "300ms")
        port = echo_once(server, b"hello")
        idle = server.connect()
        idle_port = idle.getsockname()[1]
        self.addCleanup(idle.close)
        wait_for(server, lambda: len(text_lines(server)) == 2, "two text lines")
        lines = {int(m.group("client").rsplit(":", 1)[1]): m for m in text_lines(server)}
        self.assertEqual(lines[port].group("client"), f"127.0.0.1:{port}")
        self.assertEqual((lines[port].group("bytes_in"), lines[port].group("bytes_out")), ("5", "5"))
        self.assertEqual(lines[port].group("reason"), "client_eof")
        self.assertEqual(lines[idle_port].group("reason"), "idle_timeout")
        self.assertEqual(lines[idle_port].group("bytes_in"), "0")
        self.stop(server)

    def test_rate_limit_skips_counts_and_reports(self):
        server = self.start("--threads", "2", "--log-connections", "--log-connections-rate", "5")
        total = 60
        for _ in range(total):
            echo_once(server, b"x")
        st = server.wait_stats(
            lambda s: s["connection_log"]["skipped"] + len(text_lines(server)) == total,
            "every close written or skipped")
        skipped = st["connection_log"]["skipped"]
        self.assertGreater(skipped, 0)
        # The bucket holds a second's worth: never more lines than that and what it refilled.
        self.assertLess(len(text_lines(server)), total)
        wait_for(server, lambda: sum(int(n) for n in SKIPPED_LINE.findall(server.stderr())) == skipped,
                 "skipped lines reported")
        body = server.get("/metrics")[1]
        self.assertEqual(sum(metric_samples(body, "slabd_connection_log_skipped_total").values()), skipped)
        self.stop(server)

    def test_proxy_header_names_the_client(self):
        server = self.start("--log-connections", "--log-format", "json", "--accept-proxy",
                            "--trusted-source", "127.0.0.1")
        echo_once(server, b"four", pp.v1(("192.0.2.44", 4444), ("127.0.0.1", server.port)))
        echo_once(server, b"six!!!", pp.v2(("2001:db8::44", 4445), ("::1", server.port)))
        # LOCAL: the balancer's own connection keeps its own address.
        local_port = echo_once(server, b"", pp.v2())
        wait_for(server, lambda: len(json_lines(server)) == 3, "three lines")
        clients = {line["client"]: line["bytes_in"] for line in json_lines(server)}
        self.assertEqual(clients, {"192.0.2.44:4444": 4, "[2001:db8::44]:4445": 6,
                                   f"127.0.0.1:{local_port}": 0})
        self.stop(server)

    def test_proxy_mode_names_the_upstream(self):
        upstream = self.start()
        server = self.start("--mode", "proxy", "--upstream", f"127.0.0.1:{upstream.port}",
                            "--log-connections", "--log-format", "json")
        echo_once(server, b"through")
        wait_for(server, lambda: len(json_lines(server)) == 1, "a line")
        line = json_lines(server)[0]
        self.assertEqual(line["upstream"], f"127.0.0.1:{upstream.port}")
        self.assertEqual((line["bytes_in"], line["bytes_out"]), (7, 7))
        self.stop(server)
        self.stop(upstream)

    def test_sighup_turns_it_on(self):
        path = self.write_config("[log]\nconnections = false\n")
        server = self.start("--config", path)
        echo_once(server, b"before")
        with open(path, "w") as f:
            f.write("[log]\nconnections = true\n")
        server.signal(signal.SIGHUP)
        wait_for(server, lambda: "log.connections false -> true" in server.stderr(), "the reload")
        port = echo_once(server, b"after")
        wait_for(server, lambda: len(text_lines(server)) == 1, "one line, after the reload")
        self.assertEqual(text_lines(server)[0].group("client"), f"127.0.0.1:{port}")
        self.assertIs(json.loads(server.get("/config")[1])["log"]["connections"], True)
        self.stop(server)


def threads_of(server):
    return len(os.listdir(f"/proc/{server.pid}/task"))


class ThreadsTest(SlabdTest):
    def assert_threads(self, server, n, what):
        got = threads_of(server)
        if harness.sanitized_binary() is None:
            self.assertEqual(got, n, what)
        else:  # TSan's runtime starts a thread of its own with the process's second
            self.assertGreaterEqual(got, n, what)

    def test_a_lone_shard_shares_the_one_thread_until_the_log_needs_its_writer(self):
        """Decision 29: the control work runs on the thread that calls run(), a lone shard with
        it; the writer starts with the log."""
        path = self.write_config("[server]\nthreads = 1\n[log]\nconnections = false\n")
        one = self.start("--config", path)
        echo_once(one, b"served")
        one.stats()
        self.assert_threads(one, 1, "the shard, the admin endpoint and the signals: one thread")
        with open(path, "w") as f:
            f.write("[server]\nthreads = 1\n[log]\nconnections = true\n")
        one.signal(signal.SIGHUP)
        wait_for(one, lambda: "log.connections false -> true" in one.stderr(), "the reload")
        echo_once(one, b"logged")
        wait_for(one, lambda: len(text_lines(one)) == 1, "its line")
        self.assert_threads(one, 2, "and the writer")
        self.stop(one)

        two = self.start("--threads", "2")
        echo_once(two, b"served")
        self.assert_threads(two, 3, "a thread per shard, the control work on the first")
        self.stop(two)


class HistogramTest(SlabdTest):
    def test_sizes_land_in_their_buckets(self):
        server = self.start("--threads", "2")
        for n in SIZES:
            echo_once(server, harness.pattern(n))
        st = server.wait_stats(lambda s: s["connections"]["active"] == 0, "every connection closed")
        closed = sum(st["connections"]["closed"].values())
        self.assertEqual(closed, len(SIZES))
        hist = st["connection_histograms"]
        for direction in ("bytes_received", "bytes_sent"):
            h = hist[direction]
            self.assertEqual(h["count"], closed)
            self.assertEqual(h["sum"], sum(SIZES))
            les = [b["le"] for b in h["buckets"]]
            self.assertEqual(les, BYTE_BOUNDS + ["+Inf"])
            expected = [sum(1 for n in SIZES if n <= bound) for bound in BYTE_BOUNDS] + [len(SIZES)]
            self.assertEqual([b["count"] for b in h["buckets"]], expected, direction)
        self.assertEqual(hist["duration"]["count"], closed)
        self.assertEqual(hist["duration"]["buckets"][-1]["count"], closed)

        body = server.get("/metrics")[1]
        for direction, key in (("received", "bytes_received"), ("sent", "bytes_sent")):
            buckets = metric_samples(body, "slabd_connection_bytes_bucket")
            mine = [(labels, v) for labels, v in buckets.items()
                    if labels.startswith(f'direction="{direction}"')]
            values = [v for _, v in mine]
            self.assertEqual(values, sorted(values), "cumulative")
            self.assertEqual(values, [b["count"] for b in hist[key]["buckets"]])
            self.assertEqual(mine[-1][0], f'direction="{direction}",le="+Inf"')
            self.assertEqual(metric_samples(body, "slabd_connection_bytes_count")[f'direction="{direction}"'],
                             closed)
            self.assertEqual(metric_samples(body, "slabd_connection_bytes_sum")[f'direction="{direction}"'],
                             sum(SIZES))
        durations = metric_samples(body, "slabd_connection_duration_seconds_bucket")
        self.assertEqual(list(durations.values()), [b["count"] for b in hist["duration"]["buckets"]])
        self.assertEqual(metric_samples(body, "slabd_connection_duration_seconds_count")[""], closed)
        self.stop(server)


if __name__ == "__main__":
    harness.main()
