#!/usr/bin/env python3
"""The QUIC link through cascade-netimpair: cascade-quicperf server and
client on loopback with the impairment proxy between them.

- 5 % loss each way and 50 ms RTT: the link stays up and 100 MB arrive
  intact (the client checks every byte of the SOURCE pattern).
- a 10 s blackhole, then the path comes back: data flows again within 2 s
  of the restore (the receiver's PINGs reach the sender, whose backed-off
  probe timer then fires at once).
- lost packets are counted (5 % loss) and none on a clean path.
- path MTU discovery: packets grow past 1,492 bytes on a path that carries
  them, and stay below a smaller bound on one that does not.
- receive-window auto-tuning: with a 1 MiB initial stream window, a stream
  over 50 ms RTT moves more than 1 MiB per RTT.
- congestion control "auto": the client measures the path before it dials
  and both ends use cubic on a near path (under 2 ms), bbr on a far one
  (10 ms RTT) and on a path that drops the probe.
- send-buffer auto-tuning: with the default settings (a 256 KiB send
  buffer at first), a stream over 50 ms RTT moves well over 256 KiB per
  RTT; with the buffer fixed, 256 KiB per RTT caps it.

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
        self.ctl = None

    def start(self, *server_args):
        """Starts the server (1,452-byte packets, 16 MB windows unless
        |server_args| say otherwise) and the proxy in front of it."""
        args = server_args or ("--window", "16000000", "--max-udp-payload", "1452")
        self.server = self.spawn([PERF, "server", "--listen", "127.0.0.1:0", "--pki", self.dir,
                                  "--cc", "bbr", *args])
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
        if self.ctl:
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

    def client(self, *args, base=("--window", "16000000", "--max-udp-payload", "1452")):
        # 1,452-byte packets, as on the WAN paths this proxy stands for (to a loopback peer the
        # links' automatic size is 16,000)
        return self.spawn([PERF, "client", "--connect", "127.0.0.1:%d" % self.proxy_port,
                           "--pki", self.dir, "--cc", "bbr", *base, *args])

    def run_client(self, *args, **kw):
        """Runs a client to its end; returns its link figures and summary."""
        cli = self.client(*args, **kw)
        rc = cli.wait_exit(110)
        self.assertEqual(rc, 0, cli.stderr()[-2000:])
        summary = cli.events("summary")[-1]
        self.assertEqual(summary["streams_ok"], 1)
        self.assertEqual(summary["mismatch"], 0)
        return cli.events("links")[-1], summary, cli

    def test_loss_5pct_rtt_50ms_100mb_intact(self):
        self.start()
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
        self.start()
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

    def test_lost_packets_counted(self):
        # The client sends (DISCARD): its link figures are a sender's.
        self.start()
        self.cmd("set delay 5")
        links, _, _ = self.run_client("--service", "discard", "--bytes", str(20 << 20))
        print("clean path: %d packets lost" % links["lost"])
        self.assertEqual(links["lost"], 0)
        for d in ("up", "down"):
            self.cmd("set %s loss 5" % d)
        links, summary, _ = self.run_client("--service", "discard", "--bytes", str(20 << 20))
        st = json.loads(self.cmd("stats"))
        dropped = st["up"]["dropped_loss"]
        print("loss 5%%: %d packets lost (the proxy dropped %d of the client's %d datagrams)" %
              (links["lost"], dropped, st["up"]["received"]))
        self.assertGreater(links["lost"], 0)
        # Not more than the proxy dropped plus spurious losses (reordering: none here).
        self.assertLessEqual(links["lost"], dropped * 1.5 + 10)

    def test_pmtud_grows_to_the_path(self):
        big = ("--window", "16000000", "--max-udp-payload", "4000")
        self.start(*big)
        self.cmd("set delay 5")
        links, _, _ = self.run_client("--service", "discard", "--bytes", str(10 << 20), base=big)
        st = json.loads(self.cmd("stats"))
        print("path without a bound: packets of %d bytes (largest through the proxy: %d)" %
              (links["max_udp_payload"], st["up"]["max_size"]))
        self.assertGreater(links["max_udp_payload"], 1492)
        self.assertGreater(st["up"]["max_size"], 1492)

    def test_pmtud_stays_below_a_smaller_path(self):
        big = ("--window", "16000000", "--max-udp-payload", "4000")
        self.start(*big)
        self.cmd("set delay 5")
        self.cmd("set maxsize 1400")
        links, summary, _ = self.run_client("--service", "discard", "--bytes", str(10 << 20),
                                            base=big)
        st = json.loads(self.cmd("stats"))
        print("path of 1,400 bytes: packets of %d bytes, %d larger probes dropped, "
              "largest through: %d" % (links["max_udp_payload"], st["up"]["dropped_size"],
                                       st["up"]["max_size"]))
        self.assertLessEqual(links["max_udp_payload"], 1400)
        self.assertLessEqual(st["up"]["max_size"], 1400)
        self.assertGreater(st["up"]["dropped_size"], 0)  # the probes were made
        self.assertEqual(summary["bytes"], 10 << 20)

    def window_goodput(self, *client_args):
        """Mbit/s of a SOURCE stream over 50 ms RTT in its second half, the
        client (receiver) starting from 1 MiB stream windows."""
        self.start("--window", "16000000", "--sndbuf", "67108864", "--max-udp-payload", "1452")
        for d in ("up", "down"):
            self.cmd("set %s delay 25" % d)
        total = 80 << 20
        _, summary, cli = self.run_client(
            "--service", "source", "--bytes", str(total), "--progress", "0.05",
            "--timeout", "60", *client_args,
            base=("--window", str(1 << 20), "--max-udp-payload", "1452"))
        self.assertEqual(summary["bytes"], total)
        ev = [(e["t"], e["rcvd"]) for e in cli.events("progress")]
        a = next(e for e in ev if e[1] >= total // 2)
        b = ev[-1]
        self.assertGreater(b[1] - a[1], total // 4)
        return (b[1] - a[1]) * 8 / (b[0] - a[0]) / 1e6

    def test_window_auto_tuning_beats_1mib_per_rtt(self):
        mbps = self.window_goodput()
        # 1 MiB per 50 ms RTT is 167.8 Mbit/s
        print("1 MiB initial window, 50 ms RTT: %.1f Mbit/s with auto-tuning" % mbps)
        self.assertGreater(mbps, 1.1 * (1 << 20) * 8 / 0.05 / 1e6)

    def test_without_auto_tuning_1mib_per_rtt_caps(self):
        # The counterpart: the same stream with the windows fixed at 1 MiB.
        mbps = self.window_goodput("--max-window", "0")
        print("1 MiB fixed window, 50 ms RTT: %.1f Mbit/s" % mbps)
        self.assertLess(mbps, (1 << 20) * 8 / 0.05 / 1e6)

    def start_auto(self):
        self.start("--cc", "auto", "--window", "16000000", "--max-udp-payload", "1452",
                   "--accept-events")

    def cc_choice(self, client_cc="auto"):
        """The congestion controller of the client and of the server (both
        "auto" unless |client_cc| says otherwise) and the client's probe RTT;
        the server and proxy started by start_auto."""
        _, _, cli = self.run_client("--cc", client_cc, "--service", "source",
                                    "--bytes", str(1 << 20), "--timeout", "30")
        links = cli.events("links")[-1]
        acc = wait_for(lambda: self.server.events("accepted"), 10, "the server's accept")
        return links["cc"], acc[-1]["cc"], links["probe_rtt_ms"]

    def test_cc_auto_near_path_is_cubic(self):
        self.start_auto()
        cli, srv, rtt = self.cc_choice()
        print("near path: probe RTT %.3f ms, client %s, server %s" % (rtt, cli, srv))
        self.assertGreater(rtt, 0)
        self.assertLess(rtt, 2.0)
        self.assertEqual((cli, srv), ("cubic", "cubic"))

    def test_cc_auto_far_path_is_bbr(self):
        self.start_auto()
        for d in ("up", "down"):
            self.cmd("set %s delay 5" % d)
        cli, srv, rtt = self.cc_choice()
        print("far path: probe RTT %.3f ms, client %s, server %s" % (rtt, cli, srv))
        self.assertGreaterEqual(rtt, 9.0)
        self.assertEqual((cli, srv), ("bbr", "bbr"))

    def test_cc_auto_probe_lost_is_bbr(self):
        # The path drops everything until the client has given up on its
        # probe and sent its first Initial (the proxy saw 3 datagrams: two
        # probe copies and the Initial), then comes back: the client dialed
        # as to a far peer, and the handshake completes on a retransmission.
        self.start_auto()
        self.cmd("blackhole on")
        cli = self.client("--cc", "auto", "--service", "source", "--bytes", str(1 << 20),
                          "--timeout", "30")
        wait_for(lambda: json.loads(self.cmd("stats"))["up"]["received"] >= 3, 10,
                 "the probe and the first Initial")
        self.cmd("blackhole off")
        self.assertEqual(cli.wait_exit(60), 0, cli.stderr()[-2000:])
        links = cli.events("links")[-1]
        acc = wait_for(lambda: self.server.events("accepted"), 10, "the server's accept")
        self.assertEqual(links["probe_rtt_ms"], -1)
        self.assertEqual((links["cc"], acc[-1]["cc"]), ("bbr", "bbr"))

    def test_cc_fixed_client_gets_the_servers_fallback(self):
        # A client with a fixed controller gives no hint: an "auto" server
        # uses bbr for it.
        self.start_auto()
        cli, srv, rtt = self.cc_choice("cubic")
        self.assertEqual(rtt, 0)
        self.assertEqual((cli, srv), ("cubic", "bbr"))

    def default_goodput(self, total, *server_args):
        """Mbit/s of a SOURCE stream of |total| bytes over 50 ms RTT in its
        second half, both ends with quic_config_default's windows and send
        buffers (the agent's defaults: quic.sndbuf 256 KiB growing up to
        quic.maxsndbuf) and bbr, what the agent's quic.cc auto picks on this path."""
        self.start("--max-udp-payload", "1452", *server_args)
        for d in ("up", "down"):
            self.cmd("set %s delay 25" % d)
        # progress every 10 ms: at 1 Gbit/s the second half takes about 0.25 s
        _, summary, cli = self.run_client(
            "--service", "source", "--bytes", str(total), "--progress", "0.01",
            "--timeout", "60", base=("--max-udp-payload", "1452"))
        self.assertEqual(summary["bytes"], total)
        ev = [(e["t"], e["rcvd"]) for e in cli.events("progress")]
        a = next(e for e in ev if e[1] >= total // 2)
        b = ev[-1]
        # the last tick may come a little before the end: a quarter's worth at least
        self.assertGreater(b[1] - a[1], total // 5)
        return (b[1] - a[1]) * 8 / (b[0] - a[0]) / 1e6

    def test_sndbuf_auto_tuning_beats_256kib_per_rtt(self):
        mbps = self.default_goodput(64 << 20)
        # 256 KiB per 50 ms RTT is 41.9 Mbit/s
        print("default send buffer, 50 ms RTT: %.1f Mbit/s" % mbps)
        self.assertGreater(mbps, 2 * (256 << 10) * 8 / 0.05 / 1e6)

    def test_fixed_sndbuf_256kib_per_rtt_caps(self):
        # The counterpart: the sender's buffer fixed at 256 KiB.
        mbps = self.default_goodput(16 << 20, "--max-sndbuf", "0")
        print("fixed 256 KiB send buffer, 50 ms RTT: %.1f Mbit/s" % mbps)
        self.assertLess(mbps, (256 << 10) * 8 / 0.05 / 1e6)


if __name__ == "__main__":
    unittest.main(verbosity=2)
