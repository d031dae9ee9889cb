#!/usr/bin/env python3
"""The QUIC link through cascade-netimpair: cascade-quicperf server and
client on loopback with the impairment proxy between them.

- 5 % loss each way and 50 ms RTT: the link stays up and 100 MB arrive
  intact (the client checks every byte of the SOURCE pattern).
- a 10 s blackhole, then the path comes back: data flows again within 2 s
  of the restore (max_probe_interval caps the backed-off probe timer).

Every wait is a condition with a deadline; the only timed wait is the
outage itself. CASCADE_BIN_DIR names the directory with the binaries
(default: build/bin of the source tree)."""
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN_DIR = os.environ.get("CASCADE_BIN_DIR", os.path.join(ROOT, "build", "bin"))
PERF = os.path.join(BIN_DIR, "cascade-quicperf")
PROXY = os.path.join(BIN_DIR, "cascade-netimpair")


def wait_for(cond, timeout, what):
    """Polls |cond| until it returns a true value or |timeout| seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(0.01)


class Proc:
    """A child whose stdout lines are collected by a thread."""

    def __init__(self, argv):
        self.argv = argv
        self.err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.err)
        self.lines = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for raw in self.proc.stdout:
            with self.lock:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    def find(self, pred):
        with self.lock:
            for line in self.lines:
                if pred(line):
                    return line
        return None

    def events(self, name):
        out = []
        with self.lock:
            for line in self.lines:
                if line.startswith("{"):
                    ev = json.loads(line)
                    if ev.get("event") == name:
                        out.append(ev)
        return out

    def wait_line(self, prefix, timeout):
        return wait_for(lambda: self.find(lambda l: l.startswith(prefix)) or
                        (self.proc.poll() is not None and self._dead()),
                        timeout, "%r from %s" % (prefix, os.path.basename(self.argv[0])))

    def _dead(self):
        raise AssertionError("%s exited early (%s): %s" % (self.argv[0], self.proc.returncode,
                                                           self.stderr()[-2000:]))

    def wait_exit(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("%s did not finish within %ss: %s" %
                                 (self.argv, timeout, self.stderr()[-2000:]))

    def stderr(self):
        self.err.seek(0)
        return self.err.read().decode(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.thread.join(5)
        return rc


class QuicImpairTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="quic_impair.")
        self.procs = []
        self.server = self.spawn([PERF, "server", "--listen", "127.0.0.1:0", "--pki", self.dir,
                                  "--cc", "bbr", "--window", "16000000",
                                  "--max-udp-payload", "1452"])
        port = int(self.server.wait_line("listen ", 30).rsplit(":", 1)[1])
        self.server.wait_line("ready", 10)
        self.proxy = self.spawn([PROXY, "--listen", "127.0.0.1:0", "--forward",
                                 "127.0.0.1:%d" % port, "--control", "127.0.0.1:0",
                                 "--seed", "7"])
        self.proxy_port = int(self.proxy.wait_line("listen ", 10).rsplit(":", 1)[1])
        ctl_port = int(self.proxy.wait_line("control ", 10).rsplit(":", 1)[1])
        self.proxy.wait_line("ready", 10)
        self.ctl = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.ctl.connect(("127.0.0.1", ctl_port))
        self.ctl.settimeout(5)

    def tearDown(self):
        self.ctl.close()
        rcs = [(p.argv[1] if p.argv[0] == PERF else "proxy", p.stop())
               for p in reversed(self.procs)]
        shutil.rmtree(self.dir, ignore_errors=True)
        for name, rc in rcs:  # ASan leak reports make the exit status nonzero
            self.assertIn(rc, (0, 3) if name == "client" else (0,),
                          "%s exited with %s" % (name, rc))

    def spawn(self, argv):
        p = Proc(argv)
        self.procs.append(p)
        return p

    def cmd(self, line):
        self.ctl.send(line.encode())
        reply = self.ctl.recv(65536).decode().strip()
        if line != "stats":
            self.assertEqual(reply, "ok", line)
        return reply

    def client(self, *args):
        # 1,452-byte packets, as on the WAN paths this proxy stands for (to a loopback peer the
        # links' automatic size is 16,000)
        return self.spawn([PERF, "client", "--connect", "127.0.0.1:%d" % self.proxy_port,
                           "--pki", self.dir, "--cc", "bbr", "--window", "16000000",
                           "--max-udp-payload", "1452", *args])

    def test_loss_5pct_rtt_50ms_100mb_intact(self):
        for d in ("up", "down"):
            self.cmd("set %s delay 25" % d)
            self.cmd("set %s loss 5" % d)
        total = 100 * 1000 * 1000
        cli = self.client("--service", "source", "--bytes", str(total), "--timeout", "100")
        rc = cli.wait_exit(110)
        summary = cli.events("summary")[-1]
        print("loss 5%%, RTT 50 ms: %d bytes in %.1f s, %.1f Mbit/s" %
              (summary["bytes"], summary["seconds"], summary["goodput_mbps"]))
        self.assertEqual(rc, 0, cli.stderr()[-2000:])
        self.assertEqual(summary["streams_ok"], 1)
        self.assertEqual(summary["mismatch"], 0)
        self.assertEqual(summary["bytes"], total)
        self.assertEqual(summary["conn_failures"], 0)  # the link never dropped
        st = json.loads(self.cmd("stats"))
        # The proxy really dropped about 5 % each way.
        for d in ("up", "down"):
            s = st[d]
            rate = s["dropped_loss"] / max(s["received"], 1)
            self.assertTrue(0.03 < rate < 0.07, "%s loss rate %.3f: %s" % (d, rate, s))

    def test_blackhole_10s_recovers_within_2s(self):
        self.cmd("set delay 5")
        cli = self.client("--service", "source", "--bytes", str(10 ** 13), "--progress", "0.02",
                          "--timeout", "60")

        def rcvd():
            ev = cli.events("progress")
            return ev[-1]["rcvd"] if ev else 0

        wait_for(lambda: rcvd() > 4 << 20, 20, "data flowing")
        self.cmd("blackhole on")
        on = time.time()
        time.sleep(1.0)
        frozen = rcvd()
        time.sleep(9.0)  # the outage itself
        self.assertLess(rcvd() - frozen, 1 << 16, "data flowed through the blackhole")
        before = rcvd()
        self.cmd("blackhole off")
        off = time.time()

        def resumed(amount):
            for ev in cli.events("progress"):
                if ev["wall"] > off and ev["rcvd"] > before + amount:
                    return ev
            return None

        first = wait_for(lambda: resumed(0), 20, "data after the blackhole")
        mib = wait_for(lambda: resumed(1 << 20), 20, "1 MiB after the blackhole")
        recovery = first["wall"] - off
        print("blackhole %.1f s: data flows again %.2f s after the restore, "
              "1 MiB more after %.2f s" % (off - on, recovery, mib["wall"] - off))
        self.assertLess(recovery, 2.0)
        self.assertLess(mib["wall"] - off, 3.0)
        self.assertIsNone(cli.proc.poll(), "the client gave up during the outage")
        self.assertEqual(cli.stop(), 3)  # stopped before its (endless) end
        summary = cli.events("summary")[-1]
        self.assertEqual(summary["conn_failures"], 0)  # the same connection recovered
        self.assertEqual(summary["mismatch"], 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
