"""Faults: upstreams that are silent, reset on accept or mid-stream, die mid-transfer or are absent;
one of two upstreams down; a client that never reads; SIGTERM under load; a reset right behind a
peer's last bytes. And the lingering close: a client whose upstream dies while it is still sending
receives every byte the upstream sent, then EOF, never a reset. Each case: clean closes, the right
counters, every block back."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import harness
from harness import (IO_TIMEOUT, WAIT, PyUpstream, Sender, assert_echo, pattern, recv_exact,
                     recv_to_eof, refused_port, rejected_frees, reset, stats_settled,
                     wait_delivered, wait_stalled)

# An upstream in its own process, to be killed: greets each client with SIZE pattern bytes,
# waits until they are acknowledged, says "ready" on stdout, and then reads nothing.
KILLABLE = r"""
import socket, struct, sys, fcntl, termios, time, array, threading
size = int(sys.argv[1])
data = array.array("I", range(size // 4 + 1)).tobytes()[:size]
l = socket.create_server(("127.0.0.1", 0), backlog=128)
print(l.getsockname()[1], flush=True)
conns = []
# print() writes the text and its newline separately: two threads at once made "readyready".
say = threading.Lock()
def serve(c):
    c.sendall(data)
    while struct.unpack("i", fcntl.ioctl(c.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]:
        time.sleep(0.01)
    with say:
        print("ready", flush=True)
l.settimeout(60)
while True:
    c, _ = l.accept()
    conns.append(c)
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""


class Killable:
    def __init__(self, size):
        self.proc = subprocess.Popen([sys.executable, "-c", KILLABLE, str(size)],
                                     stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        self.port = int(self.proc.stdout.readline())

    def wait_ready(self, n):
        for _ in range(n):
            line = self.proc.stdout.readline()
            assert line.strip() == b"ready", f"killable upstream said {line!r}"

    def kill(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(WAIT)
        self.proc.stdout.close()


class FaultTest(harness.SlabdTest):
    def proxy(self, *ports, config="", args=()):
        path = self.write_config('[proxy]\nfail_timeout = "1h"\n' + config)
        argv = ["--config", path, "--mode", "proxy", "--threads", "2", *args]
        for p in ports:
            argv += ["--upstream", f"127.0.0.1:{p}"]
        return self.start(*argv)

    def settle(self, server):
        s = server.wait_stats(stats_settled, "every connection closed and every block returned")
        self.assertEqual(rejected_frees(s), {k: 0 for k in rejected_frees(s)}, "rejected frees")
        return s

    def assert_clean_eof(self, sock, what):
        try:
            return recv_to_eof(sock)
        except ConnectionResetError:
            self.fail(f"{what}: reset instead of EOF")

    # -- the lingering close ---------------------------------------------------------------------
    def lingering(self, how, clients=20, size=256 << 10):
        """`clients` proxy clients stream at an upstream that sends each `size` bytes, never reads,
        and then dies (`how`). Each client must read exactly those bytes, then EOF."""
        killable = None
        go = threading.Event()
        if how == "killed":
            killable = Killable(size)
            self.addCleanup(killable.kill)
            port = killable.port
        else:
            greeting = pattern(size)

            def behaviour(conn, index):
                conn.sendall(greeting)
                wait_delivered(conn)
                go.wait(WAIT)
                if how == "reset":
                    reset(conn)
                else:
                    conn.close()  # over unread input: the kernel sends RST as well

            upstream = PyUpstream(behaviour)
            self.addCleanup(upstream.close)
            port = upstream.port
        server = self.proxy(port)
        socks, senders = [], []
        for i in range(clients):
            c = server.connect()
            self.addCleanup(c.close)
            sender = Sender(c, pattern(1 << 20, seed=i), repeat=64)
            sender.start()
            socks.append(c)
            senders.append(sender)
        if killable is not None:
            killable.wait_ready(clients)
        else:
            upstream.wait_accepted(clients)
        # Let the clients' uploads pile up in front of the upstream that never reads.
        wait_stalled(server, "the uploads to stall")
        if killable is not None:
            killable.kill()
        else:
            go.set()
        outcomes = {}
        expected = pattern(size)
        for i, c in enumerate(socks):
            try:
                got = recv_to_eof(c)
                outcomes[i] = "eof" if got == expected else f"eof after {len(got)} of {size} bytes"
            except ConnectionResetError:
                outcomes[i] = "reset"
            try:
                c.shutdown(socket.SHUT_RDWR)  # ends its sender
            except OSError:
                pass
        for s in senders:
            s.join(WAIT)
        bad = {i: o for i, o in outcomes.items() if o != "eof"}
        self.assertEqual(bad, {}, f"{len(bad)} of {clients} clients did not get every byte, then EOF")
        s = self.settle(server)
        self.assertEqual(s["connections"]["closed"]["upstream_failure"], clients)
        self.stop(server)

    def test_lingering_close_upstream_resets(self):
        self.lingering("reset")

    def test_lingering_close_upstream_closes(self):
        self.lingering("closed")

    def test_lingering_close_upstream_killed(self):
        self.lingering("killed")

    # -- upstream faults --------------------------------------------------------------------------
    def test_upstream_silent(self):
        # Accepts, never reads or answers: the idle timeout closes the client, cleanly.
        upstream = PyUpstream(lambda conn, i: time.sleep(10))
        self.addCleanup(upstream.close)
        server = self.proxy(upstream.port, args=["--idle-timeout", "1s"])
        with server.connect() as c:
            c.sendall(b"hello?")
            self.assertEqual(self.assert_clean_eof(c, "silent upstream"), b"")
        s = self.settle(server)
        self.assertEqual(s["connections"]["closed"]["idle_timeout"], 1)
        self.stop(server)

    def test_upstream_resets_on_accept(self):
        upstream = PyUpstream(lambda conn, i: reset(conn))
        self.addCleanup(upstream.close)
        server = self.proxy(upstream.port)
        for _ in range(3):
            with server.connect() as c:
                c.sendall(b"hello?")
                self.assertEqual(self.assert_clean_eof(c, "upstream reset on accept"), b"")
        s = self.settle(server)
        self.assertEqual(s["connections"]["closed"]["upstream_failure"], 3)
        self.stop(server)

    def test_upstream_resets_mid_stream(self):
        # The upstream echoes 256 KiB, then resets; the client keeps streaming. It receives
        # exactly the echo the upstream sent, then EOF.
        size = 256 << 10

        def behaviour(conn, index):
            n = 0
            while n < size:
                chunk = conn.recv(min(65536, size - n))
                if not chunk:
                    return
                conn.sendall(chunk)
                n += len(chunk)
            wait_delivered(conn)
            reset(conn)

        upstream = PyUpstream(behaviour)
        self.addCleanup(upstream.close)
        server = self.proxy(upstream.port)
        data = pattern(1 << 20)
        with server.connect() as c:
            sender = Sender(c, data, repeat=64)
            sender.start()
            got = self.assert_clean_eof(c, "upstream reset mid-stream")
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sender.join(WAIT)
        self.assertEqual(len(got), size)
        self.assertTrue(got == data[:size])
        s = self.settle(server)
        self.assertEqual(s["connections"]["closed"]["upstream_failure"], 1)
        self.stop(server)

    def test_upstream_killed_mid_transfer(self):
        self.lingering("killed", clients=4, size=1 << 20)

    def test_upstream_absent(self):
        dead, port = refused_port()
        self.addCleanup(dead.close)
        server = self.proxy(port)
        for _ in range(3):
            with server.connect() as c:
                c.sendall(b"anyone?")
                self.assertEqual(self.assert_clean_eof(c, "absent upstream"), b"")
        s = self.settle(server)
        self.assertEqual(s["connections"]["closed"]["upstream_failure"], 3)
        self.assertGreaterEqual(s["upstream_connect_failures"], 1)
        self.stop(server)

    def test_one_of_two_upstreams_down(self):
        dead, port = refused_port()
        self.addCleanup(dead.close)
        live = PyUpstream()
        self.addCleanup(live.close)
        server = self.proxy(port, live.port, args=["--balance", "round-robin"])
        clients = 10
        for i in range(clients):
            with server.connect() as c:
                assert_echo(c, pattern(8192, seed=i))
                c.shutdown(socket.SHUT_WR)
                self.assertEqual(self.assert_clean_eof(c, "served client"), b"")
        s = self.settle(server)
        self.assertEqual(live.accepted, clients, "every client served by the live upstream")
        self.assertEqual(s["upstream_connect_failures"], 1, "the dead one tried once, then skipped")
        self.assertEqual(s["connections"]["closed"]["upstream_failure"], 0)
        self.stop(server)

    # -- a reset behind the last bytes -----------------------------------------------------------
    # Linux keeps the bytes that came before a RST readable, and says nothing of the reset until
    # they are read: a relay whose read drained them must ask once more, or the peer it writes to
    # waits for the idle timeout (here an hour) to hear that this one is gone.
    def recording_upstream(self, greeting=b"", go=None):
        """An upstream that sends `greeting`, then (once `go` is set, if given) reads until EOF or
        reset. Returns (upstream, record): record["bytes"] holds what it read, record["end"] how
        it ended ("eof", "reset" or "timeout") once it has."""
        record = {"bytes": bytearray(), "end": None}
        ended = threading.Event()

        def behaviour(conn, index):
            conn.sendall(greeting)
            if go is not None:
                go.wait(WAIT)
            try:
                while chunk := conn.recv(1 << 16):
                    record["bytes"] += chunk
                record["end"] = "eof"
            except ConnectionResetError:
                record["end"] = "reset"
            except TimeoutError:
                record["end"] = "timeout"
            ended.set()

        upstream = PyUpstream(behaviour)
        self.addCleanup(upstream.close)
        record["ended"] = ended
        return upstream, record

    def wait_upstream_end(self, record, what):
        if not record["ended"].wait(IO_TIMEOUT + 5) or record["end"] == "timeout":
            self.fail(f"the upstream never heard that {what}")

    def test_client_reset_behind_its_last_bytes_ends_the_upstream_leg(self):
        upstream, record = self.recording_upstream()
        server = self.proxy(upstream.port, args=["--idle-timeout", "1h", "--threads", "1"])
        c = server.connect()
        self.addCleanup(c.close)
        c.sendall(b"first ")
        server.wait_stats(lambda s: s["bytes"]["out"] == 6, "the first bytes to be relayed")
        # Stopped, slabd hears the bytes and the reset in one event, its relay waiting to read.
        with server.stopped():
            c.sendall(b"last words")
            wait_delivered(c)
            reset(c)
        self.wait_upstream_end(record, "its client reset")
        self.assertEqual(bytes(record["bytes"]), b"first last words", "every byte slabd accepted")
        self.assertEqual(record["end"], "eof")
        s = self.settle(server)
        self.assertEqual(s["connections"]["closed"]["error"], 1)
        self.stop(server)

    def test_upstream_reset_behind_its_last_bytes_ends_the_client(self):
        go, sent = threading.Event(), threading.Event()

        def behaviour(conn, index):
            conn.sendall(b"first ")
            go.wait(WAIT)
            conn.sendall(b"last words")
            wait_delivered(conn)
            reset(conn)
            sent.set()

        upstream = PyUpstream(behaviour)
        self.addCleanup(upstream.close)
        server = self.proxy(upstream.port, args=["--idle-timeout", "1h", "--threads", "1"])
        with server.connect() as c:
            self.assertEqual(recv_exact(c, 6), b"first ")
            with server.stopped():
                go.set()
                self.assertTrue(sent.wait(WAIT), "the upstream did not send its last words")
            try:
                got = self.assert_clean_eof(c, "upstream reset behind its last bytes")
            except TimeoutError:
                self.fail("the client never heard that its upstream reset")
        self.assertEqual(got, b"last words", "every byte the upstream sent, then EOF")
        s = self.settle(server)
        self.assertEqual(s["connections"]["closed"]["upstream_failure"], 1)
        self.stop(server)

    def test_client_reset_while_its_relay_waits_to_write_ends_the_upstream_leg(self):
        # The relay is blocked writing to an upstream that does not read yet, so no read of the
        # client is waiting when the reset comes: its edge goes to nobody. Copying, not splicing:
        # a splice reports the reset itself.
        go = threading.Event()
        upstream, record = self.recording_upstream(go=go)
        server = self.proxy(upstream.port, config="splice_pipes = 0\n",
                            args=["--idle-timeout", "1h", "--threads", "1"])
        c = server.connect()
        self.addCleanup(c.close)
        sender = Sender(c, pattern(1 << 20), repeat=64)
        sender.start()
        wait_stalled(server, "the upload to stall", extra=lambda s: s["bytes"]["in"] > 0)
        c.shutdown(socket.SHUT_RDWR)  # wakes the blocked sender; the reset follows
        sender.join(WAIT)
        reset(c)
        go.set()
        self.wait_upstream_end(record, "its client reset")
        self.assertEqual(record["end"], "eof")
        s = self.settle(server)
        self.assertEqual(len(record["bytes"]), s["bytes"]["in"], "every byte slabd accepted")
        self.assertEqual(s["bytes"]["out"], s["bytes"]["in"])
        data, n = pattern(1 << 20), len(record["bytes"])
        self.assertTrue(bytes(record["bytes"]) == (data * (n // len(data) + 1))[:n], "in order")
        self.assertEqual(s["connections"]["closed"]["error"], 1)
        self.stop(server)

    # -- clients ------------------------------------------------------------------------------
    def test_client_that_never_reads(self):
        server = self.start("--threads", "1")
        hog = server.connect(rcvbuf=4096)
        self.addCleanup(hog.close)
        data = pattern(1 << 20)
        sender = Sender(hog, data, repeat=256)  # 256 MiB: far more than any buffer holds
        sender.start()
        stalled = wait_stalled(server, "the hog's echo to block")
        self.assertLess(sender.sent, 256 * len(data), "back-pressure reached the hog")
        # The others are served meanwhile.
        for i in range(20):
            with server.connect() as c:
                assert_echo(c, pattern(64 << 10, seed=i))
        s = server.stats()
        self.assertLessEqual(s["buffers"]["in_use"], 1, "the hog holds at most one buffer")
        self.assertLessEqual(s["bytes"]["in"] - stalled["bytes"]["in"], 20 * (64 << 10),
                             "nothing more was read from the hog")
        hog.shutdown(socket.SHUT_RDWR)  # wakes its blocked sender; a close alone would not
        harness.reset(hog)
        sender.join(WAIT)
        self.settle(server)
        self.stop(server)

    def test_sigterm_under_load(self):
        path = self.write_config('[timeouts]\nshutdown_grace = "30s"\n')
        server = self.start("--config", path, "--threads", "2")
        clients, size = 16, 256 << 10
        socks = self.connect_all(server, clients)
        datas = [pattern(size, seed=i << 18) for i in range(clients)]
        senders = [Sender(s, d) for s, d in zip(socks, datas)]
        for s in senders:
            s.start()
        for s in senders:
            s.finish()  # every byte is in the kernel's hands before the signal
        server.signal(signal.SIGTERM)
        for i, (s, d) in enumerate(zip(socks, datas)):
            got = recv_exact(s, size)
            self.assertTrue(got == d, f"client {i}: echo differs")
            s.shutdown(socket.SHUT_WR)
            self.assertEqual(self.assert_clean_eof(s, f"client {i}"), b"")
        code = server.wait_exit()
        self.assertIsNone(server.sanitizer_report(), server.output())
        self.assertEqual(code, 0, server.output())


if __name__ == "__main__":
    harness.main()
