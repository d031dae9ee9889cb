#!/usr/bin/env python3
"""The compose example (deploy/compose, docs/deploy.md "Compose"), for real with podman-compose on
its default network: PostgreSQL (a stand-in image built here from Debian's PostgreSQL 15, with the
official image's environment contract, since no registry is reachable), the controller and
hq <- region <- edge from the image build.sh makes. The agents join with the join token and link
as the seed's static example does, by service name; a stream published from the host at the edge
plays from the host at hq; `podman-compose stop` sends SIGTERM and every container exits 0."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
COMPOSE = os.path.join(ROOT, "deploy", "compose")
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import harness  # noqa: E402
from test_container import (build_image, podman, podman_env, publish_and_play,  # noqa: E402
                            stream_tokens)
from test_media import make_media  # noqa: E402

PG_IMAGE = "localhost/cascade-postgres-test:latest"
ADMIN = "compose-test-admin-token-" + harness.random_suffix(12)


class ComposeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("podman needs root here (run as CI does)")
        build_image()
        r = podman("build", "--network", "host", "--build-arg",
                   "BASE=localhost/cascade-base:bookworm", "-t", PG_IMAGE,
                   os.path.join(HERE, "postgres"), check=False, timeout=900)
        if r.returncode != 0:
            raise AssertionError("the PostgreSQL stand-in did not build:\n" + r.stdout + r.stderr)
        cls.project = "cascadetest" + harness.random_suffix(6).lower()
        cls.ports = {k: harness.free_port() for k in ("CONTROLLER_HTTP_PORT", "HQ_HTTP_PORT",
                                                      "HQ_RTMP_PORT", "REGION_HTTP_PORT",
                                                      "EDGE_HTTP_PORT", "EDGE_RTMP_PORT")}
        cls.env = podman_env()
        cls.env.update({k: str(v) for k, v in cls.ports.items()})
        cls.env.update({"CASCADE_POSTGRES_IMAGE": PG_IMAGE, "CASCADE_ADMIN_TOKEN": ADMIN,
                        "CASCADE_JOIN_TOKEN": "compose-test-join-" + harness.random_suffix(12),
                        "CASCADE_NODE_SECRET": "compose-test-node-" + harness.random_suffix(12),
                        "POSTGRES_PASSWORD": "pw-" + harness.random_suffix(12)})
        cls.tmp = tempfile.mkdtemp(prefix="cascade-compose-")
        cls.media = os.path.join(cls.tmp, "src.flv")
        make_media(cls.media, seconds=6)
        harness.at_exit(cls.down)

    @classmethod
    def compose(cls, *args, timeout=300):
        return subprocess.run(["podman-compose", "-p", cls.project] + list(args), cwd=COMPOSE,
                              env=cls.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=timeout)

    @classmethod
    def down(cls):
        if getattr(cls, "project", None):
            cls.compose("down", "-v", "-t", "5", timeout=300)
            cls.project = None

    @classmethod
    def tearDownClass(cls):
        cls.down()
        shutil.rmtree(getattr(cls, "tmp", "/nonexistent"), ignore_errors=True)

    def api(self, path):
        return harness.http_request("127.0.0.1", self.ports["CONTROLLER_HTTP_PORT"], "GET", path,
                                    token=ADMIN, timeout=5)

    def test_compose_tree_carries_a_stream(self):
        r = self.compose("up", "-d")
        self.assertEqual(r.returncode, 0, r.stdout[-3000:])

        def tree():
            try:
                st, _, b = self.api("/api/cascade/clients")
            except OSError:
                return False
            if st != 200:
                return False
            n = {c["name"]: c for c in b["data"]}
            return (all(k in n and n[k]["online"] for k in ("hq", "region", "edge")) and
                    n["region"]["parent_id"] == n["hq"]["id"] and
                    n["edge"]["parent_id"] == n["region"]["id"])
        try:
            harness.wait_for(tree, 120, interval=0.5,
                             what="hq, region and edge online and linked as configured")
        except TimeoutError:
            for s in ("controller", "hq", "region", "edge"):
                out = podman("logs", "%s_%s_1" % (self.project, s), check=False)
                sys.stderr.write("--- %s ---\n%s%s\n" % (s, out.stdout[-1500:], out.stderr[-1500:]))
            raise

        path = "live/compose"
        try:
            pub, play = stream_tokens(self, "127.0.0.1", self.ports["CONTROLLER_HTTP_PORT"], ADMIN,
                                      path)
        except AssertionError:
            for s in ("controller", "postgres"):
                out = podman("logs", "%s_%s_1" % (self.project, s), check=False)
                sys.stderr.write("--- %s ---\n%s%s\n" % (s, out.stdout[-3000:], out.stderr[-3000:]))
            raise
        publish_and_play(self, "rtmp://127.0.0.1:%d/%s%s" % (self.ports["EDGE_RTMP_PORT"], path, pub),
                         "http://127.0.0.1:%d/flv/%s.flv%s" % (self.ports["HQ_HTTP_PORT"], path,
                                                               play),
                         self.media, os.path.join(self.tmp, "hq.flv"))

        r = self.compose("stop", "-t", "30")
        self.assertEqual(r.returncode, 0, r.stdout[-3000:])
        for s in ("edge", "region", "hq", "controller", "postgres"):
            st = json.loads(podman("inspect", "%s_%s_1" % (self.project, s)).stdout)[0]["State"]
            self.assertEqual(st["ExitCode"], 0, "%s exited %s" % (s, st["ExitCode"]))


if __name__ == "__main__":
    unittest.main()
