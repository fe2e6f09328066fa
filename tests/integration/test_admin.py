"""The admin endpoint over real sockets: every route's status, content type and body shape; its
numbers agree with what the test did; /metrics passes promtool and a real Prometheus scrapes it;
/readyz flips with the pool; bad requests get the right 4xx and neither listener stops; the live
page renders in headless Chromium with the numbers of /stats."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

import harness
from harness import WAIT, SlabdTest, assert_echo


def raw_request(port, data, timeout=harness.IO_TIMEOUT):
    """Sends `data` as is and returns everything the server answers until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        parts = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return b"".join(parts)
            parts.append(chunk)


def status_of(response):
    m = re.match(rb"HTTP/1\.1 (\d{3}) ", response)
    assert m, f"not an HTTP response: {response[:80]!r}"
    return int(m.group(1))


def http(port, path, method="GET", headers=None):
    """(status, headers, body) of one request, 4xx and 5xx included."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=harness.IO_TIMEOUT) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AdminTest(SlabdTest):
    def assert_both_listeners_serve(self, server):
        with server.connect() as c:
            assert_echo(c, b"still here")
        self.assertEqual(http(server.admin_port, "/healthz")[0], 200)

    def test_routes_status_type_and_shape(self):
        server = self.start("--threads", "2")
        expect = {
            "/": (200, "text/html"),
            "/stats": (200, "application/json"),
            "/metrics": (200, "text/plain; version=0.0.4"),
            "/healthz": (200, "text/plain"),
            "/readyz": (200, "text/plain"),
            "/config": (200, "application/json"),
            "/nope": (404, "text/plain"),
        }
        for path, (status, content_type) in expect.items():
            with self.subTest(path=path):
                got_status, headers, body = http(server.admin_port, path)
                self.assertEqual(got_status, status)
                self.assertTrue(headers["Content-Type"].startswith(content_type), headers["Content-Type"])
        stats = json.loads(http(server.admin_port, "/stats")[2])
        for key in ("server", "pool", "buffers", "connections", "bytes", "shards", "upstreams", "admin"):
            self.assertIn(key, stats)
        self.assertEqual(len(stats["shards"]), 2)
        self.assertEqual(stats["server"]["mode"], "echo")
        config = json.loads(http(server.admin_port, "/config")[2])
        self.assertEqual(config["pool"]["max_connections"], server.capacity)
        status, headers, body = http(server.admin_port, "/stats", method="HEAD")
        self.assertEqual((status, body), (200, ""))
        self.assertGreater(int(headers["Content-Length"]), 0)
        self.assertEqual(http(server.admin_port, "/stats", method="POST")[0], 405)
        self.assertEqual(http(server.admin_port, "/stats", method="DELETE")[0], 405)
        self.stop(server)

    def test_keep_alive_serves_several_requests_on_one_connection(self):
        server = self.start()
        with socket.create_connection(("127.0.0.1", server.admin_port), timeout=harness.IO_TIMEOUT) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
            got = b""
            while got.count(b"HTTP/1.1 200") < 2:
                chunk = s.recv(4096)
                self.assertTrue(chunk, f"closed early: {got!r}")
                got += chunk
            self.assertIn(b"ok\n", got)
            self.assertIn(b"ready\n", got)
        self.stop(server)

    def test_numbers_agree_with_what_the_test_did(self):
        server = self.start("--max-connections", "50", "--threads", "2")
        clients = self.connect_all(server, 7)
        for c in clients:
            assert_echo(c, b"x" * 100)
        s = server.wait_stats(lambda s: s["pool"]["in_use"] == 7, "7 blocks in use")
        self.assertEqual(s["connections"]["active"], 7)
        self.assertEqual(s["connections"]["accepted"], 7)
        self.assertEqual(s["pool"]["free"], 43)
        self.assertEqual(s["pool"]["capacity"], 50)
        self.assertGreaterEqual(s["bytes"]["in"], 700)
        self.assertEqual(sum(shard["active"] for shard in s["shards"]), 7)
        metrics = http(server.admin_port, "/metrics")[2]
        self.assertIn('slabd_pool_in_use_blocks{pool="connections"} 7\n', metrics)
        harness.close_all(clients)
        server.wait_stats(lambda s: s["pool"]["in_use"] == 0, "the blocks back")
        self.stop(server)

    def test_readyz_flips_to_503_when_the_pool_is_nearly_full_and_back(self):
        config = self.write_config("[admin]\nready_headroom = 5\n")
        server = self.start("--config", config, "--max-connections", "20")
        first = self.connect_all(server, 15)
        for c in first:
            assert_echo(c, b"a")
        server.wait_stats(lambda s: s["pool"]["in_use"] == 15, "15 in use")
        self.assertEqual(http(server.admin_port, "/readyz")[0], 200)  # 5 free: still ready
        extra = self.connect_all(server, 1)
        assert_echo(extra[0], b"b")
        server.wait_stats(lambda s: s["pool"]["in_use"] == 16, "16 in use")
        self.assertEqual(http(server.admin_port, "/readyz")[0], 503)
        self.assertFalse(server.stats()["ready"])
        self.assertIn("slabd_ready 0\n", http(server.admin_port, "/metrics")[2])
        extra[0].close()
        server.wait_stats(lambda s: s["pool"]["in_use"] == 15, "a block back")
        self.assertEqual(http(server.admin_port, "/readyz")[0], 200)
        self.stop(server)

    def test_admin_answers_while_the_data_pool_is_exhausted(self):
        server = self.start("--max-connections", "5")
        held = self.connect_all(server, 5)
        for c in held:
            assert_echo(c, b"hold")
        refused = self.connect_all(server, 3)
        for c in refused:
            self.assertEqual(harness.recv_to_eof(c), b"")
        s = server.wait_stats(lambda s: s["connections"]["refused"] == 3, "3 refusals")
        self.assertEqual(s["pool"]["in_use"], 5)
        self.assertEqual(s["pool"]["free"], 0)
        self.assertEqual(http(server.admin_port, "/readyz")[0], 503)
        self.assertEqual(http(server.admin_port, "/healthz")[0], 200)
        self.stop(server)

    def test_bad_requests_get_the_right_4xx_and_nothing_stops(self):
        server = self.start()
        port = server.admin_port
        cases = {
            "oversized headers": (b"GET /stats HTTP/1.1\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431),
            "garbage bytes": (b"\x00\x01\x02 not http at all\r\n\r\n", 400),
            "bad method": (b"BREW /stats HTTP/1.1\r\n\r\n", 400),
            "unknown path": (b"GET /secret HTTP/1.1\r\nConnection: close\r\n\r\n", 404),
            "post": (b"POST /stats HTTP/1.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", 405),
        }
        for name, (request, status) in cases.items():
            with self.subTest(name):
                self.assertEqual(status_of(raw_request(port, request)), status)
                self.assert_both_listeners_serve(server)
        self.stop(server)

    def test_a_slow_client_is_cut_off(self):
        server = self.start()
        with socket.create_connection(("127.0.0.1", server.admin_port), timeout=WAIT) as slow:
            slow.sendall(b"GET /sta")  # and then nothing: the header timeout must end it
            self.assert_both_listeners_serve(server)  # meanwhile everyone else is served
            started = time.monotonic()
            response = harness.recv_to_eof(slow)
            self.assertEqual(status_of(response), 408)
            self.assertLess(time.monotonic() - started, WAIT)
        self.assert_both_listeners_serve(server)
        self.stop(server)

    def test_a_flood_of_silent_admin_connections_evicts_the_oldest(self):
        server = self.start()
        flood = []
        self.addCleanup(harness.close_all, flood)
        for _ in range(100):
            flood.append(socket.create_connection(("127.0.0.1", server.admin_port), timeout=WAIT))
        # The admin admits 64 sessions: each newcomer past that evicts the session that has waited
        # longest for a request, which hears 503 and is closed. The oldest 36 go.
        evicted = harness.wait_readable(flood, 36, "36 admin connections evicted")
        self.assertTrue(all(status_of(harness.recv_to_eof(s)) == 503 for s in evicted[:36]))
        self.assertEqual(set(evicted[:36]), set(flood[:36]), "evicted sessions are the oldest")
        # A probe evicts one more and is answered while the flood holds the rest.
        self.assertEqual(http(server.admin_port, "/healthz")[0], 200)
        with server.connect() as c:  # the data plane does not notice
            assert_echo(c, b"data still flows")
        admin = server.stats()["admin"]
        self.assertEqual(admin["sessions_refused"], 0, "nobody refused: every session was evictable")
        self.assertGreaterEqual(admin["sessions_evicted"], 37)
        harness.close_all(flood)
        self.stop(server)

    def test_a_token_guards_the_data_routes_but_not_the_probes(self):
        config = self.write_config('[admin]\ntoken = "t0ken-123"\n')
        server = self.start("--config", config)
        port = server.admin_port
        status, headers, _ = http(port, "/stats")
        self.assertEqual(status, 401)
        self.assertEqual(headers["WWW-Authenticate"], "Bearer")
        self.assertEqual(http(port, "/metrics", headers={"Authorization": "Bearer wrong"})[0], 401)
        self.assertEqual(http(port, "/stats", headers={"Authorization": "Bearer t0ken-123"})[0], 200)
        status, _, body = http(port, "/config", headers={"Authorization": "Bearer t0ken-123"})
        self.assertEqual(status, 200)
        self.assertNotIn("t0ken-123", body)
        self.assertEqual(http(port, "/healthz")[0], 200)
        self.assertEqual(http(port, "/readyz")[0], 200)
        self.stop(server)

    def test_probe_flag_asks_the_admin_endpoint_the_settings_name(self):
        config = self.write_config('[admin]\ntoken = "t0ken-123"\nlisten = "0.0.0.0:0"\n')
        server = self.start("--config", config, "--admin", "0.0.0.0:0")
        admin = ["--listen", "127.0.0.1:0", "--admin", f"0.0.0.0:{server.admin_port}"]
        # The same file: the token comes with it; a wildcard listener is asked on loopback.
        code, out, err = harness.run_slabd("--config", config, *admin, "--probe", "/healthz")
        self.assertEqual((code, err), (0, ""))
        self.assertIn("ok", out)
        code, out, _ = harness.run_slabd("--config", config, *admin, "--probe", "/stats")
        self.assertEqual(code, 0)
        self.assertEqual(json.loads(out)["pool"]["in_use"], 0)
        # Without the token the guarded route answers 401: the probe fails and says so.
        code, _, err = harness.run_slabd(*admin, "--probe", "/stats")
        self.assertEqual(code, 1)
        self.assertIn("/stats answered 401", err)
        code, _, err = harness.run_slabd("--config", config, *admin, "--probe", "/nowhere")
        self.assertEqual(code, 1)
        self.assertIn("answered 404", err)
        closed, port = harness.refused_port()
        self.addCleanup(closed.close)
        code, _, err = harness.run_slabd("--admin", f"127.0.0.1:{port}", "--probe", "/healthz")
        self.assertEqual(code, 1)
        self.assertIn("cannot connect to the admin endpoint", err)
        code, _, err = harness.run_slabd("--probe", "healthz")
        self.assertEqual(code, 2, err)
        self.stop(server)

    def test_metrics_pass_promtool(self):
        promtool = shutil.which("promtool")
        self.assertIsNotNone(promtool, "promtool missing: scripts/install-deps.sh installs prometheus")
        upstream = self.start()
        server = self.start("--mode", "proxy", "--upstream", f"127.0.0.1:{upstream.port}", "--threads", "2")
        with server.connect() as c:
            assert_echo(c, b"through the proxy")
        body = http(server.admin_port, "/metrics")[2]
        self.assertIn("slabd_upstream_active_connections{upstream=", body)
        # The histograms too: promtool checks their buckets, _sum and _count.
        self.assertIn("# TYPE slabd_connection_duration_seconds histogram", body)
        self.assertIn('slabd_connection_bytes_bucket{direction="sent",le="+Inf"}', body)
        check = subprocess.run([promtool, "check", "metrics"], input=body.encode(), capture_output=True, timeout=WAIT)
        self.assertEqual(check.returncode, 0, check.stdout.decode() + check.stderr.decode())
        self.stop(server)
        self.stop(upstream)

    def test_a_real_prometheus_scrapes_it(self):
        prometheus = shutil.which("prometheus")
        self.assertIsNotNone(prometheus, "prometheus missing: scripts/install-deps.sh installs it")
        server = self.start("--max-connections", "77")
        work = tempfile.TemporaryDirectory(prefix="slabd-prom-")
        self.addCleanup(work.cleanup)
        config = os.path.join(work.name, "prometheus.yml")
        with open(config, "w") as f:
            f.write("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: slabd\n"
                    f"    static_configs:\n      - targets: ['127.0.0.1:{server.admin_port}']\n")
        web = free_port()
        prom = subprocess.Popen(
            [prometheus, f"--config.file={config}", f"--storage.tsdb.path={work.name}/data",
             f"--web.listen-address=127.0.0.1:{web}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=harness._child_setup(None))
        self.addCleanup(lambda: (prom.kill(), prom.wait()))
        query = f"http://127.0.0.1:{web}/api/v1/query?query=slabd_pool_capacity_blocks%7Bpool%3D%22connections%22%7D"
        deadline = time.monotonic() + WAIT
        value = None
        while value is None:
            self.assertLess(time.monotonic(), deadline, "Prometheus never had the sample")
            try:
                with urllib.request.urlopen(query, timeout=5) as r:
                    result = json.loads(r.read())["data"]["result"]
                if result:
                    value = result[0]["value"][1]
            except (OSError, KeyError, ValueError):
                pass
            time.sleep(0.5)
        self.assertEqual(value, "77")
        self.stop(server)

    def rendered_page(self, server):
        """The admin page's DOM once headless Chromium has run its script for 5 s of virtual time."""
        chromium = shutil.which("chromium")
        self.assertIsNotNone(chromium, "chromium missing: scripts/install-deps.sh installs it")
        profile = tempfile.TemporaryDirectory(prefix="slabd-chromium-")
        self.addCleanup(profile.cleanup)
        return subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile.name}", "--virtual-time-budget=5000", "--dump-dom",
             f"http://127.0.0.1:{server.admin_port}/"],
            capture_output=True, timeout=120, preexec_fn=harness._child_setup(None)).stdout.decode()

    def shown(self, dom, element_id):
        m = re.search(rf'id="{element_id}">([^<]*)<', dom)
        self.assertIsNotNone(m, f"#{element_id} not in the rendered page:\n{dom[:2000]}")
        return m.group(1)

    def test_the_live_page_renders_the_numbers_of_stats(self):
        server = self.start("--max-connections", "40")
        held = self.connect_all(server, 9)
        for c in held:
            assert_echo(c, b"page")
        stats = server.wait_stats(lambda s: s["pool"]["in_use"] == 9, "9 in use")
        dom = self.rendered_page(server)

        def shown(element_id):
            return self.shown(dom, element_id)

        self.assertEqual(shown("pool-in-use"), "9")
        self.assertEqual(shown("pool-capacity"), str(stats["pool"]["capacity"]))
        self.assertEqual(shown("pool-block-size"), str(stats["pool"]["block_size"]))
        self.assertEqual(shown("conn-accepted"), str(stats["connections"]["accepted"]))
        self.assertEqual(shown("mode"), "echo")
        self.assertEqual(shown("error"), "")
        self.stop(server)

    def series(self, dom, chart, name):
        """The numbers a chart's polyline for `name` plots, read from the rendered SVG."""
        svg = re.search(rf'<svg id="{chart}"[^>]*>(.*?)</svg>', dom, re.S)
        self.assertIsNotNone(svg, f"no #{chart}")
        line = re.search(rf'<polyline [^>]*data-series="{name}"[^>]*>', svg.group(1))
        self.assertIsNotNone(line, f"no series {name} in #{chart}: {svg.group(1)[:500]}")
        values = re.search(r'data-values="([^"]*)"', line.group(0)).group(1)
        return [int(v) for v in values.split(",") if v]

    def wait_sampled(self, server, condition, what):
        """Waits until the newest /stats/history sample meets `condition`."""
        deadline = time.monotonic() + WAIT
        while True:
            status, body = server.get("/stats/history")
            self.assertEqual(status, 200)
            samples = json.loads(body)["samples"]
            if samples and condition(samples[-1]):
                return
            self.assertLess(time.monotonic(), deadline, f"no history sample: {what}")
            time.sleep(0.2)

    def map_cells(self, dom):
        """Cell states of the slab map, in block order."""
        svg = re.search(r'<svg id="slab-map"[^>]*>(.*?)</svg>', dom, re.S)
        self.assertIsNotNone(svg, "no #slab-map")
        cells = re.findall(r'<rect [^>]*class="(\w+)" data-cell="(\d+)"', svg.group(1))
        return [state for state, _ in sorted(cells, key=lambda c: int(c[1]))]

    def test_the_page_charts_a_fill_and_drain_and_draws_the_slab(self):
        server = self.start("--max-connections", "16", "--threads", "1")
        base = self.connect_all(server, 10)
        for c in base:
            assert_echo(c, b"fill")
        server.wait_stats(lambda s: s["pool"]["in_use"] == 10, "10 in use")
        self.wait_sampled(server, lambda s: s["pool"]["in_use"] == 10, "a sample of 10 in use")

        # Part full: one cell per block, ten in use in block order, the next six never carved,
        # and the head is the first of them (nothing was freed yet).
        dom = self.rendered_page(server)
        self.assertEqual(self.map_cells(dom), ["used"] * 10 + ["never"] * 6)
        self.assertEqual(self.shown(dom, "map-in-use"), "10")
        self.assertEqual(self.shown(dom, "map-never"), "6")
        self.assertEqual(self.shown(dom, "map-head"), "10")
        self.assertIn('id="slab-head"', dom)

        # Full, three refused, then drained with block 3 freed last: LIFO makes it the head.
        rest = self.connect_all(server, 6)
        for c in rest:
            assert_echo(c, b"fill")
        server.wait_stats(lambda s: s["pool"]["in_use"] == 16, "16 in use")
        refused = [server.connect() for _ in range(3)]
        server.wait_stats(lambda s: s["connections"]["refused_by_reason"]["pool_full"] == 3, "3 refused")
        self.wait_sampled(server, lambda s: s["refused"][0] == 3, "a sample of the refusals")
        for c in refused:
            c.close()
        held = base + rest
        for i, c in enumerate(held):
            if i != 3:
                c.close()
        server.wait_stats(lambda s: s["pool"]["in_use"] == 1, "only block 3 in use")
        held[3].close()
        server.wait_stats(lambda s: s["pool"]["in_use"] == 0 and s["connections"]["active"] == 0, "drained")
        self.wait_sampled(server, lambda s: s["pool"]["in_use"] == 0, "a sample of the drain")

        dom = self.rendered_page(server)
        in_use = self.series(dom, "chart-pool", "in use")
        print(f"pool chart, in use per second: {in_use}")
        self.assertIn(10, in_use)
        self.assertEqual(max(in_use), 16)
        self.assertEqual(in_use[-1], 0)
        self.assertEqual(set(self.series(dom, "chart-pool", "capacity")), {16})
        refusals = self.series(dom, "chart-refusals", "pool_full")
        print(f"pool_full refusals per second: {refusals}")
        self.assertGreater(max(refusals), 0)
        self.assertGreater(max(self.series(dom, "chart-accepts", "accepted")), 0)
        self.assertEqual(self.map_cells(dom), ["free"] * 16)
        self.assertEqual(self.shown(dom, "map-in-use"), "0")
        self.assertEqual(self.shown(dom, "map-never"), "0")
        self.assertEqual(self.shown(dom, "map-head"), "3")
        self.assertRegex(dom, r'<rect id="slab-head"[^>]*data-block="3"')
        self.assertEqual(self.shown(dom, "error"), "")
        self.stop(server)


# -- the admin under pressure ---------------------------------------------------------------
# /healthz and /readyz must answer within a second whatever the admin port suffers. The bound
# asserted is generous (sanitizer builds on a shared machine); the time measured is printed.
PROBE_BOUND = 5.0
SLOWLORIS = 200
FLOOD = 1000
# Opens N connections to 127.0.0.1:PORT, says so, and holds them silent until stdin closes.
FLOOD_CLIENT = """
import socket, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
held = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(count)]
print(f"{len(held)} connected", flush=True)
sys.stdin.read()
"""
EMFILE_NOFILE = 64


def probe(port, path):
    """(status, seconds) of one request on a fresh connection: connect, send, read to the end."""
    started = time.monotonic()
    response = raw_request(port, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode(),
                           timeout=PROBE_BOUND * 2)
    return status_of(response), time.monotonic() - started


class Slowloris(threading.Thread):
    """`count` clients that each send one byte of a never-ending request a second; a client the
    server closes (evicted, or cut off by the header timeout) comes back at its next tick."""

    REQUEST = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 4000

    def __init__(self, port, count):
        super().__init__(daemon=True)
        self.port, self.count = port, count
        self.socks = [None] * count
        self.sent = [0] * count
        self.reconnects = 0
        self.stopping = threading.Event()

    def _connect(self, i):
        try:
            self.socks[i] = socket.create_connection(("127.0.0.1", self.port), timeout=WAIT)
            self.sent[i] = 0
        except OSError:
            self.socks[i] = None

    def run(self):
        for i in range(self.count):
            self._connect(i)
        while not self.stopping.wait(1.0):
            for i, s in enumerate(self.socks):
                if s is None or harness.is_readable(s):  # answered (503/408) or closed: come back
                    if s is not None:
                        s.close()
                        self.reconnects += 1
                    self._connect(i)
                    continue
                try:
                    s.send(self.REQUEST[self.sent[i] % len(self.REQUEST):][:1])
                    self.sent[i] += 1
                except OSError:
                    s.close()
                    self.socks[i] = None

    def finish(self):
        self.stopping.set()
        self.join(WAIT)
        harness.close_all([s for s in self.socks if s is not None])


class AdminUnderPressureTest(SlabdTest):
    def assert_probes_answer(self, server, situation, rounds=5, ready=200):
        """Probes /healthz and /readyz `rounds` times each; prints the times, asserts the bound."""
        times = []
        for _ in range(rounds):
            for path, expected in (("/healthz", 200), ("/readyz", ready)):
                status, seconds = probe(server.admin_port, path)
                self.assertEqual(status, expected, f"{path} during {situation}")
                self.assertLess(seconds, PROBE_BOUND, f"{path} took {seconds:.3f} s during {situation}")
                times.append(seconds)
            time.sleep(0.1)
        print(f"\n  {situation}: /healthz+/readyz answered in {1000 * min(times):.1f} ms min, "
              f"{1000 * sorted(times)[len(times) // 2]:.1f} ms median, {1000 * max(times):.1f} ms max "
              f"({len(times)} probes)", file=sys.stderr, flush=True)
        return times

    def assert_data_flows(self, server):
        with server.connect() as c:
            assert_echo(c, b"data still flows")

    def test_slowloris_clients_do_not_keep_the_probes_out(self):
        server = self.start()
        slow = Slowloris(server.admin_port, SLOWLORIS)
        slow.start()
        self.addCleanup(slow.finish)
        time.sleep(3.0)  # every client connected and trickling; the first evictions done
        self.assertGreater(slow.reconnects, 0, "the slow clients never lost a session")
        self.assert_probes_answer(server, f"{SLOWLORIS} slowloris clients")
        self.assert_data_flows(server)
        slow.finish()
        admin = server.stats()["admin"]
        self.assertEqual(admin["sessions_refused"], 0)
        self.assertGreater(admin["sessions_evicted"], SLOWLORIS - 64)
        self.stop(server)

    def test_a_flood_of_silent_connections_does_not_keep_the_probes_out(self):
        server = self.start()
        # The flood comes from another process: a thread here would hold the GIL for
        # milliseconds between a probe's connect and its send, long enough for 64 newer
        # connections to make the probe the oldest silent session, the one evicted.
        flood = subprocess.Popen(
            [sys.executable, "-c", FLOOD_CLIENT, str(server.admin_port), str(FLOOD)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.addCleanup(lambda: (flood.stdin.close(), flood.wait(WAIT)))
        self.assert_probes_answer(server, f"a flood of {FLOOD} silent connections arriving", rounds=3)
        self.assertEqual(flood.stdout.readline().strip(), f"{FLOOD} connected", "the flood never finished connecting")
        self.assert_probes_answer(server, f"{FLOOD} silent connections held")
        self.assert_data_flows(server)
        admin = server.stats()["admin"]
        self.assertEqual(admin["sessions_refused"], 0)
        self.assertLessEqual(admin["sessions_active"], 64)
        flood.stdin.close()
        self.assertEqual(flood.wait(WAIT), 0)
        self.stop(server)

    def test_the_probes_answer_at_the_descriptor_limit(self):
        server = self.start("--threads", "1", "--max-connections", "1000", nofile=EMFILE_NOFILE)
        began = time.monotonic()
        held = self.connect_all(server, 2 * EMFILE_NOFILE)  # more than slabd has descriptors for
        deadline = time.monotonic() + WAIT
        while harness.open_fds(server.pid) < EMFILE_NOFILE:
            self.assertLess(time.monotonic(), deadline, "slabd never reached its descriptor limit")
            time.sleep(harness.POLL)
        self.assert_probes_answer(server, f"the descriptor limit (nofile={EMFILE_NOFILE}), data clients holding it")

        # Newcomers on the data port compete with the admin for every descriptor that frees.
        stop = threading.Event()
        knocked = []

        def knock():
            while not stop.is_set():
                try:
                    with server.connect(timeout=1.0) as c:
                        c.recv(64)  # refused at the limit: busy line or EOF
                    knocked.append(1)
                except OSError:
                    pass
                time.sleep(0.005)

        knocker = threading.Thread(target=knock, daemon=True)
        knocker.start()
        self.addCleanup(lambda: (stop.set(), knocker.join(WAIT)))
        self.assert_probes_answer(server, "the descriptor limit, data newcomers competing")
        stop.set()
        knocker.join(WAIT)
        self.assertTrue(server.running())

        harness.close_all(held)
        deadline = time.monotonic() + WAIT
        while True:  # the data plane serves again once its descriptors are back
            try:
                self.assert_data_flows(server)
                break
            except (OSError, AssertionError):
                self.assertLess(time.monotonic(), deadline, "no echo after the descriptors came back")
                time.sleep(harness.POLL)
        self.assertIn("admin accept failed", server.stderr())
        admin = server.stats()["admin"]
        self.assertGreater(admin["accept_errors"], 0)
        self.assertGreater(admin["reserve_used"], 0, "the probes were answered on the reserved descriptor")
        logged = server.stderr().count("admin accept failed")
        self.assertLessEqual(logged, 2 + time.monotonic() - began, "admin accept errors: at most a line a second")
        self.stop(server)


if __name__ == "__main__":
    harness.main()
