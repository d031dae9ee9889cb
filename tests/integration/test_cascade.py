#!/usr/bin/env python3
"""The cascade of streams with real agents, a real controller and real ffmpeg/ffprobe
(docs/media.md, "Cascade"). A five-node tree:

    hq
    |- region1 - edgeA
    |- region2 - edgeB

ffmpeg publishes at edgeA; the stream is pushed up two levels (edgeA -> region1 -> hq) and
pulled on demand two levels down (hq -> region2 -> edgeB); players at hq and edgeB get every
frame, decodable. The last player at edgeB leaves: the pull stops after pull.linger. kill -9 of
both regions and restart: the push and the pull resume by themselves and edgeB's player stays
connected. An nginx-rtmp server is the origin of an rtmp:// pull rule."""

import copy
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

import harness
from test_media import FFMPEG, FFPROBE, FlvReader, decodes, make_media, video_packets

CLIENTS = "/api/cascade/clients"
NGINX_MODULE = "/usr/lib/nginx/modules/ngx_rtmp_module.so"
CTL_CONFIG = {"control": {"heartbeat": 500, "polltimeout": 3000}}
NODE_CONFIG = {
    "quic": {"idletimeout": "1s", "keepalive": "200ms", "handshaketimeout": "1s"},
    "cascadeclient": {"reconnectmax": "500ms", "autopush": True,
                      "onsub": {"pull": {"ext/(.*)": "rtmp://127.0.0.1:{nginx}/live/$1",
                                         ".*": "m7s://$0"}}},
    "subscribe": {"waittimeout": "15s"},
    "publish": {"delayclosetimeout": "6s"},
    "pull": {"linger": "2s"},
}
AGENT_ERRORS = [r"(?i)authentication failed"]



class Capture(threading.Thread):
    """ffmpeg copying an HTTP-FLV URL into a file until the stream ends."""

    def __init__(self, url, path):
        super().__init__(daemon=True)
        self.url, self.path = url, path
        self.proc = subprocess.Popen(
            [FFMPEG, "-v", "error", "-rw_timeout", "30000000", "-i", url, "-c", "copy", "-f",
             "flv", "-y", path], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.rc = None
        self.err = ""

    def run(self):
        _, self.err = self.proc.communicate()
        self.rc = self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()


@unittest.skipUnless(FFMPEG and FFPROBE, "ffmpeg/ffprobe not installed")
class CascadeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.require_controller()
        cls.tmp = tempfile.mkdtemp(prefix="cascade-tree-")
        cls.media = os.path.join(cls.tmp, "src.flv")
        make_media(cls.media, seconds=8)
        cls.src_video = len(video_packets(cls.media))
        cls.long_media = os.path.join(cls.tmp, "long.flv")
        make_media(cls.long_media, seconds=40)
        cls.pg = harness.shared_cluster()

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.db = self.pg.create_database()
        self.ctl = harness.Controller(self.pg.dsn(self.db), config=CTL_CONFIG)
        self.agents = {}
        self.procs = []
        self.nginx = None
        self.nginx_port = harness.free_port()

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        for a in self.agents.values():
            if a.proc is not None:
                a.stop(expected_errors=AGENT_ERRORS)
        self.ctl.stop()
        if self.nginx is not None:
            self.nginx.send_signal(signal.SIGQUIT)
            try:
                self.nginx.wait(10)
            except subprocess.TimeoutExpired:
                self.nginx.kill()

    # the tree ------------------------------------------------------------------------------------

    def create(self, name, parent=None):
        body = {"name": name, "secret": name + "-secret"}
        if parent is not None:
            body["parent_id"] = parent
        return harness.envelope_ok(self, self.ctl.api("POST", CLIENTS, body), 201)

    def config_for(self, name):
        cfg = copy.deepcopy(NODE_CONFIG)
        pull = cfg["cascadeclient"]["onsub"]["pull"]
        cfg["cascadeclient"]["onsub"]["pull"] = {
            k: v.replace("{nginx}", str(self.nginx_port)) for k, v in pull.items()}
        if name in self.ports:
            cfg["cascadeserver"] = {"quic": {"listenaddr": "127.0.0.1:%d" % self.ports[name]}}
        return cfg

    def start_agent(self, name):
        a = harness.Agent(self.ctl, name, name + "-secret", config=self.config_for(name))
        self.agents[name] = a
        return a

    def tree(self):
        self.ports = {n: harness.free_udp_port() for n in ("hq", "region1", "region2")}
        self.ids = {}
        self.ids["hq"] = self.create("hq")["id"]
        for r in ("region1", "region2"):
            self.ids[r] = self.create(r, parent=self.ids["hq"])["id"]
        self.ids["edgeA"] = self.create("edgeA", parent=self.ids["region1"])["id"]
        self.ids["edgeB"] = self.create("edgeB", parent=self.ids["region2"])["id"]
        for n in ("hq", "region1", "region2", "edgeA", "edgeB"):
            self.start_agent(n)
        for child, parent in (("region1", "hq"), ("region2", "hq"), ("edgeA", "region1"),
                              ("edgeB", "region2")):
            self.wait_link(child, parent, 30)

    def wait_link(self, child, parent, timeout):
        def up():
            for l in self.agents[child].status()["links"]:
                if l["role"] == "parent" and l["peer_id"] == self.ids[parent] and \
                        l["state"] == "up":
                    return True
            return False
        harness.wait_for(up, timeout, interval=0.05, what="%s -> %s link" % (child, parent))

    def streams(self, name):
        st, _, body = self.agents[name].admin_request("GET", "/api/stream/list")
        self.assertEqual(st, 200, body)
        return {s["path"]: s for s in body["data"]}

    def cascade(self, name):
        return self.agents[name].status()["cascade"]

    def publish(self, name, path, media):
        a = self.agents[name]
        p = subprocess.Popen([FFMPEG, "-v", "error", "-re", "-i", media, "-c", "copy", "-f", "flv",
                              a.rtmp_url(path)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        self.procs.append(p)
        return p

    def check_capture(self, cap, label):
        cap.join(90)
        self.assertFalse(cap.is_alive(), "%s: capture still running" % label)
        pk = video_packets(cap.path)
        n = len(pk)
        self.assertGreaterEqual(n, 0.99 * self.src_video,
                                "%s: %d video frames of %d published" % (label, n, self.src_video))
        self.assertLessEqual(n, 1.01 * self.src_video, label)
        self.assertTrue(pk[0][1], "%s: the first video frame is not a keyframe" % label)
        ts = [p[0] for p in pk]
        self.assertEqual(ts, sorted(ts), "%s: timestamps go back" % label)
        ok, err = decodes(cap.path)
        self.assertTrue(ok, "%s: does not decode: %s" % (label, err[-500:]))
        return n

    # tests -------------------------------------------------------------------------------------------

    def test_push_up_and_pull_down_two_levels(self):
        self.tree()
        path = "live/cam"
        # players first: they wait for the stream (subscribe.waittimeout) and see all of it
        caps = {}
        for n in ("hq", "edgeB"):
            caps[n] = Capture(self.agents[n].flv_url(path),
                              os.path.join(self.tmp, "%s-%s.flv" % (self._testMethodName, n)))
            caps[n].start()
        # edgeB's pull is already waiting up the tree before anything is published
        harness.wait_for(lambda: self.cascade("edgeB")["pulls"], 10, what="edgeB pull started")
        t0 = time.monotonic()
        self.publish("edgeA", path, self.media)
        harness.wait_for(lambda: self.streams("hq").get(path), 15, interval=0.05,
                         what="pushed up to hq")
        t_hq = time.monotonic() - t0
        st = self.streams("region1")[path]
        self.assertGreaterEqual(st["subscribers"], 1)   # the push to hq
        self.assertTrue(any(p["state"] == "pushing" for p in self.cascade("edgeA")["pushes"]))
        self.assertTrue(any(p["state"] == "pushing" for p in self.cascade("region1")["pushes"]))
        # a stream pulled from above is never pushed back up
        harness.wait_for(lambda: self.streams("region2").get(path), 15, what="pulled at region2")
        self.assertEqual(self.cascade("region2")["pushes"], [])
        for n, cap in caps.items():
            got = self.check_capture(cap, n)
            print("  %s: %d of %d video frames (pushed up to hq in %.2f s)"
                  % (n, got, self.src_video, t_hq))

    def test_pull_linger(self):
        self.tree()
        path = "live/linger"
        self.publish("edgeA", path, self.long_media)
        harness.wait_for(lambda: self.streams("hq").get(path), 15, what="pushed up to hq")
        r = FlvReader(self.agents["edgeB"].flv_url(path))
        r.start()
        harness.wait_for(lambda: r.video >= 25, 15, what="frames at edgeB")
        self.assertTrue(self.streams("edgeB").get(path))
        r.stop = True
        r.done.wait(10)
        t_left = time.monotonic()
        # lingering: still pulled for pull.linger (2 s), then gone from the stream list
        pulls = self.cascade("edgeB")["pulls"]
        self.assertEqual([p["path"] for p in pulls], [path])
        harness.wait_for(lambda: path not in self.streams("edgeB"), 10, interval=0.1,
                         what="the pull stopped after the linger")
        gone = time.monotonic() - t_left
        self.assertGreaterEqual(gone, 1.5, "stopped before pull.linger")
        self.assertEqual(self.cascade("edgeB")["pulls"], [])
        # a new player starts the pull again
        r2 = FlvReader(self.agents["edgeB"].flv_url(path))
        r2.start()
        harness.wait_for(lambda: r2.video >= 10, 15, what="frames at edgeB after the linger")
        r2.stop = True
        print("  pull stopped %.2f s after the last player left (linger 2 s)" % gone)

    def test_regions_restart_push_and_pull_resume(self):
        self.tree()
        path = "live/survive"
        self.publish("edgeA", path, self.long_media)
        harness.wait_for(lambda: self.streams("hq").get(path), 15, what="pushed up to hq")
        r = FlvReader(self.agents["edgeB"].flv_url(path))
        r.start()
        harness.wait_for(lambda: r.video >= 25, 15, what="frames at edgeB")
        for n in ("region1", "region2"):
            self.agents[n].proc.send_signal(signal.SIGKILL)
            self.agents[n].proc.wait()
        before = r.video
        t_kill = time.monotonic()
        for n in ("region1", "region2"):
            self.agents[n].proc = None
            self.start_agent(n)
        t_start = time.monotonic()
        harness.wait_for(lambda: r.video >= before + 50, 30, interval=0.05,
                         what="edgeB's player gets frames again")
        resumed = time.monotonic() - t_start
        self.assertIsNone(r.error)
        self.assertTrue(r.done.is_set() is False, "edgeB's player was disconnected")
        # the push resumed too: hq gets the stream from region1 again
        self.assertTrue(any(p["state"] == "pushing" for p in self.cascade("edgeA")["pushes"]))
        harness.wait_for(lambda: any(p["state"] == "pushing"
                                     for p in self.cascade("region1")["pushes"]), 15,
                         what="region1 pushes again")
        r.stop = True
        print("  edgeB's player resumed %.2f s after the regions restarted (killed %.2f s "
              "before), same connection" % (resumed, t_start - t_kill))

    def test_bad_pull_target_fails_the_pull_with_a_reason(self):
        self.ports = {}
        self.ids = {"edge": self.create("edge")["id"]}
        cfg = self.config_for("edge")
        cfg["cascadeclient"]["onsub"]["pull"] = {"bad/(.*)": "rtmp://127.0.0.1:99999/live/$1",
                                                 "huge/(.*)": "m7s://live/" + "$1" * 10}
        cfg["subscribe"] = {"waittimeout": "2s"}
        a = harness.Agent(self.ctl, "edge", "edge-secret", config=cfg)
        self.agents["edge"] = a
        for path, why in (("bad/cam", "port out of range"),
                          ("huge/" + "c" * 200, "not a stream path")):
            t = time.monotonic()
            st, _, _ = a.request("GET", "/flv/%s.flv" % path)
            self.assertEqual(st, 404)
            self.assertGreaterEqual(time.monotonic() - t, 1.5)
            harness.wait_for(lambda: why in a.log_text(), 5, what="the reason in the log")
        self.assertEqual(self.cascade("edge")["pulls"], [])
        self.assertEqual(self.streams("edge"), {})

    @unittest.skipUnless(os.path.exists(NGINX_MODULE) and shutil.which("nginx"),
                         "nginx-rtmp not installed")
    def test_external_rtmp_origin(self):
        d = os.path.join(self.tmp, "nginx-%d" % self.nginx_port)
        os.makedirs(d, exist_ok=True)
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w") as f:
            f.write("load_module %s;\nworker_processes 1;\ndaemon off;\npid %s/nginx.pid;\n"
                    "error_log %s/error.log warn;\nevents { worker_connections 256; }\n"
                    "rtmp { server { listen 127.0.0.1:%d; application live { live on; } } }\n"
                    % (NGINX_MODULE, d, d, self.nginx_port))
        self.nginx = subprocess.Popen(["nginx", "-c", conf, "-p", d], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL,
                                      preexec_fn=harness._die_with_parent)

        def nginx_up():
            try:
                socket.create_connection(("127.0.0.1", self.nginx_port), 0.2).close()
                return True
            except OSError:
                return False
        harness.wait_for(nginx_up, 10, what="nginx-rtmp listening")
        self.ports = {}
        self.ids = {"edge": self.create("edge")["id"]}
        self.start_agent("edge")
        p = subprocess.Popen([FFMPEG, "-v", "error", "-re", "-i", self.long_media, "-c", "copy",
                              "-f", "flv", "rtmp://127.0.0.1:%d/live/cam" % self.nginx_port],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(p)
        r = FlvReader(self.agents["edge"].flv_url("ext/cam"))
        r.start()
        harness.wait_for(lambda: r.video >= 50, 20, interval=0.05,
                         what="frames pulled from nginx-rtmp")
        self.assertTrue(r.first_video_key, "the first frame from nginx-rtmp is not a keyframe")
        pulls = self.cascade("edge")["pulls"]
        self.assertEqual(pulls[0]["source"], "rtmp://127.0.0.1:%d/live/cam" % self.nginx_port)
        self.assertEqual(pulls[0]["state"], "pulling")
        r.stop = True


if __name__ == "__main__":
    unittest.main()
