"""Reload without a restart (issue 10): SIGHUP adds and removes upstreams and changes the balance
policy while clients come and go, grows the connection pool from 100 to 1,000 blocks and shrinks
it back with every connection held, and reports each outcome (applied, rejected with the reason,
needs restart: which keys) in the log and in /stats."""

import json
import os
import re
import resource
import signal
import socket
import threading
import time
import urllib.error
import urllib.request

import harness
from harness import IO_TIMEOUT, assert_echo, close_all, recv_to_eof, wait_readable


def upstream_line(port):
    return f'"127.0.0.1:{port}"'


# A value other than the test's own for every setting (test_each_setting_reloads_as_declared).
# {DIR} is the test's directory, {UPSTREAM} a second upstream's port.
OTHER_VALUES = {
    "server.mode": '"echo"',
    "server.threads": "3",
    "server.accept_proxy": "true",
    "server.trusted_sources": '["127.0.0.9"]',
    "pool.max_connections": "150",
    "pool.reserve": "800",
    "pool.on_exhausted": '"pause"',
    "pool.evict_idle_after": '"2m"',
    "pool.busy_message": '"full"',
    "pool.buffer_count": "512",
    "pool.buffer_size": "8192",
    "limits.max_per_source": "7",
    "limits.source_prefix_v4": "24",
    "limits.source_prefix_v6": "48",
    "limits.accept_rate": "1000",
    "limits.accept_burst": "50",
    "timeouts.idle": '"2m"',
    "timeouts.connect": '"2s"',
    "timeouts.shutdown_grace": '"3s"',
    "timeouts.proxy_header": '"2s"',
    "proxy.upstreams": '["127.0.0.1:{UPSTREAM}"]',
    "proxy.resolve_interval": '"10s"',
    "proxy.balance": '"least-connections"',
    "proxy.fail_timeout": '"2m"',
    "proxy.splice_pipes": "8",
    "proxy.send_proxy": '"v1"',
    "health_check.interval": '"3s"',
    "health_check.timeout": '"1s"',
    "health_check.rise": "3",
    "health_check.fall": "4",
    "health_check.send": '"PING\\n"',
    "health_check.expect": '"PING"',
    "admin.token": '"t0ken"',
    "admin.ready_headroom": "5",
    "log.level": '"debug"',
    "log.file": '"{DIR}/other.log"',
    "log.format": '"json"',
    "log.connections": "true",
    "log.connections_rate": "10",
    "daemon.daemonize": "true",
    "daemon.pidfile": '"{DIR}/other.pid"',
    "daemon.handover_socket": '"{DIR}/handover.sock"',
}
# Given on the command line by the harness, and a flag wins over the file at a reload too.
GIVEN_AS_FLAGS = {"server.listen", "admin.listen"}


def declared_settings():
    """{"table.key": applies at a reload?} from --check-config's comments, which the settings
    list writes: the one declaration of which settings a reload applies."""
    code, out, err = harness.run_slabd("--check-config")
    assert code == 0, err
    declared, table, comment = {}, None, ""
    for line in out.splitlines():
        if line.startswith("["):
            table = line.strip("[]")
        elif line.startswith("# "):
            comment = line
        elif " = " in line:
            declared[f"{table}.{line.split(' = ')[0]}"] = comment.endswith("(a reload applies it)")
    return declared


def readme_reload_keys(declared):
    """The settings the README says a reload applies: its SIGHUP paragraph's list, a
    `[table]` there standing for each of that table's keys, and pool.max_connections."""
    with open(os.path.join(os.path.dirname(__file__), "..", "..", "README.md")) as f:
        text = f.read()
    listed = text[text.index("These apply at once:"):text.index("An added upstream")]
    keys = set()
    for name in re.findall(r"`([^`]+)`", listed):
        if name.startswith("["):
            keys |= {k for k in declared if k.startswith(name.strip("[]") + ".")}
        else:
            keys.add(name)
    if "`pool.max_connections` also changes live" in text:
        keys.add("pool.max_connections")
    return keys


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
        # Two held relays stay on a, and with them, for a moment, the churn's one client if it
        # was relayed to a as the reload came.
        state, active = self.upstream_state(proxy)[name[a]]
        self.assertEqual(state, "removed")
        self.assertIn(active, (2, 3), "the held relays on a, and at most the churn's client")
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

    def test_each_setting_reloads_as_declared(self):
        # One reload per setting, each changing that one alone: a setting the settings list says
        # a reload applies is changed, one it says only a restart applies is reported as such.
        # Proxy mode, so that the upstream and health-check settings apply.
        declared = declared_settings()
        self.assertEqual(set(declared), set(OTHER_VALUES) | GIVEN_AS_FLAGS,
                         "a value to try for every setting, and no other")
        self.assertEqual(readme_reload_keys(declared), {k for k, live in declared.items() if live},
                         "the README's list of what a reload applies")
        upstream, other = harness.PyUpstream(), harness.PyUpstream()
        self.addCleanup(upstream.close)
        self.addCleanup(other.close)
        directory = os.path.dirname(self.write_config(""))
        own = {"server.mode": '"proxy"', "server.threads": "2",
               "proxy.upstreams": f"[{upstream_line(upstream.port)}]",
               "pool.max_connections": "100", "server.trusted_sources": '["127.0.0.8"]',
               "daemon.pidfile": f'"{directory}/slabd.pid"'}

        def config_text(changed=None):
            values = dict(own)
            if changed is not None:
                values[changed] = OTHER_VALUES[changed].format(DIR=directory, UPSTREAM=other.port)
            tables = {}
            for name, value in values.items():
                table, key = name.split(".")
                tables.setdefault(table, []).append(f"{key} = {value}")
            return "".join(f"[{t}]\n" + "\n".join(lines) + "\n" for t, lines in tables.items())

        config = self.write_config(config_text())
        server = self.start("--config", config)
        # The token goes last: from then on /stats wants it.
        order = sorted(OTHER_VALUES, key=lambda name: name == "admin.token")
        headers = {}
        for applied, name in enumerate(order, start=1):
            with open(config, "w") as f:
                f.write(config_text(name))
            server.signal(signal.SIGHUP)
            if name == "admin.token":
                headers = {"Authorization": "Bearer t0ken"}
            deadline = time.monotonic() + harness.WAIT
            while True:
                request = urllib.request.Request(f"http://127.0.0.1:{server.admin_port}/stats",
                                                 headers=headers)
                try:
                    with urllib.request.urlopen(request, timeout=IO_TIMEOUT) as response:
                        reload = json.loads(response.read())["reload"]
                except urllib.error.HTTPError:  # the token took effect between the two
                    reload = {"applied": 0}
                if reload["applied"] == applied:
                    break
                self.assertEqual(reload.get("rejected", 0), 0, f"{name}: {reload.get('error')}")
                self.assertLess(time.monotonic(), deadline, f"reload {applied} ({name}) never applied")
                time.sleep(harness.POLL)
            self.assertEqual(reload["last"], "applied", f"{name}: {reload}")
            if declared[name]:
                self.assertEqual(reload["needs_restart"], [], name)
                self.assertTrue(any(re.match(rf"{re.escape(name)}[ :]", line) for line in reload["changed"]),
                                f"{name} not among what the reload changed: {reload['changed']}")
            else:
                self.assertEqual(reload["needs_restart"], [name], f"{name}: {reload}")

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
