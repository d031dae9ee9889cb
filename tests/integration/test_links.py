#!/usr/bin/env python3
"""QUIC links between real agents under one real controller (docs/protocol.md, "Links").

A three-level chain HQ <- region <- edge: both links come up with mutual TLS (agent status and
controller topology with RTT), the link test moves bytes intact, a child the topology does not
assign is refused (logged and counted), a deleted child loses its link at once, moving the edge
to HQ re-links it live, and kill -9 of the middle agent: both links are back soon after it
restarts (its data directory, hence its key, persists)."""

import re
import time
import unittest

import harness

CLIENTS = "/api/cascade/clients"
HEARTBEAT_MS = 500
CTL_CONFIG = {"control": {"heartbeat": HEARTBEAT_MS, "polltimeout": 3000}}
# Fast failure detection on loopback: a vanished peer is noticed after quic.idletimeout.
LINK_CONFIG = {
    "quic": {"idletimeout": "1s", "keepalive": "200ms", "handshaketimeout": "1s"},
    "cascadeclient": {"reconnectmax": "500ms"},
}
AGENT_ERRORS = [r"(?i)revoked|deleted|secret changed|authentication failed"]



class LinkTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.require_controller()
        cls.pg = harness.shared_cluster()

    def setUp(self):
        self.db = self.pg.create_database()
        self.agents = []
        self.ctl = harness.Controller(self.pg.dsn(self.db), config=CTL_CONFIG)

    def tearDown(self):
        for a in self.agents:
            if a.proc is not None:
                a.stop(expected_errors=AGENT_ERRORS)
        if self.ctl is not None and self.ctl.proc is not None:
            self.ctl.stop()

    # helpers -------------------------------------------------------------------------------------

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

    def links(self, a):
        return a.status()["links"]

    def node(self, node_id):
        return harness.envelope_ok(self, self.ctl.api("GET", "%s/%d" % (CLIENTS, node_id)))

    def link(self, a, role, peer_id=None):
        for l in self.links(a):
            if l["role"] == role and (peer_id is None or l["peer_id"] == peer_id):
                return l
        return None

    def link_up(self, a, role, peer_id):
        l = self.link(a, role, peer_id)
        return l is not None and l["state"] == "up" and l

    def topology(self):
        return harness.envelope_ok(self, self.ctl.api("GET", "/api/cascade/topology"))

    def topo_node(self, name, tree=None):
        for n in (self.topology() if tree is None else tree):
            if n["name"] == name:
                return n
            found = self.topo_node(name, n["children"])
            if found:
                return found
        return None

    def metric(self, a, line_re):
        st, _, text = a.admin_request("GET", "/metrics")
        self.assertEqual(st, 200)
        m = re.search(line_re + r" (\d+)", text)
        return int(m.group(1)) if m else None

    def chain(self, **config):
        """HQ (listening on every address) <- region <- edge, all assigned over REST."""
        self.hq_port, self.region_port = harness.free_udp_port(), harness.free_udp_port()
        self.hq_n = self.create("hq")
        self.region_n = self.create("region", parent=self.hq_n["id"])
        self.edge_n = self.create("edge", parent=self.region_n["id"])
        self.t_agents = time.monotonic()
        self.hq = self.agent("hq", cascadeserver={"quic": {"listenaddr": ":%d" % self.hq_port}},
                             **config)
        self.region = self.agent("region", cascadeserver={
            "quic": {"listenaddr": "127.0.0.1:%d" % self.region_port}}, **config)
        self.edge = self.agent("edge", **config)
        return self.wait_chain_up(20)

    def wait_chain_up(self, timeout):
        t0 = self.t_agents
        harness.wait_for(lambda: self.link_up(self.region, "parent", self.hq_n["id"]), timeout,
                         interval=0.02, what="region -> hq link up")
        t1 = time.monotonic()
        harness.wait_for(lambda: self.link_up(self.region, "child", self.edge_n["id"]), timeout,
                         interval=0.02, what="edge -> region link up")
        return t1 - t0, time.monotonic() - t0

    # tests -----------------------------------------------------------------------------------------

    def test_congestion_controller_is_the_dialers_choice(self):
        # quic.cc auto (the default): the child measures the path before it
        # dials; on loopback, far under quic.lanrtt, both ends use cubic. A
        # child with quic.lanrtt 0 dials as to a far peer: both ends bbr.
        hq_port = harness.free_udp_port()
        hq_n = self.create("hq")
        near_n = self.create("near", parent=hq_n["id"])
        far_n = self.create("far", parent=hq_n["id"])
        hq = self.agent("hq", cascadeserver={"quic": {"listenaddr": "127.0.0.1:%d" % hq_port}})
        near = self.agent("near")
        far = self.agent("far", quic={"lanrtt": "0s"})
        for a, n in ((near, near_n), (far, far_n)):
            harness.wait_for(lambda a=a: self.link_up(a, "parent", hq_n["id"]), 20,
                             what="%s -> hq link up" % n["name"])
            harness.wait_for(lambda n=n: self.link_up(hq, "child", n["id"]), 5,
                             what="hq sees %s" % n["name"])
        self.assertEqual(self.link(near, "parent")["cc"], "cubic")
        self.assertEqual(self.link(hq, "child", near_n["id"])["cc"], "cubic")
        self.assertEqual(self.link(far, "parent")["cc"], "bbr")
        self.assertEqual(self.link(hq, "child", far_n["id"])["cc"], "bbr")

    def test_chain_links_up_with_mutual_tls(self):
        t_region, t_edge = self.chain()
        print("\nchain: region->hq up %.3f s, edge->region up %.3f s after the agents started"
              % (t_region, t_edge))
        # both ends see the link, with the peer the controller named
        up = self.link_up(self.region, "parent", self.hq_n["id"])
        self.assertEqual(up["peer_name"], "hq")
        self.assertEqual(up["address"], "127.0.0.1:%d" % self.hq_port)  # ":port" completed
        self.assertIsNone(up["last_error"])
        self.assertRegex(up["since"], harness.TIME_RE)
        harness.wait_for(lambda: self.link_up(self.hq, "child", self.region_n["id"]), 5,
                         what="hq sees region")
        harness.wait_for(lambda: self.link_up(self.region, "child", self.edge_n["id"]), 5,
                         what="region sees edge")
        rtt = harness.wait_for(lambda: self.link_up(self.edge, "parent", self.region_n["id"])
                               ["rtt_ms"], 5, what="edge RTT sample")
        self.assertGreater(rtt, 0)
        self.assertLess(rtt, 100)
        self.assertEqual(self.metric(self.hq, r'cascade_links_up\{role="child"\}'), 1)
        self.assertEqual(self.metric(self.region, r'cascade_links_up\{role="parent"\}'), 1)
        self.assertEqual(self.metric(self.region, r'cascade_links_up\{role="child"\}'), 1)
        # the controller shows each link, with RTT, from the heartbeats
        def topo_links_up():
            r, e = self.topo_node("region"), self.topo_node("edge")
            return (r["link"] and r["link"]["up"] and e["link"] and e["link"]["up"]
                    and r["link"]["rtt_ms"] is not None and (r, e))
        r, e = harness.wait_for(topo_links_up, 10, interval=0.1, what="links in the topology")
        self.assertGreater(e["link"]["rtt_ms"], 0)
        self.assertRegex(e["link"]["since"], harness.TIME_RE)
        self.assertNotIn("link", self.topo_node("hq"))  # the root has no parent link
        # the link test moves bytes over the real link, checked byte for byte
        n = 32 * 1024 * 1024
        st, _, body = self.edge.admin_request("POST", "/api/cascade/linktest?bytes=%d" % n)
        self.assertEqual(st, 202, body)
        st, _, body = self.edge.admin_request("POST", "/api/cascade/linktest?bytes=%d" % n)
        self.assertEqual(st, 409, body)  # one at a time
        res = harness.wait_for(lambda: (lambda d: d["state"] != "running" and d)(
            self.edge.admin_request("GET", "/api/cascade/linktest")[2]["data"]), 60, interval=0.1,
            what="link test done")
        self.assertEqual(res["state"], "done", res)
        self.assertEqual(res["received"], n)
        self.assertGreater(res["goodput_mbps"], 0)
        print("\nlink test: %d bytes in %.3f s, %.0f Mbit/s" % (n, res["elapsed_s"],
                                                              res["goodput_mbps"]))
        st, _, body = self.edge.admin_request("POST", "/api/cascade/linktest?bytes=%d" % (2 ** 30 + 1))
        self.assertEqual(st, 400, body)
        st, _, body = self.hq.admin_request("POST", "/api/cascade/linktest?bytes=1000")
        self.assertEqual(st, 409, body)  # hq has no parent link

    def test_unassigned_child_is_refused(self):
        self.chain()
        # Its file names HQ's address. Until the controller places it there, HQ refuses it
        # (0x201), whatever certificate of the CA it shows: the child's dial is only a probe
        # that learns which node answers at the address (docs/protocol.md, "Links").
        rogue_n = self.create("rogue")
        rogue = self.agent("rogue", cascadeclient={
            "enable": True, "server": "127.0.0.1:%d" % self.hq_port})
        harness.wait_for(lambda: (self.metric(self.hq, r'cascade_link_refused_total\{reason='
                                              r'"not_assigned"\}') or 0) >= 1, 15,
                         what="refusal counted on hq")
        self.assertRegex(self.hq.log_text(),
                         r"child refused \(0x201\): node %d is not a child" % rogue_n["id"])
        # The probe found HQ there: an operator-created node is then placed under it.
        harness.wait_for(lambda: self.node(rogue_n["id"])["parent_id"] == self.hq_n["id"], 15,
                         what="placed under the node that answers at its static address")
        harness.wait_for(lambda: self.link_up(rogue, "parent", self.hq_n["id"]), 15,
                         what="link up once assigned")
        self.assertRegex(rogue.log_text(), r"node %d answers at the static parent address"
                         % self.hq_n["id"])
        # the legitimate child is untouched
        self.assertTrue(self.link_up(self.hq, "child", self.region_n["id"]))

    def test_deleted_child_loses_its_link(self):
        self.chain()
        harness.envelope_ok(self, self.ctl.api("DELETE", "%s/%d" % (CLIENTS, self.edge_n["id"])))
        t0 = time.monotonic()
        harness.wait_for(lambda: not self.link_up(self.region, "child", self.edge_n["id"]), 5,
                         interval=0.02, what="edge link closed by region")
        dt = time.monotonic() - t0
        print("\ndeleted child: link closed %.3f s after DELETE" % dt)
        self.assertLess(dt, 1.5)
        harness.wait_for(lambda: self.link(self.edge, "parent")["state"] != "up", 5,
                         what="edge sees it")

    def test_move_edge_to_hq_relinks_live(self):
        self.chain()
        pid = self.edge.proc.pid
        harness.envelope_ok(self, self.ctl.api("PUT", "%s/%d" % (CLIENTS, self.edge_n["id"]),
                                               {"parent_id": self.hq_n["id"]}))
        t0 = time.monotonic()
        harness.wait_for(lambda: self.link_up(self.edge, "parent", self.hq_n["id"]), 10,
                         interval=0.02, what="edge linked to hq")
        print("\nmove: edge linked to hq %.3f s after PUT" % (time.monotonic() - t0))
        harness.wait_for(lambda: self.link_up(self.hq, "child", self.edge_n["id"]), 5,
                         what="hq sees edge")
        harness.wait_for(lambda: self.link(self.region, "child", self.edge_n["id"]) is None, 5,
                         what="region forgets edge")
        self.assertEqual(self.edge.proc.pid, pid)
        self.assertTrue(self.link_up(self.region, "parent", self.hq_n["id"]))

    def test_middle_kill9_and_restart(self):
        self.middle_kill9_and_restart()

    def test_middle_kill9_and_restart_default_timeouts(self):
        # Without a short idle timeout: the restarted region answers the edge's next keep-alive
        # with a stateless reset (its reset secret comes from its key, which it keeps), so the
        # edge does not wait for quic.idletimeout (10 s) to notice.
        self.middle_kill9_and_restart(quic={"idletimeout": "10s", "keepalive": "1s",
                                            "handshaketimeout": "10s"},
                                      cascadeclient={"reconnectmax": "5s"})

    def middle_kill9_and_restart(self, **config):
        self.chain(**config)
        accepted = self.metric(self.hq, r"cascade_link_accepted_total")
        self.region.proc.kill()
        self.region.proc.wait()
        t_start = time.monotonic()
        self.region.restart_after_kill()  # same config, ports and data directory (same key)
        # The new process's own view: both its links are new ones.
        t_parent = harness.wait_for(
            lambda: self.link_up(self.region, "parent", self.hq_n["id"]) and time.monotonic(),
            10, interval=0.01, what="region -> hq link up again") - t_start
        t_child = harness.wait_for(
            lambda: self.link_up(self.region, "child", self.edge_n["id"]) and time.monotonic(),
            10, interval=0.01, what="edge -> region link up again") - t_start
        print("\nmiddle restart: region->hq up %.3f s, edge->region up %.3f s after the process "
              "was started" % (t_parent, t_child))
        # hq took the new link in place of the dead one
        self.assertEqual(self.metric(self.hq, r"cascade_link_accepted_total"), accepted + 1)
        harness.wait_for(lambda: self.link_up(self.hq, "child", self.region_n["id"]), 5,
                         what="hq sees region")
        self.assertLess(t_parent, 2.0)
        self.assertLess(t_child, 2.0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
