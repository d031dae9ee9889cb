#!/usr/bin/env python3
"""SIGTERM drains an agent (docs/operations.md, "Stopping"): with a publisher and two players
(RTMP and HTTP-FLV) on a child node, SIGTERM makes it exit 0 within shutdown.timeout; both
players see the end of the stream (the HTTP-FLV body ends at a tag boundary, the RTMP player
gets NetStream.Play.Stop and ffmpeg ends without an error); the parent logs the child's link
closing as going away (0x20a) at info, no warning. The drain's bounds: a client that holds a
connection open makes the agent exit at shutdown.timeout all the same, and a second SIGTERM
ends it at once. The controller exits 0 on SIGTERM."""

import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

import harness
from test_media import FFMPEG, FFPROBE, FlvReader, make_media

CTL_CONFIG = {"control": {"heartbeat": 500, "polltimeout": 3000}}
NODE_CONFIG = {
    "quic": {"idletimeout": "2s", "keepalive": "300ms", "handshaketimeout": "1s"},
    "cascadeclient": {"reconnectmax": "1s", "autopush": True},
    "shutdown": {"timeout": "8s"},
}


def raw_get(host, port, path, token=None):
    """The body of a GET as text, as a client sees it (not re-serialised)."""
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", path, headers={"Authorization": "Bearer " + token} if token else {})
        r = conn.getresponse()
        return r.status, r.read().decode("utf-8")
    finally:
        conn.close()


@unittest.skipUnless(FFMPEG and FFPROBE, "ffmpeg/ffprobe not installed")
class DrainTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.require_controller()
        cls.tmp = tempfile.mkdtemp(prefix="cascade-drain-")
        cls.media = os.path.join(cls.tmp, "src.flv")
        make_media(cls.media, seconds=30)
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
                a.stop()
        self.assertEqual(self.ctl.stop(), 0)

    def popen(self, cmd):
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        return p

    def test_sigterm_ends_players_and_closes_links_as_going_away(self):
        ids = harness.start_tree(self.ctl, [("hq", None), ("edge", "hq")], NODE_CONFIG,
                                 self.agents)
        edge, hq = self.agents["edge"], self.agents["hq"]
        path = "live/drain"
        pub = self.popen([FFMPEG, "-v", "error", "-re", "-i", self.media, "-c", "copy", "-f",
                          "flv", edge.rtmp_url(path)])
        harness.wait_for(lambda: path in edge.streams(), 15, what="stream live at edge")
        flv = FlvReader(edge.flv_url(path))
        flv.start()
        out_rtmp = os.path.join(self.tmp, "rtmp.flv")
        rtmp = self.popen([FFMPEG, "-v", "error", "-y", "-i", edge.rtmp_url(path), "-c", "copy",
                           "-f", "flv", out_rtmp])
        harness.wait_for(lambda: flv.video > 10 and os.path.exists(out_rtmp)
                         and os.path.getsize(out_rtmp) > 20000, 20, what="both players playing")
        # pushed up: the parent has it from its child
        harness.wait_for(lambda: path in hq.streams(), 15, what="stream pushed to hq")

        # while the tree is up: the JSON the APIs write is compact, and times in ms have at
        # most 3 decimals (PostgreSQL's jsonb text and jansson's 17 digits used to show)
        harness.envelope_ok(self, self.ctl.api("PUT", "/api/cascade/clients/%d" % ids["edge"], {
            "labels": {"zone": "a", "rack": "r1"}, "onsub": {"pull": {".*": "m7s://$0"}}}))
        st, text = raw_get(self.ctl.host, self.ctl.port, "/api/cascade/clients/%d" % ids["edge"],
                           self.ctl.admin_token)
        self.assertEqual(st, 200, text)
        self.assertIn('"labels":{"rack":"r1","zone":"a"}', text)
        self.assertIn('"onsub":{"pull":{".*":"m7s://$0"}}', text)
        self.assertNotRegex(text, r'": |, "')

        def rtt_text():
            st, text = raw_get(self.ctl.host, self.ctl.port, "/api/cascade/topology",
                               self.ctl.admin_token)
            return text if st == 200 and re.search(r'"rtt_ms":\d', text) else None
        text = harness.wait_for(rtt_text, 15, what="the link's rtt in the topology")
        for v in re.findall(r'"rtt_ms":([^,}]*)', text):
            self.assertRegex(v, r"^(null|\d+(\.\d{1,3})?)$", text)
        st, text = raw_get(edge.admin_host, edge.admin_port, "/api/cascade/status")
        for v in re.findall(r'"(?:min_)?rtt_ms":([^,}]*)', text):
            self.assertRegex(v, r"^(null|\d+(\.\d{1,3})?)$", text)

        t0 = time.monotonic()
        edge.proc.send_signal(signal.SIGTERM)
        rc = edge.wait_exit(timeout=8 + 5)
        took = time.monotonic() - t0
        self.assertEqual(rc, 0, edge.log_tail())
        self.assertLess(took, 8, "the drain took %.1f s" % took)
        # the HTTP-FLV player: the body ended, no error
        self.assertTrue(flv.done.wait(10), "the HTTP-FLV player saw no end")
        self.assertIsNone(flv.error, flv.error)
        self.assertEqual(flv.status, 200)
        # the RTMP player: ffmpeg ends by itself, successfully
        rc_rtmp = rtmp.wait(10)
        err = rtmp.stderr.read()
        self.assertEqual(rc_rtmp, 0, err)

        # the parent: the child left with "going away", logged at info, nothing louder
        harness.wait_for(lambda: re.search(
            r"info link \[link edge [^\]]*\] child down: node %d: closed by the peer: going "
            r"away \(the node shuts down\) \(0x20a\)" % ids["edge"], hq.log_text()), 10,
            what="hq logs the child going away")
        for line in hq.log_text().splitlines():
            if "edge" in line and "link" in line:
                self.assertNotRegex(line, r"Z (warn|error) ", line)

        edge.check_log()
        log = edge.log_text()
        self.assertRegex(log, r"info agent signal 15: draining")
        self.assertRegex(log, r"info agent drained in [0-9.]+ s: exiting")
        # a drain is no failure: nothing louder than info once it began
        after = log[log.index("signal 15: draining"):]
        self.assertNotRegex(after, r"Z (warn|error) ", after)
        pub.wait(10)

    def test_timeout_and_second_signal(self):
        harness.envelope_ok(self, self.ctl.api("POST", "/api/cascade/clients", {
            "name": "lone", "secret": "lone-secret"}), 201)
        a = harness.Agent(self.ctl, "lone", "lone-secret", config={"shutdown": {"timeout": "1s"}})
        self.agents["lone"] = a
        connected = lambda: a.status()["controller"]["state"] == "running"  # noqa: E731
        harness.wait_for(connected, 20, what="agent connected")
        # a client that asks and never closes: the agent's reply then waits for its EOF
        # (2 s), longer than shutdown.timeout
        s = socket.create_connection((a.host, a.port), timeout=5)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertIn(b"200", s.recv(4096))
        t0 = time.monotonic()
        a.proc.send_signal(signal.SIGTERM)
        self.assertEqual(a.wait_exit(timeout=10), 0, a.log_tail())
        took = time.monotonic() - t0
        self.assertLess(took, 1.9, "exit at shutdown.timeout (1 s), took %.1f s" % took)
        self.assertRegex(a.log_text(), r"warn agent shutdown.timeout \(1.0 s\) reached with 1 "
                                       r"connections and 0 links still open: exiting")
        s.close()

        # a second signal: at once (shutdown.timeout is long now)
        a.extra_config = {"shutdown": {"timeout": "60s"}}
        a.start()
        harness.wait_for(connected, 20, what="agent connected again")
        s = socket.create_connection((a.host, a.port), timeout=5)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertIn(b"200", s.recv(4096))
        a.proc.send_signal(signal.SIGTERM)
        harness.wait_for(lambda: "draining for at most 60.0 s" in a.log_text(), 10,
                         what="the drain started")
        t0 = time.monotonic()
        a.proc.send_signal(signal.SIGTERM)
        self.assertEqual(a.wait_exit(timeout=10), 0, a.log_tail())
        # at once: the loop ends; closing the control socket may still take its 2 s (nng 1.5.2,
        # docs/operations.md), far below the 60 s the drain could take
        self.assertLess(time.monotonic() - t0, 3.5)
        self.assertIn("signal 15 again: exiting now", a.log_text())
        s.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
