#!/usr/bin/env python3
"""PostgreSQL stops under a running controller: the API answers 503 within database.timeout + 1 s,
/readyz says 503, /healthz stays 200; PostgreSQL comes back and the controller serves the data
from before the outage without a restart. Uses its own private cluster."""

import os
import signal
import subprocess
import time
import unittest

import harness

CLIENTS = "/api/cascade/clients"
TIMEOUT_MS = 1000
# Lines the controller may legitimately log at error level while its database is down.
OUTAGE_ERRORS = [r"(?i)\b(db|database|pool|postgres\w*|libpq|pq)\b", r"(?i)connect",
                 r"(?i)server closed|terminating connection|no connection|unavailable|timeout"]


class OutageTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.require_controller()
        cls.pg = harness.new_cluster()  # private: this test stops it

    @classmethod
    def tearDownClass(cls):
        cls.pg.destroy()

    def timed(self, ctl, method, path, body=None, token=True):
        t0 = time.monotonic()
        resp = ctl.request(method, path, body=body, token=ctl.admin_token if token else None,
                           timeout=30)
        return resp, time.monotonic() - t0

    def assert_503_envelope(self, resp):
        st, _, body = resp
        self.assertEqual(st, 503, body)
        self.assertIsInstance(body, dict, body)
        self.assertEqual(body.get("code"), 503, body)
        self.assertIsInstance(body.get("message"), str)
        self.assertTrue(body["message"])
        self.assertIsNone(body.get("data", "missing"), body)

    def test_stop_and_start_postgres(self):
        db = self.pg.create_database()
        ctl = harness.Controller(self.pg.dsn(db),
                                 config={"database": {"timeout": TIMEOUT_MS, "poolsize": 2}})
        try:
            made = []
            for i in range(3):
                st, _, body = ctl.api("POST", CLIENTS, {"name": "before-%d" % i,
                                                        "secret": "12345678", "labels": {"i": str(i)}})
                self.assertEqual(st, 201, body)
                made.append(body["data"])
            st, _, before = ctl.api("GET", CLIENTS)
            self.assertEqual(st, 200)
            self.assertEqual(ctl.request("GET", "/readyz")[0], 200)

            self.pg.stop(mode="fast")
            self.assertFalse(self.pg.is_ready())

            limit = TIMEOUT_MS / 1000.0 + 1.0
            for method, path, body in (("GET", CLIENTS, None),
                                       ("GET", "%s/%d" % (CLIENTS, made[0]["id"]), None),
                                       ("POST", CLIENTS, {"name": "during", "secret": "12345678"}),
                                       ("PUT", "%s/%d" % (CLIENTS, made[1]["id"]), {"name": "x2"}),
                                       ("DELETE", "%s/%d" % (CLIENTS, made[2]["id"]), None),
                                       ("GET", CLIENTS, None)):
                with self.subTest(method=method, path=path):
                    resp, took = self.timed(ctl, method, path, body)
                    self.assert_503_envelope(resp)
                    self.assertLessEqual(took, limit, "%s %s took %.2fs" % (method, path, took))

            # /readyz turns 503 (it may probe on a timer: wait with a deadline)
            harness.wait_for(lambda: ctl.request("GET", "/readyz", timeout=5)[0] == 503, limit + 2,
                             what="/readyz == 503 during the outage")
            resp, took = self.timed(ctl, "GET", "/readyz", token=False)
            self.assertEqual(resp[0], 503)
            self.assertLessEqual(took, limit)
            resp, took = self.timed(ctl, "GET", "/healthz", token=False)
            self.assertEqual(resp[0], 200)
            self.assertLess(took, 1.0)
            self.assertEqual(ctl.request("GET", "/metrics")[0], 200)
            self.assertIsNone(ctl.proc.poll(), "controller exited during the outage")

            # PostgreSQL returns: same data dir and socket
            self.pg.start()

            def api_back():
                st, _, body = ctl.api("GET", CLIENTS, timeout=5)
                return st == 200 and body
            after = harness.wait_for(api_back, 20, interval=0.1, what="the API to answer 200 again")
            self.assertEqual(after["data"], before["data"], "data differs after the outage")
            self.assertEqual(after["total"], 3)
            harness.wait_for(lambda: ctl.request("GET", "/readyz", timeout=5)[0] == 200, 10,
                             what="/readyz == 200 after the outage")
            # every pooled connection works again (poolsize 2: several requests in a row)
            for _ in range(6):
                self.assertEqual(ctl.api("GET", "%s/%d" % (CLIENTS, made[0]["id"]))[0], 200)
            st, _, body = ctl.api("POST", CLIENTS, {"name": "after", "secret": "12345678"})
            self.assertEqual(st, 201, body)
            st, _, body = ctl.api("GET", CLIENTS)
            self.assertEqual([n["name"] for n in body["data"]],
                             ["before-0", "before-1", "before-2", "after"])
            self.assertIsNone(ctl.proc.poll(), "controller exited")
        except BaseException:
            if ctl.proc is not None:
                print(ctl.log_tail(), flush=True)
            raise
        finally:
            ctl.stop(expected_errors=OUTAGE_ERRORS)
            self.pg.drop_database(db)

    def test_second_outage_and_idle_connections(self):
        """A second, shorter outage after the pool has been idle also recovers."""
        db = self.pg.create_database()
        ctl = harness.Controller(self.pg.dsn(db),
                                 config={"database": {"timeout": TIMEOUT_MS, "poolsize": 2}})
        try:
            for _ in range(2):
                st, _, body = ctl.api("POST", CLIENTS, {"name": "n-" + harness.random_suffix(),
                                                        "secret": "12345678"})
                self.assertEqual(st, 201, body)
                self.pg.stop(mode="immediate")
                resp, took = self.timed(ctl, "GET", CLIENTS)
                self.assert_503_envelope(resp)
                self.assertLessEqual(took, TIMEOUT_MS / 1000.0 + 1.0)
                self.pg.start()
                harness.wait_for(lambda: ctl.api("GET", CLIENTS, timeout=5)[0] == 200, 20,
                                 interval=0.1, what="the API to answer 200 again")
            st, _, body = ctl.api("GET", CLIENTS)
            self.assertEqual(body["total"], 2)
        finally:
            ctl.stop(expected_errors=OUTAGE_ERRORS)
            self.pg.drop_database(db)

    def test_idle_connections_ended_by_the_server(self):
        """Backends ended while the pool is idle (pg_terminate_backend, as a PostgreSQL restart
        or a dropped path would): the next requests are answered 200, on new connections,
        not 503 on the dead ones."""
        db = self.pg.create_database()
        ctl = harness.Controller(self.pg.dsn(db),
                                 config={"database": {"timeout": TIMEOUT_MS, "poolsize": 2}})
        try:
            # two requests at once: both pooled connections open
            for _ in range(3):
                self.assertEqual(ctl.api("GET", CLIENTS)[0], 200)
            pids = self.pg.psql("WITH b AS MATERIALIZED (SELECT pid FROM pg_stat_activity "
                                "WHERE datname = '%s' AND pid <> pg_backend_pid()) "
                                "SELECT pid FROM b WHERE pg_terminate_backend(pid)" % db).split()
            self.assertTrue(pids, "no backend of the controller to end")
            # ended: gone from the server, their sockets closed
            gone = "SELECT count(*) FROM pg_stat_activity WHERE pid IN (%s)" % ",".join(pids)
            harness.wait_for(lambda: self.pg.psql(gone).strip() == "0", 10,
                             what="the ended backends to exit")
            statuses = [ctl.api("GET", CLIENTS, timeout=10)[0] for _ in range(4)]
            self.assertEqual(statuses, [200] * 4)
        finally:
            ctl.stop(expected_errors=OUTAGE_ERRORS)
            self.pg.drop_database(db)

    def cluster_pids(self):
        """The postmaster and all its children (backends, background workers)."""
        with open(self.pg.datadir + "/postmaster.pid") as f:
            postmaster = int(f.readline())
        out = subprocess.run(["pgrep", "-P", str(postmaster)], stdout=subprocess.PIPE,
                             text=True).stdout
        return [postmaster] + [int(p) for p in out.split()]

    def test_hung_database(self):
        """PostgreSQL stops answering (SIGSTOP) with connections open: no socket error tells the
        controller anything, only its own deadlines do. Calls still answer 503 in time."""
        db = self.pg.create_database()
        ctl = harness.Controller(self.pg.dsn(db),
                                 config={"database": {"timeout": TIMEOUT_MS, "poolsize": 2}})
        pids = []

        def resume():
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
        try:
            st, _, body = ctl.api("POST", CLIENTS, {"name": "hung-0", "secret": "12345678"})
            self.assertEqual(st, 201, body)
            # warm both pooled connections so the freeze catches them mid-life
            for _ in range(4):
                self.assertEqual(ctl.api("GET", CLIENTS)[0], 200)
            pids = self.cluster_pids()
            for pid in pids:
                os.kill(pid, signal.SIGSTOP)
            limit = TIMEOUT_MS / 1000.0 + 1.0
            for method, path, body in (("GET", CLIENTS, None),
                                       ("GET", CLIENTS, None),
                                       ("POST", CLIENTS, {"name": "during", "secret": "12345678"}),
                                       ("GET", "/readyz", None)):
                with self.subTest(method=method, path=path):
                    resp, took = self.timed(ctl, method, path, body)
                    self.assert_503_envelope(resp)
                    self.assertLessEqual(took, limit, "%s %s took %.2fs" % (method, path, took))
            self.assertEqual(ctl.request("GET", "/healthz")[0], 200)
            resume()
            harness.wait_for(lambda: ctl.api("GET", CLIENTS, timeout=5)[0] == 200, 20,
                             interval=0.1, what="the API to answer 200 again")
            st, _, body = ctl.api("GET", CLIENTS)
            self.assertEqual([n["name"] for n in body["data"]], ["hung-0"])
        finally:
            resume()
            ctl.stop(expected_errors=OUTAGE_ERRORS)
            self.pg.drop_database(db)


if __name__ == "__main__":
    unittest.main(verbosity=2)
