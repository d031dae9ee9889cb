#!/usr/bin/env python3
"""CORS on the REST API (docs/api.md, "CORS"): http.cors.origins lets the listed browser origins
read the API's answers.

Checked against a real controller and agent: an answer to a listed origin carries
Access-Control-Allow-Origin (that origin), Vary: Origin and Access-Control-Expose-Headers, never
Access-Control-Allow-Credentials; another origin gets none of them; a preflight from a listed
origin is answered 204 without a token (methods, the headers Authorization, Content-Type and
Last-Event-ID, a max age), on any path, the API relay's included, and refused 403 without CORS
headers for another origin; errors (401, 404, the relay's 502) carry the header so a browser
can read them; the relay's answers carry it too; the live feed's stream too; "*" answers "*"; a
controller without the key sends no CORS header at all; a malformed origin stops the controller
at start naming the key."""

import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from feedclient import FeedReader  # noqa: E402

ALLOWED = "https://console.example.com"
ALLOWED2 = "http://127.0.0.1:9999"
OTHER = "https://evil.example.net"
CTL_CONFIG = {
    "http": {"cors": {"origins": [ALLOWED, ALLOWED2]}},
    "control": {"heartbeat": 1000, "polltimeout": 5000},
    "cascadeserver": {"relayapi": {"allow": ["/api/"]}},
}
AGENT_CONFIG = {"cascadeclient": {"relayapi": {"allow": ["/api/"]}}}
CORS_HEADERS = ("Access-Control-Allow-Origin", "Access-Control-Allow-Methods",
                "Access-Control-Allow-Headers", "Access-Control-Expose-Headers",
                "Access-Control-Max-Age", "Access-Control-Allow-Credentials")


def preflight(ctl, path, origin, method="GET", headers="authorization"):
    return ctl.request("OPTIONS", path, headers={"Origin": origin,
                                                 "Access-Control-Request-Method": method,
                                                 "Access-Control-Request-Headers": headers})


class CorsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.require_controller()
        cls.pg = harness.shared_cluster()
        cls.db = cls.pg.create_database()
        cls.ctl = harness.Controller(cls.pg.dsn(cls.db), config=CTL_CONFIG)
        cls.agent = harness.Agent(cls.ctl, "cors-a", "cors-a-secret", config=AGENT_CONFIG)
        cls.node = harness.wait_for(lambda: cls.agent.status().get("instance_id"), 20,
                                    what="agent authenticated")

    @classmethod
    def tearDownClass(cls):
        cls.agent.stop(expected_errors=[r"(?i)authentication failed"])
        cls.ctl.stop()
        cls.pg.drop_database(cls.db)

    def assert_allowed(self, h, origin=ALLOWED):
        self.assertEqual(h.get("Access-Control-Allow-Origin"), origin)
        self.assertIn("Origin", h.get("Vary", ""))
        self.assertIn("WWW-Authenticate", h.get("Access-Control-Expose-Headers", ""))
        self.assertIsNone(h.get("Access-Control-Allow-Credentials"))

    def assert_no_cors(self, h):
        for k in CORS_HEADERS:
            self.assertIsNone(h.get(k), "%s: %s" % (k, h.get(k)))

    def test_allowed_origin(self):
        for origin in (ALLOWED, ALLOWED2):
            st, h, body = self.ctl.api("GET", "/api/cascade/clients", headers={"Origin": origin})
            harness.envelope_ok(self, (st, h, body))
            self.assert_allowed(h, origin)

    def test_other_origin(self):
        # served (a browser would not let the page read it), without CORS headers
        for origin in (OTHER, ALLOWED + "/", ALLOWED.upper(), "null"):
            st, h, _ = self.ctl.api("GET", "/api/cascade/clients", headers={"Origin": origin})
            self.assertEqual(st, 200)
            self.assert_no_cors(h)
            self.assertIn("Origin", h.get("Vary", ""))
        st, h, _ = self.ctl.api("GET", "/api/cascade/clients")
        self.assert_no_cors(h)

    def test_preflight_without_token(self):
        for path in ("/api/cascade/clients", "/api/cascade/clients/7", "/api/feed",
                     "/api/auth/tokens"):
            st, h, body = preflight(self.ctl, path, ALLOWED, "POST", "authorization,content-type")
            self.assertEqual(st, 204, body)
            self.assertEqual(body, "")
            self.assert_allowed(h)
            for m in ("GET", "POST", "PUT", "DELETE"):
                self.assertIn(m, h.get("Access-Control-Allow-Methods", ""))
            allow_h = h.get("Access-Control-Allow-Headers", "").lower()
            for name in ("authorization", "content-type", "last-event-id"):
                self.assertIn(name, allow_h)
            self.assertGreater(int(h.get("Access-Control-Max-Age", "0")), 0)

    def test_preflight_other_origin_refused(self):
        st, h, body = preflight(self.ctl, "/api/cascade/clients", OTHER)
        harness.envelope_err(self, (st, h, body), 403)
        self.assert_no_cors(h)

    def test_preflight_unknown_path(self):
        st, h, _ = preflight(self.ctl, "/api/no/such/route", ALLOWED)
        self.assertEqual(st, 204)
        self.assert_allowed(h)
        st, h, _ = preflight(self.ctl, "/nothing-here", OTHER)
        self.assertEqual(st, 403)
        self.assert_no_cors(h)
        # the request itself: authenticated first, then 404 readable by the page
        st, h, body = self.ctl.api("GET", "/api/no/such/route", headers={"Origin": ALLOWED})
        harness.envelope_err(self, (st, h, body), 404)
        self.assert_allowed(h)
        # an OPTIONS that is no preflight is an ordinary request: a token is needed
        st, h, body = self.ctl.request("OPTIONS", "/api/cascade/clients",
                                       headers={"Origin": ALLOWED})
        harness.envelope_err(self, (st, h, body), 401)
        self.assert_allowed(h)

    def test_errors_readable(self):
        st, h, body = self.ctl.request("GET", "/api/cascade/clients", headers={"Origin": ALLOWED})
        harness.envelope_err(self, (st, h, body), 401)
        self.assert_allowed(h)
        self.assertTrue(h.get("WWW-Authenticate"))
        st, h, body = self.ctl.request("GET", "/api/cascade/clients",
                                       headers={"Origin": ALLOWED, "Authorization": "Bearer x"})
        harness.envelope_err(self, (st, h, body), 401)
        self.assert_allowed(h)
        st, h, body = self.ctl.api("DELETE", "/api/cascade/topology", headers={"Origin": ALLOWED})
        harness.envelope_err(self, (st, h, body), 405)
        self.assert_allowed(h)

    def test_relay(self):
        path = "/api/relay/%d/api/stream/list" % self.node
        st, h, _ = preflight(self.ctl, path, ALLOWED)
        self.assertEqual(st, 204)
        self.assert_allowed(h)
        st, h, body = harness.wait_for(
            lambda: (lambda r: r if r[0] == 200 else None)(
                self.ctl.api("GET", path, headers={"Origin": ALLOWED})), 20,
            what="the relayed stream list")
        self.assertEqual(body["code"], 0)
        self.assert_allowed(h)
        self.assertEqual(len(h.get_all("Access-Control-Allow-Origin")), 1)
        st, h, _ = self.ctl.api("GET", path, headers={"Origin": OTHER})
        self.assertEqual(st, 200)
        self.assert_no_cors(h)
        # a relay error (unknown node) is readable too
        st, h, body = self.ctl.api("GET", "/api/relay/999999/api/stream/list",
                                   headers={"Origin": ALLOWED})
        self.assertGreaterEqual(st, 400)
        self.assert_allowed(h)

    def test_feed_stream(self):
        f = FeedReader(self.ctl)
        try:
            self.assertEqual(f.status, 200)
            self.assertIsNone(f.headers.get("Access-Control-Allow-Origin"))
        finally:
            f.close()
        # with an Origin header: FeedReader sends none, so a raw request
        req = ("GET /api/feed HTTP/1.1\r\nHost: x\r\nOrigin: %s\r\nAuthorization: Bearer %s\r\n"
               "Connection: close\r\n\r\n" % (ALLOWED, self.ctl.admin_token)).encode()
        import socket
        s = socket.create_connection((self.ctl.host, self.ctl.port), timeout=10)
        try:
            s.sendall(req)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = s.recv(4096)
                if not chunk:
                    break
                head += chunk
        finally:
            s.close()
        text = head.decode("latin-1")
        self.assertIn("200", text.split("\r\n")[0])
        self.assertIn("access-control-allow-origin: %s" % ALLOWED, text.lower())
        self.assertIn("text/event-stream", text)


class CorsVariantsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.require_controller()
        cls.pg = harness.shared_cluster()

    def setUp(self):
        self.db = self.pg.create_database()
        self.ctl = None

    def tearDown(self):
        if self.ctl is not None:
            self.ctl.stop()
        self.pg.drop_database(self.db)

    def test_none_configured(self):
        self.ctl = harness.Controller(self.pg.dsn(self.db), config={"control": {"listenaddr": ""}})
        st, h, _ = self.ctl.api("GET", "/api/cascade/clients", headers={"Origin": ALLOWED})
        self.assertEqual(st, 200)
        for k in CORS_HEADERS + ("Vary",):
            self.assertIsNone(h.get(k), k)
        st, h, _ = preflight(self.ctl, "/api/cascade/clients", ALLOWED)
        self.assertEqual(st, 403)
        for k in CORS_HEADERS + ("Vary",):
            self.assertIsNone(h.get(k), k)

    def test_star(self):
        self.ctl = harness.Controller(self.pg.dsn(self.db), config={
            "control": {"listenaddr": ""}, "http": {"cors": {"origins": ["*"]}}})
        st, h, _ = self.ctl.api("GET", "/api/cascade/clients", headers={"Origin": OTHER})
        self.assertEqual(st, 200)
        self.assertEqual(h.get("Access-Control-Allow-Origin"), "*")
        self.assertIsNone(h.get("Access-Control-Allow-Credentials"))
        st, h, _ = preflight(self.ctl, "/api/feed", OTHER)
        self.assertEqual(st, 204)
        self.assertEqual(h.get("Access-Control-Allow-Origin"), "*")

    def test_bad_origin_refused_at_start(self):
        for bad in ("https://console.example.com/", "console.example.com", "ftp://x",
                    "https://Console.example.com", "https://x:0", "https://x/path"):
            with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
                f.write("database:\n  dsn: %s\nhttp:\n  cors:\n    origins: [\"%s\"]\n"
                        % (self.pg.dsn(self.db), bad))
            try:
                rc, out, err = harness.run_controller(["-c", f.name, "--check"])
            finally:
                os.unlink(f.name)
            self.assertEqual(rc, 2, (bad, out, err))
            self.assertIn("http.cors.origins", err, bad)


if __name__ == "__main__":
    unittest.main()
