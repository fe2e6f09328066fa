"""The command line and the config file, as an operator meets them: every mistake is refused with
exit code 2 and one message that says where (flag, or file:line and key) and what was expected;
--check-config prints the effective configuration; --help and --version exit 0."""

import json
import os
import re
import socket
import tempfile
import time

import harness
from harness import run_slabd


class ConfigTest(harness.SlabdTest):
    def assert_usage_error(self, args, *expected):
        code, out, err = run_slabd(*args)
        self.assertEqual(code, 2, f"{args}: exit code\nstderr: {err}")
        self.assertEqual(out, "", f"{args}: a refusal goes to stderr only")
        for fragment in expected:
            self.assertIn(fragment, err, f"{args}: the message names {fragment!r}")
        self.assertIsNone(harness.sanitizer_report(err))
        return err

    def test_help_and_version(self):
        code, out, err = run_slabd("--help")
        self.assertEqual(code, 0, err)
        self.assertIn("Usage", out)
        self.assertIn("--max-connections", out)
        code, out, err = run_slabd("--version")
        self.assertEqual(code, 0, err)
        self.assertRegex(out, r"^slabd \d+\.\d+\.\d+")

    def test_bad_flags(self):
        self.assert_usage_error(["--max-connections", "lots"], "--max-connections", '"lots"', "integer")
        self.assert_usage_error(["--max-connections", "0"], "--max-connections", "1..")
        self.assert_usage_error(["--mode", "bogus"], "--mode", '"bogus"', '"echo"', '"proxy"')
        self.assert_usage_error(["--listen", "nohost"], "--listen", '"nohost"', "HOST:PORT")
        self.assert_usage_error(["--idle-timeout", "soon"], "--idle-timeout", '"soon"', "duration")
        self.assert_usage_error(["--frobnicate"], "--frobnicate")
        self.assert_usage_error(["--mode", "proxy"], "upstream")

    def test_unknown_key_names_file_line_and_key(self):
        path = self.write_config("[server]\nmode = \"echo\"\n\n[pool]\nmax_connection = 10\n")
        self.assert_usage_error(["--config", path], f"{path}:5:", "pool.max_connection", "unknown key",
                                "max_connections")

    def test_unknown_table(self):
        path = self.write_config("[pools]\nmax_connections = 10\n")
        self.assert_usage_error(["--config", path], f"{path}:1:", "[pools]", "unknown table")

    def test_wrong_type_names_file_line_and_key(self):
        path = self.write_config("# threads as a word\n[server]\nthreads = \"four\"\n")
        self.assert_usage_error(["--config", path], f"{path}:3:", "server.threads", '"four"', "integer")

    def test_out_of_range_names_file_line_and_key(self):
        path = self.write_config("[timeouts]\nidle = \"1s\"\nshutdown_grace = \"2d\"\n")
        self.assert_usage_error(["--config", path], f"{path}:3:", "timeouts.shutdown_grace", '"2d"')

    def test_syntax_error_names_file_and_line(self):
        path = self.write_config("[server]\nmode = \"echo\"\nlisten = 127.0.0.1:7000\n")
        err = self.assert_usage_error(["--config", path], f"{path}:3:")
        self.assertEqual(len(err.strip().splitlines()), 1, f"one message, not a dump:\n{err}")

    def test_missing_file(self):
        path = os.path.join(tempfile.gettempdir(), "slabd-no-such-dir", "slabd.toml")
        self.assert_usage_error(["--config", path], path, "cannot open")

    def assert_bad_file(self, path, *expected, within=5.0):
        """A file slabd must refuse unread: exit 2, its name in the message, quickly, no abort."""
        started = time.monotonic()
        code, out, err = run_slabd("--config", path, timeout=within)
        elapsed = time.monotonic() - started
        self.assertEqual(code, 2, f"{path}: exit code\nstderr: {err}")
        self.assertEqual(out, "", f"{path}: a refusal goes to stderr only")
        self.assertIn(path, err)
        for fragment in expected:
            self.assertIn(fragment, err, f"{path}: the message names {fragment!r}")
        self.assertEqual(len(err.strip().splitlines()), 1, f"one message, not a dump:\n{err}")
        self.assertIsNone(harness.sanitizer_report(err))
        self.assertLess(elapsed, within)

    def test_devices_are_refused_unread(self):
        # Read to the end, /dev/zero and /dev/urandom never end.
        self.assert_bad_file("/dev/zero", "character device", "not a regular file")
        self.assert_bad_file("/dev/urandom", "character device", "not a regular file")

    def test_fifo_without_a_writer_is_refused_at_once(self):
        directory = tempfile.TemporaryDirectory(prefix="slabd-test-")
        self.addCleanup(directory.cleanup)
        fifo = os.path.join(directory.name, "slabd.toml")
        os.mkfifo(fifo)
        self.assert_bad_file(fifo, "FIFO", "not a regular file", within=2.0)

    def test_directory_is_refused(self):
        path = os.path.dirname(self.write_config(""))
        self.assert_bad_file(path, "directory", "not a regular file")

    def test_file_over_one_mib_is_refused(self):
        # Comments only: valid TOML, so only the size can refuse it.
        line = "# " + "x" * 77 + "\n"
        path = self.write_config(line * (2 * 1024 * 1024 // len(line)))
        self.assert_bad_file(path, str(os.path.getsize(path)), "1048576 bytes")

    def test_file_of_one_mib_is_accepted(self):
        line = "# " + "x" * 77 + "\n"
        path = self.write_config(line * (1024 * 1024 // len(line)))
        code, out, err = run_slabd("--config", path, "--check-config")
        self.assertEqual(code, 0, err)

    def test_check_config_prints_the_effective_config(self):
        path = self.write_config("[pool]\nmax_connections = 321\n\n[timeouts]\nshutdown_grace = \"2s\"\n")
        code, out, err = run_slabd("--config", path, "--on-exhausted", "pause", "--check-config")
        self.assertEqual(code, 0, err)
        self.assertIn("max_connections = 321", out)  # from the file
        self.assertIn('on_exhausted = "pause"', out)  # from the flag
        self.assertIn('shutdown_grace = "2s"', out)
        self.assertIn('mode = "echo"', out)  # a default
        # What it prints is itself a valid config that means the same.
        printed = self.write_config(out, "printed.toml")
        code, again, err = run_slabd("--config", printed, "--check-config")
        self.assertEqual(code, 0, err)
        strip_header = lambda text: re.sub(r"^#[^\n]*\n", "", text)
        self.assertEqual(strip_header(again), strip_header(out))

    def test_config_route_round_trips_through_a_config_file(self):
        # Away from the defaults in every table, so that a key /config dropped, renamed or
        # reformatted would not come back the same.
        path = self.write_config(
            '[server]\nmode = "proxy"\nthreads = 1\ntrusted_sources = ["10.0.0.0/8"]\n\n'
            '[pool]\nmax_connections = 77\non_exhausted = "evict-idle"\nevict_idle_after = "90s"\n'
            'busy_message = "busy, \\"try later\\""\nbuffer_count = 64\nbuffer_size = 4096\n\n'
            '[limits]\nmax_per_source = 9\naccept_rate = 500\nsource_prefix_v6 = 56\n\n'
            '[timeouts]\nidle = "2m"\nconnect = "1500ms"\nshutdown_grace = "3s"\n\n'
            '[proxy]\nupstreams = ["127.0.0.1:9", "[::1]:10"]\nbalance = "least-connections"\n'
            'send_proxy = "v2"\nresolve_interval = "0s"\n\n'
            '[health_check]\ninterval = "4s"\nrise = 3\nsend = "PING\\r\\n"\nexpect = "PONG"\n\n'
            '[log]\nlevel = "debug"\nformat = "json"\n\n[admin]\nready_headroom = 5\n')
        first = self.start("--config", path)
        status, shown = first.get("/config")
        self.assertEqual(status, 200)
        shown = json.loads(shown)
        self.assertEqual(shown["source_file"], path)
        self.assertEqual(shown["timeouts"]["idle"], "2m")  # the file's names and formats
        self.assertEqual(shown["timeouts"]["connect"], "1500ms")
        self.stop(first)

        # Every JSON literal /config gives is a TOML literal, so it is written back as it came.
        lines = []
        for table, keys in shown.items():
            if table == "source_file":
                continue
            lines.append(f"[{table}]")
            lines += [f"{key} = {json.dumps(value)}" for key, value in keys.items()]
            lines.append("")
        again_path = self.write_config("\n".join(lines), "from-config-route.toml")
        code, out, err = run_slabd("--config", again_path, "--check-config")
        self.assertEqual(code, 0, err)
        again = self.start("--config", again_path)
        status, body = again.get("/config")
        again_shown = json.loads(body)
        self.assertEqual(again_shown.pop("source_file"), again_path)
        shown.pop("source_file")
        self.assertEqual(again_shown, shown)
        self.stop(again)

    def test_check_config_rejects_what_serving_would(self):
        path = self.write_config("[server]\nthreads = 2000\n")
        self.assert_usage_error(["--config", path, "--check-config"], f"{path}:2:", "server.threads")

    def test_flags_override_the_file_when_serving(self):
        path = self.write_config("[pool]\nmax_connections = 3\n\n[server]\nthreads = 1\n")
        server = self.start("--config", path, "--max-connections", "7")
        self.assertEqual(server.capacity, 7)
        self.assertEqual(server.threads, 1)
        self.stop(server)

    def test_port_in_use_is_a_runtime_failure(self):
        with socket.create_server(("127.0.0.1", 0)) as taken:
            port = taken.getsockname()[1]
            code, out, err = run_slabd("--listen", f"127.0.0.1:{port}", "--admin", "127.0.0.1:0")
        self.assertEqual(code, 1, err)
        self.assertIn("cannot start", err)
        self.assertIsNone(harness.sanitizer_report(err))


if __name__ == "__main__":
    harness.main()
