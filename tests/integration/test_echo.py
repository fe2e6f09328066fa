"""Echo mode over real sockets: every byte comes back, in order, at any size, on many connections
at once, and a client's half-close is answered by the rest of its echo, then EOF."""

import socket
import unittest

import harness
from harness import assert_echo, pattern, recv_exact, recv_to_eof, stream_echo


class EchoTest(harness.SlabdTest):
    def setUp(self):
        self.server = self.start("--threads", "2")

    def test_one_byte(self):
        with self.server.connect() as c:
            assert_echo(c, b"x")
        s = self.server.wait_stats(lambda s: s["connections"]["active"] == 0, "the client to be closed")
        self.assertEqual(s["connections"]["accepted"], 1)
        self.assertEqual(s["connections"]["closed"]["client_eof"], 1)
        self.stop(self.server)

    def test_64_kib(self):
        with self.server.connect() as c:
            stream_echo(c, 64 << 10)
        self.stop(self.server)

    def test_16_mib_streamed(self):
        size = 16 << 20
        with self.server.connect() as c:
            stream_echo(c, size)
            c.shutdown(socket.SHUT_WR)
            self.assertEqual(recv_to_eof(c), b"", "bytes after the echo was complete")
        s = self.server.wait_stats(lambda s: s["connections"]["active"] == 0, "the client to be closed")
        self.assertEqual(s["bytes"]["in"], size)
        self.assertEqual(s["bytes"]["out"], size)
        self.assertEqual(s["buffers"]["in_use"], 0, "every write buffer lent during the stream is back")
        self.stop(self.server)

    def test_200_connections_at_once(self):
        n, size = 200, 4096
        socks = self.connect_all(self.server, n)
        # All open at once, each with its own bytes: a mix-up between connections shows.
        for i, c in enumerate(socks):
            c.sendall(pattern(size, seed=i * size))
        for i, c in enumerate(socks):
            self.assertEqual(recv_exact(c, size), pattern(size, seed=i * size), f"connection {i}")
        s = self.server.stats()
        self.assertEqual(s["connections"]["active"], n)
        self.assertEqual(s["pool"]["in_use"], n)
        self.assertEqual(sum(shard["accepted"] for shard in s["shards"]), n)
        for c in socks:
            c.close()
        s = self.server.wait_stats(lambda s: s["pool"]["in_use"] == 0, "every block back in the pool")
        self.assertEqual(s["connections"]["closed"]["client_eof"], n)
        self.assertEqual(s["pool"]["high_water"], n)
        self.stop(self.server)

    def test_half_close_returns_everything_then_eof(self):
        data = pattern(256 << 10, seed=7)
        with self.server.connect() as c:
            sender = harness.Sender(c, data, shutdown=True)
            sender.start()
            got = recv_to_eof(c)
            sender.finish()
        self.assertEqual(len(got), len(data))
        self.assertTrue(got == data, f"echo differs at byte {harness.first_difference(got, data)}")
        s = self.server.wait_stats(lambda s: s["connections"]["active"] == 0, "the client to be closed")
        self.assertEqual(s["connections"]["closed"]["client_eof"], 1)
        self.stop(self.server)


if __name__ == "__main__":
    harness.main()
