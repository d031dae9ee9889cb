#!/usr/bin/env python3
"""cmake --install into a DESTDIR (the configured prefix): the binaries, the example
configurations, the documentation and the systemd units (one per deploy/systemd/*.service.in)
land where docs/operations.md says; each unit starts the installed binary; the installed binaries
run --version and accept the installed examples with --check; a broken copy of an example is
refused with exit code 2.

usage: test_install.py CMAKE BUILD_DIR SOURCE_DIR PREFIX"""

import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

CMAKE, BUILD, SOURCE, PREFIX = sys.argv[1:5] if len(sys.argv) >= 5 else (None,) * 4


def sanitizer_env():
    env = dict(os.environ)
    # A sanitizer build's binaries: leak checks belong to the other tests.
    env.setdefault("ASAN_OPTIONS", "detect_leaks=0")
    return env


class InstallTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dest = tempfile.mkdtemp(prefix="cascade-install-")
        env = sanitizer_env()
        env["DESTDIR"] = cls.dest
        # the configured prefix: the units name the binaries' installed paths
        r = subprocess.run([CMAKE, "--install", BUILD], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=120)
        cls.install_log = r.stdout
        assert r.returncode == 0, r.stdout
        cls.root = cls.dest + PREFIX

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dest, ignore_errors=True)

    def path(self, *parts):
        return os.path.join(self.root, *parts)

    def run_bin(self, name, *args):
        return subprocess.run([self.path("bin", name)] + list(args), env=sanitizer_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              timeout=60)

    def test_files(self):
        for b in ("cascade-controller", "cascade-agent"):
            p = self.path("bin", b)
            self.assertTrue(os.path.isfile(p), p)
            self.assertTrue(os.access(p, os.X_OK), p)
        doc = self.path("share", "doc", "cascade")
        for name in ("README.md", "configuration.md", "operations.md", "api.md"):
            self.assertTrue(os.path.isfile(os.path.join(doc, name)), name)
        for name in ("controller.yaml", "agent.yaml"):
            self.assertTrue(os.path.isfile(os.path.join(doc, "examples", name)), name)
        units = sorted(os.path.basename(u)[:-3] for u in glob.glob(
            os.path.join(SOURCE, "deploy", "systemd", "*.service.in")))
        installed = glob.glob(self.path("lib", "systemd", "system", "*.service"))
        self.assertEqual(sorted(os.path.basename(u) for u in installed), units)
        for u in installed:
            with open(u) as f:
                text = f.read()
            m = re.search(r"^ExecStart=(\S+)", text, re.M)
            self.assertIsNotNone(m, u)
            # the path the unit starts is the binary installed (under DESTDIR)
            self.assertTrue(os.path.isfile(self.dest + m.group(1)), m.group(1))
            self.assertNotIn("@", text, u)
        # nothing of the test suite is installed
        self.assertEqual(sorted(os.listdir(self.path("bin"))),
                         ["cascade-agent", "cascade-controller"])

    def test_version(self):
        for b in ("cascade-controller", "cascade-agent"):
            r = self.run_bin(b, "--version")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertRegex(r.stdout, r"^%s \d+\.\d+\.\d+\n$" % b)

    def test_examples_pass_check(self):
        ex = self.path("share", "doc", "cascade", "examples")
        r = self.run_bin("cascade-controller", "-c", os.path.join(ex, "controller.yaml"),
                         "--check")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.run_bin("cascade-agent", "-c", os.path.join(ex, "agent.yaml"), "--check")
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_broken_example_exits_2(self):
        ex = self.path("share", "doc", "cascade", "examples", "agent.yaml")
        bad = os.path.join(self.dest, "bad-agent.yaml")
        with open(ex) as f:
            text = f.read()
        with open(bad, "w") as f:
            f.write(text.replace("format: text", "format: xml"))
        r = self.run_bin("cascade-agent", "-c", bad, "--check")
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("log.format", r.stderr)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
