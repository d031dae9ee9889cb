#!/usr/bin/env python3
"""The live feed (docs/api.md, "Live feed"): GET /api/feed as Server-Sent Events and as a long
poll, against a real controller, PostgreSQL and agents.

Checked: a node created gives a `node` event; an agent that starts makes it online, one killed
with -9 offline after its session lease, and its links down; a rule change moves the node's
desired generation, then the agent's applied one; ffmpeg publishing gives a `stream` start,
then a stop; the links of a two-node tree come up; Last-Event-ID resumes after that id, and an id
the controller no longer holds gives `reset` first; the long poll answers at once, when an event
comes, or after its wait; a viewer may read it, no token gets 401; limits per token and per
controller; 20 open feeds leave REST calls prompt; a second controller on the same database (a
replica) shows a change made through the first."""

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from feedclient import FeedReader  # noqa: E402

CLIENTS = "/api/cascade/clients"
FFMPEG = shutil.which("ffmpeg")
LEASE_S = 2
CTL_CONFIG = {"control": {"heartbeat": 500, "polltimeout": 3000, "sessionlease": "%ds" % LEASE_S}}
AGENT_ERRORS = [r"(?i)controller|connection|revoked|closed|refused|timed out|unavailable|link"]
CTL_ERRORS = [r"(?i)connection"]


class FeedTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.require_controller()
        cls.pg = harness.shared_cluster()

    def setUp(self):
        self.db = self.pg.create_database()
        self.agents, self.feeds, self.ctls = [], [], []
        self.ctl = self.controller(CTL_CONFIG)

    def tearDown(self):
        for f in self.feeds:
            f.close()
        for a in self.agents:
            if a.proc is not None:
                a.stop(expected_errors=AGENT_ERRORS)
        for c in self.ctls:
            if c.proc is not None:
                c.stop(expected_errors=CTL_ERRORS)

    def controller(self, config, **kw):
        c = harness.Controller(self.pg.dsn(self.db), config=config, **kw)
        self.ctls.append(c)
        return c

    def feed(self, ctl=None, **kw):
        f = FeedReader(ctl or self.ctl, **kw)
        self.feeds.append(f)
        return f

    def create(self, name, parent=None, ctl=None):
        body = {"name": name, "secret": name + "-secret"}
        if parent is not None:
            body["parent_id"] = parent
        return harness.envelope_ok(self, (ctl or self.ctl).api("POST", CLIENTS, body), 201)

    def token(self, role):
        return harness.envelope_ok(self, self.ctl.api("POST", "/api/auth/tokens",
                                                      {"name": role + harness.random_suffix(4),
                                                       "role": role}), 201)["token"]

    # -------------------------------------------------------------------------------------------

    def test_stream_answer_and_auth(self):
        st, _, body = self.ctl.request("GET", "/api/feed")
        harness.envelope_err(self, (st, None, body), 401)
        f = self.feed(token=self.token("viewer"))
        self.assertEqual(f.status, 200)
        self.assertTrue(f.headers.get("Content-Type", "").startswith("text/event-stream"),
                        f.headers.get("Content-Type"))
        self.assertEqual(f.headers.get("Cache-Control"), "no-store")
        n = self.create("solo")
        e = f.wait(lambda e: e["event"] == "node" and e["data"]["id"] == n["id"], 10,
                   "the node event")
        self.assertEqual(e["data"], {"id": n["id"], "name": "solo", "online": False})
        self.assertIsInstance(e["id"], int)
        harness.envelope_ok(self, self.ctl.api("DELETE", "%s/%d" % (CLIENTS, n["id"])))
        f.wait(lambda e: e["event"] == "node" and e["data"] == {"id": n["id"], "deleted": True},
               10, "the deletion event")
        ids = [e["id"] for e in f.snapshot()]
        self.assertEqual(ids, sorted(ids))
        self.assertEqual(len(ids), len(set(ids)))
        # a bad Last-Event-ID or wait without since is refused
        st, _, body = self.ctl.api("GET", "/api/feed", headers={"Last-Event-ID": "x1"})
        harness.envelope_err(self, (st, None, body), 400)
        st, _, body = self.ctl.api("GET", "/api/feed?wait=3")
        harness.envelope_err(self, (st, None, body), 400)

    def test_keepalive(self):
        f = self.feed()
        harness.wait_for(lambda: any(c == "keepalive" for _, c in f.comments), 20,
                         what="a keepalive comment")
        self.assertFalse(f.closed.is_set())

    def test_tree_online_links_generation_offline(self):
        f = self.feed()
        hq = self.create("hq")
        edge = self.create("edge", hq["id"])
        ids = {hq["id"], edge["id"]}
        port = harness.free_udp_port()
        a_hq = harness.Agent(self.ctl, "hq", "hq-secret", config={"cascadeserver": {"quic": {
            "listenaddr": "127.0.0.1:%d" % port}}})
        self.agents.append(a_hq)
        a_edge = harness.Agent(self.ctl, "edge", "edge-secret")
        self.agents.append(a_edge)
        for i in ids:
            f.wait(lambda e, i=i: e["event"] == "node" and e["data"]["id"] == i
                   and e["data"]["online"] is True, 20, "node %d online" % i)
        up = f.wait(lambda e: e["event"] == "link" and e["data"]["node"] == edge["id"]
                    and e["data"]["up"] is True, 20, "the edge's parent link up")
        self.assertEqual(up["data"]["peer"], hq["id"])
        self.assertEqual(up["data"]["role"], "parent")
        self.assertIsInstance(up["data"]["rtt_ms"], (int, float))
        f.wait(lambda e: e["event"] == "link" and e["data"]["node"] == hq["id"]
               and e["data"]["peer"] == edge["id"] and e["data"]["role"] == "child"
               and e["data"]["up"] is True, 20, "hq's child link up")
        # a rule change: desired moves, then the agent applies it
        start = len(f.snapshot())
        harness.envelope_ok(self, self.ctl.api("PUT", "%s/%d" % (CLIENTS, edge["id"]),
                                               {"autopush": False}))
        d = f.wait(lambda e: e["id"] > f.snapshot()[start - 1]["id"] and e["event"] == "generation"
                   and e["data"]["id"] == edge["id"]
                   and e["data"]["desired"] > e["data"]["applied"],
                   10, "the desired generation")
        want = d["data"]["desired"]
        f.wait(lambda e: e["event"] == "generation" and e["data"]["id"] == edge["id"]
               and e["data"]["applied"] == want, 20, "generation %d applied" % want)
        # kill -9: its link goes down at hq, and the node offline after its lease
        a_edge.proc.kill()
        a_edge.proc.wait()
        a_edge.proc = None
        t0 = time.monotonic()
        f.wait(lambda e: e["event"] == "link" and e["data"]["node"] == hq["id"]
               and e["data"]["peer"] == edge["id"] and e["data"]["up"] is False, 30,
               "hq's child link down")
        f.wait(lambda e: e["event"] == "node" and e["data"]["id"] == edge["id"]
               and e["data"]["online"] is False, 30, "the edge offline")
        self.assertLess(time.monotonic() - t0, 30)

    @unittest.skipUnless(FFMPEG, "ffmpeg not installed")
    def test_stream_start_stop(self):
        n = self.create("pub")
        a = harness.Agent(self.ctl, "pub", "pub-secret", config={"publish": {
            "delayclosetimeout": "0s"}})
        self.agents.append(a)
        f = self.feed()
        pub = subprocess.Popen([FFMPEG, "-v", "error", "-re", "-f", "lavfi", "-i",
                                "testsrc=size=160x120:rate=25", "-t", "60", "-c:v", "libx264",
                                "-preset", "ultrafast", "-g", "25", "-pix_fmt", "yuv420p",
                                "-f", "flv", a.rtmp_url("live/feed")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            e = f.wait(lambda e: e["event"] == "stream" and e["data"]["state"] == "start", 30,
                       "the stream start")
            self.assertEqual(e["data"], {"node": n["id"], "path": "live/feed", "state": "start",
                                         "origin": "local"})
        finally:
            pub.kill()
            pub.wait()
        e = f.wait(lambda e: e["event"] == "stream" and e["data"]["state"] == "stop", 30,
                   "the stream stop")
        self.assertEqual(e["data"], {"node": n["id"], "path": "live/feed", "state": "stop",
                                     "origin": "local"})

    def test_resume_and_reset(self):
        f = self.feed()
        nodes = [self.create("r%d" % i) for i in range(4)]
        f.wait(lambda e: e["event"] == "node" and e["data"]["id"] == nodes[-1]["id"], 10,
               "the last node event")
        evs = f.snapshot()
        f.close()
        # resume after the second event: exactly the ones after it, in order
        g = self.feed(last_id=evs[1]["id"])
        g.wait(lambda e: e["id"] == evs[-1]["id"], 10, "the resumed events")
        self.assertEqual([e["id"] for e in g.snapshot()][:len(evs) - 2],
                         [e["id"] for e in evs[2:]])
        self.assertNotIn("reset", [e["event"] for e in g.snapshot()])
        # an id newer than any event: reset first
        h = self.feed(last_id=evs[-1]["id"] + 1000)
        r = h.wait(lambda e: True, 10, "the first event")
        self.assertEqual(r["event"], "reset")
        self.assertEqual(r["id"], evs[-1]["id"])

    def test_reset_when_fallen_out_of_the_buffer(self):
        c = self.controller({"feed": {"buffer": 16}})
        first = self.create("b0", ctl=c)
        for i in range(1, 20):
            self.create("b%d" % i, ctl=c)
        last = harness.wait_for(lambda: self.longpoll(c, 0, 0)["next"], 10, what="events")
        harness.wait_for(lambda: self.longpoll(c, 0, 0)["events"][0]["kind"] == "reset", 10,
                         what="the buffer to turn over")
        self.assertEqual(first["id"], 1)
        f = self.feed(ctl=c, last_id=1)
        r = f.wait(lambda e: True, 10, "the first event")
        self.assertEqual(r["event"], "reset")
        self.assertGreaterEqual(r["id"], last)
        # the long poll says the same
        p = self.longpoll(c, 1, 0)
        self.assertEqual(p["events"][0]["kind"], "reset")
        self.assertEqual(p["next"], p["events"][0]["id"])

    def longpoll(self, ctl, since, wait, token=None, timeout=40):
        st, _, body = ctl.api("GET", "/api/feed?since=%d&wait=%d" % (since, wait), token=token,
                              timeout=timeout)
        return harness.envelope_ok(self, (st, None, body))

    def test_long_poll(self):
        a = self.create("lp-a")
        p = harness.wait_for(lambda: self.longpoll(self.ctl, 0, 0)["events"] or None, 10,
                             what="the first event")
        self.assertEqual(p[0]["kind"], "node")
        self.assertEqual(p[0]["data"], {"id": a["id"], "name": "lp-a", "online": False})
        nxt = self.longpoll(self.ctl, 0, 0)["next"]
        self.assertEqual(nxt, p[-1]["id"])
        # nothing newer: answered after the wait
        t0 = time.monotonic()
        q = self.longpoll(self.ctl, nxt, 1)
        self.assertEqual(q, {"next": nxt, "events": []})
        self.assertGreaterEqual(time.monotonic() - t0, 0.9)
        # an event during the wait: answered when it comes, well before the wait
        timer = threading.Timer(0.5, lambda: self.create("lp-b"))
        timer.start()
        t0 = time.monotonic()
        q = self.longpoll(self.ctl, nxt, 20, token=self.token("viewer"))
        took = time.monotonic() - t0
        timer.join()
        self.assertLess(took, 5)
        self.assertEqual([e["kind"] for e in q["events"]], ["node"])
        self.assertEqual(q["events"][0]["data"]["name"], "lp-b")
        self.assertEqual(q["next"], q["events"][0]["id"])
        # bounds
        for bad in ("since=x", "since=1&wait=31", "since=-1", "since=1&wait=1.5"):
            st, _, body = self.ctl.api("GET", "/api/feed?" + bad)
            harness.envelope_err(self, (st, None, body), 400)
        st, _, body = self.ctl.request("GET", "/api/feed?since=0&wait=0")
        harness.envelope_err(self, (st, None, body), 401)

    def test_limits(self):
        c = self.controller({"feed": {"maxclients": 3, "maxpertoken": 2}})
        v1, v2 = self.token("viewer"), self.token("viewer")
        a = [self.feed(ctl=c, token=v1), self.feed(ctl=c, token=v1)]
        self.assertEqual([f.status for f in a], [200, 200])
        over = self.feed(ctl=c, token=v1)
        self.assertEqual(over.status, 429, over.__dict__.get("body"))
        b = self.feed(ctl=c, token=v2)
        self.assertEqual(b.status, 200)
        full = self.feed(ctl=c, token=v2)
        self.assertEqual(full.status, 503, full.__dict__.get("body"))
        # a long poll that waits counts too; one closed frees its place
        nxt = self.longpoll(c, 0, 0, token=v2)["next"]
        st, _, body = c.api("GET", "/api/feed?since=%d&wait=1" % nxt, token=v2)
        harness.envelope_err(self, (st, None, body), 503)
        # one that answers at once takes no place
        self.longpoll(c, 0, 0, token=v2)
        a[0].close()
        harness.wait_for(lambda: self.feed(ctl=c, token=v2).status == 200, 20,
                         what="a place freed by a closed feed")

    def test_many_feeds_leave_rest_prompt(self):
        # two tokens: feed.maxpertoken is 16
        tokens = [self.ctl.admin_token, self.token("viewer")]
        feeds = [self.feed(token=tokens[i % 2]) for i in range(20)]
        self.assertEqual({f.status for f in feeds}, {200})
        for _ in range(20):
            t0 = time.monotonic()
            harness.envelope_ok(self, self.ctl.api("GET", CLIENTS, timeout=5))
            self.assertLess(time.monotonic() - t0, 1.0)
        n = self.create("many")
        for f in feeds:
            f.wait(lambda e: e["event"] == "node" and e["data"]["id"] == n["id"], 10,
                   "the event on every feed")
        self.assertEqual(self.metric(self.ctl, "cascade_feed_open"), 20)

    def metric(self, ctl, name):
        st, _, body = ctl.request("GET", "/metrics")
        self.assertEqual(st, 200)
        for line in body.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None

    def test_slow_reader_dropped(self):
        # a ring larger than one batch read from the database (1000 rows): only slowness drops
        c = self.controller({"feed": {"buffer": 2500}})
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(10)
        s.connect((c.host, c.port))
        try:
            s.sendall(("GET /api/feed HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n"
                       % c.admin_token).encode())
            head = b""
            while b"\r\n\r\n" not in head:
                head += s.recv(1024)
            self.assertIn(b" 200 ", head.split(b"\r\n")[0])
            harness.wait_for(lambda: self.metric(c, "cascade_feed_open") == 1, 10,
                             what="the feed open")
            # far more events than the socket buffers hold, while the reader reads nothing
            self.pg.psql("INSERT INTO feed_events (kind, data) SELECT 'node', "
                         "jsonb_build_object('id', g, 'name', 'n' || g, 'online', false) "
                         "FROM generate_series(1, 100000) g; NOTIFY cascade_feed", db=self.db)
            harness.wait_for(lambda: self.metric(c, "cascade_feed_dropped_total") == 1, 60,
                             what="the slow reader dropped")
            # what was buffered drains, then the connection ends
            s.settimeout(20)
            while s.recv(65536):
                pass
            self.assertEqual(self.metric(c, "cascade_feed_open"), 0)
            # REST goes on
            harness.envelope_ok(self, c.api("GET", CLIENTS))
        finally:
            s.close()

    def test_rows_bounded(self):
        self.pg.psql("INSERT INTO feed_events (kind, data) SELECT 'node', "
                     "jsonb_build_object('id', g) FROM generate_series(1, 5000) g", db=self.db)
        # a replica prunes when it starts, then once a minute
        self.controller({"feed": {"maxrows": 1000}})
        count = lambda: int(self.pg.psql("SELECT count(*) FROM feed_events", db=self.db).strip())
        harness.wait_for(lambda: count() <= 1000, 20, what="feed_events pruned to feed.maxrows")
        newest = int(self.pg.psql("SELECT max(id) FROM feed_events", db=self.db).strip())
        self.assertGreaterEqual(newest, 5000)  # the newest rows stay

    def test_replica_shows_changes_of_another(self):
        b = self.controller(CTL_CONFIG)
        fb = self.feed(ctl=b)
        n = self.create("from-a")  # through replica A
        e = fb.wait(lambda e: e["event"] == "node" and e["data"]["id"] == n["id"], 10,
                    "replica B's event")
        fa = self.feed(ctl=self.ctl, last_id=e["id"] - 1)
        ea = fa.wait(lambda x: x["event"] == "node" and x["data"]["id"] == n["id"], 10,
                     "replica A's event")
        self.assertEqual(ea["id"], e["id"])  # one id space: Last-Event-ID works on any replica
        # a session held by A: B shows the node online, then offline when its agent stops
        ag = harness.Agent(self.ctl, "from-a", "from-a-secret")
        self.agents.append(ag)
        fb.wait(lambda e: e["event"] == "node" and e["data"]["id"] == n["id"]
                and e["data"]["online"] is True, 20, "replica B's online event")
        held = self.pg.psql("SELECT count(*) FROM sessions WHERE node_id = %d" % n["id"],
                            db=self.db).strip()
        self.assertEqual(held, "1")
        ag.stop(expected_errors=AGENT_ERRORS)
        fb.wait(lambda e: e["event"] == "node" and e["data"]["id"] == n["id"]
                and e["data"]["online"] is False, 30, "replica B's offline event")


if __name__ == "__main__":
    unittest.main()
