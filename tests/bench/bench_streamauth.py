#!/usr/bin/env python3
"""Stream authorization benchmark (issue 17): what the edge's checks cost.

  (a) token checks: cascade-tokenbench times the edge's whole check of a player with a token
      (policy match, query parse, HMAC-SHA-256) on one core: checks per second, and the share of
      a core that 10,000 checks a second take (target: at most 5 %);
  (b) time to first frame: HTTP-FLV players of one live stream at two agents side by side in one
      run, one with auth.play none, one with auth.play controller (the default policy: a token);
      each player connects, asks with or without its token, and is timed until the first FLV tag
      (the GOP cache answers at once). Players alternate between the two; p50 and p90 of each
      and the difference (target: at most 1 ms at p50).

Usage: tests/bench/bench_streamauth.py [--players N] [--checks N]
Binaries: CASCADE_BIN_DIR (default build-bench/bin) for cascade-agent, cascade-controller and
cascade-tokenbench."""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
os.environ.setdefault("CASCADE_BIN_DIR", os.path.join(ROOT, "build-bench", "bin"))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import harness  # noqa: E402


def log(msg):
    sys.stderr.write("[bench_streamauth %s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


def ttff(port, path, query):
    """Seconds from connect to the first FLV tag of GET /flv/<path>.flv<query>."""
    t0 = time.perf_counter()
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(("GET /flv/%s.flv%s HTTP/1.1\r\nHost: x\r\n\r\n" % (path, query)).encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                raise RuntimeError("closed: %r" % data[:200])
            data += chunk
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep:
                if not head.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(head.decode(errors="replace"))
                if len(body) >= 13 + 11:  # FLV header + PreviousTagSize0, a tag header
                    return time.perf_counter() - t0
    finally:
        s.close()


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(p / 100.0 * len(v)))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--players", type=int, default=400, help="players per agent (alternating)")
    ap.add_argument("--checks", type=int, default=500000, help="token checks timed")
    args = ap.parse_args()
    bin_dir = harness.bin_dir()
    out = {"bin_dir": bin_dir}

    log("token checks (%d) ..." % args.checks)
    r = subprocess.run([os.path.join(bin_dir, "cascade-tokenbench"), str(args.checks)],
                       stdout=subprocess.PIPE, text=True, check=True)
    out["checks"] = json.loads(r.stdout)

    pg = harness.new_cluster()
    db = pg.create_database()
    ctl = harness.Controller(pg.dsn(db), config={"control": {"heartbeat": 500,
                                                             "polltimeout": 3000}})
    agents = {}
    tmp = tempfile.mkdtemp(prefix="cascade-bench-auth-")
    pubs = []
    try:
        modes = {"open": "none", "token": "controller"}
        for name, mode in modes.items():
            st, _, b = ctl.api("POST", "/api/cascade/clients",
                               {"name": name, "secret": name + "-bench-secret"})
            assert st == 201, b
            agents[name] = harness.Agent(ctl, name, name + "-bench-secret", config={
                "auth": {"publish": mode, "play": mode}, "log": {"level": "info"}})
        st, _, b = ctl.api("POST", "/api/cascade/streamauth/keys", {})
        assert st == 201, b

        def tok(action):
            st, _, b = ctl.api("POST", "/api/cascade/streamauth/tokens",
                               {"path": "live/b", "action": action, "ttl": 3600})
            assert st == 201, b
            return "?token=" + b["data"]["token"]
        pub_q, play_q = tok("publish"), tok("play")
        media = os.path.join(tmp, "src.flv")
        subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i",
                        "testsrc=size=640x360:rate=25", "-f", "lavfi", "-i",
                        "sine=frequency=440:sample_rate=44100", "-t", "10", "-c:v", "libx264",
                        "-preset", "ultrafast", "-g", "25", "-pix_fmt", "yuv420p", "-c:a", "aac",
                        "-f", "flv", media], check=True)

        def applied():
            st, _, b = ctl.api("GET", "/api/cascade/clients")
            return st == 200 and all(c["config_generation"]["applied"] ==
                                     c["config_generation"]["desired"] for c in b["data"])
        harness.wait_for(applied, 30, what="the agents applying the policy")
        for name, a in agents.items():
            url = a.rtmp_url("live/b") + (pub_q if name == "token" else "")
            pubs.append(subprocess.Popen(["ffmpeg", "-v", "error", "-re", "-stream_loop", "-1",
                                          "-i", media, "-c", "copy", "-f", "flv", url],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for a in agents.values():
            harness.wait_for(lambda a=a: a.streams().get("live/b", {}).get("state") ==
                             "publishing", 30, what="live/b at %s" % a.name)
        time.sleep(1.2)  # a whole GOP in the cache at both
        samples = {"open": [], "token": []}
        for _ in range(20):  # warm-up
            ttff(agents["open"].port, "live/b", "")
            ttff(agents["token"].port, "live/b", play_q)
        log("time to first frame, %d players each ..." % args.players)
        for i in range(args.players):
            order = ("open", "token") if i % 2 == 0 else ("token", "open")
            for name in order:
                q = play_q if name == "token" else ""
                samples[name].append(ttff(agents[name].port, "live/b", q))
        for name, v in samples.items():
            out["ttff_" + name] = {"p50_ms": pct(v, 50) * 1e3, "p90_ms": pct(v, 90) * 1e3,
                                   "n": len(v)}
        out["ttff_p50_added_ms"] = out["ttff_token"]["p50_ms"] - out["ttff_open"]["p50_ms"]
        out["ttff_p50_ratio"] = out["ttff_token"]["p50_ms"] / out["ttff_open"]["p50_ms"]
    finally:
        for p in pubs:
            p.kill()
            p.wait()
        for a in agents.values():
            a.stop(check=False)
        ctl.stop(check=False)
        subprocess.run(["rm", "-rf", tmp])
    c = out["checks"]
    print("token check (policy + query + HMAC): %.3f us, %.0f checks/s on one core; 10,000/s = "
          "%.2f %% of a core (target <= 5 %%); streamtoken_verify alone %.3f us" % (
              c["edge_check_us"], c["edge_checks_per_s"], c["core_pct_at_10000_per_s"],
              c["verify_us"]))
    print("HTTP-FLV time to first frame, p50 / p90: auth.play none %.3f / %.3f ms, token %.3f / "
          "%.3f ms; added at p50 %.3f ms (target <= 1 ms), ratio %.2f" % (
              out["ttff_open"]["p50_ms"], out["ttff_open"]["p90_ms"],
              out["ttff_token"]["p50_ms"], out["ttff_token"]["p90_ms"],
              out["ttff_p50_added_ms"], out["ttff_p50_ratio"]))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
