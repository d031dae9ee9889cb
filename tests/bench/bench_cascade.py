#!/usr/bin/env python3
"""Cascade relay benchmark (issue 6): three Cascade agents linked over QUIC against three nginx-rtmp
servers relaying over RTMP, side by side in one run, driven by cascade-loadgen:

  top  <-  middle  <-  bottom
  Cascade:    hq <- region <- edge (cascadeclient.onsub.pull {".*": "m7s://$0"}; edge autopushes)
  nginx-rtmp: origin <- mid (pull rtmp://origin) <- edge (pull rtmp://mid, push rtmp://mid)

  ttff      time to first frame of a player at the bottom whose stream is published at the top
            (an on-demand pull through both levels), one new player every 1/ttff_rate s, each on a
            path nobody below the top has pulled yet; the same at the middle (one level), and,
            for reference, players at the top. Each player leaves after ttff_hold s, so at most
            rate * hold of them play at once.
  push      N streams of 4 Mbit/s published at the bottom, relayed one hop up (Cascade: autopush;
            nginx: push), one player per stream at the middle: frames lost, and the CPU of both
            servers per relayed Gbit/s. N in steps until loss.
  latency   half the push load published at the top, one player per stream at each level: the
            SEI wall-clock latency at each level, and the difference per hop. Cascade runs this on
            a second tree with subscribe.mergewrite 0s (a write per frame, as nginx-rtmp does), so
            the players' merged write does not blur the hop. Again with 10 streams, where no
            core is busy, to see the hop itself, and with 100 streams, where the servers' one
            core is about half busy (the push steps measure two nodes, this scenario three and
            three sets of players: half the push capacity loads this core 80-95 %). And the
            100 streams once more with the top server moved to the load generators' core
            ("split"): the top -> middle hop then crosses cores, as it crosses machines in a
            deployment, so its receiver no longer waits for the sender's time slice.

Every server is pinned to core 1 with taskset, the load generators to core 0 (with the controller
and PostgreSQL). Media is generated with ffmpeg into a temporary directory, never committed.

Usage: tests/bench/bench_cascade.py [--quick] [--json FILE] [--only cascade|nginx]
                                    [--latency-only] [--cc bbr|bbr2|cubic|reno]
Binaries as for bench_media.py (CASCADE_BIN_DIR, default build-bench/bin; CASCADE_LOADGEN).
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_media as bm  # noqa: E402
from bench_media import harness  # noqa: E402

SERVER_CORE, LOADGEN_CORE = bm.SERVER_CORE, bm.LOADGEN_CORE
LEVELS = ("top", "middle", "bottom")


def log(msg):
    sys.stderr.write("[bench_cascade %s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------------
# the two chains


class CascadeChain:
    """hq <- region <- edge under one controller; |merge| as subscribe.mergewrite when given."""

    def __init__(self, pg, merge=None, name="cascade", cc=None):
        self.name = name
        self.ctl = harness.Controller(pg.dsn(pg.create_database()),
                                      config={"control": {"heartbeat": 1000}})
        if bm.pinning():
            bm.pin_all_tasks(self.ctl.proc.pid, LOADGEN_CORE)
        names = {"top": "hq", "middle": "region", "bottom": "edge"}
        qport = {"top": free_udp_port(), "middle": free_udp_port()}
        self.agents, ids, parent = {}, {}, None
        for lvl in LEVELS:
            n = names[lvl]
            body = {"name": n, "secret": n + "-bench-secret"}
            if parent is not None:
                body["parent_id"] = ids[parent]
            st, _, b = self.ctl.api("POST", "/api/cascade/clients", body)
            if st != 201:
                raise RuntimeError("registering %s failed: %d %r" % (n, st, b))
            ids[lvl] = b["data"]["id"]
            parent = lvl
        for lvl in LEVELS:
            n = names[lvl]
            cfg = {
                "log": {"level": "warn"},
                "rtmp": {"maxconnections": 100000},
                "http": {"maxconnections": 100000},
                # one QUIC stream per relayed path: room for the largest step
                "quic": {"maxstreams": 4096, **({"cc": cc} if cc else {})},
                # only the bottom pushes: the push test measures exactly one hop
                "cascadeclient": {"autopush": lvl == "bottom",
                                  "onsub": {"pull": {".*": "m7s://$0"}}},
                "subscribe": {"waittimeout": "15s",
                              **({"mergewrite": merge} if merge is not None else {})},
                "publish": {"delayclosetimeout": "2s"},
                "pull": {"linger": "2s"},
            }
            if lvl in qport:
                cfg["cascadeserver"] = {"quic": {"listenaddr": "127.0.0.1:%d" % qport[lvl]}}
            a = harness.Agent(self.ctl, n, n + "-bench-secret", config=cfg)
            bm.pin_all_tasks(a.proc.pid, SERVER_CORE)
            self.agents[lvl] = a
        for child, par in (("middle", "top"), ("bottom", "middle")):
            self._wait_link(child, ids[par])
        for a in self.agents.values():
            bm.wait_port(a.rtmp_port)
            bm.pin_all_tasks(a.proc.pid, SERVER_CORE)   # threads started since

    def _wait_link(self, lvl, parent_id):
        def up():
            return any(l["role"] == "parent" and l["peer_id"] == parent_id and l["state"] == "up"
                       for l in self.agents[lvl].status()["links"])
        harness.wait_for(up, 30, interval=0.05, what="%s link up" % lvl)

    def url(self, lvl, stream):
        return self.agents[lvl].rtmp_url("live/" + stream)

    def cpu(self, lvl):
        return bm.proc_cpu(self.agents[lvl].proc.pid)

    def pin(self, lvl, core):
        bm.pin_all_tasks(self.agents[lvl].proc.pid, core)

    def metric(self, lvl, name):
        """A counter from the agent's /metrics (0 when absent)."""
        a = self.agents[lvl]
        _, _, text = a.admin_request("GET", "/metrics", timeout=5)
        for line in str(text).splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                try:
                    return float(line.split()[-1])
                except ValueError:
                    pass
        return 0.0

    def stop(self):
        for a in self.agents.values():
            a.stop(check=False)
        self.ctl.stop(check=False)


class NginxChain:
    """origin <- mid <- edge, one worker each: mid and edge pull on demand from the level above
    (ngx_rtmp_relay_module `pull`), edge pushes what is published at it to mid (`push`).
    `wait_key on`: a player starts on a keyframe, as Cascade's players do (nginx-rtmp keeps no
    GOP, so the first picture waits for the publisher's next keyframe either way)."""

    name = "nginx-rtmp"

    def __init__(self, tmp):
        self.ports = {lvl: harness.free_port() for lvl in LEVELS}
        self.procs, self.workers = {}, {}
        up = {"middle": "top", "bottom": "middle"}
        for lvl in LEVELS:
            d = os.path.join(tmp, "nginx-" + lvl)
            os.makedirs(d)
            relay = ""
            if lvl in up:
                relay += "pull rtmp://127.0.0.1:%d/live;\n" % self.ports[up[lvl]]
            if lvl == "bottom":
                relay += "push rtmp://127.0.0.1:%d/live;\n" % self.ports["middle"]
            conf = os.path.join(d, "nginx.conf")
            with open(conf, "w") as f:
                f.write("load_module %s;\n"
                        "worker_processes 1;\n"
                        "worker_rlimit_nofile 65536;\n"
                        "daemon off;\n"
                        "pid %s/nginx.pid;\n"
                        "error_log %s/error.log warn;\n"
                        "events { worker_connections 16384; }\n"
                        "rtmp { server { listen 127.0.0.1:%d;\n"
                        "  application live { live on; wait_key on;\n%s  } } }\n"
                        % (bm.NGINX_MODULE, d, d, self.ports[lvl], relay))
            cmd = ["nginx", "-c", conf, "-p", d]
            if bm.pinning():
                cmd = ["taskset", "-c", str(SERVER_CORE)] + cmd
            logf = open(os.path.join(d, "stderr.log"), "wb")
            p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf,
                                 stderr=subprocess.STDOUT, preexec_fn=harness._die_with_parent)
            self.procs[lvl] = p
            harness.at_exit(lambda p=p: self._stop(p))
            bm.wait_port(self.ports[lvl])
            self.workers[lvl] = harness.wait_for(lambda p=p: self._worker(p), 10,
                                                 what="the nginx worker")

    @staticmethod
    def _worker(p):
        with open("/proc/%d/task/%d/children" % (p.pid, p.pid)) as f:
            kids = f.read().split()
        return int(kids[0]) if kids else None

    def url(self, lvl, stream):
        return "rtmp://127.0.0.1:%d/live/%s" % (self.ports[lvl], stream)

    def cpu(self, lvl):
        return bm.proc_cpu(self.workers[lvl]) + bm.proc_cpu(self.procs[lvl].pid)

    def pin(self, lvl, core):
        for pid in (self.procs[lvl].pid, self.workers[lvl]):
            bm.pin_all_tasks(pid, core)

    @staticmethod
    def _stop(p):
        if p.poll() is None:
            p.send_signal(signal.SIGQUIT)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def stop(self):
        for p in self.procs.values():
            self._stop(p)


# --------------------------------------------------------------------------------------------------
# load generators


class Loadgen:
    """One cascade-loadgen process on the load generator's core; summary() waits for its end."""

    def __init__(self, args, duration, warmup=0):
        cmd = [bm.loadgen_path(), "--duration", str(duration), "--warmup", str(warmup)] + \
            [str(a) for a in args]

        def pin_self():
            if bm.pinning():
                os.sched_setaffinity(0, {LOADGEN_CORE})
            harness._die_with_parent()

        self.errf = tempfile.TemporaryFile()
        self.outf = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(cmd, stdout=self.outf, stderr=self.errf, preexec_fn=pin_self)
        self.cmd = cmd

    def cpu(self):
        return bm.proc_cpu(self.proc.pid)

    def summary(self, timeout):
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            rc = "timeout"
        self.outf.seek(0)
        self.errf.seek(0)
        out = self.outf.read().decode(errors="replace")
        err = self.errf.read().decode(errors="replace")
        self.outf.close()
        self.errf.close()
        for line in reversed(out.splitlines()):
            d = json.loads(line)
            if d.get("summary"):
                if rc != 0:
                    break
                d["stderr"] = err[-1500:]
                return d
        raise RuntimeError("cascade-loadgen failed (%s): %s\n%s"
                           % (rc, " ".join(self.cmd), err[-2000:]))


# --------------------------------------------------------------------------------------------------
# the scenarios


def ttff(chain, media, cfg, lvl, tag):
    """|trials| players at |lvl|, one every 1/rate s, each on its own stream published at the top."""
    n, rate, hold, delay = cfg["ttff_trials"], cfg["ttff_rate"], cfg["ttff_hold"], 3
    dur = delay + n / rate + hold + 1
    lg = Loadgen(["--publish", n, "--file", media, "--url", chain.url("top", tag),
                  "--play", n, "--play-url", chain.url(lvl, tag), "--ramp", rate,
                  "--hold", hold, "--delay", delay], dur)
    s = lg.summary(dur + 30)
    res = {k: s[k] for k in ("ttff_n", "ttff_p50_ms", "ttff_p99_ms", "ttff_max_ms", "ttfm_n",
                             "ttfm_p50_ms", "ttfm_p99_ms", "ttfm_max_ms", "errors",
                             "players_started", "gaps")}
    res["level"] = lvl
    log("%s ttff at %s: %d/%d players got a keyframe; first keyframe p50 %.1f p99 %.1f max %.1f ms;"
        " first frame p50 %.1f p99 %.1f ms; errors %d"
        % (chain.name, lvl, s["ttff_n"], s["players_started"], s["ttff_p50_ms"], s["ttff_p99_ms"],
           s["ttff_max_ms"], s["ttfm_p50_ms"], s["ttfm_p99_ms"], s["errors"]))
    return res


def perf_start(chain, n):
    """With CASCADE_BENCH_PERF=DIR, `perf record -g` of the bottom and middle servers over a push
    step's window, into DIR/<chain>-<level>-<streams>.data (for `perf report -i`)."""
    out = os.environ.get("CASCADE_BENCH_PERF")
    if not out or not shutil.which("perf") or not hasattr(chain, "agents"):
        return []
    os.makedirs(out, exist_ok=True)
    return [subprocess.Popen(["perf", "record", "-F", "999", "-g", "-p",
                              str(chain.agents[lvl].proc.pid), "-o",
                              os.path.join(out, "%s-%s-%d.data" % (chain.name, lvl, n))],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for lvl in ("bottom", "middle")]


def perf_stop(perfs):
    for p in perfs:
        p.send_signal(signal.SIGINT)
    for p in perfs:
        p.wait(30)


def push(chain, media, cfg):
    """N streams published at the bottom, one player each at the middle, N in steps until loss."""
    steps, best, bound = [], None, None
    for n in cfg["push_steps"]:
        delay, ramp = 3, cfg["ramp"]
        warm = int(delay + n / ramp + cfg["settle"]) + 1
        dur = warm + cfg["window"]
        lg = Loadgen(["--publish", n, "--file", media, "--url", chain.url("bottom", "p%d" % n),
                      "--play", n, "--play-url", chain.url("middle", "p%d" % n), "--ramp", ramp,
                      "--delay", delay, "--report", 1], dur, warm)
        # CPU over the window: sampled at the warmup mark and at the end
        t_end_warm = time.monotonic() + warm
        while time.monotonic() < t_end_warm and lg.proc.poll() is None:
            time.sleep(0.05)
        c0 = {lvl: chain.cpu(lvl) for lvl in ("bottom", "middle")}
        lg0 = lg.cpu() if lg.proc.poll() is None else float("nan")
        perfs = perf_start(chain, n)
        drop0 = {lvl: chain.metric(lvl, "cascade_frames_dropped_total")
                 for lvl in ("bottom", "middle")} if hasattr(chain, "metric") else None
        while lg.proc.poll() is None and time.monotonic() < t_end_warm + cfg["window"] - 0.2:
            time.sleep(0.05)
        c1 = {lvl: chain.cpu(lvl) for lvl in ("bottom", "middle")}
        lg1 = lg.cpu() if lg.proc.poll() is None else float("nan")
        perf_stop(perfs)
        drop1 = {lvl: chain.metric(lvl, "cascade_frames_dropped_total")
                 for lvl in ("bottom", "middle")} if drop0 is not None else None
        s = lg.summary(cfg["window"] + 30)
        secs = s["secs"]
        cpu_b, cpu_m = c1["bottom"] - c0["bottom"], c1["middle"] - c0["middle"]
        # the CPU is read about 0.2 s before the loadgen's window ends: scale to its length
        span = cfg["window"] - 0.2
        cpu_b, cpu_m = cpu_b * secs / span, cpu_m * secs / span
        relayed = s["pub_bytes"] * 8 / secs / 1e9
        w = {"step": n, "secs": secs, "players": s["players_connected"],
             "publishers": s["publishers"], "frames": s["frames"], "pub_frames": s["pub_frames"],
             "bytes": s["bytes"], "gaps": s["gaps"], "errors": s["errors"],
             "gbps": s["bytes"] * 8 / secs / 1e9, "relayed_gbps": relayed,
             "cpu_bottom": cpu_b / secs, "cpu_middle": cpu_m / secs,
             "cpu_util": (cpu_b + cpu_m) / secs, "loadgen_util": (lg1 - lg0) / span,
             "sei_p50_ms": s["sei_p50_ms"], "sei_p99_ms": s["sei_p99_ms"], "pub_lag_ms": 0.0}
        w["cores_per_gbps"] = w["cpu_util"] / relayed if relayed > 0 else float("nan")
        if drop0 is not None:
            w["dropped_bottom"] = drop1["bottom"] - drop0["bottom"]
            w["dropped_middle"] = drop1["middle"] - drop0["middle"]
        ok = bm.lossless(w, n, streams=n, per_player_frames_ratio=0.995) and \
            s["publishers"] == n
        w["lossless"] = ok
        steps.append(w)
        log("%s push %4d streams: relayed %.2f Gbit/s, cpu bottom %.0f%% middle %.0f%% "
            "(%.3f cores per Gbit/s), loadgen %.0f%%, delivered %.4f, gaps %d, errors %d, "
            "sei p99 %.0f ms%s%s"
            % (chain.name, n, relayed, 100 * w["cpu_bottom"], 100 * w["cpu_middle"],
               w["cores_per_gbps"], 100 * w["loadgen_util"], w["delivered"], w["gaps"],
               w["errors"], w["sei_p99_ms"],
               "" if drop0 is None else ", hub drops %d/%d" % (w["dropped_bottom"],
                                                               w["dropped_middle"]),
               "" if ok else "  <- loss"))
        if not ok:
            bound = "loadgen" if w["loadgen_util"] > 0.9 else \
                "server core" if w["cpu_util"] > 0.9 else "loss"
            break
        best = w
        if w["loadgen_util"] > 0.95 or w["cpu_util"] > 0.95:
            bound = "loadgen" if w["loadgen_util"] > 0.95 else "server core"
            log("a core is saturated (%s): stopping here" % bound)
            break
    else:
        bound = "steps"
    return {"steps": steps, "best": best, "bound": bound}


def latency(chain, media, cfg, n, split=False):
    """|n| streams published at the top; one player per stream at every level, all at once.
    |split|: the top server runs on the load generators' core for this run, so the hop from it
    crosses cores (as it crosses machines in a deployment) and its receiver never waits for the
    sender's time slice."""
    if split:
        chain.pin("top", LOADGEN_CORE)
        try:
            return latency(chain, media, cfg, n)
        finally:
            chain.pin("top", SERVER_CORE)
    delay, ramp = 3, cfg["ramp"]
    warm = int(delay + 3 * n / ramp + cfg["settle"]) + 2
    dur = warm + cfg["lat_window"]
    lgs = {"top": Loadgen(["--publish", n, "--file", media, "--url", chain.url("top", "l"),
                           "--play", n, "--ramp", ramp, "--delay", delay], dur, warm)}
    for i, lvl in enumerate(("middle", "bottom")):
        # players of the lower levels start a little later, so each level pulls from a live one
        lgs[lvl] = Loadgen(["--play", n, "--streams", n, "--url", chain.url(lvl, "l"),
                            "--ramp", ramp, "--delay", delay + (i + 1) * (n / ramp + 0.5)],
                           dur, warm)
    res = {"streams": n}
    t_warm = time.monotonic() + warm
    while time.monotonic() < t_warm and lgs["top"].proc.poll() is None:
        time.sleep(0.05)
    c0 = sum(chain.cpu(lvl) for lvl in LEVELS)
    t1 = time.monotonic()
    while time.monotonic() < t_warm + cfg["lat_window"] - 0.2 and lgs["top"].proc.poll() is None:
        time.sleep(0.05)
    res["server_cores"] = (sum(chain.cpu(lvl) for lvl in LEVELS) - c0) / (time.monotonic() - t1)
    for lvl in LEVELS:
        s = lgs[lvl].summary(dur + 30)
        res[lvl] = {k: s[k] for k in ("sei_p50_ms", "sei_p99_ms", "sei_max_ms", "gaps", "errors",
                                      "players_connected", "frames", "lat_p50_ms", "lat_p99_ms")}
    for a, b in (("top", "middle"), ("middle", "bottom")):
        res["hop_%s_%s" % (a, b)] = {
            "p50_ms": res[b]["sei_p50_ms"] - res[a]["sei_p50_ms"],
            "p99_ms": res[b]["sei_p99_ms"] - res[a]["sei_p99_ms"]}
    log("%s latency, %d streams: servers %.0f%% of their core; SEI p50/p99 top %.2f/%.2f, "
        "middle %.2f/%.2f, bottom %.2f/%.2f ms; gaps %d/%d/%d"
        % (chain.name, n, 100 * res["server_cores"], res["top"]["sei_p50_ms"], res["top"]["sei_p99_ms"],
           res["middle"]["sei_p50_ms"], res["middle"]["sei_p99_ms"], res["bottom"]["sei_p50_ms"],
           res["bottom"]["sei_p99_ms"], res["top"]["gaps"], res["middle"]["gaps"],
           res["bottom"]["gaps"]))
    return res


# --------------------------------------------------------------------------------------------------
# report


def table(res):
    names = [s for s in ("cascade", "nginx-rtmp") if s in res]
    rows = []

    def get(srv, *path):
        v = res.get(srv)
        for p in path:
            if v is None:
                return None
            v = v.get(p) if isinstance(v, dict) else None
        return v

    def row(label, srvs, path, spec="%.2f", target=""):
        vals = [get(s, *path) for s in srvs]
        if all(v is None for v in vals):
            return   # not measured in this run (--latency-only, --only)
        r = bm.ratio(vals[0], vals[1]) if len(vals) == 2 else "-"
        rows.append((label, [bm.fmt(v, spec) for v in vals], r, target))

    pair = names
    lat = ["cascade-mw0" if s == "cascade" else s for s in names]
    row("ttff at the bottom (2-level pull), keyframe p50 ms", pair, ("ttff_bottom", "ttff_p50_ms"),
        "%.1f", "<= 50")
    row("ttff at the bottom, keyframe p99 ms", pair, ("ttff_bottom", "ttff_p99_ms"), "%.1f",
        "<= 150")
    row("ttff at the bottom, first audio/video p50 ms", pair, ("ttff_bottom", "ttfm_p50_ms"),
        "%.1f")
    row("ttff at the middle (1-level pull), keyframe p50 ms", pair,
        ("ttff_middle", "ttff_p50_ms"), "%.1f")
    row("ttff at the middle, keyframe p99 ms", pair, ("ttff_middle", "ttff_p99_ms"), "%.1f")
    row("ttff at the top (local), keyframe p50 ms", pair, ("ttff_top", "ttff_p50_ms"), "%.1f")
    row("ttff at the top, keyframe p99 ms", pair, ("ttff_top", "ttff_p99_ms"), "%.1f")
    for key in ("latency", "latency_core_half", "latency_split", "latency_light"):
        n = get(lat[0], key, "streams")
        if n is None:
            continue
        tag = "%s streams" % bm.fmt(n, "%d")
        if key == "latency_split":
            tag += ", top server on core %d" % LOADGEN_CORE
        row("[%s] servers' core busy (3 nodes)" % tag, lat, (key, "server_cores"), "%.2f")
        for a, b, t50, t99 in (("top", "middle", "<= 2", "<= 20"),
                               ("middle", "bottom", "<= 2", "<= 20")):
            row("[%s] latency added %s -> %s, p50 ms" % (tag, a, b), lat,
                (key, "hop_%s_%s" % (a, b), "p50_ms"), "%.2f", t50)
            row("[%s] latency added %s -> %s, p99 ms" % (tag, a, b), lat,
                (key, "hop_%s_%s" % (a, b), "p99_ms"), "%.2f", t99)
        for lvl in LEVELS:
            rows.append(("[%s] latency at the %s, p50 / p99 ms" % (tag, lvl),
                         ["%s / %s" % (bm.fmt(get(s, key, lvl, "sei_p50_ms")),
                                       bm.fmt(get(s, key, lvl, "sei_p99_ms"))) for s in lat],
                         "", ""))
    row("push: streams relayed one hop without loss", pair, ("push", "best", "step"), "%d",
        ">= 500")
    row("push: relayed Gbit/s at that step", pair, ("push", "best", "relayed_gbps"))
    row("push: CPU bottom + middle at that step (cores)", pair, ("push", "best", "cpu_util"))
    common = res.get("push_common")
    if common:
        row("push at %d streams: cores per relayed Gbit/s" % common, pair,
            ("push", "common", "cores_per_gbps"), "%.3f", "<= nginx")
        row("push at %d streams: CPU bottom (cores)" % common, pair,
            ("push", "common", "cpu_bottom"), "%.3f")
        row("push at %d streams: CPU middle (cores)" % common, pair,
            ("push", "common", "cpu_middle"), "%.3f")
    w0 = max(len(r[0]) for r in rows)
    out = ["%-*s  %14s  %14s  %8s  %s" % (w0, "", names[0] if names else "",
                                          names[1] if len(names) > 1 else "", "ratio", "target")]
    for label, vals, r, t in rows:
        vals = vals + ["-"] * (2 - len(vals))
        out.append("%-*s  %14s  %14s  %8s  %s" % (w0, label, vals[0], vals[1], r, t))
    for s in names:
        b = get(s, "push", "bound")
        if b:
            out.append("%s push: %s" % (s, {"steps": "lossless up to the last step",
                                             "loadgen": "the load generator's core saturated",
                                             "server core": "the servers' core saturated",
                                             "loss": "frames lost"}.get(b, b)))
    out.append("ratio = cascade / nginx-rtmp; latency rows: Cascade with subscribe.mergewrite 0s; "
               "servers on core 1, load generators on core 0")
    return "\n".join(out)


def main():
    def extra(ap):
        ap.add_argument("--latency-only", action="store_true",
                        help="only the latency rows (100 streams, 100 split, 10)")
        ap.add_argument("--cc", choices=("bbr", "bbr2", "cubic", "reno"),
                        help="quic.cc of the Cascade agents (default: the agent's default)")
        ap.add_argument("--streams", type=int, metavar="N",
                        help="streams of the loaded latency rows (default 100; 50 with --quick)")
        ap.add_argument("--push-only", action="store_true",
                        help="only the push rows (no time to first frame, no latency)")
        ap.add_argument("--push-steps", metavar="N,N,...",
                        help="streams of the push steps (default 100,250,375,500; 50,100,250 "
                             "with --quick)")
    args = bm.bench_args(__doc__, "short run (about 3 minutes)", extra)
    if args.only != "nginx":
        harness.require_controller()
    bm.loadgen_path()
    if not bm.pinning():
        log("fewer than 2 CPUs: running unpinned, figures are not comparable")

    if args.quick:
        cfg = {"ttff_trials": 30, "ttff_rate": 4, "ttff_hold": 3, "push_steps": [50, 100, 250],
               "ramp": 500, "settle": 2, "window": 4, "lat_window": 5, "seconds": 10,
               "lat_light": 10, "lat_core_half": 50}
    else:
        cfg = {"ttff_trials": 80, "ttff_rate": 4, "ttff_hold": 3,
               "push_steps": [100, 250, 375, 500], "ramp": 500, "settle": 3, "window": 8,
               "lat_window": 10, "seconds": 20, "lat_light": 10, "lat_core_half": 100}

    if args.streams:
        cfg["lat_core_half"] = args.streams
    if args.push_steps:
        cfg["push_steps"] = [int(x) for x in args.push_steps.split(",")]
    tmp = tempfile.mkdtemp(prefix="cascade-bench-cascade-")
    if not args.keep:
        harness.at_exit(lambda: shutil.rmtree(tmp, ignore_errors=True))
    log("generating media in %s" % tmp)
    m4 = os.path.join(tmp, "4mbit.flv")
    br4 = bm.ffmpeg_media(m4, cfg["seconds"], "1280x720", 3900000, 96000)
    log("media: %.2f Mbit/s, keyframe every 2 s" % (br4 / 1e6))

    res = {"config": cfg, "media_bps": br4, "cpus": os.cpu_count(), "pinned": bm.pinning(),
           "loadavg_start": open("/proc/loadavg").read().split()[:3]}
    t0 = time.monotonic()
    pg = harness.new_cluster() if args.only != "nginx" else None
    made = []

    def run_chain(chain):
        r = res.setdefault(chain.name, {})
        if not args.push_only:
            r["ttff_top"] = ttff(chain, m4, cfg, "top", "tt")
            r["ttff_middle"] = ttff(chain, m4, cfg, "middle", "tm")
            r["ttff_bottom"] = ttff(chain, m4, cfg, "bottom", "tb")
        r["push"] = push(chain, m4, cfg)

    if args.latency_only:
        if args.only != "nginx":
            res["cascade"] = {}   # the table's column
    elif args.only != "nginx":
        c = CascadeChain(pg, cc=args.cc)
        try:
            run_chain(c)
        finally:
            c.stop()
        made.append("cascade")
    ng = None
    if args.only != "cascade":
        ng = NginxChain(tmp)
        res.setdefault(ng.name, {})
        if not args.latency_only:
            run_chain(ng)
            made.append("nginx-rtmp")
    # the same load on both for the latency: half the largest push step both passed
    passed = [set(w["step"] for w in res[s]["push"]["steps"] if w["lossless"]) for s in made]
    common = sorted(set.intersection(*passed)) if passed else []
    if common:
        res["push_common"] = common[-1]
        for s in made:
            res[s]["push"]["common"] = next(w for w in res[s]["push"]["steps"]
                                            if w["step"] == common[-1])
    half = max(10, (common[-1] if common else cfg["push_steps"][0]) // 2)
    res["latency_streams"] = half

    def run_latency(chain, r):
        if not args.latency_only:
            r["latency"] = latency(chain, m4, cfg, half)
        r["latency_light"] = latency(chain, m4, cfg, cfg["lat_light"])
        r["latency_core_half"] = latency(chain, m4, cfg, cfg["lat_core_half"])
        if bm.pinning():
            r["latency_split"] = latency(chain, m4, cfg, cfg["lat_core_half"], split=True)

    if args.push_only:
        if ng is not None:
            ng.stop()
    elif ng is not None:
        run_latency(ng, res["nginx-rtmp"])
        ng.stop()
    if args.only != "nginx" and not args.push_only:
        c = CascadeChain(pg, merge="0s", name="cascade-mw0", cc=args.cc)
        try:
            run_latency(c, res.setdefault("cascade-mw0", {}))
        finally:
            c.stop()
    res["elapsed_s"] = time.monotonic() - t0
    res["loadavg_end"] = open("/proc/loadavg").read().split()[:3]

    print(table(res))
    print("load average at start %s, at end %s; %.0f s"
          % (" ".join(res["loadavg_start"]), " ".join(res["loadavg_end"]), res["elapsed_s"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2, sort_keys=True)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
