"""The idle timeout: a silent client is closed (EOF) and counted; one that keeps talking is not."""

import time

import harness
from harness import WAIT, assert_echo, is_readable, recv_to_eof

TALK_EVERY = 0.1  # seconds between an active client's messages: a tenth of the timeout


class IdleTimeoutTest(harness.SlabdTest):
    def talk_until(self, client, done, what):
        deadline = time.monotonic() + WAIT
        n = 0
        while not done():
            self.assertLess(time.monotonic(), deadline, f"waited {WAIT:.0f} s for {what}")
            assert_echo(client, f"still here {n}\n".encode())
            n += 1
            time.sleep(TALK_EVERY)

    def check_idle_closed_active_kept(self, server):
        idle, active = self.connect_all(server, 2)
        assert_echo(idle, b"hello, then silence")
        assert_echo(active, b"hello, and more")
        self.talk_until(active, lambda: is_readable(idle), "the idle client to be closed")
        self.assertEqual(recv_to_eof(idle), b"", "the idle client reads EOF, not a reset")
        s = server.stats()
        self.assertEqual(s["connections"]["closed"]["idle_timeout"], 1)
        self.assertEqual(s["connections"]["active"], 1)
        # Three more timeouts' worth of talking: the active client stays.
        until = time.monotonic() + 3.0
        self.talk_until(active, lambda: time.monotonic() > until, "three seconds")
        s = server.stats()
        self.assertEqual(s["connections"]["closed"]["idle_timeout"], 1)
        self.assertEqual(s["connections"]["active"], 1)
        active.close()
        # The connection leaves the active gauge in its destructor, just before its block returns.
        s = server.wait_stats(lambda s: s["connections"]["active"] == 0 and s["pool"]["in_use"] == 0,
                              "the active client to leave")
        self.assertEqual(s["connections"]["closed"]["client_eof"], 1)
        self.assertEqual(s["pool"]["in_use"], 0)

    def test_echo(self):
        server = self.start("--threads", "2", "--idle-timeout", "1s")
        self.check_idle_closed_active_kept(server)
        self.stop(server)

    def test_proxy(self):
        upstream = self.start("--threads", "1")
        proxy = self.start("--mode", "proxy", "--threads", "2", "--idle-timeout", "1s",
                           "--upstream", f"127.0.0.1:{upstream.port}")
        self.check_idle_closed_active_kept(proxy)
        upstream.wait_stats(lambda s: s["connections"]["active"] == 0, "the idle client's upstream leg to close")
        self.stop(proxy)
        self.stop(upstream)


if __name__ == "__main__":
    harness.main()
