#!/usr/bin/env python3
"""The systemd units (deploy/systemd/*.service.in, docs/deploy.md "systemd"): each, with
ExecStart pointing at this build's binaries, passes `systemd-analyze verify` without a single
warning (unknown keys, bad values and a missing executable are all reported there); and the
check itself is shown to catch a misspelt key. What `verify` cannot show (the sandboxing at run
time) needs a machine whose PID 1 is systemd: not this test."""

import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
UNITS = os.path.join(ROOT, "deploy", "systemd")
BIN = os.environ.get("CASCADE_BIN_DIR", os.path.join(ROOT, "build", "bin"))


def verify(paths):
    r = subprocess.run(["systemd-analyze", "verify"] + paths, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=60)
    return r.returncode, r.stdout.strip()


class SystemdTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not shutil.which("systemd-analyze"):
            raise unittest.SkipTest("systemd-analyze not installed")
        cls.tmp = tempfile.mkdtemp(prefix="cascade-systemd-")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def unit(self, name, edit=None):
        with open(os.path.join(UNITS, name + ".in")) as f:
            text = f.read()
        text = text.replace("@CASCADE_BINDIR@", BIN).replace("@CASCADE_DOCDIR@", "/usr/share/doc")
        self.assertNotIn("@", text.replace("$MAINPID", ""), "an unsubstituted @VAR@ in " + name)
        if edit:
            text = edit(text)
        d = tempfile.mkdtemp(dir=self.tmp)
        path = os.path.join(d, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_units_verify_clean(self):
        names = sorted(n[:-3] for n in os.listdir(UNITS) if n.endswith(".service.in"))
        self.assertEqual(names, ["cascade-agent.service", "cascade-controller.service"])
        for n in names:
            rc, out = verify([self.unit(n)])
            self.assertEqual((rc, out), (0, ""), n)
            with open(os.path.join(UNITS, n + ".in")) as f:
                text = f.read()
            for want in ("NoNewPrivileges=yes", "ProtectSystem=strict", "LimitNOFILE=",
                         "StateDirectory=", "Restart=on-failure", "RestartPreventExitStatus=2",
                         "User=cascade"):
                self.assertIn(want, text, "%s lacks %s" % (n, want))

    def test_check_catches_a_misspelt_key(self):
        rc, out = verify([self.unit("cascade-agent.service",
                                    lambda t: t.replace("ProtectHome=yes", "ProtectHom=yes"))])
        self.assertIn("ProtectHom", out)

    def test_check_catches_a_missing_binary(self):
        rc, out = verify([self.unit("cascade-agent.service",
                                    lambda t: t.replace(BIN, "/nonexistent"))])
        self.assertNotEqual(rc, 0, out)


if __name__ == "__main__":
    unittest.main()
