#!/usr/bin/env python3
"""Migrations: applied at start in a transaction, recorded in schema_migrations, idempotent on a
second start, and a failing migration leaves the database untouched and stops the controller."""

import unittest

import harness


class MigrationTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.require_controller()
        cls.pg = harness.shared_cluster()

    def setUp(self):
        self.db = self.pg.create_database()

    def tearDown(self):
        self.pg.drop_database(self.db)

    def q(self, sql):
        return self.pg.query(sql, db=self.db)

    def tables(self):
        return sorted(r[0] for r in self.q(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"))

    def columns(self, table):
        return sorted(r[0] for r in self.q(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name = '%s'" % table))

    def migrations(self):
        return self.q("SELECT version, applied_at FROM schema_migrations ORDER BY version")

    def test_apply_then_second_start_is_noop(self):
        ctl = harness.Controller(self.pg.dsn(self.db))
        try:
            st, _, body = ctl.api("POST", "/api/cascade/clients",
                                  {"name": "kept-across-restart", "secret": "secret-value-1"})
            self.assertEqual(st, 201, body)
        finally:
            ctl.stop()
        first = self.migrations()
        self.assertTrue(first, "schema_migrations is empty")
        self.assertTrue(first[0][0].startswith("001"), first)
        self.assertIn("001_init", first[0][0])
        cols = dict(self.q("SELECT column_name, data_type FROM information_schema.columns "
                           "WHERE table_name = 'schema_migrations'"))
        self.assertEqual(cols.get("version"), "text", cols)
        self.assertEqual(cols.get("applied_at"), "timestamp with time zone", cols)
        pk = self.q("SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
                    "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = 'schema_migrations'::regclass "
                    "AND i.indisprimary")
        self.assertEqual(pk, [["version"]])
        self.assertIn("instances", self.tables())
        self.assertIn("api_tokens", self.tables())
        schema_before = [(t, self.columns(t)) for t in self.tables()]

        ctl2 = harness.Controller(self.pg.dsn(self.db))
        try:
            st, _, body = ctl2.api("GET", "/api/cascade/clients")
            self.assertEqual(st, 200, body)
            self.assertEqual([n["name"] for n in body["data"]], ["kept-across-restart"])
        finally:
            ctl2.stop()  # also asserts no error lines on the second start
        self.assertEqual(self.migrations(), first, "second start changed schema_migrations")
        self.assertEqual([(t, self.columns(t)) for t in self.tables()], schema_before)

    def test_schema_has_node_columns_and_no_clear_secret(self):
        ctl = harness.Controller(self.pg.dsn(self.db))
        secret = "plain-secret-" + harness.random_suffix(12)
        try:
            st, _, body = ctl.api("POST", "/api/cascade/clients", {"name": "n1", "secret": secret})
            self.assertEqual(st, 201, body)
            st, _, tok = ctl.api("POST", "/api/auth/tokens", {"name": "t", "role": "viewer"})
            self.assertEqual(st, 201, tok)
        finally:
            ctl.stop()
        cols = self.columns("instances")
        for c in ("id", "name", "ip", "online", "parent_id", "labels", "created_time",
                  "updated_time", "last_seen"):
            self.assertIn(c, cols)
        self.assertNotIn("secret", cols)
        dump = "\n".join(self.pg.psql("SELECT row_to_json(t)::text FROM %s t" % t, db=self.db)
                         for t in self.tables())
        self.assertNotIn(secret, dump, "the node secret is stored in clear")
        self.assertNotIn(tok["data"]["token"], dump, "the API token is stored in clear")
        self.assertNotIn(tok["data"]["token"][len("cas_"):], dump)
        log = ctl.log_text()
        self.assertNotIn(secret, log)
        self.assertNotIn(tok["data"]["token"], log)

    def test_failing_migration_leaves_database_unchanged(self):
        self.pg.psql("CREATE TABLE instances (x int)", db=self.db)
        ctl = harness.Controller(self.pg.dsn(self.db), start=False)
        ctl.start(wait=False)
        rc = ctl.wait_exit(timeout=60)
        log = ctl.log_text()
        self.assertNotEqual(rc, 0, "controller started despite a failing migration\n" + log)
        self.assertEqual(rc, 1, log)
        self.assertIn("001_init.sql", log)
        self.assertRegex(log, r'relation "instances" already exists')
        self.assertNotRegex(log, harness.SANITIZER_RE)
        self.assertEqual(self.tables(), ["instances"])
        self.assertEqual(self.columns("instances"), ["x"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
