#!/usr/bin/env python3
"""Configuration from the environment (docs/configuration.md, "Environment").

Keys set only by CASCADE_AGENT_… / CASCADE_CONTROLLER_… variables take effect in the running
programs (the node name from the environment, as Kubernetes' downward API gives spec.nodeName;
the controller's heartbeat period, seen by the agent); a bad variable (unknown name, wrong type,
out of bounds) stops the program with exit code 2 and a line naming the variable; --check
validates file and environment together and names, never shows, the variables it used."""

import os
import subprocess
import tempfile
import unittest

import harness

CLIENTS = "/api/cascade/clients"


def run(binary, args, env):
    """Run |binary| to completion with the harness's environment plus |env|."""
    e = harness.sanitizer_env()  # without the caller's own configuration variables
    e.update(env)
    r = subprocess.run([binary] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env=e, timeout=60, text=True, errors="replace")
    return r.returncode, r.stdout, r.stderr


class EnvConfigTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.require_controller()
        cls.pg = harness.shared_cluster()

    def setUp(self):
        self.procs = []
        self.tmp = tempfile.mkdtemp(prefix="cascade-env-")

    def tearDown(self):
        for p in reversed(self.procs):
            if p.proc is not None:
                p.stop()

    def write(self, name, text):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def agent_check(self, text, env):
        return run(harness.agent_path(), ["-c", self.write("agent.yaml", text), "--check"], env)

    def ctl_check(self, text, env):
        return run(harness.controller_path(), ["-c", self.write("ctl.yaml", text), "--check"],
                   env)

    # keys that only the environment sets, in running programs -----------------------------
    def test_keys_only_from_the_environment_take_effect(self):
        dsn = self.pg.dsn(self.pg.create_database())
        # the controller's DSN and heartbeat come from the environment only
        ctl = harness.Controller("unused", config={"database": {"dsn": harness.DELETE}},
                                 env={"CASCADE_CONTROLLER_DATABASE_DSN": dsn,
                                      "CASCADE_CONTROLLER_CONTROL_HEARTBEAT": "700"})
        self.procs.append(ctl)
        node = harness.envelope_ok(self, ctl.api("POST", CLIENTS, {
            "name": "k8s-worker-3", "secret": "k8s-worker-secret"}), 201)
        # the agent's name and secret come from the environment only (the file has neither)
        a = harness.Agent(ctl, "file-name", "k8s-worker-secret",
                          config={"node": {"name": harness.DELETE, "secret": harness.DELETE}},
                          env={"CASCADE_AGENT_NODE_NAME": "k8s-worker-3",
                               "CASCADE_AGENT_NODE_SECRET": "k8s-worker-secret"})
        self.procs.append(a)
        with open(a.config_path) as f:
            text = f.read()
        self.assertNotIn("name:", text)
        self.assertNotIn("secret:", text)
        harness.wait_for(lambda: harness.envelope_ok(self, ctl.api(
            "GET", "%s/%d" % (CLIENTS, node["id"])))["online"], 20,
            what="the node named by the environment online")
        self.assertRegex(a.log_text(), r"authenticated as node %d, heartbeat every 700 ms"
                         % node["id"])
        self.assertNotIn("k8s-worker-secret", a.log_text())

    # bad variables ---------------------------------------------------------------------------
    def agent_file(self, extra=""):
        return ('node: {secret: "file-secret-123"}\n'
                'controller: {url: "tcp://127.0.0.1:1"}\n' + extra)

    def test_bad_variable_exits_2_naming_it(self):
        cases = [
            ({"CASCADE_AGENT_QUIC_MAXSTREAMS": "0"},
             "CASCADE_AGENT_QUIC_MAXSTREAMS: key 'quic.maxstreams': must be between 1 and 100000"),
            ({"CASCADE_AGENT_CASCADECLIENT_ENABLE": "maybe"},
             "CASCADE_AGENT_CASCADECLIENT_ENABLE: key 'cascadeclient.enable': expected a boolean"),
            ({"CASCADE_AGENT_QUIC_IDLETIMEOUT": "10"},
             "CASCADE_AGENT_QUIC_IDLETIMEOUT: key 'quic.idletimeout': expected a duration"),
            ({"CASCADE_AGENT_NODE_NAMEE": "x"},
             "CASCADE_AGENT_NODE_NAMEE: unknown configuration variable"),
            ({"CASCADE_AGENT_CASCADECLIENT_ONSUB_PULL": "live=m7s://$0"},
             "CASCADE_AGENT_CASCADECLIENT_ONSUB_PULL: key 'cascadeclient.onsub.pull': expected a "
             "YAML flow mapping"),
            ({"CASCADE_AGENT_NODE_ADVERTISE": "bad_host:44944",
              "CASCADE_AGENT_CASCADESERVER_QUIC_LISTENADDR": ":44944"},
             "CASCADE_AGENT_NODE_ADVERTISE: key 'node.advertise': 'bad_host:44944': neither an IP "
             "address nor a valid host name"),
        ]
        for env, want in cases:
            rc, out, err = self.agent_check(self.agent_file(), env)
            self.assertEqual(rc, 2, (env, out, err))
            self.assertIn(want, err)
            self.assertNotRegex(err, harness.SANITIZER_RE)
        # the controller likewise
        rc, _, err = self.ctl_check("database: {dsn: \"host=/nonexistent\"}\n",
                                    {"CASCADE_CONTROLLER_LOG_LEVEL": "loud"})
        self.assertEqual(rc, 2, err)
        self.assertIn("CASCADE_CONTROLLER_LOG_LEVEL: key 'log.level': expected one of", err)
        # a secret's value is never shown, even when it is what is wrong
        rc, _, err = self.ctl_check("database: {dsn: \"host=/nonexistent\"}\n",
                                    {"CASCADE_CONTROLLER_AUTH_ADMINTOKEN": "short-secret"})
        self.assertEqual(rc, 2, err)
        self.assertIn("CASCADE_CONTROLLER_AUTH_ADMINTOKEN: key 'auth.admintoken': must be", err)
        self.assertNotIn("short-secret", err)

    def test_other_variables_are_not_configuration(self):
        # Variables without the program's prefix are scripts' and tests' own (CASCADE_BIN_DIR),
        # or the other program's.
        rc, out, err = self.agent_check(self.agent_file(), {
            "CASCADE_BIN_DIR": "/x", "CASCADE_SOMETHING_ELSE": "1",
            "CASCADE_CONTROLLER_NOT_AN_AGENT_KEY": "1"})
        self.assertEqual(rc, 0, err)
        self.assertNotIn("environment:", out)

    # --check with the environment -----------------------------------------------------------
    def test_check_validates_file_and_environment(self):
        secret = "secret-only-in-env-0123"
        no_secret = 'controller: {url: "tcp://127.0.0.1:1"}\n'
        rc, out, err = self.agent_check(no_secret, {})
        self.assertEqual(rc, 2, out)
        self.assertIn("key 'node.secret': required", err)
        rc, out, err = self.agent_check(no_secret, {"CASCADE_AGENT_NODE_SECRET": secret,
                                                    "CASCADE_AGENT_LOG_LEVEL": "warn"})
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"agent\.yaml: ok\n")
        self.assertIn("environment: CASCADE_AGENT_", out)
        self.assertIn("CASCADE_AGENT_NODE_SECRET", out)
        self.assertIn("CASCADE_AGENT_LOG_LEVEL", out)
        self.assertNotIn(secret, out + err)
        # the older name still works, and is listed the same way
        rc, out, err = self.agent_check(no_secret, {"CASCADE_NODE_SECRET": secret})
        self.assertEqual(rc, 0, err)
        self.assertIn("environment: CASCADE_NODE_SECRET", out)
        self.assertNotIn(secret, out)
        # a check that spans keys sees the merged values
        rc, _, err = self.agent_check(self.agent_file("quic: {idletimeout: 2s}\n"),
                                      {"CASCADE_AGENT_QUIC_KEEPALIVE": "5s"})
        self.assertEqual(rc, 2)
        self.assertIn("key 'quic.keepalive': must be below quic.idletimeout", err)
        # the controller: the required DSN from the environment only
        rc, out, err = self.ctl_check("log: {level: info}\n", {})
        self.assertEqual(rc, 2)
        rc, out, err = self.ctl_check("log: {level: info}\n", {
            "CASCADE_CONTROLLER_DATABASE_DSN": "host=/nonexistent password=pw-in-env"})
        self.assertEqual(rc, 0, err)
        self.assertIn("environment: CASCADE_CONTROLLER_DATABASE_DSN", out)
        self.assertNotIn("pw-in-env", out + err)

    def test_advertise_in_file_names_line_and_key(self):
        rc, _, err = self.agent_check(self.agent_file(
            'cascadeserver: {quic: {listenaddr: ":44944"}}\n'),
            {"CASCADE_AGENT_NODE_ADVERTISE": ""})
        self.assertEqual(rc, 0, err)  # empty: unset
        text = ('node:\n  secret: "file-secret-123"\n  advertise: "0.0.0.0:44944"\n'
                'controller: {url: "tcp://127.0.0.1:1"}\n'
                'cascadeserver: {quic: {listenaddr: ":44944"}}\n')
        rc, _, err = self.agent_check(text, {})
        self.assertEqual(rc, 2)
        self.assertRegex(err, r"agent\.yaml:3:14: key 'node\.advertise': '0\.0\.0\.0:44944': a "
                              r"wildcard address, which nobody can dial")


if __name__ == "__main__":
    unittest.main(verbosity=2)
