#!/usr/bin/env python3
"""The control channel end to end: a real controller, real cascade-agent processes.

Registration both ways, autoregister off, a wrong secret, the stored row, online/offline,
kill -9 of the controller, rules reaching the agent with their generation, deletion closing the
session, the topology."""

import os
import signal
import stat
import time
import unittest

import harness

CLIENTS = "/api/cascade/clients"
HEARTBEAT_MS = 500
CTL_CONFIG = {"control": {"heartbeat": HEARTBEAT_MS, "polltimeout": 3000},
              "log": {"level": "debug"}}
# Expected at error level in agent logs: refused authentications and lost controllers.
AGENT_ERRORS = [r"(?i)authentication failed", r"(?i)revoked|deleted|secret changed"]


class AgentTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.require_controller()
        cls.pg = harness.shared_cluster()

    def setUp(self):
        self.db = self.pg.create_database()
        self.agents = []
        self.ctl = None

    def tearDown(self):
        for a in self.agents:
            if a.proc is not None:
                a.stop(expected_errors=AGENT_ERRORS)
        if self.ctl is not None and self.ctl.proc is not None:
            self.ctl.stop(expected_errors=[r"(?i)authentication failed"])

    def controller(self, **extra):
        self.ctl = harness.Controller(self.pg.dsn(self.db),
                                      config=harness.deep_merge(CTL_CONFIG, extra))
        return self.ctl

    def agent(self, name, secret, **config):
        a = harness.Agent(self.ctl, name, secret, config=config)
        self.agents.append(a)
        return a

    def node(self, node_id):
        return harness.envelope_ok(self, self.ctl.api("GET", "%s/%d" % (CLIENTS, node_id)))

    def nodes(self):
        st, _, body = self.ctl.api("GET", CLIENTS + "?size=1000")
        self.assertEqual(st, 200, body)
        return {n["name"]: n for n in body["data"]}

    def wait_online(self, name, online=True, timeout=15):
        return harness.wait_for(lambda: self.nodes().get(name, {}).get("online") is online and
                                self.nodes()[name], timeout, interval=0.1,
                                what="%s online=%s" % (name, online))

    def events(self, action):
        st, _, body = self.ctl.api("GET", "/api/cascade/events?size=1000")
        self.assertEqual(st, 200, body)
        return [e for e in body["data"] if e["action"] == action]

    # ---------------------------------------------------------------------------------------------

    def test_rest_created_node_connects(self):
        self.controller()
        made = harness.envelope_ok(self, self.ctl.api("POST", CLIENTS, {
            "name": "edge-a1", "secret": "edge-a1-secret"}), 201)
        a = self.agent("edge-a1", "edge-a1-secret")
        n = self.wait_online("edge-a1")
        self.assertEqual(n["id"], made["id"])
        self.assertEqual(n["ip"], "127.0.0.1")
        self.assertIsNotNone(n["last_seen"])
        st = harness.wait_for(lambda: a.status()["controller"]["state"] == "running" and a.status(),
                              10, what="agent running")
        self.assertEqual(st["instance_id"], made["id"])
        self.assertEqual(st["name"], "edge-a1")
        # the certificate the CA issued, and the key kept private
        harness.wait_for(lambda: a.status().get("certificate"), 10, what="certificate")
        key = os.path.join(a.datadir, "node.key")
        self.assertEqual(stat.S_IMODE(os.stat(key).st_mode), 0o600)
        self.assertTrue(os.path.exists(os.path.join(a.datadir, "node.crt")))
        self.assertEqual(len(self.events("node.connect")), 1)
        self.assertEqual(len(self.events("cert.issue")), 1)
        st, _, text = a.admin_request("GET", "/metrics")
        self.assertEqual(st, 200)
        self.assertIn('cascade_control_state{state="running"} 1', text)
        self.assertIn("cascade_control_bad_messages_total 0", text)
        self.assertIn("cascade_streams 0", text)
        # no duplicate row after an agent restart: the same identity comes back
        a.stop(expected_errors=AGENT_ERRORS)
        a.start()
        harness.wait_for(lambda: len(self.events("node.connect")) == 2, 15, what="reconnect")
        self.assertEqual(list(self.nodes()), ["edge-a1"])

    def test_autoregister_stores_only_a_verifier(self):
        self.controller()
        self.agent("edge-new", "a-brand-new-secret")
        n = self.wait_online("edge-new")
        rows = self.pg.query("SELECT verifier FROM instances WHERE id = %d" % n["id"], db=self.db)
        self.assertTrue(rows[0][0].startswith("SCRAM-SHA-256$4096:"), rows)
        dump = self.pg.psql("SELECT row_to_json(t)::text FROM instances t", db=self.db)
        self.assertNotIn("a-brand-new-secret", dump)
        dump = self.pg.psql("SELECT row_to_json(t)::text FROM events t", db=self.db)
        self.assertNotIn("a-brand-new-secret", dump)
        self.assertEqual(len(self.events("node.register")), 1)
        self.assertNotIn("a-brand-new-secret", self.ctl.log_text())

    def test_autoregister_off_refuses_unknown(self):
        self.controller(cascadeserver={"autoregister": False})
        a = self.agent("stranger", "stranger-secret")
        harness.wait_for(lambda: self.events("auth.failure"), 15, what="auth.failure event")
        self.assertEqual(self.nodes(), {})
        err = a.status()["controller"]["last_error"] or ""
        self.assertIn("authentication failed", err)
        self.assertNotEqual(a.status()["controller"]["state"], "running")

    def test_wrong_secret_is_refused_and_recorded(self):
        self.controller()
        made = harness.envelope_ok(self, self.ctl.api("POST", CLIENTS, {
            "name": "edge-b1", "secret": "the-right-secret"}), 201)
        a = self.agent("edge-b1", "the-wrong-secret")
        ev = harness.wait_for(lambda: self.events("auth.failure"), 15, what="auth.failure event")
        self.assertEqual(ev[0]["node"], made["id"])
        self.assertEqual(ev[0]["source"], "127.0.0.1")
        self.assertFalse(self.node(made["id"])["online"])
        self.assertNotEqual(a.status()["controller"]["state"], "running")
        # the verifier was not replaced by the agent's Register
        self.assertFalse(self.node(made["id"])["online"])

    def test_offline_after_agent_killed(self):
        self.controller()
        a = self.agent("edge-c1", "edge-c1-secret")
        self.wait_online("edge-c1")
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait()
        t0 = time.monotonic()
        self.wait_online("edge-c1", online=False, timeout=3 * HEARTBEAT_MS / 1000 + 5)
        self.assertLess(time.monotonic() - t0, 3 * HEARTBEAT_MS / 1000 + 5)
        self.assertEqual(len(self.events("node.disconnect")), 1)
        a.proc = None

    def test_controller_kill9_and_restart(self):
        self.controller()
        agents = [self.agent("edge-r%d" % i, "restart-secret-%d" % i) for i in range(3)]
        for a in agents:
            self.wait_online(a.name)
        pids = [a.proc.pid for a in agents]
        self.ctl.restart_after_kill()
        t0 = time.monotonic()
        for a in agents:
            self.wait_online(a.name, timeout=15)
        self.assertLess(time.monotonic() - t0, 15)
        self.assertEqual([a.proc.pid for a in agents], pids, "agents were restarted")
        self.assertEqual(sorted(self.nodes()), ["edge-r0", "edge-r1", "edge-r2"])

    def test_rules_reach_the_agent(self):
        self.controller()
        a = self.agent("edge-d1", "edge-d1-secret")
        n = self.wait_online("edge-d1")
        harness.wait_for(lambda: self.node(n["id"])["config_generation"]["applied"] ==
                         self.node(n["id"])["config_generation"]["desired"], 10,
                         what="first generation applied")
        upd = harness.envelope_ok(self, self.ctl.api("PUT", "%s/%d" % (CLIENTS, n["id"]), {
            "relayapi": {"allow": ["/api/"], "deny": ["/api/admin/"]},
            "onsub": {"pull": {"live/(.*)": "m7s://live/$1"}},
            "autopush": True}))
        gen = upd["config_generation"]["desired"]
        self.assertGreater(gen, n["config_generation"]["desired"])

        def applied():
            st = a.status()
            return st["config_generation"]["applied"] == gen and st
        st = harness.wait_for(applied, 5, what="generation %d on the agent" % gen)
        self.assertEqual(st["rules"]["relayapi"], {"allow": ["/api/"], "deny": ["/api/admin/"]})
        self.assertEqual(st["rules"]["onsub"]["pull"], {"live/(.*)": "m7s://live/$1"})
        self.assertTrue(st["rules"]["autopush"])
        harness.wait_for(lambda: self.node(n["id"])["config_generation"]["applied"] == gen, 5,
                         what="applied generation acknowledged")
        self.assertTrue(self.events("config.applied"))
        # an invalid pattern never reaches the agent
        bad = self.ctl.api("PUT", "%s/%d" % (CLIENTS, n["id"]), {"onsub": {"pull": {"(": "m7s://x"}}})
        body = harness.envelope_err(self, bad, 400)
        self.assertIn("missing closing parenthesis", body["message"])

    def test_stored_glob_rule_keeps_running_rules(self):
        # A rule the REST API now refuses may still be stored from before: the agent refuses
        # that generation, keeps its running rules and says so; its session stays.
        self.controller()
        a = self.agent("edge-g1", "edge-g1-secret")
        n = self.wait_online("edge-g1")
        upd = harness.envelope_ok(self, self.ctl.api("PUT", "%s/%d" % (CLIENTS, n["id"]), {
            "relayapi": {"allow": ["/api/"], "deny": ["/api/admin/"]}}))
        gen = upd["config_generation"]["desired"]
        harness.wait_for(lambda: a.status()["config_generation"]["applied"] == gen, 10,
                         what="generation %d on the agent" % gen)
        since = a.status()["controller"]["connected_since"]
        self.pg.psql("UPDATE instances SET relay_allow = ARRAY['/api/', '/api/cascade/*'], "
                     "config_generation = config_generation + 1 WHERE id = %d" % n["id"],
                     db=self.db)
        harness.wait_for(lambda: "refused, previous rules kept: relayapi.allow rule "
                         "'/api/cascade/*'" in a.log_text(), 15, what="the agent's refusal")
        st = a.status()
        self.assertEqual(st["rules"]["relayapi"], {"allow": ["/api/"], "deny": ["/api/admin/"]})
        self.assertEqual(st["config_generation"]["applied"], gen)
        self.assertEqual((st["controller"]["state"], st["controller"]["connected_since"]),
                         ("running", since))
        a.stop(expected_errors=AGENT_ERRORS + [r"previous rules kept"])

    def test_delete_closes_session(self):
        self.controller()
        a = self.agent("edge-e1", "edge-e1-secret")
        n = self.wait_online("edge-e1")
        harness.wait_for(lambda: a.status()["controller"]["state"] == "running", 10,
                         what="agent running")
        harness.envelope_ok(self, self.ctl.api("DELETE", "%s/%d" % (CLIENTS, n["id"])))
        t0 = time.monotonic()
        harness.wait_for(lambda: a.status()["controller"]["state"] != "running", 3,
                         interval=0.05, what="session closed")
        self.assertLess(time.monotonic() - t0, 1.5)

    def test_secret_change_closes_session(self):
        self.controller()
        a = self.agent("edge-g1", "edge-g1-old-secret")
        n = self.wait_online("edge-g1")
        harness.wait_for(lambda: a.status()["controller"]["state"] == "running", 10,
                         what="agent running")
        harness.envelope_ok(self, self.ctl.api("PUT", "%s/%d" % (CLIENTS, n["id"]),
                                               {"secret": "edge-g1-new-secret"}))
        t0 = time.monotonic()
        harness.wait_for(lambda: a.status()["controller"]["state"] != "running", 3,
                         interval=0.05, what="session closed")
        self.assertLess(time.monotonic() - t0, 1.5)
        # the old secret no longer opens a session; the node shows offline
        self.wait_online("edge-g1", online=False, timeout=5)
        harness.wait_for(lambda: self.events("auth.failure"), 20, what="old secret refused")
        self.assertTrue([e for e in self.events("node.disconnect")
                         if e["detail"].get("reason") == "secret changed"])

    def test_refused_controller_certificate_is_explained(self):
        """A refused controller certificate ends the connection with the reason: the agent says
        why in its status and at warn, within seconds."""
        self.controller()
        other = harness.Controller(self.pg.dsn(self.pg.create_database()))
        try:
            ca2 = os.path.join(other.workdir, "control", "ca.crt")
            a = self.agent("edge-w1", "edge-w1-secret", controller={"ca": ca2})
            st = harness.wait_for(lambda: "certificate was refused" in (
                a.status()["controller"]["last_error"] or "") and a.status(), 8,
                what="the reason in the agent's status")
            self.assertIn("issuer is unknown", st["controller"]["last_error"])
            self.assertRegex(a.log_text(), r"warn ctlc \[edge-w1\] the controller's certificate "
                                           r"was refused: .*issuer is unknown")
            b = self.agent("edge-w2", "edge-w2-secret", controller={"servername": "not-it"})
            harness.wait_for(lambda: "does not match" in (
                b.status()["controller"]["last_error"] or ""), 8, what="a name mismatch named")
            a.stop(expected_errors=[r"certificate was refused"])
            b.stop(expected_errors=[r"certificate was refused"])
        finally:
            other.stop()

    def test_static_parent_that_comes_later(self):
        """A child that connects before its parent is linked when the parent appears."""
        self.controller()
        self.agent("edge-h1", "edge-h1-secret",
                   cascadeclient={"enable": True, "server": "127.0.0.1:44992"})
        e = self.wait_online("edge-h1")
        self.assertIsNone(self.node(e["id"])["parent_id"])
        self.agent("region-h", "region-h-secret",
                   cascadeserver={"quic": {"listenaddr": "127.0.0.1:44992"}})
        r = self.wait_online("region-h")
        harness.wait_for(lambda: self.node(e["id"])["parent_id"] == r["id"], 10,
                         what="edge linked when its parent came")

    def test_topology(self):
        self.controller()
        hq = self.agent("hq", "hq-secret-123", cascadeserver={"quic": {"listenaddr": "127.0.0.1:44990"}})
        hq_node = self.wait_online("hq")
        edge = self.agent("edge-f1", "edge-f1-secret",
                          cascadeclient={"enable": True, "server": "127.0.0.1:44990"})
        e = self.wait_online("edge-f1")
        # the static parent of the agent's own file links it under hq
        harness.wait_for(lambda: self.node(e["id"])["parent_id"] == hq_node["id"], 10,
                         what="edge linked to its static parent")
        st = harness.wait_for(lambda: edge.status()["parent"] and edge.status(), 10,
                              what="parent on the agent")
        self.assertEqual(st["parent"]["name"], "hq")
        self.assertEqual(st["parent"]["quic"], "127.0.0.1:44990")
        harness.wait_for(lambda: [c["name"] for c in hq.status()["children"]] == ["edge-f1"], 10,
                         what="child on the parent")
        topo = harness.envelope_ok(self, self.ctl.api("GET", "/api/cascade/topology"))
        # a node with a parent carries its QUIC link (test_links.py checks it in depth)
        link = topo[0]["children"][0].pop("link")
        self.assertTrue(link is None or isinstance(link["up"], bool), link)
        self.assertEqual(topo, [{"id": hq_node["id"], "name": "hq", "online": True, "children": [
            {"id": e["id"], "name": "edge-f1", "online": True, "children": []}]}])
        # a cycle is refused
        harness.envelope_err(self, self.ctl.api("PUT", "%s/%d" % (CLIENTS, hq_node["id"]),
                                                {"parent_id": e["id"]}), 400)


if __name__ == "__main__":
    unittest.main(verbosity=2)
