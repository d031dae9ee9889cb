#!/usr/bin/env python3
"""HTTP hooks at an edge (docs/media.md, "HTTP hooks"; docs/api.md, "Stream authorization"). A
real controller, a real agent with auth left to the controller, real ffmpeg/ffprobe, and the
operator's hook service: an http.server on 127.0.0.1 inside this test that counts what it is
asked and answers as told.

- The deployment's policy sends `hooked/...` to the hooks (publish and play), everything else
  stays open; the four hook URLs, the timeout, the cache and the failure mode are set over the
  REST API.
- RTMP publish, RTMP play and HTTP-FLV play: a hook answering 200 admits, with the JSON body of
  docs/media.md (action, node, path, addr, proto, query); 403 refuses (BadName / Play.Failed /
  HTTP 403) with the reason in the agent's log, never the query.
- A hook that sleeps past timeout_ms, answers garbage, or is down: refused when fail closed (the
  default), admitted when fail open; a refusal for a timeout comes after about timeout_ms.
- Caching: with cache_ms the same client asking again is not sent to the hook; after cache_ms
  it is.
- on_stop when a player ends (RTMP and HTTP-FLV), on_unpublish when the publisher ends.
- The time to the first frame of an HTTP-FLV player with an (uncached) hook and without."""

import http.server
import json
import os
import re
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.request

import harness
from test_media import FFMPEG, FFPROBE, make_media
from test_streamauth import http_status, rtmp_play

CTL_CONFIG = {"control": {"heartbeat": 500, "polltimeout": 3000}}
NODE_CONFIG = {
    "subscribe": {"waittimeout": "3s"},
    "publish": {"delayclosetimeout": "1s"},
    "auth": {"publish": "controller", "play": "controller"},
}
AGENT_ERRORS = [r"(?i)authentication failed"]
TIMEOUT_MS = 600


class HookServer:
    """The operator's hook service: answers by mode, keeps every JSON body it is sent."""

    def __init__(self):
        self.mode = ("status", 200)
        self.lock = threading.Lock()
        self.bodies = []
        self.headers = []
        srv = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(n)
                with srv.lock:
                    srv.bodies.append(json.loads(raw))
                    srv.headers.append(dict(self.headers))
                    mode = srv.mode
                self.close_connection = True
                if mode[0] == "sleep":
                    time.sleep(mode[1])
                    mode = ("status", 200)
                try:
                    if mode[0] == "garbage":
                        self.wfile.write(b"this is not HTTP at all\r\n\r\n")
                        return
                    self.send_response(mode[1])
                    self.send_header("Content-Length", "2")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass  # the agent gave up waiting (timeout_ms): nobody reads the answer

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, event):
        return "http://hookuser:hookpass@127.0.0.1:%d/%s?site=secretsite" % (self.port, event)

    def set(self, *mode):
        with self.lock:
            self.mode = mode

    def count(self, action=None, path=None):
        with self.lock:
            return sum(1 for b in self.bodies
                       if (action is None or b.get("action") == action) and
                       (path is None or b.get("path") == path))

    def last(self, action, path=None):
        with self.lock:
            for b in reversed(self.bodies):
                if b.get("action") == action and (path is None or b.get("path") == path):
                    return b
        return None

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def first_video_ms(url):
    """Milliseconds from connecting to the first FLV video tag of |url|."""
    t0 = time.monotonic()
    with urllib.request.urlopen(url, timeout=15) as r:
        assert r.read(13)[:3] == b"FLV"
        while True:
            hdr = r.read(11)
            size = int.from_bytes(hdr[1:4], "big")
            r.read(size + 4)
            if hdr[0] == 9:
                return (time.monotonic() - t0) * 1000.0


def dead_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@unittest.skipUnless(FFMPEG and FFPROBE, "ffmpeg/ffprobe not installed")
class HooksTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.require_controller()
        cls.tmp = tempfile.mkdtemp(prefix="cascade-hooks-")
        cls.media = os.path.join(cls.tmp, "src.flv")
        make_media(cls.media, seconds=120)
        cls.short = os.path.join(cls.tmp, "short.flv")
        make_media(cls.short, seconds=2)
        cls.hook = HookServer()
        cls.pg = harness.shared_cluster()
        cls.db = cls.pg.create_database()
        cls.ctl = harness.Controller(cls.pg.dsn(cls.db), config=CTL_CONFIG)
        cls.agents, cls.procs = {}, []
        cls.ids = harness.start_tree(cls.ctl, (("edge", None),), NODE_CONFIG, cls.agents)
        cls.edge = cls.agents["edge"]

    @classmethod
    def tearDownClass(cls):
        try:
            harness.stop_tree(cls.ctl, cls.agents, cls.procs, AGENT_ERRORS, cls.tmp)
        finally:
            cls.hook.close()

    # helpers ---------------------------------------------------------------------------------

    def api_ok(self, method, path, body=None, status=200):
        return harness.envelope_ok(self, self.ctl.api(method, path, body), status)

    def applied(self):
        harness.wait_applied(self.ctl, self.ids)

    def set_hooks(self, policy="hook", **hooks):
        body = {"hooks": hooks} if hooks else {}
        if policy:
            body["policy"] = [{"pattern": "hooked/.*", "publish": policy, "play": policy},
                              {"pattern": ".*", "publish": "none", "play": "none"}]
        self.api_ok("PUT", "/api/cascade/streamauth", body)
        self.applied()

    def publish(self, path, media=None, query=""):
        url = self.edge.rtmp_url(path) + query
        p = subprocess.Popen([FFMPEG, "-v", "error", "-re", "-i", media or self.media, "-c",
                              "copy", "-f", "flv", url], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        return p

    def live(self, path, timeout=20):
        harness.wait_for(lambda: self.edge.streams().get(path, {}).get("state") == "publishing",
                         timeout, what="%s publishing" % path)

    def refused_publish(self, path):
        p = self.publish(path, media=self.short)
        try:
            p.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            self.fail("publish of %s was not refused" % path)
        self.assertNotEqual(p.returncode, 0, "publish of %s accepted" % path)
        self.assertNotIn(path, self.edge.streams())

    def flv(self, path, query=""):
        return self.edge.flv_url(path) + query

    def ensure_live(self):
        """hooked/live, published through an allowing hook once, kept for the class."""
        if getattr(HooksTest, "live_pub", None) is None or HooksTest.live_pub.poll() is not None:
            self.hook.set("status", 200)
            self.set_hooks(on_publish=self.hook.url("on_publish"), fail_open=False)
            HooksTest.live_pub = self.publish("hooked/live")
            self.live("hooked/live")

    # tests -----------------------------------------------------------------------------------

    def test_1_allow_refuse_and_the_ends(self):
        hk = self.hook
        hk.set("status", 200)
        self.set_hooks(on_publish=hk.url("on_publish"), on_play=hk.url("on_play"),
                       on_stop=hk.url("on_stop"), on_unpublish=hk.url("on_unpublish"),
                       timeout_ms=TIMEOUT_MS, cache_ms=0, fail_open=False)
        self.assertEqual(sorted(self.edge.status()["auth"]["hooks"]),
                         ["on_play", "on_publish", "on_stop", "on_unpublish"])
        # RTMP publish admitted by the hook, with the body of docs/media.md
        pub = self.publish("hooked/cam", query="?k=pubsecret")
        self.live("hooked/cam")
        b = hk.last("publish", "hooked/cam")
        self.assertEqual(b, {"action": "publish", "node": "edge", "path": "hooked/cam",
                             "addr": "127.0.0.1", "proto": "rtmp", "query": "k=pubsecret"})
        with hk.lock:
            h = hk.headers[-1]
        self.assertEqual(h.get("Authorization"), "Basic aG9va3VzZXI6aG9va3Bhc3M=")
        self.assertEqual(h.get("Content-Type"), "application/json")
        # RTMP play and HTTP-FLV play admitted; their ends reported by on_stop
        stops = hk.count("stop")
        ok, err = rtmp_play(self.edge.rtmp_url("hooked/cam") + "?t=rtmpsecret")
        self.assertTrue(ok, err)
        b = hk.last("play", "hooked/cam")
        self.assertEqual((b["proto"], b["query"], b["addr"]), ("rtmp", "t=rtmpsecret", "127.0.0.1"))
        harness.wait_for(lambda: hk.count("stop") == stops + 1, 10, what="on_stop of RTMP play")
        self.assertEqual(hk.last("stop")["proto"], "rtmp")
        self.assertEqual(http_status(self.flv("hooked/cam", "?token=flvsecret")), 200)
        b = hk.last("play", "hooked/cam")
        self.assertEqual((b["proto"], b["query"]), ("httpflv", "token=flvsecret"))
        harness.wait_for(lambda: hk.count("stop") == stops + 2, 10, what="on_stop of HTTP-FLV")
        self.assertEqual(hk.last("stop")["proto"], "httpflv")
        # a path the policy leaves open never reaches the hook
        # (no on_play asked; its end may still be told to on_stop, like every admitted player's)
        self.assertEqual(http_status(self.flv("open/none")), 404)
        self.assertEqual(hk.count("play", "open/none"), 0)
        # 403 refuses all three
        hk.set("status", 403)
        self.assertEqual(http_status(self.flv("hooked/cam", "?token=flvsecret")), 403)
        ok, err = rtmp_play(self.edge.rtmp_url("hooked/cam"))
        self.assertFalse(ok, err)
        self.refused_publish("hooked/other")
        log = self.edge.log_text()
        self.assertRegex(log, r"play hooked/cam refused: 403 refused by the hook \(HTTP 403\)")
        self.assertRegex(log, r"publish hooked/other refused: 403 refused by the hook \(HTTP 403\)")
        # the publisher ends: on_unpublish
        hk.set("status", 200)
        pub.kill()
        pub.wait()
        harness.wait_for(lambda: hk.count("unpublish", "hooked/cam") == 1, 15,
                         what="on_unpublish")
        b = hk.last("unpublish")
        self.assertEqual(b, {"action": "unpublish", "node": "edge", "path": "hooked/cam",
                             "addr": "127.0.0.1", "proto": "rtmp", "query": None})
        for secret in ("pubsecret", "rtmpsecret", "flvsecret", "hookpass", "secretsite"):
            self.assertNotIn(secret, self.edge.log_text())

    def test_2_no_answer_fail_closed_then_open(self):
        self.ensure_live()
        hk = self.hook
        down = "http://127.0.0.1:%d/on_play" % dead_port()
        cases = (("sleep", ("sleep", 2.0), hk.url("on_play"), "hook timed out"),
                 ("garbage", ("garbage",), hk.url("on_play"), "hook answered garbage"),
                 ("down", ("status", 200), down, "hook down: Connection refused"))
        for fail_open in (False, True):
            for name, mode, url, reason in cases:
                with self.subTest(case=name, fail_open=fail_open):
                    hk.set(*mode)
                    self.set_hooks(on_play=url, timeout_ms=TIMEOUT_MS, cache_ms=0,
                                   fail_open=fail_open)
                    t0 = time.monotonic()
                    st = http_status(self.flv("hooked/live"))
                    took = time.monotonic() - t0
                    self.assertEqual(st, 200 if fail_open else 403)
                    if name == "sleep" and not fail_open:
                        self.assertGreaterEqual(took, TIMEOUT_MS / 1000.0 - 0.05)
                        self.assertLess(took, TIMEOUT_MS / 1000.0 + 1.0)
                    ok, err = rtmp_play(self.edge.rtmp_url("hooked/live"))
                    self.assertEqual(ok, fail_open, err)
                    if not fail_open:
                        self.assertIn("play hooked/live refused: 403 %s" % reason,
                                      self.edge.log_text())
        hk.set("status", 200)

    def test_3_cache(self):
        self.ensure_live()
        hk = self.hook
        hk.set("status", 200)
        self.set_hooks(on_play=hk.url("on_play"), timeout_ms=TIMEOUT_MS, cache_ms=2000,
                       fail_open=False)
        n = hk.count("play", "hooked/live")
        self.assertEqual(http_status(self.flv("hooked/live", "?token=c1")), 200)
        t_answer = time.monotonic()
        self.assertEqual(hk.count("play", "hooked/live"), n + 1)
        # the same client again: from the cache, the hook is not asked (even if it now says no)
        hk.set("status", 403)
        self.assertEqual(http_status(self.flv("hooked/live", "?token=c1")), 200)
        self.assertEqual(hk.count("play", "hooked/live"), n + 1)
        # another query is another question
        self.assertEqual(http_status(self.flv("hooked/live", "?token=c2")), 403)
        self.assertEqual(hk.count("play", "hooked/live"), n + 2)
        # past cache_ms the hook is asked again
        harness.wait_for(lambda: time.monotonic() - t_answer > 2.1, 5, what="cache_ms passing")
        self.assertEqual(http_status(self.flv("hooked/live", "?token=c1")), 403)
        self.assertEqual(hk.count("play", "hooked/live"), n + 3)
        hk.set("status", 200)
        # the node's /metrics counts what the hook client did
        st, _, text = self.edge.admin_request("GET", "/metrics", timeout=5)
        self.assertEqual(st, 200)
        text = text if isinstance(text, str) else text.decode()
        m = dict(re.findall(r'^(cascade_hook_\w+(?:\{[^}]*\})?) (\d+)$', text, re.M))
        self.assertGreaterEqual(int(m.get("cascade_hook_cache_hits_total", 0)), 1, text)
        self.assertGreaterEqual(int(m.get("cascade_hook_requests_total", 0)), 3, text)
        self.assertGreaterEqual(int(m.get('cascade_hook_answers_total{answer="refused"}', 0)), 2,
                                text)

    def test_4_time_to_first_frame(self):
        """An uncached hook adds one hook round trip to an HTTP-FLV player's first frame."""
        self.ensure_live()
        hk = self.hook
        hk.set("status", 200)
        runs = 15
        self.set_hooks(policy="none")
        base = [first_video_ms(self.flv("hooked/live")) for _ in range(runs)]
        self.set_hooks(policy="hook", on_play=hk.url("on_play"), timeout_ms=TIMEOUT_MS,
                       cache_ms=0, fail_open=False)
        n = hk.count("play")
        hooked = [first_video_ms(self.flv("hooked/live", "?q=%d" % i)) for i in range(runs)]
        self.assertEqual(hk.count("play"), n + runs)
        b, h = statistics.median(base), statistics.median(hooked)
        print("HTTP-FLV time to first video frame, median of %d: no hook %.1f ms, uncached hook "
              "%.1f ms (+%.1f ms)" % (runs, b, h, h - b))
        self.assertLess(h - b, 50.0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
