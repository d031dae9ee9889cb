#!/usr/bin/env python3
"""The local cascade of deploy/local/run.sh: a throwaway PostgreSQL, the
controller and four agents in a tree (hq <- region-a <- edge-a1, edge-a2),
with autopush and on-demand pull, in the foreground until Ctrl-C.
Uses the integration harness, so the quick start runs exactly what the
tests run."""

import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import json
import urllib.request

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "..", "tests", "integration"))
import harness  # noqa: E402


def wait_ready(url, proc, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def api(url, token, method, path, body):
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(), method=method,
                                 headers={"Authorization": "Bearer " + token,
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())["data"]


def main():
    port = int(os.environ.get("CASCADE_HTTP_PORT", "8080"))
    token = os.environ.get("CASCADE_ADMIN_TOKEN") or "adm_" + secrets.token_urlsafe(24)
    # The deployment join token: nodes that present it join approved.
    join = os.environ.get("CASCADE_JOIN_TOKEN") or "join_" + secrets.token_urlsafe(24)
    stop = []
    signal.signal(signal.SIGINT, lambda *a: stop.append(1))
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))

    print("starting PostgreSQL 15 (throwaway) ...", flush=True)
    pg = harness.new_cluster()
    db = pg.create_database(drop_at_exit=False)
    work = tempfile.mkdtemp(prefix="cascade-local-")
    harness.at_exit(lambda: subprocess.run(["rm", "-rf", work]))
    cfg_path = os.path.join(work, "controller.yaml")
    control_dir = os.path.join(work, "control")
    with open(cfg_path, "w") as f:
        f.write(harness.to_yaml({
            "http": {"listenaddr": "127.0.0.1:%d" % port},
            "database": {"dsn": pg.dsn(db)},
            "control": {"listenaddr": "tls+tcp://127.0.0.1:%d" % (port + 36865),
                        "datadir": control_dir},
            # The seed's example rules: the API relay is opt-in (empty allow = nothing).
            "cascadeserver": {"relayapi": {"allow": ["/api/", "/flv/"], "deny": ["/api/admin/"]},
                              "jointoken": join},
            "log": {"level": "info"},
        }))
    env = dict(os.environ, CASCADE_ADMIN_TOKEN=token)
    procs = []
    ctl = subprocess.Popen([os.path.join(os.environ["CASCADE_BIN_DIR"], "cascade-controller"),
                            "-c", cfg_path], env=env, stdin=subprocess.DEVNULL)
    procs.append(ctl)
    url = "http://127.0.0.1:%d" % port
    if not wait_ready(url, ctl):
        print("the controller did not start (see its log above)", file=sys.stderr)
        ctl.kill()
        return 1

    # Four agents: each knows its parent's QUIC address (the seed's
    # cascadeclient.server); the controller links them into a tree. Every
    # node pushes what is published to it up (autopush) and pulls what a
    # player asks for from its parent (the seed's onsub.pull example).
    nodes = [("hq", None), ("region-a", "hq"), ("edge-a1", "region-a"), ("edge-a2", "region-a")]
    quic = {name: "127.0.0.1:%d" % (44944 + 2 * i) for i, (name, _) in enumerate(nodes)}
    agent_urls = {}
    for i, (name, parent) in enumerate(nodes):
        acfg = {
            "node": {"name": name, "secret": "local-%s-%s" % (name, secrets.token_hex(8)),
                     "jointoken": join, "datadir": os.path.join(work, name)},
            "controller": {"url": "tls+tcp://127.0.0.1:%d" % (port + 36865),
                           "ca": os.path.join(control_dir, "ca.crt")},
            # public HTTP-FLV port, and the node's own API on its admin port (loopback)
            "http": {"listenaddr": "127.0.0.1:%d" % (port + 1 + i),
                     "adminaddr": "127.0.0.1:%d" % (port + 11 + i)},
            "rtmp": {"listenaddr": "127.0.0.1:%d" % (1935 + i)},
            "cascadeserver": {"quic": {"listenaddr": quic[name]}},
            "log": {"level": "info"},
        }
        acfg["cascadeclient"] = {"relayapi": {"allow": ["/api/", "/flv/"],
                                              "deny": ["/api/admin/"]},
                                 "autopush": True, "onsub": {"pull": {".*": "m7s://$0"}}}
        if parent:
            acfg["cascadeclient"].update({"enable": True, "server": quic[parent]})
        apath = os.path.join(work, name + ".yaml")
        with open(apath, "w") as f:
            f.write(harness.to_yaml(acfg))
        procs.append(subprocess.Popen([os.path.join(os.environ["CASCADE_BIN_DIR"], "cascade-agent"),
                                       "-c", apath], stdin=subprocess.DEVNULL))
        agent_urls[name] = "http://127.0.0.1:%d/api/cascade/status" % (port + 11 + i)
    # Stream authorization: the deployment's default policy wants a signed token to publish and
    # to play; a signing key is made, then a publish token and a play token for live/cam1.
    api(url, token, "POST", "/api/cascade/streamauth/keys", {})
    pub_tok = api(url, token, "POST", "/api/cascade/streamauth/tokens",
                  {"path": "live/cam1", "action": "publish", "ttl": 86400})["token"]
    play_tok = api(url, token, "POST", "/api/cascade/streamauth/tokens",
                   {"path": "live/cam1", "action": "play", "ttl": 86400})["token"]
    agents_text = "\n".join("  agent %-8s %s   (its own API: admin port, loopback)" % (n, u)
                             for n, u in agent_urls.items())
    edge_rtmp = "rtmp://127.0.0.1:%d/live/cam1?token=%s" % (1935 + 2, pub_tok)
    play = "?token=" + play_tok
    edge_flv = "http://127.0.0.1:%d/flv/live/cam1.flv%s" % (port + 3, play)
    hq_flv = "http://127.0.0.1:%d/flv/live/cam1.flv%s" % (port + 1, play)
    hq_rtmp = "rtmp://127.0.0.1:%d/live/cam1%s" % (1935, play)
    edge2_flv = "http://127.0.0.1:%d/flv/live/cam1.flv%s" % (port + 4, play)
    edge2_rtmp = "rtmp://127.0.0.1:%d/live/cam1%s" % (1935 + 3, play)
    print(f"""
Cascade is running.
  web console   {url}/console/   (sign in with the admin token below)
  REST API      {url}/api/cascade/clients
  admin token   {token}
  join token    {join}   (an agent with node.jointoken set to it joins at once;
                without it a new node waits, pending, for an operator's approval)
  config        {cfg_path}
  topology      {url}/api/cascade/topology   (with the admin token)
  health        {url}/healthz   metrics {url}/metrics
{agents_text}

Publishing and playing need signed tokens (valid 24 h; the ones below are for live/cam1).
Publish a test stream to edge-a1 over RTMP (or point OBS at {edge_rtmp}):
  ffmpeg -re -f lavfi -i testsrc=size=1280x720:rate=30 -f lavfi -i sine=frequency=440 \\
         -c:v libx264 -preset veryfast -tune zerolatency -g 60 -pix_fmt yuv420p -c:a aac \\
         -f flv {edge_rtmp}
Play it anywhere in the tree, over HTTP-FLV or RTMP:
  at edge-a1, where it is published:    ffplay {edge_flv}
  at hq, pushed up two levels:          ffplay {hq_flv}   (or {hq_rtmp})
  at edge-a2, pulled on demand:         ffplay {edge2_flv}   (or {edge2_rtmp})
  streams on a node:  http://127.0.0.1:{port + 14}/api/stream/list  (edge-a2's admin port; the others:
       {port + 11}..{port + 13}; the players' ports {port + 1}..{port + 4} serve only /flv/ and /healthz)

Try:
  curl -H 'Authorization: Bearer {token}' -X POST {url}/api/cascade/streamauth/tokens \\
       -d '{{"path": "live/cam2", "action": "publish", "ttl": 3600}}'   (a token for another path;
       "action": "play" for players, "addr": "..." to bind it to one client address)
  curl -H 'Authorization: Bearer {token}' -X PUT {url}/api/cascade/streamauth \\
       -d '{{"policy": [{{"pattern": ".*", "publish": "token", "play": "none"}}]}}'   (open playing)
  curl -H 'Authorization: Bearer {token}' {url}/api/cascade/topology
  curl -H 'Authorization: Bearer {token}' {url}/api/cascade/clients
  curl -H 'Authorization: Bearer {token}' {url}/api/cascade/streams    (which node publishes
       each stream, which relay it, players per node)
  curl -H 'Authorization: Bearer {token}' {url}/api/relay/3/api/stream/list   (the API relay: node 3's
       own /api/stream/list, reached through the control channel; ids from /api/cascade/clients)
  curl -H 'Authorization: Bearer {token}' -X POST {url}/api/cascade/clients \\
       -d '{{"name": "edge-1", "secret": "a-long-node-secret"}}'
  curl -H 'Authorization: Bearer {token}' -X PUT {url}/api/cascade/clients/ID \\
       -d '{{"pending": false}}'   (approve a node that registered itself without the join token)

Press Ctrl-C to stop and remove everything.
""", flush=True)
    while not stop and ctl.poll() is None:
        time.sleep(0.2)
    for p in reversed(procs):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in reversed(procs):
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
    print("stopping PostgreSQL and removing its data ...", flush=True)
    return 0 if not ctl.returncode else ctl.returncode


if __name__ == "__main__":
    sys.exit(main())
