#!/usr/bin/env python3
"""The API relay (docs/api.md, "API relay"): `ANY /api/relay/{id}/{path}` on a real controller
reaches a real agent's local API over the control channel.

The seed's example works; statuses, headers, bodies, methods and queries come through; a live
HTTP-FLV stream is relayed while ffmpeg publishes and closing the caller removes the agent's
subscriber; every deny-bypass spelling is refused; a path the controller allows but the node
denies is refused by the node's rule; unknown node 404, offline node 502, a stopped (SIGSTOP)
agent 504 within the deadline; a viewer may GET but not POST. Prints the latency of a small GET
and the throughput of a large echo through the relay."""

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import threading
import time
import unittest

import harness

FFMPEG = shutil.which("ffmpeg")
TIMEOUT_S = 2.0
CTL_CONFIG = {
    "control": {"heartbeat": 2000, "polltimeout": 5000},
    "cascadeserver": {"relayapi": {"allow": ["/api/", "/flv/"], "deny": ["/api/admin/"]}},
    "relay": {"timeout": "%dms" % int(TIMEOUT_S * 1000)},
}
AGENT_CONFIG = {
    "cascadeclient": {"relayapi": {"allow": ["/api/", "/flv/"],
                                   "deny": ["/api/admin/", "/api/private/"]}},
    "subscribe": {"waittimeout": "3s"},
}
AGENT_ERRORS = [r"(?i)authentication failed"]


def metric(agent, name):
    st, _, body = agent.admin_request("GET", "/metrics", timeout=5)
    for line in body.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


class ApiRelayTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.require_controller()
        cls.pg = harness.shared_cluster()
        cls.db = cls.pg.create_database()
        cls.ctl = harness.Controller(cls.pg.dsn(cls.db), config=CTL_CONFIG)
        cls.agent = harness.Agent(cls.ctl, "relay-a", "relay-a-secret", config=AGENT_CONFIG)
        cls.node = harness.wait_for(lambda: cls.agent.status().get("instance_id"), 20,
                                    what="agent authenticated")
        harness.wait_for(lambda: cls.agent.status()["config_generation"]["applied"] > 0, 20,
                         what="agent configured")

    @classmethod
    def tearDownClass(cls):
        cls.agent.stop(expected_errors=AGENT_ERRORS)
        cls.ctl.stop()

    def relay(self, method, path, body=None, token=None, headers=None, timeout=15):
        return self.ctl.request(method, "/api/relay/%d%s" % (self.node, path), body=body,
                                headers=headers,
                                token=self.ctl.admin_token if token is None else token,
                                timeout=timeout)

    def raw_relay(self, target):
        """A request whose target is sent byte for byte (no client-side normalisation)."""
        req = ("GET /api/relay/%d%s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
               "Connection: close\r\n\r\n" % (self.node, target, self.ctl.admin_token))
        return harness.raw_request(self.ctl.host, self.ctl.port, req.encode())

    # the seed's example ----------------------------------------------------------------------

    def test_seed_example_stream_list(self):
        st, h, body = self.relay("GET", "/api/stream/list")
        self.assertEqual(st, 200, body)
        self.assertEqual(body["code"], 0)
        self.assertIn("total", body)
        self.assertIsInstance(body["data"], list)
        self.assertEqual(h.get("Content-Type"), "application/json")
        # the same answer the agent gives locally
        st2, _, local = self.agent.admin_request("GET", "/api/stream/list")
        self.assertEqual(body, local)

    def test_latency_small_get(self):
        times = []
        for _ in range(40):
            t = time.monotonic()
            st, _, _ = self.relay("GET", "/api/stream/list")
            times.append(time.monotonic() - t)
            self.assertEqual(st, 200)
        local = []
        for _ in range(40):
            t = time.monotonic()
            self.agent.admin_request("GET", "/api/stream/list")
            local.append(time.monotonic() - t)
        print("\nrelay small GET: median %.2f ms, p90 %.2f ms (direct to the agent: median %.2f ms)"
              % (statistics.median(times) * 1000, sorted(times)[int(len(times) * 0.9)] * 1000,
                 statistics.median(local) * 1000))

    # statuses, headers, bodies -----------------------------------------------------------------

    def test_status_and_body_preserved(self):
        st, _, body = self.relay("GET", "/api/no/such/route")
        self.assertEqual(st, 404)
        self.assertEqual(body.strip(), "not found")
        st, h, body = self.relay("POST", "/api/stream/list", body="x")
        self.assertEqual(st, 405)
        self.assertEqual(h.get("Allow"), "GET, HEAD")
        st, h, body = self.relay("HEAD", "/api/stream/list")
        self.assertEqual(st, 200)
        self.assertEqual(h.get("Content-Type"), "application/json")

    def test_post_body_method_query(self):
        payload = "hello relay \u00e9 " * 10
        st, _, body = self.relay("POST", "/api/cascade/echo?a=1&b=x%20y", body=payload,
                                 headers={"Content-Type": "text/plain"})
        self.assertEqual(st, 200, body)
        d = body["data"]
        self.assertEqual(d["method"], "POST")
        self.assertEqual(d["query"], "a=1&b=x%20y")
        self.assertEqual(d["length"], len(payload.encode()))
        st, _, body = self.relay("PUT", "/api/cascade/echo", body="abc")
        self.assertEqual((st, body["data"]["method"], body["data"]["body"]), (200, "PUT", "abc"))
        st, _, body = self.relay("DELETE", "/api/cascade/echo")
        self.assertEqual((st, body["data"]["method"], body["data"]["length"]), (200, "DELETE", 0))

    def test_large_body_throughput(self):
        payload = b"0123456789abcdef" * (700 * 1024 // 16)
        t = time.monotonic()
        st, _, body = self.relay("POST", "/api/cascade/echo", body=payload,
                                 headers={"Content-Type": "application/octet-stream"})
        dt = time.monotonic() - t
        self.assertEqual(st, 200)
        self.assertEqual(body["data"]["length"], len(payload))
        self.assertEqual(body["data"]["body"], payload.decode())
        print("\nrelay 700 KiB echo (request and answer): %.1f ms, %.1f MB/s each way"
              % (dt * 1000, len(payload) / dt / 1e6))
        st, _, body = self.relay("POST", "/api/cascade/echo", body=b"x" * (768 * 1024 + 1))
        self.assertEqual(st, 413, body)

    # refusals -----------------------------------------------------------------------------------

    def test_deny_bypass_attempts(self):
        before = metric(self.agent, "cascade_relay_requests_total")
        cases = {
            "/api/admin/x": 403,
            "/api//admin/x": 403,
            "/api/./admin/x": 403,
            "/api/%61dmin/x": 403,
            "/api/%2561dmin/x": 403,  # not admin once decoded; refused? see below
            "/flv/../api/admin/x": 403,
            "/flv/%2e%2e/api/admin/x": 403,
            "/api/%2fadmin/x": 400,
            "/api%2fadmin/x": 400,
            "/api/%00/x": 400,
            "/api/x%0d%0aX-Injected:%20yes": 400,
            "/api/%0a": 400,
            "/../../api/admin/x": 400,
            "/api/admin": 403,
            "/API/admin/x": 403,  # not allowed at all: allow is case-sensitive
            "/other": 403,
        }
        for target, want in cases.items():
            st, _, body = self.raw_relay(target)
            if target == "/api/%2561dmin/x":
                # "%25" decodes to a literal "%": the path /api/%61dmin/x is not /api/admin/ and
                # is allowed; the agent answers 404 for it (it decodes once, like the controller).
                self.assertEqual(st, 404, (target, body))
                continue
            self.assertEqual(st, want, (target, body))
            self.assertEqual(body["code"], want, (target, body))
        # nothing refused reached the node (only the %2561 case did)
        self.assertEqual(metric(self.agent, "cascade_relay_requests_total"), before + 1)

    def test_refusal_names_the_rule(self):
        st, _, body = self.raw_relay("/api/admin/x")
        self.assertIn("cascadeserver.relayapi.deny rule '/api/admin/'", body["message"])
        st, _, body = self.raw_relay("/api/%2fadmin")
        self.assertIn("invalid relay path", body["message"])

    def test_node_rule_denies(self):
        st, _, body = self.relay("GET", "/api/private/x")
        self.assertEqual(st, 403, body)
        self.assertIn("cascadeclient.relayapi.deny rule '/api/private/'", body["message"])

    def test_unknown_and_offline_nodes(self):
        st, _, body = self.ctl.api("GET", "/api/relay/999999/api/stream/list")
        self.assertEqual((st, body["message"]), (404, "no node with id 999999"))
        st, _, body = self.ctl.api("GET", "/api/relay/0/api/stream/list")
        self.assertEqual(st, 400)
        node = harness.envelope_ok(self, self.ctl.api("POST", "/api/cascade/clients",
                                                      {"name": "never-online",
                                                       "secret": "never-online-secret"}), 201)
        st, _, body = self.ctl.api("GET", "/api/relay/%d/api/stream/list" % node["id"])
        self.assertEqual(st, 502, body)
        self.assertIn("offline", body["message"])
        st, _, body = self.ctl.request("GET", "/api/relay/%d/api/stream/list" % self.node)
        self.assertEqual(st, 401)

    def test_viewer_get_only(self):
        tok = harness.envelope_ok(self, self.ctl.api("POST", "/api/auth/tokens",
                                                     {"name": "v", "role": "viewer"}), 201)["token"]
        st, _, body = self.relay("GET", "/api/stream/list", token=tok)
        self.assertEqual(st, 200, body)
        st, _, body = self.relay("POST", "/api/cascade/echo", body="x", token=tok)
        self.assertEqual(st, 403, body)
        # the caller's token never reaches the node
        st, _, body = self.relay("GET", "/api/cascade/echo")
        self.assertEqual(st, 200)

    # streaming ------------------------------------------------------------------------------------

    @unittest.skipUnless(FFMPEG, "ffmpeg not installed")
    def test_flv_streaming_and_cancel(self):
        pub = subprocess.Popen([FFMPEG, "-v", "error", "-re", "-f", "lavfi", "-i",
                                "testsrc=size=320x240:rate=25", "-f", "lavfi", "-i",
                                "sine=frequency=440:sample_rate=44100", "-t", "60",
                                "-c:v", "libx264", "-preset", "ultrafast", "-g", "25",
                                "-pix_fmt", "yuv420p", "-c:a", "aac", "-f", "flv",
                                self.agent.rtmp_url("live/x")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            harness.wait_for(lambda: any(s["path"] == "live/x" and s["state"] == "publishing"
                                         for s in self.agent.admin_request("GET", "/api/stream/list")[2]["data"]),
                             20, what="stream published")
            s = socket.create_connection((self.ctl.host, self.ctl.port), timeout=10)
            s.sendall(("GET /api/relay/%d/flv/live/x.flv HTTP/1.1\r\nHost: x\r\n"
                       "Authorization: Bearer %s\r\n\r\n" % (self.node, self.ctl.admin_token)).encode())
            data = b""
            t0 = time.monotonic()
            while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < 200000:
                chunk = s.recv(65536)
                self.assertTrue(chunk, "relay closed early: %r" % data[:300])
                data += chunk
                self.assertLess(time.monotonic() - t0, 20, "too slow")
            head, body = data.split(b"\r\n\r\n", 1)
            self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
            self.assertIn(b"video/x-flv", head)
            self.assertIn(b"chunked", head.lower())
            # de-chunk the start: the first chunk begins with the FLV header
            size_line, rest = body.split(b"\r\n", 1)
            self.assertEqual(rest[:3], b"FLV", rest[:16])
            self.assertEqual(metric(self.agent, 'cascade_subscribers{protocol="httpflv"}'), 1)
            dt = time.monotonic() - t0
            print("\nrelay HTTP-FLV: %d bytes in %.2f s (the stream runs in real time; the GOP "
                  "cache comes at once)" % (len(body), dt))
            s.close()
            harness.wait_for(lambda: metric(self.agent, 'cascade_subscribers{protocol="httpflv"}') == 0,
                             15, what="the agent's subscriber to go away")
            harness.wait_for(lambda: metric(self.agent, "cascade_relay_active") == 0, 15,
                             what="the agent's relay to end")
        finally:
            pub.kill()
            pub.wait()

    # requests the node would refuse ---------------------------------------------------------------

    def bad_relays(self):
        """(status, raw request) pairs: each is over a bound the agent checks; the controller must
        refuse it itself instead of passing it on (the agent once refused the whole control
        message and reconnected, failing every relay in flight)."""
        auth = "Authorization: Bearer %s\r\n" % self.ctl.admin_token
        def req(method="GET", target="/api/cascade/echo", extra=""):
            return ("%s /api/relay/%d%s HTTP/1.1\r\nHost: x\r\n%s%sConnection: close\r\n\r\n"
                    % (method, self.node, target, auth, extra)).encode("latin-1")
        many = "".join("X-H%d: v\r\n" % i for i in range(64))
        return [
            (400, "once encoded", req(target="/api/cascade/echo/" + "|" * 1400)),
            (400, "once encoded", req(target="/api/" + "{^}" * 460)),
            (400, "once encoded", req(target="/api/" + "\xc3\xa9" * 700)),
            (400, "invalid relay method", req(method="get")),
            (400, "invalid relay method", req(method="M-SEARCH")),
            (400, "invalid relay method", req(method="ABCDEFGHIJKLMNOPQ")),
            (400, "invalid relay method", req(method="Post")),
            (414, "relay query over 4095 bytes", req(target="/api/cascade/echo?" + "q" * 4096)),
            (400, "invalid relay query", req(target="/api/cascade/echo?a#b")),
            (400, "header 'X-Big'", req(extra="X-Big: %s\r\n" % ("v" * 4096))),
            (400, "header name over 255", req(extra="%s: v\r\n" % ("N" * 256))),
            (400, "too many relay request headers", req(extra=many)),
            (400, "header 'X-Bin'", req(extra="X-Bin: caf\xe9\r\n")),
        ]

    def test_bad_requests_never_end_the_session(self):
        before = self.agent.status()["controller"]["connected_since"]
        bad_before = metric(self.agent, "cascade_control_bad_messages_total")
        connects = lambda: sum(1 for e in self.ctl.api(
            "GET", "/api/cascade/events?node=%d&size=100" % self.node)[2]["data"]
            if e["action"] == "node.connect")
        connects_before = connects()
        # relays in flight meanwhile: echoes one after another on a thread
        stop = threading.Event()
        answers = []
        def echo_loop():
            while not stop.is_set():
                st, _, body = self.relay("POST", "/api/cascade/echo", body="x" * 200000,
                                         headers={"Content-Type": "text/plain"})
                answers.append((st, body if st != 200 else None))
        t = threading.Thread(target=echo_loop)
        t.start()
        try:
            cases = self.bad_relays()
            for i in range(20):
                want, text, raw = cases[i % len(cases)]
                st, _, body = harness.raw_request(self.ctl.host, self.ctl.port, raw)
                self.assertEqual(st, want, (raw[:80], body))
                self.assertIn(text, body["message"], raw[:80])
            # the rest of the cases too, and the valid edges still go through
            for want, text, raw in cases[20 % len(cases):]:
                st, _, body = harness.raw_request(self.ctl.host, self.ctl.port, raw)
                self.assertEqual(st, want, (raw[:80], body))
            st, _, body = self.relay("GET", "/api/cascade/echo/" + "|" * 1350)
            self.assertEqual(st, 404, body)  # reached the node: no such route
            st, _, body = self.relay("ABCDEFGHIJKLMNOP", "/api/cascade/echo")
            self.assertEqual((st, body["data"]["method"]), (200, "ABCDEFGHIJKLMNOP"))
            harness.wait_for(lambda: len(answers) >= 3, 20, what="echo relays meanwhile")
        finally:
            stop.set()
            t.join(30)
        self.assertTrue(answers)
        self.assertEqual([a for a in answers if a[0] != 200], [])
        st = self.agent.status()["controller"]
        self.assertEqual((st["state"], st["connected_since"]), ("running", before), st)
        self.assertEqual(metric(self.agent, "cascade_control_bad_messages_total"), bad_before)
        self.assertEqual(connects(), connects_before)
        self.assertNotRegex(self.agent.log_text(), r"bad message from the controller")

    @unittest.skipUnless(FFMPEG, "ffmpeg not installed")
    def test_zy_bad_requests_leave_a_streamed_relay_running(self):
        pub = subprocess.Popen([FFMPEG, "-v", "error", "-re", "-f", "lavfi", "-i",
                                "testsrc=size=160x120:rate=25", "-t", "60",
                                "-c:v", "libx264", "-preset", "ultrafast", "-g", "25",
                                "-pix_fmt", "yuv420p", "-f", "flv", self.agent.rtmp_url("live/bad")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        s = None
        try:
            harness.wait_for(lambda: any(x["path"] == "live/bad" and x["state"] == "publishing"
                                         for x in self.agent.admin_request("GET", "/api/stream/list")[2]["data"]),
                             20, what="stream published")
            s = socket.create_connection((self.ctl.host, self.ctl.port), timeout=10)
            s.sendall(("GET /api/relay/%d/flv/live/bad.flv HTTP/1.1\r\nHost: x\r\n"
                       "Authorization: Bearer %s\r\n\r\n" % (self.node, self.ctl.admin_token)).encode())
            def read_until(total, data):
                deadline = time.monotonic() + 20
                while len(data) < total:
                    self.assertLess(time.monotonic(), deadline, "relayed stream stalled")
                    chunk = s.recv(65536)
                    self.assertTrue(chunk, "relayed stream cut: %r" % data[:200])
                    data += chunk
                return data
            data = read_until(20000, b"")
            self.assertTrue(data.startswith(b"HTTP/1.1 200"), data[:100])
            cases = self.bad_relays()
            for i in range(20):
                want, _, raw = cases[i % len(cases)]
                st, _, body = harness.raw_request(self.ctl.host, self.ctl.port, raw)
                self.assertEqual(st, want, body)
            # the stream keeps coming after the bad requests
            read_until(len(data) + 20000, data)
            s.close()
            s = None
            harness.wait_for(lambda: metric(self.agent, 'cascade_subscribers{protocol="httpflv"}') == 0,
                             15, what="the agent's subscriber to go away")
        finally:
            if s:
                s.close()
            pub.kill()
            pub.wait()

    # a hung agent --------------------------------------------------------------------------------

    def test_zz_hung_agent_504(self):
        b = harness.Agent(self.ctl, "relay-hung", "relay-hung-secret", config=AGENT_CONFIG)
        try:
            node = harness.wait_for(lambda: b.status().get("instance_id"), 20,
                                    what="second agent authenticated")
            harness.wait_for(lambda: b.status()["config_generation"]["applied"] > 0, 20,
                             what="second agent configured")
            st, _, _ = self.ctl.api("GET", "/api/relay/%d/api/stream/list" % node)
            self.assertEqual(st, 200)
            os.kill(b.proc.pid, signal.SIGSTOP)
            try:
                t = time.monotonic()
                st, _, body = self.ctl.api("GET", "/api/relay/%d/api/stream/list" % node)
                dt = time.monotonic() - t
            finally:
                os.kill(b.proc.pid, signal.SIGCONT)
            self.assertEqual(st, 504, body)
            self.assertIn("did not answer", body["message"])
            self.assertGreaterEqual(dt, TIMEOUT_S - 0.05)
            self.assertLess(dt, TIMEOUT_S + 1.0)
        finally:
            b.stop(expected_errors=AGENT_ERRORS + [r"(?i)lost|no answer|session"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
