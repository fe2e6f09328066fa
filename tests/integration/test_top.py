"""`slabd top` in a real terminal: a detached tmux session runs it and capture-pane reads the screen
back. The view shows what /stats says, keeps retrying while the daemon is away, and quits on q and
on Ctrl-C with the screen and the cursor put back. Without a terminal it prints plain frames, and
an endpoint it cannot reach at all is exit 1."""

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

import harness
from harness import WAIT

CAPACITY = 4
REFUSED = 3
INTERVAL = "200ms"


class TopTest(harness.SlabdTest):
    def setUp(self):
        self.tmux_bin = shutil.which("tmux")
        self.assertIsNotNone(self.tmux_bin, "tmux missing: scripts/install-deps.sh test installs it")
        self.server = self.start("--threads", "2", "--max-connections", str(CAPACITY))
        # A full pool and a few newcomers refused for it: numbers the view must show.
        self.clients = self.connect_all(self.server, CAPACITY)
        self.server.wait_stats(lambda s: s["pool"]["in_use"] == CAPACITY, "the pool to fill")
        for _ in range(REFUSED):
            with self.server.connect() as c:
                c.recv(1)
        self.stats = self.server.wait_stats(
            lambda s: s["connections"]["refused_by_reason"]["pool_full"] == REFUSED,
            "the newcomers to be refused")
        # Our own tmux server, started without the user's config, on a socket in a directory of
        # ours, and killed whatever happens.
        directory = tempfile.TemporaryDirectory(prefix="slabd-top-")
        self.addCleanup(directory.cleanup)
        self.socket = os.path.join(directory.name, "tmux")
        self.addCleanup(subprocess.run, [self.tmux_bin, "-S", self.socket, "kill-server"],
                        capture_output=True, timeout=WAIT)

    def stop_server(self):
        """Clients first: slabd would wait its shutdown grace for them."""
        harness.close_all(self.clients)
        self.stop(self.server)

    def tmux(self, *args):
        done = subprocess.run([self.tmux_bin, "-S", self.socket, "-f", "/dev/null", *args],
                              capture_output=True, text=True, timeout=WAIT)
        self.assertEqual(done.returncode, 0, f"tmux {' '.join(args)}: {done.stderr}")
        return done.stdout

    def run_in_tmux(self, name):
        """slabd top in a 120x40 pane. The shell around it reports the exit code and stays, so that
        the pane can be read after top is gone; it traps SIGINT so that Ctrl-C reaches top alone."""
        self.tmux("new-session", "-d", "-s", name, "-x", "120", "-y", "40", "sh", "-c",
                  'trap : INT; "$@"; echo "slabd top exited with $?"; exec sleep 600', "sh",
                  harness.SLABD, "top", "--admin", f"127.0.0.1:{self.server.admin_port}",
                  "--interval", INTERVAL)

    def screen(self, name):
        return self.tmux("capture-pane", "-p", "-t", name)

    def terminal_modes(self, name):
        """(alternate screen on, cursor visible) of the pane."""
        alternate, cursor = self.tmux("display-message", "-p", "-t", name,
                                      "#{alternate_on} #{cursor_flag}").split()
        return alternate == "1", cursor == "1"

    def wait_screen(self, name, condition, what):
        deadline = time.monotonic() + WAIT
        while True:
            text = self.screen(name)
            if condition(text):
                return text
            if time.monotonic() > deadline:
                self.fail(f"waited {WAIT:.0f} s for {what}; the pane shows:\n{text}")
            time.sleep(harness.POLL)

    def assert_numbers_match_stats(self, text):
        pool, refused = self.stats["pool"], self.stats["connections"]["refused_by_reason"]

        def shown(pattern):
            m = re.search(pattern, text)
            self.assertIsNotNone(m, f"{pattern!r} not on the screen:\n{text}")
            return int(m[1])

        self.assertEqual(shown(r"in use (\d+)"), pool["in_use"])
        self.assertEqual(shown(r"capacity (\d+)"), pool["capacity"])
        self.assertEqual(shown(r"limit (\d+)"), pool["limit"])
        self.assertEqual(shown(r"high water (\d+)"), pool["high_water"])
        self.assertEqual(shown(r"pool_full +(\d+)"), refused["pool_full"])
        self.assertEqual(shown(r"refused (\d+)"), self.stats["connections"]["refused"])
        # A rate needs a second poll: its appearance shows that the view redraws.
        self.assertRegex(text, r"accepts/s \d+\.\d")

    def assert_exited_cleanly(self, name):
        self.wait_screen(name, lambda t: "slabd top exited with" in t, "slabd top to exit")
        text = self.screen(name)
        self.assertIn("slabd top exited with 0", text)
        self.assertEqual(self.terminal_modes(name), (False, True),
                         "the alternate screen left and the cursor shown again")
        # The shell's screen is back: the frame went with the alternate screen.
        self.assertNotIn("in use", text)

    def test_the_live_view_shows_stats_and_quits_on_q(self):
        self.run_in_tmux("q")
        text = self.wait_screen("q", lambda t: re.search(r"accepts/s \d", t), "a frame with rates")
        self.assertEqual(self.terminal_modes("q"), (True, False), "alternate screen, cursor hidden")
        self.assert_numbers_match_stats(text)
        self.assertIn("[" + "#" * 60 + "] 100%", text)
        self.assertRegex(text, r"(?m)^ +0 +\d+ +\d+ ")
        self.assertRegex(text, r"(?m)^ +1 +\d+ +\d+ ")
        self.tmux("send-keys", "-t", "q", "q")
        self.assert_exited_cleanly("q")
        self.stop_server()

    def test_it_retries_while_the_daemon_is_away_and_quits_on_ctrl_c(self):
        self.run_in_tmux("c")
        self.wait_screen("c", lambda t: re.search(r"accepts/s \d", t), "a frame with rates")
        self.stop_server()
        text = self.wait_screen("c", lambda t: "no answer, retrying: cannot connect" in t,
                                "the view to report the daemon gone")
        # The last frame stays under the error, for context.
        self.assertIn(f"in use {CAPACITY}", text)
        self.tmux("send-keys", "-t", "c", "C-c")
        self.assert_exited_cleanly("c")

    def test_once_without_a_terminal_prints_one_plain_frame(self):
        code, out, err = harness.run_slabd("top", "--once", "--interval", INTERVAL, "--admin",
                                           f"127.0.0.1:{self.server.admin_port}")
        self.assertEqual((code, err), (0, ""))
        self.assertNotIn("\x1b", out)
        self.assertEqual(out.count("pool_full"), 1, f"one frame:\n{out}")
        self.assert_numbers_match_stats(out)
        self.stop_server()

    def test_without_a_terminal_it_prints_a_plain_frame_per_interval(self):
        top = subprocess.Popen([harness.SLABD, "top", "--interval", INTERVAL, "--admin",
                                f"127.0.0.1:{self.server.admin_port}"],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
        self.addCleanup(top.kill)
        frames = 0
        deadline = time.monotonic() + WAIT
        while frames < 3 and time.monotonic() < deadline:
            frames += top.stdout.readline().startswith("slabd top: ")
        self.assertEqual(frames, 3)
        top.send_signal(signal.SIGINT)
        out, _ = top.communicate(timeout=WAIT)
        self.assertEqual(top.returncode, 0)
        self.assertNotIn("\x1b", out)
        self.stop_server()

    def test_an_endpoint_it_cannot_reach_is_exit_1(self):
        closed, port = harness.refused_port()
        self.addCleanup(closed.close)
        for extra in (["--once"], []):
            code, out, err = harness.run_slabd("top", *extra, "--admin", f"127.0.0.1:{port}")
            self.assertEqual((code, out), (1, ""))
            self.assertIn("slabd top: cannot connect to the admin endpoint", err)
        code, _, err = harness.run_slabd("top", "--interval", "1ms")
        self.assertEqual(code, 2)
        self.assertIn("--interval", err)
        self.stop_server()


if __name__ == "__main__":
    harness.main()
