#!/usr/bin/env python3
"""The node registry REST API: create, read, list (paging and filters), update, delete."""

import datetime
import threading
import unittest
import urllib.parse

import harness


def utc_now_str():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(s):
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)


class ClientsTest(harness.ControllerTestCase):
    def wait_next_second(self, stamp):
        """Wait until the wall clock (UTC, seconds) is past |stamp| so updated_time must differ."""
        harness.wait_for(lambda: utc_now_str() > stamp, 3, what="the clock to pass %s" % stamp)

    def test_create_returns_node(self):
        before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        st, hdrs, body = self.api("POST", "/api/cascade/clients",
                                  {"name": "edge-create", "secret": "0123456789abcdef"})
        node = self.ok((st, hdrs, body), 201)
        self.assertIn("json", hdrs.get("Content-Type", ""))
        self.assert_node_shape(node)
        self.assertEqual(node["name"], "edge-create")
        self.assertEqual(node["ip"], "")
        self.assertIs(node["online"], False)
        self.assertIsNone(node["parent_id"])
        self.assertEqual(node["labels"], {})
        self.assertIsNone(node["last_seen"])
        self.assertEqual(node["created_time"], node["updated_time"])
        created = parse_time(node["created_time"])
        after = datetime.datetime.now(datetime.timezone.utc)
        self.assertLessEqual(before - datetime.timedelta(seconds=2), created)
        self.assertLessEqual(created, after + datetime.timedelta(seconds=2))
        self.assertNotIn("0123456789abcdef", repr(body))
        # GET returns the same object
        self.assertEqual(self.ok(self.api("GET", "/api/cascade/clients/%d" % node["id"])), node)

    def test_create_with_parent_and_labels(self):
        parent = self.create("hq-" + harness.random_suffix())
        labels = {"region": "eu-west", "tier": "edge", "empty": ""}
        child = self.create("edge-" + harness.random_suffix(), parent_id=parent["id"], labels=labels)
        self.assertEqual(child["parent_id"], parent["id"])
        self.assertEqual(child["labels"], labels)
        got = self.ok(self.api("GET", "/api/cascade/clients/%d" % child["id"]))
        self.assertEqual(got, child)

    def test_get_absent_is_404(self):
        self.err(self.api("GET", "/api/cascade/clients/123456"), 404)

    def test_list_paging_and_filters(self):
        tag = harness.random_suffix()
        made = [self.create("List-%s-%02d" % (tag, i)) for i in range(7)]
        ids = [n["id"] for n in made]

        st, _, body = self.api("GET", "/api/cascade/clients")
        self.assertEqual(st, 200, body)
        self.assertEqual(body["code"], 0)
        self.assertEqual(body["message"], "success")
        self.assertEqual(body["page"], 1)
        self.assertEqual(body["size"], 50)
        self.assertIsInstance(body["total"], int)
        all_ids = [n["id"] for n in body["data"]]
        self.assertEqual(all_ids, sorted(all_ids), "list is not ordered by id")
        for n in body["data"]:
            self.assert_node_shape(n)

        q = urllib.parse.quote("list-%s" % tag.upper())  # case-insensitive substring
        st, _, body = self.api("GET", "/api/cascade/clients?name=%s&size=3&page=1" % q)
        self.assertEqual(st, 200, body)
        self.assertEqual((body["total"], body["page"], body["size"]), (7, 1, 3))
        self.assertEqual([n["id"] for n in body["data"]], ids[0:3])
        st, _, body = self.api("GET", "/api/cascade/clients?name=%s&size=3&page=3" % q)
        self.assertEqual((body["total"], body["page"], body["size"]), (7, 3, 3))
        self.assertEqual([n["id"] for n in body["data"]], ids[6:7])
        st, _, body = self.api("GET", "/api/cascade/clients?name=%s&size=3&page=4" % q)
        self.assertEqual(st, 200, body)
        self.assertEqual(body["data"], [])
        self.assertEqual(body["total"], 7)

        st, _, body = self.api("GET", "/api/cascade/clients?name=%s-03" % q)
        self.assertEqual([n["name"] for n in body["data"]], ["List-%s-03" % tag])

        st, _, body = self.api("GET", "/api/cascade/clients?name=%s&online=false&size=1000" % q)
        self.assertEqual(st, 200, body)
        self.assertEqual([n["id"] for n in body["data"]], ids)
        st, _, body = self.api("GET", "/api/cascade/clients?name=%s&online=true" % q)
        self.assertEqual(st, 200, body)
        self.assertEqual((body["data"], body["total"]), ([], 0))

        st, _, body = self.api("GET", "/api/cascade/clients?name=nothing-matches-%s" % tag)
        self.assertEqual((st, body["data"], body["total"]), (200, [], 0))

        # size bounds
        st, _, body = self.api("GET", "/api/cascade/clients?size=1000&name=%s" % q)
        self.assertEqual((st, body["size"], len(body["data"])), (200, 1000, 7))
        st, _, body = self.api("GET", "/api/cascade/clients?size=1&name=%s" % q)
        self.assertEqual((st, body["size"], [n["id"] for n in body["data"]]), (200, 1, ids[:1]))

    def test_update_fields(self):
        parent = self.create("upd-parent-" + harness.random_suffix())
        node = self.create("upd-" + harness.random_suffix(), labels={"a": "1"})
        path = "/api/cascade/clients/%d" % node["id"]
        self.wait_next_second(node["updated_time"])

        new_name = "upd-renamed-" + harness.random_suffix()
        upd = self.ok(self.api("PUT", path, {"name": new_name}))
        self.assert_node_shape(upd)
        self.assertEqual(upd["name"], new_name)
        self.assertEqual(upd["id"], node["id"])
        self.assertEqual(upd["created_time"], node["created_time"])
        self.assertGreater(upd["updated_time"], node["updated_time"])
        self.assertEqual(upd["labels"], {"a": "1"})
        self.assertEqual(self.ok(self.api("GET", path)), upd)

        upd2 = self.ok(self.api("PUT", path, {"parent_id": parent["id"], "labels": {"b": "2"}}))
        self.assertEqual(upd2["parent_id"], parent["id"])
        self.assertEqual(upd2["labels"], {"b": "2"}, "labels are replaced, not merged")
        self.assertEqual(upd2["name"], new_name)

        upd3 = self.ok(self.api("PUT", path, {"parent_id": None}))
        self.assertIsNone(upd3["parent_id"])
        self.assertEqual(upd3["labels"], {"b": "2"})

        upd4 = self.ok(self.api("PUT", path, {"labels": {}}))
        self.assertEqual(upd4["labels"], {})

        # the same name again is not a conflict with itself
        self.ok(self.api("PUT", path, {"name": new_name}))

    def test_update_secret_changes_verifier_only(self):
        node = self.create("sec-" + harness.random_suffix(), secret="first-secret")
        path = "/api/cascade/clients/%d" % node["id"]
        sql = "SELECT verifier FROM instances WHERE id = %d" % node["id"]
        v1 = self.pg.psql(sql, db=self.db).strip()
        self.wait_next_second(node["updated_time"])
        upd = self.ok(self.api("PUT", path, {"secret": "second-secret"}))
        self.assertEqual(harness.forbidden_keys(upd), [])
        self.assertEqual({k: v for k, v in upd.items() if k != "updated_time"},
                         {k: v for k, v in node.items() if k != "updated_time"})
        self.assertGreater(upd["updated_time"], node["updated_time"])
        v2 = self.pg.psql(sql, db=self.db).strip()
        self.assertTrue(v1 and v2)
        self.assertNotEqual(v1, v2, "secret update did not change the stored verifier")
        self.assertNotIn("second-secret", v2)
        self.assertNotIn("second-secret", self.ctl.log_text())

    def test_delete(self):
        node = self.create("del-" + harness.random_suffix())
        path = "/api/cascade/clients/%d" % node["id"]
        gone = self.ok(self.api("DELETE", path))
        self.assertEqual(gone, node)
        self.err(self.api("GET", path), 404)
        self.err(self.api("DELETE", path), 404)
        self.err(self.api("PUT", path, {"name": "resurrect-" + harness.random_suffix()}), 404)
        self.assertNotIn(node["id"], [n["id"] for n in self.list_all()])

    def test_delete_parent_orphans_children(self):
        parent = self.create("p-" + harness.random_suffix())
        kids = [self.create("k-" + harness.random_suffix(), parent_id=parent["id"]) for _ in range(2)]
        other = self.create("o-" + harness.random_suffix())
        grandkid = self.create("g-" + harness.random_suffix(), parent_id=kids[0]["id"])
        self.ok(self.api("DELETE", "/api/cascade/clients/%d" % parent["id"]))
        for k in kids:
            got = self.ok(self.api("GET", "/api/cascade/clients/%d" % k["id"]))
            self.assertIsNone(got["parent_id"])
            self.assertEqual(got["name"], k["name"])
        got = self.ok(self.api("GET", "/api/cascade/clients/%d" % grandkid["id"]))
        self.assertEqual(got["parent_id"], kids[0]["id"])
        self.assertEqual(self.ok(self.api("GET", "/api/cascade/clients/%d" % other["id"])), other)
        # the children's change is audited, in the same statement as the delete
        rows = self.pg.query("SELECT instance_id, detail->>'reason' FROM events"
                             " WHERE action = 'node.update' AND instance_id IN (%d, %d)"
                             " ORDER BY instance_id" % (kids[0]["id"], kids[1]["id"]), db=self.db)
        self.assertEqual(rows, [[str(kids[0]["id"]), "parent deleted"],
                                [str(kids[1]["id"]), "parent deleted"]])

    def test_name_free_again_after_delete(self):
        name = "reuse-" + harness.random_suffix()
        n1 = self.create(name)
        self.ok(self.api("DELETE", "/api/cascade/clients/%d" % n1["id"]))
        n2 = self.create(name)
        self.assertNotEqual(n1["id"], n2["id"])

    def test_health_endpoints(self):
        st, _, _ = self.ctl.request("GET", "/healthz")
        self.assertEqual(st, 200)
        st, _, _ = self.ctl.request("GET", "/readyz")
        self.assertEqual(st, 200)


class PoolQueueTest(harness.ControllerTestCase):
    """A pool of one connection serves many concurrent clients by queueing, not by failing."""

    config = {"database": {"poolsize": 1, "timeout": 3000}}

    def test_concurrent_requests_share_one_connection(self):
        threads, per = 12, 15
        statuses = [[] for _ in range(threads)]

        def worker(i):
            for j in range(per):
                try:
                    if j % 3 == 0:
                        st = self.api("POST", "/api/cascade/clients",
                                      {"name": "pq-%d-%d" % (i, j), "secret": "12345678"})[0]
                    elif j % 3 == 1:
                        st = self.api("GET", "/api/cascade/clients?size=100")[0]
                    else:
                        st = self.api("GET", "/api/cascade/clients?name=pq-%d-" % i)[0]
                except Exception as e:  # noqa: BLE001 - recorded and asserted below
                    st = repr(e)
                statuses[i].append(st)

        ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(120)
        flat = [s for lst in statuses for s in lst]
        bad = [s for s in flat if s not in (200, 201)]
        self.assertEqual(bad, [], "failed requests with poolsize 1")
        self.assertEqual(flat.count(201), threads * per // 3)
        self.assertEqual(len(self.list_all()), threads * per // 3)


if __name__ == "__main__":
    unittest.main(verbosity=2)
