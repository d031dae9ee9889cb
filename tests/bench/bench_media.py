#!/usr/bin/env python3
"""Media benchmark (issue 4): Cascade's agent against nginx-rtmp, side by side in one run, on the
same generated stream, each server pinned to one core (core 1) and cascade-loadgen on core 0:

  fan-out   one 4 Mbit/s stream, RTMP players added in steps until frames are lost (gaps, fewer
            frames than published, refused players): delivered Gbit/s per CPU-second of the server
            and the player count reached;
  ingest    N publishers at 2 Mbit/s (one player each, to see what arrives) until loss;
  memory    server VmRSS before and after 500 idle players of a tiny stream: KiB per player;
  latency   end-to-end p50/p99 at half the lower fan-out count reached (same load on both).

Latency comes from the wall clock the publisher stamps into the H.264 stream (an SEI NAL unit),
which every server forwards untouched; Cascade also forwards the onCascadeStamp data messages
(nginx-rtmp drops unknown data messages), shown as a second figure.

The media is generated with ffmpeg's lavfi sources into a temporary directory, never committed.

Usage: tests/bench/bench_media.py [--quick] [--json FILE] [--only cascade|nginx] [--ingest-only]
                                  [--fanout-only] [--fan-steps N,N,...] [--no-mw0]
--fanout-only runs the fan-out and latency rows alone (no idle memory, no ingest); --fan-steps
replaces the fan-out's player steps; --no-mw0 skips the subscribe.mergewrite 0 reference run.
Binaries: CASCADE_BIN_DIR (default build-bench/bin) for cascade-agent and cascade-controller;
cascade-loadgen from CASCADE_LOADGEN, else CASCADE_BIN_DIR, else build/bin.
"""

import argparse
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
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
os.environ.setdefault("CASCADE_BIN_DIR", os.path.join(ROOT, "build-bench", "bin"))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import harness  # noqa: E402

NGINX_MODULE = "/usr/lib/nginx/modules/ngx_rtmp_module.so"
CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVER_CORE, LOADGEN_CORE = 1, 0


def log(msg):
    sys.stderr.write("[bench_media %s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


def loadgen_path():
    cands = [os.environ.get("CASCADE_LOADGEN"),
             os.path.join(harness.bin_dir(), "cascade-loadgen"),
             os.path.join(ROOT, "build", "bin", "cascade-loadgen")]
    for p in cands:
        if p and os.access(p, os.X_OK):
            return p
    sys.exit("cascade-loadgen not found (set CASCADE_LOADGEN or build the cascade-loadgen target)")


def pinning():
    return len(os.sched_getaffinity(0)) >= 2


def pin_all_tasks(pid, core):
    """Pin every thread of |pid| (threads started before the call too)."""
    if not pinning():
        return
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            os.sched_setaffinity(int(tid), {core})
        except OSError:
            pass


def proc_cpu(pid):
    """utime + stime of |pid| (all threads), in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wait_port(port, timeout=20):
    def up():
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    harness.wait_for(up, timeout, what="port %d to listen" % port)


def ffmpeg_media(path, seconds, size, vbps, abps, fps=25, noise=12):
    """An H.264 + AAC FLV from lavfi sources; CBR-ish at |vbps| (the noise keeps x264 busy)."""
    vf = "noise=alls=%d:allf=t" % noise if noise else "null"
    cmd = ["ffmpeg", "-v", "error", "-y",
           "-f", "lavfi", "-i", "testsrc2=size=%s:rate=%d" % (size, fps),
           "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
           "-t", str(seconds), "-vf", vf,
           "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
           "-b:v", str(vbps), "-maxrate", str(vbps), "-bufsize", str(vbps),
           "-g", str(2 * fps), "-pix_fmt", "yuv420p",
           "-c:a", "aac", "-b:a", str(abps), "-f", "flv", path]
    subprocess.run(cmd, check=True)
    r = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=bit_rate", "-of",
                        "csv=p=0", path], check=True, stdout=subprocess.PIPE, text=True)
    return int(r.stdout.strip() or 0)


# --------------------------------------------------------------------------------------------------
# the servers


class NginxRtmp:
    name = "nginx-rtmp"

    def __init__(self, tmp):
        self.dir = os.path.join(tmp, "nginx")
        os.makedirs(self.dir)
        self.port = harness.free_port()
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write("load_module %s;\n"
                    "worker_processes 1;\n"
                    "worker_rlimit_nofile 65536;\n"
                    "daemon off;\n"
                    "pid %s/nginx.pid;\n"
                    "error_log %s/error.log warn;\n"
                    "events { worker_connections 16384; }\n"
                    "rtmp { server { listen 127.0.0.1:%d; application live { live on; } } }\n"
                    % (NGINX_MODULE, self.dir, self.dir, self.port))
        cmd = ["nginx", "-c", conf, "-p", self.dir]
        if pinning():
            cmd = ["taskset", "-c", str(SERVER_CORE)] + cmd
        self.logf = open(os.path.join(self.dir, "stderr.log"), "wb")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.logf,
                                     stderr=subprocess.STDOUT, preexec_fn=harness._die_with_parent)
        harness.at_exit(self.stop)
        wait_port(self.port)
        self.worker = harness.wait_for(self._worker_pid, 10, what="the nginx worker")

    def _worker_pid(self):
        with open("/proc/%d/task/%d/children" % (self.proc.pid, self.proc.pid)) as f:
            kids = f.read().split()
        return int(kids[0]) if kids else None

    def url(self, stream):
        return "rtmp://127.0.0.1:%d/live/%s" % (self.port, stream)

    def cpu(self):
        return proc_cpu(self.worker) + proc_cpu(self.proc.pid)

    def rss(self):
        return proc_rss_kib(self.worker)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class Cascade:
    """The agent with its defaults, or with |merge| as subscribe.mergewrite."""

    def __init__(self, pg, merge=None, name="cascade"):
        self.name = name
        db = pg.create_database()
        self.ctl = harness.Controller(pg.dsn(db))
        secret = "bench-media-" + harness.random_suffix(12)
        st, _, body = self.ctl.api("POST", "/api/cascade/clients",
                                   {"name": "bench-media", "secret": secret})
        if st != 201:
            raise RuntimeError("registering the node failed: %d %r" % (st, body))
        self.agent = harness.Agent(self.ctl, "bench-media", secret, config={
            "log": {"level": "warn"},
            "rtmp": {"maxconnections": 100000},
            "http": {"maxconnections": 100000},
            **({"subscribe": {"mergewrite": merge}} if merge is not None else {}),
        })
        self.pid = self.agent.proc.pid
        pin_all_tasks(self.pid, SERVER_CORE)
        if pinning():
            # the controller and PostgreSQL stay off the measured core
            pin_all_tasks(self.ctl.proc.pid, LOADGEN_CORE)
        wait_port(self.agent.rtmp_port)

    def url(self, stream):
        return self.agent.rtmp_url("live/" + stream)

    def cpu(self):
        return proc_cpu(self.pid)

    def rss(self):
        return proc_rss_kib(self.pid)

    def stop(self):
        self.agent.stop(check=False)
        self.ctl.stop(check=False)


# --------------------------------------------------------------------------------------------------
# one loadgen run


class Run:
    """cascade-loadgen with --report 1; samples the server's CPU (and RSS) at report lines."""

    def __init__(self, server, args, warmup, duration, sample_at=()):
        self.server, self.warmup = server, warmup
        self.lines, self.summary = [], None
        self.cpu0 = self.cpu1 = None
        self.lg_cpu0 = self.lg_cpu1 = None
        self.samples = {}
        cmd = [loadgen_path(), "--report", "1", "--warmup", str(warmup), "--duration",
               str(duration)] + [str(a) for a in args]

        def pin_self():
            if pinning():
                os.sched_setaffinity(0, {LOADGEN_CORE})
            harness._die_with_parent()

        self.errf = tempfile.TemporaryFile()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.errf, text=True,
                                preexec_fn=pin_self)
        try:
            for raw in proc.stdout:
                line = json.loads(raw)
                if line.get("summary"):
                    self.cpu1 = server.cpu()
                    self.lg_cpu1 = proc_cpu(proc.pid)
                    self.summary = line
                    continue
                self.lines.append(line)
                t = round(line["t"])
                if t == warmup:
                    self.cpu0 = server.cpu()
                    self.lg_cpu0 = proc_cpu(proc.pid)
                if t in sample_at:
                    self.samples[t] = server.rss()
            rc = proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.errf.seek(0)
        self.stderr = self.errf.read().decode(errors="replace")
        self.errf.close()
        if rc != 0 or self.summary is None:
            raise RuntimeError("cascade-loadgen failed (%s):\n%s" % (rc, self.stderr[-2000:]))

    def window(self):
        """Figures over the measured window (after --warmup)."""
        s = self.summary
        secs = s["secs"]
        cpu = (self.cpu1 - self.cpu0) if self.cpu0 is not None else float("nan")
        lg_cpu = (self.lg_cpu1 - self.lg_cpu0) if self.lg_cpu0 is not None else float("nan")
        lags = [ln["pub_lag_ms"] for ln in self.lines if ln["t"] > self.warmup + 0.5]
        return {
            "secs": secs, "players": s["players_connected"], "publishers": s["publishers"],
            "frames": s["frames"], "pub_frames": s["pub_frames"], "bytes": s["bytes"],
            "gaps": s["gaps"], "errors": s["errors"], "gbps": s["bytes"] * 8 / secs / 1e9,
            "cpu_s": cpu, "cpu_util": cpu / secs, "loadgen_util": lg_cpu / secs,
            "gbit_per_cpu_s": (s["bytes"] * 8 / 1e9 / cpu) if cpu > 0 else float("nan"),
            "pub_lag_ms": max(lags) if lags else 0.0,
            "sei_p50_ms": s["sei_p50_ms"], "sei_p99_ms": s["sei_p99_ms"],
            "sei_max_ms": s["sei_max_ms"],
            "lat_p50_ms": s["lat_p50_ms"], "lat_p99_ms": s["lat_p99_ms"],
        }


MAX_P99_MS = 500


def lossless(w, players, streams=1, per_player_frames_ratio=0.99):
    """No gap, no refused/closed player, every player got (nearly) every published frame, and
    nobody fell behind (a p99 latency over MAX_P99_MS means queues are growing: loss to come)."""
    expected = w["pub_frames"] * players / streams
    ok = (w["gaps"] == 0 and w["errors"] == 0 and w["players"] == players and expected > 0
          and w["frames"] >= per_player_frames_ratio * expected and w["pub_lag_ms"] < 500
          and 0 <= w["sei_p99_ms"] <= MAX_P99_MS)
    w["delivered"] = w["frames"] / expected if expected else 0.0
    return ok


# --------------------------------------------------------------------------------------------------
# the scenarios


def warmup(cfg, n):
    """Seconds before the window: the 1 s publisher head start, the ramp, and time for every
    player's GOP-cache burst to drain."""
    ramp_s = n / cfg["ramp"]
    return int(1 + ramp_s + max(cfg["settle"], ramp_s / 2)) + 1


def fanout(server, media, cfg):
    """Players in steps until loss; returns the steps and the best lossless one."""
    steps, best, bound = [], None, None
    for n in cfg["fan_steps"]:
        warm = warmup(cfg, n)
        run = Run(server, ["--publish", 1, "--file", media, "--play", n, "--ramp", cfg["ramp"],
                           "--url", server.url("fan-%d" % n), "--same"],
                  warm, warm + cfg["window"])
        w = run.window()
        ok = lossless(w, n)
        w.update(step=n, lossless=ok)
        steps.append(w)
        log("%s fan-out %5d players: %.2f Gbit/s, server cpu %.0f%%, %.2f Gbit/s per cpu-s, "
            "loadgen cpu %.0f%%, delivered %.4f, gaps %d, errors %d, sei p50/p99 %.1f/%.1f ms%s"
            % (server.name, n, w["gbps"], 100 * w["cpu_util"], w["gbit_per_cpu_s"],
               100 * w["loadgen_util"], w["delivered"], w["gaps"], w["errors"], w["sei_p50_ms"],
               w["sei_p99_ms"], "" if ok else "  <- loss"))
        if not ok:
            if w["loadgen_util"] > 0.9:
                bound = "loadgen"   # the loss may be the load generator's
            break
        best = w
        if w["loadgen_util"] > 0.95:
            log("the load generator's core is saturated: stopping the fan-out here")
            bound = "loadgen"
            break
    else:
        bound = "steps"             # lossless up to the last step
    return {"steps": steps, "best": best, "bound": bound}


def ingest(server, media, cfg):
    steps, best, bound = [], None, None
    for n in cfg["ingest_steps"]:
        warm = warmup(cfg, n)
        run = Run(server, ["--publish", n, "--file", media, "--play", n, "--ramp", cfg["ramp"],
                           "--url", server.url("in%d" % n)],
                  warm, warm + cfg["window"])
        w = run.window()
        ok = lossless(w, n, streams=n) and w["publishers"] == n
        w.update(step=n, lossless=ok)
        steps.append(w)
        log("%s ingest %4d publishers: in %.0f Mbit/s, server cpu %.0f%%, loadgen cpu %.0f%%, "
            "pub lag %.0f ms, delivered %.4f, gaps %d, errors %d%s"
            % (server.name, n, run.summary["pub_bytes"] * 8 / w["secs"] / 1e6,
               100 * w["cpu_util"], 100 * w["loadgen_util"], w["pub_lag_ms"], w["delivered"],
               w["gaps"], w["errors"], "" if ok else "  <- loss"))
        if not ok:
            if w["loadgen_util"] > 0.9:
                bound = "loadgen"
            break
        best = w
        if w["loadgen_util"] > 0.95:
            log("the load generator's core is saturated: stopping the ingest here")
            bound = "loadgen"
            break
    else:
        bound = "steps"
    return {"steps": steps, "best": best, "bound": bound}


def idle_memory(server, media, cfg):
    n = cfg["idle_players"]
    delay = 3
    ramp_s = n / cfg["ramp"]
    before_t = 2
    after_t = int(delay + ramp_s + cfg["settle"]) + 1
    run = Run(server, ["--publish", 1, "--file", media, "--play", n, "--ramp", cfg["ramp"],
                       "--delay", delay, "--url", server.url("idle"), "--same"],
              after_t, after_t + 2, sample_at=(before_t, after_t))
    before, after = run.samples.get(before_t), run.samples.get(after_t)
    w = run.window()
    res = {"players": w["players"], "rss_before_kib": before, "rss_after_kib": after,
           "kib_per_player": (after - before) / max(w["players"], 1)
           if before is not None and after is not None else float("nan")}
    log("%s idle: %d players, VmRSS %s -> %s KiB, %.1f KiB per player"
        % (server.name, w["players"], before, after, res["kib_per_player"]))
    return res


def latency(server, media, cfg, n):
    warm = warmup(cfg, n)
    run = Run(server, ["--publish", 1, "--file", media, "--play", n, "--ramp", cfg["ramp"],
                       "--url", server.url("lat"), "--same"],
              warm, warm + cfg["lat_window"])
    w = run.window()
    lossless(w, n)
    log("%s latency at %d players: SEI p50 %.2f ms p99 %.2f ms; onCascadeStamp p50 %.2f p99 %.2f"
        % (server.name, n, w["sei_p50_ms"], w["sei_p99_ms"], w["lat_p50_ms"], w["lat_p99_ms"]))
    w["step"] = n
    return w


# --------------------------------------------------------------------------------------------------
# report


def fmt(v, spec="%.2f"):
    if v is None or (isinstance(v, float) and v != v) or v == -1:
        return "-"
    return spec % v


def ratio(a, b):
    try:
        if a is None or b is None or b <= 0 or a < 0 or a != a or b != b:
            return "-"
        return "%.2fx" % (a / b)
    except TypeError:
        return "-"


def table(res):
    names = [s for s in ("cascade", "nginx-rtmp") if s in res]
    rows = []

    def get(srv, *path):
        v = res.get(srv)
        for p in path:
            if v is None:
                return None
            v = v.get(p)
        return v

    def row(label, path, spec="%.2f", bound=None):
        """|bound|: the scenario whose "bound" marks a figure as a lower bound (>=)."""
        vals = [get(s, *path) for s in names]
        bounds = [get(s, bound, "bound") if bound else None for s in names]
        r = ratio(vals[0], vals[1]) if len(vals) == 2 else "-"
        if any(bounds) and r != "-":
            r = "(" + r + ")"   # at least one side did not reach its limit
        cells = [(">=" if b else "") + fmt(v, spec) for v, b in zip(vals, bounds)]
        rows.append((label, cells, r))

    row("fan-out: players reached (lossless)", ("fanout", "best", "step"), "%d", "fanout")
    row("fan-out: Gbit/s delivered at that step", ("fanout", "best", "gbps"), "%.2f", "fanout")
    row("fan-out: server CPU at that step (cores)", ("fanout", "best", "cpu_util"))
    row("fan-out: Gbit/s per CPU-second", ("fanout", "best", "gbit_per_cpu_s"))
    common = res.get("common_step")
    if common:
        row("fan-out at %d players (both lossless): CPU (cores)" % common,
            ("fanout", "common", "cpu_util"))
        row("fan-out at %d players: Gbit/s per CPU-second" % common,
            ("fanout", "common", "gbit_per_cpu_s"))
    row("ingest: 2 Mbit/s publishers (lossless)", ("ingest", "best", "step"), "%d", "ingest")
    row("ingest: server CPU at that step (cores)", ("ingest", "best", "cpu_util"))
    icommon = res.get("ingest_common_step")
    if icommon:
        # the steps above may differ (one side lost frames, or the load generator saturated
        # first): the same load on both is the comparable CPU figure
        row("ingest at %d publishers (both lossless): CPU (cores)" % icommon,
            ("ingest", "common", "cpu_util"), "%.3f")
    row("memory: KiB per idle player", ("idle", "kib_per_player"), "%.1f")
    row("latency: players", ("latency", "step"), "%d")
    row("latency: p50 ms (SEI stamp)", ("latency", "sei_p50_ms"))
    row("latency: p99 ms (SEI stamp)", ("latency", "sei_p99_ms"))
    row("latency: p50 ms (onCascadeStamp)", ("latency", "lat_p50_ms"))
    row("latency: p99 ms (onCascadeStamp)", ("latency", "lat_p99_ms"))
    w0 = max(len(r[0]) for r in rows)
    out = ["%-*s  %12s  %12s  %8s" % (w0, "", names[0] if names else "",
                                      names[1] if len(names) > 1 else "", "ratio")]
    for label, vals, r in rows:
        vals = vals + ["-"] * (2 - len(vals))
        out.append("%-*s  %12s  %12s  %8s" % (w0, label, vals[0], vals[1], r))
    notes = []
    for s in names:
        for sc in ("fanout", "ingest"):
            b = get(s, sc, "bound")
            if b:
                notes.append("%s %s: %s" % (s, sc, "lossless up to the last step"
                                            if b == "steps" else "the load generator's core "
                                            "saturated first"))
    if notes:
        out.append(">= marks a lower bound, (ratio) a ratio involving one: " + "; ".join(notes))
    mw0 = res.get("cascade-mw0")
    if mw0:
        fw = (mw0.get("fanout") or {}).get("steps") or [{}]
        lat = mw0.get("latency") or {}
        out.append("cascade with subscribe.mergewrite 0 (a write per frame): at %s players %s Gbit/s "
                   "per CPU-second (%s cores); latency at %s players p50 %s ms, p99 %s ms"
                   % (fmt(fw[0].get("step"), "%d"), fmt(fw[0].get("gbit_per_cpu_s")),
                      fmt(fw[0].get("cpu_util")), fmt(lat.get("step"), "%d"),
                      fmt(lat.get("sei_p50_ms")), fmt(lat.get("sei_p99_ms"))))
    out.append("ratio = cascade / nginx-rtmp; CPU in cores of the server's pinned core; latency "
               "from the SEI wall-clock stamp unless noted")
    return "\n".join(out)


def bench_args(doc, quick_help, extra=None):
    """The command line of the Cascade vs nginx-rtmp benchmarks, and the tools they need;
    |extra| adds a benchmark's own options to the parser."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help=quick_help)
    ap.add_argument("--json", help="write every figure to this file")
    ap.add_argument("--only", choices=("cascade", "nginx"))
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    if extra:
        extra(ap)
    args = ap.parse_args()
    for tool in ("ffmpeg", "ffprobe", "nginx", "taskset"):
        if shutil.which(tool) is None:
            sys.exit("%s not found (apt-get install ffmpeg nginx-light libnginx-mod-rtmp util-linux)"
                     % tool)
    if args.only != "cascade" and not os.path.exists(NGINX_MODULE):
        sys.exit("%s missing: apt-get install libnginx-mod-rtmp" % NGINX_MODULE)
    return args



def report(res, args, t0):
    """Prints the table (and writes --json) of a run that began at |t0|."""
    res["elapsed_s"] = time.monotonic() - t0
    print(table(res))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2, sort_keys=True)
            f.write("\n")
    return 0

def main():
    def extra(ap):
        ap.add_argument("--ingest-only", action="store_true",
                        help="only the ingest row (publishers until loss)")
        ap.add_argument("--fanout-only", action="store_true",
                        help="only the fan-out and latency rows")
        ap.add_argument("--fan-steps", help="fan-out player steps, comma-separated")
        ap.add_argument("--no-mw0", action="store_true",
                        help="skip the subscribe.mergewrite 0 reference run")

    args = bench_args(__doc__, "short run (about 2 minutes)", extra=extra)
    if args.only != "nginx":
        harness.require_controller()
    loadgen_path()
    if not pinning():
        log("fewer than 2 CPUs: running unpinned, figures are not comparable")

    if args.quick:
        cfg = {"fan_steps": [50, 400, 1200, 2000, 3000], "ingest_steps": [10, 100, 400, 800],
               "ramp": 500, "settle": 1, "window": 3, "idle_players": 500, "lat_window": 4,
               "seconds": 10}
    else:
        cfg = {"fan_steps": [50, 200, 800, 1600, 2400, 3200, 4000, 5000, 6000],
               "ingest_steps": [10, 50, 100, 200, 400, 600, 800, 1200, 1600],
               "ramp": 500, "settle": 2, "window": 5, "idle_players": 500, "lat_window": 8,
               "seconds": 20}

    if args.fan_steps:
        cfg["fan_steps"] = [int(n) for n in args.fan_steps.split(",")]

    tmp = tempfile.mkdtemp(prefix="cascade-bench-media-")
    if not args.keep:
        harness.at_exit(lambda: shutil.rmtree(tmp, ignore_errors=True))
    log("generating media in %s" % tmp)
    m4 = os.path.join(tmp, "4mbit.flv")
    m2 = os.path.join(tmp, "2mbit.flv")
    tiny = os.path.join(tmp, "tiny.flv")
    br4 = ffmpeg_media(m4, cfg["seconds"], "1280x720", 3900000, 96000)
    br2 = ffmpeg_media(m2, cfg["seconds"], "960x540", 1900000, 64000)
    brt = ffmpeg_media(tiny, cfg["seconds"], "160x120", 16000, 16000, noise=0)
    log("media: %.2f, %.2f and %.3f Mbit/s" % (br4 / 1e6, br2 / 1e6, brt / 1e6))

    res = {"config": cfg, "media_bps": {"fanout": br4, "ingest": br2, "idle": brt},
           "cpus": os.cpu_count(), "pinned": pinning()}
    servers = []
    if args.only != "nginx":
        pg = harness.new_cluster()
        servers.append(lambda: Cascade(pg))
    if args.only != "cascade":
        servers.append(lambda: NginxRtmp(tmp))

    t0 = time.monotonic()
    fan_reached = {}
    made = []
    for make in servers:
        srv = make()
        made.append(srv)
        r = res.setdefault(srv.name, {})
        if args.ingest_only:
            r["ingest"] = ingest(srv, m2, cfg)
            continue
        # first, on a fresh process: a heap grown by earlier steps would hide the growth
        if not args.fanout_only:
            r["idle"] = idle_memory(srv, tiny, cfg)
        r["fanout"] = fanout(srv, m4, cfg)
        best = r["fanout"]["best"]
        fan_reached[srv.name] = best["step"] if best else cfg["fan_steps"][0]
        if not args.fanout_only:
            r["ingest"] = ingest(srv, m2, cfg)
    ingested = [set(w["step"] for w in res[s.name]["ingest"]["steps"] if w["lossless"])
                for s in made if "ingest" in res[s.name]]
    icommon = sorted(set.intersection(*ingested)) if ingested else []
    if icommon:
        res["ingest_common_step"] = icommon[-1]
        for s in made:
            res[s.name]["ingest"]["common"] = next(w for w in res[s.name]["ingest"]["steps"]
                                                   if w["step"] == icommon[-1])
    if args.ingest_only:
        for srv in made:
            srv.stop()
        return report(res, args, t0)
    half = max(1, min(fan_reached.values()) // 2)
    # the largest step every server passed: efficiency at the same load
    passed = [set(w["step"] for w in res[s.name]["fanout"]["steps"] if w["lossless"]) for s in made]
    common = sorted(set.intersection(*passed)) if passed else []
    if common:
        res["common_step"] = common[-1]
        for s in made:
            res[s.name]["fanout"]["common"] = next(w for w in res[s.name]["fanout"]["steps"]
                                                   if w["step"] == common[-1])
    for srv in made:
        res[srv.name]["latency"] = latency(srv, m4, cfg, half)
        srv.stop()
    if args.only != "nginx" and not args.no_mw0:
        # for reference: the same load with subscribe.mergewrite 0 (a write per frame, whatever
        # the load), what the write policy buys and costs
        srv = Cascade(pg, merge="0s", name="cascade-mw0")
        r = res.setdefault(srv.name, {})
        step = res.get("common_step") or half
        r["fanout"] = fanout(srv, m4, dict(cfg, fan_steps=[step]))
        r["latency"] = latency(srv, m4, cfg, half)
        srv.stop()
    return report(res, args, t0)


if __name__ == "__main__":
    sys.exit(main())
