#!/usr/bin/env python3
"""Bad input on the control channel: a raw nng REQ peer (the SP protocol over TCP, written here by
hand) sends garbage, messages without a body, out-of-bounds fields and an oversized frame. The
controller answers BAD_REQUEST where it can, drops what it must, counts it, and keeps serving;
nothing is stored. The TLS listener is exercised by test_agents; this one is plain tcp:// so the
test can speak the framing itself."""

import re
import socket
import struct
import unittest

import harness

REQ0 = 0x30  # nng protocol number of REQ v0; REP v0 is 0x31


def sp_connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"\x00SP\x00" + struct.pack(">H", REQ0) + b"\x00\x00")
    hello = harness.recv_exact(s, 8)
    assert hello[:4] == b"\x00SP\x00" and struct.unpack(">H", hello[4:6])[0] == 0x31, hello
    return s


def request(s, req_id, payload):
    """Send one REQ frame; return the reply body (without the request id)."""
    body = struct.pack(">I", 0x80000000 | req_id) + payload
    s.sendall(struct.pack(">Q", len(body)) + body)
    n = struct.unpack(">Q", harness.recv_exact(s, 8))[0]
    reply = harness.recv_exact(s, n)
    assert struct.unpack(">I", reply[:4])[0] == 0x80000000 | req_id, reply[:4]
    return reply[4:]


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field(num, payload):
    """A length-delimited protobuf field."""
    return varint(num << 3 | 2) + varint(len(payload)) + payload


def status_code(reply):
    """Response.status (field 2) -> Status.code (field 1, varint); 0 when absent."""
    i = 0
    while i < len(reply):
        key = reply[i]
        i += 1
        num, wt = key >> 3, key & 7
        if wt == 0:
            while reply[i] & 0x80:
                i += 1
            i += 1
        elif wt == 2:
            ln = reply[i]
            i += 1
            sub = reply[i:i + ln]
            i += ln
            if num == 2:
                return sub[1] if len(sub) >= 2 and sub[0] == 0x08 else 0
        else:
            raise ValueError("unexpected wire type %d" % wt)
    return None


BAD_REQUEST = 1


class ControlInputTest(harness.ControllerTestCase):
    @classmethod
    def setUpClass(cls):
        cls.config = {"control": {"listenaddr": "tcp://127.0.0.1:{control_port}"}}
        super().setUpClass()

    def control_port(self):
        return self.ctl.control_port

    def bad_messages(self):
        st, _, text = self.ctl.request("GET", "/metrics")
        m = re.search(r"^cascade_control_bad_messages_total (\d+)$", text, re.M)
        return int(m.group(1))

    def test_garbage_is_answered_and_counted(self):
        before_rows = self.snapshot()
        before = self.bad_messages()
        s = sp_connect(self.control_port())
        cases = [
            b"",                                   # no body
            b"\xff\xff\xff\xff\xff",               # not protobuf
            field(11, field(1, b"edge") + field(2, b"short")),  # AuthStart: nonce too short
            field(10, field(1, b"") + field(2, b"SCRAM")),      # Register: empty name
            field(11, field(1, b"bad\nname") + field(2, b"0123456789abcdefghij")),
            field(12, field(1, b"\x00" * 15) + field(2, b"\x00" * 32)),  # exchange 15 bytes
            field(2, b"\x01" * 7) + field(13, b""),  # heartbeat with a 7-byte session
        ]
        for i, payload in enumerate(cases):
            with self.subTest(case=i):
                reply = request(s, i + 1, payload)
                self.assertEqual(status_code(reply), BAD_REQUEST, reply)
        s.close()
        self.assertEqual(self.bad_messages() - before, len(cases))
        self.assertEqual(self.snapshot(), before_rows)

    def test_oversized_frame_is_dropped(self):
        s = sp_connect(self.control_port())
        big = 2 * 1024 * 1024
        try:
            s.sendall(struct.pack(">Q", big + 4) + struct.pack(">I", 0x80000001) + b"\x00" * big)
            # nng refuses frames over NNG_OPT_RECVMAXSZ by closing the pipe
            s.settimeout(5)
            self.assertEqual(s.recv(1), b"")
        except (ConnectionResetError, BrokenPipeError):
            pass
        finally:
            s.close()
        # still serving, on the channel and on the API
        s = sp_connect(self.control_port())
        self.assertEqual(status_code(request(s, 9, b"")), BAD_REQUEST)
        s.close()
        self.assertEqual(self.ctl.request("GET", "/healthz")[0], 200)

    def test_unknown_session_and_ca(self):
        s = sp_connect(self.control_port())
        # Poll with a well-formed but unknown session -> NO_SESSION (3)
        reply = request(s, 1, field(2, b"\x01" * 16) + field(14, b""))
        self.assertEqual(status_code(reply), 3)
        # CaRequest needs no session and returns the CA certificate
        reply = request(s, 2, field(16, b""))
        self.assertIn(b"-----BEGIN CERTIFICATE-----", reply)
        s.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
