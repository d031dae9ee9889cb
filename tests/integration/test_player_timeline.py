#!/usr/bin/env python3
"""Players' timelines (docs/media.md, "Timestamps"): a player joining a stream that has run a
while gets the cached onMetaData and sequence headers and the GOP on a timeline of its own that
starts at 0, at every node of a three-level tree, over HTTP-FLV and RTMP:

    hq - region - edge

ffmpeg publishes at the edge (pushed up to hq) and at hq (pulled one and two levels down). Its
media carries an onMetaData stamped 2 s into the stream, as an encoder that sends its metadata
after it started does: replayed with that time to a player that joins later, ffmpeg's FLV demuxer
takes it for a subtitle stream of codec "text" (metadata counts as the header's only at 0), and
recording the stream to MP4 with "-map 0 -c copy" fails with "Could not find tag for codec text".
Here ffprobe must list video and audio only, the first packets must be near 0, and a 3 s copy to
MP4 must succeed in about 3 s."""

import concurrent.futures
import json
import os
import shutil
import struct
import subprocess
import tempfile
import time
import unittest

import harness
from test_media import FFMPEG, FFPROBE, FlvReader, make_media

CTL_CONFIG = {"control": {"heartbeat": 500, "polltimeout": 3000}}
NODE_CONFIG = {
    "quic": {"idletimeout": "1s", "keepalive": "200ms", "handshaketimeout": "1s"},
    "cascadeclient": {"reconnectmax": "500ms", "autopush": True,
                      "onsub": {"pull": {".*": "m7s://$0"}}},
    "subscribe": {"waittimeout": "15s"},
    "publish": {"delayclosetimeout": "6s"},
}
AGENT_ERRORS = [r"(?i)authentication failed"]
META_AT_MS = 2000      # when the publisher sends its (second) onMetaData
RUN_MS = 4500          # how long the streams run before the players join
RECORD_S = 3


def flv_tags(data):
    """(type, timestamp, body) of every tag of the FLV file |data|."""
    off = 13
    while off + 11 <= len(data):
        size = struct.unpack(">I", b"\0" + data[off + 1:off + 4])[0]
        ts = struct.unpack(">I", b"\0" + data[off + 4:off + 7])[0] | data[off + 7] << 24
        yield data[off], ts, data[off + 11:off + 11 + size]
        off += 11 + size + 4


def flv_tag(ttype, ts, body):
    return (bytes([ttype]) + struct.pack(">I", len(body))[1:] + struct.pack(">I", ts)[1:] +
            bytes([ts >> 24 & 0xff, 0, 0, 0]) + body + struct.pack(">I", 11 + len(body)))


def add_late_metadata(src, dst, at_ms):
    """Copy FLV |src| to |dst| with a second onMetaData, stamped |at_ms|, after the first. It is
    written as "@setDataFrame" + onMetaData: ffmpeg passes that through as a data stream (with
    -map 0 -c copy) and sends it over RTMP as it is, where the node caches it as the stream's
    metadata; a plain onMetaData would be taken for the file's header."""
    with open(src, "rb") as f:
        data = f.read()
    out = bytearray(data[:13])
    added = False
    for ttype, ts, body in flv_tags(data):
        out += flv_tag(ttype, ts, body)
        if ttype == 18 and not added:
            out += flv_tag(18, at_ms, b"\x02\x00\x0d@setDataFrame" + body)
            added = True
    assert added, "no onMetaData in %s" % src
    with open(dst, "wb") as f:
        f.write(out)


def probe(url):
    """(stream types, first packets as (type, dts seconds)) of |url|, by ffprobe."""
    r = subprocess.run([FFPROBE, "-v", "error", "-rw_timeout", "15000000", "-show_entries",
                        "stream=codec_type:packet=codec_type,dts_time", "-read_intervals",
                        "%+#12", "-of", "json", url], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=30)
    if r.returncode != 0:
        raise AssertionError("ffprobe %s failed: %s" % (url, r.stderr[-1000:]))
    j = json.loads(r.stdout)
    types = sorted(s["codec_type"] for s in j.get("streams", []))
    pk = [(p.get("codec_type"), float(p["dts_time"])) for p in j.get("packets", [])
          if p.get("dts_time") not in (None, "N/A")]
    return types, pk


def record(url, path):
    """(return code, seconds taken, stderr) of a RECORD_S s copy of |url| to MP4."""
    t = time.monotonic()
    r = subprocess.run([FFMPEG, "-v", "error", "-rw_timeout", "15000000", "-i", url, "-t",
                        str(RECORD_S), "-map", "0", "-c", "copy", "-y", path],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=40)
    return r.returncode, time.monotonic() - t, r.stderr


@unittest.skipUnless(FFMPEG and FFPROBE, "ffmpeg/ffprobe not installed")
class PlayerTimelineTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.require_controller()
        cls.tmp = tempfile.mkdtemp(prefix="cascade-timeline-")
        plain = os.path.join(cls.tmp, "plain.flv")
        make_media(plain, seconds=40)
        cls.media = os.path.join(cls.tmp, "src.flv")
        add_late_metadata(plain, cls.media, META_AT_MS)
        cls.pg = harness.shared_cluster()

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.db = self.pg.create_database()
        self.ctl = harness.Controller(self.pg.dsn(self.db), config=CTL_CONFIG)
        self.agents = {}
        self.procs = []
        self.readers = []

    def tearDown(self):
        for r in self.readers:
            r.stop = True
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        for a in self.agents.values():
            a.stop(expected_errors=AGENT_ERRORS)
        self.ctl.stop()

    def tree(self):
        harness.start_tree(self.ctl, (("hq", None), ("region", "hq"), ("edge", "region")),
                           NODE_CONFIG, self.agents)

    def streams(self, name):
        return self.agents[name].streams()

    def publish(self, name, path):
        # -max_interleave_delta: the data stream has one packet, and ffmpeg would otherwise hold
        # audio and video back up to 10 s waiting for its next one
        p = subprocess.Popen([FFMPEG, "-v", "error", "-re", "-i", self.media, "-map", "0", "-c",
                              "copy", "-max_interleave_delta", "100000", "-f", "flv",
                              self.agents[name].rtmp_url(path)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(p)
        # a player from the start, to tell how long the stream has run (once it is live here:
        # before, a player would start a pull from above)
        harness.wait_for(lambda: self.streams(name).get(path, {}).get("type") == "rtmp", 15,
                         what="%s publishing at %s" % (path, name))
        r = FlvReader(self.agents[name].flv_url(path))
        r.start()
        self.readers.append(r)
        return r

    def test_late_players_start_at_zero_everywhere(self):
        self.tree()
        t0 = time.monotonic()
        up = self.publish("edge", "live/up")       # pushed up to hq
        down = self.publish("hq", "live/down")     # pulled down to region and edge
        harness.wait_for(lambda: self.streams("hq").get("live/up"), 15, what="pushed up to hq")
        # the cached metadata (META_AT_MS) is old once the GOP starts past it
        harness.wait_for(lambda: min(up.last_ts or 0, down.last_ts or 0) >= RUN_MS, 20,
                         what="both streams ran %d ms" % RUN_MS)
        for r in (up, down):
            self.assertIsNone(r.error)
        joined = time.monotonic() - t0
        players = [("hq", "live/up", "pushed"), ("edge", "live/up", "local"),
                   ("region", "live/down", "pulled 1 level"),
                   ("edge", "live/down", "pulled 2 levels")]
        urls = []
        for node, path, how in players:
            a = self.agents[node]
            urls.append(("%s %s (%s) http-flv" % (node, path, how), a.flv_url(path)))
            urls.append(("%s %s (%s) rtmp" % (node, path, how), a.rtmp_url(path)))
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as ex:
            probes = list(ex.map(lambda u: probe(u[1]), urls))
            outs = [os.path.join(self.tmp, "rec%d.mp4" % i) for i in range(len(urls))]
            recs = list(ex.map(lambda i: record(urls[i][1], outs[i]), range(len(urls))))
        worst = 0.0
        for (label, url), (types, pk), (rc, took, err), out in zip(urls, probes, recs, outs):
            self.assertEqual(types, ["audio", "video"], "%s: streams %s" % (label, types))
            self.assertGreaterEqual(len(pk), 5, "%s: packets %s" % (label, pk))
            self.assertLessEqual(pk[0][1], 0.1, "%s: first packets %s" % (label, pk[:6]))
            self.assertLessEqual(min(t for _, t in pk), 0.1, "%s: %s" % (label, pk[:6]))
            self.assertEqual(rc, 0, "%s: recording to MP4 failed: %s" % (label, err[-600:]))
            self.assertLess(took, 8.0, "%s: a %d s recording took %.1f s" % (label, RECORD_S, took))
            types_out, pk_out = probe(out)
            self.assertEqual(types_out, ["audio", "video"], "%s: MP4 has %s" % (label, types_out))
            self.assertLessEqual(pk_out[0][1], 0.1, label)
            worst = max(worst, took)
        # the streams went on meanwhile: nobody was cut off
        for r in (up, down):
            self.assertIsNone(r.error)
            self.assertFalse(r.done.is_set())
        print("  players joined %.1f s after the publish; the slowest %d s recording of %d took "
              "%.1f s" % (joined, RECORD_S, len(urls), worst))


if __name__ == "__main__":
    unittest.main()
