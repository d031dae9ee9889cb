#!/usr/bin/env python3
"""REST API benchmark (issue 2): with 1,000 nodes in the registry, wrk on
loopback against

  GET /api/cascade/clients/{id}       random ids, target >= 10,000 req/s, p99 <= 10 ms
  GET /api/cascade/clients?size=100   random pages, target >= 2,000 req/s
  POST /api/cascade/clients           node-create rate (a SCRAM verifier each)

and, in the same run, the baseline: pgbench running the same point SELECT
straight against PostgreSQL (prepared, same client count), so the API's
cost shows as a ratio to the database's own ceiling on this machine.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import harness  # noqa: E402

NODES = 1000


def wrk(url, script, token, duration, conns, threads=2):
    """Run wrk with a Lua |script|; return (req/s, p50 ms, p99 ms, non-2xx)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write('wrk.headers["Authorization"] = "Bearer %s"\n' % token)
        f.write('wrk.headers["Content-Type"] = "application/json"\n')
        f.write(script)
        path = f.name
    try:
        out = subprocess.run(["wrk", "-t%d" % threads, "-c%d" % conns, "-d%ds" % duration,
                              "--latency", "-s", path, url],
                             check=True, stdout=subprocess.PIPE, text=True).stdout
    finally:
        os.unlink(path)

    def ms(label):
        m = re.search(r"^\s*%s\s+([\d.]+)(us|ms|s)\s*$" % re.escape(label), out, re.M)
        v = float(m.group(1))
        return v / 1000 if m.group(2) == "us" else v * 1000 if m.group(2) == "s" else v

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return rps, ms("50%"), ms("99%"), int(non2xx.group(1)) if non2xx else 0


def pgbench(pg, db, duration, conns):
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False, dir="/tmp") as f:
        f.write("\\set id random(1, %d)\n" % NODES)
        f.write("SELECT id, name, ip, online, parent_id, labels::text, created_time, updated_time,"
                " last_seen FROM instances WHERE id = :id;\n")
        path = f.name
    os.chmod(path, 0o644)
    try:
        out = subprocess.run(harness._as_pg_user(
            [harness._pg("pgbench"), "-n", "-M", "prepared", "-c", str(conns), "-j", "2",
             "-T", str(duration), "-f", path, "-h", pg.socketdir, "-p", str(pg.port),
             "-U", harness.PG_USER, db]), check=True, stdout=subprocess.PIPE, text=True).stdout
    finally:
        os.unlink(path)
    return float(re.search(r"tps = ([\d.]+)", out).group(1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    ap.add_argument("--conns", type=int, default=16, help="wrk connections")
    ap.add_argument("--quick", action="store_true", help="3 s per measurement")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    dur = 3 if args.quick else args.duration

    pg = harness.new_cluster()
    db = pg.create_database()
    ctl = harness.Controller(pg.dsn(db), config={"log": {"level": "warn"},
                                                   "database": {"poolsize": 4}})
    url = ctl.base_url
    print("seeding %d nodes ..." % NODES, flush=True)
    for i in range(NODES):
        st, _, body = ctl.api("POST", "/api/cascade/clients",
                              body={"name": "node-%04d" % i, "secret": "bench-secret-%d" % i,
                                    "labels": {"region": "r%d" % (i % 8)}})
        if st != 201:
            raise SystemExit("seeding failed: %s %s" % (st, body))

    res = {}
    res["get_one"] = wrk(url + "/", 'request = function()\n'
                         '  return wrk.format("GET", "/api/cascade/clients/" .. math.random(1, %d))\n'
                         'end\n' % NODES, ctl.admin_token, dur, args.conns)
    res["get_page"] = wrk(url + "/", 'request = function()\n'
                          '  return wrk.format("GET", "/api/cascade/clients?size=100&page=" .. math.random(1, 10))\n'
                          'end\n', ctl.admin_token, dur, args.conns)
    res["create"] = wrk(url + "/", 'local n = 0\nlocal id = 0\n'
                        'function setup(t) id = id + 1; t:set("tid", id) end\n'
                        'request = function()\n  n = n + 1\n'
                        '  return wrk.format("POST", "/api/cascade/clients", nil,\n'
                        '    string.format(\'{"name":"bench-%d-%d","secret":"bench-secret"}\', tid, n))\n'
                        'end\n', ctl.admin_token, dur, 4)
    res["pg_point_select_tps"] = pgbench(pg, db, dur, 4)
    ctl.stop()

    def row(name, key, target):
        rps, p50, p99, bad = res[key]
        print("%-34s %10.0f req/s  p50 %6.2f ms  p99 %6.2f ms  errors %d  %s"
              % (name, rps, p50, p99, bad, target))

    print()
    row("GET /api/cascade/clients/{id}", "get_one", "(target >= 10000 req/s, p99 <= 10 ms)")
    row("GET /api/cascade/clients?size=100", "get_page", "(target >= 2000 req/s)")
    row("POST /api/cascade/clients", "create", "(SCRAM verifier, 4096 iterations, each)")
    print("%-34s %10.0f tps   (same SELECT, pgbench -M prepared -c 4)"
          % ("baseline: PostgreSQL point select", res["pg_point_select_tps"]))
    print("ratio API GET by id / raw PostgreSQL select: %.2f"
          % (res["get_one"][0] / res["pg_point_select_tps"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    ok = res["get_one"][0] >= 10000 and res["get_one"][2] <= 10 and res["get_page"][0] >= 2000
    print("targets met" if ok else "TARGETS NOT MET")
    return 0


if __name__ == "__main__":
    sys.exit(main())
