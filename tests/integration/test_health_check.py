"""Active health checks of the proxy's upstreams ([health_check]): an upstream that stops listening
is marked down after `fall` failed checks and gets no client; it comes back after `rise` checks;
one that accepts but does not answer what `expect` wants is down; with every upstream down,
newcomers are refused with their own reason. Timings are printed; the bounds are generous."""

import socket
import time

import harness

# Short enough for a quick test, long enough that a check of a live upstream does not time out on
# a loaded machine (sanitizer builds, a Python upstream whose threads wait for the GIL).
INTERVAL_S = 0.25
RISE, FALL = 2, 3


def health(stats, port):
    [u] = [u for u in stats["upstreams"] if u["name"] == f"127.0.0.1:{port}"]
    return u


class HealthCheckTest(harness.SlabdTest):
    def checked_proxy(self, upstreams, extra="", interval_s=INTERVAL_S):
        path = self.write_config(
            f'[health_check]\ninterval = "{int(interval_s * 1000)}ms"\ntimeout = "{int(interval_s * 1000)}ms"\n'
            f"rise = {RISE}\nfall = {FALL}\n{extra}")
        args = ["--config", path, "--mode", "proxy", "--threads", "2", "--busy-message", "no upstream"]
        for u in upstreams:
            args += ["--upstream", f"127.0.0.1:{u.port}"]
        return self.start(*args)

    def upstream(self, behaviour=None, port=0):
        # Listening again on a port just closed: a client of another test may hold it for a
        # moment as its ephemeral port.
        deadline = time.monotonic() + harness.WAIT
        while True:
            try:
                u = harness.PyUpstream(behaviour, port=port)
                break
            except OSError:
                if port == 0 or time.monotonic() > deadline:
                    raise
                time.sleep(harness.POLL)
        self.addCleanup(u.close)
        return u

    def test_down_after_fall_failures_back_after_rise_passes(self):
        a, b = self.upstream(), self.upstream()
        server = self.checked_proxy([a, b])
        server.wait_stats(lambda s: all(u["health"]["last_check"] == "ok" for u in s["upstreams"]),
                          "both upstreams checked")
        port_b = b.port
        b.close()
        stopped = time.monotonic()
        st = server.wait_stats(lambda s: health(s, port_b)["health"]["down"], "b marked down")
        took = time.monotonic() - stopped
        hb = health(st, port_b)
        print(f"\nmarked down {took * 1000:.0f} ms after it stopped listening "
              f"(fall {FALL} x interval {INTERVAL_S * 1000:.0f} ms)", flush=True)
        self.assertEqual((hb["state"], hb["health"]["transitions"]), ("down", 1))
        self.assertIn(hb["health"]["last_check"], ("connect_failed", "timeout"))
        self.assertGreaterEqual(hb["health"]["failures_in_row"], FALL)
        self.assertLess(took, FALL * INTERVAL_S + 10, "down within fall x interval, give or take a loaded machine")
        failures = hb["connect_failures"]

        accepted_a = a.accepted
        for i in range(20):
            with server.connect() as s:
                harness.assert_echo(s, b"client %d" % i)
        st = server.stats()
        self.assertEqual(health(st, port_b)["connect_failures"], failures, "no client was sent to b")
        self.assertEqual(a.accepted - accepted_a, 20)

        b = self.upstream(port=port_b)
        restarted = time.monotonic()
        st = server.wait_stats(lambda s: not health(s, port_b)["health"]["down"], "b back up")
        print(f"up again {(time.monotonic() - restarted) * 1000:.0f} ms after it listened again "
              f"(rise {RISE})", flush=True)
        self.assertEqual(health(st, port_b)["health"]["transitions"], 2)
        for i in range(20):
            with server.connect() as s:
                harness.assert_echo(s, b"again %d" % i)
        self.assertGreater(b.accepted, 0, "b takes clients again")
        _, metrics = server.get("/metrics")
        self.assertIn(f'slabd_upstream_checked_down{{upstream="127.0.0.1:{port_b}"}} 0', metrics)
        self.assertIn(f'slabd_upstream_check_transitions_total{{upstream="127.0.0.1:{port_b}"}} 2', metrics)
        self.stop(server)

    def test_an_upstream_that_answers_wrong_is_down(self):
        def pong(conn, index):
            if conn.recv(64).startswith(b"PING"):
                conn.sendall(b"+PONG\r\n")
            harness.echo_behaviour(conn, index)

        def nope(conn, index):
            conn.recv(64)
            conn.sendall(b"-ERR\r\n")
            harness.echo_behaviour(conn, index)

        good, bad = self.upstream(pong), self.upstream(nope)
        # Answers come from Python threads: a longer interval, so that a slow one is not a timeout.
        server = self.checked_proxy([good, bad], 'send = "PING\\r\\n"\nexpect = "+PONG"\n', interval_s=1.0)
        st = server.wait_stats(lambda s: health(s, bad.port)["health"]["down"], "the wrong answer marked down")
        self.assertEqual(health(st, bad.port)["health"]["last_check"], "expect_failed")
        self.assertFalse(health(st, good.port)["health"]["down"])
        self.assertEqual(health(st, good.port)["health"]["last_check"], "ok")
        checks_seen = bad.accepted
        for i in range(10):
            with server.connect() as s:
                s.sendall(b"PING\r\n")
                self.assertEqual(harness.recv_exact(s, 7), b"+PONG\r\n", "every client reached the good one")
        # Whatever else reached the bad one since was a check, not a client.
        self.assertFalse(any(u["active"] for u in server.stats()["upstreams"] if u["name"].endswith(str(bad.port))))
        self.assertGreaterEqual(bad.accepted, checks_seen)

    def test_every_upstream_down_refuses_newcomers(self):
        only = self.upstream()
        server = self.checked_proxy([only])
        port = only.port
        only.close()
        server.wait_stats(lambda s: health(s, port)["health"]["down"], "the only upstream down")
        with server.connect() as s:
            self.assertEqual(harness.recv_to_eof(s), b"no upstream\n")
        st = server.wait_stats(lambda s: s["pool"]["in_use"] == 0, "the block returned")
        self.assertEqual(st["connections"]["refused_by_reason"]["no_upstream"], 1)
        self.assertEqual(st["connections"]["accepted"], 0, "a refusal is not an accepted connection")
        self.assertEqual(st["connections"]["closed"]["upstream_failure"], 0)


if __name__ == "__main__":
    harness.main()
