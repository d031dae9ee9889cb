#!/usr/bin/env python3
"""TLS session resumption on the control channel (issue 15, "Joining at scale").

The agents' control client (agent/ctltls.c, GnuTLS in nng) keeps the TLS 1.3 session ticket of
its last verified connection and offers it on the next one; the controller's gate issues tickets
under a key derived from the CA's private key, so a restarted controller accepts them and the
rejoin costs no certificate signature or verification.

- an agent reconnecting after a controller restart resumes (the gate's and the agent's counts);
- a controller with another CA on the same address accepts no ticket, and the agent, which
  trusts only its own CA, never runs with it; back on its own controller it resumes again;
- 200 simulated agents rejoining after a restart resume most of their handshakes."""

import os
import re
import tempfile
import time
import unittest

import harness
from test_rejoin import Sim

CLIENTS = "/api/cascade/clients"
CTL_CONFIG = {"control": {"heartbeat": 500, "polltimeout": 3000, "maxconnperaddr": 0}}
# A foreign controller's certificate is refused: the agent's TLS probe says so at error level.
AGENT_ERRORS = [r"(?i)certificate was refused", r"(?i)TLS handshake .*failed"]
TLS_RE = re.compile(rb"simulate: running=(\d+) connecting=\d+ failed=\d+ tls_full=(\d+) "
                    rb"tls_resumed=(\d+)")


def read(path):
    with open(path) as f:
        return f.read()


def metric(text, name):
    """The value of metric line |name| (with its labels) in Prometheus |text|; 0 when absent."""
    if isinstance(text, bytes):
        text = text.decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0


def gate(ctl, kind):
    st, _, body = ctl.request("GET", "/metrics")
    return metric(body, 'cascade_control_tls_sessions_total{kind="%s"}' % kind) if st == 200 else 0


def gate_failed(ctl):
    st, _, body = ctl.request("GET", "/metrics")
    return metric(body, 'cascade_control_tls_handshakes_total{result="failed"}') if st == 200 \
        else 0


def agent_hs(a, kind):
    st, _, body = a.admin_request("GET", "/metrics", timeout=5)
    if st != 200:
        return 0
    return metric(body, 'cascade_agent_control_tls_handshakes_total{kind="%s"}' % kind)


class TlsResumeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.require_controller()
        cls.pg = harness.shared_cluster()

    def setUp(self):
        self.stop_list = []

    def tearDown(self):
        for fn in reversed(self.stop_list):
            fn()

    def controller(self, db=None, **kw):
        ctl = harness.Controller(self.pg.dsn(db or self.pg.create_database()), config=CTL_CONFIG,
                                 **kw)
        self.stop_list.append(lambda: ctl.proc is not None and ctl.stop(
            expected_errors=[r"(?i)TLS handshake"]))
        return ctl

    def agent(self, ctl, name):
        harness.envelope_ok(self, ctl.api("POST", CLIENTS, {"name": name,
                                                             "secret": name + "-secret"}), 201)
        a = harness.Agent(ctl, name, name + "-secret")
        self.stop_list.append(lambda: a.proc is not None and a.stop(expected_errors=AGENT_ERRORS))
        return a

    def running(self, a):
        try:
            return a.status()["controller"]["state"] == "running"
        except (harness.ControllerError, OSError):
            return False

    def restart(self, ctl):
        ctl.stop(expected_errors=[r"(?i)TLS handshake"])
        ctl.start()

    def test_resumes_after_restart(self):
        ctl = self.controller()
        a = self.agent(ctl, "edge-t1")
        harness.wait_for(lambda: self.running(a), 15, what="agent running")
        self.assertGreaterEqual(agent_hs(a, "full"), 1)
        self.assertEqual(agent_hs(a, "resumed"), 0)
        self.assertEqual(gate(ctl, "resumed"), 0)
        for k in range(2):  # a ticket from a resumed session resumes too
            self.restart(ctl)
            harness.wait_for(lambda: gate(ctl, "resumed") >= 1 and self.running(a), 20,
                             what="the agent back, its session resumed (restart %d)" % (k + 1))
            self.assertEqual(gate(ctl, "full"), 0, "the restarted gate ran a full handshake")
            self.assertGreaterEqual(agent_hs(a, "resumed"), k + 1)

    def test_other_ca_gets_no_resumption_and_no_agent(self):
        ctl = self.controller()
        a = self.agent(ctl, "edge-t2")
        harness.wait_for(lambda: self.running(a), 15, what="agent running")
        ctl.stop()
        # (while it stopped, the agent may have resumed once more with it)
        full0, res0 = agent_hs(a, "full"), agent_hs(a, "resumed")
        # Another deployment (another database, another CA) on the same control address.
        other = self.controller(start=False)
        other.control_port = ctl.control_port
        other.start()
        self.assertNotEqual(read(os.path.join(other.control_dir, "ca.crt")),
                            read(os.path.join(ctl.control_dir, "ca.crt")))
        harness.wait_for(lambda: gate_failed(other) >= 3, 20,
                         what="the agent refusing the foreign controller's certificate")
        self.assertEqual(gate(other, "resumed"), 0, "a foreign gate resumed the agent's ticket")
        self.assertEqual(gate(other, "full"), 0, "a handshake with the foreign gate succeeded")
        self.assertFalse(self.running(a), "the agent runs with a controller of another CA")
        self.assertEqual(agent_hs(a, "resumed"), res0, "the agent resumed with the foreign gate")
        self.assertEqual(agent_hs(a, "full"), full0, "a refused handshake counted as done")
        other.stop(expected_errors=[r"(?i)TLS handshake"])
        # Its own controller again: the ticket kept from before still resumes.
        ctl.start()
        harness.wait_for(lambda: gate(ctl, "resumed") >= 1 and self.running(a), 30,
                         what="the agent back on its own controller, resumed")
        self.assertGreaterEqual(agent_hs(a, "resumed"), 1)

    def test_simulated_rejoin_resumes(self):
        n = 200
        ctl = self.controller()
        work = tempfile.mkdtemp(prefix="cascade-test-tls-")
        sim = Sim(ctl, ctl.control_port, n, work, "tls", backoffmax=5000)
        self.stop_list.append(sim.stop)

        def counts():
            with open(sim.log_path, "rb") as f:  # the last report, behind any failures
                m = TLS_RE.findall(f.read()[-(1 << 20):])
            return tuple(int(x) for x in m[-1]) if m else (0, 0, 0)

        harness.wait_for(lambda: counts()[0] >= n, 90, interval=0.5, what="%d agents running" % n)
        time.sleep(1.5)  # the tickets come with the first records after the handshake
        _, full0, res0 = counts()
        ctl.stop()
        harness.wait_for(lambda: counts()[0] < n // 20, 60, interval=0.5,
                         what="the simulator noticing the controller gone")
        ctl.start()
        t0 = time.monotonic()
        harness.wait_for(lambda: counts()[0] >= n, 40, interval=0.5,
                         what="%d agents running again" % n)
        took = time.monotonic() - t0
        _, full1, res1 = counts()
        full, resumed = full1 - full0, res1 - res0
        print("%d agents rejoined in %.1f s: %d TLS handshakes resumed, %d full"
              % (n, took, resumed, full))
        self.assertGreaterEqual(resumed, n * 0.9)
        self.assertLess(full, resumed / 4)
        self.assertGreaterEqual(gate(ctl, "resumed"), n * 0.9)


if __name__ == "__main__":
    unittest.main(verbosity=2)
