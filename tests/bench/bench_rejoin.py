#!/usr/bin/env python3
"""Rejoin benchmark (issue 15, "Joining at scale"): N simulated agents (cascade-agent --simulate,
P processes, every agent given the list of every replica's control URL) online
under R controllers on one PostgreSQL; then every controller is restarted at once and the agents,
all of them, come back on their own (their backoff and jitter, no waves).

Reported: the time from the restart until every agent's control channel is running again (read
from the simulators' own once-a-second counts), with the 50 % and 90 % points, and the CPU spent
meanwhile by the controllers (of which their control gate threads) and by the simulators, apart:
they share the machine's cores. Simulated clients of one process join at most 64 at a time
(CTLC_SIM_JOINING_MAX, agent/ctlc.h): a thousand TLS handshakes begun together on one process's
loop would all finish late together, which no real fleet does. A rejoin resumes the TLS
session of the agent's last connection (agent/ctltls.c: an X25519 exchange, no certificate
verification); the simulators report their full and resumed handshakes. The fleet's first
join (each agent registering and deriving its SCRAM key) is set-up, its processes started 5 s
apart. Targets: 10,000 agents back within 60 s with one
controller, within 30 s with three.

  python3 tests/bench/bench_rejoin.py [--agents 10000] [--replicas 1] [--procs 10]
"""

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import harness  # noqa: E402

RUNNING_RE = re.compile(rb"simulate: running=(\d+) connecting=(\d+) failed=(\d+)")
TLS_RE = re.compile(rb"simulate: running=\d+ connecting=\d+ failed=\d+ tls_full=(\d+) "
                    rb"tls_resumed=(\d+)")


TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pid):
    """User + system CPU seconds of process |pid| so far (0 when it is gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS
    except (OSError, IndexError, ValueError):
        return 0.0


def thread_cpu_s(pid, comm):
    """CPU seconds of the threads of |pid| named |comm|."""
    total = 0.0
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return 0.0
    for tid in tids:
        try:
            with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
                if f.read().strip() != comm:
                    continue
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICKS
        except (OSError, IndexError, ValueError):
            continue
    return total


def rss_mib(pid):
    """Resident memory of process |pid| in MiB (0 when it is gone)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return 0.0


def fds(pid):
    """Open descriptors of process |pid| (0 when it is gone)."""
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return 0


def machine_busy_s():
    """CPU seconds the whole machine spent busy (every process, others' too)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return (sum(v[:8]) - idle) / TICKS


def cpu_line(ctls, sims, sim0, busy0, wall):
    ctl = sum(cpu_s(c.proc.pid) for c in ctls)
    gate = sum(thread_cpu_s(c.proc.pid, "ctlgate") for c in ctls)
    sim = sum(cpu_s(s.proc.pid) for s in sims) - sim0
    busy = machine_busy_s() - busy0
    rss = sum(rss_mib(c.proc.pid) for c in ctls)
    nfd = sum(fds(c.proc.pid) for c in ctls)
    return ("CPU over %.1f s: controllers %.1f s (%.2f cores; control gate threads %.1f s), "
            "simulators %.1f s (%.2f cores), whole machine %.1f s (%.2f of %d cores); "
            "controllers' RSS %.0f MiB, descriptors %d"
            % (wall, ctl, ctl / wall, gate, sim, sim / wall, busy, busy / wall,
               os.cpu_count(), rss, nfd))


def log(msg):
    print("[bench_rejoin %s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


class Sim:
    """One cascade-agent --simulate process; its counts come from its log."""

    def __init__(self, ctls, n, workdir, tag):
        self.n = n
        self.log_path = os.path.join(workdir, "sim-%s.log" % tag)
        cfg = os.path.join(workdir, "sim-%s.yaml" % tag)
        with open(cfg, "w") as f:
            f.write(harness.to_yaml({
                "node": {"name": "sim%s" % tag, "secret": "simulated-secret",
                         "jointoken": ctls[0].join_token,
                         "datadir": os.path.join(workdir, "sim-data-%s" % tag)},
                "controller": {"url": ["tls+tcp://127.0.0.1:%d" % c.control_port for c in ctls],
                               "ca": os.path.join(ctls[0].control_dir, "ca.crt")},
                "http": {"listenaddr": "127.0.0.1:0"},
                "log": {"level": "warn"},
            }))
        self.logf = open(self.log_path, "wb")
        self.proc = subprocess.Popen([harness.agent_path(), "-c", cfg, "--simulate", str(n)],
                                     stdout=self.logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)

    def counts(self):
        """(running, connecting, failed) of the last report, or None."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(max(0, os.path.getsize(self.log_path) - 4096))
                tail = f.read()
        except OSError:
            return None
        m = RUNNING_RE.findall(tail)
        return tuple(int(x) for x in m[-1]) if m else None

    def tls(self):
        """(full, resumed) TLS handshakes so far, or (0, 0) when the log does not say."""
        try:
            with open(self.log_path, "rb") as f:
                # the last report may sit behind many lines of failures
                f.seek(max(0, os.path.getsize(self.log_path) - (1 << 20)))
                m = TLS_RE.findall(f.read())
        except OSError:
            return (0, 0)
        return (int(m[-1][0]), int(m[-1][1])) if m else (0, 0)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.logf.close()


def running(sims):
    total = 0
    for s in sims:
        c = s.counts()
        total += c[0] if c else 0
    return total


def wait_running(sims, n, timeout, since):
    """Seconds from |since| until |n| agents run, with the 50 % and 90 % points; None on
    timeout."""
    marks = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = running(sims)
        now = time.monotonic() - since
        for frac in (0.5, 0.9):
            if frac not in marks and r >= frac * n:
                marks[frac] = now
        if r >= n:
            return now, marks
        time.sleep(0.2)
    return None, marks


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agents", type=int, default=10000)
    ap.add_argument("--replicas", type=int, default=1)
    ap.add_argument("--procs", type=int, default=10, help="simulating processes")
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--pg-stats", action="store_true",
                    help="print the database's costliest statements and trigger functions "
                         "during the rejoin (pg_stat_statements)")
    args = ap.parse_args()
    if args.pg_stats:
        os.environ["CASCADE_PG_STATS"] = "1"
    harness.require_controller()
    # one descriptor per agent at the controller, and the simulators' own
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(hard, 4 * args.agents + 4096)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    pg = harness.new_cluster()
    db = pg.create_database()
    control = {"heartbeat": 5000, "workers": 4, "maxconnperaddr": 0}
    ctls = [harness.Controller(pg.dsn(db), config={"log": {"level": "warn"}, "control": control})]
    ctls += [harness.Controller(pg.dsn(db), config={"log": {"level": "warn"}, "control": control},
                                join_token=ctls[0].join_token)  # one deployment, one token
             for _ in range(args.replicas - 1)]
    work = tempfile.mkdtemp(prefix="cascade-bench-rejoin-")
    per = (args.agents + args.procs - 1) // args.procs
    # The fleet's first join (registration, a fresh SCRAM key for each agent) is set-up, not the
    # measure: the processes start 5 s apart and the set-up may take its time.
    sims = []
    t0 = time.monotonic()
    busy_start = machine_busy_s()
    left = args.agents
    for k in range(args.procs):
        n = min(per, left)
        if n <= 0:
            break
        if sims:
            time.sleep(5)  # pacing the set-up, not a wait for a condition
        sims.append(Sim(ctls, n, work, "p%d" % k))
        left -= n
    took, _ = wait_running(sims, args.agents, args.timeout * 3, t0)
    log(cpu_line(ctls, sims, 0.0, busy_start, time.monotonic() - t0))
    log("first join of %d agents (registration; %d processes started 5 s apart) under %d "
        "controller(s): %s" % (args.agents, len(sims), args.replicas,
                               "%.1f s" % took if took is not None else
                               "NOT within time (%d running)" % running(sims)))
    result = 1
    if took is not None:
        time.sleep(6)  # one heartbeat period of steady state
        for c in ctls:
            c.stop(check=False)
        t_down = time.monotonic()
        harness.wait_for(lambda: running(sims) < args.agents * 0.05, 60,
                         what="the simulators noticing the controllers gone")
        if args.pg_stats:
            pg.psql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements", db=db)
            pg.psql("SELECT pg_stat_statements_reset(); SELECT pg_stat_reset();", db=db)
        sim0 = sum(cpu_s(s.proc.pid) for s in sims)
        tls0 = [sum(s.tls()[i] for s in sims) for i in (0, 1)]
        busy0 = machine_busy_s()
        for c in ctls:
            c.start()
        t_up = time.monotonic()
        log("controllers restarted (down %.1f s)" % (t_up - t_down))
        took, marks = wait_running(sims, args.agents, args.timeout, t_up)
        log(cpu_line(ctls, sims, sim0, busy0, time.monotonic() - t_up))
        if args.pg_stats:
            log("database, costliest statements of the rejoin (ms total, calls, query):\n" +
                pg.psql("SELECT round(total_exec_time)::bigint, calls, left(regexp_replace("
                        "query, '\\s+', ' ', 'g'), 110) FROM pg_stat_statements "
                        "ORDER BY total_exec_time DESC LIMIT 15", db=db))
            log("trigger functions (ms self, ms total, calls):\n" +
                pg.psql("SELECT funcname, round(self_time), round(total_time), calls "
                        "FROM pg_stat_user_functions ORDER BY self_time DESC", db=db))
        time.sleep(1.5)  # the simulators' next report
        log("TLS handshakes of the rejoin: %d full, %d resumed"
            % tuple(sum(s.tls()[i] for s in sims) - tls0[i] for i in (0, 1)))
        if took is not None:
            log("REJOIN: %d agents all running again %.1f s after %d controller(s) restarted "
                "(50 %% at %.1f s, 90 %% at %.1f s); target %d s"
                % (args.agents, took, args.replicas, marks[0.5], marks[0.9],
                   60 if args.replicas == 1 else 30))
            result = 0
        else:
            log("REJOIN: NOT all running within %.0f s: %d of %d"
                % (args.timeout, running(sims), args.agents))
    for s in sims:
        s.stop()
    for c in ctls:
        c.stop(check=False)
    return result


if __name__ == "__main__":
    sys.exit(main())
