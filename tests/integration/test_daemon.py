"""Daemon operation (docs/design.md, decision 9): --daemonize detaches only once the listeners are bound and
the pidfile is locked; a second instance with the same pidfile is refused; SIGHUP reopens the log
file and reloads what can change at run time; SIGTERM drains and removes the pidfile; JSON log
lines parse.

The daemon is not the test's child (it forks twice), so it is found through its pidfile, watched
with kill(pid, 0), and killed by that pid only, once /proc shows it is the slabd this test started.
"""

import fcntl
import json
import os
import re
import signal
import socket
import tempfile
import time

import harness
from harness import POLL, WAIT, assert_echo, run_slabd

DATA_PORT = re.compile(r"mode: data 127\.0\.0\.1:(\d+) admin 127\.0\.0\.1:(\d+)")


def alive(pid):
    """True while `pid` runs; a zombie (nobody may reap it in a container) counts as gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def read_text(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


class Daemon:
    """One `slabd --daemonize` with its pidfile and log file in a private directory."""

    def __init__(self, test, *extra):
        self.directory = tempfile.mkdtemp(prefix="slabd-daemon-")
        test.addCleanup(self._remove_directory)
        self.pidfile = os.path.join(self.directory, "slabd.pid")
        self.log = os.path.join(self.directory, "slabd.log")
        self.config = os.path.join(self.directory, "slabd.toml")
        self.write_config('[timeouts]\nidle = "5m"\n')
        self.args = ["--daemonize", "--pidfile", self.pidfile, "--log-file", self.log,
                     "--config", self.config, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
                     "--threads", "2", *extra]
        self.pid = self.port = None
        self.logs_seen = []  # the text of log files renamed away, for the sanitizer check

    def write_config(self, text):
        with open(self.config, "w") as f:
            f.write(text)

    def launch(self):
        """Runs the launcher: (exit code, its stderr)."""
        code, _, err = run_slabd(*self.args)
        return code, err

    def learn(self):
        """The daemon's pid from the pidfile and its data port from the log."""
        self.pid = int(read_text(self.pidfile))
        m = DATA_PORT.search(read_text(self.log))
        assert m, f"no start-up line in the log:\n{read_text(self.log)}"
        self.port = int(m[1])
        return self

    def is_ours(self):
        try:
            with open(f"/proc/{self.pid}/cmdline", "rb") as f:
                return self.pidfile.encode() in f.read()
        except FileNotFoundError:
            return False

    def connect(self):
        return socket.create_connection(("127.0.0.1", self.port), timeout=harness.IO_TIMEOUT)

    def signal(self, signo):
        if self.pid and alive(self.pid) and self.is_ours():
            os.kill(self.pid, signo)

    def wait_gone(self, timeout=WAIT):
        deadline = time.monotonic() + timeout
        while alive(self.pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(POLL)
        return True

    def wait_log(self, needle, what):
        deadline = time.monotonic() + WAIT
        while needle not in read_text(self.log):
            if time.monotonic() > deadline:
                raise AssertionError(f"waited {WAIT:.0f} s for {what} ({needle!r}); log:\n"
                                     f"{read_text(self.log)}")
            time.sleep(POLL)

    def all_logs(self):
        return "".join(self.logs_seen) + read_text(self.log)

    def kill(self):
        if self.pid:
            self.signal(signal.SIGKILL)
            self.wait_gone()

    def _remove_directory(self):
        for name in os.listdir(self.directory):
            os.unlink(os.path.join(self.directory, name))
        os.rmdir(self.directory)


class DaemonTest(harness.SlabdTest):
    def start_daemon(self, *extra):
        daemon = Daemon(self, *extra)
        self.addCleanup(self.finish_daemon, daemon)
        code, err = daemon.launch()
        self.assertEqual(code, 0, f"launcher exit code; its stderr:\n{err}\nlog:\n{read_text(daemon.log)}")
        self.assertEqual(err, "", "the launcher prints nothing on success")
        return daemon.learn()

    def finish_daemon(self, daemon):
        daemon.kill()
        report = harness.sanitizer_report(daemon.all_logs())
        if report:
            self.fail(f"sanitizer report ({report}) in the daemon's log:\n{daemon.all_logs()}")

    def stop_daemon(self, daemon):
        daemon.signal(signal.SIGTERM)
        self.assertTrue(daemon.wait_gone(), f"slabd still runs {WAIT:.0f} s after SIGTERM")
        self.assertIn("slabd stopped", read_text(daemon.log), "the drain ran to its end")
        self.assertFalse(os.path.exists(daemon.pidfile), "the pidfile is removed on a clean exit")
        self.assertIsNone(harness.sanitizer_report(daemon.all_logs()), daemon.all_logs())

    def assert_locked(self, path):
        with open(path) as f:
            with self.assertRaises(BlockingIOError, msg=f"{path} is not locked"):
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def test_daemonize_detaches_locks_the_pidfile_serves_and_stops(self):
        daemon = self.start_daemon()
        self.assertTrue(alive(daemon.pid) and daemon.is_ours())
        self.assertNotEqual(os.getsid(daemon.pid), os.getsid(0), "a session of its own")
        self.assertNotEqual(os.getsid(daemon.pid), daemon.pid, "not a session leader")
        self.assertEqual(os.readlink(f"/proc/{daemon.pid}/cwd"), "/")
        self.assert_locked(daemon.pidfile)
        with daemon.connect() as c:
            assert_echo(c, b"hello from the test")

        code, _, err = run_slabd(*daemon.args)
        self.assertEqual(code, 1, err)
        self.assertIn(f"pidfile {daemon.pidfile} is locked", err)
        self.assertIn(f"already running as pid {daemon.pid}", err)
        self.assertEqual(int(read_text(daemon.pidfile)), daemon.pid, "the refused one left it alone")
        with daemon.connect() as c:
            assert_echo(c, b"still serving")
        self.stop_daemon(daemon)

    def test_bind_error_reaches_the_terminal(self):
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            daemon = Daemon(self, "--listen", f"127.0.0.1:{taken.getsockname()[1]}")
            code, err = daemon.launch()
        self.assertEqual(code, 1, err)
        self.assertIn("cannot start", err)
        self.assertFalse(os.path.exists(daemon.pidfile), "no pidfile from a failed start")

    def test_sighup_reopens_the_log_and_reloads_settings(self):
        daemon = self.start_daemon()
        rotated = daemon.log + ".1"
        os.rename(daemon.log, rotated)
        daemon.write_config('[timeouts]\nidle = "1s"\n[log]\nlevel = "debug"\n'
                            '[pool]\nmax_connections = 7\nbuffer_count = 7\n')
        daemon.signal(signal.SIGHUP)
        daemon.wait_log('reload: changed timeouts.idle "5m" -> "1s"', "the reload")
        daemon.logs_seen.append(read_text(rotated))
        log = read_text(daemon.log)
        self.assertIn('reload: changed log.level "info" -> "debug"', log)
        self.assertIn("reload: changed pool.max_connections 10000 -> 7", log)
        self.assertIn("only a restart applies: pool.buffer_count", log)
        self.assertNotIn("SIGHUP", daemon.logs_seen[0], "the old file got nothing after the rename")

        # The shards took the new idle timeout: an idle client is closed within seconds.
        with daemon.connect() as c:
            assert_echo(c, b"then silence")
            self.assertEqual(c.recv(1), b"", "closed by the 1 s idle timeout")

        daemon.write_config('[timeouts]\nidle = "soon"\n')
        daemon.signal(signal.SIGHUP)
        daemon.wait_log("reload failed, keeping the running settings", "the failed reload")
        self.assertIn('"soon"', read_text(daemon.log), "the error names the bad value")
        with daemon.connect() as c:
            assert_echo(c, b"still serving after a bad config")
        self.stop_daemon(daemon)

    def test_foreground_with_pidfile(self):
        directory = tempfile.TemporaryDirectory(prefix="slabd-test-")
        self.addCleanup(directory.cleanup)
        pidfile = os.path.join(directory.name, "slabd.pid")
        server = self.start("--pidfile", pidfile)
        self.assertEqual(int(read_text(pidfile)), server.pid)
        self.assert_locked(pidfile)
        code, _, err = run_slabd("--pidfile", pidfile, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0")
        self.assertEqual(code, 1, err)
        self.assertIn(f"already running as pid {server.pid}", err)
        self.stop(server)
        self.assertFalse(os.path.exists(pidfile))

    def test_systemd_notify_protocol(self):
        directory = tempfile.TemporaryDirectory(prefix="slabd-test-")
        self.addCleanup(directory.cleanup)
        address = os.path.join(directory.name, "notify")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(listener.close)
        listener.bind(address)
        listener.settimeout(WAIT)
        os.environ["NOTIFY_SOCKET"] = address
        try:
            server = self.start()
        finally:
            del os.environ["NOTIFY_SOCKET"]
        with open(f"/proc/{server.pid}/maps") as f:
            if "libsystemd" not in f.read():
                self.skipTest("slabd was built without libsystemd")

        def expect(state):
            got = listener.recv(4096).decode()
            self.assertIn(state, got.split("\n"), f"expected {state}\n{server.output()}")

        expect("READY=1")
        server.signal(signal.SIGHUP)
        expect("RELOADING=1")
        expect("READY=1")
        server.signal(signal.SIGTERM)
        expect("STOPPING=1")
        self.stop(server)

    def test_json_log_lines_parse(self):
        path = self.write_config('[timeouts]\nidle = "5m"\n')
        server = self.start("--config", path, "--log-format", "json")
        with open(path, "w") as f:
            f.write('[timeouts]\nidle = "a \\"quoted\\" \\\\ value"\n')
        server.signal(signal.SIGHUP)
        deadline = time.monotonic() + WAIT
        while "reload failed" not in server.stderr():
            self.assertLess(time.monotonic(), deadline, server.output())
            time.sleep(POLL)
        self.stop(server)
        lines = server.stderr().splitlines()
        self.assertGreaterEqual(len(lines), 4, server.output())
        for line in lines:
            record = json.loads(line)
            self.assertEqual(sorted(record), ["level", "message", "time"], line)
            self.assertRegex(record["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        failed = next(json.loads(l) for l in lines if "reload failed" in l)
        self.assertEqual(failed["level"], "error")
        self.assertIn('"a \\"quoted\\" \\\\ value"', failed["message"])


if __name__ == "__main__":
    harness.main()
