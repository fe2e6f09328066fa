"""The connection pool's capacity is exact across threads (docs/design.md, decisions 2 and 3): with
--max-connections N and N clients served, the next are refused cleanly (FIN, never a reset) or,
under --on-exhausted pause, wait in the backlog until a block frees."""

import harness
from harness import assert_echo, close_all, readable, recv_to_eof, wait_readable

CAPACITY = 100
EXTRA = 50


class CapacityTest(harness.SlabdTest):
    def test_refuse_is_exact_across_two_threads(self):
        server = self.start("--threads", "2", "--max-connections", str(CAPACITY))
        self.assertEqual(server.capacity, CAPACITY)
        # Every connect succeeds, served or not: the kernel completes it before slabd accepts.
        socks = self.connect_all(server, CAPACITY + EXTRA)
        server.wait_stats(
            lambda s: s["connections"]["accepted"] + s["connections"]["refused"] == CAPACITY + EXTRA,
            "every client to be accepted or refused")
        # A refused client is closed at once, a served one is sent nothing: the readable are the
        # refused.
        refused = wait_readable(socks, EXTRA, "the refused clients' EOF")
        self.assertEqual(len(refused), EXTRA)
        for c in refused:
            self.assertEqual(recv_to_eof(c), b"", "a refused client reads EOF, not a reset")
        served = [c for c in socks if c not in refused]
        for i, c in enumerate(served):
            assert_echo(c, f"served {i}\n".encode())
        s = server.stats()
        self.assertEqual(s["connections"]["accepted"], CAPACITY)
        self.assertEqual(s["connections"]["refused"], EXTRA)
        self.assertEqual(s["connections"]["active"], CAPACITY)
        self.assertEqual(s["pool"]["in_use"], CAPACITY)
        self.assertEqual(s["pool"]["free"], 0)
        self.assertEqual(s["pool"]["capacity"], CAPACITY)
        self.assertEqual(len(s["shards"]), 2)
        self.assertTrue(all(shard["accepted"] > 0 for shard in s["shards"]),
                        f"both threads accept: {s['shards']}")
        # Refusals never touch the served.
        for i, c in enumerate(served):
            assert_echo(c, f"still served {i}\n".encode())

        close_all(served)
        server.wait_stats(lambda s: s["pool"]["in_use"] == 0, "every block back in the pool")
        again = self.connect_all(server, 5)
        for i, c in enumerate(again):
            assert_echo(c, f"served again {i}\n".encode())
        s = server.stats()
        self.assertEqual(s["connections"]["refused"], EXTRA)
        self.assertEqual(s["pool"]["in_use"], 5)
        self.stop(server)

    def test_busy_message_then_eof(self):
        server = self.start("--threads", "2", "--max-connections", "1", "--busy-message", "busy")
        with server.connect() as first:
            assert_echo(first, b"first")
            with server.connect() as second:
                self.assertEqual(recv_to_eof(second), b"busy\n", "the busy line, then EOF")
            assert_echo(first, b"first, untouched")
        s = server.stats()
        self.assertEqual(s["connections"]["refused"], 1)
        self.stop(server)

    def test_a_newcomer_gets_the_block_of_a_client_that_hung_up_before_it_was_seen(self):
        # One thread and a stopped slabd: when it goes on, epoll hands it the newcomer before the
        # hang-up that frees a block, in the order the kernel queued them.
        server = self.start("--threads", "1", "--max-connections", "2", "--busy-message", "busy")
        leaving, staying = self.connect_all(server, 2)
        assert_echo(leaving, b"leaving\n")
        assert_echo(staying, b"staying\n")
        newcomer = server.newcomer_behind_a_hang_up(leaving, server.connect)
        self.addCleanup(newcomer.close)
        self.assertEqual(newcomer.recv(64), b"newcomer\n",
                         "served, not refused: the pool was full only of a client already gone")
        s = server.stats()
        self.assertEqual(s["connections"]["held_for_closes"], 1, "held while the hang-up was seen")
        self.assertEqual(s["connections"]["refused"], 0)
        self.assertEqual(s["connections"]["accepted"], 3)
        self.assertEqual(s["pool"]["in_use"], 2)
        # Full for real, the next newcomer is refused after the same one look.
        with server.connect() as extra:
            self.assertEqual(recv_to_eof(extra), b"busy\n")
        s = server.stats()
        self.assertEqual(s["connections"]["held_for_closes"], 2)
        self.assertEqual(s["connections"]["refused_by_reason"]["pool_full"], 1)
        assert_echo(staying, b"untouched\n")
        assert_echo(newcomer, b"untouched\n")
        self.stop(server)

    def test_pause_holds_newcomers_until_blocks_free(self):
        server = self.start("--threads", "2", "--max-connections", str(CAPACITY), "--on-exhausted", "pause")
        socks = self.connect_all(server, CAPACITY + EXTRA)
        for i, c in enumerate(socks):
            c.sendall(f"client {i:03}\n".encode())
        line = len("client 000\n")
        served = wait_readable(socks, CAPACITY, "the served clients' echo")
        s = server.wait_stats(lambda s: s["connections"]["paused"] > 0, "accepting to pause")
        self.assertEqual(len(served), CAPACITY)
        for c in served:
            i = socks.index(c)
            self.assertEqual(harness.recv_exact(c, line), f"client {i:03}\n".encode())
        waiting = [c for c in socks if c not in served]
        self.assertEqual(s["connections"]["accepted"], CAPACITY)
        self.assertEqual(s["connections"]["refused"], 0)
        self.assertEqual(s["pool"]["in_use"], CAPACITY)
        ready = readable(waiting, 0.5)
        self.assertEqual(ready, [], "a waiting client is neither answered nor closed")

        # Each block that frees lets one waiting client in, whichever thread it waits on.
        for batch in (10, EXTRA - 10):
            leaving, served = served[:batch], served[batch:]
            close_all(leaving)
            admitted = wait_readable(waiting, batch, "waiting clients to be served")
            self.assertEqual(len(admitted), batch)
            for c in admitted:
                i = socks.index(c)
                self.assertEqual(harness.recv_exact(c, line), f"client {i:03}\n".encode())
                assert_echo(c, b"now served\n")
            waiting = [c for c in waiting if c not in admitted]
            served += admitted
        self.assertEqual(waiting, [])
        s = server.stats()
        self.assertEqual(s["connections"]["accepted"], CAPACITY + EXTRA)
        self.assertEqual(s["connections"]["refused"], 0)
        self.assertGreater(s["connections"]["paused"], 0)
        self.assertEqual(s["pool"]["in_use"], CAPACITY)

        close_all(served)
        s = server.wait_stats(lambda s: s["pool"]["in_use"] == 0, "every block back in the pool")
        self.assertEqual(s["connections"]["active"], 0)
        with server.connect() as c:
            assert_echo(c, b"after the wave")
        self.stop(server)


if __name__ == "__main__":
    harness.main()
