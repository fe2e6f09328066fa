"""Echo mode over real sockets: every byte comes back, in order, at any size, on many connections
at once, and a client's half-close is answered by the rest of its echo, then EOF."""

import socket
import threading

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
        # The buffer figures are refreshed on the shard's clock tick, so they may lag a little.
        s = self.server.wait_stats(
            lambda s: s["connections"]["active"] == 0 and s["buffers"]["in_use"] == 0,
            "the client to be closed and every buffer lent during the stream to be back")
        self.assertEqual(s["bytes"]["in"], size)
        self.assertEqual(s["bytes"]["out"], size)
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


class BufferPoolTest(harness.SlabdTest):
    def test_dry_buffer_pool_applies_back_pressure_without_loss(self):
        # One write buffer for the whole server: a client that does not read holds it, and every
        # other connection must stop reading (not drop, not spin) until it comes back.
        path = self.write_config("[pool]\nbuffer_count = 1\n")
        server = self.start("--config", path, "--threads", "1")
        # Small client receive windows, and more bytes than the kernel buffers between a client
        # and slabd hold (4 MiB at most for slabd's send buffer here), so that writes block.
        clients, size = 8, 8 << 20
        socks = []
        self.addCleanup(harness.close_all, socks)
        for _ in range(clients):
            socks.append(server.connect(rcvbuf=16 << 10))
        senders = [harness.Sender(c, pattern(size, seed=i * size)) for i, c in enumerate(socks)]
        for sender in senders:
            sender.start()
        server.wait_stats(lambda s: s["connections"]["buffer_waits"] > 0, "a connection to wait for a buffer")
        results = [None] * clients

        def read_back(i):
            try:
                results[i] = recv_exact(socks[i], size) == pattern(size, seed=i * size)
            except (OSError, AssertionError) as e:
                results[i] = e

        readers = [threading.Thread(target=read_back, args=(i,), daemon=True) for i in range(clients)]
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.join(harness.WAIT)
        for sender in senders:
            sender.finish()
        self.assertEqual(results, [True] * clients, "every connection got exactly its own bytes back")
        s = server.stats()
        self.assertEqual(s["buffers"]["capacity"], 1)
        self.assertEqual(s["connections"]["active"], clients)
        harness.close_all(socks)
        s = server.wait_stats(lambda s: s["connections"]["active"] == 0, "every client to be closed")
        self.assertEqual(s["connections"]["closed"]["client_eof"], clients)
        self.stop(server)


if __name__ == "__main__":
    harness.main()
