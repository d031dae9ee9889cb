#!/usr/bin/env python3
"""docs/configuration.md holds the key tables the binaries print with --print-config-doc:
each table in the document must be exactly what its program prints."""

import os
import subprocess
import unittest

import harness

DOC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs",
                   "configuration.md")


def doc_table(section):
    """The key table ('| key | ...') of the '## section' part, as lines."""
    with open(DOC, encoding="utf-8") as f:
        lines = f.read().splitlines()
    start = lines.index("## " + section)
    out = []
    for line in lines[start + 1:]:
        if line.startswith("## "):
            break
        if line.startswith("| key |") or (out and line.startswith("|")):
            out.append(line)
        elif out:
            break
    return out


def printed(binary):
    r = subprocess.run([os.path.join(harness.bin_dir(), binary), "--print-config-doc"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30,
                       env=harness.sanitizer_env())
    assert r.returncode == 0, r.stderr
    return [line for line in r.stdout.splitlines() if line.startswith("|")]


class ConfigDocTest(unittest.TestCase):
    def test_agent_table(self):
        self.assertEqual(doc_table("cascade-agent"), printed("cascade-agent"),
                         "docs/configuration.md differs from cascade-agent --print-config-doc")

    def test_controller_table(self):
        self.assertEqual(doc_table("cascade-controller"), printed("cascade-controller"),
                         "docs/configuration.md differs from cascade-controller --print-config-doc")


if __name__ == "__main__":
    unittest.main(verbosity=2)
