#!/usr/bin/env python3
"""The Kubernetes manifests (deploy/kubernetes, docs/deploy.md "Kubernetes").

Offline: the base and the example overlay, rendered as kustomize would (tests/deploy/k8s/
render.mjs), pass Kubernetes' own schemas with no unknown field and the project's rules
(tests/deploy/k8s/check.mjs); the check is shown to catch a misspelt field, a wrong type, a
selector that misses its pods and another image tag.

For real: the example overlay through the documented transform (tests/deploy/k8s/podman.mjs)
runs under `podman kube play` from the image deploy/container/build.sh makes: the controller's
Deployment and the agent DaemonSet as one pod per stand-in node; the agents register with the
join token, the test places them in a tree through the REST API (hq <- region <- edge), a stream
published at the edge plays at hq, and every container exits 0 on SIGTERM."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
K8S = os.path.join(HERE, "k8s")
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import harness  # noqa: E402
from test_container import (IMAGE, PG_IN_CONTAINER, build_image, podman,  # noqa: E402
                            publish_and_play, stream_tokens)
from test_media import make_media  # noqa: E402

VERSION = IMAGE.split(":")[0] + ":" + next(
    l.split("VERSION")[1].split()[0] for l in open(os.path.join(ROOT, "CMakeLists.txt"))
    if l.startswith("project(cascade"))


def node(*args, timeout=120):
    return subprocess.run(["node"] + list(args), cwd=K8S, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)


def install_npm():
    r = subprocess.run(["bash", os.path.join(K8S, "install.sh")], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=600)
    if r.returncode != 0:
        raise AssertionError("tests/deploy/k8s/install.sh failed:\n" + r.stdout)


def copy_manifests(tmp):
    """deploy/kubernetes copied to |tmp| with a fresh CA in the example overlay's ca/."""
    dst = os.path.join(tmp, "kubernetes")
    shutil.copytree(os.path.join(ROOT, "deploy", "kubernetes"), dst,
                    ignore=shutil.ignore_patterns("ca"))
    rc, out, err = harness.run_controller(["--init-ca", os.path.join(dst, "overlays", "example",
                                                                     "ca")])
    if rc != 0:
        raise AssertionError("--init-ca failed: %s%s" % (out, err))
    return dst


class ManifestCheckTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not shutil.which("node"):
            raise AssertionError("node not found (deploy/local/deps.sh installs it)")
        harness.require_controller()
        install_npm()
        cls.tmp = tempfile.mkdtemp(prefix="cascade-k8s-")
        cls.dir = copy_manifests(cls.tmp)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def check(self, sub, image=VERSION):
        return node("check.mjs", os.path.join(self.dir, sub), image)

    def test_base_and_overlay_pass(self):
        for sub in ("base", "overlays/example"):
            r = self.check(sub)
            self.assertEqual(r.returncode, 0, r.stdout)
            self.assertNotIn("ERROR", r.stdout)
        r = self.check("overlays/example")
        for obj in ("Deployment/cascade-controller", "DaemonSet/cascade-agent",
                    "Service/cascade-control", "StatefulSet/cascade-postgres", "Secret/cascade-ca"):
            self.assertIn(obj, r.stdout)

    def broken(self, fname, old, new):
        d = tempfile.mkdtemp(dir=self.tmp)
        shutil.copytree(os.path.join(self.dir, "base"), os.path.join(d, "base"))
        p = os.path.join(d, "base", fname)
        with open(p) as f:
            text = f.read()
        self.assertIn(old, text)
        with open(p, "w") as f:
            f.write(text.replace(old, new, 1))
        return node("check.mjs", os.path.join(d, "base"), VERSION)

    def test_catches_unknown_field(self):
        r = self.broken("agent-daemonset.yaml", "hostNetwork: true", "hostNetwrok: true")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("hostNetwrok: unknown field", r.stdout)

    def test_catches_wrong_type(self):
        r = self.broken("controller-deployment.yaml", "replicas: 2", "replicas: two")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("replicas", r.stdout)

    def test_catches_selector_mismatch(self):
        r = self.broken("agent-daemonset.yaml", "      labels:\n        app.kubernetes.io/name: cascade-agent",
                        "      labels:\n        app.kubernetes.io/name: cascade-agnet")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("does not match its pod template", r.stdout)

    def test_catches_other_image(self):
        r = self.check("base", image=IMAGE.split(":")[0] + ":9.9.9")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("not %s:9.9.9" % IMAGE.split(":")[0], r.stdout)


class KubePlayTest(unittest.TestCase):
    NODES = ("hq", "region", "edge")

    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("podman needs root here (run as CI does)")
        harness.require_controller()
        install_npm()
        build_image()
        cls.tmp = tempfile.mkdtemp(prefix="cascade-kubeplay-")
        cls.dir = copy_manifests(cls.tmp)
        cls.pg = harness.shared_cluster()
        cls.db = cls.pg.create_database()
        cls.media = os.path.join(cls.tmp, "src.flv")
        make_media(cls.media, seconds=6)
        cls.play = None
        cls.secrets = []

    @classmethod
    def tearDownClass(cls):
        if cls.play:
            podman("kube", "down", cls.play, check=False, timeout=120)
        for p in ["cascade-controller", "cascade-controller-pod-0"] + ["cascade-agent-%s" % n for n in cls.NODES]:
            podman("pod", "rm", "-f", p, check=False, timeout=120)
        for s in cls.secrets:
            podman("secret", "rm", s, check=False)
            podman("volume", "rm", "-f", s, check=False)
        for v in ["cascade-controller"] + ["cascade-agent-%s" % n for n in cls.NODES]:
            podman("volume", "rm", "-f", v, check=False)
        if getattr(cls, "db", None):
            cls.pg.drop_database(cls.db)
        shutil.rmtree(getattr(cls, "tmp", "/nonexistent"), ignore_errors=True)

    def admin(self, method, path, body=None):
        return harness.http_request("127.0.0.1", self.ctl_http, method, path, body=body,
                                    token=self.admintoken, timeout=10)

    def run(self, result=None):
        # a failing run shows what the containers said (they are gone after teardown)
        n = (len(result.failures) + len(result.errors)) if result is not None else 0
        r = super().run(result)
        res = result if result is not None else r
        if res is not None and len(res.failures) + len(res.errors) > n:
            for p in podman("pod", "ps", "--format", "{{.Name}}", check=False).stdout.split():
                out = podman("pod", "logs", p, check=False)
                sys.stderr.write("--- pod %s ---\n%s%s\n" % (p, out.stdout[-3000:],
                                                            out.stderr[-1000:]))
        return r

    def test_overlay_runs_under_kube_play(self):
        sock = os.path.join(self.pg.socketdir, ".s.PGSQL.%d" % self.pg.port)
        self.ctl_http = harness.free_port()
        nodes = []
        for n in self.NODES:
            d = os.path.join(self.tmp, "data-" + n)
            os.makedirs(d)
            nodes.append({"name": n, "http": harness.free_port(), "admin": harness.free_port(),
                          "rtmp": harness.free_port(), "quic": harness.free_udp_port(),
                          "datadir": d})
        params = {"nodes": nodes, "controller": {"http": self.ctl_http,
                                                 "control": harness.free_port()},
                  "dsn": "host=%s port=%d dbname=%s user=%s" % (PG_IN_CONTAINER, self.pg.port,
                                                               self.db, harness.PG_USER),
                  "pg_socket": sock, "pg_socket_mount": "%s/%s" % (PG_IN_CONTAINER,
                                                                   os.path.basename(sock)),
                  "agent_extra": {"subscribe": {"waittimeout": "15s"}}}
        out = os.path.join(self.tmp, "play")
        os.makedirs(out)
        r = node("podman.mjs", os.path.join(self.dir, "overlays", "example"), json.dumps(params),
                 out)
        self.assertEqual(r.returncode, 0, r.stdout)
        with open(os.path.join(out, "secrets.json")) as f:
            made = json.load(f)
        for s in made:
            podman("secret", "rm", s["name"], check=False)
            podman("volume", "rm", "-f", s["name"], check=False)
            podman("secret", "create", s["name"], s["file"])
            type(self).secrets.append(s["name"])
        with open(os.path.join(out, "cascade-controller.json")) as f:
            import base64
            self.admintoken = base64.b64decode(json.load(f)["admintoken"]).decode()
        type(self).play = os.path.join(out, "play.yaml")
        r = podman("kube", "play", "--replace", "--network", "host", self.play, check=False,
                   timeout=300)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

        # the controller answers, every agent registers itself with the join token
        harness.wait_for(lambda: self.health(self.ctl_http, "/readyz") == 200, 60,
                         what="controller /readyz")

        def registered():
            st, _, b = self.admin("GET", "/api/cascade/clients?size=100")
            return st == 200 and {c["name"] for c in b["data"] if c["online"]} >= \
                set(self.NODES) and {c["name"]: c["id"] for c in b["data"]}
        ids = harness.wait_for(registered, 60, what="the three agents registered and online")
        # the tree, set at the controller
        for child, parent in (("region", "hq"), ("edge", "region")):
            st, _, b = self.admin("PUT", "/api/cascade/clients/%d" % ids[child],
                                  {"parent_id": ids[parent]})
            self.assertEqual(st, 200, b)
        by = {n["name"]: n for n in nodes}
        for n in self.NODES:
            harness.wait_for(lambda p=by[n]["http"]: self.health(p, "/readyz") == 200, 30,
                             what="%s /readyz" % n)

        path = "live/kube"
        pub, play = stream_tokens(self, "127.0.0.1", self.ctl_http, self.admintoken, path)
        publish_and_play(self, "rtmp://127.0.0.1:%d/%s%s" % (by["edge"]["rtmp"], path, pub),
                         "http://127.0.0.1:%d/flv/%s.flv%s" % (by["hq"]["http"], path, play),
                         self.media, os.path.join(self.tmp, "hq.flv"))

        # SIGTERM (podman pod stop): every container exits 0
        pods = ["cascade-agent-%s" % n for n in ("edge", "region", "hq")]
        pods += [p for p in podman("pod", "ps", "--format", "{{.Name}}").stdout.split()
                 if p.startswith("cascade-controller")]
        for p in pods:
            podman("pod", "stop", "-t", "30", p, timeout=60)
        for p in pods:
            info = json.loads(podman("pod", "inspect", p).stdout)
            info = info[0] if isinstance(info, list) else info
            for c in info["Containers"]:
                st = json.loads(podman("inspect", c["Id"]).stdout)[0]["State"]
                name = st.get("Name", c["Name"])
                if c["Name"].endswith("-infra"):
                    continue
                self.assertEqual(st["ExitCode"], 0, "%s exited %s" % (c["Name"], st["ExitCode"]))

    def health(self, port, path):
        try:
            return harness.http_request("127.0.0.1", port, "GET", path, timeout=3)[0]
        except OSError:
            return None


if __name__ == "__main__":
    unittest.main()
