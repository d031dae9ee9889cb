#!/usr/bin/env python3
"""Integration test harness: a throwaway PostgreSQL 15 and real controller processes.

Used by every tests/integration/test_*.py. Stdlib only.

Command line (the ctest fixture):
    harness.py pg-start STATEFILE   start the shared cluster, write its location to STATEFILE
    harness.py pg-stop STATEFILE    stop and remove it

In a test:
    pg = harness.shared_cluster()        # the fixture's cluster (or a private one outside ctest)
    db = pg.create_database()            # t_<random>, dropped by harness at exit
    ctl = harness.Controller(pg.dsn(db)) # writes YAML, picks a port, waits for /healthz
    status, headers, body = ctl.request("GET", "/api/cascade/clients", token=ctl.admin_token)
    ctl.stop(expected_errors=[r"..."])   # SIGTERM, exit 0, clean log

Every wait polls a condition against a deadline; nothing sleeps for a fixed time.
"""

import atexit
import http.client
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

PG_BIN = os.environ.get("CASCADE_PG_BIN", "/usr/lib/postgresql/15/bin")
PG_USER = "postgres"
TMP_PREFIX = "cascade-pg-"


# --------------------------------------------------------------------------------------------------
# small utilities


def recv_exact(sock, n):
    """|n| bytes from |sock|, or fewer when the peer closed first."""
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def wait_for(cond, timeout, interval=0.05, what="condition"):
    """Poll cond() until it returns a truthy value or |timeout| seconds pass; return that value.

    Raises TimeoutError naming |what| on expiry. cond() raising is treated as "not yet".
    """
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = cond()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - any failure means "not ready yet"
            last_exc = e
        if time.monotonic() >= deadline:
            msg = "timed out after %.1fs waiting for %s" % (timeout, what)
            if last_exc is not None:
                msg += " (last error: %r)" % (last_exc,)
            raise TimeoutError(msg)
        time.sleep(interval)


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_picked = set()


def _pick_port(kind, hosts=("127.0.0.1", "0.0.0.0")):
    """A port free now for |kind| (SOCK_STREAM, SOCK_DGRAM), chosen at random below the kernel's
    ephemeral range: a port the kernel hands out (bind to 0) may be handed out again to any
    process's outgoing connection between the test's check and the server's bind, which made
    parallel tests collide now and then ("Address already in use"). A port is never handed out
    twice by one test process: two picks before either is bound (an agent's http.listenaddr and
    http.adminaddr) drew the same port once."""
    low = min(_ephemeral_low(), 32768)
    for _ in range(200):
        port = secrets.randbelow(low - 10000) + 10000
        if (kind, port) in _picked:
            continue
        try:
            for host in hosts:
                with socket.socket(socket.AF_INET, kind) as s:
                    s.bind((host, port))
            _picked.add((kind, port))
            return port
        except OSError:
            continue
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port():
    """A TCP port on 127.0.0.1 (and the wildcard address) that was free a moment ago."""
    return _pick_port(socket.SOCK_STREAM)


def free_udp_port():
    """A UDP port free on 127.0.0.1 now (for QUIC listeners)."""
    return _pick_port(socket.SOCK_DGRAM)


def random_suffix(n=8):
    return secrets.token_hex(n // 2 + 1)[:n]


_cleanups = []


def at_exit(fn):
    """Run fn() at interpreter exit, also on SIGTERM/SIGINT/SIGHUP (last registered runs first)."""
    _cleanups.append(fn)
    return fn


def _run_cleanups():
    while _cleanups:
        fn = _cleanups.pop()
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - clean up as much as possible
            sys.stderr.write("harness: cleanup failed: %r\n" % (e,))


atexit.register(_run_cleanups)


def _on_signal(signum, frame):
    # Turn the signal into an exception so finally blocks and atexit cleanups run. unittest
    # stops the whole run on KeyboardInterrupt (it would record SystemExit and go on).
    signal.signal(signum, signal.SIG_DFL)
    raise KeyboardInterrupt("signal %d" % signum)


for _sig in (signal.SIGTERM, signal.SIGHUP):
    signal.signal(_sig, _on_signal)


def _as_pg_user(argv):
    """Prefix argv so it runs as the unprivileged postgres user when we are root."""
    if os.geteuid() == 0:
        return ["runuser", "-u", PG_USER, "--"] + argv
    return argv


def _pg(tool):
    return os.path.join(PG_BIN, tool)


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --------------------------------------------------------------------------------------------------
# PostgreSQL


class PgError(Exception):
    pass


class PgCluster:
    """One PostgreSQL 15 cluster in a temp dir, reachable only through a Unix socket in that dir."""

    def __init__(self, base=None, port=None, owner_pid=None):
        self.base = base
        self.port = port
        self.owner_pid = owner_pid
        self._registered = False

    # layout -------------------------------------------------------------------------------------
    @property
    def datadir(self):
        return os.path.join(self.base, "data")

    @property
    def socketdir(self):
        return self.base

    @property
    def logfile(self):
        return os.path.join(self.base, "postgres.log")

    def dsn(self, dbname="postgres", **extra):
        parts = ["host=%s" % self.socketdir, "port=%d" % self.port, "dbname=%s" % dbname,
                 "user=%s" % PG_USER]
        parts += ["%s=%s" % kv for kv in extra.items()]
        return " ".join(parts)

    # lifecycle ----------------------------------------------------------------------------------
    def init(self, owner_pid=None):
        """Create the temp dir and run initdb. owner_pid: the process whose death makes it stale."""
        self.base = tempfile.mkdtemp(prefix=TMP_PREFIX, dir="/tmp")
        self.owner_pid = owner_pid
        with open(os.path.join(self.base, "owner"), "w") as f:
            f.write("%d\n" % owner_pid if owner_pid else "shared\n")
        if os.geteuid() == 0:
            pw = pwd.getpwnam(PG_USER)
            os.chown(self.base, pw.pw_uid, pw.pw_gid)
        os.chmod(self.base, 0o700)
        self.port = free_port()
        r = subprocess.run(
            _as_pg_user([_pg("initdb"), "-D", self.datadir, "--auth=trust", "-U", PG_USER,
                         "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"]),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=self.base, text=True)
        if r.returncode != 0:
            raise PgError("initdb failed (%d):\n%s" % (r.returncode, r.stdout))
        # Settings live in postgresql.conf so a later restart (outage test) uses the same socket.
        with open(os.path.join(self.datadir, "postgresql.conf"), "a") as f:
            f.write("\n# cascade test harness\n"
                    "listen_addresses = ''\n"
                    "unix_socket_directories = '%s'\n"
                    "port = %d\n"
                    "fsync = off\n"
                    "full_page_writes = off\n"
                    "max_connections = 200\n"
                    "shared_buffers = 32MB\n"
                    "log_min_messages = warning\n" % (self.socketdir, self.port))
            # Benchmarks diagnosing the database's work (bench_rejoin.py --pg-stats).
            if os.environ.get("CASCADE_PG_STATS"):
                f.write("shared_preload_libraries = 'pg_stat_statements'\n"
                        "track_functions = 'pl'\n")
        return self

    def start(self, timeout=60):
        r = subprocess.run(
            _as_pg_user([_pg("pg_ctl"), "-D", self.datadir, "-l", self.logfile, "-W", "start"]),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=self.base, text=True)
        if r.returncode != 0:
            raise PgError("pg_ctl start failed (%d):\n%s\n%s" % (r.returncode, r.stdout, self.log_tail()))
        try:
            wait_for(self.is_ready, timeout, interval=0.05, what="PostgreSQL to accept connections")
        except TimeoutError as e:
            raise PgError("%s\n%s" % (e, self.log_tail()))
        return self

    def is_ready(self):
        r = subprocess.run([_pg("pg_isready"), "-q", "-h", self.socketdir, "-p", str(self.port),
                            "-U", PG_USER, "-d", "postgres", "-t", "2"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return r.returncode == 0

    def is_running(self):
        pidfile = os.path.join(self.datadir, "postmaster.pid")
        try:
            with open(pidfile) as f:
                pid = int(f.readline())
        except (OSError, ValueError):
            return False
        return _pid_alive(pid)

    def stop(self, mode="fast", timeout=60):
        """Stop the server and keep the data (pg_ctl stop -m MODE)."""
        if not self.base or not os.path.isdir(self.datadir) or not self.is_running():
            return
        subprocess.run(
            _as_pg_user([_pg("pg_ctl"), "-D", self.datadir, "-m", mode, "-t", str(timeout), "-w",
                         "stop"]),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=self.base, text=True)
        try:
            wait_for(lambda: not self.is_running(), timeout, what="PostgreSQL to stop")
        except TimeoutError:
            self._kill_postmaster()

    def _kill_postmaster(self):
        try:
            with open(os.path.join(self.datadir, "postmaster.pid")) as f:
                pid = int(f.readline())
            os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError):
            pass

    def destroy(self):
        """Stop (immediately) and remove every file. Safe to call twice."""
        if not self.base:
            return
        try:
            self.stop(mode="immediate", timeout=30)
        finally:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None

    def register_cleanup(self):
        if not self._registered:
            self._registered = True
            at_exit(self.destroy)
        return self

    def log_tail(self, n=40):
        try:
            with open(self.logfile, errors="replace") as f:
                lines = f.readlines()
        except OSError:
            return "(no PostgreSQL log)"
        return "--- PostgreSQL log tail (%s) ---\n%s" % (self.logfile, "".join(lines[-n:]))

    # state file (the ctest fixture) -------------------------------------------------------------
    def write_state(self, path):
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"base": self.base, "socketdir": self.socketdir, "port": self.port,
                       "datadir": self.datadir}, f)
            f.write("\n")
        os.replace(tmp, path)

    @classmethod
    def from_state(cls, path):
        with open(path) as f:
            st = json.load(f)
        return cls(base=st["base"], port=int(st["port"]))

    # SQL ----------------------------------------------------------------------------------------
    def psql(self, sql, db="postgres", check=True):
        """Run |sql| with psql (ON_ERROR_STOP, unaligned, tuples only); return stdout.

        Raises PgError with psql's stderr when check and it fails.
        """
        r = subprocess.run([_pg("psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                            "-h", self.socketdir, "-p", str(self.port), "-U", PG_USER, "-d", db,
                            "-c", sql],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if check and r.returncode != 0:
            raise PgError("psql failed (%d) on %r:\n%s" % (r.returncode, sql, r.stderr))
        return r.stdout

    def query(self, sql, db="postgres"):
        """Rows of |sql| as lists of strings (fields split on '|')."""
        out = self.psql(sql, db=db)
        return [line.split("|") for line in out.splitlines() if line != ""]

    def create_database(self, drop_at_exit=True):
        name = "t_" + random_suffix(12)
        self.psql('CREATE DATABASE "%s"' % name)
        if drop_at_exit:
            at_exit(lambda: self.drop_database(name))
        return name

    def drop_database(self, name):
        if not self.base or not self.is_running():
            return
        self.psql('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name, check=False)


def new_cluster(owner_pid=None):
    """Create and start a private cluster, removed at exit (and on SIGTERM)."""
    pg = PgCluster()
    pg.init(owner_pid=owner_pid if owner_pid is not None else os.getpid())
    pg.register_cleanup()
    pg.start()
    return pg


_shared = None


def shared_cluster():
    """The cluster of the ctest fixture (CASCADE_PG_STATE); outside ctest, a private one."""
    global _shared
    if _shared is not None:
        return _shared
    state = os.environ.get("CASCADE_PG_STATE")
    if state and os.path.exists(state):
        pg = PgCluster.from_state(state)
        if not pg.is_ready():
            raise PgError("shared PostgreSQL from %s is not ready\n%s" % (state, pg.log_tail()))
        _shared = pg
    else:
        if state:
            sys.stderr.write("harness: %s missing; starting a private PostgreSQL\n" % state)
        _shared = new_cluster()
    return _shared


def sweep_stale_clusters():
    """Remove private clusters whose owning test process died without cleaning up (SIGKILL)."""
    for name in os.listdir("/tmp"):
        if not name.startswith(TMP_PREFIX):
            continue
        base = os.path.join("/tmp", name)
        try:
            with open(os.path.join(base, "owner")) as f:
                owner = f.read().strip()
        except OSError:
            continue
        if not owner.isdigit() or _pid_alive(int(owner)):
            continue
        PgCluster(base=base, port=0).destroy()


def cmd_pg_start(statefile):
    if os.path.exists(statefile):
        # A killed run left its cluster behind: remove it first.
        try:
            PgCluster.from_state(statefile).destroy()
        except (OSError, ValueError, KeyError) as e:
            sys.stderr.write("harness: ignoring bad state file %s: %r\n" % (statefile, e))
        os.unlink(statefile)
    sweep_stale_clusters()
    pg = PgCluster().init(owner_pid=None)
    try:
        pg.start()
        pg.write_state(statefile)
    except BaseException:
        pg.destroy()
        raise
    print("PostgreSQL ready: socket %s port %d data %s" % (pg.socketdir, pg.port, pg.datadir))
    return 0


def cmd_pg_stop(statefile):
    if not os.path.exists(statefile):
        print("no state file %s: nothing to stop" % statefile)
        return 0
    pg = PgCluster.from_state(statefile)
    pg.stop(mode="fast")
    pg.destroy()
    os.unlink(statefile)
    print("PostgreSQL stopped and removed")
    return 0


# --------------------------------------------------------------------------------------------------
# YAML (just enough to write controller configs)


def _yaml_scalar(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    return json.dumps(str(v))  # a JSON string is a valid YAML double-quoted scalar


def to_yaml(obj, indent=0):
    pad = "  " * indent
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, dict) and v:
                out.append("%s%s:\n%s" % (pad, k, to_yaml(v, indent + 1)))
            elif isinstance(v, dict):
                out.append("%s%s: {}\n" % (pad, k))
            elif isinstance(v, list):
                out.append("%s%s: [%s]\n" % (pad, k, ", ".join(_yaml_scalar(x) for x in v)))
            else:
                out.append("%s%s: %s\n" % (pad, k, _yaml_scalar(v)))
    else:
        raise TypeError("top-level YAML must be a mapping")
    return "".join(out)


def deep_merge(base, extra):
    out = dict(base)
    for k, v in (extra or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        elif v is _DELETE:
            out.pop(k, None)
        else:
            out[k] = v
    return out


_DELETE = object()
DELETE = _DELETE  # use as a value in Controller(config=...) to drop a default key


# --------------------------------------------------------------------------------------------------
# HTTP


def http_request(host, port, method, path, body=None, headers=None, token=None, timeout=15):
    """One HTTP/1.1 request on a fresh connection. |body|: dict/list (sent as JSON), str or bytes.

    Returns (status, headers, parsed JSON or text); headers is an http.client.HTTPMessage
    (case-insensitive .get()).
    """
    hdrs = dict(headers or {})
    data = None
    if body is not None:
        if isinstance(body, (bytes, bytearray)):
            data = bytes(body)
        elif isinstance(body, str):
            data = body.encode("utf-8")
        else:
            data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        hdrs.setdefault("Content-Type", "application/json")
    if token is not None:
        hdrs["Authorization"] = "Bearer " + token
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        raw = resp.read()
        status, rh = resp.status, resp.headers
    finally:
        conn.close()
    text = raw.decode("utf-8", errors="replace")
    parsed = text
    ctype = rh.get("Content-Type", "")
    if "json" in ctype or text[:1] in ("{", "["):
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = text
    return status, rh, parsed


def tcp_pump(a, b, until=None):
    """Copies bytes from socket |a| to socket |b| until |a| ends (bytes after the monotonic time
    |until| are read and dropped), then shuts both down: one direction of a test's TCP relay."""
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            if until is None or time.monotonic() < until:
                b.sendall(d)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def raw_request(host, port, request_bytes, timeout=15):
    """Send a pre-built HTTP request, tolerating the server closing early (e.g. a 413 sent before
    the whole body arrived). Returns (status, headers, parsed JSON or text) or raises OSError when
    no response came at all."""
    s = socket.create_connection((host, port), timeout=timeout)
    try:
        try:
            s.sendall(request_bytes)
        except (BrokenPipeError, ConnectionResetError):
            pass
        resp = http.client.HTTPResponse(s)
        resp.begin()
        raw = resp.read()
        text = raw.decode("utf-8", errors="replace")
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = text
        return resp.status, resp.headers, parsed
    finally:
        s.close()


# --------------------------------------------------------------------------------------------------
# the controller


def bin_dir():
    d = os.environ.get("CASCADE_BIN_DIR")
    if d:
        return d
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.join(here, "..", "..", "build", "bin")


def controller_path():
    return os.path.join(bin_dir(), "cascade-controller")


SANITIZER_RE = re.compile(r"AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error")
ERROR_LINE_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z\s+error\s")


def _die_with_parent():
    """preexec_fn: the child gets SIGKILL when the test process dies (ctest kills on timeout)."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort
        pass


def sanitizer_env(env=None):
    e = dict(os.environ if env is None else env)
    # Tests pass these explicitly; an operator's own values must not leak into a test.
    e.pop("CASCADE_DB_DSN", None)
    e.pop("CASCADE_ADMIN_TOKEN", None)
    for k in [k for k in e if k.startswith(("CASCADE_AGENT_", "CASCADE_CONTROLLER_"))]:
        del e[k]  # configuration variables (docs/configuration.md, "Environment")
    e.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:exitcode=86")
    e.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    return e


def run_controller(args, env_extra=None, timeout=60):
    """Run the controller to completion (for --check and config errors): (rc, stdout, stderr)."""
    env = sanitizer_env()
    env.update(env_extra or {})
    r = subprocess.run([controller_path()] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=env, timeout=timeout, text=True,
                       errors="replace")
    return r.returncode, r.stdout, r.stderr


def _thread_stacks(pid):
    """Every thread's stack of a hung process (gdb), for the failure message."""
    if shutil.which("gdb") is None:
        return "(gdb not installed)"
    try:
        r = subprocess.run(["gdb", "-p", str(pid), "-batch", "-ex", "thread apply all bt 30"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=60)
        return r.stdout[-40000:]
    except (OSError, subprocess.TimeoutExpired) as e:
        return "(gdb failed: %s)" % e


_control_dirs = {}  # dsn -> the control.datadir of the first Controller on it


class ControllerError(AssertionError):
    pass


class Controller:
    """A cascade-controller process on a free loopback port with its own config and log.

    config: dict merged over the defaults (use harness.DELETE to drop a key).
    env: extra environment variables (e.g. CASCADE_DB_DSN).
    """

    def __init__(self, dsn, config=None, env=None, admin_token=None, start=True, timeout=30,
                 workdir=None, control_dir=None, join_token=None):
        """control_dir: the control.datadir (CA and server certificate) to use, e.g. another
        replica's to share its CA; join_token: the deployment's (replicas share it)."""
        self.dsn = dsn
        self.admin_token = admin_token or ("adm_" + secrets.token_hex(16))
        # The deployment join token: agents of the harness present it (so they join
        # approved), tests of admission leave it out.
        self.join_token = join_token or ("join_" + secrets.token_hex(16))
        self.workdir = workdir or tempfile.mkdtemp(prefix="cascade-ctl-")
        if control_dir is None and dsn is not None:
            # Controllers of one database are replicas of one deployment: they share the CA
            # (a controller with another CA refuses to start), so a later one on the same
            # database takes the first one's control.datadir unless told otherwise.
            key = (env or {}).get("CASCADE_DB_DSN") or dsn
            control_dir = _control_dirs.setdefault(key, os.path.join(self.workdir, "control"))
        self.control_dir = control_dir or os.path.join(self.workdir, "control")
        self._own_workdir = workdir is None
        self.config_path = os.path.join(self.workdir, "controller.yaml")
        self.log_path = os.path.join(self.workdir, "controller.log")
        self.extra_config = config or {}
        self.extra_env = env or {}
        self.proc = None
        self.port = None
        self.host = "127.0.0.1"
        self.returncode = None
        self.checked_offset = 0
        at_exit(self._cleanup)
        if start:
            self.start(timeout=timeout)

    def write_config(self):
        if getattr(self, "control_port", None) is None:
            self.control_port = free_port()
        cfg = {
            "http": {"listenaddr": "%s:%d" % (self.host, self.port)},
            "control": {"listenaddr": "tls+tcp://127.0.0.1:%d" % self.control_port,
                        "datadir": self.control_dir},
            "database": {"dsn": self.dsn, "poolsize": 4, "timeout": 3000},
            "auth": {"admintoken": self.admin_token},
            "cascadeserver": {"jointoken": self.join_token},
            "log": {"level": "debug"},
        }
        cfg = deep_merge(cfg, self.extra_config)
        # A test may choose the control scheme and keep the port the harness picked.
        cl = cfg.get("control", {}).get("listenaddr")
        if isinstance(cl, str):
            cfg["control"]["listenaddr"] = cl.replace("{control_port}", str(self.control_port))
        with open(self.config_path, "w") as f:
            f.write(to_yaml(cfg))
        return cfg

    def binary(self):
        return controller_path()

    def command(self):
        """The argv that runs this server (a subclass may run it elsewhere, e.g. in a container)."""
        return [self.binary(), "-c", self.config_path]

    def popen_env(self):
        env = sanitizer_env()
        env.update(self.extra_env)
        return env

    def restart_after_kill(self, timeout=30):
        """kill -9 the process, then start it again on the same ports with the same config."""
        self.proc.kill()
        self.proc.wait()
        self._logf.close()
        self._logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=self._logf,
                                     stderr=subprocess.STDOUT, env=self.popen_env(),
                                     preexec_fn=_die_with_parent)
        self.wait_healthy(timeout)
        return self

    def start(self, timeout=30, wait=True):
        """Start the process; retry with another port when the one chosen got taken meanwhile."""
        for attempt in range(3):
            self.port = free_port()
            self.write_config()
            self._logf = open(self.log_path, "ab")
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                         stdout=self._logf, stderr=subprocess.STDOUT,
                                         env=self.popen_env(), preexec_fn=_die_with_parent)
            self.returncode = None
            if not wait:
                return self
            try:
                self.wait_healthy(timeout)
                return self
            except ControllerError:
                if self.proc.poll() is not None:
                    self._logf.close()
                if self.proc.poll() is not None and re.search(r"(?i)address already in use|EADDRINUSE",
                                                               self.log_text()) and attempt < 2:
                    # keep that attempt's log aside: its error line is not this run's
                    os.replace(self.log_path, "%s.attempt%d" % (self.log_path, attempt))
                    continue
                raise
        return self

    @property
    def base_url(self):
        return "http://%s:%d" % (self.host, self.port)

    def wait_healthy(self, timeout=30):
        """Poll GET /healthz until 200; fail at once if the process exits."""
        def healthy():
            if self.proc.poll() is not None:
                return "exited"
            try:
                return self.request("GET", "/healthz", timeout=2)[0] == 200
            except OSError:
                return False
        try:
            r = wait_for(healthy, timeout, what="controller /healthz == 200")
        except TimeoutError as e:
            raise ControllerError("%s\n%s" % (e, self.log_tail()))
        if r == "exited":
            raise ControllerError("controller exited with %d before becoming healthy\n%s"
                                  % (self.proc.returncode, self.log_tail()))

    def request(self, method, path, body=None, headers=None, token=None, timeout=15):
        return http_request(self.host, self.port, method, path, body=body, headers=headers,
                            token=token, timeout=timeout)

    def api(self, method, path, body=None, token=None, **kw):
        """request() with the admin token unless another is given."""
        return self.request(method, path, body=body, token=self.admin_token if token is None else token,
                            **kw)

    # logs -------------------------------------------------------------------------------------
    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def log_tail(self, n=60):
        lines = self.log_text().splitlines()
        return "--- controller log tail (%s) ---\n%s" % (self.log_path, "\n".join(lines[-n:]))

    def check_log(self, expected_errors=(), text=None):
        """Raise on sanitizer reports and on error-level lines matching none of |expected_errors|."""
        text = self.log_text() if text is None else text
        bad = []
        if self.admin_token and self.admin_token in text:
            bad.append("(the admin token value appears in the log)")
        join = getattr(self, "join_token", None)
        if join and join in text:
            bad.append("(the join token value appears in the log)")
        pats = [re.compile(p) for p in expected_errors]
        for line in text.splitlines():
            if SANITIZER_RE.search(line):
                bad.append(line)
            elif ERROR_LINE_RE.match(line) and not any(p.search(line) for p in pats):
                bad.append(line)
        if bad:
            raise ControllerError("unexpected lines in controller log:\n  %s\n%s"
                                  % ("\n  ".join(bad[:20]), self.log_tail()))

    # stop ---------------------------------------------------------------------------------------
    def stop(self, expected_errors=(), sig=signal.SIGTERM, timeout=30, check=True):
        """Signal the process, wait for it, and (check) assert exit 0 and a clean log."""
        if self.proc is None:
            return self.returncode
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                stacks = _thread_stacks(self.proc.pid)
                self.proc.kill()
                self.proc.wait()
                self.returncode = self.proc.returncode
                self.proc = None
                self._logf.close()
                raise ControllerError("%s did not exit within %ss of signal %d\n%s\n"
                                      "--- its threads when it hung ---\n%s"
                                      % (os.path.basename(self.binary()), timeout, sig,
                                         self.log_tail(), stacks))
        self.returncode = self.proc.returncode
        self.proc = None
        self._logf.close()
        if check:
            if self.returncode != 0:
                raise ControllerError("controller exited with %d (expected 0)\n%s"
                                      % (self.returncode, self.log_tail()))
            self.check_log(expected_errors)
        return self.returncode

    def wait_exit(self, timeout=30):
        """Wait for the process to exit on its own; return its exit code."""
        rc = self.proc.wait(timeout)
        self.returncode = rc
        self.proc = None
        self._logf.close()
        return rc

    def _cleanup(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self._own_workdir and os.path.isdir(self.workdir) and os.environ.get("CASCADE_KEEP_LOGS") != "1":
            shutil.rmtree(self.workdir, ignore_errors=True)


AGENT_DEFAULT_ADMINADDR = "127.0.0.1:8081"  # http.adminaddr when a test drops the key


def agent_path():
    return os.path.join(bin_dir(), "cascade-agent")


class Agent(Controller):
    """A cascade-agent process on a free loopback port, dialling |ctl|'s control channel and
    trusting its CA. The node secret is checked never to appear in the agent's log.

    port is the public HTTP port (HTTP-FLV and /healthz only); admin_port the node's own API
    (http.adminaddr, on loopback), which admin_request() and status() use; None when a test
    sets http.adminaddr to "" (no local API)."""

    def __init__(self, ctl, name, secret, config=None, env=None, start=True, timeout=30,
                 join=True):
        """join: present the controller's join token (True), none (False), or this value."""
        self.ctl = ctl
        self.name = name
        self.secret = secret
        self.join = join
        super().__init__(None, config=config, env=env, admin_token=secret, start=start,
                         timeout=timeout)
        self.join_token = self.join_value()

    def join_value(self):
        if self.join is True:
            return getattr(self.ctl, "join_token", None)
        return self.join or None

    def binary(self):
        return agent_path()

    @property
    def datadir(self):
        return os.path.join(self.workdir, "data")

    def write_config(self):
        cfg = {
            "node": {"name": self.name, "secret": self.secret, "datadir": self.datadir},
            "controller": {"url": "tls+tcp://127.0.0.1:%d" % self.ctl.control_port,
                           "ca": os.path.join(self.ctl.control_dir, "ca.crt")},
            "http": {"listenaddr": "%s:%d" % (self.host, self.port),
                     "adminaddr": "%s:%d" % (self.host, free_port())},
            "rtmp": {"listenaddr": "%s:%d" % (self.host, self.rtmp_port)},
            # Open, as before stream authorization: the tests of other areas publish and play
            # without tokens; test_streamauth sets "controller" where it checks the policy.
            "auth": {"publish": "none", "play": "none"},
            "log": {"level": "debug"},
        }
        if self.join_value():
            cfg["node"]["jointoken"] = self.join_value()
        cfg = deep_merge(cfg, self.extra_config)
        self._set_admin(cfg.get("http", {}).get("adminaddr", AGENT_DEFAULT_ADMINADDR))
        with open(self.config_path, "w") as f:
            f.write(to_yaml(cfg))
        return cfg

    @property
    def rtmp_port(self):
        if getattr(self, "_rtmp_port", None) is None:
            self._rtmp_port = free_port()
        return self._rtmp_port

    def rtmp_url(self, path):
        return "rtmp://%s:%d/%s" % (self.host, self.rtmp_port, path)

    def flv_url(self, path):
        return "http://%s:%d/flv/%s.flv" % (self.host, self.port, path)

    def _set_admin(self, addr):
        """admin_host/admin_port from the http.adminaddr written ("" = no local API)."""
        m = re.match(r"^(\[[^\]]*\]|[^:]*):(\d+)$", addr or "")
        if not m:
            self.admin_host = self.admin_port = None
            return
        host = m.group(1).strip("[]")
        self.admin_host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
        self.admin_port = int(m.group(2))

    def admin_request(self, method, path, **kw):
        """request() on the node's own API (the admin listener)."""
        if self.admin_port is None:
            raise ControllerError("agent %s has no local API (http.adminaddr is empty)" % self.name)
        return http_request(self.admin_host, self.admin_port, method, path, **kw)

    def status(self):
        st, _, body = self.admin_request("GET", "/api/cascade/status", timeout=5)
        if st != 200:
            raise ControllerError("agent status answered %d: %r" % (st, body))
        return body["data"]

    def streams(self):
        """The node's /api/stream/list as {path: entry}."""
        st, _, body = self.admin_request("GET", "/api/stream/list", timeout=5)
        if st != 200:
            raise ControllerError("agent stream list answered %d: %r" % (st, body))
        return {s["path"]: s for s in body["data"]}

    def parent_up(self, parent_id):
        """Whether the link to parent node |parent_id| is up."""
        return any(l["role"] == "parent" and l["peer_id"] == parent_id and l["state"] == "up"
                   for l in self.status()["links"])


def start_tree(ctl, layout, config, agents, timeout=30, agent_class=None):
    """A cascade as the controller's registry and real agents: |layout| lists (name, parent
    name or None) parents first; each node is created over the REST API (secret name +
    "-secret") and started with a copy of |config|, nodes with children listening for QUIC on a
    loopback port of their own; returns {name: id} once every child's parent link is up. The
    agents go into |agents| as they start, so a caller's teardown stops them even when this
    fails."""
    ids = {}
    parents = {p for _, p in layout if p}
    for name, parent in layout:
        body = {"name": name, "secret": name + "-secret"}
        if parent:
            body["parent_id"] = ids[parent]
        st, _, resp = ctl.api("POST", "/api/cascade/clients", body)
        if st != 201:
            raise ControllerError("creating node %s answered %d: %r" % (name, st, resp))
        ids[name] = resp["data"]["id"]
    for name, _ in layout:
        cfg = json.loads(json.dumps(config))
        if name in parents:
            cfg = deep_merge(cfg, {"cascadeserver": {"quic": {
                "listenaddr": "127.0.0.1:%d" % free_udp_port()}}})
        agents[name] = (agent_class or Agent)(ctl, name, name + "-secret", config=cfg)
    for name, parent in layout:
        if parent:
            wait_for(lambda a=agents[name], pid=ids[parent]: a.parent_up(pid), timeout,
                     what="%s -> %s link" % (name, parent))
    return ids


def stop_tree(ctl, agents, procs=(), expected_errors=(), tmp=None):
    """The teardown of a tree start_tree made: |procs| (publishers, players) killed, every agent
    still running stopped with its log checked (unexpected ERROR lines), the controller stopped
    and |tmp| removed — all of it even when an agent's log fails the check; then one
    AssertionError naming every agent whose log did."""
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()
    errors = []
    for a in agents.values():
        if a.proc is not None:
            try:
                a.stop(expected_errors=expected_errors)
            except AssertionError as e:
                errors.append(str(e))
    ctl.stop()
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)
    if errors:
        raise AssertionError("\n".join(errors))


def wait_applied(ctl, ids, timeout=20):
    """Wait until every node of |ids| (ids, or a {name: id} map) runs the configuration the
    controller wants for it now (config_generation applied == desired)."""
    nodes = list(ids.values()) if isinstance(ids, dict) else list(ids)
    def done():
        for nid in nodes:
            st, _, body = ctl.api("GET", "/api/cascade/clients/%d" % nid)
            if st != 200:
                return False
            g = body["data"]["config_generation"]
            if g["applied"] != g["desired"]:
                return False
        return True
    wait_for(done, timeout, what="every node applying its configuration")


# --------------------------------------------------------------------------------------------------
# unittest helpers


def envelope_ok(testcase, resp, status=200):
    """Assert status and the success envelope; return data."""
    st, _, body = resp
    testcase.assertEqual(st, status, "unexpected status, body: %r" % (body,))
    testcase.assertIsInstance(body, dict, "body is not a JSON object: %r" % (body,))
    testcase.assertEqual(body.get("code"), 0, body)
    testcase.assertEqual(body.get("message"), "success", body)
    testcase.assertIn("data", body)
    return body["data"]


def envelope_err(testcase, resp, status):
    """Assert an error status and the error envelope (code == status, a message, data null)."""
    st, _, body = resp
    testcase.assertEqual(st, status, "unexpected status, body: %r" % (body,))
    testcase.assertIsInstance(body, dict, "error body is not a JSON object: %r" % (body,))
    testcase.assertEqual(body.get("code"), status, body)
    testcase.assertIsInstance(body.get("message"), str, body)
    testcase.assertTrue(body["message"], "empty error message")
    testcase.assertNotEqual(body["message"], "success", body)
    testcase.assertIn("data", body, body)
    testcase.assertIsNone(body["data"], body)
    return body


TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
NODE_KEYS = {"id", "name", "ip", "online", "parent_id", "labels", "created_time", "updated_time",
             "last_seen"}


def forbidden_keys(obj, words=("secret", "verifier")):
    """Every key (at any depth) of |obj| that contains one of |words| (case-insensitive)."""
    found = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if any(w in k.lower() for w in words):
                found.append(k)
            found += forbidden_keys(v, words)
    elif isinstance(obj, list):
        for v in obj:
            found += forbidden_keys(v, words)
    return found


class ControllerTestCase(unittest.TestCase):
    """One database and one controller for the whole class; the log is checked at teardown.

    Subclasses may set config (dict merged into the controller config) and expected_errors.
    """

    config = None
    expected_errors = ()

    @classmethod
    def setUpClass(cls):
        require_controller()
        cls.pg = shared_cluster()
        cls.db = cls.pg.create_database()
        cls.ctl = Controller(cls.pg.dsn(cls.db), config=cls.config)

    @classmethod
    def tearDownClass(cls):
        ctl = getattr(cls, "ctl", None)
        if ctl is not None:
            ctl.stop(expected_errors=cls.expected_errors)
        cls.pg.drop_database(cls.db)

    def run(self, result=None):
        # On a failing test, show what the controller said (the assertion shows what we saw).
        n = (len(result.failures) + len(result.errors)) if result is not None else 0
        r = super().run(result)
        res = result if result is not None else r
        ctl = getattr(type(self), "ctl", None)
        if res is not None and ctl is not None and len(res.failures) + len(res.errors) > n:
            sys.stderr.write("\n%s\n" % ctl.log_tail(30))
        return r

    # shortcuts ----------------------------------------------------------------------------------
    def api(self, method, path, body=None, token=None, **kw):
        return self.ctl.api(method, path, body=body, token=token, **kw)

    def ok(self, resp, status=200):
        return envelope_ok(self, resp, status)

    def err(self, resp, status):
        return envelope_err(self, resp, status)

    def create(self, name=None, secret="s3cret-pass", **fields):
        body = {"name": name or ("node-" + random_suffix()), "secret": secret}
        body.update(fields)
        return self.ok(self.api("POST", "/api/cascade/clients", body), 201)

    def list_all(self):
        """Every node through the API, following pages; checks envelope and paging fields."""
        nodes, page = [], 1
        while True:
            st, _, body = self.api("GET", "/api/cascade/clients?page=%d&size=1000" % page)
            self.assertEqual(st, 200, body)
            nodes += body["data"]
            if len(nodes) >= body["total"] or not body["data"]:
                return nodes
            page += 1

    def db_rows(self, table="instances"):
        """Every row of |table| as JSON text, ordered by id (what an unchanged check compares)."""
        return self.pg.psql("SELECT row_to_json(t)::text FROM %s t ORDER BY 1" % table,
                            db=self.db).splitlines()

    def snapshot(self):
        return (self.list_all(), self.db_rows())

    def assert_node_shape(self, node):
        self.assertIsInstance(node, dict, node)
        missing = NODE_KEYS - set(node)
        self.assertFalse(missing, "node lacks %s: %r" % (sorted(missing), node))
        self.assertEqual(forbidden_keys(node), [], node)
        self.assertIsInstance(node["id"], int)
        self.assertNotIsInstance(node["id"], bool)
        self.assertIsInstance(node["name"], str)
        self.assertIsInstance(node["ip"], str)
        self.assertIsInstance(node["online"], bool)
        self.assertTrue(node["parent_id"] is None or type(node["parent_id"]) is int, node)
        self.assertIsInstance(node["labels"], dict)
        self.assertRegex(node["created_time"], TIME_RE)
        self.assertRegex(node["updated_time"], TIME_RE)
        self.assertTrue(node["last_seen"] is None or TIME_RE.match(node["last_seen"]), node)


def require_controller():
    """Exit with a clear message when the controller binary is missing."""
    p = controller_path()
    if not os.access(p, os.X_OK):
        sys.stderr.write("controller binary not found at %s (set CASCADE_BIN_DIR)\n" % p)
        sys.exit(1)


def main(argv):
    if len(argv) == 3 and argv[1] == "pg-start":
        return cmd_pg_start(os.path.abspath(argv[2]))
    if len(argv) == 3 and argv[1] == "pg-stop":
        return cmd_pg_stop(os.path.abspath(argv[2]))
    sys.stderr.write("usage: harness.py pg-start|pg-stop STATEFILE\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
