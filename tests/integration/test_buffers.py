"""The buffer wait: with the write-buffer slab exhausted, a connection waits (back-pressure) and is
resumed once a buffer returns. The waits are broken by a reset, a half-close, an error, the idle
sweep, shutdown and, in proxy mode, the other relay; each time the others' bytes still come back
byte-exact, every block returns (pool and buffers `in_use` 0), no free is rejected, and no
sanitizer speaks. Checks are counts and bytes, never timings."""

import select
import signal
import socket
import threading
import time

import harness
from harness import (POLL, WAIT, PyUpstream, Sender, pattern, recv_exact, recv_to_eof,
                     rejected_frees, reset, stats_settled, wait_delivered, wait_stalled)

ONE_BUFFER = "[pool]\nbuffer_count = 1\n"
SMALL_RCVBUF = 4096  # a client that reads nothing fills this at once
HELD = 8 << 20  # what the buffer holder sends before it reads anything: more than the
# kernel buffers between it and slabd hold, so the echo toward it blocks
WAITER = 64 << 10  # what a waiter sends: more than a buffer, so its resume reads more than once


def waits(s):
    return s["connections"]["buffer_waits"]


class BufferWaitTest(harness.SlabdTest):
    # -- servers -------------------------------------------------------------------------------
    def echo(self, config="", *args):
        path = self.write_config(ONE_BUFFER + config)
        return self.start("--config", path, "--threads", "1", *args)

    def proxy(self, upstream_port, config="", *args):
        # splice_pipes = 0: every relayed byte goes through the one buffer.
        path = self.write_config(ONE_BUFFER + config + '\n[proxy]\nsplice_pipes = 0\nfail_timeout = "1h"\n')
        return self.start("--config", path, "--mode", "proxy", "--threads", "1",
                          "--upstream", f"127.0.0.1:{upstream_port}", *args)

    def server(self, mode, config="", *args):
        if mode == "echo":
            return self.echo(config, *args)
        upstream = PyUpstream()
        self.addCleanup(upstream.close)
        return self.proxy(upstream.port, config, *args)

    # -- the buffer holder ----------------------------------------------------------------------
    def hold_the_buffer(self, server, size=HELD, seed=1):
        """Client A sends `size` bytes (then EOF) and reads nothing: the echo toward it blocks, and
        the relay writing it keeps the only buffer. Returns (socket, data, sender)."""
        a = server.connect(rcvbuf=SMALL_RCVBUF)
        self.addCleanup(a.close)
        data = pattern(size, seed=seed)
        sender = Sender(a, data, shutdown=True)
        sender.start()
        wait_stalled(server, "the holder's echo to block with the buffer",
                     extra=lambda s: s["buffers"]["in_use"] == 1 and s["bytes"]["out"] > 0)
        return a, data, sender

    def start_waiter(self, server, size=WAITER, seed=2):
        """Client B sends `size` bytes and waits: no buffer is free to read them with."""
        before = waits(server.stats())
        b = server.connect()
        self.addCleanup(b.close)
        data = pattern(size, seed=seed)
        b.sendall(data)
        server.wait_stats(lambda s: waits(s) > before, "the newcomer to wait for a buffer")
        return b, data

    def read_all(self, sock, data, sender=None, what="the holder"):
        got = recv_to_eof(sock)
        if sender is not None:
            sender.finish()
        self.assertEqual(len(got), len(data), f"{what}: echo length")
        self.assertTrue(got == data, f"{what}: echo differs at byte {harness.first_difference(got, data)}")

    def settle(self, server):
        """Every connection gone, every block back, nothing rejected; returns the stats."""
        s = server.wait_stats(stats_settled, "every connection closed and every block returned")
        self.assertEqual(rejected_frees(s), {k: 0 for k in rejected_frees(s)}, "rejected frees")
        self.assertTrue(server.running(), f"slabd died:\n{server.output()}")
        return s

    # -- a waiter that resets, half-closes or errs while it waits ------------------------------
    def break_the_wait(self, mode, how):
        server = self.server(mode)
        a, a_data, a_sender = self.hold_the_buffer(server)
        b, b_data = self.start_waiter(server)
        if how == "reset":
            reset(b)
        elif how == "half-close":
            b.shutdown(socket.SHUT_WR)
        elif how == "error":
            # A plain close with nothing unread sends FIN; the echo written to it then draws an
            # RST, and the next read or write on the server's side fails.
            b.close()
        # The buffer comes back: the waiter resumes, and meets what it left behind.
        self.read_all(a, a_data, a_sender)
        if how == "half-close":
            self.read_all(b, b_data, what="the half-closed waiter")
        s = self.settle(server)
        if how == "half-close":
            self.assertEqual(s["connections"]["closed"]["error"], 0)
        self.stop(server)

    def test_echo_waiter_resets(self):
        self.break_the_wait("echo", "reset")

    def test_echo_waiter_half_closes(self):
        self.break_the_wait("echo", "half-close")

    def test_echo_waiter_errs(self):
        self.break_the_wait("echo", "error")

    def test_proxy_waiter_resets(self):
        self.break_the_wait("proxy", "reset")

    def test_proxy_waiter_half_closes(self):
        self.break_the_wait("proxy", "half-close")

    def test_proxy_waiter_errs(self):
        self.break_the_wait("proxy", "error")

    # -- exhaustion: more unread echoes than buffers ------------------------------------------
    def exhaustion(self, mode):
        buffers, clients = 2, 8
        config = f"[pool]\nbuffer_count = {buffers}\n"
        if mode == "echo":
            server = self.start("--config", self.write_config(config), "--threads", "1")
        else:
            upstream = PyUpstream()
            self.addCleanup(upstream.close)
            path = self.write_config(config + '[proxy]\nsplice_pipes = 0\nfail_timeout = "1h"\n')
            server = self.start("--config", path, "--mode", "proxy", "--threads", "1",
                                "--upstream", f"127.0.0.1:{upstream.port}")
        socks, datas, senders = [], [], []
        for i in range(clients):
            s = server.connect(rcvbuf=SMALL_RCVBUF)
            self.addCleanup(s.close)
            data = pattern(8 << 20, seed=i << 21)
            sender = Sender(s, data, shutdown=True)
            sender.start()
            socks.append(s)
            datas.append(data)
            senders.append(sender)
        st = wait_stalled(server, "every relay to block or wait",
                          extra=lambda s: s["buffers"]["in_use"] == buffers and waits(s) >= clients - buffers)
        self.assertLessEqual(st["buffers"]["in_use"], buffers)
        # Now everyone reads, concurrently: the waiters are served as buffers return.
        results = [None] * clients

        def drain(i):
            try:
                results[i] = recv_to_eof(socks[i])
            except OSError as e:
                results[i] = e

        readers = [threading.Thread(target=drain, args=(i,), daemon=True) for i in range(clients)]
        for t in readers:
            t.start()
        for t in readers:
            t.join(WAIT)
            self.assertFalse(t.is_alive(), "a client's echo never completed")
        for i in range(clients):
            senders[i].finish()
            self.assertIsInstance(results[i], bytes, f"client {i}: {results[i]!r}")
            self.assertEqual(len(results[i]), len(datas[i]), f"client {i}: echo length")
            self.assertTrue(results[i] == datas[i], f"client {i}: echo differs")
        s = self.settle(server)
        self.assertEqual(s["connections"]["closed"]["client_eof"], clients)
        self.stop(server)

    def test_echo_exhaustion_waiters_are_served(self):
        self.exhaustion("echo")

    def test_proxy_exhaustion_waiters_are_served(self):
        self.exhaustion("proxy")

    # -- the idle sweep and shutdown while a connection waits ----------------------------------
    def test_echo_idle_sweep_closes_a_waiter(self):
        # The holder's echo is blocked and the waiter has no buffer: neither reads a byte from its
        # client, so the sweep closes both, the waiter while it waits.
        server = self.echo('[timeouts]\nidle = "1s"\n')
        a, a_data, _ = self.hold_the_buffer(server)
        b, b_data = self.start_waiter(server, size=1024)
        # Swept while waiting, or served once the swept holder returned the buffer and swept
        # later: whole or nothing, then EOF, never a reset.
        self.assertIn(recv_to_eof(b), (b"", b_data), "the waiter's echo, whole or none, then EOF")
        try:
            got = recv_to_eof(a)
        except ConnectionResetError:
            got = None
        s = self.settle(server)
        self.assertEqual(s["connections"]["closed"]["idle_timeout"], 2)
        if got is not None:
            self.assertTrue(got == a_data[:len(got)], "the holder's echo, cut short, is exact")
        self.stop(server)

    def test_echo_shutdown_closes_a_waiter(self):
        server = self.echo('[timeouts]\nshutdown_grace = "500ms"\n')
        a, a_data, _ = self.hold_the_buffer(server)
        b, _ = self.start_waiter(server, size=1024)
        server.signal(signal.SIGTERM)
        self.assertEqual(recv_to_eof(b), b"", "the waiter is closed by the drain with EOF, not a reset")
        code = server.wait_exit()
        self.assertIsNone(server.sanitizer_report(), server.output())
        self.assertEqual(code, 0, server.output())
        # The holder's echo is cut short, but what arrived is exact.
        try:
            got = recv_to_eof(a)
        except ConnectionResetError:
            got = b""
        self.assertLessEqual(len(got), len(a_data))

    # -- proxy: the connection's own other relay holds the buffer --------------------------------
    def stalled_download(self, config="", then=None):
        """Proxy client X reads nothing while its upstream sends until the path toward X is full:
        the relay writing to X blocks holding the only buffer. X then sends 1 KiB, and its other
        relay waits for a buffer. Once released, the upstream runs `then(conn)` (default: read to
        EOF). Returns (server, X, the bytes the upstream delivered before `then`, release event);
        the bytes are known once the event was set and `delivered` is filled."""
        go = threading.Event()
        delivered = {}
        stream = pattern(32 << 20, seed=7)

        def behaviour(conn, index):
            conn.setblocking(False)
            at, quiet_since = 0, time.monotonic()
            while time.monotonic() - quiet_since < 1.0 and at < len(stream):
                try:
                    at += conn.send(stream[at:at + (1 << 16)])
                    quiet_since = time.monotonic()
                except BlockingIOError:
                    time.sleep(0.01)
            go.wait(WAIT)
            # What the proxy's kernel acknowledged reaches X; the rest dies with the upstream. More
            # may be acknowledged between this count and the reset (X is reading, so the proxy's
            # window opens), so it is a floor; what was written into the socket is the ceiling.
            delivered["n"] = at - harness.unacked(conn)
            delivered["written"] = at
            conn.setblocking(True)
            if then is not None:
                then(conn)
            else:
                recv_to_eof(conn)

        upstream = PyUpstream(behaviour)
        self.addCleanup(upstream.close)
        server = self.proxy(upstream.port, config)
        x = server.connect(rcvbuf=SMALL_RCVBUF)
        self.addCleanup(x.close)
        wait_stalled(server, "the download to block with the buffer", quiet=1.0,
                     extra=lambda s: s["buffers"]["in_use"] == 1 and s["bytes"]["out"] > 0)
        before = waits(server.stats())
        x.sendall(pattern(1024, seed=8))
        server.wait_stats(lambda s: waits(s) > before, "the upload to wait for a buffer")
        return server, x, stream, go, delivered

    def assert_prefix(self, got, sent, what):
        self.assertLessEqual(len(got), len(sent), what)
        self.assertTrue(got == sent[:len(got)], f"{what}: differs at byte {harness.first_difference(got, sent)}")

    def test_proxy_other_relay_closes_while_resume_is_posted(self):
        # The upstream resets once everything it sent has arrived. The client reads: the download
        # relay's write completes, it returns the buffer (posting the upload relay's resume) and
        # reads on, meets the reset, and closes the connection while that resume is posted.
        server, x, stream, go, delivered = self.stalled_download(then=reset)
        go.set()
        got = recv_to_eof(x)
        print(f"acknowledged at the reset's count {delivered['n']}, written {delivered['written']}, "
              f"received {len(got)}")
        self.assertGreaterEqual(len(got), delivered["n"], "every byte the proxy acknowledged, then EOF")
        self.assertLessEqual(len(got), delivered["written"])
        self.assertTrue(got == stream[:len(got)], f"differs at byte {harness.first_difference(got, stream)}")
        s = self.settle(server)
        self.assertEqual(s["connections"]["closed"]["upstream_failure"], 1)
        self.stop(server)

    def test_proxy_idle_sweep_closes_while_its_own_relay_holds_the_buffer(self):
        # The sweep closes X; the cancelled download relay returns the buffer, whose first waiter
        # is X itself, and X is gone.
        server, x, sent, go, _ = self.stalled_download('[timeouts]\nidle = "3s"\n')
        got = recv_to_eof(x)
        self.assert_prefix(got, sent, "the swept client's download")
        s = self.settle(server)
        self.assertEqual(s["connections"]["closed"]["idle_timeout"], 1)
        go.set()
        self.stop(server)

    def test_proxy_shutdown_closes_while_its_own_relay_holds_the_buffer(self):
        server, x, sent, go, _ = self.stalled_download('[timeouts]\nshutdown_grace = "500ms"\n')
        server.signal(signal.SIGTERM)
        got = recv_to_eof(x)
        self.assert_prefix(got, sent, "the drained client's download")
        code = server.wait_exit()
        self.assertIsNone(server.sanitizer_report(), server.output())
        self.assertEqual(code, 0, server.output())
        go.set()

    # -- shutdown while resumes are being posted: a race, tried several times -----------------
    def test_echo_shutdown_while_resumes_are_posted(self):
        # Many streaming clients share one buffer, so nearly every event-loop turn returns it and
        # posts a waiter's resume; a zero grace closes everyone from the timer that fires in such
        # a turn, between a resume's post and its run.
        clients, attempts = 24, 4
        for attempt in range(attempts):
            server = self.echo('[timeouts]\nshutdown_grace = "0s"\n')
            socks = [server.connect() for _ in range(clients)]
            self.addCleanup(harness.close_all, socks)
            for s in socks:
                s.setblocking(False)
            data = pattern(1 << 16, seed=attempt)
            received = {s: bytearray() for s in socks}
            sent = {s: 0 for s in socks}
            signalled = None
            deadline = time.monotonic() + WAIT
            open_socks = set(socks)
            while open_socks and time.monotonic() < deadline:
                if signalled is None and sum(len(v) for v in received.values()) > clients * len(data):
                    server.signal(signal.SIGTERM)
                    signalled = time.monotonic()
                r, w, _ = select.select(list(open_socks), list(open_socks) if signalled is None else [], [], 0.1)
                for s in w:
                    at = sent[s] % len(data)
                    try:
                        sent[s] += s.send(data[at:])
                    except (BlockingIOError, OSError):
                        pass
                for s in r:
                    try:
                        chunk = s.recv(1 << 16)
                    except BlockingIOError:
                        continue
                    except ConnectionResetError:
                        chunk = b""
                    if not chunk:
                        open_socks.discard(s)
                        continue
                    received[s] += chunk
            self.assertFalse(open_socks, f"attempt {attempt}: clients left open")
            for s in socks:
                got = bytes(received[s])
                expect = (data * (len(got) // len(data) + 1))[:len(got)]
                self.assertTrue(got == expect, f"attempt {attempt}: an echo differs")
            code = server.wait_exit()
            self.assertIsNone(server.sanitizer_report(), f"attempt {attempt}:\n{server.output()}")
            self.assertEqual(code, 0, f"attempt {attempt}:\n{server.output()}")
            harness.close_all(socks)


if __name__ == "__main__":
    harness.main()
