#!/usr/bin/env python3
"""The web console (docs/console.md) in a real browser: Debian's chromium, headless, driven by
tests/browser/console.js (playwright-core), against a real controller, PostgreSQL and agents.

One scenario, step by step, as an operator would go: a wrong token is refused; the admin signs
in; creates a node (a validation error shows beside its field) and sees it turn online when its
agent starts; edits its rules and sees the new generation applied; builds a five-node tree whose
picture shows every node and link; plays a stream published with ffmpeg in the page; reads the
audit trail; creates and deletes an API token. A viewer sees everything with the write controls
disabled, and the API refuses a write forced from the page. A node named like HTML is shown as
text. No page breaks the Content-Security-Policy. Screenshots of each page go to
build/tests/console-shots/ (CASCADE_SCREENSHOTS overrides)."""

import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import unittest

import harness
from test_media import FFMPEG

HERE = os.path.dirname(os.path.abspath(__file__))
BROWSER_DIR = os.path.join(HERE, "..", "browser")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
NODE = shutil.which("node")

RELAY_RULES = {"allow": ["/api/", "/flv/"], "deny": ["/api/admin/"]}
CTL_CONFIG = {"control": {"heartbeat": 500, "polltimeout": 3000},
              "cascadeserver": {"relayapi": RELAY_RULES}}
NODE_CONFIG = {
    "quic": {"idletimeout": "1s", "keepalive": "200ms", "handshaketimeout": "1s"},
    "cascadeclient": {"reconnectmax": "500ms", "relayapi": RELAY_RULES, "autopush": True},
    "subscribe": {"waittimeout": "15s"},
}
XSS_NAME = "<img src=x onerror=alert(1)>"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "media-src 'self' blob:; connect-src 'self'; worker-src 'self' blob:; object-src 'none'; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


def browser_missing():
    if not NODE:
        return "node not found (deploy/local/deps.sh installs nodejs and npm)"
    if not os.access(CHROMIUM, os.X_OK):
        return "%s not found (deploy/local/deps.sh installs chromium)" % CHROMIUM
    return None


def shots_dir():
    d = os.environ.get("CASCADE_SCREENSHOTS")
    if not d:
        d = os.path.join(harness.bin_dir(), "..", "tests", "console-shots")
    d = os.path.abspath(d)
    os.makedirs(d, exist_ok=True)
    return d


class Browser:
    """console.js as a child process: call() sends one step and returns its value."""

    def __init__(self, shots):
        self.proc = subprocess.Popen([NODE, os.path.join(BROWSER_DIR, "console.js"), shots],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1)
        self.n = 0
        self.stderr = []
        threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True).start()

    def call(self, op, page="admin", **kw):
        self.n += 1
        kw.update(id=self.n, op=op, page=page)
        self.proc.stdin.write(json.dumps(kw) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(10)
            raise AssertionError("console.js exited (%s):\n%s" % (self.proc.returncode,
                                                                   "".join(self.stderr)[-3000:]))
        out = json.loads(line)
        if not out["ok"]:
            shown = {k: v for k, v in kw.items() if k not in ("id", "op")}
            if re.search(r"token|secret", shown.get("selector", "")):
                shown["value"] = "(not shown)"  # never a token or a secret in the test's output
            raise AssertionError("browser step %s %s failed: %s" % (op, shown, out["error"]))
        return out["value"]

    def wait(self, expr, arg=None, page="admin", timeout=15000):
        return self.call("wait", page=page, expr=expr, arg=arg, timeout=timeout)

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@unittest.skipIf(browser_missing(), browser_missing() or "")
class ConsoleTest(unittest.TestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        harness.require_controller()
        r = subprocess.run(["bash", os.path.join(BROWSER_DIR, "install.sh")],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=300)
        if r.returncode != 0:
            raise AssertionError("npm ci in tests/browser failed:\n" + r.stdout[-2000:])
        cls.pg = harness.shared_cluster()
        cls.db = cls.pg.create_database()
        cls.ctl = harness.Controller(cls.pg.dsn(cls.db), config=CTL_CONFIG)
        cls.base = cls.ctl.base_url
        cls.agents, cls.procs = {}, []
        cls.shots = shots_dir()
        print("screenshots in %s" % cls.shots, flush=True)
        cls.b = Browser(cls.shots)

    @classmethod
    def tearDownClass(cls):
        cls.b.close()
        for p in cls.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        errors = []
        for a in cls.agents.values():
            if a.proc is not None:
                try:
                    a.stop()
                except AssertionError as e:
                    errors.append(str(e))
        cls.ctl.stop()
        cls.pg.drop_database(cls.db)
        if errors:
            raise AssertionError("\n".join(errors))

    # steps ---------------------------------------------------------------------------------------

    def api(self, method, path, body=None, token=None):
        st, _, resp = self.ctl.api(method, path, body, token=token)
        self.assertLess(st, 300, "%s %s: %d %r" % (method, path, st, resp))
        return resp["data"]

    def node_id(self, name):
        return next(n["id"] for n in self.api("GET", "/api/cascade/clients?size=1000")
                    if n["name"] == name)

    def start_agent(self, name, secret, listen=False):
        cfg = json.loads(json.dumps(NODE_CONFIG))
        if listen:
            cfg = harness.deep_merge(cfg, {"cascadeserver": {"quic": {
                "listenaddr": "127.0.0.1:%d" % harness.free_udp_port()}}})
        self.agents[name] = harness.Agent(self.ctl, name, secret, config=cfg)
        return self.agents[name]

    def shot(self, name, page="admin"):
        print("  screenshot %s" % self.b.call("shot", page=page, name=name), flush=True)

    def check_clean(self, page):
        """No CSP violation, page error or dialog so far on |page|."""
        rep = self.b.call("report", page=page)
        self.assertEqual(rep["csp"], [], "Content-Security-Policy violations on %s" % page)
        self.assertEqual(rep["dialogs"], [], "dialogs opened on %s" % page)
        self.assertEqual(rep["errors"], [], "page errors on %s" % page)
        for u in rep["requests"]:
            for t in (self.ctl.admin_token, getattr(self, "viewer_token", None)):
                if t:
                    self.assertNotIn(t, u, "a token in a URL")
        return rep

    # the scenario --------------------------------------------------------------------------------

    def test_console(self):
        try:
            self.serving()
            self.signin()
            self.nodes()
            self.rules()
            self.topology()
            self.streams_and_player()
            self.events()
            self.tokens()
            self.viewer()
            self.xss()
        except BaseException:
            # what the page showed when a step failed
            try:
                self.shot("zz-failed")
                print("  page state: %s" % json.dumps(self.b.call("report"))[:3000])
            except AssertionError:
                pass
            raise
        self.check_clean("admin")

    def serving(self):
        """/console/ is served from the binary with the CSP; / redirects; unknown files 404."""
        st, h, body = self.ctl.request("GET", "/console/")
        self.assertEqual(st, 200)
        self.assertEqual(h["Content-Type"], "text/html; charset=utf-8")
        self.assertEqual(h["Content-Security-Policy"], CSP)
        self.assertEqual(h["X-Content-Type-Options"], "nosniff")
        self.assertEqual(h["Referrer-Policy"], "no-referrer")
        self.assertEqual(h["Cache-Control"], "no-cache")
        self.assertIn('<script type="module" src="js/app.js">', body)
        self.assertNotRegex(body, r"<script>|\son[a-z]+=", "inline script in index.html")
        st, h2, _ = self.ctl.request("GET", "/console/", headers={"If-None-Match": h["ETag"]})
        self.assertEqual(st, 304)
        st, h2, body2 = self.ctl.request("HEAD", "/console/")
        self.assertEqual((st, h2["Content-Security-Policy"], body2), (200, CSP, ""))
        st, h, _ = self.ctl.request("GET", "/console/js/app.js")
        self.assertEqual((st, h["Content-Type"]), (200, "text/javascript; charset=utf-8"))
        st, h, _ = self.ctl.request("GET", "/console/style.css")
        self.assertEqual((st, h["Content-Type"]), (200, "text/css; charset=utf-8"))
        st, h, _ = self.ctl.request("GET", "/console/vendor/mpegts.js")
        self.assertEqual(st, 200)
        st, h, _ = self.ctl.request("GET", "/")
        self.assertEqual((st, h["Location"]), (302, "/console/"))
        for p in ("/console/nope.js", "/console/../sql/001_init.sql", "/console/package.json"):
            self.assertEqual(self.ctl.request("GET", p)[0], 404, p)
        st, h, _ = self.ctl.request("POST", "/console/", body="x")
        self.assertEqual((st, h["Allow"]), (405, "GET, HEAD"))
        # the console is public; the API behind it is not
        self.assertEqual(self.ctl.request("GET", "/api/cascade/clients")[0], 401)

    def signin(self):
        b = self.b
        b.call("open", url=self.base + "/")
        b.wait("document.querySelector('#signin-form') && !document.getElementById('signin').hidden")
        b.call("fill", selector="#signin-token", value="adm_wrong_" + "x" * 20)
        b.call("click", selector="#signin-submit")
        msg = b.wait("document.getElementById('signin-error').textContent")
        self.assertIn("Wrong token", msg)
        # signed out, nothing but the form is shown
        self.assertEqual(b.call("eval", expr="['nav', 'who', 'main'].map((id) => {"
                                " const el = document.getElementById(id);"
                                " return getComputedStyle(el).display === 'none' || !el.textContent.trim(); })"),
                         [True, True, True])
        self.shot("01-signin-wrong-token")
        b.call("fill", selector="#signin-token", value=self.ctl.admin_token)
        b.call("click", selector="#signin-submit")
        b.wait("document.querySelector('#nodes-table')")
        self.assertEqual(b.call("eval", expr="document.getElementById('role-badge').textContent"),
                         "admin")
        # kept for the tab only, never in the URL
        self.assertEqual(b.call("eval", expr="sessionStorage.getItem('cascade.token')"),
                         self.ctl.admin_token)
        self.assertEqual(b.call("eval", expr="localStorage.length"), 0)
        self.assertNotIn(self.ctl.admin_token, b.call("eval", expr="location.href"))

    def nodes(self):
        """Create hq in the form (a bad secret first), see it online when its agent starts."""
        b = self.b
        b.call("click", selector="#node-new")
        b.wait("document.querySelector('#node-form')")
        b.call("fill", selector="#f-name", value="hq")
        b.call("fill", selector="#f-secret", value="short")
        b.call("fill", selector="#f-labels", value="region=eu-west\nrack=r1")
        b.call("click", selector="#node-save")
        msg = b.wait("document.getElementById('err-secret').textContent")
        self.assertEqual(msg, "secret: must be 8 to 1024 bytes")
        self.shot("02-node-create-error")
        b.call("fill", selector="#f-secret", value="hq-secret-123")
        b.call("click", selector="#node-save")
        b.wait("document.getElementById('node-title') && "
               "document.getElementById('node-title').textContent === 'hq'")
        hq = self.node_id("hq")
        self.assertEqual(self.api("GET", "/api/cascade/clients/%d" % hq)["labels"],
                         {"rack": "r1", "region": "eu-west"})
        b.call("hash", hash="#/nodes")
        b.wait("document.querySelector('#nodes-table tr[data-name=\"hq\"][data-state=\"offline\"]')")
        self.start_agent("hq", "hq-secret-123", listen=True)
        b.wait("document.querySelector('#nodes-table tr[data-name=\"hq\"][data-state=\"online\"]')",
               timeout=20000)
        # the search filters by name
        self.api("POST", "/api/cascade/clients", {"name": "spare", "secret": "spare-secret"})
        b.wait("document.querySelectorAll('#nodes-table tbody tr[data-id]').length === 2")
        b.call("fill", selector="#node-search", value="SPA")
        b.wait("(() => { const r = document.querySelectorAll('#nodes-table tbody tr[data-id]');"
               " return r.length === 1 && r[0].dataset.name === 'spare'; })()")
        b.call("fill", selector="#node-search", value="")
        b.wait("document.querySelectorAll('#nodes-table tbody tr[data-id]').length === 2")
        self.shot("03-nodes")
        # delete spare from its page (an in-page confirmation, no dialog)
        spare = self.node_id("spare")
        b.call("hash", hash="#/nodes/%d" % spare)
        b.call("click", selector="#node-delete")
        b.call("click", selector="#node-delete-confirm")
        b.wait("location.hash === '#/nodes' && document.querySelectorAll("
               "'#nodes-table tbody tr[data-id]').length === 1")
        st, _, _ = self.ctl.api("GET", "/api/cascade/clients/%d" % spare)
        self.assertEqual(st, 404)
        self.hq = hq

    def rules(self):
        """Edit hq's rules in the form; the page shows the new generation applied."""
        b = self.b
        before = self.api("GET", "/api/cascade/clients/%d" % self.hq)["config_generation"]
        b.call("hash", hash="#/nodes/%d/edit" % self.hq)
        b.wait("document.querySelector('#node-form #f-autopush')")
        # a bad pull pattern: pcre2's message beside the field
        b.call("fill", selector="#f-onsub", value="live/( m7s://$0")
        b.call("click", selector="#node-save")
        msg = b.wait("document.getElementById('err-onsub').textContent")
        self.assertIn("onsub", msg)
        b.call("select", selector="#f-autopush", value="true")
        b.call("fill", selector="#f-onsub", value="live/.* m7s://$0")
        self.shot("04-node-edit")
        b.call("click", selector="#node-save")
        b.wait("document.getElementById('node-title')")
        n = self.api("GET", "/api/cascade/clients/%d" % self.hq)
        self.assertEqual(n["autopush"], True)
        self.assertEqual(n["onsub"], {"pull": {"live/.*": "m7s://$0"}})
        self.assertGreater(n["config_generation"]["desired"], before["desired"])
        want = n["config_generation"]["desired"]
        got = b.wait("(() => { const g = document.querySelector('#node-info .gen');"
                     " return g && g.dataset.applied === String(arg) && g.dataset.desired === "
                     "String(arg) && g.textContent; })()", arg=want, timeout=20000)
        self.assertEqual(got, "%d / %d" % (want, want))
        self.shot("04-node-page-generation")
        # saving an unchanged form sends no rules: the generation stays
        b.call("hash", hash="#/nodes/%d/edit" % self.hq)
        b.wait("document.querySelector('#node-form #f-autopush')")
        b.call("click", selector="#node-save")
        b.wait("location.hash === '#/nodes/%d' && document.getElementById('node-title')" % self.hq)
        self.assertEqual(self.api("GET", "/api/cascade/clients/%d" % self.hq)["config_generation"]
                         ["desired"], want)

    def topology(self):
        """A five-node tree: every node and link in the picture, links up with an RTT."""
        layout = (("region-a", "hq"), ("region-b", "hq"), ("edge-a1", "region-a"),
                  ("edge-a2", "region-a"))
        ids = {"hq": self.hq}
        for name, parent in layout:
            ids[name] = self.api("POST", "/api/cascade/clients",
                                 {"name": name, "secret": name + "-secret",
                                  "parent_id": ids[parent]})["id"]
        for name, _ in layout:
            self.start_agent(name, name + "-secret", listen=name == "region-a")
        self.ids = ids
        b = self.b
        b.call("hash", hash="#/topology")
        expr = ("(() => { const svg = document.getElementById('topology-svg'); if (!svg) return false;"
                " const nodes = [...svg.querySelectorAll('g.node')].map((g) => [g.dataset.name, g.dataset.state]);"
                " const links = [...svg.querySelectorAll('g.link')].map((g) => [g.dataset.parent, g.dataset.child,"
                " g.dataset.up, g.dataset.rtt]);"
                " const ok = nodes.length === 5 && nodes.every((n) => n[1] === 'online') && links.length === 4"
                " && links.every((l) => l[2] === 'true' && l[3].endsWith(' ms'));"
                " return ok && {nodes, links}; })()")
        pic = b.wait(expr, timeout=30000)
        self.assertEqual(sorted(n[0] for n in pic["nodes"]), sorted(ids))
        self.assertEqual(sorted((int(l[0]), int(l[1])) for l in pic["links"]),
                         sorted((ids[p], ids[c]) for c, p in layout))
        # a second refresh gives the links a throughput
        b.wait("[...document.querySelectorAll('#topology-svg g.link text')].some("
               "(t) => /bit\\/s/.test(t.textContent))", timeout=20000)
        self.shot("05-topology")
        # live: region-b's agent stops; its box turns grey and its link is drawn down
        self.agents["region-b"].stop()
        b.wait("document.querySelector('#topology-svg g.node[data-name=\"region-b\"][data-state=\"offline\"]')"
               " && document.querySelector('#topology-svg g.link[data-child=\"%d\"][data-up=\"false\"]')"
               % ids["region-b"], timeout=20000)
        self.shot("05-topology-offline")

    def streams_and_player(self):
        """A stream published with ffmpeg at edge-a1 is in the directory and plays in the page."""
        if not FFMPEG:
            self.skipTest("ffmpeg not installed")
        p = subprocess.Popen([FFMPEG, "-v", "error", "-re", "-f", "lavfi", "-i",
                              "testsrc=size=320x240:rate=25", "-f", "lavfi", "-i",
                              "sine=frequency=440:sample_rate=44100", "-c:v", "libx264",
                              "-preset", "ultrafast", "-tune", "zerolatency", "-g", "25",
                              "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k", "-f", "flv",
                              self.agents["edge-a1"].rtmp_url("live/console")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(p)
        b = self.b
        b.call("hash", hash="#/streams")
        # it enters at edge-a1 and is pushed up to region-a and hq
        b.wait("(() => { const r = document.querySelector('#streams-table tr[data-path=\"live/console\"]');"
               " return r && r.querySelectorAll('a.play').length === 3; })()", timeout=20000)
        self.shot("06-streams")
        b.call("click", selector="#streams-table tr[data-path=\"live/console\"] a.play")
        q = b.wait("(() => { const v = document.getElementById('play-video');"
                   " if (!v || v.currentTime <= 1) return false;"
                   " const q = v.getVideoPlaybackQuality();"
                   " return q.totalVideoFrames > 0 && {t: v.currentTime, frames: q.totalVideoFrames}; })()",
                   timeout=30000)
        print("  played live/console: currentTime %.2f, %d frames decoded" % (q["t"], q["frames"]))
        self.assertIn("/api/relay/%d/flv/live/console.flv" % self.ids["edge-a1"],
                      "\n".join(b.call("report")["requests"]))
        self.shot("07-player")
        b.call("click", selector="#play-stop")
        # the node's own page: its links and streams through the API relay
        b.call("hash", hash="#/nodes/%d" % self.ids["edge-a1"])
        b.wait("(() => { const l = document.querySelector('#links-table tbody tr');"
               " const s = [...document.querySelectorAll('#node-streams-table td')];"
               " const p = [...document.querySelectorAll('#relays-table td')];"
               " return l && l.dataset.state === 'up' && l.textContent.includes('region-a') &&"
               " s.some((td) => td.textContent === 'live/console') &&"
               " p.some((td) => td.textContent === 'pushing') &&"
               " document.getElementById('node-status').textContent.includes('region-a'); })()",
               timeout=20000)
        self.shot("07-node-links-streams")

    def events(self):
        b = self.b
        b.call("hash", hash="#/events")
        b.wait("document.querySelector('#events-table tr[data-action=\"node.create\"]')")
        b.call("select", selector="#events-node", value=str(self.hq))
        b.call("fill", selector="#events-action", value="config.applied")
        b.wait("(() => { const r = [...document.querySelectorAll('#events-table tbody tr[data-action]')];"
               " return r.length > 0 && r.every((x) => x.dataset.action === 'config.applied'); })()")
        self.shot("08-events")

    def tokens(self):
        """Create a viewer token (its value shown once), see it listed, delete another."""
        b = self.b
        b.call("hash", hash="#/tokens")
        b.wait("document.querySelector('#tokens-table')")
        b.call("click", selector="#token-create")
        self.assertEqual(b.wait("document.getElementById('err-token-name').textContent"),
                         "name: must be 1 to 64 bytes")
        b.call("fill", selector="#f-token-name", value="wall-screen")
        b.call("select", selector="#f-token-role", value="viewer")
        b.call("click", selector="#token-create")
        value = b.wait("document.getElementById('token-value') && "
                       "document.getElementById('token-value').value")
        self.assertRegex(value, r"^cas_[A-Za-z0-9_-]{43}$")
        b.call("click", selector="#token-dismiss")
        b.wait("!document.getElementById('token-value')")
        self.viewer_token = value
        # a second one to delete
        b.call("fill", selector="#f-token-name", value="temporary")
        b.call("click", selector="#token-create")
        b.wait("document.querySelector('#tokens-table tr[data-name=\"temporary\"]')")
        b.call("click", selector="#token-dismiss")
        b.call("click", selector="#tokens-table tr[data-name=\"temporary\"] button.token-delete")
        b.wait("!document.querySelector('#tokens-table tr[data-name=\"temporary\"]') && "
               "document.querySelector('#tokens-table tr[data-name=\"wall-screen\"]')")
        names = [t["name"] for t in self.api("GET", "/api/auth/tokens")]
        self.assertEqual(names, ["wall-screen"])
        self.shot("09-tokens")

    def viewer(self):
        """A viewer token: everything readable, write controls disabled, forced writes 403."""
        b = self.b
        b.call("open", page="viewer", url=self.base + "/console/")
        # this page's /api/feed is a stand-in with every kind of event, in pieces of
        # several shapes (comments, CRLF, a data line split in two)
        b.call("feed", page="viewer", body=(
            ": keepalive\n\n"
            "id: 1\nevent: node\ndata: {\"id\":%d,\"name\":\"hq\",\"online\":true}\n\n"
            "id: 2\r\nevent: generation\r\ndata: {\"id\":%d,\"desired\":5,\"applied\":5}\r\n\r\n"
            "id: 3\nevent: link\ndata: {\"node\":4,\"peer\":1,\"role\":\"parent\",\n"
            "data: \"up\":true,\"rtt_ms\":0.4}\n\n"
            "id: 4\nevent: stream\ndata: {\"node\":6,\"path\":\"live/x\",\"state\":\"start\","
            "\"origin\":6}\n\n: keepalive\n\n") % (self.hq, self.hq))
        b.call("fill", page="viewer", selector="#signin-token", value=self.viewer_token)
        b.call("click", page="viewer", selector="#signin-submit")
        b.wait("document.querySelector('#nodes-table tr[data-name=\"hq\"]')", page="viewer")
        self.assertEqual(b.call("eval", page="viewer",
                                expr="document.getElementById('role-badge').textContent"), "viewer")
        self.assertTrue(b.call("eval", page="viewer", expr="document.getElementById('node-new')"
                               ".getAttribute('aria-disabled') === 'true'"))
        self.shot("10-viewer-nodes", page="viewer")
        b.call("hash", page="viewer", hash="#/nodes/%d" % self.hq)
        b.wait("document.getElementById('node-delete') && document.getElementById('node-delete').disabled",
               page="viewer")
        b.call("hash", page="viewer", hash="#/nodes/%d/edit" % self.hq)
        self.assertTrue(b.wait("document.querySelector('#node-form fieldset') &&"
                               " document.querySelector('#node-form fieldset').disabled &&"
                               " document.getElementById('node-save').matches(':disabled')",
                               page="viewer"))
        self.shot("10-viewer-edit-disabled", page="viewer")
        b.call("hash", page="viewer", hash="#/topology")
        b.wait("document.querySelectorAll('#topology-svg g.node').length === 5", page="viewer")
        b.call("hash", page="viewer", hash="#/tokens")
        b.wait("document.getElementById('tokens-denied')", page="viewer")
        # forced: the API refuses the viewer's writes
        st = b.call("eval", page="viewer", expr="""(async () => {
            const t = sessionStorage.getItem('cascade.token');
            const r = await fetch('/api/cascade/clients', {method: 'POST',
              headers: {Authorization: 'Bearer ' + t, 'Content-Type': 'application/json'},
              body: JSON.stringify({name: 'forced', secret: 'forced-secret'})});
            const d = await fetch('/api/cascade/clients/' + arg, {method: 'DELETE',
              headers: {Authorization: 'Bearer ' + t}});
            return [r.status, d.status];
          })()""", arg=self.hq)
        self.assertEqual(st, [403, 403])
        self.assertNotIn("forced", [n["name"] for n in self.api("GET", "/api/cascade/clients")])
        # the feed was read, with the token in the header only
        kinds = b.wait("document.getElementById('live-state').dataset.kinds", page="viewer")
        self.assertEqual(kinds, "generation link node reset stream")
        feed = b.call("report", page="viewer")["feed"]
        self.assertTrue(feed and all(f["auth"] for f in feed), feed)
        self.assertTrue(all(f["url"].endswith("/api/feed") for f in feed), feed)
        self.check_clean("viewer")
        b.call("close", page="viewer")

    def xss(self):
        """A node named like HTML is text everywhere: no img element, no dialog."""
        xid = self.api("POST", "/api/cascade/clients",
                       {"name": XSS_NAME, "secret": "xss-secret-1", "parent_id": self.hq,
                        "labels": {"<b>k</b>": "<script>alert(2)</script>"}})["id"]
        b = self.b
        no_img = "document.querySelectorAll('img, script:not([src]), b').length === 0"
        b.call("hash", hash="#/nodes")
        b.wait("[...document.querySelectorAll('#nodes-table a.node-name')].some("
               "(a) => a.textContent === arg) && " + no_img, arg=XSS_NAME)
        self.shot("11-xss-nodes")
        b.call("hash", hash="#/nodes/%d" % xid)
        b.wait("document.getElementById('node-title') && "
               "document.getElementById('node-title').textContent === arg && " + no_img, arg=XSS_NAME)
        b.call("hash", hash="#/topology")
        b.wait("document.querySelector('#topology-svg g.node[data-id=\"%d\"]') && %s"
               % (xid, no_img))
        b.call("hash", hash="#/events")
        b.wait("document.querySelector('#events-table tr[data-action=\"node.create\"]') && " + no_img)
        self.check_clean("admin")


if __name__ == "__main__":
    unittest.main()
