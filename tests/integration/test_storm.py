"""Storm at capacity: max_connections 1000 on 2 threads; resident clients stream verified echo
traffic while waves of newcomers from 127.0.0.2.. arrive. 0 resident bytes lost, 0 resets among
the refused (busy line, then EOF), accepted + refused in /stats equal what the clients saw,
in_use 0 at the end, RSS flat. Sizes shrink under sanitizers so the run stays well under 300 s."""

import selectors
import socket
import threading
import time

import harness
from harness import WAIT, assert_echo, pattern, rejected_frees, rss_kib, stats_settled

CAPACITY = 1000
BUSY = b"BUSY"
IP_BIND_ADDRESS_NO_PORT = 24
SCALE = {None: (500, 6000, 3), "asan": (400, 3000, 3), "tsan": (200, 3000, 3)}  # each wave outnumbers the free blocks
RSS_SLACK_KIB = 32 << 10  # RSS after the storm within this of RSS with the residents up


class Residents(threading.Thread):
    """Streams a pattern on every resident socket, at most WINDOW bytes in flight each, checking
    every echoed byte, until stopped."""

    WINDOW = 8192

    def __init__(self, socks):
        super().__init__(daemon=True)
        self.socks = socks
        self.stream = pattern(1 << 16)
        self.sent = {s: 0 for s in socks}
        self.got = {s: 0 for s in socks}
        self.errors = []
        self.stopping = threading.Event()

    def run(self):
        sel = selectors.DefaultSelector()
        n = len(self.stream)
        for s in self.socks:
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE)
        try:
            while not self.stopping.is_set():
                for key, events in sel.select(0.1):
                    s = key.fileobj
                    if events & selectors.EVENT_READ:
                        try:
                            chunk = s.recv(1 << 16)
                        except BlockingIOError:
                            chunk = None
                        except OSError as e:
                            self.errors.append(repr(e))
                            sel.unregister(s)
                            continue
                        if chunk == b"":
                            self.errors.append("a resident saw EOF")
                            sel.unregister(s)
                            continue
                        if chunk:
                            at = self.got[s] % n
                            expect = (self.stream[at:] + self.stream)[:len(chunk)]
                            if chunk != expect:
                                self.errors.append(f"resident echo differs after {self.got[s]} bytes")
                            self.got[s] += len(chunk)
                    if events & selectors.EVENT_WRITE:
                        room = self.WINDOW - (self.sent[s] - self.got[s])
                        if room > 0:
                            at = self.sent[s] % n
                            try:
                                self.sent[s] += s.send(self.stream[at:at + room])
                            except BlockingIOError:
                                pass
                            except OSError as e:
                                self.errors.append(repr(e))
                                sel.unregister(s)
        finally:
            sel.close()

    def total(self):
        return sum(self.got.values())


class StormTest(harness.SlabdTest):
    def wave(self, server, count, first_source):
        """`count` newcomers at once, from 127.0.0.<first_source>..; each sends a line and reads.
        Returns (accepted, refused, resets, other outcomes); accepted ones stay open until every
        newcomer of the wave has its answer, then close."""
        sel = selectors.DefaultSelector()
        state = {}
        for i in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            s.bind((f"127.0.0.{first_source + i % 200}", 0))
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", server.port))
            line = b"hello %d\n" % i
            state[s] = {"line": line, "data": b"", "sent": False}
            sel.register(s, selectors.EVENT_WRITE)
        accepted, refused, resets, other = [], 0, 0, []
        pending = set(state)
        deadline = time.monotonic() + WAIT
        while pending and time.monotonic() < deadline:
            for key, events in sel.select(0.2):
                s = key.fileobj
                st = state[s]
                if not st["sent"]:
                    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    st["sent"] = True
                    if err:
                        other.append(f"connect error {err}")
                        pending.discard(s)
                        sel.unregister(s)
                        continue
                    try:
                        s.send(st["line"])
                    except OSError:
                        pass  # refused before the line went out: the read below says so
                    sel.modify(s, selectors.EVENT_READ)
                    continue
                try:
                    chunk = s.recv(4096)
                except BlockingIOError:
                    continue
                except ConnectionResetError:
                    resets += 1
                    pending.discard(s)
                    sel.unregister(s)
                    continue
                st["data"] += chunk
                if chunk and st["data"] == st["line"]:
                    accepted.append(s)
                elif not chunk:
                    if st["data"] in (BUSY + b"\n",):
                        refused += 1
                    else:
                        other.append(f"EOF after {st['data']!r}")
                elif len(st["data"]) <= max(len(st["line"]), len(BUSY) + 1):
                    continue
                else:
                    other.append(f"unexpected {st['data']!r}")
                pending.discard(s)
                sel.unregister(s)
        if pending:
            other.append(f"{len(pending)} newcomers without an answer after {WAIT:.0f} s")
        sel.close()
        harness.close_all(state)
        return len(accepted), refused, resets, other

    def test_storm_at_capacity(self):
        residents_n, newcomers, waves = SCALE[harness.sanitized_binary()]
        server = self.start("--threads", "2", "--max-connections", str(CAPACITY),
                            "--busy-message", BUSY.decode(), "--idle-timeout", "0")
        socks = self.connect_all(server, residents_n)
        for i, s in enumerate(socks):
            assert_echo(s, b"resident %d" % i)
        residents = Residents(socks)
        residents.start()
        self.addCleanup(residents.stopping.set)
        server.wait_stats(lambda s: s["connections"]["active"] == residents_n, "the residents")
        time.sleep(1.0)  # traffic under way: the buffers in use are warm
        rss_before = rss_kib(server.pid)
        moved_before = residents.total()

        seen_accepted = seen_refused = seen_resets = 0
        others = []
        per_wave = newcomers // waves
        for w in range(waves):
            a, r, x, o = self.wave(server, per_wave, first_source=2 + 10 * w)
            seen_accepted += a
            seen_refused += r
            seen_resets += x
            others += o
            server.wait_stats(lambda s: s["connections"]["active"] == residents_n,
                              f"wave {w}'s newcomers to be closed")
        self.assertEqual(seen_resets, 0, "resets among the newcomers")
        self.assertEqual(others[:10], [], f"{len(others)} newcomers neither served nor refused cleanly")
        self.assertGreater(seen_refused, 0, "the storm reached capacity")
        self.assertLessEqual(seen_accepted, waves * (CAPACITY - residents_n))
        # The residents were served throughout.
        self.assertGreater(residents.total(), moved_before, "resident traffic went on")
        residents.stopping.set()
        residents.join(WAIT)
        self.assertEqual(residents.errors[:10], [], "resident errors")
        for s in socks:
            s.setblocking(True)
            s.settimeout(harness.IO_TIMEOUT)
            left = residents.sent[s] - residents.got[s]
            got = harness.recv_exact(s, left) if left else b""
            at = residents.got[s] % len(residents.stream)
            self.assertTrue(got == (residents.stream[at:] + residents.stream)[:left], "the last resident echo")
        rss_after = rss_kib(server.pid)
        harness.close_all(socks)
        s = server.wait_stats(stats_settled, "every connection closed and every block returned")
        c = s["connections"]
        self.assertEqual(c["accepted"], residents_n + seen_accepted, "accepted in /stats vs seen")
        self.assertEqual(c["refused"], seen_refused, "refused in /stats vs seen")
        self.assertEqual(rejected_frees(s), {k: 0 for k in rejected_frees(s)})
        self.assertLessEqual(rss_after, rss_before + RSS_SLACK_KIB,
                             f"RSS {rss_before} KiB with the residents, {rss_after} KiB after the storm")
        print(f"\nstorm: {residents_n} residents, {seen_accepted} newcomers served, {seen_refused} refused, "
              f"RSS {rss_before} -> {rss_after} KiB", flush=True)
        self.stop(server)


if __name__ == "__main__":
    harness.main()
