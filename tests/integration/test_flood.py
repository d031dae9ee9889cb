#!/usr/bin/env python3
"""Connection floods against the controller's two ports.

Control port (the gate in front of nng): a connection that sends no TLS hello, one that trickles
its hello a byte at a time, one that stalls in the middle of the TLS handshake and one that stalls
after it (no SP header) are closed after control.handshaketimeout; connections over control.maxconnperaddr are refused at once; with the
controller held to 1,024 open files (the limit of the reported attack), 1,100 idle connections
from 127.0.0.2 leave /healthz, the REST API and a real agent joining from 127.0.0.1 working.

HTTP port: a request head sent a byte at a time is cut at http.headertimeout; connections over
http.maxconnperaddr are refused at once and real requests from another address go through while
the slow ones hold their slots; a request with both Content-Length and Transfer-Encoding gets 400,
the connection is closed and the request smuggled behind it is not run."""

import os
import resource
import selectors
import socket
import ssl
import stat
import tempfile
import threading
import time
import unittest

import harness

CLIENTS = "/api/cascade/clients"
FLOOD_SRC = "127.0.0.2"      # the attacker; agents and API callers come from 127.0.0.1
HANDSHAKE_S = 3.0
AUTH_S = 2.0
PER_ADDR = 50
NOFILE = 1024


def raise_own_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def connect_from(src, port, timeout=1.0):
    """A TCP connection from |src| to 127.0.0.1:|port|, or None when it is not accepted."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((src, 0))
    s.settimeout(timeout)
    try:
        s.connect(("127.0.0.1", port))
    except OSError:
        s.close()
        return None
    return s


def is_closed(s, wait=0.0):
    """Whether the peer closed |s| (EOF or reset), waiting up to |wait| s; data is read and
    dropped (a TLS server's flight)."""
    deadline = time.monotonic() + wait
    while True:
        left = max(0.0, deadline - time.monotonic())
        s.settimeout(left if left > 0 else 0.001)
        try:
            data = s.recv(65536)
        except socket.timeout:
            return False
        except BlockingIOError:
            return False
        except (ConnectionResetError, BrokenPipeError):
            return True
        except ssl.SSLError:
            return True
        if not data:
            return True
        if time.monotonic() >= deadline:
            return False


def closed_after(socks, limit):
    """Seconds until every socket of |socks| is closed by the peer (measured from now), or None
    when one is still open after |limit| s."""
    t0 = time.monotonic()
    left = list(socks)
    while left:
        if time.monotonic() - t0 > limit:
            return None
        left = [s for s in left if not is_closed(s, 0.05)]
    return time.monotonic() - t0


def tls_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class LimitedController(harness.Controller):
    """The controller run with its open-file limit (soft and hard) held at |nofile|."""

    def __init__(self, *a, nofile=NOFILE, **kw):
        fd, self.wrapper = tempfile.mkstemp(prefix="cascade-nofile-", suffix=".sh")
        with os.fdopen(fd, "w") as f:
            f.write("#!/bin/sh\nulimit -n %d || exit 99\nexec %s \"$@\"\n"
                    % (nofile, harness.controller_path()))
        os.chmod(self.wrapper, stat.S_IRWXU)
        harness.at_exit(lambda: os.path.exists(self.wrapper) and os.unlink(self.wrapper))
        super().__init__(*a, **kw)

    def binary(self):
        return self.wrapper


def metric(ctl, name):
    st, _, text = ctl.request("GET", "/metrics", timeout=5)
    if st != 200:
        return None
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


class ControlFloodTest(unittest.TestCase):
    """One controller at 1,024 open files, handshake deadline 3 s, 50 connections per address."""

    @classmethod
    def setUpClass(cls):
        harness.require_controller()
        raise_own_nofile()
        cls.pg = harness.shared_cluster()
        cls.db = cls.pg.create_database()
        cls.ctl = LimitedController(cls.pg.dsn(cls.db), config={
            "control": {"handshaketimeout": "%dms" % int(HANDSHAKE_S * 1000),
                        "authtimeout": "%dms" % int(AUTH_S * 1000),
                        "maxconnperaddr": PER_ADDR, "heartbeat": 500},
            "log": {"level": "info"}})
        cls.port = cls.ctl.control_port

    @classmethod
    def tearDownClass(cls):
        cls.ctl.stop()

    def test_limit_applies(self):
        with open("/proc/%d/limits" % self.ctl.proc.pid) as f:
            line = [l for l in f if l.startswith("Max open files")][0]
        self.assertEqual(line.split()[3:5], [str(NOFILE), str(NOFILE)], line)
        self.assertIn("open-file limit %d" % NOFILE, self.ctl.log_text())

    def test_idle_connections_closed_at_the_deadline(self):
        socks = [connect_from(FLOOD_SRC, self.port) for _ in range(5)]
        self.assertTrue(all(socks))
        try:
            t0 = time.monotonic()
            # Open until the deadline (not refused at once) ...
            self.assertFalse(any(is_closed(s, 0) for s in socks))
            took = closed_after(socks, HANDSHAKE_S + 4)
            # ... and closed soon after it (nng alone keeps them for ever).
            self.assertIsNotNone(took, "idle control connections still open %.1f s after the "
                                 "%.1f s handshake deadline" % (4.0, HANDSHAKE_S))
            self.assertGreater(time.monotonic() - t0, HANDSHAKE_S * 0.7)
        finally:
            for s in socks:
                s.close()

    def test_stall_in_the_tls_handshake(self):
        s = connect_from(FLOOD_SRC, self.port)
        self.assertIsNotNone(s)
        try:
            inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
            obj = tls_context().wrap_bio(inc, out, server_hostname="cascade-controller")
            with self.assertRaises(ssl.SSLWantReadError):
                obj.do_handshake()
            s.sendall(out.read())                       # the ClientHello, then nothing
            s.settimeout(5)
            flight = s.recv(65536)                      # the server answered: mid-handshake
            self.assertGreater(len(flight), 0)
            self.assertEqual(flight[0], 0x16, "a TLS handshake record")
            took = closed_after([s], HANDSHAKE_S + 4)
            self.assertIsNotNone(took, "a connection stalled mid-handshake stayed open")
        finally:
            s.close()

    def test_hello_trickled_closed_at_the_deadline(self):
        """A ClientHello sent a byte every 0.5 s (it would take minutes): the gate, which runs the
        handshake, waits for the whole flight for the deadline, not for six (each byte used to
        count as the client having spoken)."""
        s = connect_from(FLOOD_SRC, self.port)
        self.assertIsNotNone(s)
        try:
            inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
            obj = tls_context().wrap_bio(inc, out, server_hostname="cascade-controller")
            with self.assertRaises(ssl.SSLWantReadError):
                obj.do_handshake()
            hello = out.read()
            t0 = time.monotonic()
            closed = None
            for b in hello:
                try:
                    s.sendall(bytes([b]))
                except OSError:
                    closed = time.monotonic() - t0
                    break
                if is_closed(s, 0.5):
                    closed = time.monotonic() - t0
                    break
            self.assertIsNotNone(closed, "a trickled ClientHello kept its connection open")
            self.assertLess(closed, HANDSHAKE_S + 2.5, "closed only after %.1f s" % closed)
        finally:
            s.close()

    def test_stall_after_tls_without_sp_header(self):
        raw = connect_from(FLOOD_SRC, self.port)
        self.assertIsNotNone(raw)
        raw.settimeout(5)
        s = tls_context().wrap_socket(raw, server_hostname="cascade-controller")
        try:
            t0 = time.monotonic()
            # nng closes such a pipe after its own 10 s; the deadline is shorter.
            took = closed_after([s], HANDSHAKE_S + 4)
            self.assertIsNotNone(took, "a TLS connection without SP negotiation stayed open")
            self.assertLess(time.monotonic() - t0, 9.0)
        finally:
            s.close()

    def test_silent_after_the_handshakes_closed_at_the_auth_deadline(self):
        """Through TLS and SP, then nothing: no node ever authenticates on it, so it is closed
        after control.authtimeout of silence (the place is freed for agents)."""
        raw = connect_from(FLOOD_SRC, self.port)
        self.assertIsNotNone(raw)
        raw.settimeout(5)
        s = tls_context().wrap_socket(raw, server_hostname="cascade-controller")
        try:
            s.sendall(b"\x00SP\x00\x00\x30\x00\x00")          # REQ v0
            hello = b""
            while len(hello) < 8:
                chunk = s.recv(8 - len(hello))
                self.assertTrue(chunk, "closed during SP negotiation")
                hello += chunk
            self.assertEqual(hello[:6], b"\x00SP\x00\x00\x31")  # REP v0: a live pipe
            t0 = time.monotonic()
            before = metric(self.ctl, "cascade_control_auth_timeouts_total")
            took = closed_after([s], AUTH_S + 4)
            self.assertIsNotNone(took, "a connection past the handshakes, silent, stayed open")
            self.assertGreater(time.monotonic() - t0, AUTH_S * 0.7)
            self.assertGreaterEqual(metric(self.ctl, "cascade_control_auth_timeouts_total"),
                                    before + 1)
        finally:
            s.close()

    def test_place_freed_when_nng_closes(self):
        """nng drops a connection with a bad SP header; the gate frees its place at once even
        though the client keeps its end open."""
        # (connections the other tests closed are gone first)
        harness.wait_for(lambda: metric(self.ctl, "cascade_control_connections") == 0, 10,
                         what="no control connection open")
        base = 0
        raw = connect_from(FLOOD_SRC, self.port)
        self.assertIsNotNone(raw)
        raw.settimeout(5)
        s = tls_context().wrap_socket(raw, server_hostname="cascade-controller")
        try:
            # The place is taken while the client holds it (before the bad header: nng may drop
            # the connection as soon as it has read it).
            self.assertEqual(metric(self.ctl, "cascade_control_connections"), base + 1)
            t0 = time.monotonic()
            s.sendall(b"\x00SP\x00\x99\x99\x00\x00")   # an SP header of no protocol REP takes
            harness.wait_for(lambda: metric(self.ctl, "cascade_control_connections") == base,
                             HANDSHAKE_S - 1.5, what="the place freed")
            self.assertLess(time.monotonic() - t0, HANDSHAKE_S - 0.5)
        finally:
            s.close()

    def test_per_address_cap_refuses_at_once(self):
        before = metric(self.ctl, 'cascade_control_connections_refused_total{reason="per_address"}')
        socks = [connect_from(FLOOD_SRC, self.port) for _ in range(PER_ADDR + 10)]
        try:
            self.assertTrue(all(socks), "the kernel accepted every connection")
            gone = set()

            def excess_closed():
                gone.update(i for i, s in enumerate(socks) if i not in gone and is_closed(s, 0))
                return len(gone) >= 10

            # well before the handshake deadline, exactly the excess is gone
            harness.wait_for(excess_closed, HANDSHAKE_S - 1.5, what="the excess closed at once")
            time.sleep(0.2)  # (a few more would show up as well by now)
            excess_closed()
            self.assertEqual(len(gone), 10)
            after = metric(self.ctl,
                           'cascade_control_connections_refused_total{reason="per_address"}')
            self.assertGreaterEqual(after - before, 10)
            self.assertIn("refused a control connection from %s" % FLOOD_SRC, self.ctl.log_text())
        finally:
            for s in socks:
                if s:
                    s.close()

    def test_flood_leaves_api_and_agents_working(self):
        """1,100 idle connections kept open (re-opened as soon as they are closed) from
        127.0.0.2: beyond the controller's 1,024 descriptors when nothing limits them."""
        stop = threading.Event()
        sel = selectors.DefaultSelector()
        opened = [0]

        def open_one():
            s = connect_from(FLOOD_SRC, self.port, timeout=0.2)
            if s is not None:
                s.setblocking(False)
                sel.register(s, selectors.EVENT_READ)
                opened[0] += 1

        def flood():
            for _ in range(1100):
                if stop.is_set():
                    return
                open_one()
            while not stop.is_set():
                for key, _ in sel.select(0.2):
                    if is_closed(key.fileobj, 0):
                        sel.unregister(key.fileobj)
                        key.fileobj.close()
                        open_one()
                missing = 1100 - len(sel.get_map())
                for _ in range(min(missing, 50)):
                    open_one()

        th = threading.Thread(target=flood, daemon=True)
        th.start()
        agent = None
        try:
            harness.wait_for(lambda: opened[0] >= 1100, 60, what="1,100 flood connections made")
            # The API and the health endpoint answer during the flood ...
            st, _, _ = self.ctl.request("GET", "/healthz", timeout=3)
            self.assertEqual(st, 200)
            st, _, body = self.ctl.api("GET", CLIENTS, timeout=3)
            self.assertEqual(st, 200, body)
            # ... and an agent from another address joins.
            agent = harness.Agent(self.ctl, "edge-flood", "edge-flood-secret")

            def online():
                st, _, body = self.ctl.api("GET", CLIENTS + "?size=100", timeout=3)
                n = [c for c in body["data"] if c["name"] == "edge-flood"] if st == 200 else []
                return n and n[0]["online"] and n[0]

            node = harness.wait_for(online, 30, interval=0.2, what="the agent online")
            self.assertEqual(node["ip"], "127.0.0.1")   # the client's address, not the gate's
            open_now = metric(self.ctl, "cascade_control_connections")
            self.assertLessEqual(open_now, PER_ADDR + 1)
            st, _, _ = self.ctl.request("GET", "/healthz", timeout=3)
            self.assertEqual(st, 200)
        finally:
            stop.set()
            th.join(10)
            for key in list(sel.get_map().values()):
                key.fileobj.close()
            if agent is not None:
                agent.stop()


class HttpFloodTest(harness.ControllerTestCase):
    """Header deadline 2 s, 20 connections per address, 50 in all."""

    config = {"http": {"headertimeout": "2s", "maxconnperaddr": 20, "maxconnections": 50},
              "log": {"level": "info"}}

    @classmethod
    def setUpClass(cls):
        raise_own_nofile()
        super().setUpClass()

    def slow_head(self, s):
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")

    def test_slow_head_cut_at_the_deadline(self):
        s = connect_from(FLOOD_SRC, self.ctl.port)
        self.assertIsNotNone(s)
        try:
            self.slow_head(s)
            t0 = time.monotonic()
            cut = None
            # one header byte every 0.2 s: libmicrohttpd's idle timeout never fires
            while time.monotonic() - t0 < 8:
                try:
                    s.sendall(b"X")
                except OSError:
                    cut = time.monotonic() - t0
                    break
                if is_closed(s, 0.2):
                    cut = time.monotonic() - t0
                    break
            self.assertIsNotNone(cut, "a request head trickled for 8 s was never cut")
            self.assertGreater(cut, 1.0)
            self.assertLess(cut, 5.0)
        finally:
            s.close()

    def test_slow_heads_do_not_block_requests(self):
        socks = [connect_from(FLOOD_SRC, self.ctl.port) for _ in range(50)]
        try:
            for s in socks:
                if s is not None:
                    try:
                        self.slow_head(s)
                    except OSError:
                        pass
            held = [s for s in socks if s is not None and not is_closed(s, 0.1)]
            self.assertLessEqual(len(held), 20, "connections held from one address")
            # Requests from another address go through at once, many times over.
            for _ in range(10):
                st, _, _ = self.ctl.request("GET", "/healthz", timeout=2)
                self.assertEqual(st, 200)
            # The held ones are cut at the header deadline.
            self.assertIsNotNone(closed_after(held, 5.0), "slow heads outlived the deadline")
        finally:
            for s in socks:
                if s:
                    s.close()

    def test_content_length_and_chunked_refused(self):
        made = self.ok(self.api("POST", CLIENTS, {"name": "victim", "secret": "victim-secret"}),
                       201)
        auth = "Authorization: Bearer %s\r\n" % self.ctl.admin_token
        smuggled = ("DELETE %s/%d HTTP/1.1\r\nHost: x\r\n%s\r\n" % (CLIENTS, made["id"], auth))
        body = "0\r\n\r\n" + smuggled
        req = ("POST %s HTTP/1.1\r\nHost: x\r\n%sContent-Type: application/json\r\n"
               "Content-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n%s"
               % (CLIENTS, auth, len(body), body)).encode()
        s = socket.create_connection(("127.0.0.1", self.ctl.port), timeout=3)
        closed = False
        data = b""
        try:
            s.sendall(req)
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    closed = True
                    break
                data += chunk
        except socket.timeout:
            pass
        finally:
            s.close()
        # the smuggled DELETE did not run
        st, _, _ = self.api("GET", "%s/%d" % (CLIENTS, made["id"]))
        self.assertEqual(st, 200, "the request smuggled behind the body ran: %r" % data)
        self.assertTrue(data.startswith(b"HTTP/1.1 400 "), data[:200])
        self.assertIn(b"Content-Length and Transfer-Encoding", data)
        self.assertEqual(data.count(b"HTTP/1.1 "), 1, "one answer only: %r" % data)
        self.assertTrue(closed, "the connection stays open after the 400")


if __name__ == "__main__":
    unittest.main(verbosity=2)
