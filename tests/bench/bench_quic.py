#!/usr/bin/env python3
"""QUIC link benchmark (issue 5): cascade-quicperf (dataplane/quic.c) side by
side with ngtcp2's own example peer gtlsserver/gtlsclient (the same ngtcp2
1.11 + GnuTLS, HTTP/3 download of a file; Debian's ngtcp2-server and
ngtcp2-client from bookworm-backports, which CASCADE_BENCH_DEPS=1
deploy/local/deps.sh installs) on loopback, server and client each pinned to
its own core (taskset).

  1. one link's bulk goodput                                  (target >= 4 Gbit/s)
  2. goodput under 1 % and 5 % loss (cascade-netimpair, 10 ms RTT)
  3. new authenticated links per second one server accepts    (target >= 500/s, one core)
  4. 1,000 clients reconnecting after the server restarts     (target <= 5 s)

Run alone (python3 tests/bench/bench_quic.py) or as tests/bench/run.sh quic.
Binaries: CASCADE_BIN_DIR, else build-bench/bin (built here if missing)."""

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("CASCADE_BIN_DIR", os.path.join(ROOT, "build-bench", "bin"))
PERF = os.path.join(BIN, "cascade-quicperf")
# ngtcp2's own packet size, as the peer (gtlsserver) uses: the links' automatic 16,000 bytes to a
# loopback peer would compare a different thing (docs/protocol.md, packet size)
MTU = "1452"
PROXY = os.path.join(BIN, "cascade-netimpair")
SRV_CPU, CLI_CPU = "0", "1"
# gtlsserver is in /usr/sbin (ngtcp2-server), which a user's PATH may lack
GTLS_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin"])
GTLSSERVER = shutil.which("gtlsserver", path=GTLS_PATH)
GTLSCLIENT = shutil.which("gtlsclient", path=GTLS_PATH)


def ensure_build():
    if os.path.exists(PERF) and os.path.exists(PROXY):
        return
    bdir = os.path.join(ROOT, "build-bench")
    subprocess.check_call(["cmake", "-S", ROOT, "-B", bdir, "-DSANITIZE=OFF", "-DBUILD_TESTING=OFF",
                           "-DCMAKE_BUILD_TYPE=Release"], stdout=subprocess.DEVNULL)
    subprocess.check_call(["cmake", "--build", bdir, "-j2"], stdout=subprocess.DEVNULL)


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pinned(cpu, argv):
    return ["taskset", "-c", cpu] + argv


class Server:
    """A server process that prints "listen H:P" (quicperf, netimpair)."""

    def __init__(self, argv, cpu=SRV_CPU):
        self.proc = subprocess.Popen(pinned(cpu, argv), stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        self.lines = {}
        deadline = time.monotonic() + 30
        while "ready" not in self.lines:
            line = self.proc.stdout.readline()
            if not line or time.monotonic() > deadline:
                raise RuntimeError("%s did not start" % argv[0])
            k, _, v = line.strip().partition(" ")
            self.lines[k] = v
        self.port = int(self.lines["listen"].rsplit(":", 1)[1])

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        self.proc.wait(30)


def netimpair(port, loss, delay_ms):
    p = Server([PROXY, "--listen", "127.0.0.1:0", "--forward", "127.0.0.1:%d" % port,
                "--control", "127.0.0.1:0", "--seed", "3"], cpu=SRV_CPU)
    import socket
    ctl = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ctl.connect(("127.0.0.1", int(p.lines["control"].rsplit(":", 1)[1])))
    ctl.settimeout(5)
    for cmd in ("set delay %d" % delay_ms, "set loss %g" % loss):
        ctl.send(cmd.encode())
        assert ctl.recv(100).strip() == b"ok", cmd
    ctl.close()
    return p


def run_client(argv, timeout):
    """Runs a pinned client; returns (wall seconds, its CPU seconds, stdout)."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    out = subprocess.run(pinned(CLI_CPU, argv), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         text=True, timeout=timeout)
    wall = time.monotonic() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return wall, cpu, out


def quicperf_bulk(pki, nbytes, loss=0, cc="cubic", delay=5):
    srv = Server([PERF, "server", "--max-udp-payload", MTU, "--listen", "127.0.0.1:0", "--pki", pki, "--cc", cc,
                  "--window", "16000000"])
    proxy = netimpair(srv.port, loss, delay) if loss else None
    port = proxy.port if proxy else srv.port
    c0 = cpu_seconds(srv.proc.pid)
    try:
        wall, cpu, out = run_client([PERF, "client", "--max-udp-payload", MTU, "--connect", "127.0.0.1:%d" % port, "--pki", pki,
                                     "--bytes", str(nbytes), "--cc", cc, "--window", "16000000",
                                     "--timeout", "120"], 150)
        scpu = cpu_seconds(srv.proc.pid) - c0
    finally:
        if proxy:
            proxy.stop()
        srv.stop()
    s = json.loads(out.stdout.strip().splitlines()[-1])
    ok = out.returncode == 0 and s["bytes"] == nbytes
    return {"ok": ok, "mbps": s["goodput_mbps"], "seconds": s["seconds"], "cli_cpu": cpu,
            "srv_cpu": scpu}


def gtls_bulk(work, nbytes, loss=0, cc="cubic", delay=5):
    """gtlsserver serving a file of |nbytes|, gtlsclient downloading it."""
    htdocs = os.path.join(work, "htdocs")
    os.makedirs(htdocs, exist_ok=True)
    path = os.path.join(htdocs, "blob")
    if not os.path.exists(path) or os.path.getsize(path) != nbytes:
        with open(path, "wb") as f:
            chunk = os.urandom(1 << 20)
            for _ in range(nbytes >> 20):
                f.write(chunk)
    key, crt = os.path.join(work, "g.key"), os.path.join(work, "g.crt")
    if not os.path.exists(crt):
        subprocess.check_call(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                               "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", crt,
                               "-days", "2", "-subj", "/CN=localhost"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port = free_udp_port()
    srv = subprocess.Popen(pinned(SRV_CPU, [GTLSSERVER, "-q", "--no-quic-dump", "--no-http-dump",
                                            "-d", htdocs, "--cc", cc,
                                            "--max-udp-payload-size", MTU,
                                            "--max-stream-window", "16000000",
                                            "--max-window", "64000000",
                                            "127.0.0.1", str(port), key, crt]),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # gtlsserver prints nothing when ready; it binds at once
    proxy = netimpair(port, loss, delay) if loss else None
    cport = proxy.port if proxy else port
    c0 = cpu_seconds(srv.pid)
    dl = os.path.join(work, "dl")
    shutil.rmtree(dl, ignore_errors=True)
    os.makedirs(dl)
    try:
        wall, cpu, out = run_client([GTLSCLIENT, "-q", "--no-quic-dump", "--no-http-dump",
                                     "--exit-on-all-streams-close", "--cc", cc,
                                     "--max-udp-payload-size", MTU,
                                     "--max-stream-window", "16000000", "--max-window", "64000000",
                                     "--download", dl, "--timeout", "120s",
                                     "127.0.0.1", str(cport),
                                     "https://127.0.0.1:%d/blob" % cport], 150)
        scpu = cpu_seconds(srv.pid) - c0
    finally:
        if proxy:
            proxy.stop()
        srv.terminate()
        srv.wait(10)
    got = os.path.getsize(os.path.join(dl, "blob")) if os.path.exists(os.path.join(dl, "blob")) else 0
    shutil.rmtree(dl, ignore_errors=True)
    # wall includes its handshake (~1 ms on loopback) and process start
    return {"ok": got == nbytes, "mbps": nbytes * 8 / wall / 1e6, "seconds": wall, "cli_cpu": cpu,
            "srv_cpu": scpu}


def paired(n, ours, peer):
    """Runs |ours| and |peer| n times, alternating; each side's run with the median goodput, and
    on ours the n ratios and their median (same-run pairs: the machine's load moves both)."""
    qs, gs = [], []
    for _ in range(n):
        qs.append(ours())
        if peer:
            gs.append(peer())

    def median(runs):
        return sorted(runs, key=lambda r: r["mbps"])[len(runs) // 2]
    q = dict(median(qs))
    q["ok"] = all(r["ok"] for r in qs)
    if not gs:
        return q, None
    g = dict(median(gs))
    g["ok"] = all(r["ok"] for r in gs)
    ratios = sorted(a["mbps"] / b["mbps"] for a, b in zip(qs, gs) if b["mbps"] > 0)
    if ratios:
        q["ratios"] = ratios
        q["ratio"] = ratios[len(ratios) // 2]
    return q, g


def free_udp_port():
    import socket
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def handshake_rate(pki, n):
    srv = Server([PERF, "server", "--max-udp-payload", MTU, "--listen", "127.0.0.1:0", "--pki", pki,
                  "--retry-threshold", "100000"])
    c0 = cpu_seconds(srv.proc.pid)
    try:
        wall, cpu, out = run_client([PERF, "client", "--max-udp-payload", MTU, "--connect", "127.0.0.1:%d" % srv.port, "--pki",
                                     pki, "--streams", "0", "--conns", str(n), "--timeout", "60"], 90)
        scpu = cpu_seconds(srv.proc.pid) - c0
    finally:
        srv.stop()
    s = json.loads(out.stdout.strip().splitlines()[-1])
    return {"ok": out.returncode == 0 and s["connected"] == n, "per_s": s["handshakes_per_s"],
            "all_s": s["all_connected_s"], "srv_cpu": scpu, "cli_cpu": cpu}


def reconnect_after_restart(pki, n):
    srv = Server([PERF, "server", "--max-udp-payload", MTU, "--listen", "127.0.0.1:0", "--pki", pki])
    port = srv.port
    cli = subprocess.Popen(pinned(CLI_CPU, [PERF, "client", "--max-udp-payload", MTU, "--connect", "127.0.0.1:%d" % port,
                                            "--pki", pki, "--streams", "0", "--conns", str(n),
                                            "--hold", "--keepalive", "1", "--timeout", "120"]),
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        first = json.loads(cli.stdout.readline())
        assert first["event"] == "all_connected", first
        srv.stop(signal.SIGKILL)  # a crash: no CONNECTION_CLOSE
        killed = time.time()
        time.sleep(1.0)           # down for a second
        srv = Server([PERF, "server", "--max-udp-payload", MTU, "--listen", "127.0.0.1:%d" % port, "--pki", pki])
        restarted = time.time()
        while True:
            ev = json.loads(cli.stdout.readline())
            # All of them on the new server: the longest-standing link was
            # made after the restart (a client that has not noticed the
            # restart yet still looks connected).
            if ev["event"] == "all_connected" and ev.get("oldest_up", ev["wall"]) > restarted:
                break
        rel = lambda ts: [round(x - restarted, 3) for x in ts] if ts else None
        return {"ok": True, "seconds": ev["wall"] - restarted, "down": restarted - killed,
                "relinked": ev.get("relinked"), "by_reset": ev.get("by_reset"),
                "by_idle": ev.get("by_idle"), "failed_attempts": ev.get("failed_attempts"),
                "lost": rel(ev.get("lost")), "back": rel(ev.get("back"))}
    finally:
        cli.terminate()
        cli.wait(30)
        srv.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bytes", type=int, default=1 << 30, help="bulk transfer size")
    ap.add_argument("--loss-bytes", type=int, default=16 << 20, help="transfer size under loss")
    ap.add_argument("--conns", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=1, metavar="N",
                    help="run each goodput row N times, the two sides alternating, and report "
                         "the medians and the median of the N ratios (the peer's loss rows vary "
                         "from run to run far more than ours)")
    args = ap.parse_args()
    ensure_build()
    have_gtls = GTLSSERVER and GTLSCLIENT
    work = tempfile.mkdtemp(prefix="bench_quic.")
    pki = os.path.join(work, "pki")
    os.makedirs(pki)
    rows = []
    try:
        q, g = paired(args.repeat, lambda: quicperf_bulk(pki, args.bytes),
                      (lambda: gtls_bulk(work, args.bytes)) if have_gtls else None)
        rows.append(("bulk goodput, 1 link, Mbit/s (>= 4000)", q, g, "mbps"))
        for loss in (1, 5):
            for cc in ("cubic", "bbr"):
                q, g = paired(args.repeat,
                              lambda: quicperf_bulk(pki, args.loss_bytes, loss=loss, cc=cc),
                              (lambda: gtls_bulk(work, args.loss_bytes, loss=loss, cc=cc))
                              if have_gtls else None)
                rows.append(("goodput %d%% loss, 10 ms RTT, %s, Mbit/s" % (loss, cc), q, g, "mbps"))
        h = handshake_rate(pki, args.conns * 2)
        rows.append(("new links/s, one server core (>= 500)", h, None, "per_s"))
        r = reconnect_after_restart(pki, args.conns)
        rows.append(("%d clients reconnect after restart, s (<= 5)" % args.conns, r, None, "seconds"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("%-48s %12s %12s %7s  %s" % ("measure", "quic.c", "gtls peer", "ratio", "CPU s (srv/cli)"))
    for name, q, g, key in rows:
        gv = g[key] if g else None
        ratio = "%.2f" % (q.get("ratio") or q[key] / gv) if gv else "-"
        cpu = "%.2f/%.2f" % (q.get("srv_cpu", 0), q.get("cli_cpu", 0)) if "srv_cpu" in q else ""
        if g:
            cpu += "  peer %.2f/%.2f" % (g["srv_cpu"], g["cli_cpu"])
        flag = "" if q.get("ok", True) and (not g or g["ok"]) else "  (FAILED RUN)"
        spread = "  ratios %s" % " ".join("%.2f" % r for r in q["ratios"]) \
            if len(q.get("ratios", ())) > 1 else ""
        print("%-48s %12.1f %12s %7s  %s%s%s" % (name, q[key], "%.1f" % gv if gv else "-", ratio,
                                                 cpu, flag, spread))
    print("command: %s %s" % (os.path.relpath(__file__, ROOT), " ".join(sys.argv[1:])))


if __name__ == "__main__":
    main()
