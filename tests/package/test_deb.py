#!/usr/bin/env python3
"""The Debian package, installed into a clean Debian 12 root and run as its system user.

    python3 tests/package/test_deb.py build/package/slabd_VERSION_amd64.deb

A clean root is `debootstrap --variant=minbase bookworm` from the mirror apt already uses: the
package's dependencies must come from its own Depends (shlibdeps), not from whatever this machine
has. The pristine root is kept in build/package/clean-root and copied for each run. Needs root
(debootstrap, chroot) and the network to the mirror, as apt does. The test re-runs itself in a
private mount namespace, so that the /proc it mounts in the root goes away with it.
"""

import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest

DEB = pathlib.Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else None
BUILD = pathlib.Path(__file__).resolve().parents[2] / "build" / "package"
PRISTINE = BUILD / "clean-root"
ROOT = None  # this run's copy of the clean root


def mirror():
    """The Debian mirror apt on this machine uses (deb822 or one-line sources)."""
    texts = [p.read_text() for p in pathlib.Path("/etc/apt").glob("sources.list.d/*.sources")]
    for text in texts:
        for stanza in text.split("\n\n"):
            if re.search(r"^Suites:.*\bbookworm\b", stanza, re.M):
                uri = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
                if uri and "security" not in uri.group(1):
                    return uri.group(1)
    sources = pathlib.Path("/etc/apt/sources.list")
    if sources.exists():
        for line in sources.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 3 and fields[0] == "deb" and fields[2] == "bookworm":
                return fields[1]
    return "http://deb.debian.org/debian"


def run(*args, timeout=600, check=True, **kwargs):
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} exited {result.returncode}:\n"
                             f"{result.stdout[-3000:]}{result.stderr[-3000:]}")
    return result


def in_root(*args, user=None, **kwargs):
    spec = [f"--userspec={user}:{user}"] if user else []
    return run("chroot", *spec, str(ROOT), *args, **kwargs)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def set_up_root():
    global ROOT
    if not (PRISTINE / "usr" / "bin" / "apt-get").exists():
        shutil.rmtree(PRISTINE, ignore_errors=True)
        started = time.monotonic()
        run("debootstrap", "--variant=minbase", "bookworm", str(PRISTINE), mirror(), timeout=900)
        print(f"debootstrap: clean root in {time.monotonic() - started:.0f} s", flush=True)
    ROOT = pathlib.Path(tempfile.mkdtemp(prefix="root-", dir=BUILD))
    run("cp", "-a", f"{PRISTINE}/.", str(ROOT))
    shutil.copy("/etc/resolv.conf", ROOT / "etc" / "resolv.conf")
    run("mount", "-t", "proc", "proc", str(ROOT / "proc"))
    shutil.copy(DEB, ROOT / "tmp" / DEB.name)
    started = time.monotonic()
    in_root("apt-get", "update", "-q")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = in_root("apt-get", "install", "-y", "--no-install-recommends", f"/tmp/{DEB.name}",
                      env=env)
    print(f"apt-get install ./{DEB.name}: {time.monotonic() - started:.0f} s", flush=True)
    return install.stdout


class InstalledPackage(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.install_log = set_up_root()

    @classmethod
    def tearDownClass(cls):
        run("umount", str(ROOT / "proc"), check=False)
        shutil.rmtree(ROOT, ignore_errors=True)

    def test_1_dependencies_come_from_the_package(self):
        # A minbase root has none of slabd's libraries: apt installed them for its Depends.
        for library in ("libtomlplusplus3", "libspdlog1.10", "libfmt9", "libhttp-parser2.9", "adduser"):
            status = in_root("dpkg-query", "-W", "-f=${db:Status-Status}", library).stdout
            self.assertEqual(status, "installed", library)
        missing = in_root("sh", "-c", "ldd /usr/bin/slabd /usr/bin/slabd-load | grep 'not found'",
                          check=False)
        self.assertEqual(missing.stdout, "")

    def test_2_files_where_debian_expects_them(self):
        for path in ("usr/bin/slabd", "usr/bin/slabd-load", "etc/slabd/slabd.toml",
                     "etc/logrotate.d/slabd", "usr/lib/systemd/system/slabd.service",
                     "usr/share/man/man1/slabd.1.gz", "usr/share/man/man1/slabd-load.1.gz"):
            self.assertTrue((ROOT / path).is_file(), path)
        unit = (ROOT / "usr/lib/systemd/system/slabd.service").read_text()
        self.assertIn("ExecStart=/usr/bin/slabd --config /etc/slabd/slabd.toml", unit)
        self.assertIn("User=slabd", unit)
        self.assertNotRegex(unit, r"@[A-Z_]+@", "a placeholder CMake left unfilled")
        conffiles = in_root("dpkg-query", "-W", "-f=${Conffiles}", "slabd").stdout
        self.assertIn("/etc/slabd/slabd.toml", conffiles)
        self.assertIn("/etc/logrotate.d/slabd", conffiles)
        page = in_root("sh", "-c", "gzip -dc /usr/share/man/man1/slabd.1.gz").stdout
        self.assertIn("--max-connections", page.replace("\\-", "-"))
        self.assertIn("SIGUSR2", page)

    def test_3_system_user_and_unit_installed_not_started(self):
        entry = in_root("getent", "passwd", "slabd").stdout.strip().split(":")
        self.assertLess(int(entry[2]), 1000, "a system user")
        self.assertEqual(entry[6], "/usr/sbin/nologin")
        self.assertEqual(in_root("getent", "group", "slabd").returncode, 0)
        wants = ROOT / "etc/systemd/system/multi-user.target.wants/slabd.service"
        self.assertFalse(wants.exists(), "the package must not enable the unit")

    def test_4_runs_as_its_user_and_serves(self):
        in_root("slabd", "--check-config", "--config", "/etc/slabd/slabd.toml", user="slabd")
        data, admin = free_port(), free_port()
        flags = ["--config", "/etc/slabd/slabd.toml", "--listen", f"127.0.0.1:{data}",
                 "--admin", f"127.0.0.1:{admin}"]
        server = subprocess.Popen(["chroot", "--userspec=slabd:slabd", str(ROOT), "/usr/bin/slabd",
                                   *flags], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True)
        try:
            deadline = time.monotonic() + 20
            while in_root("slabd", *flags, "--probe", "/healthz", user="slabd",
                          check=False).returncode != 0:
                self.assertIsNone(server.poll(), "slabd exited")
                self.assertLess(time.monotonic(), deadline, "slabd never became healthy")
                time.sleep(0.1)
            uid = int(in_root("id", "-u", "slabd").stdout)
            status = pathlib.Path(f"/proc/{server.pid}/status").read_text()
            self.assertEqual(int(re.search(r"^Uid:\s+(\d+)", status, re.M).group(1)), uid)

            with socket.create_connection(("127.0.0.1", data), timeout=5) as client:
                client.sendall(b"hello from the host\n")
                echoed = b""
                while len(echoed) < 20:
                    chunk = client.recv(64)
                    self.assertTrue(chunk, "EOF before the echo")
                    echoed += chunk
                self.assertEqual(echoed, b"hello from the host\n")
            load = in_root("slabd-load", "rr", "--target", f"127.0.0.1:{data}", "-c", "4",
                           "--messages", "400", user="slabd")
            self.assertRegex(load.stdout + load.stderr, r"\b400\b")
            stats = in_root("slabd", *flags, "--probe", "/stats", user="slabd").stdout
            self.assertRegex(stats, r'"accepted":\s*5\b')
        finally:
            server.terminate()
            output, _ = server.communicate(timeout=30)
        self.assertEqual(server.returncode, 0, output)

    def test_5_purge_removes_the_package_and_its_conffiles(self):
        in_root("apt-get", "purge", "-y", "slabd")
        self.assertFalse((ROOT / "usr/bin/slabd").exists())
        self.assertFalse((ROOT / "etc/slabd/slabd.toml").exists())
        self.assertEqual(in_root("getent", "passwd", "slabd").returncode, 0,
                         "the user stays (Debian policy: its files may outlive the package)")


if __name__ == "__main__":
    if DEB is None or not DEB.is_file():
        sys.exit("usage: test_deb.py PATH/slabd_VERSION_ARCH.deb")
    if os.geteuid() != 0:
        sys.exit("test_deb.py needs root: debootstrap and chroot")
    if os.environ.get("SLABD_DEB_TEST_NAMESPACE") != "1":
        os.environ["SLABD_DEB_TEST_NAMESPACE"] = "1"
        os.execvp("unshare", ["unshare", "--mount", "--propagation", "private", sys.executable,
                              *sys.argv])
    BUILD.mkdir(parents=True, exist_ok=True)
    unittest.main(argv=sys.argv[:1], verbosity=2)
