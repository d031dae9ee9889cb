#!/usr/bin/env python3
"""On-demand pulls as real players and publishers meet them (docs/media.md, "Cascade": "What a
pull is, and what wins"). A four-node tree, real agents, a real controller, real ffmpeg/ffprobe:

    hq
    |- region
       |- edge1
       |- edge2

- A player asking for a stream nobody publishes gets 404 / NetStream.Play.StreamNotFound within
  subscribe.waittimeout at every level, and the waiting pull is no stream: not in the node's
  stream list, not in the controller's directory, not retried once its players gave up.
- A publisher arriving where a player already waits (the pull up the tree waiting too) is
  accepted, the player gets its stream, and it is pushed up to hq.
- A local publisher takes a path over from a pull that already delivers; the player stays and
  switches to the local stream on its keyframe.
- When the origin's publisher stops, every pulled copy ends publish.delayclosetimeout later
  (HTTP-FLV: end of body; RTMP: UnpublishNotify), and republishing is pushed up again; a
  publisher back within the delay resumes the players of pulled copies."""

import os
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

import harness
from test_media import FFMPEG, FFPROBE, decodes, make_media, run, video_packets

WAIT_S = 4.0
DELAY_S = 3.0
CTL_CONFIG = {"control": {"heartbeat": 500, "polltimeout": 3000}}
NODE_CONFIG = {
    "quic": {"idletimeout": "2s", "keepalive": "200ms", "handshaketimeout": "1s"},
    "cascadeclient": {"reconnectmax": "500ms", "autopush": True,
                      "onsub": {"pull": {".*": "m7s://$0"}}},
    "subscribe": {"waittimeout": "%ds" % WAIT_S},
    "publish": {"delayclosetimeout": "%ds" % DELAY_S},
    "pull": {"linger": "2s"},
}
AGENT_ERRORS = [r"(?i)authentication failed"]


class Player(threading.Thread):
    """ffmpeg copying a stream (HTTP-FLV or RTMP URL) into an FLV file until it ends; notes when
    it ended and what ffmpeg said."""

    def __init__(self, url, path):
        super().__init__(daemon=True)
        self.url, self.path = url, path
        self.proc = subprocess.Popen(
            [FFMPEG, "-v", "error", "-rw_timeout", "30000000", "-i", url, "-c", "copy", "-f",
             "flv", "-y", path], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.rc = None
        self.err = ""
        self.ended_at = None

    def run(self):
        _, self.err = self.proc.communicate()
        self.rc = self.proc.returncode
        self.ended_at = time.monotonic()

    def size(self):
        try:
            return os.path.getsize(self.path)
        except OSError:
            return 0

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()


def http_status(url, timeout):
    """(status, seconds) of a GET of |url|: the status line's code, or None when none came."""
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, time.monotonic() - t0
    except urllib.error.HTTPError as e:
        return e.code, time.monotonic() - t0
    except OSError:
        return None, time.monotonic() - t0


def rtmp_probe(url, timeout):
    """(returncode, stderr, seconds) of ffprobe playing |url| over RTMP."""
    t0 = time.monotonic()
    try:
        r = subprocess.run([FFPROBE, "-v", "error", url], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True, timeout=timeout)
        return r.returncode, r.stderr, time.monotonic() - t0
    except subprocess.TimeoutExpired:
        return None, "no answer", time.monotonic() - t0


def frame_widths(path):
    r = run([FFPROBE, "-v", "error", "-select_streams", "v:0", "-show_entries", "frame=width",
             "-of", "csv=p=0", path], timeout=120)
    return [int(x) for x in r.stdout.split() if x.strip().isdigit()]


@unittest.skipUnless(FFMPEG and FFPROBE, "ffmpeg/ffprobe not installed")
class OnDemandTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.require_controller()
        cls.tmp = tempfile.mkdtemp(prefix="cascade-ondemand-")
        cls.media = os.path.join(cls.tmp, "src.flv")
        make_media(cls.media, seconds=6)
        cls.src_video = len(video_packets(cls.media))
        cls.long_media = os.path.join(cls.tmp, "long.flv")
        make_media(cls.long_media, seconds=30)
        cls.small_media = os.path.join(cls.tmp, "small.flv")
        run([FFMPEG, "-v", "error", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25", "-f",
             "lavfi", "-i", "sine=frequency=880:sample_rate=44100", "-t", "6", "-c:v", "libx264",
             "-preset", "ultrafast", "-g", "25", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a",
             "64k", "-f", "flv", cls.small_media])
        cls.pg = harness.shared_cluster()
        cls.db = cls.pg.create_database()
        cls.ctl = harness.Controller(cls.pg.dsn(cls.db), config=CTL_CONFIG)
        cls.agents, cls.procs = {}, []
        cls.ids = harness.start_tree(cls.ctl, (("hq", None), ("region", "hq"), ("edge1", "region"),
                                               ("edge2", "region")), NODE_CONFIG, cls.agents)

    @classmethod
    def tearDownClass(cls):
        harness.stop_tree(cls.ctl, cls.agents, cls.procs, AGENT_ERRORS, cls.tmp)

    # helpers -------------------------------------------------------------------------------------

    def streams(self, name):
        return self.agents[name].streams()

    def pulls(self, name):
        return {p["path"]: p for p in self.agents[name].status()["cascade"]["pulls"]}

    def pushes(self, name):
        return {p["path"]: p for p in self.agents[name].status()["cascade"]["pushes"]}

    def publish(self, name, path, media):
        p = subprocess.Popen([FFMPEG, "-v", "error", "-re", "-i", media, "-c", "copy", "-f", "flv",
                              self.agents[name].rtmp_url(path)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        return p

    def player(self, name, path, proto="flv"):
        a = self.agents[name]
        url = a.flv_url(path) if proto == "flv" else a.rtmp_url(path)
        p = Player(url, os.path.join(self.tmp, "%s-%s-%s.flv" % (
            self._testMethodName, name, path.replace("/", "_"))))
        p.start()
        self.addCleanup(p.kill)
        return p

    def origin(self, name, path):
        s = self.streams(name).get(path)
        return s["origin"] if s else None

    # tests ---------------------------------------------------------------------------------------

    def test_missing_stream_answered_at_every_level(self):
        """404 / StreamNotFound within waittimeout at hq, one and two levels below; the waiting
        pull is no stream anywhere and is not retried once its players gave up."""
        results = {}

        def http(name):
            results[(name, "flv")] = http_status(
                self.agents[name].flv_url("live/none-flv-" + name), WAIT_S + 20)

        def rtmp(name):
            results[(name, "rtmp")] = rtmp_probe(self.agents[name].rtmp_url(
                "live/none-rtmp-" + name), WAIT_S + 20)

        threads = [threading.Thread(target=f, args=(n,)) for n in ("hq", "region", "edge1")
                   for f in (http, rtmp)]
        for t in threads:
            t.start()
        # while the players wait: the pulls wait up the tree, and nothing is a stream
        harness.wait_for(lambda: "live/none-flv-edge1" in self.pulls("edge1") and
                         "live/none-flv-edge1" in self.pulls("region"), WAIT_S,
                         what="edge1's pull waiting up the tree")
        self.assertEqual(self.pulls("edge1")["live/none-flv-edge1"]["state"], "waiting")
        for n in ("hq", "region", "edge1"):
            listed = [p for p in self.streams(n) if p.startswith("live/none-")]
            self.assertEqual(listed, [], "%s lists waiting pulls as streams" % n)
        time.sleep(1.2)  # two heartbeats: what the directory would show
        st, _, body = self.ctl.api("GET", "/api/cascade/streams")
        self.assertEqual(st, 200, body)
        self.assertEqual([s["path"] for s in body["data"] if s["path"].startswith("live/none-")],
                         [], "the directory counts waiting pulls as streams")
        for t in threads:
            t.join(WAIT_S + 25)
        for n in ("hq", "region", "edge1"):
            status, took = results[(n, "flv")]
            self.assertEqual(status, 404, "%s: HTTP-FLV got %s after %.1f s" % (n, status, took))
            self.assertLess(took, WAIT_S + 1.5, "%s: HTTP-FLV 404 after %.1f s" % (n, took))
            rc, err, took = results[(n, "rtmp")]
            self.assertIsNotNone(rc, "%s: RTMP play got no answer in %.1f s" % (n, took))
            self.assertNotEqual(rc, 0)
            self.assertIn("No such stream", err, "%s: %s" % (n, err))
            self.assertLess(took, WAIT_S + 2.5, "%s: StreamNotFound after %.1f s" % (n, took))
            print("  %s: 404 and StreamNotFound in %.1f / %.1f s" % (
                n, results[(n, "flv")][1], took))
        # nobody waits any more: the pulls stop, they are not retried every wait timeout
        for n in ("region", "edge1"):
            harness.wait_for(lambda: not [p for p in self.pulls(n) if p.startswith("live/none-")],
                             WAIT_S + 3, what="%s's pulls gone" % n)

    def test_publisher_wins_over_a_waiting_pull(self):
        """Player first, then a publisher at the same node (one and two levels below hq): the
        publisher is accepted, the player gets its stream from the start, hq gets it pushed."""
        players, pubs = {}, {}
        for n in ("region", "edge1"):
            path = "live/late-" + n
            players[n] = self.player(n, path)
        for n in ("region", "edge1"):
            path = "live/late-" + n
            harness.wait_for(lambda: path in self.pulls(n), WAIT_S, what="%s pull waiting" % n)
        for n in ("region", "edge1"):
            pubs[n] = self.publish(n, "live/late-" + n, self.media)
        for n in ("region", "edge1"):
            path = "live/late-" + n
            harness.wait_for(lambda: (self.origin("hq", path) or {}).get("node") == self.ids[n],
                             10, what="%s pushed up to hq" % path)
            self.assertEqual(self.origin(n, path)["kind"], "local")
            self.assertNotIn(path, self.pulls(n), "the pull goes once the path is published")
        for n in ("region", "edge1"):
            pubs[n].wait(30)
            err = pubs[n].stderr.read()
            self.assertEqual(pubs[n].returncode, 0, "%s: publisher refused: %s" % (n, err))
            players[n].join(30)
            self.assertFalse(players[n].is_alive(), "%s: player did not end" % n)
            got = len(video_packets(players[n].path))
            self.assertGreaterEqual(got, 0.95 * self.src_video,
                                    "%s: %d of %d frames" % (n, got, self.src_video))
            print("  %s: publisher accepted, waiting player got %d of %d frames"
                  % (n, got, self.src_video))

    def test_local_publisher_takes_over_a_delivering_pull(self):
        """hq publishes; edge1's player gets it pulled; a publisher at edge1 takes the path over
        and the player switches to it without reconnecting."""
        path = "live/take"
        self.publish("hq", path, self.long_media)
        harness.wait_for(lambda: self.streams("hq").get(path), 10, what="published at hq")
        pl = self.player("edge1", path)
        harness.wait_for(lambda: (self.origin("edge1", path) or {}).get("kind") == "pulled",
                         10, what="pulled at edge1")
        harness.wait_for(lambda: pl.size() > 100000, 10, what="the player receiving")
        local = self.publish("edge1", path, self.small_media)
        harness.wait_for(lambda: (self.origin("edge1", path) or {}).get("kind") == "local", 10,
                         what="edge1's publisher taking the path")
        self.assertTrue(pl.is_alive(), "the player was dropped: %s" % pl.err)
        harness.wait_for(lambda: self.streams("edge1")[path]["subscribers"] >= 1, 5,
                         what="the player on the local stream")
        local.wait(30)
        self.assertEqual(local.returncode, 0, local.stderr.read())
        pl.join(DELAY_S + 20)
        self.assertFalse(pl.is_alive(), "player still running after the local stream ended")
        widths = frame_widths(pl.path)
        self.assertIn(320, widths)
        self.assertIn(160, widths, "the player never got the local stream")
        first_small = widths.index(160)
        self.assertTrue(all(w == 160 for w in widths[first_small:]))
        ok, err = decodes(pl.path)
        self.assertTrue(ok, "the switch did not happen on a keyframe: %s" % err[-400:])
        print("  player switched after %d pulled frames, then %d local ones"
              % (first_small, len(widths) - first_small))

    def test_pulled_copies_end_with_the_origin(self):
        """Publisher at edge1, players of the pulled copy at edge2 (HTTP-FLV and RTMP): they end
        DELAY_S after the publisher stops; the path republished is pushed up again."""
        path = "live/end"
        pub = self.publish("edge1", path, self.media)
        harness.wait_for(lambda: self.streams("region").get(path), 10, what="pushed to region")
        flv = self.player("edge2", path)
        rtmp = self.player("edge2", path, proto="rtmp")
        harness.wait_for(lambda: (self.origin("edge2", path) or {}).get("kind") == "pulled",
                         10, what="pulled at edge2")
        pub.wait(30)
        t_end = time.monotonic()
        for name, p in (("HTTP-FLV", flv), ("RTMP", rtmp)):
            p.join(DELAY_S + 10)
            self.assertFalse(p.is_alive(), "%s player at edge2 never ended" % name)
            took = p.ended_at - t_end
            self.assertLess(took, DELAY_S + 2.5, "%s player ended %.1f s after" % (name, took))
            # the players start after the push reached region, at the GOP (25 frames) then in
            # progress: on a busy machine that is a GOP or two into the stream
            self.assertGreaterEqual(len(video_packets(p.path)), self.src_video - 50, name)
            print("  %s player of the pulled copy ended %.1f s after the publisher" % (name, took))
        harness.wait_for(lambda: path not in self.streams("edge2"), 5, what="edge2's copy gone")
        # the republished stream goes up (no stale copy refuses it)
        self.publish("edge1", path, self.media)
        harness.wait_for(lambda: (self.origin("hq", path) or {}).get("node") == self.ids["edge1"]
                         and self.streams("hq")[path]["state"] == "publishing", 10,
                         what="republished stream at hq")
        self.assertIsNone(self.pushes("edge1")[path]["last_error"])

    def test_players_of_pulled_copies_resume(self):
        """The publisher comes back within publish.delayclosetimeout: edge2's player resumes."""
        path = "live/back"
        pub = self.publish("edge1", path, self.media)
        harness.wait_for(lambda: self.streams("region").get(path), 10, what="pushed to region")
        pl = self.player("edge2", path)
        harness.wait_for(lambda: (self.origin("edge2", path) or {}).get("kind") == "pulled",
                         10, what="pulled at edge2")
        pub.wait(30)
        self.publish("edge1", path, self.media).wait(30)
        self.assertTrue(pl.is_alive() or pl.ended_at > time.monotonic() - DELAY_S,
                        "the player ended before the publisher came back")
        pl.join(DELAY_S + 15)
        self.assertFalse(pl.is_alive())
        got = len(video_packets(pl.path))
        self.assertGreaterEqual(got, 1.5 * self.src_video,
                                "%d frames: the player did not resume (%d per publish)"
                                % (got, self.src_video))
        print("  player resumed: %d frames over two publishes of %d" % (got, self.src_video))


if __name__ == "__main__":
    unittest.main(verbosity=2)
