#!/usr/bin/env python3
"""The seed's "simple two-level cascade" (简单两级级联), with its YAML blocks as written.

The parent's file carries the seed's 上级节点配置 block (cascadeserver.quic.listenaddr ":44944",
every address, and cascadeserver.autoregister), the child's the 下级节点配置 block
(cascadeclient.enable, server "192.168.1.100:44944", autopush) with only the parent's address
changed to a loopback one (127.0.0.2: the parent listens on every address, so the child names
one of them, not the string the parent advertises). Around them, what our design needs and the
seed does not say: the node's secret and the controller's URL and CA (the harness's keys), and
the controller with the seed's autoregister plus a join token, so the nodes register themselves
and join approved. Nobody assigns anything over the REST API: the child must find its parent at
the address its file names and the link must come up (docs/protocol.md, "Static parents")."""

import socket
import unittest

import harness

SEED_PARENT = """\
cascadeserver:
  quic:
    listenaddr: ":44944"
  autoregister: true
"""

SEED_CHILD = """\
cascadeclient:
  enable: true
  server: "192.168.1.100:44944"
  autopush: true
"""

CLIENTS = "/api/cascade/clients"
LINK_CONFIG = {"quic": {"idletimeout": "2s", "keepalive": "200ms", "handshaketimeout": "1s"}}


def udp_port_free(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind(("0.0.0.0", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


class SeedAgent(harness.Agent):
    """An agent whose file is the harness's keys followed by a block of the seed, verbatim."""

    def __init__(self, ctl, name, seed_block, **kw):
        self.seed_block = seed_block
        super().__init__(ctl, name, name + "-secret", config=LINK_CONFIG, **kw)

    def write_config(self):
        cfg = super().write_config()
        with open(self.config_path, "a") as f:
            f.write(self.seed_block)
        return cfg


class SeedExampleTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.require_controller()
        cls.pg = harness.shared_cluster()

    def setUp(self):
        self.agents = []
        self.ctl = harness.Controller(self.pg.dsn(self.pg.create_database()), config={
            "cascadeserver": {"autoregister": True},
            "control": {"heartbeat": 500, "polltimeout": 3000}})

    def tearDown(self):
        for a in self.agents:
            if a.proc is not None:
                a.stop()
        if self.ctl.proc is not None:
            self.ctl.stop()

    def node_by_name(self, name):
        nodes = harness.envelope_ok(self, self.ctl.api("GET", CLIENTS))
        return next((n for n in nodes if n["name"] == name), None)

    def test_two_level_example_links(self):
        port = 44944
        parent_block, child_block = SEED_PARENT, SEED_CHILD.replace("192.168.1.100", "127.0.0.2")
        if not udp_port_free(port):
            # Another process on this machine holds the seed's port: the same blocks on another.
            port = harness.free_udp_port()
            parent_block = parent_block.replace("44944", str(port))
            child_block = child_block.replace("44944", str(port))
            print("\nUDP 44944 is taken here: the seed's blocks with port %d" % port)
        parent = SeedAgent(self.ctl, "seed-parent", parent_block)
        self.agents.append(parent)
        child = SeedAgent(self.ctl, "seed-child", child_block)
        self.agents.append(child)
        p = harness.wait_for(lambda: self.node_by_name("seed-parent"), 20,
                             what="the parent registered itself")
        c = harness.wait_for(lambda: self.node_by_name("seed-child"), 20,
                             what="the child registered itself")
        self.assertFalse(p.get("pending"), p)
        harness.wait_for(lambda: child.parent_up(p["id"]), 30, interval=0.1,
                         what="the child's link to the parent up")
        link = next(l for l in child.status()["links"] if l["role"] == "parent")
        self.assertEqual(link["peer_id"], p["id"])
        self.assertEqual(link["address"], "127.0.0.2:%d" % port)  # the address its file names
        # the controller placed it there (no operator did), and the parent sees its child
        self.assertEqual(harness.envelope_ok(self, self.ctl.api(
            "GET", "%s/%d" % (CLIENTS, c["id"])))["parent_id"], p["id"])
        harness.wait_for(lambda: any(l["role"] == "child" and l["peer_id"] == c["id"]
                                     and l["state"] == "up" for l in parent.status()["links"]),
                         10, what="the parent's link to the child up")


if __name__ == "__main__":
    unittest.main(verbosity=2)
