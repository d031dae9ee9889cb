#!/usr/bin/env python3
"""cascade-controller command line and configuration: --check, exit codes, FILE:LINE:COL errors,
environment overrides, start-up failures and signals."""

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


class ConfigFileTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.require_controller()
        cls.pg = harness.shared_cluster()
        cls.tmp = tempfile.mkdtemp(prefix="cascade-cfg-")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def write(self, text, name=None):
        path = os.path.join(self.tmp, name or ("c-%s.yaml" % harness.random_suffix()))
        with open(path, "w") as f:
            f.write(text)
        return path

    def check(self, text, env=None):
        path = self.write(text)
        rc, out, err = harness.run_controller(["-c", path, "--check"], env_extra=env)
        return path, rc, out, err

    def assert_config_error(self, text, key, line, cols=None, env=None):
        """Exit code 2 and 'FILE:LINE:COL: key 'KEY': message' on stderr."""
        path, rc, out, err = self.check(text, env)
        self.assertEqual(rc, 2, "exit code for bad %s; stderr: %r" % (key, err))
        m = re.search(r"^%s:(\d+):(\d+): key '%s': (.+)$" % (re.escape(path), re.escape(key)), err,
                      re.M)
        self.assertTrue(m, "stderr lacks '%s:%d:COL: key '%s': message': %r" % (path, line, key, err))
        self.assertEqual(int(m.group(1)), line, err)
        if cols is not None:
            self.assertIn(int(m.group(2)), cols, err)
        self.assertTrue(m.group(3).strip(), err)
        self.assertNotIn("AddressSanitizer", err)
        return err

    def dsn_line(self):
        return 'database:\n  dsn: "%s"\n' % self.pg.dsn("postgres")

    # valid ------------------------------------------------------------------------------------
    def test_check_valid_minimal(self):
        _, rc, out, err = self.check(self.dsn_line())
        self.assertEqual(rc, 0, err)
        self.assertNotRegex(err, harness.SANITIZER_RE)

    def test_check_valid_every_key(self):
        text = ('http:\n'
                '  listenaddr: "127.0.0.1:18080"\n'
                '  tls:\n'
                '    cert: ""\n'
                '    key: ""\n'
                'database:\n'
                '  dsn: "%s"\n'
                '  poolsize: 64\n'
                '  timeout: 100\n'
                'auth:\n'
                '  admintoken: "tok-abcdef-0123456789"\n'
                'cascadeserver:\n'
                '  autoregister: false\n'
                '  relayapi:\n'
                '    allow: ["/api/stream/", "/api/summary"]\n'
                '    deny: []\n'
                'log:\n'
                '  level: warn\n' % self.pg.dsn("postgres"))
        _, rc, out, err = self.check(text)
        self.assertEqual(rc, 0, err)

    def test_check_bounds_accepted(self):
        for pool, timeout in ((1, 60000), (64, 100)):
            _, rc, _, err = self.check(self.dsn_line() + "  poolsize: %d\n  timeout: %d\n"
                                       % (pool, timeout))
            self.assertEqual(rc, 0, "poolsize %d timeout %d: %s" % (pool, timeout, err))

    def test_log_levels_accepted(self):
        for lvl in ("debug", "info", "warn", "error"):
            _, rc, _, err = self.check(self.dsn_line() + "log:\n  level: %s\n" % lvl)
            self.assertEqual(rc, 0, "level %s: %s" % (lvl, err))

    def test_dsn_from_environment(self):
        # No dsn in the file: CASCADE_DB_DSN supplies it.
        _, rc, _, err = self.check("log:\n  level: info\n",
                                   env={"CASCADE_DB_DSN": self.pg.dsn("postgres")})
        self.assertEqual(rc, 0, err)

    # errors -----------------------------------------------------------------------------------
    def test_unknown_key(self):
        text = 'http:\n  listnaddr: "127.0.0.1:8080"\n' + self.dsn_line()
        self.assert_config_error(text, "http.listnaddr", 2, cols=(3,))

    def test_unknown_top_level_key(self):
        text = self.dsn_line() + "bogus:\n  x: 1\n"
        self.assert_config_error(text, "bogus", 3, cols=(1,))

    def test_wrong_type_poolsize(self):
        text = self.dsn_line() + '  poolsize: "abc"\n'
        self.assert_config_error(text, "database.poolsize", 3, cols=(3, 13))

    def test_poolsize_out_of_range(self):
        for v in ("0", "65", "-1"):
            self.assert_config_error(self.dsn_line() + "  poolsize: %s\n" % v, "database.poolsize",
                                     3, cols=(3, 13))

    def test_timeout_out_of_range(self):
        for v in ("99", "60001"):
            self.assert_config_error(self.dsn_line() + "  timeout: %s\n" % v, "database.timeout",
                                     3, cols=(3, 12))

    def test_bad_log_level(self):
        text = self.dsn_line() + "log:\n  level: loud\n"
        self.assert_config_error(text, "log.level", 4, cols=(3, 10))

    def test_admintoken_too_short(self):
        # The controller requires >= 16 bytes; the error must still point into the file.
        text = self.dsn_line() + 'auth:\n  admintoken: "short"\n'
        self.assert_config_error(text, "auth.admintoken", 4, cols=(3, 15))

    def test_wrong_type_bool(self):
        text = self.dsn_line() + "cascadeserver:\n  autoregister: maybe\n"
        self.assert_config_error(text, "cascadeserver.autoregister", 4, cols=(3, 17))

    def test_wrong_type_list(self):
        text = self.dsn_line() + 'cascadeserver:\n  relayapi:\n    allow: "/api/*"\n'
        self.assert_config_error(text, "cascadeserver.relayapi.allow", 5, cols=(5, 12))

    def test_relay_rules_are_prefixes_not_globs(self):
        # Rules are plain prefixes: a glob (or a rule no normalised path can meet) would look
        # like it covers paths it never does; it is refused naming file, line, key and rule.
        for key, rule in (("allow", "/api/cascade/*"), ("deny", "/api/admin?"),
                          ("deny", "/api/[a]dmin/"), ("deny", "/api/%61dmin/"),
                          ("deny", "/api//admin/")):
            with self.subTest(key=key, rule=rule):
                text = (self.dsn_line() + 'cascadeserver:\n  relayapi:\n    %s:\n      - /api/x/\n'
                        '      - "%s"\n' % (key, rule))
                err = self.assert_config_error(text, "cascadeserver.relayapi." + key, 7, cols=(9,))
                self.assertIn("rule '%s'" % rule, err)
                # the same without --check: the controller does not start
                path = self.write(text)
                rc, _, err2 = harness.run_controller(["-c", path])
                self.assertEqual(rc, 2, err2)
                self.assertIn("rule '%s'" % rule, err2)
        _, rc, _, err = self.check(self.dsn_line() + 'cascadeserver:\n  relayapi:\n'
                                   '    allow: [/api/, /flv/]\n    deny: [/api/admin/]\n')
        self.assertEqual(rc, 0, err)

    def test_agent_relay_rules_are_prefixes_not_globs(self):
        for key, rule in (("allow", "/api/cascade/*"), ("deny", "/api/x?")):
            with self.subTest(key=key, rule=rule):
                path = self.write('node: {name: a, secret: aaaaaaaa}\n'
                                  'controller: {url: "tcp://127.0.0.1:1"}\n'
                                  'cascadeclient:\n  relayapi:\n    %s: [/api/, "%s"]\n'
                                  % (key, rule))
                r = subprocess.run([harness.agent_path(), "-c", path, "--check"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env=harness.sanitizer_env(), timeout=60)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertRegex(r.stderr, r"^%s:5:\d+: key 'cascadeclient\.relayapi\.%s': rule '%s'"
                                 % (re.escape(path), key, re.escape(rule)))

    def test_section_not_a_mapping(self):
        text = self.dsn_line() + 'http: "127.0.0.1:8080"\n'
        self.assert_config_error(text, "http", 3, cols=(1, 7))

    def test_missing_dsn(self):
        path, rc, out, err = self.check("log:\n  level: info\n")
        self.assertEqual(rc, 2, err)
        self.assertIn(path, err)
        self.assertIn("database.dsn", err)

    def test_yaml_syntax_error(self):
        path, rc, out, err = self.check(self.dsn_line() + "  poolsize: [1, 2\n")
        self.assertEqual(rc, 2, err)
        self.assertRegex(err, r"^%s:\d+:\d+: " % re.escape(path))

    def test_missing_file(self):
        path = os.path.join(self.tmp, "does-not-exist.yaml")
        rc, out, err = harness.run_controller(["-c", path, "--check"])
        self.assertEqual(rc, 2, err)
        self.assertIn(path, err)


class StartupTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.require_controller()
        cls.pg = harness.shared_cluster()
        cls.db = cls.pg.create_database()

    @classmethod
    def tearDownClass(cls):
        cls.pg.drop_database(cls.db)

    def test_sigterm_exits_zero(self):
        ctl = harness.Controller(self.pg.dsn(self.db))
        self.assertEqual(ctl.request("GET", "/readyz")[0], 200)
        self.assertEqual(ctl.stop(sig=signal.SIGTERM), 0)

    def test_sigint_exits_zero(self):
        ctl = harness.Controller(self.pg.dsn(self.db))
        self.assertEqual(ctl.stop(sig=signal.SIGINT), 0)

    def test_env_overrides_dsn_and_admin_token(self):
        env_token = "env-token-" + harness.random_suffix(16)
        bad_dsn = "host=/nonexistent-cascade port=1 dbname=nope user=nobody"
        ctl = harness.Controller(bad_dsn, env={"CASCADE_DB_DSN": self.pg.dsn(self.db),
                                               "CASCADE_ADMIN_TOKEN": env_token})
        try:
            self.assertEqual(ctl.request("GET", "/readyz")[0], 200)
            st, _, body = ctl.request("GET", "/api/cascade/clients", token=env_token)
            self.assertEqual(st, 200, body)
            st, _, body = ctl.request("GET", "/api/cascade/clients", token=ctl.admin_token)
            self.assertEqual(st, 401, "the config's admintoken must lose to CASCADE_ADMIN_TOKEN")
            log = ctl.log_text()
            self.assertNotIn(env_token, log)
            self.assertNotIn(ctl.admin_token, log)
        finally:
            ctl.stop()

    def test_database_unreachable_exits_1(self):
        dead = tempfile.mkdtemp(prefix="cascade-nodb-")
        try:
            ctl = harness.Controller("host=%s port=5999 dbname=x user=postgres connect_timeout=1"
                                     % dead, config={"database": {"timeout": 500}}, start=False)
            ctl.start(wait=False)
            t0 = time.monotonic()
            rc = ctl.wait_exit(timeout=30)
            took = time.monotonic() - t0
            self.assertEqual(rc, 1, ctl.log_tail())
            # It retries for a while (the controller allows up to 10 x database.timeout, so a pod
            # may start before its database), then gives up.
            self.assertGreaterEqual(took, 0.45, "gave up after %.2fs, before retrying" % took)
            self.assertLess(took, 10, "still retrying after %.1fs with database.timeout 500 ms" % took)
            ctl.check_log(expected_errors=[r"."])  # errors expected; still no sanitizer reports
        finally:
            shutil.rmtree(dead, ignore_errors=True)

    def test_port_in_use_exits_1(self):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", 0))
            s.listen(1)
            port = s.getsockname()[1]
            ctl = harness.Controller(self.pg.dsn(self.db), start=False)
            ctl.port = port
            ctl.write_config()
            env = harness.sanitizer_env()
            with open(ctl.log_path, "wb") as log:
                p = subprocess.Popen([harness.controller_path(), "-c", ctl.config_path],
                                     stdout=log, stderr=subprocess.STDOUT, env=env)
                try:
                    rc = p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
                    self.fail("controller kept running on a port in use\n" + ctl.log_tail())
            self.assertEqual(rc, 1, ctl.log_tail())
            ctl.check_log(expected_errors=[r"."])

    def test_log_level_info_hides_debug(self):
        ctl = harness.Controller(self.pg.dsn(self.db), config={"log": {"level": "info"}})
        try:
            for _ in range(3):
                self.assertEqual(ctl.api("GET", "/api/cascade/clients")[0], 200)
        finally:
            ctl.stop()
        self.assertNotRegex(ctl.log_text(), r"(?m)^\S+ debug ")

    def test_log_level_debug_logs_requests(self):
        ctl = harness.Controller(self.pg.dsn(self.db), config={"log": {"level": "debug"}})
        try:
            self.assertEqual(ctl.api("GET", "/api/cascade/clients?page=1")[0], 200)
            harness.wait_for(lambda: re.search(r"(?m)^\S+ debug .*/api/cascade/clients",
                                               ctl.log_text()), 5, what="a debug request line")
        finally:
            ctl.stop()

    @unittest.skipUnless(shutil.which("openssl"), "openssl not installed")
    def test_https_when_cert_and_key_set(self):
        import http.client
        import ssl
        d = tempfile.mkdtemp(prefix="cascade-tls-")
        try:
            cert, key = os.path.join(d, "c.pem"), os.path.join(d, "k.pem")
            subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                            "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                            "-days", "1", "-subj", "/CN=127.0.0.1"], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            ctl = harness.Controller(self.pg.dsn(self.db), start=False,
                                     config={"http": {"tls": {"cert": cert, "key": key}}})
            ctl.start(wait=False)
            ctx = ssl.create_default_context(cafile=cert)
            ctx.check_hostname = False

            def get(path):
                c = http.client.HTTPSConnection("127.0.0.1", ctl.port, context=ctx, timeout=5)
                try:
                    c.request("GET", path)
                    r = c.getresponse()
                    return r.status, r.read()
                finally:
                    c.close()
            try:
                def healthy():
                    if ctl.proc.poll() is not None:
                        raise AssertionError("controller exited\n" + ctl.log_tail())
                    try:
                        return get("/healthz")[0] == 200
                    except OSError:
                        return False
                harness.wait_for(healthy, 30, what="HTTPS /healthz")
                # plain HTTP on the TLS port must not be served
                try:
                    st = ctl.request("GET", "/healthz", timeout=5)[0]
                except Exception:  # noqa: BLE001 - any failure is fine here
                    st = None
                self.assertNotEqual(st, 200)
            finally:
                ctl.stop(expected_errors=[r"(?i)tls|handshake|ssl"])
        finally:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
