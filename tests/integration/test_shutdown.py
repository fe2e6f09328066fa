"""Graceful stop (docs/design.md, decision 9): on SIGTERM or SIGINT the listener closes at once, open
connections keep being served for the grace period, then are closed, and slabd exits 0; when the
last client leaves first, slabd does not wait out the grace."""

import signal
import subprocess
import time

import harness
from harness import WAIT, assert_echo, recv_to_eof


class ShutdownTest(harness.SlabdTest):
    def start_with_grace(self, grace):
        # The grace is set only in the file: there is no flag for it.
        path = self.write_config(f'[timeouts]\nshutdown_grace = "{grace}"\n')
        return self.start("--config", path, "--threads", "2")

    def wait_listener_closed(self, server):
        """New connects are refused once every thread has closed its listener."""
        deadline = time.monotonic() + WAIT
        while True:
            try:
                server.connect().close()
            except ConnectionRefusedError:
                return
            except ConnectionResetError:
                pass  # queued on a listener as it closed: the kernel resets those
            self.assertLess(time.monotonic(), deadline, "the listener still accepts after SIGTERM")
            time.sleep(harness.POLL)

    def wait_exit(self, server):
        try:
            code = server.wait_exit()
        except subprocess.TimeoutExpired:
            self.fail(f"slabd did not exit within {WAIT:.0f} s:\n{server.output()}")
        self.assertIsNone(server.sanitizer_report(), server.output())
        self.assertEqual(code, 0, server.output())

    def test_sigterm_serves_open_connections_through_the_grace_then_closes_them(self):
        server = self.start_with_grace("5s")
        with server.connect() as c:
            assert_echo(c, b"before")
            server.signal(signal.SIGTERM)
            self.wait_listener_closed(server)
            for _ in range(5):
                with self.assertRaises(ConnectionRefusedError):
                    server.connect().close()
            assert_echo(c, b"during the grace")
            s = server.stats()
            self.assertTrue(s["server"]["draining"])
            self.assertEqual(s["connections"]["active"], 1)
            self.assertEqual(recv_to_eof(c), b"", "closed with a FIN when the grace ends")
        self.wait_exit(server)
        self.assertIn("draining", server.stderr())

    def test_last_client_leaving_ends_the_drain(self):
        server = self.start_with_grace("1h")
        with server.connect() as c:
            assert_echo(c, b"before")
            server.signal(signal.SIGINT)
            self.wait_listener_closed(server)
            assert_echo(c, b"during the grace")
        # Within the bound, and far within the hour of grace.
        self.wait_exit(server)

    def test_sigterm_when_idle(self):
        server = self.start_with_grace("1h")
        server.signal(signal.SIGTERM)
        self.wait_exit(server)

    def test_more_sigterms_while_it_exits_leave_its_status_zero(self):
        # systemd may send its SIGTERM again, an operator press Ctrl-C twice: once the server's
        # signal handlers are gone, the default action would end the exit with the signal.
        for _ in range(5):
            server = self.start("--threads", "2")
            server.signal(signal.SIGTERM)
            deadline = time.monotonic() + WAIT
            while server.running() and time.monotonic() < deadline:
                try:
                    server.signal(signal.SIGTERM)
                except ProcessLookupError:
                    break
                time.sleep(0.0002)
            self.wait_exit(server)

    def test_every_stop_completes(self):
        # Each shard's clock ticks every 250 ms; a SIGTERM that lands while a tick is due must
        # still let the shard finish. Many shards, many stops, spread across the tick period.
        for i in range(25):
            server = self.start("--threads", "4")
            time.sleep((i * 0.011) % 0.25)
            server.signal(signal.SIGTERM)
            self.wait_exit(server)


if __name__ == "__main__":
    harness.main()
