"""PROXY protocol against the real thing (Debian's haproxy and nginx-light with its stream module):
HAProxy in front of slabd with send-proxy and send-proxy-v2, and nginx behind slabd with
`listen ... proxy_protocol`, whose access log must name the client that connected to slabd."""

import os
import shutil
import socket
import subprocess
import tempfile
import time

import harness

STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def connect_from(source, port):
    s = socket.socket()
    s.settimeout(harness.IO_TIMEOUT)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def wait_listening(proc, port, what):
    """Waits until the port is taken, without connecting: a probe would reach slabd through
    HAProxy, or nginx without a header, and be counted or logged."""
    deadline = time.monotonic() + harness.WAIT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited with {proc.returncode}")
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                return
        time.sleep(harness.POLL)
    raise AssertionError(f"{what} is not listening on {port}")


class InteropTest(harness.SlabdTest):
    def run_peer(self, argv, port, what):
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, preexec_fn=harness._child_setup(None))

        def stop():
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(harness.WAIT)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            proc.stderr.close()
        self.addCleanup(stop)
        wait_listening(proc, port, what)
        return proc

    def tempdir(self):
        d = tempfile.TemporaryDirectory(prefix="slabd-interop-")
        self.addCleanup(d.cleanup)
        return d.name

    def test_haproxy_in_front_sends_the_client_address(self):
        self.assertIsNotNone(shutil.which("haproxy"), "haproxy is installed by scripts/install-deps.sh")
        for option in ("send-proxy", "send-proxy-v2"):
            with self.subTest(option=option):
                server = self.start("--accept-proxy", "--trusted-source", "127.0.0.1",
                                    "--max-per-source", "1000")
                port = free_port()
                cfg = os.path.join(self.tempdir(), "haproxy.cfg")
                with open(cfg, "w") as f:
                    f.write(f"""global
    nbthread 1
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
listen front
    bind 127.0.0.1:{port}
    server slabd 127.0.0.1:{server.port} {option}
""")
                self.run_peer(["haproxy", "-db", "-f", cfg], port, "haproxy")
                held = []
                self.addCleanup(harness.close_all, held)
                for source in ("127.0.0.5", "127.0.0.5", "127.0.0.6"):
                    s = connect_from(source, port)
                    held.append(s)
                    harness.assert_echo(s, harness.pattern(50_000))
                st = server.wait_stats(lambda s: s["connections"]["active"] == 3, "three clients held")
                sources = {t["source"]: t["connections"] for t in st["limits"]["top_sources"]}
                self.assertEqual(sources, {"127.0.0.5": 2, "127.0.0.6": 1},
                                 "slabd counts the clients HAProxy named, not HAProxy")
                self.assertEqual(st["proxy_protocol"]["headers_received"], 3)
                self.assertEqual(st["connections"]["refused"], 0)
                harness.close_all(held)
                self.stop(server)

    def test_nginx_behind_logs_the_client_address(self):
        self.assertTrue(os.path.exists(STREAM_MODULE), "libnginx-mod-stream is installed by scripts/install-deps.sh")
        for version in ("v1", "v2"):
            with self.subTest(version=version):
                d = self.tempdir()
                port = free_port()
                log = os.path.join(d, "access.log")
                conf = os.path.join(d, "nginx.conf")
                with open(conf, "w") as f:
                    f.write(f"""load_module {STREAM_MODULE};
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 64; }}
stream {{
    log_format pp '$proxy_protocol_addr $proxy_protocol_port $remote_addr';
    server {{
        listen 127.0.0.1:{port} proxy_protocol;
        access_log {log} pp;
        return "hello from nginx\\n";
    }}
}}
""")
                self.run_peer(["nginx", "-c", conf, "-p", d + "/", "-e", f"{d}/error.log",
                               "-g", "daemon off;"], port, "nginx")
                server = self.start("--mode", "proxy", "--upstream", f"127.0.0.1:{port}",
                                    "--send-proxy", version)
                with connect_from("127.0.0.7", server.port) as s:
                    client_port = s.getsockname()[1]
                    self.assertEqual(harness.recv_to_eof(s), b"hello from nginx\n")
                deadline = time.monotonic() + harness.WAIT
                lines = []
                while time.monotonic() < deadline:
                    with open(log) if os.path.exists(log) else open(os.devnull) as f:
                        lines = [line.split() for line in f if line.strip()]
                    if any(line[0] == "127.0.0.7" for line in lines):
                        break
                    time.sleep(harness.POLL)
                self.assertIn(["127.0.0.7", str(client_port), "127.0.0.1"], lines,
                              f"nginx's access log names slabd's client:\n{lines}")
                self.assertEqual(server.stats()["proxy_protocol"]["headers_sent"], 1)
                self.stop(server)


if __name__ == "__main__":
    harness.main()
