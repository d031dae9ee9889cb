#!/usr/bin/env python3
"""Stream authorization at the edges (docs/media.md, "Authorization"; docs/api.md, "Stream
authorization"). A real controller and four real agents, every one with auth.publish and
auth.play left to the controller, real ffmpeg/ffprobe:

    hq
    |- region
       |- edgea
       |- edgeb

- Before any key exists the deployment's default policy (a token for everything) refuses
  every publish; a key is made over the REST API and reaches the agents with their
  configuration.
- RTMP publish, RTMP play and HTTP-FLV play, each: no token (401 / BadName / Play.Failed),
  expired, tampered, for another path, bound to another address (127.0.0.2, while the client
  comes from 127.0.0.1), a play token used to publish: refused; good tokens (bound to
  127.0.0.1, or not bound): admitted.
- Rotation: both keys work while two are valid; a third key rotates the first out and its
  tokens stop working.
- A squatter without a token cannot claim a path at edgea while the real publisher (with a
  token) at edgeb reaches hq; a player at edgea with a play token gets it through region (the
  pull inside the cascade is not checked); the controller's API relay plays it with no token.
- The refusal log line names the client address and never carries the token.
- The policy: a pattern opened (none) for playing is played without a token; a node's own
  rules come before the deployment's."""

import base64
import hashlib
import hmac
import os
import socket
import struct
import subprocess
import tempfile
import time
import unittest
import urllib.error
import urllib.request

import harness
from test_media import FFMPEG, FFPROBE, make_media

CTL_CONFIG = {"control": {"heartbeat": 500, "polltimeout": 3000},
              "cascadeserver": {"relayapi": {"allow": ["/api/", "/flv/"]}}}
NODE_CONFIG = {
    "quic": {"idletimeout": "2s", "keepalive": "200ms", "handshaketimeout": "1s"},
    "cascadeclient": {"reconnectmax": "500ms", "autopush": True,
                      "onsub": {"pull": {".*": "m7s://$0"}},
                      "relayapi": {"allow": ["/api/", "/flv/"]}},
    "subscribe": {"waittimeout": "3s"},
    "publish": {"delayclosetimeout": "1s"},
    "auth": {"publish": "controller", "play": "controller"},
}
AGENT_ERRORS = [r"(?i)authentication failed"]


def mint(key_id, key, action, path, expires, addr=None):
    """A token made as common/streamtoken.c makes it (the format of docs/media.md)."""
    raw = struct.pack(">BBBIQ", 1, 1 if action == "publish" else 2, 1 if addr else 0, key_id,
                      expires)
    msg = b"cascade stream token v1\0" + raw + struct.pack(">H", len(path)) + path.encode()
    if addr:
        msg += struct.pack(">H", len(addr)) + addr.encode()
    mac = hmac.new(key, msg, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(raw + mac).rstrip(b"=").decode()


def b64url_key(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def http_status(url, timeout=15):
    """The HTTP status |url| answers (its first bytes read on 200)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            r.read(13)
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def rtmp_play(url, timeout=20):
    """(ok, stderr) of ffprobe reading |url| over RTMP."""
    try:
        r = subprocess.run([FFPROBE, "-v", "error", "-show_entries", "stream=codec_type", "-of",
                            "csv=p=0", url], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=timeout)
        return r.returncode == 0 and "video" in r.stdout, r.stderr
    except subprocess.TimeoutExpired:
        return False, "timeout"


@unittest.skipUnless(FFMPEG and FFPROBE, "ffmpeg/ffprobe not installed")
class StreamAuthTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.require_controller()
        cls.tmp = tempfile.mkdtemp(prefix="cascade-streamauth-")
        cls.media = os.path.join(cls.tmp, "src.flv")
        make_media(cls.media, seconds=60)
        cls.short = os.path.join(cls.tmp, "short.flv")
        make_media(cls.short, seconds=2)
        cls.pg = harness.shared_cluster()
        cls.db = cls.pg.create_database()
        cls.ctl = harness.Controller(cls.pg.dsn(cls.db), config=CTL_CONFIG)
        cls.agents, cls.procs = {}, []
        cls.ids = harness.start_tree(cls.ctl, (("hq", None), ("region", "hq"), ("edgea", "region"),
                                               ("edgeb", "region")), NODE_CONFIG, cls.agents)
        cls.keys = {}

    @classmethod
    def tearDownClass(cls):
        harness.stop_tree(cls.ctl, cls.agents, cls.procs, AGENT_ERRORS, cls.tmp)

    # helpers ---------------------------------------------------------------------------------

    def api_ok(self, method, path, body=None, status=200):
        return harness.envelope_ok(self, self.ctl.api(method, path, body), status)

    def applied(self):
        """Wait until every agent runs the configuration the controller wants now."""
        harness.wait_applied(self.ctl, self.ids)

    def new_key(self):
        k = self.api_ok("POST", "/api/cascade/streamauth/keys", {}, 201)
        self.keys[k["id"]] = b64url_key(k["key"])
        self.applied()
        return k["id"]

    def token(self, path, action, ttl=600, addr=None):
        body = {"path": path, "action": action, "ttl": ttl}
        if addr:
            body["addr"] = addr
        return self.api_ok("POST", "/api/cascade/streamauth/tokens", body, 201)["token"]

    def publish(self, node, path, token=None, media=None):
        url = self.agents[node].rtmp_url(path) + ("?token=" + token if token else "")
        p = subprocess.Popen([FFMPEG, "-v", "error", "-re", "-i", media or self.media, "-c",
                              "copy", "-f", "flv", url], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        return p

    def refused_publish(self, node, path, token=None):
        """ffmpeg's publish is refused: it exits with an error, and the path never appears."""
        p = self.publish(node, path, token, media=self.short)
        try:
            _, err = p.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            self.fail("publish of %s at %s was not refused" % (path, node))
        self.assertNotEqual(p.returncode, 0, "publish of %s at %s accepted" % (path, node))
        self.assertNotIn(path, self.agents[node].streams())
        return err

    def live(self, node, path, timeout=20):
        harness.wait_for(lambda: self.agents[node].streams().get(path, {}).get("state")
                         == "publishing", timeout, what="%s publishing at %s" % (path, node))

    def flv(self, node, path, token=None):
        return self.agents[node].flv_url(path) + ("?token=" + token if token else "")

    def rtmp(self, node, path, token=None):
        return self.agents[node].rtmp_url(path) + ("?token=" + token if token else "")

    # tests -----------------------------------------------------------------------------------

    def test_1_no_key_refuses_then_tokens_decide(self):
        # the default policy: a token for everything; no key yet, so nothing verifies
        pol = self.api_ok("GET", "/api/cascade/streamauth")
        self.assertEqual(pol["policy"], [{"pattern": ".*", "publish": "token", "play": "token"}])
        self.assertEqual(pol["keys"], [])
        self.refused_publish("edgea", "live/nokey")
        k1 = self.new_key()
        got = self.api_ok("GET", "/api/cascade/streamauth")
        self.assertEqual([k["id"] for k in got["keys"]], [k1])
        auth = self.agents["edgea"].status()["auth"]
        self.assertEqual(auth, {"publish": "controller", "play": "controller", "policy": True,
                                "rules": 1, "key_ids": [k1], "hooks": []})
        self.assertNotIn("key", got["keys"][0])  # never shown again

        path = "live/cam1"
        now = int(time.time())
        key = self.keys[k1]
        bad = {
            "none": None,
            "expired": mint(k1, key, "publish", path, now - 100),
            "tampered": mint(k1, key, "publish", path, now + 600)[:-3] + "AAA",
            "other path": mint(k1, key, "publish", "live/cam2", now + 600),
            "other address": self.token(path, "publish", addr="127.0.0.2"),
            "play token": self.token(path, "play"),
            "unknown key": mint(k1 + 1000, key, "publish", path, now + 600),
        }
        edgea = self.agents["edgea"]
        for why, tok in bad.items():
            with self.subTest(refused=why):
                self.refused_publish("edgea", path, tok)
        # the refusal lines: the client's address, never a token
        log = edgea.log_text()
        self.assertRegex(log, r"\[rtmp 127\.0\.0\.1:\d+\] publish live/cam1 refused: 401 token "
                              r"required")
        self.assertRegex(log, r"publish live/cam1 refused: 401 token expired")
        self.assertRegex(log, r"publish live/cam1 refused: 403 token not valid for this action")
        for tok in bad.values():
            if tok:
                self.assertNotIn(tok, log)
                self.assertNotIn(tok[:20], log)

        # admitted: a token bound to the client's address (127.0.0.1)
        self.publish("edgea", path, self.token(path, "publish", addr="127.0.0.1"))
        self.live("edgea", path)
        self.live("hq", path)  # pushed up: the cascade's own links are not checked

        # players: RTMP and HTTP-FLV, every refusal, then admitted
        play_bad = {
            "none": (None, 401),
            "expired": (mint(k1, key, "play", path, now - 100), 401),
            "tampered": (mint(k1, key, "play", path, now + 600)[:-3] + "AAA", 403),
            "other path": (mint(k1, key, "play", "live/cam2", now + 600), 403),
            "other address": (mint(k1, key, "play", path, now + 600, "127.0.0.2"), 403),
            "publish token": (mint(k1, key, "publish", path, now + 600), 403),
        }
        for why, (tok, status) in play_bad.items():
            with self.subTest(flv_refused=why):
                self.assertEqual(http_status(self.flv("edgea", path, tok)), status)
            with self.subTest(rtmp_refused=why):
                ok, err = rtmp_play(self.rtmp("edgea", path, tok))
                self.assertFalse(ok, err)
        log = edgea.log_text()
        self.assertRegex(log, r"\[127\.0\.0\.1:\d+\] play live/cam1 refused: 401 token required")
        self.assertRegex(log, r"\[rtmp 127\.0\.0\.1:\d+\] play live/cam1 refused: 403")
        for tok, _ in play_bad.values():
            if tok:
                self.assertNotIn(tok, log)
        st, _, metrics = edgea.admin_request("GET", "/metrics", timeout=5)
        self.assertRegex(metrics, r'cascade_auth_refused_total\{protocol="httpflv"\} [1-9]')
        self.assertRegex(metrics, r'cascade_auth_refused_total\{protocol="rtmp"\} [1-9]')
        good = self.token(path, "play")
        self.assertEqual(http_status(self.flv("edgea", path, good)), 200)
        ok, err = rtmp_play(self.rtmp("edgea", path, good))
        self.assertTrue(ok, err)
        bound = mint(k1, key, "play", path, now + 600, "127.0.0.1")
        self.assertEqual(http_status(self.flv("edgea", path, bound)), 200)

        # rotation: k2 signs, k1 still valid; k3 rotates k1 out
        t1 = self.token(path, "play")
        k2 = self.new_key()
        t2 = self.token(path, "play")
        self.assertNotEqual(t1[:10], t2[:10])
        self.assertEqual(http_status(self.flv("edgea", path, t1)), 200)
        self.assertEqual(http_status(self.flv("edgea", path, t2)), 200)
        k3 = self.new_key()
        keys = [k["id"] for k in self.api_ok("GET", "/api/cascade/streamauth")["keys"]]
        self.assertEqual(keys, [k3, k2])
        self.assertEqual(http_status(self.flv("edgea", path, t1)), 403)
        self.assertEqual(http_status(self.flv("edgea", path, t2)), 200)
        self.assertEqual(http_status(self.flv("edgea", path, self.token(path, "play"))), 200)
        # deleting a key: its tokens stop at once
        self.api_ok("DELETE", "/api/cascade/streamauth/keys/%d" % k2)
        self.applied()
        self.assertEqual(http_status(self.flv("edgea", path, t2)), 403)
        harness.envelope_err(self, self.ctl.api("DELETE", "/api/cascade/streamauth/keys/%d" % k2),
                             404)

    def test_2_squatter_cannot_claim(self):
        if not self.keys:
            self.new_key()
        path = "live/real"
        # the squatter first, at edgea, without a token: nothing is claimed anywhere
        self.refused_publish("edgea", path)
        for n in ("edgea", "region", "hq"):
            self.assertNotIn(path, self.agents[n].streams())
        # the real publisher at edgeb reaches hq
        self.publish("edgeb", path, self.token(path, "publish"))
        self.live("edgeb", path)
        self.live("hq", path)
        # a player at edgea with a play token: pulled through region (not checked there)
        self.assertEqual(http_status(self.flv("edgea", path, self.token(path, "play"))), 200)
        # a play token minted for edgea's player is not needed at region by the pull, but a
        # player at region without one is refused: the check is at the node the player asks
        self.assertEqual(http_status(self.flv("region", path)), 401)
        # the controller's API relay reaches the admin listener: no player check
        s = socket.create_connection((self.ctl.host, self.ctl.port), timeout=10)
        try:
            s.sendall(("GET /api/relay/%d/flv/%s.flv HTTP/1.1\r\nHost: x\r\n"
                       "Authorization: Bearer %s\r\n\r\n" % (self.ids["edgea"], path,
                                                             self.ctl.admin_token)).encode())
            data = b""
            t0 = time.monotonic()
            while b"\r\n\r\n" not in data or b"FLV" not in data.split(b"\r\n\r\n", 1)[1]:
                chunk = s.recv(65536)
                self.assertTrue(chunk, "relay closed early: %r" % data[:300])
                data += chunk
                self.assertLess(time.monotonic() - t0, 20, "relay too slow")
            self.assertTrue(data.startswith(b"HTTP/1.1 200"), data[:200])
        finally:
            s.close()

    def test_3_policy_and_node_rules(self):
        if not self.keys:
            self.new_key()
        path = "open/cam"
        self.publish("edgeb", path, self.token(path, "publish"))
        self.live("edgeb", path)
        self.assertEqual(http_status(self.flv("edgeb", path)), 401)
        # a node's own rules come first: edgeb opens playing open/..., edgea does not
        node = self.api_ok("PUT", "/api/cascade/clients/%d" % self.ids["edgeb"], {"streamauth": [
            {"pattern": "open/.*", "publish": "token", "play": "none"}]})
        self.assertEqual(node["streamauth"][0]["play"], "none")
        self.applied()
        self.assertEqual(http_status(self.flv("edgeb", path)), 200)
        self.assertEqual(http_status(self.flv("edgea", path, self.token(path, "play"))), 200)
        harness.envelope_err(self, self.ctl.api("PUT", "/api/cascade/clients/%d" % self.ids["edgeb"],
                                                {"streamauth": [{"pattern": "(", "publish": "none",
                                                                 "play": "none"}]}), 400)
        harness.envelope_err(self, self.ctl.api("PUT", "/api/cascade/clients/%d" % self.ids["edgeb"],
                                                {"streamauth": {"pattern": "x"}}), 400)
        self.api_ok("PUT", "/api/cascade/clients/%d" % self.ids["edgeb"], {"streamauth": None})
        self.applied()
        self.assertEqual(http_status(self.flv("edgeb", path)), 401)
        # the deployment opens playing open/...
        self.api_ok("PUT", "/api/cascade/streamauth", {"policy": [
            {"pattern": "open/.*", "publish": "token", "play": "none"},
            {"pattern": ".*", "publish": "token", "play": "token"}]})
        self.applied()
        self.assertEqual(http_status(self.flv("edgeb", path)), 200)
        ok, err = rtmp_play(self.rtmp("edgeb", path))
        self.assertTrue(ok, err)
        # hook mode with no hook URL set: refused (agent/hooks.h: "no hook configured")
        self.api_ok("PUT", "/api/cascade/streamauth", {"policy": [
            {"pattern": "open/.*", "publish": "token", "play": "hook"},
            {"pattern": ".*", "publish": "token", "play": "token"}]})
        self.applied()
        self.assertEqual(http_status(self.flv("edgeb", path)), 403)
        self.assertIn("play open/cam refused: 403 no hook configured", self.agents["edgeb"].log_text())
        self.api_ok("PUT", "/api/cascade/streamauth", {"policy": [
            {"pattern": "open/.*", "publish": "token", "play": "none"},
            {"pattern": ".*", "publish": "token", "play": "token"}]})
        self.applied()
        # bad requests change nothing
        before = self.api_ok("GET", "/api/cascade/streamauth")
        for body in ({"policy": [{"pattern": "(", "publish": "none", "play": "none"}]},
                     {"policy": [{"pattern": "x", "publish": "open", "play": "none"}]},
                     {"hooks": {"on_play": "ftp://x"}},
                     {"hooks": {"timeout_ms": 0}},
                     {}):
            harness.envelope_err(self, self.ctl.api("PUT", "/api/cascade/streamauth", body), 400)
        for body in ({"path": "live/x", "action": "play", "ttl": 5},
                     {"path": "live/x", "action": "play", "ttl": 10 ** 9},
                     {"path": "/live/x", "action": "play"},
                     {"path": "live/x", "action": "read"},
                     {"path": "live/x", "action": "play", "addr": "nohost"}):
            harness.envelope_err(self, self.ctl.api("POST", "/api/cascade/streamauth/tokens",
                                                    body), 400)
        self.assertEqual(self.api_ok("GET", "/api/cascade/streamauth"), before)
        # a viewer reads, an admin writes
        v = self.api_ok("POST", "/api/auth/tokens", {"name": "viewer1", "role": "viewer"}, 201)
        st, _, _ = self.ctl.api("GET", "/api/cascade/streamauth", token=v["token"])
        self.assertEqual(st, 200)
        st, _, _ = self.ctl.api("POST", "/api/cascade/streamauth/keys", {}, token=v["token"])
        self.assertEqual(st, 403)
        st, _, _ = self.ctl.api("POST", "/api/cascade/streamauth/tokens",
                                {"path": "a/b", "action": "play"}, token=v["token"])
        self.assertEqual(st, 403)
        # audit trail
        ev = self.api_ok("GET", "/api/cascade/events?size=200")
        actions = {e["action"] for e in (ev if isinstance(ev, list) else ev.get("events", []))}
        self.assertTrue({"streamauth.update", "streamauth.key.create"} <= actions, actions)
        # back to tokens for every path
        self.api_ok("PUT", "/api/cascade/streamauth", {"policy": [
            {"pattern": ".*", "publish": "token", "play": "token"}]})
        self.applied()
        self.assertEqual(http_status(self.flv("edgeb", path)), 401)

    def test_4_pull_credentials_never_shown(self):
        """An outside pull template's credentials (a ?key= query) stay out of the controller's
        node object, the agent's status and its log lines."""
        if not self.keys:
            self.new_key()
        nid = self.ids["edgeb"]
        node = self.api_ok("PUT", "/api/cascade/clients/%d" % nid, {"onsub": {"pull": {
            "ext/.*": "rtmp://127.0.0.1:9/$0?key=s3cretvalue", ".*": "m7s://$0"}}})
        self.assertNotIn("s3cretvalue", str(node))
        self.assertEqual(node["onsub"]["pull"]["ext/.*"], "rtmp://127.0.0.1:9/$0?***")
        self.applied()
        edgeb = self.agents["edgeb"]
        self.assertEqual(http_status(self.flv("edgeb", "ext/x", self.token("ext/x", "play"))), 404)
        harness.wait_for(lambda: "[pull ext/x]" in edgeb.log_text(), 10, what="the pull's log")
        st = edgeb.status()
        self.assertNotIn("s3cretvalue", str(st))
        self.assertNotIn("s3cretvalue", edgeb.log_text())
        self.assertIn("?***", edgeb.log_text())
        self.assertNotIn("s3cretvalue", str(self.api_ok("GET", "/api/cascade/clients/%d" % nid)))
        self.api_ok("PUT", "/api/cascade/clients/%d" % nid, {"onsub": None})
        self.applied()

    def test_5_cached_mode_keeps_authorizing(self):
        """The policy and the keys are in the agent's 0600 state file: an agent that starts
        while no controller answers still admits tokens and refuses the rest."""
        if not self.keys:
            self.new_key()
        path = "live/cached"
        pub, play = self.token(path, "publish"), self.token(path, "play")
        edgeb = self.agents["edgeb"]
        state = os.path.join(edgeb.datadir, "state.json")
        self.assertEqual(os.stat(state).st_mode & 0o777, 0o600)
        with open(state) as f:
            self.assertIn('"streamauth"', f.read())
        self.ctl.stop(check=False)
        edgeb.stop(check=False)  # its log has the lost controller's lines
        edgeb.start()
        harness.wait_for(lambda: edgeb.status()["config_generation"]["cached"], 20,
                         what="edgeb in cached mode")
        self.refused_publish("edgeb", path)
        self.publish("edgeb", path, pub)
        self.live("edgeb", path)
        self.assertEqual(http_status(self.flv("edgeb", path)), 401)
        self.assertEqual(http_status(self.flv("edgeb", path, play)), 200)


if __name__ == "__main__":
    unittest.main(verbosity=2)
