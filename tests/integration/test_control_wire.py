#!/usr/bin/env python3
"""The control channel's wire as the controller speaks it itself (docs/protocol.md, "Transport").

- One descriptor per agent: with N simulated agents running, the controller holds about N more
  descriptors than before they came, not 3 N (the gate's loopback hop to nng's listener).
- A client that breaks the SP wire (a header that is not nng REQ's, a message over the bound, a
  request word without its high bit) is closed, counted in
  cascade_control_protocol_errors_total, and the controller keeps answering other clients.
- A client that pipelines requests and never reads the answers is stopped being read (its sends
  block) instead of making the controller hold its requests and answers without bound."""

import os
import socket
import ssl
import struct
import tempfile
import time
import unittest

import harness
from test_rejoin import Sim

SP_REQ = bytes([0x00, 0x53, 0x50, 0x00, 0x00, 0x30, 0x00, 0x00])
SP_REP = bytes([0x00, 0x53, 0x50, 0x00, 0x00, 0x31, 0x00, 0x00])
CTLMSG_MAX = 1024 * 1024
AGENTS = 300
FD_RESERVE = 40  # descriptors the controller may open beside the agents' (log, pool growth)


def frame(req_id, body):
    return struct.pack(">QI", len(body) + 4, req_id) + body


def fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class ControlWireTest(harness.ControllerTestCase):
    config = {"control": {"maxconnperaddr": 0}}

    def connect(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(os.path.join(self.ctl.control_dir, "ca.crt"))
        ctx.check_hostname = False
        s = socket.create_connection(("127.0.0.1", self.ctl.control_port), timeout=10)
        return ctx.wrap_socket(s, server_hostname="cascade-controller")

    def metric(self, name):
        st, _, body = self.ctl.request("GET", "/metrics")
        self.assertEqual(st, 200)
        text = body.decode() if isinstance(body, bytes) else body
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
        self.fail("no %s in /metrics" % name)

    def assert_served(self):
        """A well-behaved client gets an answer carrying its request id (a body that is no
        Request: BAD_REQUEST)."""
        with self.connect() as t:
            t.sendall(SP_REQ)
            self.assertEqual(harness.recv_exact(t, 8), SP_REP)
            t.sendall(frame(0x80000007, b"\x00not a request"))
            head = harness.recv_exact(t, 12)
            self.assertEqual(len(head), 12, "no answer")
            n, rid = struct.unpack(">QI", head)
            self.assertEqual(rid, 0x80000007)
            self.assertLess(n, 4096)
            self.assertEqual(len(harness.recv_exact(t, n - 4)), n - 4)

    def assert_closed(self, t, what):
        t.settimeout(5)
        try:
            rest = t.recv(4096)
        except (ConnectionResetError, ssl.SSLError, BrokenPipeError):
            rest = b""
        except socket.timeout:
            self.fail("%s: the connection stayed open" % what)
        self.assertEqual(rest, b"", "%s: answered instead of closed" % what)

    def test_one_descriptor_per_agent(self):
        pid = self.ctl.proc.pid
        before = fds(pid)
        work = tempfile.mkdtemp(prefix="cascade-test-wire-")
        sims = [Sim(self.ctl, self.ctl.control_port, AGENTS // 2, work, "w%d" % k)
                for k in range(2)]
        harness.wait_for(lambda: sum(s.running() for s in sims) >= AGENTS, 120,
                         what="%d simulated agents running" % AGENTS)
        harness.wait_for(lambda: self.metric("cascade_control_connections") >= AGENTS, 10,
                         what="their connections counted")
        during = fds(pid)
        print("controller descriptors: %d before, %d with %d agents (%.2f per agent)"
              % (before, during, AGENTS, (during - before) / AGENTS))
        self.assertLessEqual(during - before, AGENTS + FD_RESERVE,
                             "more than one descriptor per agent")
        for s in sims:
            s.stop()
        harness.wait_for(lambda: fds(pid) <= before + FD_RESERVE, 30,
                         what="the agents' descriptors closed")

    def test_wire_violations_closed(self):
        errors = self.metric("cascade_control_protocol_errors_total")
        # a REP peer instead of REQ
        with self.connect() as t:
            t.sendall(SP_REP)
            self.assertEqual(harness.recv_exact(t, 8), SP_REP)
            self.assert_closed(t, "a REP header")
        # a message over the bound, refused on its length before any body
        with self.connect() as t:
            t.sendall(SP_REQ + struct.pack(">QI", CTLMSG_MAX + 5, 0x80000001))
            self.assertEqual(harness.recv_exact(t, 8), SP_REP)
            self.assert_closed(t, "a message over 1 MiB")
        # a request word without the high bit: a hop, which no agent sends
        with self.connect() as t:
            t.sendall(SP_REQ + frame(0x00000001, b"x"))
            self.assertEqual(harness.recv_exact(t, 8), SP_REP)
            self.assert_closed(t, "a request id without its high bit")
        harness.wait_for(
            lambda: self.metric("cascade_control_protocol_errors_total") >= errors + 3, 5,
            what="three protocol errors counted")
        self.assert_served()
        # the largest message allowed still goes through
        with self.connect() as t:
            t.sendall(SP_REQ)
            self.assertEqual(harness.recv_exact(t, 8), SP_REP)
            t.sendall(frame(0x80000002, b"\x00" * CTLMSG_MAX))
            n, rid = struct.unpack(">QI", harness.recv_exact(t, 12))
            self.assertEqual(rid, 0x80000002)

    def test_pipelining_client_is_not_read_without_bound(self):
        pid = self.ctl.proc.pid
        self.assert_served()
        rss0 = rss_kib(pid)
        t = self.connect()
        t.sendall(SP_REQ)
        self.assertEqual(harness.recv_exact(t, 8), SP_REP)
        body = b"\x0a" + b"z" * 1000  # no Request: each is answered BAD_REQUEST
        chunk = b"".join(frame(0x80000000 | i, body) for i in range(256))
        t.settimeout(3)
        sent, limit = 0, 400 * 1024 * 1024
        blocked = False
        while sent < limit:
            try:
                t.sendall(chunk)
            except socket.timeout:
                blocked = True
                break
            sent += len(chunk)
        grown = rss_kib(pid) - rss0
        print("a client that never reads: blocked after %.1f MiB sent; controller RSS +%d MiB"
              % (sent / 1048576, grown // 1024))
        self.assertTrue(blocked, "the controller read %d MiB from a client that never reads"
                        % (sent >> 20))
        self.assertLessEqual(self.metric("cascade_control_requests_queued"), 4096)
        # the others are served meanwhile, and memory did not follow the client's bytes
        self.assert_served()
        self.assertLess(grown, 300 * 1024, "controller RSS grew by %d MiB" % (grown >> 10))
        t.close()
        self.assert_served()


if __name__ == "__main__":
    unittest.main()
