#!/usr/bin/env python3
"""Managing live streams at a node (docs/api.md, "Managing streams"), with a real controller, real
agents and real ffmpeg: the connections of a stream (an RTMP publisher, an RTMP and an HTTP-FLV
player) with plausible bytes and durations; a player kicked through the controller's API relay
ends (its ffmpeg exits) while the other plays on; a kicked publisher ends its stream at once and
may publish again; a drop through the relay ends every player and removes the stream at once
(well before publish.delayclosetimeout); each kick and drop is in the controller's events; bad
requests change nothing. The limits: subscribe.maxplayers refuses the player beyond it (RTMP
NetStream.Play.Failed with the reason, HTTP 503 with the reason), and subscribe.maxbandwidth
refuses a new player once the node sends more than it to players (RTMP with the reason, HTTP
503 with Retry-After) while the player already playing goes on."""

import os
import shutil
import subprocess
import tempfile
import time
import unittest

import harness

FFMPEG = shutil.which("ffmpeg")
CTL_CONFIG = {
    "control": {"heartbeat": 1000, "polltimeout": 5000},
    "cascadeserver": {"relayapi": {"allow": ["/api/stream/"], "deny": []}},
}
BASE = {
    "cascadeclient": {"relayapi": {"allow": ["/api/stream/"]}},
    "subscribe": {"waittimeout": "5s"},
    # long, so that a stream gone within a second was dropped, not timed out
    "publish": {"delayclosetimeout": "30s"},
}
AGENT_ERRORS = [r"(?i)authentication failed"]


def make_media(path, seconds):
    subprocess.run([FFMPEG, "-v", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25",
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t",
                    str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-g", "25",
                    "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k", "-f", "flv", path],
                   check=True, timeout=120)


def ended(proc, timeout):
    """Waits for |proc| to exit; its return code, or None when it still runs."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


@unittest.skipUnless(FFMPEG, "ffmpeg not installed")
class StreamAdminTest(unittest.TestCase):
    @classmethod
    def start_controller(cls, prefix):
        """A temporary directory with the test stream, PostgreSQL's database and a controller."""
        harness.require_controller()
        cls.tmp = tempfile.mkdtemp(prefix=prefix)
        cls.media = os.path.join(cls.tmp, "src.flv")
        make_media(cls.media, 60)
        cls.procs = []
        cls.pg = harness.shared_cluster()
        cls.db = cls.pg.create_database()
        cls.ctl = harness.Controller(cls.pg.dsn(cls.db), config=CTL_CONFIG)

    @classmethod
    def setUpClass(cls):
        cls.start_controller("cascade-streamadm-")
        cls.agent = harness.Agent(cls.ctl, "adm-a", "adm-a-secret", config=BASE)
        cls.lim = harness.Agent(cls.ctl, "adm-lim", "adm-lim-secret",
                                config=harness.deep_merge(BASE, {"subscribe": {"maxplayers": 1}}))
        # 50 kbit/s: far below one player of the test stream
        cls.bw = harness.Agent(cls.ctl, "adm-bw", "adm-bw-secret",
                               config=harness.deep_merge(BASE, {"subscribe": {"maxbandwidth": 50}}))
        cls.node = harness.wait_for(lambda: cls.agent.status().get("instance_id"), 30,
                                    what="agent authenticated")
        for a in (cls.agent, cls.lim, cls.bw):
            harness.wait_for(lambda a=a: a.status()["config_generation"]["applied"] > 0, 30,
                             what="agent configured")

    @classmethod
    def tearDownClass(cls):
        for p in cls.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        for a in (cls.agent, cls.lim, cls.bw):
            a.stop(expected_errors=AGENT_ERRORS)
        cls.ctl.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    # helpers ---------------------------------------------------------------------------------

    def spawn(self, cmd):
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        return p

    def publish(self, agent, path):
        return self.spawn([FFMPEG, "-v", "error", "-re", "-i", self.media, "-c", "copy", "-f",
                           "flv", agent.rtmp_url(path)])

    def play(self, url):
        return self.spawn([FFMPEG, "-v", "error", "-rw_timeout", "20000000", "-i", url,
                           "-c", "copy", "-f", "flv", "-y", os.devnull])

    def relay(self, method, path, body=None, node=None):
        return self.ctl.request(method, "/api/relay/%d%s" % (node or self.node, path), body=body,
                                token=self.ctl.admin_token)

    def conns(self, agent, path=None):
        q = "/api/stream/connections" + ("?path=" + path if path else "")
        st, _, body = agent.admin_request("GET", q)
        self.assertEqual(st, 200, body)
        self.assertEqual(body["code"], 0)
        self.assertEqual(body["total"], len(body["data"]))
        return body["data"]

    def streams(self, agent):
        st, _, body = agent.admin_request("GET", "/api/stream/list")
        return {s["path"]: s for s in body["data"]}

    def wait_conns(self, agent, path, want, what):
        """Waits until |path| has the connections |want| (a list of (kind, protocol)), each
        having moved bytes."""
        def ready():
            c = self.conns(agent, path)
            have = sorted((x["kind"], x["protocol"]) for x in c)
            moved = all(x["bytes_in" if x["kind"] == "publisher" else "bytes_out"] > 0
                        for x in c)
            return c if have == sorted(want) and moved else None
        return harness.wait_for(ready, 30, what=what)

    def events(self, action):
        st, _, body = self.ctl.api("GET", "/api/cascade/events?size=100")
        self.assertEqual(st, 200, body)
        return [e for e in body["data"] if e["action"] == action]

    # management -----------------------------------------------------------------------------

    def test_1_list_kick_drop_through_relay(self):
        path = "live/adm"
        pub = self.publish(self.agent, path)
        rtmp = self.play(self.agent.rtmp_url(path))
        http = self.play(self.agent.flv_url(path))
        c = self.wait_conns(self.agent, path, [("publisher", "rtmp"), ("player", "rtmp"),
                                               ("player", "httpflv")], "three connections")
        time.sleep(1.0)  # some seconds of media, for plausible counts
        c = {(x["kind"], x["protocol"]): x for x in self.conns(self.agent, path)}
        p, r, h = c[("publisher", "rtmp")], c[("player", "rtmp")], c[("player", "httpflv")]
        for x in (p, r, h):
            self.assertEqual(x["path"], path)
            self.assertRegex(x["addr"], r"^127\.0\.0\.1:\d+$")
            self.assertGreater(x["duration_ms"], 500)
            self.assertLess(x["duration_ms"], 120000)
            self.assertRegex(x["since"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertEqual(len({p["id"], r["id"], h["id"]}), 3)
        # a publisher of 320x240 H.264 + AAC for a second or more: tens of KB at least
        self.assertGreater(p["bytes_in"], 20000)
        self.assertGreater(r["bytes_out"], 20000)
        self.assertGreater(h["bytes_out"], 20000)
        # every connection of the node, without a path
        self.assertTrue({p["id"], r["id"], h["id"]} <= {x["id"] for x in self.conns(self.agent)})
        # the same list through the relay (a viewer may read it)
        st, _, body = self.relay("GET", "/api/stream/connections?path=" + path)
        self.assertEqual(st, 200, body)
        self.assertEqual({x["id"] for x in body["data"]}, {p["id"], r["id"], h["id"]})

        # bad requests change nothing
        before = sorted(x["id"] for x in self.conns(self.agent, path))
        for method, route, body_, want in [
                ("POST", "/api/stream/kick", {"id": 987654321}, 404),
                ("POST", "/api/stream/kick", '{"id": ', 400),
                ("POST", "/api/stream/kick", {"id": str(r["id"])}, 400),
                ("POST", "/api/stream/kick", {"id": r["id"], "all": True}, 400),
                ("GET", "/api/stream/kick", None, 405),
                ("DELETE", "/api/stream/drop", None, 405),
                ("POST", "/api/stream/drop", {"path": "live/none"}, 404),
                ("POST", "/api/stream/drop", {"path": "../live/adm"}, 400),
                ("POST", "/api/stream/drop", {}, 400),
                ("POST", "/api/stream/connections", "", 405)]:
            st, _, b = self.relay(method, route, body=body_)
            self.assertEqual(st, want, (method, route, body_, b))
            self.assertEqual(b["code"], want, b)
            self.assertTrue(b["message"])
        st, _, b = self.agent.admin_request("GET", "/api/stream/connections?path=nopath")
        self.assertEqual(st, 400, b)
        st, _, b = self.agent.admin_request("GET", "/api/stream/connections?path=live/none")
        self.assertEqual(st, 404, b)
        self.assertEqual(sorted(x["id"] for x in self.conns(self.agent, path)), before)
        self.assertIsNone(rtmp.poll())
        self.assertIsNone(http.poll())
        # never on the public media listener
        st, _, _ = self.agent.request("GET", "/api/stream/connections")
        self.assertEqual(st, 404)
        st, _, _ = self.agent.request("POST", "/api/stream/kick", body={"id": r["id"]})
        self.assertIn(st, (404, 405, 413))  # the public face takes no body at all
        self.assertIsNone(rtmp.poll())

        # kick the RTMP player through the relay: its ffmpeg ends, the other plays on
        st, _, b = self.relay("POST", "/api/stream/kick", body={"id": r["id"]})
        self.assertEqual(st, 200, b)
        self.assertEqual(b["data"]["id"], r["id"])
        self.assertEqual((b["data"]["kind"], b["data"]["protocol"]), ("player", "rtmp"))
        # NetStream.Play.Stop: the end of the stream as ffmpeg knows it, a clean exit
        self.assertEqual(ended(rtmp, 15), 0, "the kicked RTMP player did not end cleanly")
        self.assertRegex(self.agent.log_text(), r"play live/adm: ended by the operator")
        self.assertIsNone(http.poll(), "the other player ended too")
        left = harness.wait_for(
            lambda: (lambda c: c if r["id"] not in {x["id"] for x in c} else None)(
                self.conns(self.agent, path)), 10, what="kicked player gone from the list")
        hb = {x["id"]: x for x in left}[h["id"]]["bytes_out"]
        harness.wait_for(lambda: {x["id"]: x for x in self.conns(self.agent, path)}
                         [h["id"]]["bytes_out"] > hb + 10000, 10,
                         what="the other player still fed")
        # a kicked id is gone: kicking it again is 404
        st, _, b = self.relay("POST", "/api/stream/kick", body={"id": r["id"]})
        self.assertEqual(st, 404, b)

        # drop the stream through the relay: the players end, the publisher is cut, the stream
        # is gone at once (publish.delayclosetimeout is 30 s)
        rtmp2 = self.play(self.agent.rtmp_url(path))
        self.wait_conns(self.agent, path, [("publisher", "rtmp"), ("player", "rtmp"),
                                           ("player", "httpflv")], "a new RTMP player")
        t0 = time.monotonic()
        st, _, b = self.relay("POST", "/api/stream/drop", body={"path": path})
        self.assertEqual(st, 200, b)
        self.assertEqual(b["data"]["path"], path)
        self.assertEqual(b["data"]["ended"], 3)
        self.assertEqual(ended(http, 15), 0, "the HTTP-FLV player did not end cleanly")
        self.assertEqual(ended(rtmp2, 15), 0, "the RTMP player did not end cleanly")
        self.assertIsNotNone(ended(pub, 15), "the publisher was not cut")
        harness.wait_for(lambda: path not in self.streams(self.agent), 5, what="stream gone")
        self.assertLess(time.monotonic() - t0, 15)
        self.assertEqual([x for x in self.conns(self.agent) if x["path"] == path], [])

        # both are in the controller's audit trail, with the node and the connection
        kick = harness.wait_for(lambda: [e for e in self.events("stream.kick")
                                         if e["detail"].get("connection") == r["id"]], 30,
                                what="kick event")[0]
        self.assertEqual(kick["node"], self.node)
        self.assertEqual(kick["actor"], "node:%d" % self.node)
        self.assertEqual(kick["detail"]["node_name"], "adm-a")
        self.assertEqual(kick["detail"]["path"], path)
        self.assertEqual(kick["detail"]["addr"], r["addr"])
        self.assertEqual((kick["detail"]["kind"], kick["detail"]["protocol"]), ("player", "rtmp"))
        drop = harness.wait_for(lambda: [e for e in self.events("stream.drop")
                                         if e["detail"].get("path") == path], 30,
                                what="drop event")[0]
        self.assertEqual(drop["node"], self.node)
        self.assertEqual(drop["detail"]["ended"], 3)
        # the refused requests left no event
        self.assertEqual(len([e for e in self.events("stream.kick")
                              if e["node"] == self.node and e["detail"]["path"] == path]), 1)

    def test_2_kick_publisher(self):
        path = "live/admpub"
        pub = self.publish(self.agent, path)
        http = self.play(self.agent.flv_url(path))
        rtmp = self.play(self.agent.rtmp_url(path))
        c = self.wait_conns(self.agent, path, [("publisher", "rtmp"), ("player", "httpflv"),
                                               ("player", "rtmp")], "publisher and players")
        pid = [x for x in c if x["kind"] == "publisher"][0]["id"]
        st, _, b = self.relay("POST", "/api/stream/kick", body={"id": pid})
        self.assertEqual(st, 200, b)
        self.assertEqual(b["data"]["kind"], "publisher")
        # the stream ends at once: its player sees the end, the list forgets it
        self.assertIsNotNone(ended(pub, 15), "the kicked publisher was not cut")
        self.assertIsNotNone(ended(http, 15), "the HTTP-FLV player did not see the end")
        self.assertIsNotNone(ended(rtmp, 15), "the RTMP player did not see the end")
        harness.wait_for(lambda: path not in self.streams(self.agent), 5, what="stream gone")
        # and it may publish again
        pub2 = self.publish(self.agent, path)
        harness.wait_for(lambda: path in self.streams(self.agent), 15, what="republished")
        pub2.kill()
        harness.wait_for(lambda: [e for e in self.events("stream.kick")
                                  if e["detail"].get("connection") == pid and
                                  e["detail"].get("kind") == "publisher"], 30,
                         what="publisher kick event")

    # limits ---------------------------------------------------------------------------------

    def test_3_maxplayers(self):
        path = "live/lim"
        self.publish(self.lim, path)
        first = self.play(self.lim.flv_url(path))
        self.wait_conns(self.lim, path, [("publisher", "rtmp"), ("player", "httpflv")],
                        "the first player")
        second = self.play(self.lim.rtmp_url(path))
        rc = ended(second, 20)
        self.assertIsNotNone(rc, "the RTMP player beyond the limit was not refused")
        self.assertNotEqual(rc, 0)
        self.assertIn("players per stream limit reached", second.stderr.read())
        st, h, body = self.lim.request("GET", "/flv/%s.flv" % path, timeout=10)
        self.assertEqual(st, 503)
        self.assertIn("players per stream limit reached", body)
        self.assertIsNone(first.poll(), "the first player was disturbed")
        st, _, body = self.lim.admin_request("GET", "/api/cascade/status")
        self.assertGreaterEqual(body["data"]["media"]["refused"]["players"], 2)
        self.assertEqual(body["data"]["media"]["maxplayers"], 1)

    def test_4_maxbandwidth(self):
        path = "live/bw"
        self.publish(self.bw, path)
        first = self.play(self.bw.flv_url(path))
        self.wait_conns(self.bw, path, [("publisher", "rtmp"), ("player", "httpflv")],
                        "the first player")
        status = lambda: self.bw.admin_request("GET", "/api/cascade/status")[2]["data"]["media"]
        harness.wait_for(lambda: status()["egress_bps"] >= 50000, 15, what="egress over the limit")
        second = self.play(self.bw.rtmp_url(path))
        rc = ended(second, 20)
        self.assertIsNotNone(rc, "an RTMP player over the bandwidth limit was not refused")
        self.assertNotEqual(rc, 0)
        self.assertIn("node bandwidth limit reached", second.stderr.read())
        st, h, body = self.bw.request("GET", "/flv/%s.flv" % path, timeout=10)
        self.assertEqual(st, 503)
        self.assertIn("node bandwidth limit reached", body)
        self.assertEqual(h.get("Retry-After"), "2")
        # the player already playing goes on
        c = self.conns(self.bw, path)
        before = [x for x in c if x["kind"] == "player"][0]["bytes_out"]
        harness.wait_for(lambda: [x for x in self.conns(self.bw, path) if x["kind"] == "player"]
                         [0]["bytes_out"] > before + 10000, 10, what="first player fed")
        self.assertIsNone(first.poll())
        self.assertEqual(len([x for x in self.conns(self.bw, path) if x["kind"] == "player"]), 1)
        st, _, m = self.bw.admin_request("GET", "/metrics")
        self.assertRegex(m, r"(?m)^cascade_egress_bps [1-9]\d*$")
        self.assertRegex(m, r'(?m)^cascade_players_refused_total\{limit="bandwidth"\} [1-9]')



TREE_CONFIG = harness.deep_merge(BASE, {
    "quic": {"idletimeout": "2s", "keepalive": "200ms", "handshaketimeout": "1s"},
    "cascadeclient": {"reconnectmax": "500ms", "autopush": True,
                      "onsub": {"pull": {".*": "m7s://$0"}}},
    "subscribe": {"maxplayers": 1},
})


@unittest.skipUnless(FFMPEG, "ffmpeg not installed")
class StreamAdminTreeTest(StreamAdminTest):
    """Relays are connections too: a push up and a pull down are listed at both ends (quic-push,
    quic-pull), are not players for subscribe.maxplayers, a drop at the origin ends the push up
    (the parent's copy goes), and a drop of a pulled copy ends that copy only."""

    @classmethod
    def setUpClass(cls):
        cls.start_controller("cascade-streamadm-tree-")
        cls.agents = {}
        cls.ids = harness.start_tree(cls.ctl, (("hq", None), ("edge", "hq")), TREE_CONFIG,
                                     cls.agents)

    @classmethod
    def tearDownClass(cls):
        harness.stop_tree(cls.ctl, cls.agents, cls.procs, AGENT_ERRORS, cls.tmp)

    # the single-node tests are the base class's
    test_1_list_kick_drop_through_relay = None
    test_2_kick_publisher = None
    test_3_maxplayers = None
    test_4_maxbandwidth = None

    def test_push_listed_not_a_player_dropped_at_origin(self):
        hq, edge = self.agents["hq"], self.agents["edge"]
        path = "live/up"
        pub = self.publish(edge, path)
        self.wait_conns(edge, path, [("publisher", "rtmp"), ("player", "quic-push")],
                        "the push up listed at the edge")
        c = self.wait_conns(hq, path, [("publisher", "quic-push")], "the push listed at hq")
        self.assertTrue(c[0]["addr"])
        # the push is no player: one player is allowed beside it, a second is refused
        http = self.play(edge.flv_url(path))
        self.wait_conns(edge, path, [("publisher", "rtmp"), ("player", "quic-push"),
                                     ("player", "httpflv")], "a player beside the push")
        st, _, body = edge.request("GET", "/flv/%s.flv" % path, timeout=10)
        self.assertEqual(st, 503, body)
        # a drop at the origin: the player ends, the publisher is cut, the push up ends and
        # the parent's copy goes (it had no player to keep)
        st, _, b = edge.admin_request("POST", "/api/stream/drop", body={"path": path})
        self.assertEqual(st, 200, b)
        self.assertEqual(b["data"]["ended"], 3)
        self.assertIsNotNone(ended(http, 15), "the player did not end")
        self.assertIsNotNone(ended(pub, 15), "the publisher was not cut")
        harness.wait_for(lambda: path not in self.streams(edge), 5, what="gone at the edge")
        harness.wait_for(lambda: path not in self.streams(hq), 10, what="gone at hq")

    def test_pulled_copy_dropped_alone(self):
        hq, edge = self.agents["hq"], self.agents["edge"]
        path = "live/down"
        pub = self.publish(hq, path)
        harness.wait_for(lambda: path in self.streams(hq), 15, what="live at hq")
        http = self.play(edge.flv_url(path))
        self.wait_conns(edge, path, [("publisher", "quic-pull"), ("player", "httpflv")],
                        "the pulled copy at the edge")
        self.wait_conns(hq, path, [("publisher", "rtmp"), ("player", "quic-pull")],
                        "the pull served at hq")
        st, _, b = edge.admin_request("POST", "/api/stream/drop", body={"path": path})
        self.assertEqual(st, 200, b)
        self.assertIsNotNone(ended(http, 15), "the edge's player did not end")
        harness.wait_for(lambda: path not in self.streams(edge), 5, what="copy gone")
        # the origin goes on, without the pull it served
        self.wait_conns(hq, path, [("publisher", "rtmp")], "hq without the pull")
        self.assertIsNone(pub.poll(), "the publisher at hq was cut")
        self.assertIn(path, self.streams(hq))


if __name__ == "__main__":
    unittest.main(verbosity=2)
