#!/usr/bin/env python3
"""node.advertise and host names in peer addresses (docs/configuration.md, cascade-agent notes).

A parent listening on every address advertises a host name ("localhost:PORT"); the controller
hands that name to the child it assigns, the child resolves it off its loop and the link comes
up. A parent advertising a name that does not resolve: the child's link backs off and retries,
and its status and log say why; once the parent advertises a name that resolves (restarted with
another node.advertise), the child follows at its next attempt. A parent listening on a wildcard
(":P", "0.0.0.0:P", "[::]:P") is dialled at the address its control connection comes from. A
static parent named by host name (cascadeclient.server) links too."""

import unittest

import harness

CLIENTS = "/api/cascade/clients"
LINK_CONFIG = {
    "quic": {"idletimeout": "2s", "keepalive": "200ms", "handshaketimeout": "1s"},
    "cascadeclient": {"reconnectmax": "500ms"},
}
UNRESOLVABLE = "no-such-node.invalid"  # RFC 2606: never resolves


class AdvertiseTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.require_controller()
        cls.pg = harness.shared_cluster()

    def setUp(self):
        self.agents = []
        self.ctl = harness.Controller(self.pg.dsn(self.pg.create_database()),
                                      config={"control": {"heartbeat": 500, "polltimeout": 3000}})

    def tearDown(self):
        for a in self.agents:
            if a.proc is not None:
                a.stop(expected_errors=[r"cannot resolve"])
        if self.ctl.proc is not None:
            self.ctl.stop()

    def create(self, name, parent=None):
        body = {"name": name, "secret": name + "-secret"}
        if parent is not None:
            body["parent_id"] = parent
        return harness.envelope_ok(self, self.ctl.api("POST", CLIENTS, body), 201)

    def agent(self, name, **config):
        a = harness.Agent(self.ctl, name, name + "-secret",
                          config=harness.deep_merge(LINK_CONFIG, config))
        self.agents.append(a)
        return a

    def parent_link(self, a):
        return next((l for l in a.status()["links"] if l["role"] == "parent"), None)

    def test_advertised_host_name(self):
        port = harness.free_udp_port()
        p = self.create("adv-parent")
        c = self.create("adv-child", parent=p["id"])
        self.agent("adv-parent", node={"advertise": "localhost:%d" % port},
                   cascadeserver={"quic": {"listenaddr": ":%d" % port}})
        child = self.agent("adv-child")
        harness.wait_for(lambda: child.parent_up(p["id"]), 20, interval=0.1,
                         what="the child's link to the parent's advertised name up")
        self.assertEqual(self.parent_link(child)["address"], "localhost:%d" % port)
        # the controller keeps what the node advertised
        self.assertEqual(harness.envelope_ok(self, self.ctl.api(
            "GET", "%s/%d" % (CLIENTS, c["id"])))["parent_id"], p["id"])

    def test_unresolvable_name_backs_off_and_says_why(self):
        port = harness.free_udp_port()
        p = self.create("nx-parent")
        self.create("nx-child", parent=p["id"])
        parent = self.agent("nx-parent", node={"advertise": "%s:%d" % (UNRESOLVABLE, port)},
                            cascadeserver={"quic": {"listenaddr": ":%d" % port}})
        child = self.agent("nx-child")

        def says_why():
            l = self.parent_link(child)
            return l and "cannot resolve '%s'" % UNRESOLVABLE in (l["last_error"] or "") and l
        l = harness.wait_for(says_why, 30, interval=0.1, what="link status names the lookup")
        self.assertIn(l["state"], ("backoff", "connecting"))
        self.assertEqual(l["address"], "%s:%d" % (UNRESOLVABLE, port))
        harness.wait_for(lambda: "cannot resolve '%s'" % UNRESOLVABLE in child.log_text(), 10,
                         what="the log says why")
        # the attempts go on (backoff), the log stays rate-limited
        n0 = child.log_text().count("cannot resolve")
        harness.wait_for(lambda: self.parent_link(child)["last_error"] and
                         child.log_text().count("cannot resolve") > n0, 15,
                         what="another attempt")
        self.assertLess(child.log_text().count("cannot resolve"), 12)
        # the parent comes back advertising a name that resolves: the child follows
        parent.stop()
        parent.extra_config = harness.deep_merge(parent.extra_config,
                                                 {"node": {"advertise": "localhost:%d" % port}})
        parent.start()
        harness.wait_for(lambda: child.parent_up(p["id"]), 30, interval=0.1,
                         what="link up once the name resolves")

    def test_wildcard_listen_addresses_completed(self):
        # Every spelling of "all addresses": children get the address the parent's control
        # connection comes from, never the wildcard itself.
        for i, wild in enumerate((":%d", "0.0.0.0:%d", "[::]:%d")):
            port = harness.free_udp_port()
            p = self.create("wild-parent-%d" % i)
            self.create("wild-child-%d" % i, parent=p["id"])
            self.agent("wild-parent-%d" % i,
                       cascadeserver={"quic": {"listenaddr": wild % port}})
            child = self.agent("wild-child-%d" % i)
            harness.wait_for(lambda: child.parent_up(p["id"]), 20, interval=0.1,
                             what="link to a parent on %s" % (wild % port))
            self.assertEqual(self.parent_link(child)["address"], "127.0.0.1:%d" % port)

    def test_static_parent_by_host_name(self):
        port = harness.free_udp_port()
        p = self.create("named-parent")
        c = self.create("named-child")
        self.agent("named-parent", cascadeserver={"quic": {"listenaddr": "127.0.0.1:%d" % port}})
        child = self.agent("named-child", cascadeclient={"enable": True,
                                                          "server": "localhost:%d" % port})
        harness.wait_for(lambda: child.parent_up(p["id"]), 30, interval=0.1,
                         what="static parent by name linked")
        self.assertEqual(harness.envelope_ok(self, self.ctl.api(
            "GET", "%s/%d" % (CLIENTS, c["id"])))["parent_id"], p["id"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
