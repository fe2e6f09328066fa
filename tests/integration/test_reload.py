"""Reload without a restart (issue 10): SIGHUP adds and removes upstreams and changes the balance
policy while clients come and go, grows the connection pool from 100 to 1,000 blocks and shrinks
it back with every connection held, and reports each outcome (applied, rejected with the reason,
needs restart: which keys) in the log and in /stats."""

import resource
import signal
import socket
import threading
import time

import harness
from harness import IO_TIMEOUT, assert_echo, close_all, recv_to_eof, wait_readable


def upstream_line(port):
    return f'"127.0.0.1:{port}"'


class Churn(threading.Thread):
    """Short clients one after another, each checked to echo through; counts what went wrong."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.stopping = threading.Event()
        self.served = 0
        self.failures = []

    def run(self):
        while not self.stopping.is_set():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=IO_TIMEOUT) as c:
                    payload = f"churn {self.served}\n".encode()
                    c.sendall(payload)
                    got = b""
                    while len(got) < len(payload):
                        chunk = c.recv(len(payload) - len(got))
                        if not chunk:
                            break
                        got += chunk
                    if got != payload:
                        self.failures.append(f"client {self.served}: got {got!r}")
                    self.served += 1
            except OSError as e:
                self.failures.append(f"client {self.served}: {e!r}")
                time.sleep(0.01)

    def finish(self, test):
        self.stopping.set()
        self.join(harness.WAIT)
        test.assertEqual(self.failures, [], "every churn client served")
        test.assertGreater(self.served, 0)


class ReloadTest(harness.SlabdTest):
    def setUp(self):
        # 1,000 clients held by this process and 1,000 by slabd.
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < min(hard, 4096):
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
        self.held = []
        self.addCleanup(close_all, self.held)

    def hold(self, server, n):
        socks = [server.connect() for _ in range(n)]
        self.held += socks
        return socks

    def reload(self, server, config, text, *lines):
        """Rewrites the config, sends SIGHUP and waits for each of `lines` in the log."""
        with open(config, "w") as f:
            f.write(text)
        applied_before = server.stats()["reload"]["applied"]
        server.signal(signal.SIGHUP)
        server.wait_stats(lambda s: s["reload"]["applied"] > applied_before, "the reload applied")
        for line in lines:
            self.wait_log(server, line)
        return server.stats()

    def wait_log(self, server, line):
        # The log reaches the pipe a moment after /stats counts the reload.
        deadline = time.monotonic() + harness.WAIT
        while line not in server.stderr():
            self.assertLess(time.monotonic(), deadline, f"no {line!r} in the log:\n{server.output()}")
            time.sleep(harness.POLL)

    def upstream_state(self, proxy):
        return {u["name"]: (u["state"], u["active"]) for u in proxy.stats()["upstreams"]}

    def test_upstreams_added_and_removed_under_load(self):
        a, b, c = (self.start("--threads", "1") for _ in range(3))
        config = self.write_config(f'[proxy]\nupstreams = [{upstream_line(a.port)}, {upstream_line(b.port)}]\n')
        proxy = self.start("--config", config, "--mode", "proxy", "--threads", "2")
        name = {x: f"127.0.0.1:{x.port}" for x in (a, b, c)}
        # Held through every reload: two on each upstream (round-robin).
        held = self.hold(proxy, 4)
        for i, s in enumerate(held):
            assert_echo(s, f"held {i}\n".encode())
        self.assertEqual(a.stats()["connections"]["active"], 2)
        churn = Churn(proxy.port)
        churn.start()
        proxy.wait_stats(lambda s: s["connections"]["accepted"] > 50, "churn through the proxy")

        # a out, c in: new clients go to b and c at once; a's relays go on.
        s = self.reload(proxy, config,
                        f'[proxy]\nupstreams = [{upstream_line(b.port)}, {upstream_line(c.port)}]\n'
                        'balance = "least-connections"\n',
                        f"reload: changed proxy.upstreams: added {name[c]}",
                        f"reload: changed proxy.upstreams: removed {name[a]} (its relays finish)",
                        'reload: changed proxy.balance "round-robin" -> "least-connections"')
        self.assertEqual(s["reload"]["needs_restart"], [])
        self.assertEqual(self.upstream_state(proxy)[name[a]], ("removed", 2))
        a_accepted = a.stats()["connections"]["accepted"]
        c.wait_stats(lambda st: st["connections"]["accepted"] > 20, "churn reaching the added upstream")
        # The churn runs one client at a time: at most that one was on its way to a at the reload.
        self.assertLessEqual(a.stats()["connections"]["accepted"], a_accepted + 1,
                             "a removed upstream takes no one new")
        for i, s in enumerate(held):
            assert_echo(s, f"held {i} after the reload\n".encode())
        # Its relays done, a removed upstream leaves /stats.
        close_all(held)
        proxy.wait_stats(lambda st: name[a] not in {u["name"] for u in st["upstreams"]},
                         "the removed upstream gone once its relays finished")

        # a back in, in the slot it left: the three share the clients.
        self.reload(proxy, config,
                    f'[proxy]\nupstreams = [{upstream_line(a.port)}, {upstream_line(b.port)}, '
                    f'{upstream_line(c.port)}]\n',
                    f"reload: changed proxy.upstreams: added {name[a]}")
        a.wait_stats(lambda st: st["connections"]["accepted"] > a_accepted + 5, "churn reaching a again")
        churn.finish(self)
        states = self.upstream_state(proxy)
        self.assertEqual(sorted(states), sorted(name.values()))
        self.assertTrue(all(state == "up" for state, _ in states.values()), states)
        status, metrics = proxy.get("/metrics")
        self.assertEqual(status, 200)
        self.assertIn('slabd_reloads_total{outcome="applied"} 2', metrics)
        for x in (proxy, a, b, c):
            self.stop(x)

    def test_pool_grows_from_100_to_1000_and_shrinks_back_under_load(self):
        config = self.write_config("[pool]\nmax_connections = 100\nreserve = 1000\n")
        server = self.start("--config", config, "--threads", "2", "--busy-message", "busy")
        self.assertEqual(server.capacity, 100)

        def pool():
            p = server.stats()["pool"]
            return p["capacity"], p["limit"], p["reserved"], p["in_use"]

        held = self.hold(server, 90)
        # One client at a time: never past 91 of 100, as a shard sees a client's hang-up before it
        # refuses the next for want of a block (shard::refuse_for_room).
        churn = Churn(server.port)
        churn.start()
        server.wait_stats(lambda s: s["connections"]["accepted"] > 150, "churn")
        self.assertEqual(pool()[:3], (100, 100, 1000))

        s = self.reload(server, config, "[pool]\nmax_connections = 1000\nreserve = 1000\n",
                        "reload: changed pool.max_connections 100 -> 1000")
        self.assertEqual((s["pool"]["capacity"], s["pool"]["limit"]), (1000, 1000))
        held += self.hold(server, 900)
        server.wait_stats(lambda st: st["connections"]["active"] >= 990, "990 clients held")
        for i in range(0, len(held), 97):
            assert_echo(held[i], f"held {i}\n".encode())
        churn.finish(self)
        server.wait_stats(lambda st: st["pool"]["in_use"] == 990, "churn gone")
        self.assertEqual(pool(), (1000, 1000, 1000, 990))
        # Ten more fill it exactly; the next is refused.
        held += self.hold(server, 10)
        server.wait_stats(lambda st: st["pool"]["in_use"] == 1000, "the pool full at 1,000")
        with server.connect() as extra:
            self.assertEqual(recv_to_eof(extra), b"busy\n")
        self.assertEqual(server.stats()["connections"]["refused_by_reason"]["pool_full"], 1)

        # Back to 100: no one is closed, and no one new is admitted until fewer than 100 remain.
        s = self.reload(server, config, "[pool]\nmax_connections = 100\nreserve = 1000\n",
                        "reload: changed pool.max_connections 1000 -> 100")
        self.assertEqual(pool(), (1000, 100, 1000, 1000))
        self.assertEqual(s["pool"]["free"], 0)
        with server.connect() as extra:
            self.assertEqual(recv_to_eof(extra), b"busy\n")
        for i in range(0, len(held), 97):
            assert_echo(held[i], f"held {i} after the shrink\n".encode())
        close_all(held[99:])
        del held[99:]
        server.wait_stats(lambda st: st["pool"]["in_use"] == 99, "901 clients gone")
        self.assertEqual(pool(), (1000, 100, 1000, 99))
        held += self.hold(server, 1)
        server.wait_stats(lambda st: st["pool"]["in_use"] == 100, "one admitted under the limit")
        with server.connect() as extra:
            self.assertEqual(recv_to_eof(extra), b"busy\n")
        s = server.stats()
        self.assertEqual(s["connections"]["refused_by_reason"]["pool_full"], 3)
        self.assertEqual(s["connections"]["closed"]["shutdown"] + s["connections"]["closed"]["evicted"], 0)

        # Past the reservation only a restart can grow it: named, and nothing changes.
        s = self.reload(server, config, "[pool]\nmax_connections = 2000\nreserve = 4000\n",
                        "reload: pool.max_connections 2000 is past pool.reserve 1000")
        self.wait_log(server, "reload: changed but only a restart applies: pool.max_connections, pool.reserve")
        self.assertEqual(s["reload"]["needs_restart"], ["pool.max_connections", "pool.reserve"])
        self.assertEqual(pool()[:2], (1000, 100))
        close_all(held)
        self.stop(server)

    def test_a_paused_newcomer_is_served_when_the_pool_grows(self):
        config = self.write_config('[pool]\nmax_connections = 4\non_exhausted = "pause"\n')
        server = self.start("--config", config, "--threads", "2")
        held = self.hold(server, 4)
        server.wait_stats(lambda s: s["pool"]["in_use"] == 4, "the pool full")
        waiting = server.connect()
        self.held.append(waiting)
        waiting.sendall(b"waited\n")
        server.wait_stats(lambda s: s["connections"]["paused"] >= 1, "the newcomer paused")
        self.reload(server, config, '[pool]\nmax_connections = 8\non_exhausted = "pause"\n',
                    "reload: changed pool.max_connections 4 -> 8")
        self.assertEqual(waiting.recv(64), b"waited\n")
        self.assertEqual(server.stats()["pool"]["in_use"], 5)
        for s in held:
            assert_echo(s, b"untouched\n")
        self.stop(server)

    def test_a_config_that_no_longer_loads_is_rejected_and_changes_nothing(self):
        config = self.write_config("[pool]\nmax_connections = 10\n")
        server = self.start("--config", config)
        with open(config, "w") as f:
            f.write("[pool]\nmax_connections = 20\nmax_conections = 5\n")
        server.signal(signal.SIGHUP)
        s = server.wait_stats(lambda st: st["reload"]["rejected"] == 1, "the reload rejected")
        self.assertEqual(s["reload"]["last"], "rejected")
        self.assertIn(f"{config}:3: pool.max_conections: unknown key", s["reload"]["error"])
        self.assertEqual(s["pool"]["limit"], 10, "nothing changed")
        # Then one that loads, with a key only a restart applies.
        self.reload(server, config, "[pool]\nmax_connections = 20\n[server]\nthreads = 3\n",
                    "reload: changed pool.max_connections 10 -> 20")
        s = server.stats()
        self.assertEqual((s["reload"]["last"], s["reload"]["applied"]), ("applied", 1))
        self.assertEqual(s["reload"]["needs_restart"], ["server.threads"])
        self.assertEqual(s["reload"]["changed"], ["pool.max_connections 10 -> 20"])
        self.assertIn('slabd_reload_needs_restart_settings 1', server.get("/metrics")[1])
        self.stop(server)


if __name__ == "__main__":
    harness.main()
