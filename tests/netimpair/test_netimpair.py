#!/usr/bin/env python3
"""cascade-netimpair: the UDP impairment proxy, in front of a Python UDP echo
server on loopback. Every wait is a condition with a deadline; the only
timed waits check that something does NOT happen (blackhole).

CASCADE_BIN_DIR names the directory holding cascade-netimpair (default:
build/bin of the source tree)."""
import json
import os
import select
import signal
import socket
import statistics
import struct
import subprocess
import tempfile
import threading
import time
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN_DIR = os.environ.get("CASCADE_BIN_DIR", os.path.join(ROOT, "build", "bin"))
PROXY = os.path.join(BIN_DIR, "cascade-netimpair")
HDR = struct.Struct("!IQ")  # sequence number, send time (ns)


def wait_for(cond, timeout, what):
    """Polls |cond| until it returns a true value or |timeout| seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(0.005)


class EchoServer:
    """Echoes every datagram to its sender from a thread; remembers the peers."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.count = 0
        self.peers = set()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopping:
            r, _, _ = select.select([self.sock], [], [], 0.05)
            if not r:
                continue
            while True:
                try:
                    data, peer = self.sock.recvfrom(65536, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    break
                self.count += 1
                self.peers.add(peer)
                self.sock.sendto(data, peer)

    def close(self):
        self.stopping = True
        self.thread.join(5)
        self.sock.close()


class Proxy:
    """One cascade-netimpair process with its control socket."""

    def __init__(self, forward_port, *args):
        self.err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [PROXY, "--listen", "127.0.0.1:0", "--forward", "127.0.0.1:%d" % forward_port,
             "--control", "127.0.0.1:0", *args],
            stdout=subprocess.PIPE, stderr=self.err)
        out, lines, deadline = b"", {}, time.monotonic() + 10
        fd = self.proc.stdout.fileno()
        while "ready" not in lines:
            left = deadline - time.monotonic()
            r, _, _ = select.select([fd], [], [], max(left, 0))
            chunk = os.read(fd, 4096) if r else b""
            if not chunk:
                self.stop()
                log = self.stderr()
                self.err.close()
                raise AssertionError("proxy did not print ready: %s" % log)
            out += chunk
            *done, out = out.split(b"\n")
            for line in done:
                k, _, v = line.decode().strip().partition(" ")
                lines[k] = v
        self.listen = ("127.0.0.1", int(lines["listen"].rsplit(":", 1)[1]))
        self.ctl = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.ctl.connect(("127.0.0.1", int(lines["control"].rsplit(":", 1)[1])))
        self.ctl.settimeout(5)

    def cmd(self, line):
        self.ctl.send(line.encode())
        return self.ctl.recv(65536).decode().strip()

    def ok(self, line):
        r = self.cmd(line)
        if r != "ok":
            raise AssertionError("%r -> %r" % (line, r))

    def stats(self):
        return json.loads(self.cmd("stats"))

    def stderr(self):
        self.err.seek(0)
        return self.err.read().decode(errors="replace")

    def stop(self):
        """SIGTERM; returns the exit code (nonzero when ASan finds a leak)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.proc.stdout.close()
        if hasattr(self, "ctl"):
            self.ctl.close()
        return rc


class Client:
    """A UDP client of the proxy sending numbered, timestamped datagrams."""

    def __init__(self, proxy):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.connect(proxy.listen)
        self.seq = 0
        self.got = []    # (seq, rtt seconds) in arrival order

    def send(self, n, size=64):
        pad = b"x" * max(0, size - HDR.size)
        for _ in range(n):
            self.sock.send(HDR.pack(self.seq, time.monotonic_ns()) + pad)
            self.seq += 1

    def drain(self, timeout=0.0):
        """Reads what has arrived, waiting up to |timeout| for the first datagram."""
        r, _, _ = select.select([self.sock], [], [], timeout)
        while r:
            try:
                data = self.sock.recv(65536, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            seq, t = HDR.unpack_from(data)
            self.got.append((seq, (time.monotonic_ns() - t) / 1e9))
        return len(self.got)

    def ping(self, timeout=5.0):
        """One datagram and its echo, alone in flight; returns the RTT in seconds."""
        want = self.seq
        self.send(1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.drain(0.05)
            for seq, rtt in self.got:
                if seq == want:
                    return rtt
        raise AssertionError("no echo for datagram %d within %.1fs" % (want, timeout))

    def close(self):
        self.sock.close()


class NetImpairTest(unittest.TestCase):
    def setUp(self):
        self.assertTrue(os.access(PROXY, os.X_OK), "%s not built" % PROXY)
        self.echo = EchoServer()
        self.proxies, self.clients = [], []

    def tearDown(self):
        for c in self.clients:
            c.close()
        for p in self.proxies:
            rc = p.stop()
            log = p.stderr()
            p.err.close()
            for bad in ("AddressSanitizer", "runtime error", "LeakSanitizer", " error "):
                self.assertNotIn(bad, log, "proxy log:\n" + log)
            self.assertEqual(rc, 0, "proxy exit code %d, log:\n%s" % (rc, log))
        self.echo.close()

    def proxy(self, *args):
        p = Proxy(self.echo.port, *args)
        p.echo_base = self.echo.count  # the echo server outlives proxies
        self.proxies.append(p)
        return p

    def client(self, proxy):
        c = Client(proxy)
        self.clients.append(c)
        return c

    def settle(self, p, c, sent):
        """Waits until every datagram sent is accounted for in both directions:
        the proxy received them all, the echo server answered everything it
        was given, and the client holds everything the proxy passed down."""
        def done():
            c.drain()
            s = p.stats()
            up, down = s["up"], s["down"]
            echoed = self.echo.count - p.echo_base
            return (up["received"] == sent and up["queued"] == 0 and down["queued"] == 0
                    and echoed == up["forwarded"] and down["received"] == echoed
                    and len(c.got) == down["forwarded"]) and s
        return wait_for(done, 20, "traffic to settle (sent %d)" % sent)

    def blast(self, p, c, n, batch=100, size=64):
        """Sends |n| datagrams in bursts of |batch|, each burst settled before the next."""
        for i in range(0, n, batch):
            c.send(min(batch, n - i), size)
            s = self.settle(p, c, c.seq)
        return s

    def check_accounts(self, s):
        for d in ("up", "down"):
            x = s[d]
            self.assertEqual(x["received"], x["forwarded"] + x["dropped_loss"] + x["dropped_queue"]
                             + x["dropped_blackhole"] + x["dropped_send"] + x["dropped_size"]
                             + x["queued"], x)

    def test_plain_relay_keeps_order_and_counts(self):
        p = self.proxy()
        c = self.client(p)
        s = self.blast(p, c, 1000, batch=50, size=100)
        self.assertEqual([seq for seq, _ in c.got], list(range(1000)))
        for d in ("up", "down"):
            self.assertEqual(s[d]["received"], 1000)
            self.assertEqual(s[d]["forwarded"], 1000)
            self.assertEqual(s[d]["bytes_in"], 100000)
            self.assertEqual(s[d]["bytes_out"], 100000)
        self.check_accounts(s)
        # A second client is a distinct peer for the server.
        c2 = self.client(p)
        c2.ping()
        self.assertEqual(len(self.echo.peers), 2)
        self.assertEqual(p.stats()["clients"], 2)

    def test_maxsize_drops_larger_datagrams(self):
        # A link with a smaller MTU: 1,400 bytes pass, 1,401 do not.
        p = self.proxy("--maxsize", "1400")
        c = self.client(p)
        self.blast(p, c, 20, batch=10, size=1400)
        s = self.blast(p, c, 20, batch=10, size=1401)
        self.assertEqual(sorted(seq for seq, _ in c.got), list(range(20)))
        self.assertEqual(s["up"]["dropped_size"], 20)
        self.assertEqual(s["up"]["max_size"], 1400)
        self.assertEqual(s["down"]["max_size"], 1400)
        self.check_accounts(s)

    def test_loss_rate_and_seed(self):
        runs = []
        for _ in range(2):
            p = self.proxy("--loss", "10", "--seed", "42")
            c = self.client(p)
            s = self.blast(p, c, 3000)
            for d in ("up", "down"):
                rate = s[d]["dropped_loss"] / s[d]["received"]
                self.assertGreater(s[d]["received"], 2000)
                self.assertAlmostEqual(rate, 0.10, delta=0.025, msg="%s loss %.3f" % (d, rate))
            self.assertAlmostEqual(len(c.got) / 3000, 0.81, delta=0.04)
            self.check_accounts(s)
            runs.append([seq for seq, _ in c.got])
        self.assertEqual(runs[0], runs[1], "same seed, same traffic: same losses")

    def test_delay(self):
        p = self.proxy("--delay", "50")
        c = self.client(p)
        rtts = [c.ping() * 1000 for _ in range(10)]
        self.assertGreaterEqual(min(rtts), 99, rtts)
        self.assertLessEqual(statistics.median(rtts), 160, rtts)
        # Live change through the control socket.
        p.ok("set delay 5")
        rtts = [c.ping() * 1000 for _ in range(10)]
        self.assertGreaterEqual(min(rtts), 9, rtts)
        self.assertLess(statistics.median(rtts), 60, rtts)

    def test_jitter_varies_rtt(self):
        p = self.proxy("--delay", "30", "--jitter", "20", "--seed", "3")
        c = self.client(p)
        rtts = [c.ping() * 1000 for _ in range(30)]
        self.assertGreaterEqual(min(rtts), 19, rtts)     # each way in [10, 50] ms
        self.assertGreater(max(rtts) - min(rtts), 20, rtts)
        self.assertGreater(statistics.pstdev(rtts), 5, rtts)

    def test_reordering(self):
        p = self.proxy("--seed", "5")
        p.ok("set up reorder 25")
        p.ok("set up reorder-delay 20")
        c = self.client(p)
        s = self.blast(p, c, 1000)
        seqs = [seq for seq, _ in c.got]
        self.assertEqual(sorted(seqs), list(range(1000)), "reordering loses nothing")
        late, top = 0, -1
        for seq in seqs:  # arrived after a later datagram
            late += seq < top
            top = max(top, seq)
        self.assertGreater(late, 150, "arrivals out of order")
        self.assertAlmostEqual(s["up"]["reordered"] / 1000, 0.25, delta=0.05)
        self.assertEqual(s["down"]["reordered"], 0)
        self.check_accounts(s)

    def test_rate_cap(self):
        p = self.proxy("--rate", "800")  # 100 kB/s each way
        c = self.client(p)
        t0 = time.monotonic()
        c.send(100, size=1000)           # 100 kB in one burst
        s = self.settle(p, c, 100)
        took = time.monotonic() - t0
        self.assertEqual(len(c.got), 100)
        # The burst drains at the cap, not at loopback speed: about 1 s.
        self.assertGreater(took, 0.85, "rate cap not applied: %.2fs" % took)
        self.assertLess(took, 3.0, "rate cap far below its setting: %.2fs" % took)
        # A queue smaller than the burst drops the excess and counts it.
        p.ok("reset")
        p.ok("set up queue 20")
        c.send(100, size=1000)
        s = wait_for(lambda: (lambda s: s["up"]["received"] == 100 and s["up"]["queued"] == 0
                              and s["down"]["queued"] == 0 and s)(p.stats()), 10, "queue drain")
        self.assertGreater(s["up"]["dropped_queue"], 50)
        self.assertLess(s["up"]["forwarded"], 40)
        self.check_accounts(s)

    def _blackhole(self, p, c, cut, restore):
        c.ping()
        cut()
        base = p.stats()
        c.send(50)
        wait_for(lambda: p.stats()["up"]["received"] == base["up"]["received"] + 50, 5,
                 "proxy to see the datagrams")
        before = len(c.got)
        c.drain(0.3)  # absence of traffic: a bounded look, not a sleep for correctness
        self.assertEqual(len(c.got), before, "traffic passed a blackhole")
        s = p.stats()
        self.assertEqual(s["up"]["dropped_blackhole"] - base["up"]["dropped_blackhole"], 50)
        self.assertEqual(s["up"]["forwarded"], base["up"]["forwarded"])
        restore()
        t0 = time.monotonic()
        c.ping(timeout=1.0)
        self.assertLess(time.monotonic() - t0, 1.0)

    def test_blackhole_control_and_signals(self):
        p = self.proxy("--delay", "20")
        c = self.client(p)
        self._blackhole(p, c, lambda: p.ok("blackhole on"), lambda: p.ok("blackhole off"))
        self._blackhole(p, c, lambda: (p.proc.send_signal(signal.SIGUSR1),
                                       wait_for(lambda: p.stats()["up"]["blackhole"], 5, "SIGUSR1")),
                        # a signal is handled when the proxy next polls: a datagram sent
                        # before that may still meet the blackhole, so wait for the switch
                        lambda: (p.proc.send_signal(signal.SIGUSR2),
                                 wait_for(lambda: not p.stats()["up"]["blackhole"], 5,
                                          "SIGUSR2")))
        # Packets already on the delay line die when the link is cut.
        base = p.stats()
        c.send(20)
        wait_for(lambda: p.stats()["up"]["received"] == base["up"]["received"] + 20, 5, "arrival")
        p.ok("blackhole on")
        s = wait_for(lambda: (lambda s: s["up"]["queued"] == 0 and s)(p.stats()), 5, "line empty")
        self.assertGreater(s["up"]["dropped_blackhole"] - base["up"]["dropped_blackhole"], 0)
        p.ok("blackhole off")
        self.check_accounts(p.stats())

    def test_control_rejects_bad_input(self):
        p = self.proxy()
        self.assertEqual(p.cmd("ping"), "pong")
        for bad in ("", "bogus", "set loss", "set loss abc", "set loss 101", "set nope 1",
                    "blackhole maybe", "set sideways loss 5", "\x00\xff" * 100):
            self.assertTrue(p.cmd(bad).startswith("error"), repr(bad))
        p.ok("set down loss 100")
        c = self.client(p)
        c.send(10)
        s = wait_for(lambda: (lambda s: s["down"]["dropped_loss"] == 10 and s)(p.stats()), 5,
                     "down losses")
        self.assertEqual(s["up"]["dropped_loss"], 0)
        self.assertEqual(s["down"]["config"]["loss"], 100)
        self.assertEqual(s["up"]["config"]["loss"], 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
