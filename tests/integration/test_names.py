"""Upstream names and IPv6: a name is looked up at start (one that does not resolve stops the
start), every address it returns is an upstream of its own, and it is looked up again every
proxy.resolve_interval, a failed lookup keeping the last addresses; a reload's lookup holds up
nobody; slabd listens dual-stack on [::] and relays to IPv6 upstreams.

Names come from a hosts file of the test's own, bind-mounted over /etc/hosts in a mount namespace
that only slabd sees (unshare --mount): the machine's /etc/hosts is never touched. A test that
needs a DNS server mounts its own resolv.conf the same way."""

import os
import signal
import socket
import stat
import subprocess
import threading
import time

import harness


def can_unshare():
    return subprocess.run(["unshare", "--mount", "true"], capture_output=True).returncode == 0


class HeldDns(threading.Thread):
    """A DNS server on 127.0.0.153:53 that holds every query until release(), then answers
    those and every later one: an A record for a name in `answers` (name -> IPv4 address), no
    record for its AAAA, and SERVFAIL (the lookup fails) for any other name."""

    ADDRESS = "127.0.0.153"

    def __init__(self, answers):
        super().__init__(daemon=True)
        self.answers = answers
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((self.ADDRESS, 53))
        self.sock.settimeout(harness.POLL)
        self.held = []
        self.released = threading.Event()
        self.stopping = threading.Event()
        self.start()

    def run(self):
        while not self.stopping.is_set():
            try:
                self.held.append(self.sock.recvfrom(512))
            except socket.timeout:
                pass
            if self.released.is_set():
                while self.held:
                    query, peer = self.held.pop(0)
                    self.sock.sendto(self.reply(query), peer)

    def reply(self, query):
        labels, at = [], 12
        while query[at]:
            labels.append(query[at + 1:at + 1 + query[at]].decode())
            at += 1 + query[at]
        qtype, question = int.from_bytes(query[at + 1:at + 3], "big"), query[12:at + 5]
        address = self.answers.get(".".join(labels))
        record = b""
        if address is not None and qtype == 1:
            record = (b"\xc0\x0c" + (1).to_bytes(2, "big") + (1).to_bytes(2, "big") + (60).to_bytes(4, "big")
                      + (4).to_bytes(2, "big") + socket.inet_aton(address))
        rcode = 0 if address is not None else 2
        flags = bytes([0x80 | (query[2] & 0x79), 0x80 | rcode])
        counts = (1).to_bytes(2, "big") + (1 if record else 0).to_bytes(2, "big") + bytes(4)
        return query[:2] + flags + counts + question + record

    def wait_held(self, n):
        deadline = time.monotonic() + harness.WAIT
        while len(self.held) < n:
            assert time.monotonic() < deadline, f"no {n} DNS queries held"
            time.sleep(harness.POLL)

    def release(self):
        self.released.set()

    def close(self):
        self.stopping.set()
        self.join()
        self.sock.close()


class NamesTest(harness.SlabdTest):
    def setUp(self):
        if not can_unshare():
            self.skipTest("unshare --mount is not permitted here (needs root)")
        self.hosts = self.write_config("", name="hosts")
        self.real_slabd = harness.SLABD
        self.addCleanup(setattr, harness, "SLABD", self.real_slabd)
        self.mount_over({"/etc/hosts": self.hosts})

    def mount_over(self, files):
        """slabd from now on runs by a wrapper that mounts each file of `files` (a path in /etc
        to the test's file) over it: the same process (both exec), so the harness's pid is
        slabd's."""
        wrapper = os.path.join(os.path.dirname(self.hosts), "slabd-with-files")
        mounts = " && ".join(f"mount --bind {ours} {theirs}" for theirs, ours in files.items())
        with open(wrapper, "w") as f:
            f.write(f"#!/bin/sh\nexec unshare --mount sh -c '{mounts} && "
                    f"exec \"$0\" \"$@\"' {self.real_slabd} \"$@\"\n")
        os.chmod(wrapper, stat.S_IRWXU)
        harness.SLABD = wrapper

    def set_hosts(self, lines):
        # Rewritten in place: the bind mount holds this inode, and glibc reads it at each lookup.
        with open(self.hosts, "w") as f:
            f.write("".join(f"{address} {name}\n" for address, name in lines))

    def upstreams_at(self, hosts):
        """One echo upstream per address, all on one port: the first address's free port, tried
        again with another when some other test holds it on a later address (found in CI)."""
        for _ in range(20):
            ups = [harness.PyUpstream(host=hosts[0])]
            try:
                for host in hosts[1:]:
                    ups.append(harness.PyUpstream(host=host, port=ups[0].port))
            except OSError:
                for u in ups:
                    u.close()
                continue
            for u in ups:
                self.addCleanup(u.close)
            return ups, ups[0].port
        self.fail(f"no port free on all of {hosts}")

    def use_a_held_dns_server(self, answers):
        """slabd's lookups past /etc/hosts go to a HeldDns (below), each waiting at most 30 s."""
        for path in ("/etc/resolv.conf", "/etc/nsswitch.conf"):
            if not os.path.isfile(path):
                self.skipTest(f"no {path} to mount over")
        dns = HeldDns(answers)
        self.addCleanup(dns.close)
        self.mount_over({
            "/etc/hosts": self.hosts,
            "/etc/resolv.conf": self.write_config(f"nameserver {HeldDns.ADDRESS}\noptions timeout:30 attempts:1\n",
                                                  name="resolv.conf"),
            "/etc/nsswitch.conf": self.write_config("hosts: files dns\n", name="nsswitch.conf"),
        })
        return dns

    def reload(self, server, path, text, applied):
        """Rewrites the config to `text`, sends SIGHUP and waits for /stats to count `applied`
        reloads."""
        with open(path, "w") as f:
            f.write(text)
        server.signal(signal.SIGHUP)
        server.wait_stats(lambda s: s["reload"]["applied"] == applied, f"reload {applied} applied")

    def names(self, stats):
        return sorted(u["name"] for u in stats["upstreams"] if u["state"] != "removed")

    def test_every_address_of_a_name_takes_clients(self):
        self.set_hosts([("127.0.0.1", "multi.test"), ("127.0.0.2", "multi.test"), ("::1", "multi.test")])
        ups, port = self.upstreams_at(["127.0.0.1", "127.0.0.2", "::1"])
        server = self.start("--mode", "proxy", "--upstream", f"multi.test:{port}")
        self.assertEqual(self.names(server.stats()),
                         sorted(f"multi.test:{port} ({a})" for a in
                                (f"127.0.0.1:{port}", f"127.0.0.2:{port}", f"[::1]:{port}")))
        for i in range(30):
            with server.connect() as s:
                harness.assert_echo(s, b"client %d" % i)
        self.assertEqual([u.accepted for u in ups], [10, 10, 10], "round-robin over the three addresses")
        self.stop(server)

    def test_localhost_resolves_to_both_families(self):
        self.set_hosts([("127.0.0.1", "localhost"), ("::1", "localhost")])
        ups, port = self.upstreams_at(["127.0.0.1", "::1"])
        server = self.start("--mode", "proxy", "--upstream", f"localhost:{port}")
        self.assertEqual(self.names(server.stats()),
                         [f"localhost:{port} (127.0.0.1:{port})", f"localhost:{port} ([::1]:{port})"])
        for i in range(4):
            with server.connect() as s:
                harness.assert_echo(s, b"x" * 1000)
        self.assertEqual([u.accepted for u in ups], [2, 2])

    def test_looked_up_again_and_a_failed_lookup_keeps_the_last_addresses(self):
        self.set_hosts([("127.0.0.1", "moving.test"), ("127.0.0.2", "moving.test")])
        ups, port = self.upstreams_at(["127.0.0.1", "127.0.0.2"])
        path = self.write_config('[proxy]\nresolve_interval = "100ms"\n')
        server = self.start("--config", path, "--mode", "proxy", "--upstream", f"moving.test:{port}")
        two = [f"moving.test:{port} (127.0.0.1:{port})", f"moving.test:{port} (127.0.0.2:{port})"]
        self.assertEqual(self.names(server.stats()), two)

        self.set_hosts([("127.0.0.2", "moving.test")])
        server.wait_stats(lambda s: self.names(s) == two[1:], "127.0.0.1 dropped after a lookup")
        accepted = ups[0].accepted
        for i in range(5):
            with server.connect() as s:
                harness.assert_echo(s, b"only .2")
        self.assertEqual(ups[0].accepted, accepted, "no client sent to the dropped address")

        self.set_hosts([])  # the name no longer resolves: keep what we had
        server.wait_stats(lambda s: s["upstream_resolve_failures"] >= 2, "failed lookups counted")
        self.assertEqual(self.names(server.stats()), two[1:])
        with server.connect() as s:
            harness.assert_echo(s, b"still served")
        _, metrics = server.get("/metrics")
        self.assertRegex(metrics, r"slabd_upstream_resolve_failures_total [1-9]")

        self.set_hosts([("127.0.0.1", "moving.test"), ("127.0.0.2", "moving.test")])
        server.wait_stats(lambda s: self.names(s) == two, "127.0.0.1 back after a lookup")
        self.stop(server)

    def test_a_slow_lookup_at_a_reload_holds_up_nobody(self):
        """A reload looks a name up on Asio's lookup thread and applies its addresses when it
        answers (decision 29). While the DNS server holds the lookup, a lone shard, which shares
        the control thread, relays and the admin endpoint answers; then the lookup fails, and
        the name is left without an address."""
        dns = self.use_a_held_dns_server({})
        (up,), port = self.upstreams_at(["127.0.0.1"])
        path = self.write_config(f'[server]\nthreads = 1\n[proxy]\nupstreams = ["127.0.0.1:{port}"]\n')
        server = self.start("--config", path, "--mode", "proxy")
        self.reload(server, path,
                    f'[server]\nthreads = 1\n[proxy]\nupstreams = ["127.0.0.1:{port}", "slow.test:{port}"]\n', 1)
        dns.wait_held(1)
        with server.connect() as s:
            harness.assert_echo(s, b"relayed while the lookup waits")
        self.assertEqual(self.names(server.stats()), [f"127.0.0.1:{port}"])
        dns.release()
        server.wait_stats(lambda s: s["upstream_resolve_failures"] == 1, "the lookup failed")
        self.assertIn(f"resolve: slow.test:{port} does not resolve", server.stderr())
        self.assertIn("it has no address yet", server.stderr())
        self.assertEqual(self.names(server.stats()), [f"127.0.0.1:{port}"])
        self.assertEqual(up.accepted, 1)
        self.stop(server)

    def test_a_renamed_upstream_serves_until_its_new_name_answers(self):
        """A reload that names a name not looked up yet keeps the upstreams as they were until
        the lookup answers, then changes them all at once: a renamed backend is never left
        without an address between the two."""
        dns = self.use_a_held_dns_server({"b.test": "127.0.0.2"})
        self.set_hosts([("127.0.0.1", "a.test")])
        ups, port = self.upstreams_at(["127.0.0.1", "127.0.0.2"])
        path = self.write_config(f'[proxy]\nresolve_interval = "0s"\nupstreams = ["a.test:{port}"]\n')
        server = self.start("--config", path, "--mode", "proxy", "--threads", "1")
        self.reload(server, path, f'[proxy]\nresolve_interval = "0s"\nupstreams = ["b.test:{port}"]\n', 1)
        dns.wait_held(1)
        self.assertEqual(self.names(server.stats()), [f"a.test:{port} (127.0.0.1:{port})"])
        with server.connect() as c:
            harness.assert_echo(c, b"to a while b.test is looked up")
        dns.release()
        server.wait_stats(lambda s: self.names(s) == [f"b.test:{port} (127.0.0.2:{port})"],
                          "b.test in a.test's place")
        with server.connect() as c:
            harness.assert_echo(c, b"to b")
        self.assertEqual([u.accepted for u in ups], [1, 1])
        self.assertIn(f"resolve: upstream b.test:{port} (127.0.0.2:{port}) added", server.stderr())
        self.stop(server)

    def test_a_rename_during_another_reloads_lookup_changes_the_upstreams_in_one_step(self):
        """A reload that renames the upstream while another reload's lookup is in flight
        applies when its own lookup answers, in one change (the new name added, then the old one
        removed), not the old name removed first when the lookup in flight answers."""
        dns = self.use_a_held_dns_server({})
        self.set_hosts([("127.0.0.1", "a.test"), ("127.0.0.2", "b.test")])
        ups, port = self.upstreams_at(["127.0.0.1", "127.0.0.2"])
        a, b = f"a.test:{port} (127.0.0.1:{port})", f"b.test:{port} (127.0.0.2:{port})"
        path = self.write_config(f'[proxy]\nresolve_interval = "0s"\nupstreams = ["a.test:{port}"]\n')
        server = self.start("--config", path, "--mode", "proxy", "--threads", "1")
        for reload, names in enumerate((f'"a.test:{port}", "slow.test:{port}"', f'"b.test:{port}"'), start=1):
            self.reload(server, path, f'[proxy]\nresolve_interval = "0s"\nupstreams = [{names}]\n', reload)
        dns.wait_held(1)
        self.assertEqual(self.names(server.stats()), [a], "a.test serves while slow.test is looked up")
        dns.release()
        server.wait_stats(lambda s: self.names(s) == [b], "b.test in a.test's place")
        log = server.stderr()
        self.assertLess(log.index(f"resolve: upstream {b} added"), log.index(f"resolve: upstream {a} removed"),
                        "one change")
        with server.connect() as c:
            harness.assert_echo(c, b"to b")
        self.assertEqual([u.accepted for u in ups], [0, 1])
        self.stop(server)

    def test_a_reload_during_a_lookup_has_its_names_looked_up_next(self):
        """One round of lookups at a time: a reload's names wait for the round in flight, and
        are looked up as soon as it answers, even when it answers for a name that reload removed
        (with resolve_interval 0 nothing else would look them up)."""
        dns = self.use_a_held_dns_server({})
        self.set_hosts([("127.0.0.2", "fast.test")])
        ups, port = self.upstreams_at(["127.0.0.1", "127.0.0.2"])
        literal = f"127.0.0.1:{port}"
        path = self.write_config(f'[proxy]\nresolve_interval = "0s"\nupstreams = ["{literal}"]\n')
        server = self.start("--config", path, "--mode", "proxy", "--threads", "1")
        for reload, name in enumerate(("slow.test", "fast.test"), start=1):
            self.reload(server, path,
                        f'[proxy]\nresolve_interval = "0s"\nupstreams = ["{literal}", "{name}:{port}"]\n', reload)
        dns.wait_held(1)
        self.assertEqual(self.names(server.stats()), [literal], "slow.test's lookup still waits")
        dns.release()
        s = server.wait_stats(lambda s: len(self.names(s)) == 2, "fast.test looked up", timeout=20)
        self.assertEqual(self.names(s), [literal, f"fast.test:{port} (127.0.0.2:{port})"])
        self.assertEqual(s["upstream_resolve_failures"], 0, "a removed name's failure is not its own")
        for i in range(4):
            with server.connect() as c:
                harness.assert_echo(c, b"both served")
        self.assertEqual([u.accepted for u in ups], [2, 2])
        self.stop(server)

    def test_a_name_that_does_not_resolve_stops_the_start(self):
        self.set_hosts([])
        code, _, err = harness.run_slabd("--mode", "proxy", "--upstream", "nowhere.test:80", "--listen",
                                         "127.0.0.1:0", "--admin", "127.0.0.1:0")
        self.assertEqual(code, 1, err)
        self.assertIn("proxy.upstreams: nowhere.test:80 does not resolve", err)


class DualStackTest(harness.SlabdTest):
    def test_listening_on_all_addresses_serves_both_families(self):
        server = self.start("--listen", "[::]:0")
        for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.settimeout(harness.IO_TIMEOUT)
                s.connect((host, server.port))
                harness.assert_echo(s, b"hello over " + host.encode())

    def test_relays_to_an_ipv6_upstream(self):
        up = harness.PyUpstream(host="::1")
        self.addCleanup(up.close)
        server = self.start("--mode", "proxy", "--upstream", f"[::1]:{up.port}")
        with server.connect() as s:
            harness.assert_echo(s, harness.pattern(200_000))
        self.assertEqual([u["name"] for u in server.stats()["upstreams"]], [f"[::1]:{up.port}"])


if __name__ == "__main__":
    harness.main()
