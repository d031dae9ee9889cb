#!/usr/bin/env python3
"""HTTP-FLV of audio-only and video-only streams through the cascade, played by real players
(docs/media.md, "HTTP-FLV"). The FLV header's flags must say what the stream carries (1 video,
4 audio, 5 both): players believe them, and with 5 on a one-kind stream ffprobe and VLC keep
probing and mpegts.js/flv.js stay at time 0. A three-level tree:

    hq - region - edge

ffmpeg publishes an audio-only, a video-only and an audio+video stream at edge (pushed up to
region and hq) and three more at hq (pulled on demand one and two levels down). At every node
that has them, ffprobe over HTTP-FLV must list exactly the published kinds within a deadline
and the header's flags byte must match. Then Debian's chromium, headless, plays the audio-only
and the video-only stream with mpegts.js (tests/browser) until currentTime passes 1 s."""

import concurrent.futures
import functools
import http.server
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.request

import harness
from test_media import FFMPEG, FFPROBE, run

HERE = os.path.dirname(os.path.abspath(__file__))
BROWSER_DIR = os.path.join(HERE, "..", "browser")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
NODE = shutil.which("node")
GST_LAUNCH = shutil.which("gst-launch-1.0")

CTL_CONFIG = {"control": {"heartbeat": 500, "polltimeout": 3000}}
NODE_CONFIG = {
    "quic": {"idletimeout": "1s", "keepalive": "200ms", "handshaketimeout": "1s"},
    "cascadeclient": {"reconnectmax": "500ms", "autopush": True,
                      "onsub": {"pull": {".*": "m7s://$0"}}},
    "subscribe": {"waittimeout": "15s"},
    "publish": {"delayclosetimeout": "6s"},
    "pull": {"linger": "2s"},
}
AGENT_ERRORS = [r"(?i)authentication failed"]

# With the right header ffprobe lists a one-kind live stream after about 4.5 s (its flv demuxer
# waits out analyzeduration, 5 s of stream time, the first second of which is the cached burst),
# an audio+video one after under 2 s; with flags 5 on a one-kind stream it was still waiting
# after 40 s.
PROBE_DEADLINE = 10.0
KINDS = {"audio": ("audio",), "video": ("video",), "av": ("audio", "video")}
FLAGS = {"audio": 4, "video": 1, "av": 5}


def make_media(path, kinds, seconds=6):
    """An FLV file of |kinds| from ffmpeg's built-in sources (H.264 and/or AAC)."""
    cmd = [FFMPEG, "-v", "error"]
    if "video" in kinds:
        cmd += ["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25"]
    if "audio" in kinds:
        cmd += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"]
    cmd += ["-t", str(seconds)]
    if "video" in kinds:
        cmd += ["-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-pix_fmt", "yuv420p"]
    if "audio" in kinds:
        cmd += ["-c:a", "aac", "-b:a", "64k"]
    run(cmd + ["-f", "flv", path])


def header_flags(url, timeout=10):
    """The flags byte of the FLV header the server sends for |url| (None: no FLV header)."""
    with urllib.request.urlopen(url, timeout=timeout) as r:
        b = r.read(13)
    return b[4] if len(b) == 13 and b[:3] == b"FLV" else None


def probe(url, deadline=PROBE_DEADLINE):
    """(sorted codec types ffprobe lists for |url|, seconds taken); None when past |deadline|."""
    t0 = time.monotonic()
    try:
        r = subprocess.run([FFPROBE, "-v", "error", "-rw_timeout", "15000000", "-show_entries",
                            "stream=codec_type", "-of", "csv=p=0", url],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=deadline)
    except subprocess.TimeoutExpired:
        return None, time.monotonic() - t0
    return sorted(l.strip() for l in r.stdout.splitlines() if l.strip()), time.monotonic() - t0


def browser_missing():
    if not NODE:
        return "node not found (deploy/local/deps.sh installs nodejs and npm)"
    if not os.access(CHROMIUM, os.X_OK):
        return "%s not found (deploy/local/deps.sh installs chromium)" % CHROMIUM
    return None


@unittest.skipUnless(FFMPEG and FFPROBE, "ffmpeg/ffprobe not installed")
class FlvKindsTest(unittest.TestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        harness.require_controller()
        cls.tmp = tempfile.mkdtemp(prefix="cascade-flvkinds-")
        cls.media = {}
        for kind, kinds in KINDS.items():
            cls.media[kind] = os.path.join(cls.tmp, kind + ".flv")
            make_media(cls.media[kind], kinds)
        cls.pg = harness.shared_cluster()
        cls.db = cls.pg.create_database()
        cls.ctl = harness.Controller(cls.pg.dsn(cls.db), config=CTL_CONFIG)
        cls.agents, cls.procs = {}, []
        try:
            cls.tree()
            # at edge, pushed up to region and hq; at hq, to be pulled down
            for kind in KINDS:
                cls.publish("edge", "up/" + kind, cls.media[kind])
                cls.publish("hq", "top/" + kind, cls.media[kind])
            for kind in KINDS:
                harness.wait_for(lambda: cls.streams("hq").get("up/" + kind), 20,
                                 what="up/%s pushed to hq" % kind)
                harness.wait_for(lambda: cls.streams("hq").get("top/" + kind), 20,
                                 what="top/%s published at hq" % kind)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for p in cls.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        errors = []
        for a in cls.agents.values():
            if a.proc is not None:
                try:
                    a.stop(expected_errors=AGENT_ERRORS)
                except AssertionError as e:
                    errors.append(str(e))
        cls.ctl.stop()
        cls.pg.drop_database(cls.db)
        shutil.rmtree(cls.tmp, ignore_errors=True)
        if errors:
            raise AssertionError("\n".join(errors))

    # the tree ------------------------------------------------------------------------------------

    @classmethod
    def tree(cls):
        harness.start_tree(cls.ctl, (("hq", None), ("region", "hq"), ("edge", "region")),
                           NODE_CONFIG, cls.agents)

    @classmethod
    def streams(cls, name):
        return cls.agents[name].streams()

    @classmethod
    def publish(cls, name, path, media):
        # looped, so the stream lasts as long as the test
        p = subprocess.Popen([FFMPEG, "-v", "error", "-re", "-stream_loop", "-1", "-i", media,
                              "-c", "copy", "-f", "flv", cls.agents[name].rtmp_url(path)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cls.procs.append(p)
        return p

    # checks --------------------------------------------------------------------------------------

    def check_players(self, where):
        """ffprobe and the header byte for every (node, path, kind) of |where|, all at once."""
        def one(item):
            node, path, kind = item
            url = self.agents[node].flv_url(path)
            flags = header_flags(url)
            kinds, secs = probe(url)
            return item, flags, kinds, secs
        failures = []
        with concurrent.futures.ThreadPoolExecutor(len(where)) as ex:
            for (node, path, kind), flags, kinds, secs in ex.map(one, where):
                label = "%s at %s" % (path, node)
                print("  %-12s header flags %s, ffprobe %s in %.2f s"
                      % (label, flags, kinds if kinds is not None else "(no answer)", secs))
                if flags != FLAGS[kind]:
                    failures.append("%s: FLV header flags %r, want %d" % (label, flags, FLAGS[kind]))
                if kinds is None:
                    failures.append("%s: ffprobe did not finish within %.0f s"
                                    % (label, PROBE_DEADLINE))
                elif kinds != sorted(KINDS[kind]):
                    failures.append("%s: ffprobe lists %s, want %s"
                                    % (label, kinds, sorted(KINDS[kind])))
        self.assertEqual(failures, [], "\n".join(failures))

    # tests ---------------------------------------------------------------------------------------

    def test_pushed_up(self):
        """Published at edge: played at edge itself, at region and at hq (pushed up)."""
        self.check_players([(node, "up/" + kind, kind)
                            for node in ("edge", "region", "hq") for kind in KINDS])

    def test_pulled_down(self):
        """Published at hq: played at region and at edge, pulled one and two levels down."""
        self.check_players([(node, "top/" + kind, kind)
                            for node in ("hq", "region", "edge") for kind in KINDS])

    def test_gstreamer_plays(self):
        """GStreamer (souphttpsrc ! flvdemux) gets frames of every kind a stream carries, pushed
        up and pulled down: each branch of the demuxer must pass 25 buffers before the deadline
        (a branch whose pad never appears holds the pipeline until it is killed)."""
        if not GST_LAUNCH:
            self.skipTest("gst-launch-1.0 not found (deploy/local/deps.sh installs "
                          "gstreamer1.0-tools and gstreamer1.0-plugins-good)")
        def one(item):
            node, path, kind = item
            cmd = [GST_LAUNCH, "-q", "souphttpsrc", "location=" + self.agents[node].flv_url(path),
                   "!", "flvdemux", "name=d"]
            for k in KINDS[kind]:
                cmd += ["d.%s" % k, "!", "queue", "!", "identity", "eos-after=25", "!",
                        "fakesink", "sync=false"]
            t0 = time.monotonic()
            try:
                r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, timeout=PROBE_DEADLINE)
                return item, r.returncode, r.stdout[-500:], time.monotonic() - t0
            except subprocess.TimeoutExpired:
                return item, None, "", time.monotonic() - t0
        where = [("edge", "up/" + k, k) for k in KINDS] + [("edge", "top/" + k, k) for k in KINDS]
        failures = []
        with concurrent.futures.ThreadPoolExecutor(len(where)) as ex:
            for (node, path, kind), rc, out, secs in ex.map(one, where):
                label = "%s at %s" % (path, node)
                print("  gstreamer %-12s exit %s in %.2f s" % (label, rc, secs))
                if rc != 0:
                    failures.append("%s: gst-launch %s%s" % (
                        label, "exit %d" % rc if rc is not None else
                        "did not finish within %.0f s" % PROBE_DEADLINE,
                        (": " + out.strip()) if out.strip() else ""))
        self.assertEqual(failures, [], "\n".join(failures))

    def test_browser_plays(self):
        """chromium + mpegts.js play the audio-only and the video-only stream."""
        why = browser_missing()
        if why:
            self.skipTest(why)
        r = subprocess.run(["bash", os.path.join(BROWSER_DIR, "install.sh")],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=300)
        self.assertEqual(r.returncode, 0, "npm ci in tests/browser failed:\n" + r.stdout[-2000:])
        handler = functools.partial(QuietHandler, directory=BROWSER_DIR)
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            page = "http://127.0.0.1:%d/play.html" % server.server_address[1]
            urls = [self.agents["edge"].flv_url("up/audio"),
                    self.agents["edge"].flv_url("up/video"),
                    self.agents["region"].flv_url("top/audio"),
                    self.agents["region"].flv_url("top/video")]
            cmd = [NODE, os.path.join(BROWSER_DIR, "play.js"), page]
            shots = os.environ.get("CASCADE_SCREENSHOTS")
            if shots:
                cmd += ["--screenshot", shots]
            r = subprocess.run(cmd + urls, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, timeout=90)
        finally:
            server.shutdown()
            server.server_close()
        self.assertEqual(r.returncode, 0, "play.js failed:\n%s" % r.stderr[-3000:])
        results = [json.loads(l) for l in r.stdout.splitlines() if l.startswith("{")]
        self.assertEqual(len(results), len(urls), r.stdout)
        for res in results:
            print("  mpegts.js %s: currentTime %.2f after %.2f s, %s"
                  % (res["url"].rsplit("/flv/", 1)[1], res["currentTime"], res["seconds"],
                     res.get("mediaInfo")))
        stuck = [res for res in results if not res["playing"]]
        self.assertEqual(stuck, [], "not playing in chromium:\n%s"
                         % "\n".join(json.dumps(s) for s in stuck))


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, fmt, *args):
        pass


if __name__ == "__main__":
    unittest.main()
