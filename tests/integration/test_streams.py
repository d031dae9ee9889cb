#!/usr/bin/env python3
"""The stream directory (docs/api.md, "Streams"): ffmpeg publishes at the child of a two-node
tree; GET /api/cascade/streams lists the stream with the child as its origin, no relaying node yet
(push and pull fill that part), and its players per node and protocol; an HTTP-FLV player shows
up; the stream leaves the list when its node goes offline. A node with more streams than a
heartbeat carries (1,024; cascade-loadgen publishes 1,030) is named under `incomplete` with
how many it reported and how many it has, until it has no more than that again."""

import os
import shutil
import subprocess
import tempfile
import unittest
import urllib.request

import harness

FFMPEG = shutil.which("ffmpeg")
CTL_CONFIG = {"control": {"heartbeat": 500, "polltimeout": 3000}}


@unittest.skipUnless(FFMPEG, "ffmpeg not installed")
class StreamsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.require_controller()
        cls.pg = harness.shared_cluster()

    def setUp(self):
        self.db = self.pg.create_database()
        self.ctl = harness.Controller(self.pg.dsn(self.db), config=CTL_CONFIG)
        self.agents = []

    def tearDown(self):
        for a in self.agents:
            if a.proc is not None:
                a.stop(expected_errors=[r"(?i)authentication failed"])
        self.ctl.stop()

    def streams(self, token=None):
        return harness.envelope_ok(self, self.ctl.api("GET", "/api/cascade/streams", token=token))

    def test_published_stream_listed_with_origin_and_players(self):
        hq = harness.envelope_ok(self, self.ctl.api("POST", "/api/cascade/clients",
                                                    {"name": "hq", "secret": "hq-secret-1"}), 201)
        edge = harness.envelope_ok(self, self.ctl.api("POST", "/api/cascade/clients",
                                                      {"name": "edge", "secret": "edge-secret-1",
                                                       "parent_id": hq["id"]}), 201)
        a_hq = harness.Agent(self.ctl, "hq", "hq-secret-1")
        a_edge = harness.Agent(self.ctl, "edge", "edge-secret-1")
        self.agents += [a_hq, a_edge]
        self.assertEqual(self.streams(), [])
        pub = subprocess.Popen([FFMPEG, "-v", "error", "-re", "-f", "lavfi", "-i",
                                "testsrc=size=160x120:rate=25", "-t", "60", "-c:v", "libx264",
                                "-preset", "ultrafast", "-g", "25", "-pix_fmt", "yuv420p",
                                "-f", "flv", a_edge.rtmp_url("live/dir")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            def listed():
                for s in self.streams():
                    if s["path"] == "live/dir" and s["origin"]:
                        return s
                return None
            s = harness.wait_for(listed, 20, what="the stream in the directory")
            self.assertEqual(s["origin"]["id"], edge["id"])
            self.assertEqual(s["origin"]["name"], "edge")
            self.assertEqual(s["origin"]["kind"], "local")
            self.assertRegex(s["origin"]["since"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
            self.assertEqual(s["relays"], [])
            self.assertEqual(s["players"], [{"id": edge["id"], "name": "edge",
                                             "players": {"rtmp": 0, "httpflv": 0, "total": 0}}])
            self.assertEqual(s["total_players"], 0)

            player = urllib.request.urlopen(a_edge.flv_url("live/dir"), timeout=10)
            try:
                self.assertEqual(player.read(3), b"FLV")
                s = harness.wait_for(lambda: [x for x in self.streams()
                                              if x["path"] == "live/dir" and x["total_players"] == 1],
                                     10, what="the player in the directory")[0]
                self.assertEqual(s["players"][0]["players"], {"rtmp": 0, "httpflv": 1, "total": 1})
                # an RTMP player counts under its own protocol; both leave, both go
                rtmp_player = subprocess.Popen([FFMPEG, "-v", "error", "-i",
                                                a_edge.rtmp_url("live/dir"), "-f", "null", "-"],
                                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                try:
                    s = harness.wait_for(lambda: [x for x in self.streams()
                                                  if x["path"] == "live/dir"
                                                  and x["total_players"] == 2],
                                         10, what="the RTMP player in the directory")[0]
                    self.assertEqual(s["players"][0]["players"],
                                     {"rtmp": 1, "httpflv": 1, "total": 2})
                finally:
                    rtmp_player.kill()
                    rtmp_player.wait()
            finally:
                player.close()
            harness.wait_for(lambda: [x for x in self.streams()
                                      if x["path"] == "live/dir" and x["total_players"] == 0],
                             10, what="the players to leave the directory")
            # viewers may read the directory
            tok = harness.envelope_ok(self, self.ctl.api("POST", "/api/auth/tokens",
                                                         {"name": "v", "role": "viewer"}), 201)["token"]
            self.assertTrue(self.streams(token=tok))
        finally:
            pub.kill()
            pub.wait()
        # the node goes offline: its streams go with it
        a_edge.stop(expected_errors=[r"(?i)authentication failed"])
        harness.wait_for(lambda: self.streams() == [], 15, what="the directory to empty")

    def test_more_streams_than_a_heartbeat_carries(self):
        n, carried = 1030, 1024
        edge = harness.envelope_ok(self, self.ctl.api("POST", "/api/cascade/clients",
                                                      {"name": "big", "secret": "big-secret-1"}), 201)
        a = harness.Agent(self.ctl, "big", "big-secret-1",
                          config={"rtmp": {"maxconnections": 2000},
                                  "publish": {"delayclosetimeout": "0s"}})
        self.agents.append(a)
        tmp = tempfile.mkdtemp(prefix="streams.")
        self.addCleanup(shutil.rmtree, tmp, True)
        media = os.path.join(tmp, "tiny.flv")
        subprocess.run([FFMPEG, "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=5",
                        "-t", "4", "-c:v", "libx264", "-preset", "ultrafast", "-g", "5",
                        "-pix_fmt", "yuv420p", "-f", "flv", media], check=True)
        lg = subprocess.Popen([os.path.join(harness.bin_dir(), "cascade-loadgen"),
                               "--publish", str(n), "--file", media,
                               "--url", a.rtmp_url("live/many"), "--ramp", "1000",
                               "--duration", "120"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            def incomplete():
                st, _, body = self.ctl.api("GET", "/api/cascade/streams")
                self.assertEqual(st, 200, body)
                inc = body.get("incomplete")
                self.assertIsInstance(inc, list, body.keys())
                return (inc, len(body["data"])) if inc else None
            inc, listed = harness.wait_for(incomplete, 60, what="the node named incomplete")
            self.assertEqual(inc, [{"id": edge["id"], "name": "big", "reported": carried,
                                    "total": n}])
            self.assertEqual(listed, carried)
        finally:
            lg.kill()
            lg.wait()
        # no publisher left: the node reports everything it has again
        def complete():
            st, _, body = self.ctl.api("GET", "/api/cascade/streams")
            return st == 200 and body.get("incomplete") == [] and body["data"] == []
        harness.wait_for(complete, 30, what="the directory complete and empty")


if __name__ == "__main__":
    unittest.main(verbosity=2)
