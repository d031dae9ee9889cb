#!/usr/bin/env python3
"""The container image, for real (docs/deploy.md, "Container image"): deploy/container/build.sh
builds it with podman (making a Debian 12 base with debootstrap when there is none); the
controller and a three-node tree (hq <- region <- edge) run from it with `--network host` on
loopback ports, against the harness's PostgreSQL; ffmpeg on the host publishes at the edge, a
player on the host plays at hq (pushed up two levels over QUIC between containers); every
container stops on SIGTERM with exit 0 within its timeout.

Also checked: the image's size (<= 120 MB), its user (not root), both binaries in it."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import harness  # noqa: E402
from test_media import FFMPEG, decodes, make_media, video_packets  # noqa: E402

IMAGE = os.environ.get("CASCADE_IMAGE", "localhost/cascade") + ":latest"
LABEL = "cascade.test=container"
MAX_IMAGE_MB = 120
BUILD_TIMEOUT = 1500


def podman(*args, check=True, timeout=120):
    return subprocess.run(["podman"] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, check=check, timeout=timeout, env=podman_env())


def podman_env():
    env = dict(os.environ)
    # build.sh writes podman's configuration here (runc, ulimits within the hard limits)
    env.setdefault("CONTAINERS_CONF", "/var/lib/cascade-build/containers.conf")
    return env


def build_image():
    """deploy/container/build.sh, as a user would run it (cached layers make a rerun quick)."""
    t0 = time.monotonic()
    r = subprocess.run(["bash", os.path.join(ROOT, "deploy", "container", "build.sh")],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=BUILD_TIMEOUT)
    if r.returncode != 0:
        raise AssertionError("build.sh failed (%d):\n%s" % (r.returncode, r.stdout[-4000:]))
    sys.stderr.write("image built in %.0f s\n" % (time.monotonic() - t0))


def stream_tokens(testcase, host, port, admin_token, path):
    """A stream-signing key made at the controller, then ("?token=<publish>", "?token=<play>")
    for |path|: the deployment files leave authorization to the controller, whose default
    policy wants a token to publish and to play."""
    # 503 is the API's "try again" (a database connection being replaced): a client retries it
    # (docs/api.md); anything else, or 503 for 20 s, fails.
    deadline = time.monotonic() + 20
    while True:
        st, _, b = harness.http_request(host, port, "POST", "/api/cascade/streamauth/keys", {},
                                        token=admin_token, timeout=10)
        if st != 503 or time.monotonic() > deadline:
            break
        sys.stderr.write("POST /api/cascade/streamauth/keys: 503 %r, again\n" % (b,))
        time.sleep(0.5)
    testcase.assertEqual(st, 201, b)
    out = []
    for action in ("publish", "play"):
        st, _, b = harness.http_request(host, port, "POST", "/api/cascade/streamauth/tokens",
                                        {"path": path, "action": action, "ttl": 3600},
                                        token=admin_token, timeout=10)
        testcase.assertEqual(st, 201, b)
        out.append("?token=" + b["data"]["token"])
    return out


def publish_and_play(testcase, rtmp_url, flv_url, media, cap, within=60):
    """ffmpeg publishes |media| at |rtmp_url| while another ffmpeg plays 3 s of |flv_url| into
    |cap|; both again until the play works or |within| s passed (until a new node's links are up
    a push has nowhere to go). Asserts a decodable capture with at least 50 video frames."""
    deadline = time.monotonic() + within
    while True:
        pub = subprocess.Popen([FFMPEG, "-v", "error", "-re", "-i", media, "-c", "copy", "-f",
                                "flv", rtmp_url], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        play = subprocess.run([FFMPEG, "-v", "error", "-rw_timeout", "20000000", "-i", flv_url,
                               "-c", "copy", "-t", "3", "-f", "flv", "-y", cap],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              timeout=60)
        pub.kill()
        pub.wait()
        if play.returncode == 0 or time.monotonic() > deadline:
            break
    testcase.assertEqual(play.returncode, 0, play.stderr)
    n = len(video_packets(cap))
    testcase.assertGreaterEqual(n, 50, "%d video frames played" % n)
    ok, err = decodes(cap)
    testcase.assertTrue(ok, err[-500:])


class InContainer:
    """Mixin for harness.Controller / harness.Agent: the same server, run from the image. The
    work directory is mounted at the same path (owned by the image's user: `:U`), the process
    is the container's PID 1, and `podman run` (whose exit status is the container's) stands
    in for it, passing signals on."""

    entrypoint = None

    def command(self):
        self.container = "cascade-test-%s-%s" % (getattr(self, "name", "controller"),
                                                 harness.random_suffix(6))
        harness.at_exit(lambda n=self.container: podman("rm", "-f", "-t", "0", n, check=False))
        argv = ["podman", "run", "--rm", "--name", self.container, "--label", LABEL,
                "--network", "host", "--stop-timeout", "20",
                "-v", "%s:%s:U" % (self.workdir, self.workdir)]
        for d in self.mounts():
            argv += ["-v", "%s:%s:ro" % (d, d)]
        for k, v in self.extra_env.items():
            argv += ["-e", "%s=%s" % (k, v)]
        return argv + ["--entrypoint", self.entrypoint, IMAGE, "-c", self.config_path]

    def mounts(self):
        return []

    def popen_env(self):
        return podman_env()


PG_IN_CONTAINER = "/run/cascade-pg"


class ContainerController(InContainer, harness.Controller):
    entrypoint = "/usr/bin/cascade-controller"

    def __init__(self, pg, dbname, **kw):
        # The harness's PostgreSQL listens on a Unix socket only, in a directory the image's
        # user may not enter: its socket file alone is mounted, at another path.
        self.pg_socket = os.path.join(pg.socketdir, ".s.PGSQL.%d" % pg.port)
        dsn = "host=%s port=%d dbname=%s user=%s" % (PG_IN_CONTAINER, pg.port, dbname,
                                                     harness.PG_USER)
        wd = tempfile.mkdtemp(prefix="cascade-ctl-")
        # the CA and server certificate inside the mounted work directory
        super().__init__(dsn, workdir=wd, control_dir=os.path.join(wd, "control"), **kw)

    def command(self):
        argv = super().command()
        i = argv.index("--entrypoint")
        return argv[:i] + ["-v", "%s:%s/%s" % (self.pg_socket, PG_IN_CONTAINER,
                                               os.path.basename(self.pg_socket))] + argv[i:]


class ContainerAgent(InContainer, harness.Agent):
    entrypoint = "/usr/bin/cascade-agent"

    def mounts(self):
        return [self.ctl.control_dir]   # ca.crt, read-only


class ContainerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("podman needs root here (run as CI does)")
        harness.require_controller()
        build_image()
        podman("rm", "-f", "-t", "0", "--filter", "label=" + LABEL, check=False)
        cls.tmp = tempfile.mkdtemp(prefix="cascade-container-")
        cls.media = os.path.join(cls.tmp, "src.flv")
        make_media(cls.media, seconds=6)
        cls.pg = harness.shared_cluster()
        cls.db = cls.pg.create_database()

    @classmethod
    def tearDownClass(cls):
        podman("rm", "-f", "-t", "0", "--filter", "label=" + LABEL, check=False)
        if getattr(cls, "db", None):
            cls.pg.drop_database(cls.db)
        shutil.rmtree(getattr(cls, "tmp", "/nonexistent"), ignore_errors=True)

    def test_image(self):
        info = json.loads(podman("image", "inspect", IMAGE).stdout)[0]
        mb = info["Size"] / 1e6
        self.assertLessEqual(mb, MAX_IMAGE_MB, "image is %.0f MB" % mb)
        self.assertEqual(info["Config"].get("User"), "cascade")
        for b in ("cascade-controller", "cascade-agent"):
            r = podman("run", "--rm", "--network", "host", "--entrypoint", "/usr/bin/" + b, IMAGE,
                       "--version")
            self.assertIn(b, r.stdout)
        r = podman("run", "--rm", "--network", "host", "--entrypoint", "/usr/bin/id", IMAGE, "-u")
        self.assertNotEqual(r.stdout.strip(), "0", "the image runs as root")

    def test_tree_from_the_image(self):
        ctl = ContainerController(self.pg, self.db, config={"control": {"heartbeat": 500}})
        agents = {}
        try:
            cfg = {"cascadeclient": {"autopush": True, "onsub": {"pull": {".*": "m7s://$0"}}},
                   "subscribe": {"waittimeout": "15s"}, "log": {"level": "info"}}
            harness.start_tree(ctl, [("hq", None), ("region", "hq"), ("edge", "region")], cfg,
                               agents, timeout=60, agent_class=ContainerAgent)
            path = "live/container"
            publish_and_play(self, agents["edge"].rtmp_url(path), agents["hq"].flv_url(path),
                             self.media, os.path.join(self.tmp, "hq.flv"))
            # SIGTERM: every container exits 0 within its timeout, children first
            for name in ("edge", "region", "hq"):
                t = time.monotonic()
                agents.pop(name).stop(timeout=30)
                sys.stderr.write("%s stopped in %.1f s\n" % (name, time.monotonic() - t))
            ctl.stop(timeout=30)
        finally:
            for a in agents.values():
                a.stop(check=False)
            ctl.stop(check=False)


if __name__ == "__main__":
    unittest.main()
