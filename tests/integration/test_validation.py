#!/usr/bin/env python3
"""Bad input to the node API: every case gets its exact status and the error envelope, and none
changes stored data (a full listing and the instances table are compared before and after)."""

import json
import threading
import unittest
import urllib.parse

import harness

CLIENTS = "/api/cascade/clients"


class ValidationTest(harness.ControllerTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # A little existing data for the unchanged checks and for parent_id/dup cases.
        tc = cls("run")
        cls.base_a = tc.create("base-a", labels={"k": "v"})
        cls.base_b = tc.create("base-b", parent_id=cls.base_a["id"])

    def bad(self, method, path, body=None, status=400, raw=None, headers=None):
        """Send a bad request; assert |status|, the error envelope and unchanged data."""
        before = self.snapshot()
        if raw is not None:
            resp = self.api(method, path, body=raw, headers=headers)
        else:
            resp = self.api(method, path, body=body, headers=headers)
        self.err(resp, status)
        self.assertEqual(self.snapshot(), before,
                         "%s %s %r changed stored data" % (method, path, body if raw is None else raw))
        return resp

    def post_bad(self, body, status=400):
        return self.bad("POST", CLIENTS, body, status)

    def put_bad(self, body, status=400, node=None):
        node = node or self.base_b
        return self.bad("PUT", "%s/%d" % (CLIENTS, node["id"]), body, status)

    # bodies -----------------------------------------------------------------------------------
    def test_malformed_json(self):
        for raw in (b'{"name": "x",', b'{"name": "x", "secret": "12345678"', b"not json",
                    b"{'a':1}", b'{"name": "x" "secret": "12345678"}', b"\xff\xfe{}",
                    b'{"name": "\xff", "secret": "12345678"}', b""):
            with self.subTest(raw=raw):
                self.bad("POST", CLIENTS, raw=raw)
                self.bad("PUT", "%s/%d" % (CLIENTS, self.base_b["id"]), raw=raw)

    def test_trailing_garbage(self):
        self.bad("POST", CLIENTS, raw='{"name": "trail", "secret": "12345678"} xyz')

    def test_body_not_an_object(self):
        for body in ([], ["name", "secret"], "name", 42, None, True):
            with self.subTest(body=body):
                self.bad("POST", CLIENTS, raw=json.dumps(body))
                self.bad("PUT", "%s/%d" % (CLIENTS, self.base_b["id"]), raw=json.dumps(body))

    def test_wrong_types(self):
        good = {"name": "typed", "secret": "12345678"}
        cases = {
            "name": [1, 1.5, True, None, [], {}, ["typed"]],
            "secret": [12345678, True, None, [], {}],
            "parent_id": ["1", str(self.base_a["id"]), 1.5, True, [], {}],
            "labels": [[], "a=b", 1, True, ["a", "b"]],
        }
        for field, values in cases.items():
            for v in values:
                with self.subTest(field=field, value=v):
                    self.post_bad(dict(good, **{field: v}))
                    if not (field == "parent_id" and v is None):
                        self.put_bad({field: v})

    def test_missing_fields(self):
        self.post_bad({"secret": "12345678"})
        self.post_bad({"name": "no-secret"})
        self.post_bad({})
        self.post_bad({"labels": {"a": "b"}})

    def test_unknown_fields(self):
        self.post_bad({"name": "unk", "secret": "12345678", "colour": "red"})
        self.post_bad({"name": "unk", "secret": "12345678", "id": 5})
        self.post_bad({"name": "unk", "secret": "12345678", "online": True})
        self.put_bad({"colour": "red"})
        self.put_bad({"name": "unk-put", "verifier": "x"})

    def test_relay_rules_are_prefixes_not_globs(self):
        for field, rule, why in (("allow", "/api/cascade/*", "not wildcards"),
                                 ("deny", "/api/admin?", "not wildcards"),
                                 ("deny", "/api/[a]dmin/", "not wildcards"),
                                 ("deny", "/api/%61dmin/", "percent"),
                                 ("deny", "/api//admin/", "normalised"),
                                 ("allow", "/flv/../api/", "normalised")):
            with self.subTest(rule=rule):
                _, _, body = self.put_bad({"relayapi": {"allow": ["/api/"], field: [rule]}}
                                          if field == "deny" else {"relayapi": {field: [rule]}})
                self.assertIn("relayapi.%s: rule '%s'" % (field, rule), body["message"])
                self.assertIn(why, body["message"])

    def test_empty_put(self):
        self.put_bad({})

    def test_names(self):
        for name in ("", "x" * 65, "边" * 22, "bad\nname", "bad\x01name", "bad\x7fname", "tab\tname",
                     "nul\x00name", "\r"):
            with self.subTest(name=name):
                self.post_bad({"name": name, "secret": "12345678"})
                self.put_bad({"name": name})
        # boundaries that are fine: 64 bytes, 63 bytes of 3-byte characters
        for name in ("y" * 64, "边" * 21):
            n = self.create(name)
            self.assertEqual(n["name"], name)

    def test_secrets(self):
        for secret in ("", "1234567", "s" * 1025):
            with self.subTest(secret_len=len(secret)):
                self.post_bad({"name": "sec-len", "secret": secret})
                self.put_bad({"secret": secret})
        for secret in ("12345678", "s" * 1024):
            self.create(secret=secret)

    def test_labels(self):
        too_many = {"k%02d" % i: "v" for i in range(65)}
        for labels in ({"a": 1}, {"a": None}, {"a": True}, {"a": ["x"]}, {"a": {"b": "c"}},
                       {"": "v"}, {"k" * 64: "v"}, {"k": "v" * 256}, too_many):
            with self.subTest(labels=str(labels)[:60]):
                self.post_bad({"name": "lab", "secret": "12345678", "labels": labels})
                self.put_bad({"labels": labels})
        ok = {"k%02d" % i: "v" for i in range(64)}
        self.assertEqual(self.create(labels=ok)["labels"], ok)
        edge = {"k" * 63: "v" * 255, "z": ""}
        self.assertEqual(self.create(labels=edge)["labels"], edge)

    def test_parent_id(self):
        for pid in (123456, 0, -1, 99999999999999999999):
            with self.subTest(parent_id=pid):
                self.post_bad({"name": "orphan", "secret": "12345678", "parent_id": pid})
                self.put_bad({"parent_id": pid})
        # own id
        self.put_bad({"parent_id": self.base_b["id"]})
        # cycles: a -> b -> c, then a.parent = c (and a.parent = b)
        a = self.create("cyc-a-" + harness.random_suffix())
        b = self.create("cyc-b-" + harness.random_suffix(), parent_id=a["id"])
        c = self.create("cyc-c-" + harness.random_suffix(), parent_id=b["id"])
        self.put_bad({"parent_id": c["id"]}, node=a)
        self.put_bad({"parent_id": b["id"]}, node=a)
        # a legal move still works afterwards
        self.assertEqual(self.ok(self.api("PUT", "%s/%d" % (CLIENTS, c["id"]),
                                          {"parent_id": a["id"]}))["parent_id"], a["id"])

    # sizes ------------------------------------------------------------------------------------
    def big_request(self, total_len, method="POST", path=CLIENTS):
        prefix = b'{"name": "big", "secret": "12345678", "labels": {}}'
        body = prefix + b" " * (total_len - len(prefix))
        assert len(body) == total_len
        head = ("%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
                "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                % (method, path, self.ctl.admin_token, len(body))).encode()
        return head + body

    def test_body_over_1mib_is_413(self):
        before = self.snapshot()
        for n in (1024 * 1024 + 1, 4 * 1024 * 1024):
            resp = harness.raw_request(self.ctl.host, self.ctl.port, self.big_request(n))
            self.err(resp, 413)
            resp = harness.raw_request(self.ctl.host, self.ctl.port,
                                       self.big_request(n, "PUT", "%s/%d" % (CLIENTS, self.base_b["id"])))
            self.err(resp, 413)
        self.assertEqual(self.snapshot(), before)
        # the controller is still fine
        self.assertEqual(self.api("GET", CLIENTS)[0], 200)

    def test_malformed_request_heads_leave_the_controller_serving(self):
        # header lines the HTTP parser refuses before any handler runs: the request is answered
        # 400 (or the connection closed) and the controller goes on serving
        heads = [b"GET /api/cascade/clients HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a\n(b\r\n\r\n",
                 b"GET /healthz HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n",
                 b"GET /healthz HTTP/1.1\r\n : v\r\n\r\n",
                 b"\x00\x01\x02garbage\r\n\r\n"]
        for h in heads:
            try:
                harness.raw_request(self.ctl.host, self.ctl.port, h, timeout=5)
            except (OSError, ValueError, AssertionError):
                pass  # closed without an answer is fine too
            self.assertEqual(self.api("GET", CLIENTS)[0], 200)
        self.assertIsNone(self.ctl.proc.poll(), "the controller exited")

    def test_body_of_exactly_1mib_is_accepted(self):
        resp = harness.raw_request(self.ctl.host, self.ctl.port, self.big_request(1024 * 1024))
        node = self.ok(resp, 201)
        self.assertEqual(node["name"], "big")
        self.ok(self.api("DELETE", "%s/%d" % (CLIENTS, node["id"])))

    # exact storage ----------------------------------------------------------------------------
    def test_metacharacter_and_unicode_names_roundtrip(self):
        names = ["'; DROP TABLE instances; --", "100%", "a_b", "back\\slash", "边缘节点-α 🚀",
                 'quote"d', "$1", "x' OR '1'='1", "%_%"]
        made = {}
        for name in names:
            n = self.create(name)
            self.assertEqual(n["name"], name)
            made[name] = n
            got = self.ok(self.api("GET", "%s/%d" % (CLIENTS, n["id"])))
            self.assertEqual(got["name"], name)
        stored = dict((r[1], r[0]) for r in self.pg.query(
            "SELECT id, name FROM instances WHERE id IN (%s)"
            % ",".join(str(n["id"]) for n in made.values()), db=self.db))
        self.assertEqual(sorted(stored), sorted(names), "names not stored byte-exactly")
        self.assertIn("instances", self.pg.psql("SELECT tablename FROM pg_tables", db=self.db))

        def filt(sub):
            st, _, body = self.api("GET", "%s?size=1000&name=%s" % (CLIENTS, urllib.parse.quote(sub)))
            self.assertEqual(st, 200, body)
            return sorted(n["name"] for n in body["data"])
        self.assertEqual(filt("%"), sorted(["100%", "%_%"]))
        self.assertEqual(filt("_"), sorted(["a_b", "%_%"]))
        self.assertEqual(filt("\\"), ["back\\slash"])
        self.assertEqual(filt("节点-α"), ["边缘节点-α 🚀"])
        self.assertEqual(filt("drop table"), ["'; DROP TABLE instances; --"])
        self.assertEqual(filt("100%"), ["100%"])

    # ids and routes ---------------------------------------------------------------------------
    def test_bad_ids(self):
        for raw_id in ("abc", "-1", "0", "99999999999999999999", "1.5", "1x", "0x10", "%20"):
            for method, body in (("GET", None), ("PUT", {"name": "x-" + harness.random_suffix()}),
                                 ("DELETE", None)):
                with self.subTest(id=raw_id, method=method):
                    self.bad(method, "%s/%s" % (CLIENTS, raw_id), body, 400)
        for method, body in (("GET", None), ("PUT", {"name": "absent-" + harness.random_suffix()}),
                             ("DELETE", None)):
            self.bad(method, "%s/123456" % CLIENTS, body, 404)

    def test_bad_query_parameters(self):
        for qs in ("page=0", "page=-1", "page=abc", "size=0", "size=1001", "size=abc", "size=-5",
                   "online=yes", "online=1", "online=", "page=99999999999999999999"):
            with self.subTest(qs=qs):
                self.bad("GET", "%s?%s" % (CLIENTS, qs), None, 400)

    def test_duplicate_name(self):
        self.post_bad({"name": "base-a", "secret": "12345678"}, status=409)
        self.put_bad({"name": "base-a"}, status=409)

    def test_duplicate_name_race(self):
        name = "race-" + harness.random_suffix()
        n = 20
        barrier = threading.Barrier(n)
        results = [None] * n

        def worker(i):
            barrier.wait(10)
            try:
                results[i] = self.api("POST", CLIENTS, {"name": name, "secret": "12345678"},
                                      timeout=30)
            except Exception as e:  # noqa: BLE001 - recorded and asserted below
                results[i] = e

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        statuses = sorted(r[0] if isinstance(r, tuple) else repr(r) for r in results)
        self.assertEqual(statuses, [201] + [409] * (n - 1), statuses)
        for r in results:
            if r[0] == 409:
                self.err(r, 409)
        rows = self.pg.query("SELECT count(*) FROM instances WHERE name = '%s'" % name, db=self.db)
        self.assertEqual(rows, [["1"]])

    def test_unknown_routes(self):
        for path in ("/api/nothing", "/api/cascade", "/api/cascade/clientsx",
                     "/api/cascade/clients/%d/extra" % self.base_a["id"]):
            with self.subTest(path=path):
                self.bad("GET", path, None, 404)
        st, _, _ = self.ctl.request("GET", "/no/such/page")
        self.assertEqual(st, 404)

    def test_wrong_methods(self):
        cases = [("PATCH", CLIENTS, {"GET", "POST"}),
                 ("DELETE", CLIENTS, {"GET", "POST"}),
                 ("PUT", CLIENTS, {"GET", "POST"}),
                 ("POST", "%s/%d" % (CLIENTS, self.base_a["id"]), {"GET", "PUT", "DELETE"}),
                 ("PATCH", "%s/%d" % (CLIENTS, self.base_a["id"]), {"GET", "PUT", "DELETE"})]
        for method, path, allowed in cases:
            with self.subTest(method=method, path=path):
                _, hdrs, _ = self.bad(method, path, {"name": "m-" + harness.random_suffix()}, 405)
                allow = hdrs.get("Allow")
                self.assertTrue(allow, "405 without an Allow header")
                got = {m.strip().upper() for m in allow.split(",") if m.strip()}
                self.assertTrue(allowed <= got, "Allow: %r lacks %r" % (allow, allowed))
                self.assertNotIn(method, got)

    def test_controller_still_serves(self):
        # After everything above (in any order), plain requests still work.
        n = self.create()
        self.assertEqual(self.ok(self.api("GET", "%s/%d" % (CLIENTS, n["id"]))), n)


if __name__ == "__main__":
    unittest.main(verbosity=2)
