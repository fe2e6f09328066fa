"""Proxy mode over real sockets, against real upstreams (slabd in echo mode, or a tiny Python
server where the upstream must misbehave on cue): bytes both ways, both balance policies,
upstreams that refuse or die, half-close in both directions, and zero-copy (splice) relaying."""

import signal
import socket
import struct
import threading
import time

import harness
from harness import IO_TIMEOUT, assert_echo, pattern, recv_exact, recv_to_eof, refused_port, stream_echo


def upstream_arg(port):
    return ["--upstream", f"127.0.0.1:{port}"]


class BannerUpstream(threading.Thread):
    """An upstream that greets its one client, shuts its write side at once, and still reads
    everything the client sends until the client's EOF."""

    def __init__(self, banner):
        super().__init__(daemon=True)
        self.banner = banner
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(IO_TIMEOUT)
        self.port = self.listener.getsockname()[1]
        self.received = None
        self.error = None

    def run(self):
        try:
            conn, _ = self.listener.accept()
            with conn:
                conn.settimeout(IO_TIMEOUT)
                conn.sendall(self.banner)
                conn.shutdown(socket.SHUT_WR)
                self.received = recv_to_eof(conn)
        except OSError as e:
            self.error = e
        finally:
            self.listener.close()

    def finish(self, test):
        self.join(harness.WAIT)
        test.assertFalse(self.is_alive(), "the upstream never saw the client's EOF")
        test.assertIsNone(self.error)
        return self.received


class Blackhole:
    """A loopback upstream that never answers: its accept queue (backlog 0) is full, so the kernel
    drops every further SYN and a connect to it only ends by the connector's own timeout."""

    def __init__(self):
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(0)
        self.port = self.listener.getsockname()[1]
        self.filler = socket.create_connection(("127.0.0.1", self.port), timeout=IO_TIMEOUT)

    def close(self):
        self.filler.close()
        self.listener.close()


class StalledUpstream:
    """An upstream that accepts one client and never reads from it, until reset() closes that
    connection with RST."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(IO_TIMEOUT)
        self.port = self.listener.getsockname()[1]
        self.conn = None

    def accept(self):
        self.conn, _ = self.listener.accept()

    def reset(self):
        self.conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.conn.close()
        self.listener.close()


class StreamingUpstream(threading.Thread):
    """An upstream that, once its client has sent something, streams `size` bytes back (or until
    the proxy goes away)."""

    def __init__(self, size):
        super().__init__(daemon=True)
        self.size = size
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(IO_TIMEOUT)
        self.port = self.listener.getsockname()[1]

    def run(self):
        try:
            conn, _ = self.listener.accept()
            with conn:
                conn.settimeout(IO_TIMEOUT)
                conn.recv(1)
                chunk = pattern(1 << 16)
                for _ in range(self.size // len(chunk)):
                    conn.sendall(chunk)
        except OSError:
            pass  # the proxy closed its leg: what the test provokes
        finally:
            self.listener.close()


class ProxyTest(harness.SlabdTest):
    def echo_upstream(self):
        return self.start("--threads", "1")

    def proxy(self, *upstreams, extra=(), threads=2, settings=""):
        """slabd proxying to `upstreams` (ports or slabd instances); `settings`: more [proxy] keys."""
        # An upstream that failed stays marked down for the whole test, so that which upstream
        # a client gets does not depend on how fast the test runs.
        config = self.write_config(f'[proxy]\nfail_timeout = "1h"\n{settings}')
        args = ["--config", config, "--mode", "proxy", "--threads", str(threads), *extra]
        for u in upstreams:
            args += upstream_arg(u if isinstance(u, int) else u.port)
        return self.start(*args)

    def serve_one(self, proxy, size=4096, seed=0):
        """One short client: connect, verify an echo through the proxy, close, and wait until the
        proxy has let go of it (so that least-connections sees the count drop)."""
        before = proxy.stats()["connections"]["closed"]
        with proxy.connect() as c:
            assert_echo(c, pattern(size, seed))
        total = sum(before.values()) + 1
        proxy.wait_stats(lambda s: sum(s["connections"]["closed"].values()) == total,
                         "the proxy to close the client")

    def test_bytes_both_ways(self):
        upstream = self.echo_upstream()
        proxy = self.proxy(upstream)
        size = 4 << 20
        with proxy.connect() as c:
            stream_echo(c, size)
            c.shutdown(socket.SHUT_WR)
            self.assertEqual(recv_to_eof(c), b"")
        p = proxy.wait_stats(lambda s: s["connections"]["active"] == 0, "the client to be closed")
        u = upstream.wait_stats(lambda s: s["connections"]["active"] == 0, "the proxy's leg to be closed")
        self.assertEqual(u["connections"]["accepted"], 1)
        self.assertEqual(u["bytes"]["in"], size, "upstream received every client byte")
        self.assertEqual(p["bytes"]["in"], 2 * size, "client -> proxy, and upstream -> proxy")
        self.assertEqual(p["bytes"]["out"], 2 * size, "proxy -> upstream, and proxy -> client")
        self.assertEqual(p["connections"]["closed"]["client_eof"], 1)
        self.assertEqual(p["upstream_connect_failures"], 0)
        self.stop(proxy)
        self.stop(upstream)

    def bulk_one_way(self, splice_pipes):
        """4 MiB from the client straight into an echo upstream, echoed back; returns the proxy's
        /stats once the client is gone."""
        upstream = self.echo_upstream()
        proxy = self.proxy(upstream, threads=1, settings=f"splice_pipes = {splice_pipes}\n")
        size = 4 << 20
        with proxy.connect() as c:
            stream_echo(c, size, shutdown=True)
            self.assertEqual(recv_to_eof(c), b"")
        p = proxy.wait_stats(lambda s: s["connections"]["active"] == 0, "the client to be closed")
        self.assertEqual(p["bytes"]["in"], 2 * size)
        self.assertEqual(p["bytes"]["out"], 2 * size)
        self.assertEqual(p["splice_pipes"]["lost"], 0)
        self.stop(proxy)
        self.stop(upstream)
        return p

    def test_bulk_transfer_is_spliced(self):
        p = self.bulk_one_way(splice_pipes=4)
        # Only bursts that fill a whole buffer splice, so not every byte does; most of a stream
        # written as fast as the socket takes it does.
        self.assertGreater(p["bytes"]["spliced"], (4 << 20), "at least half of the 8 MiB relayed")

    def test_splice_pipes_zero_always_copies(self):
        p = self.bulk_one_way(splice_pipes=0)
        self.assertEqual(p["bytes"]["spliced"], 0)

    def stall_holding_the_pipe(self, good):
        """A proxy with one pipe, whose only client streams into an upstream that never reads,
        until the relay blocks writing with bytes in that pipe. A relay may instead block while
        copying (a burst smaller than a buffer returns it to copying), so this tries again, with
        a new proxy, until the pipe is the one held. Returns (proxy, stalled upstream, client,
        sender, the stalled /stats)."""
        for _ in range(5):
            stalled = StalledUpstream()
            proxy = self.proxy(stalled.port, good, extra=["--balance", "round-robin"], threads=1,
                               settings="splice_pipes = 1\n")
            doomed = proxy.connect()
            self.addCleanup(doomed.close)
            stalled.accept()
            sender = harness.Sender(doomed, pattern(1 << 20, seed=5), repeat=64)
            sender.start()
            last = {"in": None, "since": 0.0}

            def stalled_for_half_a_second(s):
                # Half a second, so that a proxy merely slowed by a busy machine does not pass
                # for a stalled one.
                b, now = s["bytes"], time.monotonic()
                if b["in"] != last["in"]:
                    last["in"], last["since"] = b["in"], now
                return now - last["since"] >= 0.5 and b["in"] > b["out"]

            held = proxy.wait_stats(stalled_for_half_a_second, "the relay to stall")
            if held["splice_pipes"]["in_use"] == 1:
                return proxy, stalled, doomed, sender, held
            stalled.reset()
            doomed.close()
            sender.join(harness.WAIT)
            self.stop(proxy)
        self.fail("in 5 tries the stalled relay never held the pipe")

    def test_pipe_left_holding_bytes_is_not_reused_as_is(self):
        # One pipe, so the next bulk transfer gets the very pipe the failed one left bytes in.
        good = self.echo_upstream()
        proxy, stalled, doomed, sender, held = self.stall_holding_the_pipe(good)

        # The only pipe is lent: another bulk transfer meanwhile is copied, in full.
        with proxy.connect() as c:
            stream_echo(c, 4 << 20, shutdown=True)
            self.assertEqual(recv_to_eof(c), b"")
        p = proxy.wait_stats(lambda s: s["connections"]["active"] == 1, "the copied transfer to end")
        self.assertEqual(p["bytes"]["spliced"], held["bytes"]["spliced"], "no pipe was free to splice with")

        stalled.reset()
        p = proxy.wait_stats(lambda s: s["connections"]["active"] == 0, "the proxy to drop the stalled client")
        self.assertEqual(p["connections"]["closed"]["upstream_failure"], 1)
        doomed.close()
        sender.join(harness.WAIT)

        with proxy.connect() as c:
            stream_echo(c, 4 << 20, shutdown=True)
            self.assertEqual(recv_to_eof(c), b"")
        p = proxy.wait_stats(lambda s: s["connections"]["active"] == 0, "the second client to be closed")
        self.assertGreater(p["bytes"]["spliced"], 4 << 20, "the second transfer went through the pipe")
        self.assertEqual(p["splice_pipes"]["lost"], 0)
        self.stop(proxy)
        self.stop(good)

    def test_client_gone_while_its_download_is_spliced(self):
        # The client asks and leaves at once; the reply, spliced into its closed socket, meets
        # EPIPE. splice(2), unlike send(MSG_NOSIGNAL), raises SIGPIPE with it, which killed slabd.
        upstream = StreamingUpstream(64 << 20)
        upstream.start()
        good = self.echo_upstream()
        proxy = self.proxy(upstream.port, good, threads=1)
        with proxy.connect() as c:
            c.sendall(b"get")
            # Take the first 4 MiB, so that the download is known to be spliced, then leave.
            got = recv_exact(c, 4 << 20)
            self.assertTrue(got == pattern(1 << 16) * 64, "the download differs")
            spliced = proxy.stats()["bytes"]["spliced"]
        self.assertGreater(spliced, 0, "the download was relayed by splice")
        p = proxy.wait_stats(lambda s: sum(s["connections"]["closed"].values()) == 1,
                             "the proxy to drop the departed client")
        self.assertTrue(proxy.running(), f"slabd died:\n{proxy.output()}")
        self.assertEqual(p["connections"]["active"], 0)
        self.assertGreaterEqual(p["bytes"]["spliced"], spliced)
        upstream.join(harness.WAIT)
        self.serve_one(proxy)
        self.stop(proxy)
        self.stop(good)

    def test_round_robin_alternates(self):
        a, b = self.echo_upstream(), self.echo_upstream()
        proxy = self.proxy(a, b, extra=["--balance", "round-robin"])
        for i in range(6):
            self.serve_one(proxy, seed=i * 4096)
        self.assertEqual(a.stats()["connections"]["accepted"], 3)
        self.assertEqual(b.stats()["connections"]["accepted"], 3)
        self.stop(proxy)
        self.stop(a)
        self.stop(b)

    def test_least_connections_prefers_the_idler_upstream(self):
        a, b = self.echo_upstream(), self.echo_upstream()
        proxy = self.proxy(a, b, extra=["--balance", "least-connections"])
        with proxy.connect() as held:
            assert_echo(held, b"held")  # a tie goes to the first upstream: a
            self.assertEqual(a.stats()["connections"]["accepted"], 1)
            # With one client held on a, every short client goes to b; round-robin would split them.
            for i in range(4):
                self.serve_one(proxy, seed=i * 4096)
            self.assertEqual(a.stats()["connections"]["accepted"], 1)
            self.assertEqual(b.stats()["connections"]["accepted"], 4)
            assert_echo(held, b"still served")
        self.stop(proxy)
        self.stop(a)
        self.stop(b)

    def test_refused_upstream_is_skipped(self):
        dead, dead_port = refused_port()
        self.addCleanup(dead.close)
        live = self.echo_upstream()
        proxy = self.proxy(dead_port, live)
        for i in range(4):
            self.serve_one(proxy, seed=i * 4096)
        p = proxy.stats()
        self.assertEqual(live.stats()["connections"]["accepted"], 4)
        self.assertEqual(p["upstream_connect_failures"], 1, "tried once, then marked down and skipped")
        self.assertEqual(p["connections"]["closed"]["upstream_failure"], 0)
        self.assertEqual(p["connections"]["closed"]["client_eof"], 4)
        self.stop(proxy)
        self.stop(live)

    def test_all_upstreams_down_closes_the_client_cleanly(self):
        dead = [refused_port() for _ in range(2)]
        for s, _ in dead:
            self.addCleanup(s.close)
        proxy = self.proxy(*(port for _, port in dead))
        clients = 3
        for _ in range(clients):
            with proxy.connect() as c:
                self.assertEqual(c.recv(1), b"", "a clean close (FIN), not a reset and not a hang")
        # The connection leaves the active gauge in its destructor, just before its block returns.
        p = proxy.wait_stats(lambda s: s["connections"]["active"] == 0 and s["pool"]["in_use"] == 0,
                             "every client closed")
        self.assertEqual(p["connections"]["closed"]["upstream_failure"], clients)
        self.assertEqual(p["upstream_connect_failures"], 2 * clients, "each client tried both upstreams")
        self.assertEqual(p["pool"]["in_use"], 0)
        self.stop(proxy)

    def test_upstream_that_never_answers_times_out_to_the_next(self):
        silent = Blackhole()
        self.addCleanup(silent.close)
        live = self.echo_upstream()
        proxy = self.proxy(silent.port, live, extra=["--connect-timeout", "500ms"])
        for i in range(3):
            self.serve_one(proxy, seed=i * 4096)
        p = proxy.stats()
        self.assertEqual(live.stats()["connections"]["accepted"], 3)
        self.assertEqual(p["upstream_connect_failures"], 1, "then marked down and skipped")
        self.assertEqual(p["connections"]["closed"]["upstream_failure"], 0)
        self.stop(proxy)
        self.stop(live)

    def test_client_that_spoke_first_is_closed_cleanly_when_no_upstream_answers(self):
        # The client's request is unread when the proxy gives up: closing over unread bytes would
        # reset the connection instead of closing it.
        silent = Blackhole()
        self.addCleanup(silent.close)
        proxy = self.proxy(silent.port, extra=["--connect-timeout", "1s"])
        with proxy.connect() as c:
            c.sendall(b"GET / HTTP/1.0\r\n\r\n")
            self.assertEqual(c.recv(1), b"", "a clean close (FIN), not a reset")
        p = proxy.wait_stats(lambda s: s["connections"]["active"] == 0, "the client to be closed")
        self.assertEqual(p["connections"]["closed"]["upstream_failure"], 1)
        self.assertEqual(p["upstream_connect_failures"], 1)
        self.stop(proxy)

    def test_upstream_killed_mid_stream(self):
        doomed, spare = self.echo_upstream(), self.echo_upstream()
        proxy = self.proxy(doomed, spare)
        c = proxy.connect()
        self.addCleanup(c.close)
        data = pattern(1 << 20)
        repeat = 256  # far more than the kill leaves time to send
        sender = harness.Sender(c, data, repeat=repeat)
        sender.start()
        first = recv_exact(c, 1 << 20)
        self.assertEqual(first, data[:1 << 20])
        self.assertEqual(doomed.stats()["connections"]["active"], 1, "round-robin starts with the first")
        doomed.signal(signal.SIGKILL)
        doomed.wait_exit()
        # The client must be closed, by EOF or reset; a timeout here means it hangs.
        ended = None
        try:
            while c.recv(1 << 20):
                pass
            ended = "eof"
        except ConnectionResetError:
            ended = "reset"
        except TimeoutError:
            self.fail("the client hangs after its upstream died")
        sender.join(harness.WAIT)
        self.assertFalse(sender.is_alive(), "the client's sends hang after its upstream died")
        self.assertNotIsInstance(sender.error, TimeoutError)
        # A lingering close: FIN after every byte relayed, while what the client goes on sending
        # is read and discarded (a reset only if it outlasts the linger time).
        self.assertEqual(ended, "eof", "the client's connection was reset instead of closed")
        c.close()
        p = proxy.wait_stats(lambda s: s["connections"]["active"] == 0 and s["pool"]["in_use"] == 0,
                             f"the proxy to drop the client ({ended})")
        self.assertEqual(p["pool"]["in_use"], 0)
        self.assertEqual(p["connections"]["closed"]["upstream_failure"], 1, f"closed by {ended}")
        # New clients are served by the upstream that is left; the dead one is tried once, when
        # round-robin comes back to it, and then skipped.
        for i in range(4):
            self.serve_one(proxy, seed=i * 4096)
        self.assertEqual(spare.stats()["connections"]["accepted"], 4)
        self.assertEqual(proxy.stats()["upstream_connect_failures"], 1)
        self.stop(proxy)
        self.stop(spare)

    def test_half_close_client_to_upstream(self):
        upstream = self.echo_upstream()
        proxy = self.proxy(upstream)
        data = pattern(1 << 20, seed=3)
        with proxy.connect() as c:
            sender = harness.Sender(c, data, shutdown=True)
            sender.start()
            got = recv_to_eof(c)
            sender.finish()
        self.assertTrue(got == data, f"echo differs at byte {harness.first_difference(got, data)}")
        u = upstream.wait_stats(lambda s: s["connections"]["active"] == 0, "the upstream to see EOF")
        self.assertEqual(u["connections"]["closed"]["client_eof"], 1, "the upstream saw a FIN, not a reset")
        p = proxy.wait_stats(lambda s: s["connections"]["active"] == 0, "the proxy to close")
        self.assertEqual(p["connections"]["closed"]["client_eof"], 1)
        self.stop(proxy)
        self.stop(upstream)

    def test_urgent_data_in_a_spliced_upload_loses_nothing_after_it(self):
        # splice(2) stops at urgent data's mark, short of the bytes behind it, and with the FIN
        # behind them returns 0 as if at the EOF; recv(2) steps over the out-of-band byte. The
        # relay must copy past the mark, or those bytes wait for ever or are lost.
        upstream = BannerUpstream(b"")
        upstream.start()
        proxy = self.proxy(upstream.port, threads=1, settings="splice_pipes = 4\n")
        head = pattern(4 << 20, seed=5)
        tail = pattern(1 << 20, seed=6)
        with proxy.connect() as c:
            # In one go, so that the mark comes while the relay splices the head.
            c.sendall(head)
            c.send(b"!", socket.MSG_OOB)
            c.sendall(tail)
            c.shutdown(socket.SHUT_WR)
            self.assertEqual(recv_to_eof(c), b"")
        upstream.join(IO_TIMEOUT)
        self.assertIsNone(upstream.error)
        got = upstream.received or b""
        self.assertEqual(len(got), len(head) + len(tail), "every byte but the urgent one arrived")
        self.assertTrue(got == head + tail, f"differs at byte {harness.first_difference(got, head + tail)}")
        p = proxy.wait_stats(lambda s: s["connections"]["active"] == 0, "the proxy to close")
        self.assertGreater(p["bytes"]["spliced"], 0, "the upload was spliced")
        self.stop(proxy)

    def test_half_close_upstream_to_client(self):
        banner = b"hello from upstream\n"
        upstream = BannerUpstream(banner)
        upstream.start()
        proxy = self.proxy(upstream.port)
        data = pattern(512 << 10, seed=11)
        with proxy.connect() as c:
            self.assertEqual(recv_exact(c, len(banner)), banner)
            self.assertEqual(c.recv(1), b"", "the upstream's half-close reaches the client as EOF")
            # The other direction is still open: the upstream gets every byte, then EOF.
            c.sendall(data)
            c.shutdown(socket.SHUT_WR)
            received = upstream.finish(self)
            self.assertEqual(len(received), len(data))
            self.assertTrue(received == data)
            self.assertEqual(c.recv(1), b"")
        p = proxy.wait_stats(lambda s: s["connections"]["active"] == 0, "the proxy to close")
        self.assertEqual(p["connections"]["closed"]["client_eof"], 1)
        self.stop(proxy)


if __name__ == "__main__":
    harness.main()
