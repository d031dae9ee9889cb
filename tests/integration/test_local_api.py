#!/usr/bin/env python3
"""The node's own API lives on the admin listener only (docs/media.md, "HTTP"; docs/security.md).

On the public HTTP port (http.listenaddr) every local-API route (status, stream list, metrics,
link test, echo) answers 404 with every method and in every spelling, takes no request body, and
cannot start a link test; /healthz answers there. On the admin port (http.adminaddr) every route
works; it is bound to loopback, by default too; a wildcard admin address is warned about at start
and the relay reaches it (and an IPv6 loopback one) through loopback. Through the controller's relay a viewer cannot
start a link test (403 for POST, 405 for the old GET with bytes=), an admin POST starts it (202).
An agent with an empty http.adminaddr has no local API: its public port still serves only the
probe and the relay answers 503. (HTTP-FLV on the public port and through the relay's /flv/ via
the admin listener: test_media.py and test_api_relay.py.)"""

import os
import re
import socket
import unittest

import harness

CLIENTS = "/api/cascade/clients"
CTL_CONFIG = {
    "control": {"heartbeat": 1000, "polltimeout": 5000},
    "cascadeserver": {"relayapi": {"allow": ["/api/", "/flv/"], "deny": ["/api/admin/"]}},
}
AGENT_CONFIG = {
    "cascadeclient": {"relayapi": {"allow": ["/api/", "/flv/"], "deny": ["/api/admin/"]}},
    "quic": {"idletimeout": "2s", "keepalive": "200ms", "handshaketimeout": "1s"},
    "subscribe": {"waittimeout": "1s"},
}
AGENT_ERRORS = [r"(?i)authentication failed"]

ROUTES = ["/api/cascade/status", "/api/stream/list", "/metrics", "/api/cascade/linktest",
          "/api/cascade/echo"]
METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE"]
GiB = 1024 * 1024 * 1024


def spellings(route):
    """The ways to write |route| that a server might take for it."""
    first = route[1]
    out = [route, route + "/", "/" + route, route.replace("/", "//"), route + "?bytes=%d" % GiB,
           route + "/.", "/x/.." + route, "/./" + route[1:], route.upper(),
           route[0] + route[1:].capitalize(),
           "/%%%02X%s" % (ord(first), route[2:]),            # a letter %-encoded
           "/%%%02x%s" % (ord(first), route[2:]),            # lower-case hex
           "/" + route[1:].replace("/", "%2F"),               # the inner slashes %-encoded
           route + "%2F", route + "%2e", route + "%00", route + "%20", route + ";x",
           route + "#x"]
    return out


def raw(host, port, method, target, body=b"", extra=b"", timeout=10):
    """One request written byte for byte; (status, head, body) read to the server's close."""
    req = ("%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" % (method, target)).encode()
    if body:
        req += b"Content-Length: %d\r\n" % len(body)
    req += extra + b"\r\n" + body
    s = socket.create_connection((host, port), timeout=timeout)
    try:
        try:
            s.sendall(req)
        except (BrokenPipeError, ConnectionResetError):
            pass
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    m = re.match(rb"HTTP/1\.1 (\d{3}) ", head)
    if not m:
        raise AssertionError("no HTTP answer to %s %s: %r" % (method, target, data[:200]))
    return int(m.group(1)), head.decode("latin-1"), rest.decode("utf-8", errors="replace")


def listening(pid):
    """The TCP addresses process |pid| listens on, as (ip, port) pairs."""
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        m = re.match(r"socket:\[(\d+)\]", link)
        if m:
            inodes.add(m.group(1))
    out = []
    for fam, path in ((socket.AF_INET, "/proc/net/tcp"), (socket.AF_INET6, "/proc/net/tcp6")):
        with open(path) as f:
            next(f)
            for line in f:
                cols = line.split()
                if cols[3] != "0A" or cols[9] not in inodes:  # 0A: LISTEN
                    continue
                hexip, hexport = cols[1].split(":")
                raw_ip = bytes.fromhex(hexip)
                # /proc writes each 32-bit word in host (little-endian) order
                raw_ip = b"".join(raw_ip[i:i + 4][::-1] for i in range(0, len(raw_ip), 4))
                out.append((socket.inet_ntop(fam, raw_ip), int(hexport, 16)))
    return out


def other_local_address():
    """A non-loopback address of this host, or None."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # no packet is sent
            ip = s.getsockname()[0]
            return None if ip.startswith("127.") else ip
    except OSError:
        return None


def create(ctl, path, body):
    st, _, resp = ctl.api("POST", path, body)
    if st != 201:
        raise AssertionError("POST %s: %d %r" % (path, st, resp))
    return resp["data"]



class LocalApiTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.require_controller()
        cls.pg = harness.shared_cluster()
        cls.db = cls.pg.create_database()
        cls.ctl = harness.Controller(cls.pg.dsn(cls.db), config=CTL_CONFIG)
        hq = create(cls.ctl, CLIENTS, {"name": "hq", "secret": "hq-secret-123"})
        edge = create(cls.ctl, CLIENTS, {"name": "edge", "secret": "edge-secret-123",
                                         "parent_id": hq["id"]})
        cls.edge_id = edge["id"]
        cls.hq = harness.Agent(cls.ctl, "hq", "hq-secret-123", config=harness.deep_merge(
            AGENT_CONFIG, {"cascadeserver": {"quic": {"listenaddr": "127.0.0.1:%d"
                                                      % harness.free_udp_port()}}}))
        cls.edge = harness.Agent(cls.ctl, "edge", "edge-secret-123", config=AGENT_CONFIG)
        harness.wait_for(lambda: cls.edge.status()["config_generation"]["applied"] > 0, 20,
                         what="edge configured")
        cls.viewer = create(cls.ctl, "/api/auth/tokens",
                            {"name": "dashboard", "role": "viewer"})["token"]

    @classmethod
    def tearDownClass(cls):
        cls.edge.stop(expected_errors=AGENT_ERRORS)
        cls.hq.stop(expected_errors=AGENT_ERRORS)
        cls.ctl.stop()
        cls.pg.drop_database(cls.db)

    def linktest_state(self):
        st, _, body = self.edge.admin_request("GET", "/api/cascade/linktest")
        self.assertEqual(st, 200, body)
        return body["data"]["state"]

    def relay(self, method, path, token, body=None):
        return self.ctl.request(method, "/api/relay/%d%s" % (self.edge_id, path), token=token,
                                body=body)

    # the public port --------------------------------------------------------------------------

    def test_public_port_has_no_local_api(self):
        a = self.edge
        n = 0
        for route in ROUTES:
            for target in spellings(route):
                for method in METHODS:
                    st, head, body = raw(a.host, a.port, method, target)
                    # %00 is refused by the parser before any routing (400)
                    want = 400 if "%00" in target else 404
                    self.assertEqual(st, want, "%s %s on the public port: %d %s"
                                     % (method, target, st, body[:200]))
                    n += 1
        print("\npublic port: %d requests to local-API routes, every one 404" % n)
        # a body is not even read there, whatever the path
        for route in ROUTES:
            st, _, body = raw(a.host, a.port, "POST", route + "?bytes=%d" % GiB, body=b"x" * 16)
            self.assertEqual(st, 413, body)
        # nothing started
        self.assertEqual(self.linktest_state(), "idle")

    def test_public_port_serves_the_probe(self):
        a = self.edge
        st, _, body = raw(a.host, a.port, "GET", "/healthz")
        self.assertEqual(st, 200, body)
        self.assertIn('"status":"ok"', body)
        st, _, body = raw(a.host, a.port, "HEAD", "/healthz")
        self.assertEqual((st, body), (200, ""))
        st, _, _ = raw(a.host, a.port, "POST", "/healthz")
        self.assertEqual(st, 405)
        # and HTTP-FLV (a path with no publisher waits, then 404 "stream not found")
        st, head, body = raw(a.host, a.port, "HEAD", "/flv/live/none.flv", timeout=30)
        self.assertEqual(st, 404, body)
        st, head, body = raw(a.host, a.port, "OPTIONS", "/flv/live/none.flv")
        self.assertEqual(st, 204, head)

    # the admin port ---------------------------------------------------------------------------

    def test_admin_port_serves_every_route(self):
        a = self.edge
        st, _, body = a.admin_request("GET", "/api/cascade/status")
        self.assertEqual((st, body["data"]["name"]), (200, "edge"))
        st, _, body = a.admin_request("GET", "/api/stream/list")
        self.assertEqual((st, body["code"]), (200, 0))
        st, _, text = a.admin_request("GET", "/metrics")
        self.assertEqual(st, 200)
        self.assertIn("cascade_http_connections", text)
        st, _, body = a.admin_request("PUT", "/api/cascade/echo?x=1", body="abc")
        self.assertEqual((st, body["data"]["method"], body["data"]["body"]),
                                      (200, "PUT", "abc"))
        st, _, body = a.admin_request("GET", "/api/cascade/linktest")
        self.assertEqual(st, 200, body)
        st, _, body = a.admin_request("GET", "/healthz")
        self.assertEqual(st, 200, body)
        # the old way to start a link test is refused on the admin port too
        st, h, body = a.admin_request("GET", "/api/cascade/linktest?bytes=1000")
        self.assertEqual((st, h.get("Allow")), (405, "POST"), body)
        st, h, body = a.admin_request("PUT", "/api/cascade/linktest?bytes=1000")
        self.assertEqual((st, h.get("Allow")), (405, "GET, HEAD, POST"), body)

    def test_admin_port_is_loopback(self):
        for a in (self.edge, self.hq):
            addrs = listening(a.proc.pid)
            admin = [x for x in addrs if x[1] == a.admin_port]
            self.assertEqual(admin, [("127.0.0.1", a.admin_port)], addrs)
        other = other_local_address()
        if other:
            with self.assertRaises(OSError):
                socket.create_connection((other, self.edge.admin_port), timeout=2).close()

    def test_admin_port_default_is_loopback(self):
        # The default, 127.0.0.1:8081, is a fixed port: another program may hold it.
        try:
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the agent does
                s.bind(("127.0.0.1", 8081))
        except OSError:
            self.skipTest("127.0.0.1:8081 is in use here")
        try:
            a = harness.Agent(self.ctl, "defaults", "defaults-secret-1",
                              config={"http": {"adminaddr": harness.DELETE}})
        except harness.ControllerError as e:
            if "http.adminaddr" in str(e) and "in use" in str(e):
                self.skipTest("127.0.0.1:8081 was taken meanwhile")
            raise
        try:
            self.assertEqual((a.admin_host, a.admin_port), ("127.0.0.1", 8081))
            harness.wait_for(lambda: a.status()["controller"]["state"] == "running", 20,
                             what="agent running")
            addrs = listening(a.proc.pid)
            self.assertIn(("127.0.0.1", 8081), addrs)
            self.assertNotIn(("0.0.0.0", 8081), addrs)
            self.assertNotIn(("::", 8081), addrs)
            st, _, _ = raw(a.host, a.port, "GET", "/api/cascade/status")
            self.assertEqual(st, 404)
            self.assertIn("local API http://127.0.0.1:8081", a.log_text())
        finally:
            a.stop(expected_errors=AGENT_ERRORS)

    def test_other_admin_addresses(self):
        """A wildcard admin address is warned about and reached by the relay through loopback;
        an IPv6 loopback one is not warned about and works too."""
        cases = [("wild", "0.0.0.0:%d", True)]
        if socket.has_ipv6 and os.path.exists("/proc/net/if_inet6"):
            cases.append(("six", "[::1]:%d", False))
        for name, addr, warned in cases:
            a = harness.Agent(self.ctl, name, name + "-secret-123", config=harness.deep_merge(
                AGENT_CONFIG, {"http": {"adminaddr": addr % harness.free_port()}}))
            try:
                node = harness.wait_for(lambda: a.status().get("instance_id"), 20,
                                        what="%s authenticated" % name)
                harness.wait_for(lambda: a.status()["config_generation"]["applied"] > 0, 20,
                                 what="%s configured" % name)
                self.assertEqual("is not a loopback address" in a.log_text(), warned, addr)
                st, _, body = self.ctl.api("GET", "/api/relay/%d/api/cascade/status" % node)
                self.assertEqual((st, body["data"]["name"]), (200, name), body)
                st, _, _ = raw(a.host, a.port, "GET", "/api/cascade/status")
                self.assertEqual(st, 404)
            finally:
                a.stop(expected_errors=AGENT_ERRORS)

    # the relay --------------------------------------------------------------------------------

    def test_relay_link_test_needs_admin_post(self):
        harness.wait_for(lambda: any(l["role"] == "parent" and l["state"] == "up"
                                     for l in self.edge.status()["links"]), 20,
                         what="edge -> hq link up")
        path = "/api/cascade/linktest?bytes=%d" % GiB
        # a viewer may read the state
        st, _, body = self.relay("GET", "/api/cascade/linktest", self.viewer)
        self.assertEqual((st, body["data"]["state"]), (200, "idle"), body)
        # and cannot start one, with any method
        st, _, body = self.relay("GET", path, self.viewer)
        self.assertEqual(st, 405, body)
        st, _, body = self.relay("HEAD", path, self.viewer)
        self.assertEqual(st, 405, body)
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            st, _, body = self.relay(method, path, self.viewer)
            self.assertEqual(st, 403, (method, body))
            self.assertIn("admin role required", body["message"])
        self.assertEqual(self.linktest_state(), "idle")
        # an admin GET with bytes= does not start one either: starting is a POST
        st, _, body = self.relay("GET", path, self.ctl.admin_token)
        self.assertEqual(st, 405, body)
        self.assertEqual(self.linktest_state(), "idle")
        # an admin POST does (a small one: the machine is shared)
        n = 4 * 1024 * 1024
        st, _, body = self.relay("POST", "/api/cascade/linktest?bytes=%d" % n,
                                 self.ctl.admin_token)
        self.assertEqual(st, 202, body)
        res = harness.wait_for(lambda: (lambda d: d["state"] != "running" and d)(
            self.relay("GET", "/api/cascade/linktest", self.viewer)[2]["data"]), 60,
            interval=0.1, what="link test done")
        self.assertEqual((res["state"], res["received"]), ("done", n), res)


class NoLocalApiTest(unittest.TestCase):
    """http.adminaddr: "" turns the local API off."""

    def test_no_local_api(self):
        harness.require_controller()
        pg = harness.shared_cluster()
        db = pg.create_database()
        ctl = harness.Controller(pg.dsn(db), config=CTL_CONFIG)
        a = harness.Agent(ctl, "bare", "bare-secret-123",
                          config=harness.deep_merge(AGENT_CONFIG, {"http": {"adminaddr": ""}}))
        try:
            self.assertIsNone(a.admin_port)

            def node():
                d = harness.envelope_ok(self, ctl.api("GET", CLIENTS + "?name=bare"))
                return d and d[0]["online"] and d[0]
            n = harness.wait_for(node, 20, what="agent online")
            # the agent listens on its public port and RTMP only
            ports = sorted(p for _, p in listening(a.proc.pid))
            self.assertEqual(ports, sorted([a.port, a.rtmp_port]))
            st, _, _ = raw(a.host, a.port, "GET", "/api/cascade/status")
            self.assertEqual(st, 404)
            st, _, _ = raw(a.host, a.port, "GET", "/healthz")
            self.assertEqual(st, 200)
            st, _, body = ctl.api("GET", "/api/relay/%d/api/stream/list" % n["id"])
            self.assertEqual(st, 503, body)
            self.assertIn("no local API", body["message"])
            self.assertIn("local API off", a.log_text())
        finally:
            a.stop(expected_errors=AGENT_ERRORS)
            ctl.stop()
            pg.drop_database(db)


if __name__ == "__main__":
    unittest.main(verbosity=2)
