#!/usr/bin/env python3
"""RTMP memory limits against a real agent: clients that never publish cannot make it hold more
than rtmp.maxpending each (many connections, each sending most of one large message, of every
kind and over many chunk streams: each is closed at the bound, memory stays flat, the warning is
rate-limited), publishers together stay within rtmp.ingestbudget (the one that would pass it is
closed, the others continue, and the budget comes back when messages complete or connections
close), and real ffmpeg publishing and playing work afterwards."""

import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
import unittest

import harness
import test_media

MAXPENDING = 32768
BUDGET = 4 << 20


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


# ---------------------------------------------------------------------------------- a raw client


def basic_header(fmt, csid):
    if csid < 64:
        return bytes([fmt << 6 | csid])
    if csid < 320:
        return bytes([fmt << 6, csid - 64])
    return bytes([fmt << 6 | 1, (csid - 64) & 0xff, (csid - 64) >> 8])


def msg_header(csid, mtype, sid, length, ts=0):
    """A fmt 0 chunk header: the start of a message of |length| bytes."""
    return (basic_header(0, csid) + struct.pack(">I", ts)[1:] + struct.pack(">I", length)[1:] +
            bytes([mtype]) + struct.pack("<I", sid))


def chunked(csid, mtype, sid, body, chunk=128, ts=0):
    """A whole message as chunks of |chunk| bytes."""
    out = [msg_header(csid, mtype, sid, len(body), ts), body[:chunk]]
    for i in range(chunk, len(body), chunk):
        out += [basic_header(3, csid), body[i:i + chunk]]
    return b"".join(out)


def set_chunk_size(n):
    return chunked(2, 1, 0, struct.pack(">I", n))


def amf_str(s):
    b = s.encode()
    return b"\x02" + struct.pack(">H", len(b)) + b


def amf_num(v):
    return b"\x00" + struct.pack(">d", v)


def amf_obj(props):
    out = b"\x03"
    for k, v in props.items():
        kb = k.encode()
        out += struct.pack(">H", len(kb)) + kb + amf_str(v)
    return out + b"\x00\x00\x09"


AMF_NULL = b"\x05"


def rtmp_connect(port, timeout=10):
    """A TCP connection that finished the simple handshake."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    c1 = bytes(8) + os.urandom(1528)
    s.sendall(b"\x03" + c1)
    got = b""
    while len(got) < 1 + 2 * 1536:
        d = s.recv(65536)
        if not d:
            raise AssertionError("handshake: closed by the agent")
        got += d
    s.sendall(got[1:1 + 1536])  # C2 echoes S1
    return s


def publish_prelude(app, name):
    """connect, createStream and publish (on message stream 1), chunk size 65536."""
    return (set_chunk_size(65536) +
            chunked(3, 20, 0, amf_str("connect") + amf_num(1) +
                    amf_obj({"app": app, "type": "nonprivate", "tcUrl": "rtmp://127.0.0.1/" + app}),
                    65536) +
            chunked(3, 20, 0, amf_str("createStream") + amf_num(2) + AMF_NULL, 65536) +
            chunked(4, 20, 1, amf_str("publish") + amf_num(3) + AMF_NULL + amf_str(name) +
                    amf_str("live"), 65536))


def closed_by_peer(s, timeout):
    """True once the agent has closed |s| (EOF or reset) within |timeout| seconds."""
    s.settimeout(timeout)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not s.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False
    return False


class Attacker(threading.Thread):
    """One connection that never connects nor publishes: it sends the start of one or more large
    messages and then as much of their bodies as it can, round robin over its chunk streams."""

    def __init__(self, port, streams, send_bytes):
        super().__init__(daemon=True)
        self.port, self.streams, self.send_bytes = port, streams, send_bytes
        self.sent = 0
        self.refused = None  # the send that failed, if the agent closed the connection
        self.sock = None
        self.error = None
        self.done = threading.Event()

    def run(self):
        piece = 8192  # the chunk size: streams interleave at chunk boundaries
        try:
            self.sock = rtmp_connect(self.port)
            self.sock.sendall(set_chunk_size(piece))
            pos = [0] * len(self.streams)
            filler = bytes(piece)
            while self.sent < self.send_bytes:
                progressed = False
                for i, (csid, mtype, length) in enumerate(self.streams):
                    if pos[i] + piece >= length:  # whole chunks only, never the last one
                        continue
                    hdr = msg_header(csid, mtype, 0, length) if pos[i] == 0 else basic_header(3, csid)
                    self.sock.sendall(hdr + filler)
                    pos[i] += piece
                    self.sent += piece
                    progressed = True
                    if self.sent >= self.send_bytes:
                        break
                if not progressed:
                    break
        except (ConnectionResetError, BrokenPipeError) as e:
            self.refused = e
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = e
        finally:
            self.done.set()


def metrics(agent):
    st, _, body = agent.admin_request("GET", "/metrics", timeout=5)
    assert st == 200, body
    text = body if isinstance(body, str) else body.decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r'^(cascade_rtmp_[a-z_]+(?:\{[^}]*\})?) (\d+)$', line)
        if m:
            out[m.group(1)] = int(m.group(2))
    return out


@unittest.skipUnless(test_media.FFMPEG and test_media.FFPROBE, "ffmpeg/ffprobe not installed")
class RtmpLimitsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.require_controller()
        cls.tmp = tempfile.mkdtemp(prefix="cascade-rtmplimits-")
        cls.media = os.path.join(cls.tmp, "src.flv")
        test_media.make_media(cls.media, seconds=4)
        cls.pg = harness.shared_cluster()
        cls.db = cls.pg.create_database()
        cls.ctl = harness.Controller(cls.pg.dsn(cls.db))
        cls.agent = harness.Agent(cls.ctl, "limits-node", "limits-node-secret", config={
            "rtmp": {"maxpending": MAXPENDING, "ingestbudget": BUDGET, "maxconnections": 200}})

    @classmethod
    def tearDownClass(cls):
        cls.agent.stop()
        cls.ctl.stop()
        cls.pg.drop_database(cls.db)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def limit_lines(self, what):
        return [ln for ln in self.agent.log_text().splitlines()
                if " warn " in ln and what in ln]

    def test_1_unidentified_connections_are_bounded(self):
        # Every kind of message that can be left half-sent before connect: video and audio (the
        # frame is allocated at the first chunk), command and data messages (the reader's own
        # buffer), AMF3 variants; one large message, or many smaller ones each under the bound
        # over interleaved chunk streams (1-, 2- and 3-byte chunk stream ids).
        kinds = [
            [(6, 9, 0xffffff)],                         # video, the largest message
            [(4, 8, 12 << 20)],                         # audio
            [(3, 20, 1000000)],                         # AMF0 command, at max_other
            [(5, 18, 1000000)],                         # AMF0 data
            [(7, 17, 900000)],                          # AMF3 command
            [(c, 20, 24576) for c in (3, 9, 63, 64, 100, 319, 320, 4000, 65599)],
            [(c, 9, MAXPENDING // 4 + 1) for c in range(10, 20)],
        ]
        # before the limits the agent held about 115 MiB of this
        n, per_conn = 42, 8 << 20
        pid = self.agent.proc.pid
        m0 = metrics(self.agent)
        base = rss_kib(pid)
        t0 = time.monotonic()
        attackers = [Attacker(self.agent.rtmp_port, kinds[i % len(kinds)], per_conn)
                     for i in range(n)]
        for a in attackers:
            a.start()
        peak = base
        while not all(a.done.is_set() for a in attackers) and time.monotonic() - t0 < 60:
            peak = max(peak, rss_kib(pid))
            time.sleep(0.05)
        for a in attackers:
            self.assertTrue(a.done.wait(30), "an attacker is still sending")
            self.assertIsNone(a.error, a.error)
        closed = [closed_by_peer(a.sock, 10) for a in attackers]
        for a in attackers:
            a.sock.close()
        elapsed = time.monotonic() - t0
        peak = max(peak, rss_kib(pid))
        sent = sum(a.sent for a in attackers)
        print("\n%d connections sent %.1f MiB in %.1f s; agent VmRSS %d -> peak %d KiB (+%d KiB)"
              % (n, sent / 1048576.0, elapsed, base, peak, peak - base))
        self.assertEqual(closed, [True] * n, "connections the agent kept open")
        self.assertLess(peak - base, 24 * 1024, "agent memory grew with the attack")
        m1 = harness.wait_for(
            lambda: (lambda m: m if m["cascade_rtmp_connections"] == m0["cascade_rtmp_connections"]
                     else None)(metrics(self.agent)), 10, what="attack connections gone")
        self.assertEqual(m1['cascade_rtmp_limit_closes_total{limit="pending"}'] -
                         m0['cascade_rtmp_limit_closes_total{limit="pending"}'], n)
        self.assertEqual(m1["cascade_rtmp_ingest_held_bytes"], 0, "budget not given back")
        # the warning names a client; at most one a second, the rest counted
        lines = self.limit_lines("before publish")
        self.assertGreaterEqual(len(lines), 1)
        self.assertRegex(lines[0], r"\[rtmp 127\.0\.0\.1:\d+\] closed: partial messages over "
                                   r"%d bytes before publish" % MAXPENDING)
        self.assertLessEqual(len(lines), int(elapsed) + 2, lines)
        self.assertLess(len(lines), n)
        # real clients still work
        self.ffmpeg_publish_and_probe("live/after")

    def ffmpeg_publish_and_probe(self, path):
        pub = subprocess.Popen([test_media.FFMPEG, "-v", "error", "-re", "-stream_loop", "-1",
                                "-i", self.media, "-c", "copy", "-f", "flv",
                                self.agent.rtmp_url(path)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            harness.wait_for(lambda: any(s["path"] == path for s in
                                         self.agent.admin_request("GET", "/api/stream/list")[2]["data"]),
                             15, what="%s live" % path)
            r = test_media.run([test_media.FFPROBE, "-v", "error", "-rw_timeout", "15000000",
                                "-show_entries", "stream=codec_name", "-of", "csv=p=0",
                                self.agent.rtmp_url(path)], timeout=30)
            self.assertEqual(sorted(r.stdout.split()), ["aac", "h264"], r.stdout)
            self.assertIsNone(pub.poll(), pub.stderr.read() if pub.poll() is not None else "")
        finally:
            pub.kill()
            pub.wait()
            pub.stderr.close()

    def test_2_publishers_share_the_budget(self):
        port = self.agent.rtmp_port
        m0 = metrics(self.agent)
        big = int(BUDGET * 0.375)  # three of them pass the budget, two do not
        pubs = []
        for i in range(3):
            s = rtmp_connect(port)
            s.sendall(publish_prelude("live", "budget%d" % i))
            pubs.append(s)
        harness.wait_for(lambda: all(
            any(x["path"] == "live/budget%d" % i for x in
                self.agent.admin_request("GET", "/api/stream/list")[2]["data"]) for i in range(3)),
            10, what="three publishers")
        body = b"\x27\x01" + bytes(big - 2)  # an AVC inter frame
        # each sends all but the last 1,000 bytes of one large video message
        for s in pubs[:2]:
            s.sendall(chunked(6, 9, 1, body, 65536)[:-1000])
        harness.wait_for(lambda: metrics(self.agent)["cascade_rtmp_ingest_held_bytes"] >= 2 * big,
                         10, what="two partial messages held")
        try:
            pubs[2].sendall(chunked(6, 9, 1, body, 65536)[:-1000])
        except (ConnectionResetError, BrokenPipeError):
            pass
        self.assertTrue(closed_by_peer(pubs[2], 10), "the publisher over the budget stayed")
        pubs[2].close()
        m1 = metrics(self.agent)
        self.assertEqual(m1['cascade_rtmp_limit_closes_total{limit="budget"}'] -
                         m0['cascade_rtmp_limit_closes_total{limit="budget"}'], 1)
        self.assertEqual(len(self.limit_lines("closed: ingest budget used up")), 1)
        # the two others finish their messages and go on: the budget comes back as they complete
        for s in pubs[:2]:
            s.sendall(chunked(6, 9, 1, body, 65536)[-1000:])
        harness.wait_for(lambda: metrics(self.agent)["cascade_rtmp_ingest_held_bytes"] < big,
                         10, what="budget given back by complete messages")
        for s in pubs[:2]:
            s.sendall(chunked(6, 9, 1, body, 65536, ts=40))
        for s in pubs[:2]:
            self.assertFalse(closed_by_peer(s, 0.5), "a publisher within the budget was closed")
        live = [x["path"] for x in self.agent.admin_request("GET", "/api/stream/list")[2]["data"]]
        self.assertIn("live/budget0", live)
        self.assertIn("live/budget1", live)
        # a new publisher gets the budget the closed one could not have
        s = rtmp_connect(port)
        s.sendall(publish_prelude("live", "budget3") + chunked(6, 9, 1, body, 65536)[:-1000])
        self.assertFalse(closed_by_peer(s, 0.5))
        harness.wait_for(lambda: metrics(self.agent)["cascade_rtmp_ingest_held_bytes"] >= big,
                         10, what="the new publisher's partial message held")
        for p in pubs + [s]:
            p.close()
        # every connection gone: nothing held, no accounting left behind
        harness.wait_for(lambda: (lambda m: m["cascade_rtmp_ingest_held_bytes"] == 0 and
                                  m["cascade_rtmp_connections"] == 0)(metrics(self.agent)),
                         10, what="budget back to zero")
        self.ffmpeg_publish_and_probe("live/after-budget")


if __name__ == "__main__":
    unittest.main(verbosity=2)
