"""PROXY protocol (HAProxy's doc/proxy-protocol.txt), both ways, against the real binary.

accept_proxy: a trusted load balancer's header names the client, and that address is the one
max_per_source counts and send_proxy passes on; an untrusted peer, a bad header or none in time is
refused cleanly and counted by reason, and a late header never holds a block past its deadline.
send_proxy: the upstream gets one header, v1 or v2, before the first relayed byte.
The headers here are built and parsed by this file, independently of slabd's own code."""

import ipaddress
import signal
import socket
import struct
import threading
import time

import harness

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def v1(source, destination):
    """A v1 header for (address, port) pairs."""
    family = "TCP6" if ":" in source[0] else "TCP4"
    return f"PROXY {family} {source[0]} {destination[0]} {source[1]} {destination[1]}\r\n".encode()


def v2(source=None, destination=None, tlvs=b""):
    """A v2 PROXY header, or LOCAL without addresses."""
    if source is None:
        return V2_SIGNATURE + bytes([0x20, 0x00]) + struct.pack("!H", len(tlvs)) + tlvs
    ip = ipaddress.ip_address(source[0])
    if ip.version == 4:
        body = (ip.packed + ipaddress.ip_address(destination[0]).packed +
                struct.pack("!HH", source[1], destination[1]))
        family = 0x11
    else:
        body = (ip.packed + ipaddress.ip_address(destination[0]).packed +
                struct.pack("!HH", source[1], destination[1]))
        family = 0x21
    body += tlvs
    return V2_SIGNATURE + bytes([0x21, family]) + struct.pack("!H", len(body)) + body


def read_header(conn):
    """Reads exactly one PROXY header (either version) from an upstream connection and returns
    (version, command or family, source, destination) with addresses as (text, port)."""
    first = harness.recv_exact(conn, 16)
    if first.startswith(b"PROXY "):
        line = first
        while not line.endswith(b"\r\n"):
            line += harness.recv_exact(conn, 1)
            assert len(line) <= 107, f"v1 header longer than 107 bytes: {line!r}"
        words = line[:-2].decode().split(" ")
        if words[1] == "UNKNOWN":
            return 1, "UNKNOWN", None, None
        assert len(words) == 6, line
        return 1, words[1], (words[2], int(words[4])), (words[3], int(words[5]))
    assert first.startswith(V2_SIGNATURE), f"not a PROXY header: {first!r}"
    command, family = first[12], first[13]
    length = struct.unpack("!H", first[14:16])[0]
    body = harness.recv_exact(conn, length)
    if command == 0x20:
        return 2, "LOCAL", None, None
    assert command == 0x21, hex(command)
    if family == 0x11:
        src, dst, sport, dport = struct.unpack("!4s4sHH", body[:12])
    else:
        assert family == 0x21, hex(family)
        src, dst, sport, dport = struct.unpack("!16s16sHH", body[:36])
    return 2, "TCP4" if family == 0x11 else "TCP6", \
        (str(ipaddress.ip_address(src)), sport), (str(ipaddress.ip_address(dst)), dport)


class HeaderRecorder:
    """An upstream that reads the PROXY header of each connection, records it, then echoes."""

    def __init__(self):
        self.headers = []
        self.lock = threading.Lock()
        self.upstream = harness.PyUpstream(self.behaviour)

    def behaviour(self, conn, index):
        header = read_header(conn)
        with self.lock:
            self.headers.append(header)
        harness.echo_behaviour(conn, index)


def connect_from(address, port, source="127.0.0.1"):
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(harness.IO_TIMEOUT)
    s.bind((source, 0))
    s.connect((address, port))
    return s


def refused(stats, reason):
    return stats["connections"]["refused_by_reason"][reason]


class AcceptProxyTest(harness.SlabdTest):
    def accepting(self, *args):
        return self.start("--threads", "2", "--accept-proxy", "--trusted-source", "127.0.0.1",
                          "--trusted-source", "::1", *args)

    def test_header_is_consumed_and_the_rest_echoed(self):
        server = self.accepting()
        cases = [v1(("192.0.2.1", 5000), ("198.51.100.2", 7000)),
                 v1(("2001:db8::1", 5001), ("2001:db8::2", 7000)),
                 b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n",
                 v2(("192.0.2.1", 5000), ("198.51.100.2", 7000)),
                 v2(("2001:db8::1", 5001), ("2001:db8::2", 7000), tlvs=b"\x04\x00\x02ab"),
                 v2()]
        for i, header in enumerate(cases):
            with self.subTest(header=header[:20]):
                payload = b"hello %d" % i
                with server.connect() as s:
                    s.sendall(header + payload)
                    self.assertEqual(harness.recv_exact(s, len(payload)), payload)
        s = server.wait_stats(lambda s: s["connections"]["active"] == 0, "every client closed")
        self.assertEqual(s["connections"]["accepted"], len(cases))
        self.assertEqual(s["connections"]["refused"], 0)

    def test_a_header_one_byte_at_a_time(self):
        server = self.accepting()
        for header in (v1(("203.0.113.9", 1234), ("127.0.0.1", 7000)),
                       v2(("2001:db8::9", 1234), ("::1", 7000))):
            with server.connect() as s:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                for b in header:
                    s.sendall(bytes([b]))
                    time.sleep(0.002)
                s.sendall(b"after")
                self.assertEqual(harness.recv_exact(s, 5), b"after")

    def test_per_source_limit_counts_the_address_in_the_header(self):
        server = self.accepting("--max-per-source", "1")
        held = []
        self.addCleanup(harness.close_all, held)
        # Two clients behind the balancer, one connection each: both served, though every
        # connection comes from the balancer's one address.
        for client, balancer in (("192.0.2.10", "127.0.0.1"), ("2001:db8::10", "2001:db8::1")):
            s = server.connect()
            held.append(s)
            s.sendall(v1((client, 4000), (balancer, server.port)) + b"x")
            self.assertEqual(harness.recv_exact(s, 1), b"x")
        # The first client again: over its limit, refused cleanly after its header.
        s = server.connect()
        held.append(s)
        s.sendall(v2(("192.0.2.10", 4001), ("127.0.0.1", server.port)) + b"y")
        self.assertEqual(harness.recv_to_eof(s), b"")
        # The refusal is counted just before the refused block returns: wait for both.
        st = server.wait_stats(lambda s: refused(s, "per_source") == 1 and s["pool"]["in_use"] == 2,
                               "the per-source refusal and its block back")
        self.assertEqual(st["connections"]["accepted"], 2)
        self.assertEqual(st["proxy_protocol"]["headers_received"], 3, "the refused one sent its header too")
        sources = {t["source"]: t["connections"] for t in st["limits"]["top_sources"]}
        self.assertEqual(sources, {"192.0.2.10": 1, "2001:db8::/64": 1})

    def test_untrusted_peer_is_refused_before_taking_a_block(self):
        server = self.start("--accept-proxy", "--trusted-source", "127.0.0.2",
                            "--busy-message", "busy")
        with server.connect() as s:
            s.sendall(v1(("192.0.2.1", 1), ("127.0.0.1", server.port)) + b"data")
            self.assertEqual(harness.recv_to_eof(s), b"busy\n")
        st = server.wait_stats(lambda s: refused(s, "proxy_untrusted") == 1, "the refusal")
        self.assertEqual((st["connections"]["accepted"], st["pool"]["allocs"]), (0, 0))
        # The trusted balancer's address is served.
        with connect_from("127.0.0.1", server.port, source="127.0.0.2") as s:
            s.sendall(v1(("192.0.2.1", 1), ("127.0.0.1", server.port)) + b"data")
            self.assertEqual(harness.recv_exact(s, 4), b"data")

    def test_invalid_headers_are_refused_and_the_block_returned(self):
        server = self.accepting()
        bad = [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
               b"PROXY TCP4 1.2.3.4 5.6.7.8 80 65536\r\n",
               b"PROXY TCP4 1.2.3.4  5.6.7.8 80 81\r\n",
               b"PROXY TCP4 " + b"1" * 120,
               V2_SIGNATURE + bytes([0x21, 0x12]) + struct.pack("!H", 12) + b"\0" * 12,
               V2_SIGNATURE + bytes([0x21, 0x11]) + struct.pack("!H", 1000)]
        for header in bad:
            with self.subTest(header=header[:24]):
                with server.connect() as s:
                    s.sendall(header)
                    self.assertEqual(harness.recv_to_eof(s), b"")
        st = server.wait_stats(lambda s: s["pool"]["in_use"] == 0 and refused(s, "proxy_invalid") == len(bad),
                               "every bad header refused")
        self.assertEqual(st["connections"]["accepted"], 0)
        self.assertEqual(sum(st["connections"]["closed"].values()), 0, "refusals are not closes")

    def test_a_late_header_gives_its_block_back_at_the_deadline(self):
        path = self.write_config('[timeouts]\nproxy_header = "500ms"\n')
        server = self.accepting("--config", path, "--max-connections", "2")
        silent = self.connect_all(server, 2)
        server.wait_stats(lambda s: s["pool"]["in_use"] == 2, "both silent clients hold a block")
        started = time.monotonic()
        for s in silent:
            self.assertEqual(harness.recv_to_eof(s), b"")
        self.assertLess(time.monotonic() - started, 5.0, "closed near the deadline, not at idle")
        st = server.wait_stats(lambda s: s["pool"]["in_use"] == 0, "the blocks returned")
        self.assertEqual(refused(st, "proxy_timeout"), 2)
        # A header that comes in time is served in a block they gave back.
        with server.connect() as s:
            s.sendall(v2() + b"ok")
            self.assertEqual(harness.recv_exact(s, 2), b"ok")


    def test_a_partial_header_waits_without_spinning(self):
        """Found in review: the peeked bytes stay unread and Asio re-arms epoll for each wait, so
        a partial header made the shard wait, wake and peek again at full speed."""
        server = self.accepting("--threads", "1")
        with server.connect() as s:
            s.sendall(b"PROXY TCP4 192.0.2.")
            server.wait_stats(lambda st: st["pool"]["in_use"] == 1, "the partial header holds a block")
            before = cpu_ticks(server.pid)
            time.sleep(1.0)
            spent = cpu_ticks(server.pid) - before
            self.assertLess(spent, 30, f"slabd used {spent} of 100 CPU ticks in a second with a partial header waiting")
            s.sendall(b"1 198.51.100.2 5000 7000\r\nrest")
            self.assertEqual(harness.recv_exact(s, 4), b"rest")

    def test_a_partial_header_then_eof_is_refused_at_once(self):
        server = self.accepting()
        with server.connect() as s:
            s.sendall(b"PROXY TCP6 2001:db8::1 ")
            s.shutdown(socket.SHUT_WR)
            self.assertEqual(harness.recv_to_eof(s), b"")
        st = server.wait_stats(lambda st: refused(st, "proxy_invalid") == 1, "the refusal")
        self.assertEqual(refused(st, "proxy_timeout"), 0)

    def test_a_connection_closed_before_any_byte_is_a_plain_close(self):
        # A balancer's TCP health check: connect, close.
        server = self.accepting()
        for _ in range(3):
            server.connect().close()
        st = server.wait_stats(lambda st: st["connections"]["closed"]["client_eof"] == 3, "three closes")
        self.assertEqual((st["connections"]["accepted"], st["connections"]["refused"]), (3, 0))

    def test_the_drain_refuses_who_still_owes_a_header(self):
        server = self.accepting()
        s = server.connect()
        self.addCleanup(s.close)
        server.wait_stats(lambda st: st["pool"]["in_use"] == 1, "the silent client holds a block")
        server.signal(signal.SIGTERM)
        self.assertEqual(harness.recv_to_eof(s), b"")
        self.assertEqual(server.wait_exit(), 0)
        self.assertIn("0 connections served, 1 refused", server.stderr())


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


class SendProxyTest(harness.SlabdTest):
    def proxy(self, version, *args):
        recorder = HeaderRecorder()
        self.addCleanup(recorder.upstream.close)
        server = self.start("--mode", "proxy", "--upstream", f"127.0.0.1:{recorder.upstream.port}",
                            "--send-proxy", version, *args)
        return server, recorder

    def test_the_header_goes_first_with_the_client_addresses(self):
        for version in ("v1", "v2"):
            with self.subTest(version=version):
                server, recorder = self.proxy(version)
                with connect_from("127.0.0.1", server.port, source="127.0.0.3") as s:
                    local = s.getsockname()
                    harness.assert_echo(s, harness.pattern(100_000))
                recorder.upstream.wait_accepted(1)
                server.wait_stats(lambda s: s["connections"]["active"] == 0, "the client closed")
                self.assertEqual(recorder.headers, [(int(version[1]), "TCP4", ("127.0.0.3", local[1]),
                                                     ("127.0.0.1", server.port))])
                self.assertEqual(server.stats()["proxy_protocol"]["headers_sent"], 1)

    def test_ipv6_client(self):
        server, recorder = self.proxy("v2", "--listen", "[::1]:0")
        with connect_from("::1", server.port, source="::1") as s:
            local = s.getsockname()
            harness.assert_echo(s, b"six")
        server.wait_stats(lambda s: s["connections"]["active"] == 0, "the client closed")
        self.assertEqual(recorder.headers, [(2, "TCP6", ("::1", local[1]), ("::1", server.port))])

    def test_the_address_from_an_incoming_header_is_passed_on(self):
        server, recorder = self.proxy("v1", "--accept-proxy", "--trusted-source", "127.0.0.1")
        with server.connect() as s:
            s.sendall(v2(("198.51.100.77", 40000), ("203.0.113.1", 443)) + b"ping")
            self.assertEqual(harness.recv_exact(s, 4), b"ping")
        server.wait_stats(lambda s: s["connections"]["active"] == 0, "the client closed")
        self.assertEqual(recorder.headers, [(1, "TCP4", ("198.51.100.77", 40000), ("203.0.113.1", 443))])


if __name__ == "__main__":
    harness.main()
