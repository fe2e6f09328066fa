"""Out of file descriptors (docs/design.md, decision 12): with RLIMIT_NOFILE far below the pool, a
connection storm makes accept() fail with EMFILE. slabd spends its reserved descriptor to accept
each newcomer it has no room for and refuse it cleanly (busy line, then FIN), counts those under
the fd_limit reason, never spins on the listener, and serves again once descriptors free up."""

import os
import select
import socket
import threading
import time

import harness
from harness import IO_TIMEOUT, WAIT, assert_echo, close_all

NOFILE = 64
STORM = 300
STORM_WITH_ADMIN = 1000
MEASURE = 2.0  # seconds of CPU accounting while accept keeps failing


def cpu_seconds(pid):
    """utime + stime of a process, from /proc/PID/stat (fields 14 and 15, after the comm)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_descriptors(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def readable(sock):
    """select() without its limit of 1,024 descriptors: this test holds more."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


def client_sockets(pid, threads):
    """The sockets slabd holds open, less its listeners (one per shard, and the admin one)."""
    sockets = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            sockets += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except FileNotFoundError:
            pass  # closed meanwhile
    return sockets - int(threads) - 1


class EmfileTest(harness.SlabdTest):
    def test_storm_at_the_descriptor_limit_backs_off_and_recovers(self):
        server = self.start("--threads", "1", "--max-connections", "1000", "--busy-message", "BUSY",
                            nofile=NOFILE)
        self.assertIn("accept will fail", server.stderr(), "slabd warns that the limit is below the pool")
        storm_began = time.monotonic()
        socks = self.connect_all(server, STORM)

        deadline = time.monotonic() + WAIT
        while open_descriptors(server.pid) < NOFILE:
            self.assertLess(time.monotonic(), deadline, "slabd never reached its descriptor limit")
            time.sleep(harness.POLL)

        # The backlog still holds most of the storm, so the listener stays readable throughout.
        cpu_before, wall_before = cpu_seconds(server.pid), time.monotonic()
        time.sleep(MEASURE)
        cpu = cpu_seconds(server.pid) - cpu_before
        wall = time.monotonic() - wall_before
        self.assertLess(cpu, 0.5 * wall, f"slabd used {cpu:.2f} s of CPU in {wall:.2f} s at EMFILE: spinning")
        self.assertTrue(server.running())

        # Every newcomer beyond the descriptor limit was refused at once, cleanly: the busy line,
        # then EOF, never a reset and never left waiting in the backlog.
        # (The admin endpoint is at the limit too, so /stats is read once descriptors are back.)
        closed_by_server = 0
        for sock in socks:
            if not select.select([sock], [], [], 0)[0]:
                continue  # an accepted client: slabd holds it open
            sock.settimeout(harness.IO_TIMEOUT)
            received = b""
            while chunk := sock.recv(4096):  # a reset raises ConnectionResetError
                received += chunk
            self.assertEqual(received, b"BUSY\n")
            closed_by_server += 1
        self.assertGreater(closed_by_server, 0)

        close_all(socks)
        s = server.wait_stats(lambda s: s["connections"]["active"] == 0, "the held connections to close")
        self.assertEqual(s["connections"]["refused"], closed_by_server)
        self.assertEqual(s["connections"]["refused_by_reason"]["fd_limit"], closed_by_server)
        # The load-proof bound: on a busy machine a spinning slabd may get too little CPU to fail
        # the check above, but it still fails accept thousands of times a second. Each failed
        # accept refuses the newcomers waiting then (at least one), or backs off, from 10 ms
        # doubling up to 1 s, when the reserved descriptor cannot be had.
        errors, seconds = s["connections"]["accept_errors"], time.monotonic() - storm_began
        self.assertGreater(errors, 0)
        self.assertLess(errors, closed_by_server + 20 + 10 * seconds,
                        f"{errors} failed accepts in {seconds:.1f} s for {closed_by_server} refusals: spinning")
        self.assertEqual(s["connections"]["accepted"] + s["connections"]["refused"], STORM)
        self.assertEqual(s["pool"]["in_use"], 0)
        self.assertIn("Too many open files", server.stderr())
        self.assertIn("fd_limit", server.stderr())

        with server.connect() as c:
            assert_echo(c, b"served after the storm")
        self.stop(server)

    def test_a_descriptor_another_thread_takes_for_a_moment_does_not_cost_the_reserve(self):
        """Other threads take descriptors too: Linux gives accept(2) one before it looks at the
        queue, so every accept on the admin listener holds one for a moment, even with nobody
        waiting, and the admin endpoint spends its spare to answer at the limit. Neither the
        shard's reserve nor the admin's spare may end up a client's, or the rest of a storm waits
        in the backlog, or health checks go unanswered, until a held client leaves (two CI
        failures of the test above; docs/design.md, decision 28)."""
        for threads in ("1", "2"):  # with two, each shard's reserve is also the other's risk
            with self.subTest(threads=threads):
                self.storm_beside_the_admin_endpoint(threads)

    def storm_beside_the_admin_endpoint(self, threads):
        server = self.start("--threads", threads, "--max-connections", "1000",
                            "--busy-message", "BUSY", nofile=NOFILE)
        hammering = threading.Event()
        hammering.set()

        def hammer_the_admin_endpoint():
            while hammering.is_set():
                try:
                    with socket.create_connection(("127.0.0.1", server.admin_port),
                                                  timeout=1.0) as c:
                        c.sendall(b"GET /healthz HTTP/1.1\r\nHost: slabd\r\n"
                                  b"Connection: close\r\n\r\n")
                        while c.recv(4096):
                            pass
                except OSError:
                    time.sleep(0.001)  # refused or evicted at the limit: the next one tries again

        hammer = threading.Thread(target=hammer_the_admin_endpoint)
        hammer.start()
        try:
            socks = self.connect_all(server, STORM_WITH_ADMIN)
        finally:
            hammering.clear()
            hammer.join()

        # Every held client stays connected, so only a reserve that is always taken back can
        # refuse the rest of the storm: each newcomer is either refused (the busy line, then EOF)
        # or held, a client socket of slabd's.
        # (Twice alike: an admin session that has not closed yet would count as held.)
        deadline, seen = time.monotonic() + WAIT, None
        while True:
            refused = sum(1 for sock in socks if readable(sock))
            held = client_sockets(server.pid, threads)
            now = (refused, held) if refused + held == STORM_WITH_ADMIN else None
            if now is not None and now == seen:
                break
            seen = now
            self.assertLess(time.monotonic(), deadline,
                            f"{STORM_WITH_ADMIN - refused - held} newcomers still wait in the "
                            f"backlog ({refused} refused, {held} held)")
            time.sleep(harness.POLL)
        for sock in socks:
            if readable(sock):
                sock.settimeout(IO_TIMEOUT)
                received = b""
                while chunk := sock.recv(4096):
                    received += chunk
                self.assertEqual(received, b"BUSY\n")
        # And the admin endpoint's spare was never a client's either: it answers at the limit.
        self.assertEqual(server.get("/healthz")[0], 200)
        self.assertEqual(server.stats()["connections"]["accepted"], held)

        close_all(socks)
        s = server.wait_stats(lambda s: s["connections"]["active"] == 0,
                              "the held connections to close")
        self.assertEqual(s["connections"]["accepted"], held)
        self.assertEqual(s["connections"]["refused_by_reason"]["fd_limit"], refused)
        with server.connect() as c:
            assert_echo(c, b"served after the storm")
        self.stop(server)


if __name__ == "__main__":
    harness.main()
