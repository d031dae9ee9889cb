#!/usr/bin/env python3
"""The data plane with no controller at all, and agents that move between controller URLs
(docs/operations.md, "Cached mode" and "Several controller URLs").

- A three-level tree hq <- region <- edge; ffmpeg publishes at hq, an HTTP-FLV player at edge
  pulls on demand. The controller stops for 60 s: the player keeps getting frames with no gap
  over 1 s; region is restarted during the outage and re-forms both its links from its state
  file (cached mode) and the player resumes; the controller comes back: every node is online
  within 15 s, no duplicate rows, the audit trail shows the disconnect and reconnect.
- controller.url with a dead URL first: online through the second within 5 s; the controller
  killed and started on the second port of the list: the agent follows within 5 s.
- Bad state files (corrupt, truncated, another node's, another CA's, an old format) are logged
  and ignored: no cached mode, no crash, and the agent registers normally once a controller
  answers."""

import copy
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.request
import struct

import harness
from test_media import FFMPEG, FFPROBE, make_media

CLIENTS = "/api/cascade/clients"
CTL_CONFIG = {"control": {"heartbeat": 500, "polltimeout": 3000}}
NODE_CONFIG = {
    "quic": {"idletimeout": "2s", "keepalive": "200ms", "handshaketimeout": "1s"},
    "controller": {"backoffmax": 5000},
    "cascadeclient": {"reconnectmax": "500ms", "onsub": {"pull": {".*": "m7s://$0"}}},
    "subscribe": {"waittimeout": "15s"},
    "publish": {"delayclosetimeout": "15s"},
    "pull": {"linger": "5s"},
}
OUTAGE_S = 60
# Nothing at error level is expected; a player cut by a restart is not an error.
AGENT_ERRORS = []


class WallClockReader(threading.Thread):
    """An HTTP-FLV player noting the arrival time of every video frame (monotonic clock);
    it reconnects when its connection ends, and counts the reconnects."""

    def __init__(self, url):
        super().__init__(daemon=True)
        self.url = url
        self.arrivals = []
        self.reconnects = 0
        self.errors = []
        self.stop = False
        self.lock = threading.Lock()

    def frames_since(self, t):
        with self.lock:
            return sum(1 for a in self.arrivals if a >= t)

    def max_gap(self, t0, t1):
        """Longest time without a video frame within [t0, t1] (edges count)."""
        with self.lock:
            ts = [a for a in self.arrivals if t0 <= a <= t1]
        if not ts:
            return t1 - t0
        pts = [t0] + ts + [t1]
        return max(b - a for a, b in zip(pts, pts[1:]))

    def run(self):
        first = True
        while not self.stop:
            if not first:
                self.reconnects += 1
            first = False
            try:
                with urllib.request.urlopen(self.url, timeout=10) as r:
                    if r.read(13)[:3] != b"FLV":
                        raise ValueError("not FLV")
                    while not self.stop:
                        hdr = r.read(11)
                        if len(hdr) < 11:
                            break
                        size = struct.unpack(">I", b"\0" + hdr[1:4])[0]
                        body = r.read(size + 4)
                        if hdr[0] == 9 and len(body) > 1 and (body[1] == 1 or body[0] & 0x80):
                            with self.lock:
                                self.arrivals.append(time.monotonic())
            except Exception as e:  # noqa: BLE001 - a reconnect, noted
                self.errors.append(repr(e))
                time.sleep(0.1)


def child_up(agent, child_id):
    """Whether |agent| (a fresh process: no stale link state) holds an up link from its child
    |child_id|."""
    return any(l["role"] == "child" and l["peer_id"] == child_id and l["state"] == "up"
               for l in agent.status()["links"])


def node_rows(ctl):
    st, _, body = ctl.api("GET", CLIENTS + "?size=100")
    assert st == 200, body
    return body["data"]


def events(ctl, node_id):
    st, _, body = ctl.api("GET", "/api/cascade/events?node=%d&size=100" % node_id)
    assert st == 200, body
    return [e["action"] for e in reversed(body["data"])]  # oldest first


@unittest.skipUnless(FFMPEG and FFPROBE, "ffmpeg/ffprobe not installed")
class OutageTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.require_controller()
        cls.tmp = tempfile.mkdtemp(prefix="cascade-autonomy-")
        cls.media = os.path.join(cls.tmp, "long.flv")
        make_media(cls.media, seconds=OUTAGE_S + 60)
        cls.pg = harness.shared_cluster()

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.db = self.pg.create_database()
        self.ctl = harness.Controller(self.pg.dsn(self.db), config=CTL_CONFIG)
        self.agents = {}
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        for a in self.agents.values():
            if a.proc is not None:
                a.stop(expected_errors=AGENT_ERRORS)
        if self.ctl.proc is not None:
            self.ctl.stop()

    def start_agent(self, name):
        cfg = copy.deepcopy(NODE_CONFIG)
        if name in self.ports:
            cfg["cascadeserver"] = {"quic": {"listenaddr": "127.0.0.1:%d" % self.ports[name]}}
        a = harness.Agent(self.ctl, name, name + "-secret", config=cfg)
        self.agents[name] = a
        return a

    def link_up(self, child, parent):
        return self.agents[child].parent_up(self.ids[parent])

    def test_controller_outage_with_region_restart(self):
        self.ports = {n: harness.free_udp_port() for n in ("hq", "region")}
        self.ids = {}
        for name, parent in (("hq", None), ("region", "hq"), ("edge", "region")):
            body = {"name": name, "secret": name + "-secret"}
            if parent:
                body["parent_id"] = self.ids[parent]
            self.ids[name] = harness.envelope_ok(self, self.ctl.api("POST", CLIENTS, body),
                                                 201)["id"]
        for n in ("hq", "region", "edge"):
            self.start_agent(n)
        for child, parent in (("region", "hq"), ("edge", "region")):
            harness.wait_for(lambda c=child, p=parent: self.link_up(c, p), 30,
                             what="%s -> %s link" % (child, parent))
        for n, a in self.agents.items():
            harness.wait_for(lambda a=a: os.path.exists(os.path.join(a.datadir, "state.json")),
                             10, what="%s's state file" % n)
        with open(os.path.join(self.agents["region"].datadir, "state.json")) as f:
            st = json.load(f)
        self.assertEqual((st["version"], st["node"]["id"], st["node"]["name"]),
                         (1, self.ids["region"], "region"))
        self.assertEqual(st["parent"]["id"], self.ids["hq"])
        self.assertEqual([c["id"] for c in st["children"]], [self.ids["edge"]])
        self.assertNotIn("region-secret", json.dumps(st))
        self.assertEqual(harness.forbidden_keys(st), [])

        path = "live/autonomy"
        p = subprocess.Popen([FFMPEG, "-v", "error", "-re", "-i", self.media, "-c", "copy", "-f",
                              "flv", self.agents["hq"].rtmp_url(path)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(p)
        harness.wait_for(lambda: path in self.agents["hq"].streams(), 15, what="published at hq")
        r = WallClockReader(self.agents["edge"].flv_url(path))
        r.start()
        harness.wait_for(lambda: len(r.arrivals) >= 50, 20, what="frames at edge")

        # -- the controller goes away ---------------------------------------------------------
        self.ctl.stop()
        t_stop = time.monotonic()
        harness.wait_for(lambda: all(a.status()["controller"]["state"] != "running"
                                     for a in self.agents.values()), 10,
                         what="every agent notices the controller is gone")
        # Let the outage run a while with nothing restarted, then restart the middle node.
        harness.wait_for(lambda: time.monotonic() - t_stop >= 15, 20, interval=0.2,
                         what="15 s of outage")
        t_kill = time.monotonic()
        gap_before_restart = r.max_gap(t_stop, t_kill)
        region = self.agents["region"]
        region.stop(expected_errors=AGENT_ERRORS)
        region.start()
        t_started = time.monotonic()
        st = region.status()
        self.assertTrue(st["config_generation"]["cached"], st)
        self.assertEqual(st["instance_id"], self.ids["region"])
        harness.wait_for(lambda: self.link_up("region", "hq"), 15, what="region -> hq (cached)")
        # Seen from the restarted region (the edge may still show its old link for an idle
        # timeout): both of its links are new ones.
        harness.wait_for(lambda: child_up(region, self.ids["edge"]), 15,
                         what="edge -> region (cached)")
        t_links = time.monotonic()
        harness.wait_for(lambda: r.frames_since(t_started) >= 25, 30, interval=0.05,
                         what="edge's player gets frames again")
        t_resumed = min(a for a in r.arrivals if a >= t_started)
        self.assertIn("cached mode", region.log_text())
        # Until the end of the outage, with nothing restarting, no gap over 1 s.
        harness.wait_for(lambda: time.monotonic() - t_stop >= OUTAGE_S, OUTAGE_S + 5,
                         interval=0.2, what="the rest of the outage")
        t_end = time.monotonic()
        gap_after_restart = r.max_gap(t_resumed, t_end)
        self.assertLess(gap_before_restart, 1.0,
                        "gap of %.2f s in the player before the restart" % gap_before_restart)
        self.assertLess(gap_after_restart, 1.0,
                        "gap of %.2f s in the player after it resumed" % gap_after_restart)

        # -- the controller comes back (same database, same CA) -------------------------------
        self.ctl.start()
        t_back = time.monotonic()

        def all_online():
            rows = node_rows(self.ctl)
            return all(n["online"] for n in rows) and \
                all(a.status()["controller"]["state"] == "running" for a in self.agents.values())
        harness.wait_for(all_online, 15, interval=0.1, what="every node online again")
        online_after = time.monotonic() - t_back
        rows = node_rows(self.ctl)
        self.assertEqual(sorted(n["name"] for n in rows), ["edge", "hq", "region"], rows)
        self.assertEqual(sorted(n["id"] for n in rows), sorted(self.ids.values()))
        harness.wait_for(lambda: not region.status()["config_generation"]["cached"], 10,
                         what="the live configuration replaces the cached one")
        self.assertIn("replaces the cached one", region.log_text())
        # The audit trail: region connected, (the controller restarted: its sessions are gone),
        # then connected again after the outage.
        ev = events(self.ctl, self.ids["region"])
        self.assertGreaterEqual(ev.count("node.connect"), 2, ev)
        self.assertTrue(r.frames_since(t_back) > 0 or harness.wait_for(
            lambda: r.frames_since(t_back) > 0, 5, what="frames after the controller returned"))
        r.stop = True
        print("  player at edge: longest gap %.2f s during %d s of outage before the restart, "
              "%.2f s after; region restart: links back %.2f s after its start, frames %.2f s "
              "after (gap %.2f s), player reconnects %d; all online %.2f s after the controller "
              "returned" % (gap_before_restart, int(t_kill - t_stop), gap_after_restart,
                            t_links - t_started, t_resumed - t_started,
                            r.max_gap(t_kill - 0.01, t_resumed), r.reconnects, online_after),
              flush=True)



def first_url(name, n):
    """Which of |n| controller URLs node |name| dials first: agent_first_url of
    agent/agent_backoff.c (FNV-1a 64 of the name, folded; test_agent_backoff pins its values)."""
    if n < 2:
        return 0
    h = 14695981039346656037
    for b in name.encode():
        h = ((h ^ b) * 1099511628211) & (2 ** 64 - 1)
    h ^= h >> 29
    return h % n


def name_dialing_first(prefix, n=2):
    """A node name whose first URL of |n| is the first one listed (the tests below put the URL
    they mean to start on first)."""
    return next("%s-%d" % (prefix, k) for k in range(100) if first_url("%s-%d" % (prefix, k), n) == 0)

class OneAgentTest(unittest.TestCase):
    """One controller on a fresh database and at most one agent (self.agent)."""

    @classmethod
    def setUpClass(cls):
        harness.require_controller()
        cls.pg = harness.shared_cluster()

    def setUp(self):
        self.db = self.pg.create_database()
        self.ctl = harness.Controller(self.pg.dsn(self.db), config=CTL_CONFIG)
        self.agent = None

    def tearDown(self):
        if self.agent is not None and self.agent.proc is not None:
            self.agent.stop(expected_errors=AGENT_ERRORS)
        if self.ctl.proc is not None:
            self.ctl.stop()


class FailoverTest(OneAgentTest):
    def create(self, name):
        return harness.envelope_ok(self, self.ctl.api("POST", CLIENTS,
                                                      {"name": name, "secret": name + "-secret"}),
                                   201)["id"]

    def url(self, port):
        return "tls+tcp://127.0.0.1:%d" % port

    def test_dead_first_url(self):
        name = name_dialing_first("two-urls")
        self.create(name)
        dead = harness.free_port()
        t0 = time.monotonic()
        self.agent = harness.Agent(self.ctl, name, name + "-secret", config={
            "controller": {"url": [self.url(dead), self.url(self.ctl.control_port)]}})
        st = harness.wait_for(lambda: (lambda s: s["controller"]["state"] == "running" and s)(
            self.agent.status()), 10, interval=0.05, what="running through the second URL")
        took = time.monotonic() - t0
        self.assertEqual(st["controller"]["url"], self.url(self.ctl.control_port))
        self.assertEqual(st["controller"]["urls"], [self.url(dead), self.url(self.ctl.control_port)])
        self.assertLessEqual(took, 5.0, "online through the second URL after %.2f s" % took)
        print("  dead first URL: online through the second %.2f s after the start" % took,
              flush=True)

    def test_host_names_expand_to_addresses(self):
        """A URL naming a host counts as one URL per address it resolves to; here localhost
        (127.0.0.1), dead port first."""
        name = name_dialing_first("by-name")
        self.create(name)
        dead, live = harness.free_port(), self.ctl.control_port
        t0 = time.monotonic()
        self.agent = harness.Agent(self.ctl, name, name + "-secret", config={
            "controller": {"url": ["tls+tcp://localhost:%d" % dead,
                                   "tls+tcp://localhost:%d" % live]}})
        harness.wait_for(lambda: self.agent.status()["controller"]["state"] == "running", 10,
                         interval=0.05, what="running through the second URL")
        took = time.monotonic() - t0
        st = self.agent.status()["controller"]
        self.assertEqual(st["url"], self.url(live))
        self.assertIn(self.url(dead), st["targets"])
        self.assertLessEqual(took, 5.0, "online after %.2f s" % took)
        print("  host names: online through the second URL's address %.2f s after the start"
              % took, flush=True)

    def test_comma_separated_and_controller_moves_to_second_port(self):
        name = name_dialing_first("mover")
        self.create(name)
        first, second = self.ctl.control_port, harness.free_port()
        self.agent = harness.Agent(self.ctl, name, name + "-secret", config={
            "controller": {"url": "%s, %s" % (self.url(first), self.url(second))}})
        harness.wait_for(lambda: self.agent.status()["controller"]["state"] == "running", 10,
                         what="running through the first URL")
        self.assertEqual(self.agent.status()["controller"]["url"], self.url(first))
        # It stays on a working URL.
        moves = self.agent.status()["controller"]["url_moves"]
        self.ctl.proc.send_signal(signal.SIGKILL)
        self.ctl.proc.wait()
        self.ctl.proc = None
        self.ctl._logf.close()
        self.ctl.control_port = second
        self.ctl.start()
        t_up = time.monotonic()

        def on_second():
            s = self.agent.status()
            return s["controller"]["state"] == "running" and s["controller"]["url"] == \
                self.url(second)
        harness.wait_for(on_second, 10, interval=0.05, what="running through the second URL")
        took = time.monotonic() - t_up
        self.assertLessEqual(took, 5.0, "online on the second port %.2f s after it was up" % took)
        self.assertGreater(self.agent.status()["controller"]["url_moves"], moves)
        rows = node_rows(self.ctl)
        harness.wait_for(lambda: all(n["online"] for n in node_rows(self.ctl)), 5,
                         what="the node online")
        self.assertEqual(len(rows), 1)
        print("  controller moved to the second port: agent online %.2f s after it answered"
              % took, flush=True)


class CachedParentTest(unittest.TestCase):
    """A parent restarted in cached mode accepts the child its cached topology names and still
    refuses a node of the same CA that it does not (0x201)."""

    @classmethod
    def setUpClass(cls):
        harness.require_controller()
        cls.pg = harness.shared_cluster()

    def setUp(self):
        self.db = self.pg.create_database()
        self.ctl = harness.Controller(self.pg.dsn(self.db), config=CTL_CONFIG)
        self.agents = {}

    def tearDown(self):
        for a in self.agents.values():
            if a.proc is not None:
                a.stop(expected_errors=AGENT_ERRORS)
        if self.ctl.proc is not None:
            self.ctl.stop()

    def refused(self, agent):
        st, _, body = agent.admin_request("GET", "/metrics", timeout=5)
        self.assertEqual(st, 200)
        text = body.decode() if isinstance(body, bytes) else str(body)
        for line in text.splitlines():
            if line.startswith('cascade_link_refused_total{reason="not_assigned"}'):
                return int(line.split()[-1])
        return 0

    def test_cached_parent_accepts_assigned_refuses_stranger(self):
        port = harness.free_udp_port()
        ids = {}
        for name, parent in (("par", None), ("kid", "par"), ("stranger", None)):
            body = {"name": name, "secret": name + "-secret"}
            if parent:
                body["parent_id"] = ids[parent]
            ids[name] = harness.envelope_ok(self, self.ctl.api("POST", CLIENTS, body), 201)["id"]
        base = copy.deepcopy(NODE_CONFIG)
        par_cfg = copy.deepcopy(base)
        par_cfg["cascadeserver"] = {"quic": {"listenaddr": "127.0.0.1:%d" % port}}
        for name, cfg in (("par", par_cfg), ("kid", base), ("stranger", base)):
            self.agents[name] = harness.Agent(self.ctl, name, name + "-secret", config=cfg)
        par, kid, stranger = self.agents["par"], self.agents["kid"], self.agents["stranger"]
        harness.wait_for(lambda: kid.parent_up(ids["par"]), 20, what="kid -> par")
        for a in self.agents.values():
            harness.wait_for(lambda a=a: os.path.exists(os.path.join(a.datadir, "state.json")) and
                             a.status()["certificate"], 10, what="state file and certificate")
        stranger.stop(expected_errors=AGENT_ERRORS)
        self.ctl.stop()
        par.stop(expected_errors=AGENT_ERRORS)
        par.start()
        self.assertTrue(par.status()["config_generation"]["cached"])
        harness.wait_for(lambda: child_up(par, ids["kid"]), 15, what="kid -> cached par")
        before = self.refused(par)
        stranger.extra_config = copy.deepcopy(base)
        stranger.extra_config["cascadeclient"]["enable"] = True
        stranger.extra_config["cascadeclient"]["server"] = "127.0.0.1:%d" % port
        stranger.start()
        self.assertTrue(stranger.status()["config_generation"]["cached"])
        harness.wait_for(lambda: self.refused(par) > before, 15,
                         what="par refuses the stranger (not_assigned)")
        self.assertFalse(any(l["peer_id"] == ids["stranger"] and l["state"] == "up"
                             for l in par.status()["links"]))
        self.assertTrue(child_up(par, ids["kid"]))


class BadStateTest(OneAgentTest):
    """A state file the agent must not trust is logged and ignored."""

    def test_bad_state_files(self):
        nid = harness.envelope_ok(self, self.ctl.api("POST", CLIENTS, {
            "name": "stateful", "secret": "stateful-secret"}), 201)["id"]
        a = self.agent = harness.Agent(self.ctl, "stateful", "stateful-secret",
                                       config=NODE_CONFIG)
        path = os.path.join(a.datadir, "state.json")
        harness.wait_for(lambda: os.path.exists(path), 15, what="the state file")
        with open(path) as f:
            good_text = f.read()
        good = json.loads(good_text)
        self.assertEqual(good["node"]["id"], nid)
        a.stop(expected_errors=AGENT_ERRORS)
        self.ctl.stop()

        def variant(**kw):
            d = copy.deepcopy(good)
            for k, v in kw.items():
                if k == "name":
                    d["node"]["name"] = v
                else:
                    d[k] = v
            return json.dumps(d)
        cases = [
            ("corrupt", "\x00\xffnot json at all{{{", "not JSON"),
            ("truncated", good_text[:len(good_text) // 2], "not JSON"),
            ("other node", variant(name="someone-else"), "belongs to node 'someone-else'"),
            ("other CA", variant(ca_sha256=":".join(["AB"] * 32)), "another CA"),
            ("old format", variant(version=0), "format version 0"),
        ]
        # With no controller: the good file gives cached mode (the check below can fail),
        # each bad one does not.
        for label, text, why in [("good", good_text, None)] + cases:
            with self.subTest(case=label):
                with open(path, "w") as f:
                    f.write(text)
                log_before = len(a.log_text())
                a.start()
                st = a.status()
                self.assertIsNone(a.proc.poll())
                if why is None:
                    self.assertTrue(st["config_generation"]["cached"], st)
                    self.assertEqual(st["instance_id"], nid)
                else:
                    harness.wait_for(lambda: "ignoring the state file" in
                                     a.log_text()[log_before:], 5, what="the log line")
                    self.assertIn(why, a.log_text()[log_before:])
                    self.assertFalse(st["config_generation"]["cached"], st)
                    self.assertEqual(st["config_generation"]["applied"], 0, st)
                    self.assertIsNone(st["instance_id"], st)
                    self.assertEqual(st["links"], [])
                a.stop(expected_errors=AGENT_ERRORS)
        # The controller is back: an agent with a bad file registers as usual and writes a
        # good state file again.
        with open(path, "w") as f:
            f.write(good_text[:10])
        self.ctl.start()
        a.start()
        harness.wait_for(lambda: a.status()["controller"]["state"] == "running", 15,
                         what="authenticated")
        harness.wait_for(lambda: a.status()["config_generation"]["applied"] > 0, 10,
                         what="a live configuration")

        def rewritten():
            try:
                with open(path) as f:
                    return json.load(f)["node"]["id"] == nid
            except (OSError, ValueError):
                return False
        harness.wait_for(rewritten, 10, what="the state file rewritten")
        st = a.status()
        self.assertEqual(st["instance_id"], nid)
        self.assertFalse(st["config_generation"]["cached"])
        self.assertEqual(len(node_rows(self.ctl)), 1)


if __name__ == "__main__":
    unittest.main(verbosity=2)
