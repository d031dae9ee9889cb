#!/usr/bin/env python3
"""Bearer-token authentication and roles: 401 without or with a wrong token, tokens API
(admin only), viewer read-only, deletion effective at once, no token value in the log."""

import re
import unittest

import harness

CLIENTS = "/api/cascade/clients"
TOKENS = "/api/auth/tokens"


class AuthTest(harness.ControllerTestCase):
    presented = []  # every token value sent to the controller: none may reach the log

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.presented = [cls.ctl.admin_token]

    @classmethod
    def tearDownClass(cls):
        log = cls.ctl.log_text()
        try:
            for tok in cls.presented:
                if tok and tok in log:
                    raise AssertionError("a presented token value appears in the controller log: %r"
                                         % tok[:8])
                if tok and len(tok) > 12 and tok[4:] in log:
                    raise AssertionError("a token value (without prefix) appears in the log")
        finally:
            super().tearDownClass()

    def new_token(self, role, name=None):
        data = self.ok(self.api("POST", TOKENS, {"name": name or ("t-" + role), "role": role}), 201)
        self.presented.append(data["token"])
        return data

    def assert_401(self, resp):
        self.err(resp, 401)
        www = resp[1].get("WWW-Authenticate")
        self.assertTrue(www, "401 without WWW-Authenticate")
        self.assertRegex(www, r"^Bearer\b")

    def test_missing_or_wrong_token_is_401(self):
        node = self.create()
        wrong = "wrong-" + harness.random_suffix(24)
        self.presented += [wrong, self.ctl.admin_token[:-1]]
        paths = [("GET", CLIENTS, None), ("POST", CLIENTS, {"name": "x", "secret": "12345678"}),
                 ("GET", "%s/%d" % (CLIENTS, node["id"]), None),
                 ("PUT", "%s/%d" % (CLIENTS, node["id"]), {"name": "hijack"}),
                 ("DELETE", "%s/%d" % (CLIENTS, node["id"]), None),
                 ("GET", TOKENS, None), ("POST", TOKENS, {"name": "x", "role": "admin"}),
                 ("GET", "/api/no/such/route", None), ("PATCH", CLIENTS, None),
                 ("GET", "%s/abc" % CLIENTS, None)]
        before = self.snapshot()
        for method, path, body in paths:
            with self.subTest(method=method, path=path):
                self.assert_401(self.ctl.request(method, path, body=body))
                self.assert_401(self.ctl.request(method, path, body=body, token=wrong))
                self.assert_401(self.ctl.request(method, path, body=body,
                                                 headers={"Authorization": "Basic YWRtaW46YWRtaW4="}))
                self.assert_401(self.ctl.request(method, path, body=body,
                                                 headers={"Authorization": "Bearer"}))
                self.assert_401(self.ctl.request(method, path, body=body,
                                                 headers={"Authorization": "Bearer "}))
                # the admin token with a suffix or truncated is wrong too
                self.assert_401(self.ctl.request(method, path, body=body,
                                                 token=self.ctl.admin_token + "x"))
                self.assert_401(self.ctl.request(method, path, body=body,
                                                 token=self.ctl.admin_token[:-1]))
        self.assertEqual(self.snapshot(), before)
        # failed attempts are logged at warn with the source address
        harness.wait_for(lambda: re.search(r"(?m)^\S+ warn .*127\.0\.0\.1", self.ctl.log_text()), 5,
                         what="a warn line with the source address of a failed auth")

    def test_open_endpoints_need_no_token(self):
        for path in ("/healthz", "/readyz", "/metrics"):
            with self.subTest(path=path):
                self.assertEqual(self.ctl.request("GET", path)[0], 200)

    def test_admin_token_works_case_insensitive_scheme(self):
        self.assertEqual(self.api("GET", CLIENTS)[0], 200)
        st, _, body = self.ctl.request("GET", CLIENTS,
                                       headers={"Authorization": "bearer " + self.ctl.admin_token})
        self.assertEqual(st, 200, "the auth scheme is case-insensitive (RFC 7235)")

    def test_create_list_delete_tokens(self):
        tok = self.new_token("viewer", "ci")
        for k in ("id", "name", "role", "token", "created_time"):
            self.assertIn(k, tok)
        self.assertEqual((tok["name"], tok["role"]), ("ci", "viewer"))
        self.assertIsInstance(tok["id"], int)
        self.assertTrue(tok["token"].startswith("cas_"), tok["token"][:6])
        self.assertGreaterEqual(len(tok["token"]), 4 + 32)
        self.assertRegex(tok["created_time"], harness.TIME_RE)

        st, _, body = self.api("GET", TOKENS)
        lst = self.ok((st, _, body))
        self.assertIsInstance(lst, list)
        mine = [t for t in lst if t.get("id") == tok["id"]]
        self.assertEqual(len(mine), 1, lst)
        self.assertEqual((mine[0]["name"], mine[0]["role"], mine[0]["created_time"]),
                         ("ci", "viewer", tok["created_time"]))
        for t in lst:
            self.assertNotIn("token", t)
            self.assertEqual([k for k in t if "hash" in k.lower()], [])
        self.assertNotIn(tok["token"], repr(body))
        self.assertNotIn(tok["token"][4:], repr(body))

        # the token works, then is refused at once after deletion
        self.assertEqual(self.ctl.request("GET", CLIENTS, token=tok["token"])[0], 200)
        gone = self.ok(self.api("DELETE", "%s/%d" % (TOKENS, tok["id"])))
        self.assertNotIn(tok["token"], repr(gone))
        self.assert_401(self.ctl.request("GET", CLIENTS, token=tok["token"]))
        self.err(self.api("DELETE", "%s/%d" % (TOKENS, tok["id"])), 404)
        self.assertNotIn(tok["id"], [t["id"] for t in self.ok(self.api("GET", TOKENS))])

    def test_two_tokens_differ(self):
        a = self.new_token("viewer", "same-name")
        b = self.new_token("viewer", "same-name-2")
        self.assertNotEqual(a["token"], b["token"])
        self.assertNotEqual(a["id"], b["id"])

    def test_token_validation(self):
        before = self.ok(self.api("GET", TOKENS))
        for body in ({"name": "x", "role": "root"}, {"name": "x"}, {"role": "admin"},
                     {"name": "", "role": "admin"}, {"name": 5, "role": "admin"},
                     {"name": "x", "role": 1}, {"name": "x", "role": "admin", "extra": 1}, [],
                     {"name": "x" * 65, "role": "viewer"}):
            with self.subTest(body=body):
                self.err(self.api("POST", TOKENS, body), 400)
        self.err(self.api("POST", TOKENS, '{"name": "x",'), 400)
        for raw_id in ("abc", "0", "-1", "99999999999999999999"):
            self.err(self.api("DELETE", "%s/%s" % (TOKENS, raw_id)), 400)
        self.err(self.api("DELETE", "%s/123456" % TOKENS), 404)
        self.assertEqual(self.ok(self.api("GET", TOKENS)), before)

    def test_viewer_role(self):
        viewer = self.new_token("viewer", "viewer")["token"]
        node = self.create()
        path = "%s/%d" % (CLIENTS, node["id"])
        # reads
        st, _, body = self.ctl.request("GET", CLIENTS, token=viewer)
        self.assertEqual(st, 200, body)
        self.assertIn(node["id"], [n["id"] for n in body["data"]])
        self.assertEqual(self.ok(self.ctl.request("GET", path, token=viewer)), node)
        self.assertEqual(self.ctl.request("GET", CLIENTS + "?online=false&name=node", token=viewer)[0],
                         200)
        # writes and the tokens API
        before = self.snapshot()
        tokens_before = self.ok(self.api("GET", TOKENS))
        for method, p, body in (("POST", CLIENTS, {"name": "v-" + harness.random_suffix(),
                                                   "secret": "12345678"}),
                                ("PUT", path, {"name": "v-" + harness.random_suffix()}),
                                ("DELETE", path, None),
                                ("GET", TOKENS, None),
                                ("POST", TOKENS, {"name": "escalate", "role": "admin"}),
                                ("DELETE", "%s/%d" % (TOKENS, tokens_before[0]["id"]), None)):
            with self.subTest(method=method, path=p):
                self.err(self.ctl.request(method, p, body=body, token=viewer), 403)
        self.assertEqual(self.snapshot(), before)
        self.assertEqual(self.ok(self.api("GET", TOKENS)), tokens_before)

    def test_admin_role_token(self):
        admin2 = self.new_token("admin", "second-admin")["token"]
        node = self.ok(self.ctl.request("POST", CLIENTS,
                                        body={"name": "by-admin2-" + harness.random_suffix(),
                                              "secret": "12345678"}, token=admin2), 201)
        self.ok(self.ctl.request("DELETE", "%s/%d" % (CLIENTS, node["id"]), token=admin2))
        v = self.ok(self.ctl.request("POST", TOKENS, body={"name": "v2", "role": "viewer"},
                                     token=admin2), 201)
        self.presented.append(v["token"])
        self.ok(self.ctl.request("GET", TOKENS, token=admin2))
        self.ok(self.ctl.request("DELETE", "%s/%d" % (TOKENS, v["id"]), token=admin2))


if __name__ == "__main__":
    unittest.main(verbosity=2)
