#!/usr/bin/env python3
"""An agent with several controller URLs, every one of them slow to connect (issue 15).

Two URLs lead to the same controller through relays that hold each new connection DELAY_S
seconds (longer than the agent's first 2 s connection wait) before passing its bytes on, as two
replicas busy with a storm of agents would. The agent must get through: a wait that runs out
makes the next one longer (agent_patience_ms: 2 s, 4 s, 8 s). With a fixed 2 s it moved from one
URL to the other for ever, never connected. A dead URL (nothing listening) is still left after
2 s by an agent whose session was running (test_autonomy.py)."""

import socket
import threading
import time
import unittest

import harness

DELAY_S = 3.0
CLIENTS = "/api/cascade/clients"


class SlowRelay:
    """Accepts on a loopback port; DELAY_S after each accept, connects to |target| and copies
    bytes both ways."""

    def __init__(self, target):
        self.target = target
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.accepted = 0
        self.stopped = False
        self.socks = []
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def accept_loop(self):
        while not self.stopped:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            self.accepted += 1
            self.socks.append(c)
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        time.sleep(DELAY_S)
        try:
            u = socket.create_connection(("127.0.0.1", self.target), timeout=5)
        except OSError:
            c.close()
            return
        u.settimeout(None)
        self.socks.append(u)
        threading.Thread(target=harness.tcp_pump, args=(u, c), daemon=True).start()
        harness.tcp_pump(c, u)

    def close(self):
        self.stopped = True
        self.lsock.close()
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass


class SlowReplicasTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.require_controller()
        cls.pg = harness.shared_cluster()

    def setUp(self):
        self.db = self.pg.create_database()
        self.ctl = harness.Controller(self.pg.dsn(self.db))
        self.relays = [SlowRelay(self.ctl.control_port) for _ in range(2)]
        self.agent = None

    def tearDown(self):
        if self.agent is not None:
            self.agent.stop(expected_errors=())
        for r in self.relays:
            r.close()
        self.ctl.stop()
        self.pg.drop_database(self.db)

    def test_slow_replicas_are_waited_for(self):
        name = "patient"
        harness.envelope_ok(self, self.ctl.api("POST", CLIENTS,
                                               {"name": name, "secret": name + "-secret"}), 201)
        urls = ["tls+tcp://127.0.0.1:%d" % r.port for r in self.relays]
        t0 = time.monotonic()
        self.agent = harness.Agent(self.ctl, name, name + "-secret", config={
            "controller": {"url": urls, "servername": "cascade-controller"}})
        try:
            harness.wait_for(lambda: self.agent.status()["controller"]["state"] == "running", 25,
                             interval=0.1, what="running through a slow URL")
        except Exception:
            st = self.agent.status()["controller"]
            self.fail("agent never ran behind two slow URLs: state %s, %d moves, last error %r"
                      % (st["state"], st.get("url_moves", -1), st.get("last_error")))
        took = time.monotonic() - t0
        print("  two URLs, each %.0f s slow to connect: running after %.1f s, %d connections "
              "tried" % (DELAY_S, took, sum(r.accepted for r in self.relays)), flush=True)


if __name__ == "__main__":
    unittest.main()
