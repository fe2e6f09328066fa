"""Admission limits, checked right after accept and before a pool block is taken (issue 10):
connections per source, exact across two threads, for IPv4 and IPv6 clients (IPv4-mapped IPv6 is
the IPv4 client), by address or by prefix; and newcomers per second, refused or (under
on_exhausted = "pause") left in the backlog. Every refusal is counted by its reason."""

import signal
import socket
import time

import harness
from harness import IO_TIMEOUT, assert_echo, close_all, recv_to_eof, wait_readable

PER_SOURCE = 5
EXTRA = 7


def connect_from(server, source, family=socket.AF_INET):
    """A client bound to `source` (any 127.0.0.0/8 address, or ::1)."""
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.settimeout(IO_TIMEOUT)
        s.bind((source, 0))
        s.connect(("::1" if family == socket.AF_INET6 else "127.0.0.1", server.port))
    except OSError:
        s.close()
        raise
    return s


class LimitsTest(harness.SlabdTest):
    def open_from(self, server, source, n, family=socket.AF_INET):
        socks = [connect_from(server, source, family) for _ in range(n)]
        self.addCleanup(close_all, socks)
        self.opened += socks
        return socks

    def setUp(self):
        self.opened = []

    def stop(self, server):
        close_all(self.opened)  # else the drain waits out shutdown_grace for them
        super().stop(server)

    def settle(self, server, expected):
        return server.wait_stats(
            lambda s: s["connections"]["accepted"] + s["connections"]["refused"] == expected,
            f"{expected} clients accepted or refused")

    def test_per_source_limit_is_exact_across_two_threads_for_ipv4_and_ipv6(self):
        server = self.start("--threads", "2", "--listen", "[::]:0", "--max-per-source", str(PER_SOURCE),
                            "--busy-message", "busy")
        served = []
        total = 0
        for source, family in (("127.0.0.1", socket.AF_INET), ("127.0.0.2", socket.AF_INET),
                               ("::1", socket.AF_INET6)):
            socks = self.open_from(server, source, PER_SOURCE + EXTRA, family)
            total += len(socks)
            self.settle(server, total)
            refused = wait_readable(socks, EXTRA, f"the clients from {source} over the limit")
            self.assertEqual(len(refused), EXTRA, source)
            for c in refused:
                self.assertEqual(recv_to_eof(c), b"busy\n", "refused as at pool exhaustion")
            mine = [c for c in socks if c not in refused]
            for i, c in enumerate(mine):
                assert_echo(c, f"{source} {i}\n".encode())
            served += mine

        s = server.stats()
        self.assertEqual(s["connections"]["accepted"], 3 * PER_SOURCE)
        self.assertEqual(s["connections"]["refused_by_reason"]["per_source"], 3 * EXTRA)
        self.assertEqual(s["connections"]["refused"], 3 * EXTRA)
        self.assertEqual(s["pool"]["in_use"], 3 * PER_SOURCE, "a refused client never took a block")
        # Both threads took newcomers, and together they held each source to its limit.
        self.assertTrue(all(shard["accepted"] + shard["refused"] > 0 for shard in s["shards"]),
                        f"both threads accept: {s['shards']}")
        self.assertEqual(s["limits"]["sources"], 3)
        self.assertEqual(sorted(t["source"] for t in s["limits"]["top_sources"]),
                         ["127.0.0.1", "127.0.0.2", "::/64"])
        self.assertTrue(all(t["connections"] == PER_SOURCE for t in s["limits"]["top_sources"]))
        status, metrics = server.get("/metrics")
        self.assertIn('reason="per_source"} ', metrics)

        # A source that lets go may come back for as many as it gave up.
        close_all(served[:PER_SOURCE])
        server.wait_stats(lambda s: s["pool"]["in_use"] == 2 * PER_SOURCE, "127.0.0.1's blocks back")
        again = self.open_from(server, "127.0.0.1", PER_SOURCE)
        for i, c in enumerate(again):
            assert_echo(c, f"again {i}\n".encode())
        s = server.stats()
        self.assertEqual(s["connections"]["refused"], 3 * EXTRA)
        for c in served[PER_SOURCE:]:
            assert_echo(c, b"untouched\n")
        self.stop(server)

    def test_a_newcomer_takes_the_share_of_a_client_from_its_source_that_hung_up(self):
        # As in test_capacity: one thread, stopped, sees the newcomer before the hang-up.
        server = self.start("--threads", "1", "--max-per-source", "2", "--busy-message", "busy")
        leaving, staying = self.open_from(server, "127.0.0.7", 2)
        assert_echo(leaving, b"leaving\n")
        assert_echo(staying, b"staying\n")
        newcomer = server.newcomer_behind_a_hang_up(
            leaving, lambda: self.open_from(server, "127.0.0.7", 1)[0])
        self.assertEqual(newcomer.recv(64), b"newcomer\n",
                         "served, not refused: its source's share was held by a client already gone")
        s = server.stats()
        self.assertEqual(s["connections"]["held_for_closes"], 1, "held while the hang-up was seen")
        self.assertEqual(s["connections"]["refused"], 0)
        extra = self.open_from(server, "127.0.0.7", 1)[0]
        self.assertEqual(recv_to_eof(extra), b"busy\n")
        self.assertEqual(server.stats()["connections"]["refused_by_reason"]["per_source"], 1)
        assert_echo(staying, b"untouched\n")
        self.stop(server)

    def test_a_prefix_counts_as_one_source(self):
        config = self.write_config("[limits]\nmax_per_source = 3\nsource_prefix_v4 = 24\n")
        server = self.start("--config", config)
        socks = self.open_from(server, "127.0.0.1", 2) + self.open_from(server, "127.0.0.2", 2)
        socks += self.open_from(server, "127.0.1.1", 3)  # another /24
        self.settle(server, len(socks))
        s = server.stats()
        self.assertEqual(s["connections"]["refused_by_reason"]["per_source"], 1)
        self.assertEqual(s["connections"]["accepted"], 6)
        self.assertEqual(sorted((t["source"], t["connections"]) for t in s["limits"]["top_sources"]),
                         [("127.0.0.0/24", 3), ("127.0.1.0/24", 3)])
        self.stop(server)

    def test_accept_rate_refuses_past_the_rate(self):
        config = self.write_config("[limits]\naccept_rate = 20\naccept_burst = 5\n")
        server = self.start("--threads", "2", "--config", config)
        began = time.monotonic()
        socks = self.open_from(server, "127.0.0.1", 40)
        s = self.settle(server, 40)
        elapsed = time.monotonic() - began
        accepted = s["connections"]["accepted"]
        self.assertGreaterEqual(accepted, 5, "the burst is accepted at once")
        self.assertLessEqual(accepted, 5 + 20 * elapsed + 1, f"over {elapsed:.2f} s")
        self.assertEqual(s["connections"]["refused_by_reason"]["rate_limited"], 40 - accepted)
        self.assertEqual(s["connections"]["refused"], 40 - accepted)
        self.assertEqual(s["pool"]["in_use"], accepted)
        refused = wait_readable(socks, 40 - accepted, "the rate-limited clients' EOF")
        for c in refused:
            self.assertEqual(recv_to_eof(c), b"")
        for c in socks:
            if c not in refused:
                assert_echo(c, b"within the rate\n")
        time.sleep(0.3)  # tokens again
        with server.connect() as c:
            assert_echo(c, b"later\n")
        self.stop(server)

    def test_accept_rate_under_pause_leaves_newcomers_in_the_backlog(self):
        config = self.write_config('[limits]\naccept_rate = 20\naccept_burst = 5\n[pool]\non_exhausted = "pause"\n')
        server = self.start("--threads", "2", "--config", config)
        socks = self.open_from(server, "127.0.0.1", 25)
        s = server.wait_stats(lambda s: s["connections"]["accepted"] == 25, "every client served in time")
        self.assertEqual(s["connections"]["refused"], 0)
        for i, c in enumerate(socks):
            assert_echo(c, f"waited {i}\n".encode())
        self.stop(server)

    def test_evict_idle_gives_the_longest_silent_block_to_the_newcomer(self):
        config = self.write_config('[pool]\nmax_connections = 4\non_exhausted = "evict-idle"\n'
                                   'evict_idle_after = "1s"\n')
        server = self.start("--threads", "1", "--config", config)
        silent = self.open_from(server, "127.0.0.1", 2)
        busy = self.open_from(server, "127.0.0.2", 2)
        server.wait_stats(lambda s: s["pool"]["in_use"] == 4, "four clients served")
        for _ in range(8):  # 1.6 s: the silent pair passes evict_idle_after, the busy pair never
            for c in busy:
                assert_echo(c, b"still here\n")
            time.sleep(0.2)

        first = self.open_from(server, "127.0.0.3", 1)[0]
        assert_echo(first, b"in an evicted block\n")
        evicted = wait_readable(silent, 1, "one silent client evicted")
        self.assertEqual(recv_to_eof(evicted[0]), b"", "an evicted client reads a clean EOF")
        second = self.open_from(server, "127.0.0.3", 1)[0]
        assert_echo(second, b"in the other one\n")
        wait_readable(silent, 2, "both silent clients evicted")
        # No one left silent long enough: the next is refused, as under "refuse".
        third = self.open_from(server, "127.0.0.4", 1)[0]
        self.assertEqual(recv_to_eof(third), b"")
        for c in busy + [first, second]:
            assert_echo(c, b"untouched\n")
        s = server.stats()
        self.assertEqual(s["connections"]["closed"]["evicted"], 2)
        self.assertEqual(s["connections"]["refused_by_reason"]["pool_full"], 1)
        self.assertEqual(s["connections"]["accepted"], 6)
        self.assertEqual(s["pool"]["in_use"], 4)
        status, metrics = server.get("/metrics")
        self.assertIn('slabd_connections_closed_total{shard="0",reason="evicted"} 2', metrics)
        self.stop(server)

    def test_sighup_changes_the_limits_at_once(self):
        config = self.write_config("[limits]\nmax_per_source = 2\n")
        server = self.start("--threads", "2", "--config", config)
        first = self.open_from(server, "127.0.0.1", 3)
        self.settle(server, 3)
        self.assertEqual(server.stats()["connections"]["refused_by_reason"]["per_source"], 1)
        refused = wait_readable(first, 1, "the third client refused")
        served = [c for c in first if c not in refused]

        def reload(text, line):
            with open(config, "w") as f:
                f.write(text)
            server.signal(signal.SIGHUP)
            deadline = time.monotonic() + harness.WAIT
            while line not in server.stderr():
                self.assertLess(time.monotonic(), deadline, f"no {line!r} in the log:\n{server.output()}")
                time.sleep(harness.POLL)

        reload("[limits]\nmax_per_source = 4\n", "reload: changed limits.max_per_source 2 -> 4")
        self.open_from(server, "127.0.0.1", 3)
        s = self.settle(server, 6)
        self.assertEqual(s["connections"]["accepted"], 4, "two more, up to the new limit")
        self.assertEqual(s["connections"]["refused_by_reason"]["per_source"], 2)

        # Off, then a rate instead: nothing counted per source, newcomers past the burst refused.
        reload("[limits]\naccept_rate = 1\naccept_burst = 2\n", "reload: changed limits.accept_burst 0 -> 2")
        self.assertNotIn("only a restart applies", server.stderr())
        self.open_from(server, "127.0.0.1", 5)
        s = self.settle(server, 11)
        self.assertEqual(s["connections"]["refused_by_reason"]["per_source"], 2, "the limit is off")
        self.assertGreaterEqual(s["connections"]["refused_by_reason"]["rate_limited"], 2)
        self.assertLessEqual(s["connections"]["accepted"], 4 + 2 + 1)
        for c in served:
            assert_echo(c, b"untouched by every reload\n")
        self.stop(server)


if __name__ == "__main__":
    harness.main()
