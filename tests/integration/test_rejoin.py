#!/usr/bin/env python3
"""Rejoin after a controller restart (issue 15, "Joining at scale").

An agent whose control connection stays up but carries nothing (its requests time out) must
replace it: the REQ socket never redials while it has a pipe, so an agent that kept its socket
timed out every 10 s for ever. A proxy in front of the controller turns the first connections
into such zombies, then forwards new ones; simulated agents given only the proxy's URL must all
run again soon after.

Then the controller is restarted under 300 simulated agents: all run again within REJOIN_S, a
guard at a small scale (6 s before and after the fix here; the stuck agents of the issue showed at
3,000, tests/bench/bench_rejoin.py)."""

import os
import re
import socket
import subprocess
import tempfile
import threading
import time
import unittest

import harness

REJOIN_S = 40
RUNNING_RE = re.compile(rb"simulate: running=(\d+) connecting=(\d+) failed=(\d+)")


class ZombieProxy:
    """TCP proxy on a free loopback port in front of |target|. A connection accepted while
    |zombie| is set is forwarded for its first ZOMBIE_AFTER_S (TLS and SP handshakes done, the
    agent's pipe up), then the client's bytes are read and dropped, the connection left open: a
    connection that stays up but carries nothing, as the controller end of a half-dead TCP
    connection does. Connections accepted later are forwarded."""

    ZOMBIE_AFTER_S = 1.0

    def __init__(self, target_port):
        self.target = ("127.0.0.1", target_port)
        self.zombie = True
        self.zombies = 0
        self.forwarded = 0  # connections accepted while not |zombie|
        self.socks = []
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(1024)
        self.port = self.lsock.getsockname()[1]
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            try:
                u = socket.create_connection(self.target, timeout=5)
            except OSError:
                c.close()
                continue
            u.settimeout(None)
            self.socks += [c, u]
            until = None
            if self.zombie:
                self.zombies += 1
                until = time.monotonic() + self.ZOMBIE_AFTER_S
            else:
                self.forwarded += 1
            threading.Thread(target=harness.tcp_pump, args=(c, u, until), daemon=True).start()
            threading.Thread(target=harness.tcp_pump, args=(u, c, None), daemon=True).start()

    def stop(self):
        self.stopped = True
        self.lsock.close()
        for s in self.socks:
            s.close()


class Sim:
    """cascade-agent --simulate n, its counts read from its log."""

    def __init__(self, ctl, port, n, workdir, tag, backoffmax=2000):
        self.log_path = os.path.join(workdir, "sim-%s.log" % tag)
        cfg = os.path.join(workdir, "sim-%s.yaml" % tag)
        with open(cfg, "w") as f:
            f.write(harness.to_yaml({
                "node": {"name": "sim%s" % tag, "secret": "simulated-secret",
                         "jointoken": ctl.join_token,
                         "datadir": os.path.join(workdir, "sim-data-%s" % tag)},
                "controller": {"url": "tls+tcp://127.0.0.1:%d" % port,
                               "ca": os.path.join(ctl.control_dir, "ca.crt"),
                               "backoffmax": backoffmax},
                "http": {"listenaddr": "127.0.0.1:0"},
                "log": {"level": "warn"},
            }))
        self.logf = open(self.log_path, "wb")
        self.proc = subprocess.Popen([harness.agent_path(), "-c", cfg, "--simulate", str(n)],
                                     stdout=self.logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=harness.sanitizer_env())
        harness.at_exit(self.stop)

    def running(self):
        with open(self.log_path, "rb") as f:
            m = RUNNING_RE.findall(f.read()[-4096:])
        return int(m[-1][0]) if m else 0

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()


class RejoinTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.require_controller()
        cls.pg = harness.shared_cluster()

    def test_connection_that_carries_nothing_is_replaced(self):
        n = 20
        ctl = harness.Controller(self.pg.dsn(self.pg.create_database()))
        proxy = ZombieProxy(ctl.control_port)
        work = tempfile.mkdtemp(prefix="cascade-test-rejoin-")
        sim = Sim(ctl, proxy.port, n, work, "zombie")
        try:
            harness.wait_for(lambda: sim.running() >= n, 30, interval=0.2,
                             what="%d agents running through the proxy" % n)
            self.assertGreaterEqual(proxy.zombies, n)  # more: some started over in the window
            proxy.zombie = False  # connections from now on are forwarded
            # Their connections carry nothing now: a heartbeat goes unanswered (5 s apart,
            # 10 s to answer) and each agent starts again on a new connection. A rejoin that
            # resumes its TLS session can be over between two of the simulator's once-a-second
            # counts: the new connections say it.
            harness.wait_for(lambda: sim.running() < n or proxy.forwarded > 0, 30,
                             interval=0.2, what="the agents noticing their requests go unanswered")
            t0 = time.monotonic()
            try:
                harness.wait_for(lambda: proxy.forwarded >= n and sim.running() >= n, 45,
                                 interval=0.2)
            except TimeoutError:
                self.fail("%d of %d agents running, %d new connections 45 s after the first "
                          "noticed: the rest wait on connections that carry nothing"
                          % (sim.running(), n, proxy.forwarded))
            print("all %d running again %.1f s after the first agent noticed"
                  % (n, time.monotonic() - t0))
        finally:
            sim.stop()
            proxy.stop()
            ctl.stop()

    def test_restart_under_300_agents(self):
        n = 300
        ctl = harness.Controller(self.pg.dsn(self.pg.create_database()),
                                 config={"control": {"maxconnperaddr": 0}})
        work = tempfile.mkdtemp(prefix="cascade-test-rejoin-")
        sims = [Sim(ctl, ctl.control_port, n // 2, work, "r%d" % k, backoffmax=10000)
                for k in range(2)]

        def running():
            return sum(s.running() for s in sims)

        try:
            harness.wait_for(lambda: running() >= n, 120, interval=0.5,
                             what="%d agents running (first join)" % n)
            ctl.stop()
            harness.wait_for(lambda: running() < n // 20, 60, interval=0.5,
                             what="the simulators noticing the controller gone")
            ctl.start()
            t0 = time.monotonic()
            try:
                harness.wait_for(lambda: running() >= n, REJOIN_S, interval=0.5)
            except TimeoutError:
                self.fail("%d of %d agents running again %d s after the restart"
                          % (running(), n, REJOIN_S))
            print("all %d running again %.1f s after the restart" % (n, time.monotonic() - t0))
        finally:
            for s in sims:
                s.stop()
            ctl.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
