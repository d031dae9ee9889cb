#!/usr/bin/env python3
"""Registration from outside cannot fill the registry or the audit trail (docs/security.md): a
raw nng REQ peer (test_control_input's) sends hundreds of Register messages with new names, from
one source address and from many (127.0.0.0/8), and floods failed authentications from 200
addresses. Every Register is answered OK (names cannot be probed), but only what the limits
allow is stored: cascadeserver.registerrateperaddr per address, cascadeserver.registerrate
overall, cascadeserver.maxpending rows waiting for approval; auth.failure events are capped
overall."""

import base64
import os
import re
import socket
import struct
import unittest

import harness
from test_control_input import REQ0, field, request, status_code, varint

CLIENTS = "/api/cascade/clients"


def verifier():
    b = lambda n: base64.b64encode(os.urandom(n)).decode()  # noqa: E731
    return "SCRAM-SHA-256$4096:%s$%s:%s" % (b(16), b(32), b(32))


def register(name):
    body = field(1, name.encode()) + field(2, verifier().encode())
    return field(10, body)


def auth_finish_bogus():
    return field(12, field(1, os.urandom(16)) + field(2, os.urandom(32)))


def connect(port, source):
    s = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
    s.sendall(b"\x00SP\x00" + struct.pack(">H", REQ0) + b"\x00\x00")
    hello = harness.recv_exact(s, 8)
    assert hello[:4] == b"\x00SP\x00", hello
    return s


def req(rid, payload):
    return varint(1 << 3) + varint(rid) + payload  # Request.id, then the body


class RegisterFloodTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.require_controller()
        cls.pg = harness.shared_cluster()

    def start(self, **server):
        self.db = self.pg.create_database()
        self.ctl = harness.Controller(self.pg.dsn(self.db), config={
            "control": {"listenaddr": "tcp://127.0.0.1:{control_port}"},
            "cascadeserver": server})

    def tearDown(self):
        self.ctl.stop()

    def rows(self):
        st, _, body = self.ctl.api("GET", CLIENTS + "?size=1")
        self.assertEqual(st, 200, body)
        return body["total"]

    def events(self, action):
        n = 0
        page = 1
        while True:
            st, _, body = self.ctl.api("GET", "/api/cascade/events?size=200&page=%d" % page)
            self.assertEqual(st, 200, body)
            n += len([e for e in body["data"] if e["action"] == action])
            if len(body["data"]) < 200:
                return n
            page += 1

    def metric(self, name):
        st, _, text = self.ctl.request("GET", "/metrics")
        m = re.search(r"^%s (\d+)$" % name, text, re.M)
        return int(m.group(1))

    def flood(self, source, names, rid=1):
        s = connect(self.ctl.control_port, source)
        try:
            for i, name in enumerate(names):
                self.assertEqual(status_code(request(s, rid + i, req(rid + i, register(name)))), 0)
        finally:
            s.close()

    def test_one_address(self):
        self.start(registerrateperaddr=5, registerrate=1000)
        self.flood("127.0.0.1", ["flood-%03d" % i for i in range(500)])
        self.assertEqual(self.rows(), 5)
        self.assertEqual(self.events("node.register"), 5)
        self.assertEqual(self.metric("cascade_control_registrations_total"), 5)
        self.assertEqual(self.metric("cascade_control_registrations_refused_total"), 495)
        # what was stored waits for approval: no place, no session
        st, _, body = self.ctl.api("GET", CLIENTS + "?size=100")
        self.assertTrue(all(n["pending"] for n in body["data"]), body["data"])
        st, _, body = self.ctl.api("GET", CLIENTS + "?pending=true&size=2")
        self.assertEqual((st, body["total"], len(body["data"])), (200, 5, 2))
        st, _, body = self.ctl.api("GET", CLIENTS + "?pending=false")
        self.assertEqual((st, body["total"]), (200, 0))
        st, _, body = self.ctl.api("GET", CLIENTS + "?pending=false&page=9")
        self.assertEqual((st, body["total"], body["data"]), (200, 0, []))
        st, _, body = self.ctl.api("GET", CLIENTS + "?pending=yes")
        self.assertEqual((st, body["message"]), (400, "pending: must be true or false"))

    def test_many_addresses(self):
        self.start(registerrateperaddr=5, registerrate=12)
        for k in range(2, 12):
            self.flood("127.0.0.%d" % k, ["m%d-%02d" % (k, i) for i in range(10)], rid=k * 100)
        self.assertEqual(self.rows(), 12)
        self.assertEqual(self.events("node.register"), 12)

    def test_pending_rows_capped(self):
        self.start(registerrateperaddr=1000, registerrate=1000, maxpending=7)
        self.flood("127.0.0.1", ["p-%03d" % i for i in range(100)])
        self.assertEqual(self.rows(), 7)
        # approving one makes room for one more
        st, _, body = self.ctl.api("GET", CLIENTS + "?size=1")
        harness.envelope_ok(self, self.ctl.api("PUT", "%s/%d" % (CLIENTS, body["data"][0]["id"]),
                                               {"pending": False}))
        self.flood("127.0.0.1", ["q-%03d" % i for i in range(10)], rid=500)
        self.assertEqual(self.rows(), 8)

    def test_auth_failure_events_capped(self):
        self.start()
        for k in range(200):
            s = connect(self.ctl.control_port, "127.0.%d.%d" % (1 + k // 250, 1 + k % 250))
            try:
                for i in range(3):
                    self.assertEqual(status_code(request(s, i + 1, req(i + 1,
                                                                       auth_finish_bogus()))), 2)
            finally:
                s.close()
        self.assertEqual(self.metric("cascade_control_auth_failures_total"), 600)
        n = self.events("auth.failure")
        self.assertLessEqual(n, 120)
        self.assertGreater(n, 0)
        self.assertEqual(self.metric("cascade_control_events_dropped_total"), 600 - n)


if __name__ == "__main__":
    unittest.main(verbosity=2)
