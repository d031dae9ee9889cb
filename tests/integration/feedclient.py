"""A reader of the controller's live feed (GET /api/feed, docs/api.md "Live feed") for the
integration tests: the Server-Sent Events stream read on a thread into a list, as a browser's
fetch() reads it (the token in the Authorization header)."""

import http.client
import json
import threading
import time

import harness


class FeedReader(threading.Thread):
    """Opens GET /api/feed on |ctl| with |token| (and Last-Event-ID |last_id| when given) and
    keeps every event as a dict {id, event, data} in |events|, comment lines in |comments|."""

    def __init__(self, ctl, token=None, last_id=None, timeout=60):
        super().__init__(daemon=True)
        self.events, self.comments = [], []
        self.closed = threading.Event()
        self.error = None
        hdrs = {"Authorization": "Bearer " + (token or ctl.admin_token),
                "Accept": "text/event-stream"}
        if last_id is not None:
            hdrs["Last-Event-ID"] = str(last_id)
        self.conn = http.client.HTTPConnection(ctl.host, ctl.port, timeout=timeout)
        self.conn.request("GET", "/api/feed", headers=hdrs)
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.headers = self.resp.headers
        self._lock = threading.Lock()
        if self.status == 200:
            self.start()
        else:
            self.body = self.resp.read()
            self.conn.close()
            self.closed.set()

    def run(self):
        cur = {}
        try:
            while True:
                line = self.resp.readline()
                if not line:
                    break
                line = line.decode("utf-8").rstrip("\r\n")
                if line == "":
                    if cur:
                        with self._lock:
                            self.events.append(cur)
                    cur = {}
                elif line.startswith(":"):
                    with self._lock:
                        self.comments.append((time.monotonic(), line[1:].strip()))
                else:
                    k, _, v = line.partition(":")
                    v = v[1:] if v.startswith(" ") else v
                    if k == "id":
                        cur["id"] = int(v)
                    elif k == "event":
                        cur["event"] = v
                    elif k == "data":
                        cur["data"] = json.loads(v)
        except Exception as e:  # noqa: BLE001 - a closed socket ends the reader
            self.error = e
        finally:
            self.closed.set()

    def snapshot(self):
        with self._lock:
            return list(self.events)

    def wait(self, pred, timeout, what):
        """The first event (from the start) for which pred(event) holds, waiting up to
        |timeout| seconds."""
        def found():
            for e in self.snapshot():
                if pred(e):
                    return e
            return None
        return harness.wait_for(found, timeout, what=what)

    def close(self):
        try:
            self.conn.sock.shutdown(2)
        except Exception:  # noqa: BLE001
            pass
        self.conn.close()
