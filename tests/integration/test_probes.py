#!/usr/bin/env python3
"""The agent's probes on its public HTTP port (docs/operations.md, "Probes"):

- /readyz answers 503 with a reason until the node runs a configuration, 200 after, and 200
  at once when it starts from its state file with no controller (cached mode);
- /healthz follows the event loop: while the loop is stuck the probe gets no answer (its
  timeout), and once the loop turns again it answers 503 naming the stall, for
  HEALTH_WINDOW_S, then 200 again. The stall is a real one: the agent's log goes to a pipe
  that nobody reads, so the loop blocks in the write of its next log line (what a stuck log
  collector does to a daemon);
- log.format json: every line the agent and the controller write is one JSON object."""

import fcntl
import json
import os
import select
import socket
import subprocess
import threading
import time
import unittest

import harness

F_SETPIPE_SZ = 1031
HEALTH_WINDOW_S = 10.0  # agent/health.h
AGENT_ERRORS = [r"(?i)authentication failed"]


def get(host, port, path, timeout=5):
    st, _, body = harness.http_request(host, port, "GET", path, timeout=timeout)
    return st, body


class GatedPipe(threading.Thread):
    """The read end of the agent's stdout/stderr, copied into its log file while open; close()
    stops reading (the pipe fills up), open() reads again. fill() makes it full now."""

    def __init__(self, log_path):
        super().__init__(daemon=True)
        self.r, self.w = os.pipe()
        fcntl.fcntl(self.r, F_SETPIPE_SZ, 4096)
        self.gate = threading.Event()
        self.gate.set()
        self.parked = threading.Event()  # the reader waits at the closed gate
        self.log = open(log_path, "ab")
        self.filler = b"~" * 63 + b"\n"  # dropped when copied: not the agent's

    def run(self):
        while True:
            if not self.gate.is_set():
                self.parked.set()
                self.gate.wait()
                self.parked.clear()
                continue
            # never block in read: the gate may close meanwhile
            if not select.select([self.r], [], [], 0.05)[0] or not self.gate.is_set():
                continue
            try:
                data = os.read(self.r, 65536)
            except OSError:
                return
            if not data:
                return
            data = data.replace(self.filler, b"")
            self.log.write(data)
            self.log.flush()

    def close_gate(self):
        self.gate.clear()
        assert self.parked.wait(5), "the pipe's reader did not stop"

    def fill(self):
        """Write into the pipe through a descriptor of our own (O_NONBLOCK on it only) until it
        is full: the agent's next write blocks."""
        fd = os.open("/proc/self/fd/%d" % self.w, os.O_WRONLY | os.O_NONBLOCK)
        try:
            while True:
                os.write(fd, self.filler)
        except BlockingIOError:
            pass
        finally:
            os.close(fd)

    def open_gate(self):
        self.gate.set()


class ProbeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.require_controller()
        cls.pg = harness.shared_cluster()

    def setUp(self):
        self.db = self.pg.create_database()
        # both binaries log JSON here (the controller's lines are checked in the first test)
        self.ctl = harness.Controller(self.pg.dsn(self.db), config={"log": {"format": "json"}})
        self.agents = []

    def tearDown(self):
        for a in self.agents:
            if a.proc is not None:
                a.stop(expected_errors=AGENT_ERRORS)
        self.ctl.stop()

    def test_readyz_waits_for_a_configuration_and_logs_are_json(self):
        # without the join token the node registers itself pending: no configuration until an
        # operator approves it
        a = harness.Agent(self.ctl, "probe-ready", "probe-ready-secret", join=False, config={
            "controller": {"backoffmax": 1000}, "log": {"format": "json"}})
        self.agents.append(a)

        def pending_id():
            st, _, body = self.ctl.api("GET", "/api/cascade/clients?name=probe-ready")
            nodes = body["data"] if st == 200 else []
            return nodes[0]["id"] if nodes and nodes[0]["pending"] else None
        node = harness.wait_for(pending_id, 30, what="the node registered, pending")
        st, body = get(a.host, a.port, "/readyz")
        self.assertEqual(st, 503, body)
        self.assertIn("no configuration", body["message"])
        self.assertEqual(body["code"], 503)
        st, body = get(a.host, a.port, "/healthz")
        self.assertEqual(st, 200, body)
        # the probes are the public port's only routes besides /flv/
        self.assertEqual(get(a.host, a.port, "/api/cascade/status")[0], 404)

        harness.envelope_ok(self, self.ctl.api("PUT", "/api/cascade/clients/%d" % node,
                                               {"pending": False}))
        harness.wait_for(lambda: get(a.host, a.port, "/readyz")[0] == 200, 30,
                         what="/readyz 200 once configured")
        st, body = get(a.host, a.port, "/readyz")
        self.assertEqual(body["data"]["status"], "ready")
        self.assertEqual(body["data"]["from"], "controller")
        self.assertGreater(body["data"]["config_generation"], 0)
        # the same answers on the admin listener
        self.assertEqual(a.admin_request("GET", "/readyz")[0], 200)

        a.stop(expected_errors=AGENT_ERRORS)
        lines = [l for l in a.log_text().splitlines() if l.strip()]
        self.assertTrue(lines)
        modules = set()
        for line in lines:
            o = json.loads(line)  # every line: one object
            self.assertEqual(list(o)[:3], ["time", "level", "module"], line)
            self.assertIn("message", o, line)
            self.assertRegex(o["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
            self.assertIn(o["level"], ("debug", "info", "warn", "error"))
            if o["level"] == "error":
                self.assertRegex(o["message"], "(?i)authentication failed")
            modules.add(o["module"])
        self.assertIn("agent", modules)
        self.assertTrue(any("context" in json.loads(l) for l in lines))
        self.assertNotIn("probe-ready-secret", a.log_text())
        # the controller's log so far: JSON lines too, with no error and no token
        text = self.ctl.log_text()
        ctl_lines = [json.loads(l) for l in text.splitlines() if l.strip()]
        self.assertTrue(any(o["module"] == "main" for o in ctl_lines))
        self.assertFalse([o for o in ctl_lines if o["level"] == "error"])
        self.assertNotIn(self.ctl.admin_token, text)

        # no controller now: the agent starts from its state file (cached mode) and is ready
        self.ctl.stop()
        a.start()
        st, body = get(a.host, a.port, "/readyz")
        self.assertEqual(st, 200, body)
        self.assertEqual(body["data"]["from"], "state file")
        a.stop(expected_errors=AGENT_ERRORS)

    def test_healthz_fails_while_and_after_the_loop_is_stuck(self):
        harness.envelope_ok(self, self.ctl.api("POST", "/api/cascade/clients", {
            "name": "probe-live", "secret": "probe-live-secret"}), 201)
        a = harness.Agent(self.ctl, "probe-live", "probe-live-secret", start=False, config={
            "health": {"loopstall": "1s"}})
        self.agents.append(a)
        a.port = harness.free_port()
        a.write_config()
        pipe = GatedPipe(a.log_path)
        env = harness.sanitizer_env()
        a._logf = open(a.log_path, "ab")
        a.proc = subprocess.Popen([a.binary(), "-c", a.config_path], stdin=subprocess.DEVNULL,
                                  stdout=pipe.w, stderr=pipe.w, env=env)
        pipe.start()
        a.wait_healthy(30)
        harness.wait_for(lambda: get(a.host, a.port, "/readyz")[0] == 200, 30,
                         what="/readyz 200")

        pipe.close_gate()
        pipe.fill()
        # the loop logs an RTMP accept (log.level debug): it blocks in that write
        s = socket.create_connection((a.host, a.rtmp_port), timeout=5)
        t_stuck = time.monotonic()
        with self.assertRaises(OSError, msg="a stuck loop must not answer /healthz"):
            get(a.host, a.port, "/healthz", timeout=3)
        self.assertGreater(time.monotonic() - t_stuck, 2.5)
        pipe.open_gate()

        st, body = get(a.host, a.port, "/healthz", timeout=10)
        self.assertEqual(st, 503, body)
        self.assertIn("did not turn for", body["message"])
        self.assertIn("health.loopstall 1.0 s", body["message"])
        t_back = time.monotonic()
        # the readiness is another matter: listeners and a configuration
        self.assertEqual(get(a.host, a.port, "/readyz")[0], 200)
        harness.wait_for(lambda: get(a.host, a.port, "/healthz")[0] == 200, HEALTH_WINDOW_S + 10,
                         what="/healthz 200 again")
        self.assertGreater(time.monotonic() - t_back, HEALTH_WINDOW_S - 3)
        s.close()
        a.stop()
        os.close(pipe.w)
        pipe.join(10)
        pipe.log.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
