#!/usr/bin/env python3
"""Ringmaster benchmark suite: Ringmaster vs circusd 0.19 vs supervisord 4.3.

Run it through the wrapper, which installs what it needs first:

    bench/run --quick      # under a minute: short windows, fewer samples, no scale test
    bench/run --full       # several minutes; writes docs/benchmarks.md

Every figure is measured for the three supervisors in the same run, with the
systems interleaved (their order rotates from one repetition to the next), and
reported as the median with the ratio to Ringmaster. See docs/benchmarks.md
for what each figure means and how it is measured.

Safety: only loopback addresses; every load loop is bounded in count and time;
every process this script starts gets its own session, and is ended, with all
its descendants, by pid (never by name) when its measurement is done, on error,
and on Ctrl-C.
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import xmlrpc.client

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
WORK = os.path.join(BENCH, ".work")
VENV = os.environ.get("BENCH_VENV", os.path.join(WORK, "venv"))
VBIN = os.path.join(VENV, "bin")
CONFIG = os.path.join(ROOT, "config")
BIN = os.path.join(WORK, "bin")
RUN = os.path.join(WORK, "run")  # per-run scratch: configs, logs, sockets

RM = "Ringmaster"
CI = "circusd 0.19"
SV = "supervisord 4.3"
SYSTEMS = [RM, CI, SV]

# bench/scale.py does `import bench` and must get this module, not a second copy.
sys.modules.setdefault("bench", sys.modules[__name__])
import scale  # noqa: E402

try:
    import zmq  # from the virtualenv (circus depends on pyzmq)
except ImportError:  # pragma: no cover - the wrapper installs it
    zmq = None


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def now_ns():
    return time.monotonic_ns()


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def pctl(xs, p):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    k = max(0, min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1)))))
    return xs[k]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------
# Processes: a table from /proc, and the processes this script started.

CLK_TCK = os.sysconf("SC_CLK_TCK")


def ptable():
    """{pid: (ppid, pgid, starttime, comm)} for every process."""
    t = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        comm = s[s.index("(") + 1 : s.rindex(")")]
        f = s[s.rindex(")") + 2 :].split()
        # f[0]=state f[1]=ppid f[2]=pgrp ... f[19]=starttime
        if f[0] in ("Z", "X"):
            continue
        t[int(d)] = (int(f[1]), int(f[2]), int(f[19]), comm)
    return t


def descendants(root, table=None):
    table = table if table is not None else ptable()
    kids = {}
    for pid, (ppid, _, _, _) in table.items():
        kids.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        for c in kids.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def starttime(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
        return int(s[s.rindex(")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None


REGISTRY = []


class Proc:
    """A process this script started (in a new session), and its descendants."""

    def __init__(self, argv, label, cwd=ROOT, env=None, out=None, group_signal=False):
        self.label = label
        self.out_path = out
        fh = open(out, "ab") if out else subprocess.DEVNULL
        self.popen = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT if out else subprocess.DEVNULL,
            start_new_session=True,
        )
        if out:
            fh.close()
        self.pid = self.popen.pid
        self.group_signal = group_signal
        self.known = {}  # pid -> starttime, every descendant seen
        REGISTRY.append(self)

    def alive(self):
        return self.popen.poll() is None

    def snapshot(self, table=None):
        table = table if table is not None else ptable()
        for p in descendants(self.pid, table):
            self.known.setdefault(p, table[p][2])
        return self.known

    def children_named(self, comm, table=None):
        table = table if table is not None else ptable()
        return [p for p in descendants(self.pid, table) if table[p][3] == comm]

    def stop(self, timeout=30.0):
        """SIGTERM (to the group if group_signal), wait, then SIGKILL; then
        SIGKILL every descendant seen that is still the same process."""
        if self in REGISTRY:
            REGISTRY.remove(self)
        t_stop = time.monotonic()
        try:
            self.snapshot()
        except Exception:
            pass
        if self.alive():
            try:
                if self.group_signal:
                    os.killpg(self.pid, signal.SIGTERM)
                else:
                    os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"  ! {self.label} did not stop within {timeout}s of SIGTERM: SIGKILL")
                try:
                    os.killpg(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.popen.wait(10)
        leftovers = 0
        for p, st in self.known.items():
            if starttime(p) == st:
                leftovers += 1
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        # Reaped by their parents or init; give the kernel a moment.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(starttime(p) == st for p, st in self.known.items()):
            time.sleep(0.01)
        if time.monotonic() - t_stop > 2:
            log(f"  ({self.label} took {time.monotonic() - t_stop:.1f} s to stop; {leftovers} leftovers)")
        return leftovers


def cleanup_all():
    for p in list(REGISTRY):
        try:
            p.stop(timeout=10)
        except Exception as e:  # keep cleaning
            log(f"  ! cleanup of {p.label}: {e}")


# --------------------------------------------------------------------------
# Resource figures from /proc.


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def mem_kib(pid):
    """(RSS, PSS, USS) in KiB from smaps_rollup; USS = private pages."""
    out = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("Rss", "Pss", "Private_Clean", "Private_Dirty"):
                    out[k] = int(v.split()[0])
    except OSError:
        r = rss_kib(pid)
        return r, None, None
    return out.get("Rss"), out.get("Pss"), out.get("Private_Clean", 0) + out.get("Private_Dirty", 0)


def cpu_ns(pid):
    """CPU time of a process: sum of its threads' schedstat (ns resolution),
    and utime+stime in ns (tick resolution, includes exited threads)."""
    sched = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    sched += int(f.read().split()[0])
            except OSError:
                pass
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
        fl = s[s.rindex(")") + 2 :].split()
        ticks = int(fl[11]) + int(fl[12])
    except OSError:
        return None, None
    return sched, ticks * 1_000_000_000 // CLK_TCK


def cpu_delta(a, b):
    (s0, t0), (s1, t1) = a, b
    if s0 is None or s1 is None:
        return None
    ds = s1 - s0
    dt = t1 - t0
    return ds if ds >= 0 else dt


# --------------------------------------------------------------------------
# Children announce themselves: stamp / logwriter send "<pid> <monotonic ns>".


class Stamps:
    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]

    def drain(self):
        self.sock.setblocking(False)
        try:
            while True:
                self.sock.recv(128)
        except BlockingIOError:
            pass
        finally:
            self.sock.setblocking(True)

    def wait(self, n, timeout):
        """Up to n (pid, ns) stamps, waiting at most timeout seconds in all."""
        got = []
        deadline = time.monotonic() + timeout
        while len(got) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(128)
            except socket.timeout:
                break
            pid, ns = data.split()[:2]
            got.append((int(pid), int(ns)))
        self.sock.settimeout(None)
        return got


# --------------------------------------------------------------------------
# The three supervisors, driven from one description of the watchers:
#   {"name", "argv": [...], "n", "socket": bool, "stdout": path|None}
# and optional sockets {"web": port}.


class Daemon:
    def __init__(self, system, proc, dir, endpoint=None, conf=None, sock=None):
        self.system = system
        self.proc = proc
        self.dir = dir
        self.endpoint = endpoint  # zmq control endpoint (Ringmaster, Circus)
        self.conf = conf
        self.sock = sock  # supervisord's unix socket

    def pids(self):
        """The daemon itself (and circusd-stats if it runs)."""
        out = [self.proc.pid]
        if self.system == CI:
            t = ptable()
            for p in descendants(self.proc.pid, t):
                try:
                    with open(f"/proc/{p}/cmdline", "rb") as f:
                        if b"circusd-stats" in f.read():
                            out.append(p)
                except OSError:
                    pass
        return out

    def stop(self):
        if self.system == CI and self.proc.alive():
            # circusd 0.19 hangs if SIGTERM arrives while it is still starting
            # its watchers (seen here: it never stops them): wait until its
            # control channel says every watcher is active.
            self.wait_circus_active(30)
        return self.proc.stop(timeout=60)

    def wait_circus_active(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.alive():
            try:
                c = ZmqClient(self.endpoint, timeout=1.0)
                try:
                    r = c.call("status")
                finally:
                    c.close()
                st = r.get("statuses", {})
                if st and all(v == "active" for v in st.values()):
                    return True
            except Exception:
                pass
            time.sleep(0.05)
        return False


def start_ringmaster(rm_bin, watchers, sockets=None, tag="rm"):
    d = tempfile.mkdtemp(prefix=f"{tag}-", dir=RUN)
    ep = f"tcp://127.0.0.1:{free_port()}"
    pub = f"tcp://127.0.0.1:{free_port()}"
    lines = ["[ringmaster]", f'endpoint = "{ep}"', f'pubsub_endpoint = "{pub}"', ""]
    for name, opt in (sockets or {}).items():
        opt = opt if isinstance(opt, dict) else {"port": opt}
        lines += [f"[sockets.{name}]", 'host = "127.0.0.1"', f"port = {opt['port']}"]
        if "nodelay" in opt:
            lines.append(f"nodelay = {'true' if opt['nodelay'] else 'false'}")
        lines.append("")
    for w in watchers:
        lines += [
            f"[watchers.{w['name']}]",
            "cmd = " + json.dumps(" ".join(w["argv"])),
            f"numprocesses = {w['n']}",
            "graceful_timeout = 5",
        ]
        if w.get("socket"):
            lines.append('sockets = ["web"]')
        lines += w.get("extra", [])
        if w.get("stdout"):
            lines += ["", f"[watchers.{w['name']}.stdout_stream]", 'class = "file"',
                      "filename = " + json.dumps(w["stdout"])]
        lines.append("")
    conf = os.path.join(d, "ringmaster.toml")
    with open(conf, "w") as f:
        f.write("\n".join(lines))
    env = dict(os.environ, XDG_RUNTIME_DIR=d)
    p = Proc([rm_bin, "run", conf], "ringmaster", env=env, out=os.path.join(d, "daemon.log"))
    return Daemon(RM, p, d, endpoint=ep, conf=conf)


def start_circus(watchers, sockets=None, check_delay=None, tag="circus"):
    d = tempfile.mkdtemp(prefix=f"{tag}-", dir=RUN)
    ep = f"tcp://127.0.0.1:{free_port()}"
    lines = [
        "[circus]",
        f"endpoint = {ep}",
        f"pubsub_endpoint = tcp://127.0.0.1:{free_port()}",
        # No stats_endpoint: setting one turns circusd-stats on (statsd).
    ]
    if check_delay is not None:
        lines.append(f"check_delay = {check_delay}")
    lines.append("")
    for name, port in (sockets or {}).items():
        lines += [f"[socket:{name}]", "host = 127.0.0.1", f"port = {port}", ""]
    for w in watchers:
        lines += [
            f"[watcher:{w['name']}]",
            "cmd = " + " ".join(w["argv"]),
            f"numprocesses = {w['n']}",
            "graceful_timeout = 5",
        ]
        if w.get("socket"):
            lines.append("use_sockets = True")
        lines += w.get("circus_extra", [])
        if w.get("stdout"):
            lines += ["stdout_stream.class = FileStream", f"stdout_stream.filename = {w['stdout']}"]
        lines.append("")
    conf = os.path.join(d, "circus.ini")
    with open(conf, "w") as f:
        f.write("\n".join(lines))
    p = Proc([os.path.join(VBIN, "circusd"), conf], "circusd", out=os.path.join(d, "daemon.log"))
    return Daemon(CI, p, d, endpoint=ep, conf=conf)


def start_supervisor(watchers, tag="supervisor", minfds=None):
    d = tempfile.mkdtemp(prefix=f"{tag}-", dir=RUN)
    os.makedirs(os.path.join(d, "childlogs"))
    sock = os.path.join(d, "supervisor.sock")
    lines = [
        "[supervisord]",
        "nodaemon = true",
        f"logfile = {d}/supervisord.log",
        f"pidfile = {d}/supervisord.pid",
        f"childlogdir = {d}/childlogs",
    ] + ([f"minfds = {minfds}"] if minfds else []) + [
        "",
        "[unix_http_server]",
        f"file = {sock}",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl = unix://{sock}",
        "",
    ]
    for w in watchers:
        lines += [
            f"[program:{w['name']}]",
            "command = " + " ".join(w["argv"]),
            f"numprocs = {w['n']}",
            "process_name = %(program_name)s_%(process_num)d",
            "autorestart = true",
            "stopwaitsecs = 5",
        ]
        lines += w.get("supervisor_extra", [])
        if w.get("stdout"):
            lines += [f"stdout_logfile = {w['stdout']}", "stdout_logfile_maxbytes = 0",
                      "stdout_logfile_backups = 0"]
        lines.append("")
    conf = os.path.join(d, "supervisord.conf")
    with open(conf, "w") as f:
        f.write("\n".join(lines))
    p = Proc([os.path.join(VBIN, "supervisord"), "-n", "-c", conf], "supervisord",
             out=os.path.join(d, "daemon.log"))
    return Daemon(SV, p, d, conf=conf, sock=sock)


def start_system(system, ctx, watchers, **kw):
    if system == RM:
        return start_ringmaster(ctx.rm_bin, watchers)
    if system == CI:
        return start_circus(watchers, check_delay=kw.get("check_delay"))
    if system == SV:
        return start_supervisor(watchers)
    raise ValueError(system)


# --------------------------------------------------------------------------
# Control clients: the same pyzmq DEALER code for Ringmaster and Circus;
# XML-RPC for supervisord (it has no other).


class ZmqClient:
    def __init__(self, endpoint, timeout=10.0):
        self.ctx = zmq.Context.instance()
        self.s = self.ctx.socket(zmq.DEALER)
        self.s.setsockopt(zmq.LINGER, 0)
        self.s.connect(endpoint)
        self.timeout_ms = int(timeout * 1000)

    def call(self, command, **props):
        mid = uuid.uuid4().hex
        self.s.send(json.dumps({"id": mid, "command": command, "properties": props}).encode())
        while True:
            if not self.s.poll(self.timeout_ms):
                raise TimeoutError(f"no reply to {command}")
            reply = json.loads(self.s.recv())
            if reply.get("id") == mid:
                return reply

    def close(self):
        self.s.close(0)


class SupervisorClient:
    def __init__(self, sock):
        from supervisor.xmlrpc import SupervisorTransport

        self.proxy = xmlrpc.client.ServerProxy(
            "http://127.0.0.1", transport=SupervisorTransport(None, None, "unix://" + sock)
        )

    def status(self):
        return self.proxy.supervisor.getAllProcessInfo()

    def state(self):
        return self.proxy.supervisor.getState()

    def close(self):
        pass


def client_for(d):
    return SupervisorClient(d.sock) if d.system == SV else ZmqClient(d.endpoint)


def status_once(c):
    if isinstance(c, SupervisorClient):
        r = c.status()
        assert isinstance(r, list)
    else:
        r = c.call("status")
        assert r.get("status") == "ok", r


def wait_control(d, timeout=30.0):
    """Until the daemon answers on its control channel (bounded)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if not d.proc.alive():
            raise RuntimeError(f"{d.system} exited: see {d.proc.out_path}")
        try:
            c = client_for(d)
            try:
                if isinstance(c, SupervisorClient):
                    c.state()
                else:
                    c.timeout_ms = 500
                    c.call("status")
                return
            finally:
                c.close()
        except Exception as e:  # not up yet
            last = e
            time.sleep(0.05)
    raise RuntimeError(f"{d.system} control channel not answering after {timeout}s: {last}")


def rtt_samples(d, n, budget=None):
    """n status round trips (fewer if `budget` seconds run out, at least 5)."""
    c = client_for(d)
    try:
        status_once(c)  # connect and warm up
        out = []
        t_end = time.monotonic() + budget if budget else None
        for _ in range(n):
            if t_end and len(out) >= 5 and time.monotonic() > t_end:
                break
            t = time.perf_counter_ns()
            status_once(c)
            out.append((time.perf_counter_ns() - t) / 1e6)
        return out
    finally:
        c.close()


def cli_status_argv(ctx, d):
    if d.system == RM:
        return [ctx.rm_bin, "--endpoint", d.endpoint, "status"]
    if d.system == CI:
        return [os.path.join(VBIN, "circusctl"), "--endpoint", d.endpoint, "status"]
    return [os.path.join(VBIN, "supervisorctl"), "-c", d.conf, "status"]


def cli_once(argv):
    t = time.perf_counter_ns()
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=30)
    ms = (time.perf_counter_ns() - t) / 1e6
    return ms, r.returncode, r.stdout.decode(errors="replace")


# --------------------------------------------------------------------------
# Measurements.


def rotated(items, k):
    k %= len(items)
    return items[k:] + items[:k]


def wait_children(d, comm, n, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not d.proc.alive():
            raise RuntimeError(f"{d.system} exited: see {d.proc.out_path}")
        if len(d.proc.children_named(comm)) >= n:
            return True
        time.sleep(0.1)
    raise RuntimeError(f"{d.system}: fewer than {n} '{comm}' children after {timeout}s")


def bench_idle_and_status(ctx, R):
    """1. RSS and CPU while idle (10 watchers x 10 sleep), the three daemons
    side by side; then 4. status round trips and CLI status on the same daemons."""
    q = ctx.quick
    window = 5.0 if q else 30.0
    reps = 1 if q else 2
    n_rtt = 200 if q else 1000
    n_cli = 5 if q else 20
    watchers = [{"name": f"w{i}", "argv": ["/bin/sleep", "3600"], "n": 10} for i in range(10)]
    for rep in range(reps):
        log(f"[1] idle: 10 watchers x 10 sleep, {window:.0f}s window, rep {rep + 1}/{reps} "
            "(the three daemons side by side)")
        ds = {}
        try:
            for s in rotated(SYSTEMS, rep):
                ds[s] = start_system(s, ctx, watchers)
            for s, d in ds.items():
                wait_children(d, "sleep", 100, 60)
                wait_control(d)
            time.sleep(1.0 if q else 2.0)  # let start-up work settle before the window
            c0 = {s: [cpu_ns(p) for p in d.pids()] for s, d in ds.items()}
            time.sleep(window)
            for s, d in ds.items():
                pids = d.pids()
                c1 = [cpu_ns(p) for p in pids]
                used = sum(cpu_delta(a, b) or 0 for a, b in zip(c0[s], c1))
                R.add("idle_cpu_pct", s, 100.0 * used / (window * 1e9))
                mem = [mem_kib(p) for p in pids]
                R.add("idle_rss_mib", s, sum(m[0] or 0 for m in mem) / 1024.0)
                R.add("idle_pss_mib", s, sum(m[1] or 0 for m in mem) / 1024.0)
                R.add("idle_uss_mib", s, sum(m[2] or 0 for m in mem) / 1024.0)
                if len(pids) > 1:
                    R.note(f"{s}: idle figures include {len(pids) - 1} helper process(es) (circusd-stats)")
            log(f"[4] status round trip ({n_rtt} in-process) and CLI status ({n_cli} runs)")
            for s in rotated(SYSTEMS, rep):
                R.extend("rtt_ms", s, rtt_samples(ds[s], n_rtt))
            for i in range(n_cli):
                for s in rotated(SYSTEMS, rep + i):
                    ms, code, out = cli_once(cli_status_argv(ctx, ds[s]))
                    if code != 0:
                        R.note(f"CLI status for {s} exited {code}: {out.strip()[:200]}")
                    R.add("cli_ms", s, ms)
        finally:
            for d in ds.values():
                d.stop()


def bench_spawn(ctx, R):
    """2. Time until 100 processes are alive, from launching the daemon, against
    a C fork+exec loop; plus the spread from the first exec to the 100th."""
    reps = 1 if ctx.quick else 5
    N = 100
    st = ctx.stamps
    entries = SYSTEMS + ["C fork+exec loop"]
    for rep in range(reps):
        log(f"[2] spawn {N}: rep {rep + 1}/{reps}")
        for s in rotated(entries, rep):
            st.drain()
            argv = [ctx.stamp, str(st.port)]
            t0 = now_ns()
            if s == "C fork+exec loop":
                p = Proc([ctx.spawn_loop, str(N)] + argv, "spawn_loop")
                got = st.wait(N, 60)
                for pid, _ in got:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                p.stop(timeout=10)
            else:
                d = start_system(s, ctx, [{"name": "spawn", "argv": argv, "n": N}])
                try:
                    got = st.wait(N, 60)
                finally:
                    d.stop()
            if len(got) < N:
                R.note(f"spawn {N}: {s} had only {len(got)} processes alive after 60 s")
                continue
            ns = [x[1] for x in got]
            R.add("spawn_total_ms", s, (max(ns) - t0) / 1e6)
            R.add("spawn_span_ms", s, (max(ns) - min(ns)) / 1e6)
            R.add("spawn_first_ms", s, (min(ns) - t0) / 1e6)


def respawn_samples(ctx, R, key, system, samples, **kw):
    st = ctx.stamps
    st.drain()
    argv = [ctx.stamp, str(st.port)]
    d = start_system(system, ctx, [{"name": "r", "argv": argv, "n": samples}], **kw)
    try:
        first = st.wait(samples, 60)
        if len(first) < samples:
            R.note(f"respawn: {key} started only {len(first)}/{samples} processes")
            return
        seen = {p for p, _ in first}
        # Every victim must have been up longer than Ringmaster's min_uptime
        # (1 s) and supervisord's startsecs (1 s), else it counts as a quick
        # failure and waits for a back-off.
        time.sleep(1.5)
        for pid, _ in first:
            t0 = now_ns()
            os.kill(pid, signal.SIGKILL)
            got = st.wait(1, 15)
            if not got:
                R.note(f"respawn: {key}: no replacement within 15 s")
                break
            npid, ns = got[0]
            if npid in seen:
                R.note(f"respawn: {key}: unexpected stamp from {npid}")
            seen.add(npid)
            R.add(key, system, (ns - t0) / 1e6)
            time.sleep(0.02)
    finally:
        d.stop()


def bench_respawn(ctx, R):
    """3. SIGKILL a child, time until its replacement has exec'd (the
    replacement's own clock reading, sent to us: no polling)."""
    samples = 10 if ctx.quick else 20
    # circusd's default check_delay (5 s from an ini file) makes each sample
    # last ~5 s, supervisord's ~1 s: fewer of them in --quick.
    variants = [
        (RM, {}, RM),
        (CI, {"samples": 2} if ctx.quick else {}, CI),
        (CI, {"check_delay": 0.1}, CI + " check_delay=0.1"),
        (SV, {"samples": 4} if ctx.quick else {}, SV),
    ]
    log(f"[3] respawn latency: {samples} samples each")
    for system, kw, label in variants:
        kw = dict(kw)
        n = kw.pop("samples", samples)
        if n != samples:
            R.note(f"respawn --quick: {label}: {n} samples only")
        respawn_samples(ctx, R, "respawn_ms:" + label, system, n, **kw)


def wait_file_end(path, timeout, poll=0.002):
    """Until the file ends with the writer's END line: (monotonic ns, size)."""
    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            size = -1
        if size != last and size >= 4:
            last = size
            with open(path, "rb") as f:
                f.seek(size - 4)
                if f.read(4) == b"END\n":
                    return now_ns(), size
        time.sleep(poll)
    return None, last


def count_lines(path, expected):
    good = bad = 0
    with open(path, "rb") as f:
        rest = b""
        while True:
            chunk = f.read(8 << 20)
            if not chunk:
                break
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            for ln in lines:
                if len(ln) == 99 and ln.startswith(b"line "):
                    good += 1
                elif ln != b"END":
                    bad += 1
    return good, bad


def bench_logs(ctx, R):
    """5. N x 100-byte lines captured to a file, against `writer | cat > file`."""
    N = 100_000 if ctx.quick else 1_000_000
    reps = 1 if ctx.quick else 3
    timeout = 60 if ctx.quick else 300
    st = ctx.stamps
    R.meta["log_lines"] = N
    entries = [RM, CI, SV, "cat > file"]
    for rep in range(reps):
        log(f"[5] log capture: {N} lines of 100 B, rep {rep + 1}/{reps}")
        for s in rotated(entries, rep):
            st.drain()
            d = None
            p = None
            out = os.path.join(tempfile.mkdtemp(prefix="log-", dir=RUN), "out.log")
            argv = [ctx.logwriter, str(N), str(st.port)]
            try:
                if s == "cat > file":
                    p = Proc(["/bin/sh", "-c", " ".join(argv) + f" | cat > {out}"], "cat", group_signal=True)
                else:
                    d = start_system(s, ctx, [{"name": "log", "argv": argv, "n": 1, "stdout": out}])
                got = st.wait(1, 30)
                if not got:
                    alive = (d.proc if d else p).alive()
                    R.note(f"log capture: {s}: the writer did not start"
                           + ("" if alive else " (the daemon exited: not available?)"))
                    R.add("log_s", s, None)
                    continue
                t_start = got[0][1]
                t_end, size = wait_file_end(out, timeout)
                if t_end is None:
                    good, bad = count_lines(out, N) if os.path.exists(out) else (0, 0)
                    R.note(f"log capture: {s}: not complete after {timeout}s ({good} lines written)")
                    R.add("log_lost", s, N - good)
                    continue
                good, bad = count_lines(out, N)
                R.add("log_s", s, (t_end - t_start) / 1e9)
                R.add("log_lost", s, N - good)
                if bad:
                    R.note(f"log capture: {s}: {bad} malformed lines")
            finally:
                if d:
                    d.stop()
                if p:
                    p.stop(timeout=10)
                shutil.rmtree(os.path.dirname(out), ignore_errors=True)


def http_get_ok(port, timeout=2.0):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"GET / HTTP/1.0\r\nHost: bench\r\n\r\n")
            data = b""
            while True:
                b = s.recv(4096)
                if not b:
                    break
                data += b
        return data.startswith(b"HTTP/1.") and b" 200 " in data.split(b"\r\n", 1)[0]
    except OSError:
        return False


def wait_http(port, proc, timeout=40.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            return False
        if http_get_ok(port):
            return True
        time.sleep(0.05)
    return False


def run_wrk(port, seconds):
    argv = ["wrk", "-t2", "-c50", f"-d{seconds}s", f"http://127.0.0.1:{port}/"]
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=seconds + 60)
    out = r.stdout.decode(errors="replace")
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errs = re.search(r"Socket errors:.*", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return (float(m.group(1)) if m else None), (errs.group(0) if errs else ""), (
        int(non2xx.group(1)) if non2xx else 0), out


SERVERS = {
    "gunicorn": {
        "self": lambda port: [os.path.join(VBIN, "gunicorn"), "--workers", "2", "--bind",
                              f"127.0.0.1:{port}", "--pythonpath", CONFIG, "pid_app:application"],
        # Ringmaster: the recipe (LISTEN_FDS); Circus: fd:// (Circus sets no LISTEN_FDS).
        RM: [os.path.join(VBIN, "gunicorn"), "--workers", "2", "--pythonpath", CONFIG,
             "pid_app:application"],
        CI: [os.path.join(VBIN, "gunicorn"), "--workers", "2", "--bind", "fd://$(circus.sockets.web)",
             "--pythonpath", CONFIG, "pid_app:application"],
    },
    "uvicorn": {
        "self": lambda port: [os.path.join(VBIN, "uvicorn"), "--workers", "2", "--host", "127.0.0.1",
                              "--port", str(port), "--app-dir", CONFIG, "--no-access-log",
                              "--log-level", "warning", "pid_app:app"],
        RM: [os.path.join(VBIN, "uvicorn"), "--workers", "2", "--fd", "$(circus.sockets.web)",
             "--app-dir", CONFIG, "--no-access-log", "--log-level", "warning", "pid_app:app"],
        CI: [os.path.join(VBIN, "uvicorn"), "--workers", "2", "--fd", "$(circus.sockets.web)",
             "--app-dir", CONFIG, "--no-access-log", "--log-level", "warning", "pid_app:app"],
    },
}


RM_NODELAY_OFF = "Ringmaster nodelay=false"


def bench_http(ctx, R):
    """6. wrk (2 threads, 50 connections) against gunicorn/uvicorn with 2
    workers: binding itself, on a Ringmaster-held socket, on a Circus-held one."""
    if not shutil.which("wrk"):
        R.note("HTTP: wrk is not installed (bench/run installs it with apt-get): skipped")
        return
    secs = 3 if ctx.quick else 10
    # Five repetitions: with three, the gunicorn ratio came out 1.171, 0.977
    # and 1.002 in three runs (wrk and two workers share two cores).
    reps = 1 if ctx.quick else 5
    if ctx.quick:
        R.note("HTTP --quick: Circus-held socket skipped, one 3 s run each, no warm-up")
    for rep in range(reps):
        for server in ("gunicorn", "uvicorn"):
            modes = ["self-bound", RM] + ([] if ctx.quick else [CI])
            if server == "uvicorn" and not ctx.quick:
                modes.append(RM_NODELAY_OFF)
            got = {}
            for mode in rotated(modes, rep):
                log(f"[6] HTTP {server} {mode}: wrk {secs}s, rep {rep + 1}/{reps}")
                port = free_port()
                d = p = None
                try:
                    if mode == "self-bound":
                        p = Proc(SERVERS[server]["self"](port), f"{server}-self",
                                 out=os.path.join(RUN, f"{server}-self.log"))
                        proc = p
                    elif mode in (RM, RM_NODELAY_OFF):
                        sock = {"port": port}
                        if mode == RM_NODELAY_OFF:
                            sock["nodelay"] = False
                        d = start_ringmaster(ctx.rm_bin, [{"name": "web", "argv": SERVERS[server][RM], "n": 1,
                                                           "socket": True}], sockets={"web": sock})
                        proc = d.proc
                    else:
                        d = start_circus([{"name": "web", "argv": SERVERS[server][CI], "n": 1,
                                           "socket": True}], sockets={"web": port})
                        proc = d.proc
                    if not wait_http(port, proc):
                        R.note(f"HTTP {server} {mode}: never answered")
                        continue
                    if not ctx.quick:
                        run_wrk(port, 1)  # warm-up
                    rps, errs, non2xx, out = run_wrk(port, secs)
                    if rps is None:
                        R.note(f"HTTP {server} {mode}: wrk failed: {out[-300:]}")
                        continue
                    if non2xx or "Socket errors" in errs:
                        R.note(f"HTTP {server} {mode}: {errs} non-2xx={non2xx}")
                    R.add(f"http_rps:{server}", mode, rps)
                    got[mode] = rps
                finally:
                    if d:
                        d.stop()
                    if p:
                        p.stop(timeout=30)
            # Ratios within one repetition (the machine's load drifts between them).
            for mode, rps in got.items():
                if mode != "self-bound" and got.get("self-bound"):
                    R.add(f"http_ratio:{server}", mode, rps / got["self-bound"])


# --------------------------------------------------------------------------
# Results and report.


class Results:
    def __init__(self):
        self.data = {}  # key -> system -> [values]
        self.notes = []
        self.meta = {}

    def add(self, key, system, value):
        self.data.setdefault(key, {}).setdefault(system, []).append(value)

    def extend(self, key, system, values):
        self.data.setdefault(key, {}).setdefault(system, []).extend(values)

    def note(self, text):
        if text not in self.notes:
            self.notes.append(text)
        log("  note: " + text)

    def med(self, key, system):
        return median(self.data.get(key, {}).get(system, []))

    def p95(self, key, system):
        return pctl(self.data.get(key, {}).get(system, []), 95)

    def n(self, key, system):
        return len([x for x in self.data.get(key, {}).get(system, []) if x is not None])


def fmt(v, unit="", digits=None):
    if v is None:
        return "–"
    if digits is None:
        a = abs(v)
        digits = 0 if a >= 100 else 1 if a >= 10 else 2 if a >= 1 else 3
    return f"{v:,.{digits}f}{unit}"


def ratio(v, ref):
    if v is None or ref is None or ref == 0:
        return ""
    r = v / ref
    return f" ({r:.2f}×)" if r < 10 else f" ({r:.0f}×)"


def machine(ctx):
    def run(argv):
        try:
            return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  timeout=30).stdout.decode().strip()
        except Exception as e:
            return f"? ({e})"

    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    rev = run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])
    dirty = run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"])
    pyv = run([os.path.join(VBIN, "python"), "-c",
               "import importlib.metadata as m;print(' '.join(f'{p}=={m.version(p)}' for p in "
               "['circus','supervisor','uvicorn','gunicorn','pyzmq','tornado']))"])
    return [
        ("date", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
        ("nproc", str(os.cpu_count())),
        ("CPU", cpu),
        ("memory", mem),
        ("kernel", platform.release()),
        ("Ringmaster", run([ctx.rm_bin, "--version"]) + f" (git {rev}{', modified tree' if dirty else ''})"),
        ("Python", platform.python_version()),
        ("Python packages", pyv),
        ("wrk", (run(["wrk", "--version"]).splitlines() or ["?"])[0] if shutil.which("wrk") else "not installed"),
        ("cc", (run(["cc", "--version"]).splitlines() or ["?"])[0]),
    ]


def report(ctx, R, elapsed):
    L = []
    mode = "quick" if ctx.quick else "full"
    L.append(f"Mode: `bench/run --{mode}`, run time {elapsed:.0f} s. Medians; in parentheses the ratio to "
             "Ringmaster (for a baseline row: Ringmaster's figure divided by the baseline).")
    L.append("")
    L.append("| machine | |")
    L.append("|---|---|")
    for k, v in machine(ctx):
        L.append(f"| {k} | {v} |")
    L.append("")

    def row3(title, key, unit, digits=None, systems=SYSTEMS):
        ref = R.med(key, RM)
        cells = [fmt(R.med(key, s), unit, digits) + (ratio(R.med(key, s), ref) if s != RM else "")
                 for s in systems]
        return f"| {title} | " + " | ".join(cells) + " |"

    L.append("### 1. Idle daemon: 10 watchers × 10 `sleep` processes")
    L.append("")
    L.append(f"| | {RM} | {CI} | {SV} |")
    L.append("|---|---|---|---|")
    L.append(row3("RSS (MiB)", "idle_rss_mib", "", 1))
    L.append(row3("PSS (MiB)", "idle_pss_mib", "", 1))
    L.append(row3("USS: private pages (MiB)", "idle_uss_mib", "", 1))
    L.append(row3("CPU (% of one core)", "idle_cpu_pct", "", 3))
    L.append("")
    window = "5 s" if ctx.quick else "30 s (2 repetitions)"
    L.append(f"Window {window}, the three daemons side by side, {'1' if ctx.quick else '2'} s after all 100 processes were up. "
             "CPU is the daemon's own (all threads, from /proc schedstat); circusd-stats does not run "
             "with Circus's defaults (it would be counted).")
    L.append("")

    L.append("### 2. Start 100 processes (`stamp`, which reports its own exec time)")
    L.append("")
    C = "C fork+exec loop"
    L.append(f"| | {RM} | {CI} | {SV} | {C} |")
    L.append("|---|---|---|---|---|")
    for title, key in (("launch → 100th alive (ms)", "spawn_total_ms"),
                       ("launch → 1st alive (ms)", "spawn_first_ms"),
                       ("1st → 100th alive (ms)", "spawn_span_ms")):
        ref = R.med(key, RM)
        c = R.med(key, C)
        L.append(f"| {title} | " + " | ".join(
            [fmt(R.med(key, RM))] + [fmt(R.med(key, s)) + ratio(R.med(key, s), ref) for s in (CI, SV)]
            + [fmt(c) + (f" (Ringmaster = {ref / c:.2f}×)" if c and ref else "")]) + " |")
    L.append("")
    L.append(f"{R.n('spawn_total_ms', RM)} repetition(s). 'launch' is just before the supervisor (or the "
             "C loop) is started, so it includes the daemon's own start-up (interpreter and imports for "
             "the Python daemons).")
    L.append("")

    L.append("### 3. Respawn: SIGKILL of a child → its replacement exec'd")
    L.append("")
    L.append("| | median (ms) | p95 (ms) | samples | ratio (median) |")
    L.append("|---|---|---|---|---|")
    ref = R.med("respawn_ms:" + RM, RM)
    for label in (RM, CI, CI + " check_delay=0.1", SV):
        k = "respawn_ms:" + label
        system = label.split(" check_delay")[0]
        m = R.med(k, system)
        L.append(f"| {label} | {fmt(m)} | {fmt(R.p95(k, system))} | {R.n(k, system)} | "
                 f"{ratio(m, ref).strip(' ()') if label != RM else ''} |")
    L.append("")
    L.append("circusd reads `check_delay` from its ini file with a default of 5 s; processes are "
             "replaced at that tick. Each victim had been up > 1.5 s (more than "
             "Ringmaster's min_uptime and supervisord's startsecs).")
    L.append("")

    L.append("### 4. Control: `status`")
    L.append("")
    L.append(f"| | {RM} | {CI} | {SV} |")
    L.append("|---|---|---|---|")
    L.append(row3("in-process round trip, median (ms)", "rtt_ms", "", 3))
    L.append("| in-process round trip, p95 (ms) | " + " | ".join(fmt(R.p95("rtt_ms", s), "", 3) for s in SYSTEMS) + " |")
    L.append(row3("CLI `status` wall time (ms)", "cli_ms", "", 1))
    L.append("")
    L.append("In-process: the same pyzmq DEALER loop for Ringmaster and circusd (10 watchers); supervisord "
             "has no ZeroMQ channel, so its row is XML-RPC `getAllProcessInfo` over its UNIX socket. CLI: "
             "`ringmaster status`, `circusctl status`, `supervisorctl status`, each a fresh process.")
    L.append("")

    N = R.meta.get("log_lines", 0)
    L.append(f"### 5. Log capture: {N:,} lines × 100 B to a file")
    L.append("")
    L.append(f"| | {RM} | {CI} | {SV} | `cat > file` |")
    L.append("|---|---|---|---|---|")
    ref = R.med("log_s", RM)
    cat = R.med("log_s", "cat > file")
    L.append("| time (s) | " + " | ".join(
        [fmt(ref)] + [fmt(R.med("log_s", s)) + ratio(R.med("log_s", s), ref) for s in (CI, SV)]
        + [fmt(cat) + (f" (Ringmaster = {ref / cat:.2f}×)" if ref and cat else "")]) + " |")
    L.append("| lines lost | " + " | ".join(fmt(R.med("log_lost", s), "", 0) for s in (RM, CI, SV, "cat > file")) + " |")
    L.append("")
    L.append("From the writer's first instruction to the file ending with its last line. The writer "
             "writes 64 KiB batches of whole lines as fast as the pipe takes them.")
    L.append("")

    L.append("### 6. HTTP requests/s (wrk, 2 threads, 50 connections, loopback)")
    L.append("")
    L.append(f"| | self-bound | {RM} socket | {CI} socket |")
    L.append("|---|---|---|---|")

    def cell(k, server, mode):
        v = R.med(k, mode)
        r = R.med(f"http_ratio:{server}", mode)
        return fmt(v, "", 0) + (f" ({r:.3f}× self)" if r else "")

    for server in ("gunicorn", "uvicorn"):
        k = f"http_rps:{server}"
        L.append(f"| {server}, 2 workers | {fmt(R.med(k, 'self-bound'), '', 0)} | {cell(k, server, RM)} | "
                 f"{cell(k, server, CI)} |")
    if R.med("http_rps:uvicorn", RM_NODELAY_OFF):
        L.append(f"| uvicorn, 2 workers, Ringmaster socket with `nodelay = false` | "
                 f"{fmt(R.med('http_rps:uvicorn', 'self-bound'), '', 0)} | "
                 f"{cell('http_rps:uvicorn', 'uvicorn', RM_NODELAY_OFF)} | |")
    L.append("")
    L.append("Medians of the runs; the ratio is the median of the ratios within each repetition (the "
             "machine's load drifts between them). Same server command in every column except how it gets "
             "the socket: `--bind HOST:PORT` / `--port`; under Ringmaster gunicorn uses LISTEN_FDS "
             "(config/gunicorn.toml) and uvicorn `--fd $(circus.sockets.web)`; under Circus `--bind fd://…` / "
             "`--fd …`. supervisord cannot hold a socket for an HTTP server. On 2 cores, wrk and the 2 workers "
             "share the CPU: expect a few % noise.")
    L.append("")
    L.append("uvicorn `--workers 2` binding itself hands its socket to the workers in a way that leaves "
             "TCP_NODELAY unset on accepted connections (asyncio only sets it on sockets it recognises as "
             "TCP), so every response waits ~40 ms for a delayed ACK; Circus's socket has the same problem. "
             "Ringmaster sets TCP_NODELAY on the listening socket (`nodelay = true` by default) and accepted "
             "connections inherit it. The last row turns that off to compare like with like.")
    L.append("")

    # Targets
    L.append("### Targets")
    L.append("")
    L.append("| target | measured | met |")
    L.append("|---|---|---|")

    def target(name, value_text, ok):
        L.append(f"| {name} | {value_text} | {'–' if ok is None else ('yes' if ok else '**no**')} |")

    a, b = R.med("idle_rss_mib", RM), R.med("idle_rss_mib", CI)
    target("daemon RSS ≤ 1/8 of circusd", f"{fmt(a)} vs {fmt(b)} MiB = 1/{b / a:.1f}" if a and b else "–",
           (a * 8 <= b) if a and b else None)
    a, b = R.med("idle_cpu_pct", RM), R.med("idle_cpu_pct", CI)
    target("idle CPU ≤ 1/10 of circusd", f"{fmt(a, '%', 3)} vs {fmt(b, '%', 3)}" if a is not None and b else "–",
           (a * 10 <= b) if a is not None and b else None)
    a, b = R.med("spawn_total_ms", RM), R.med("spawn_total_ms", C)
    target("spawn 100 ≤ 1.2× the C loop", f"{fmt(a)} vs {fmt(b)} ms = {a / b:.2f}×" if a and b else "–",
           (a <= 1.2 * b) if a and b else None)
    a = R.med("respawn_ms:" + RM, RM)
    target("respawn median ≤ 5 ms", f"{fmt(a)} ms" if a else "–", (a <= 5) if a else None)
    a = R.med("cli_ms", RM)
    target("CLI `status` ≤ 10 ms", f"{fmt(a)} ms" if a else "–", (a <= 10) if a else None)
    a, b = R.med("log_s", RM), R.med("log_s", "cat > file")
    target("log capture ≤ 1.3× cat", f"{fmt(a)} vs {fmt(b)} s = {a / b:.2f}×" if a and b else "–",
           (a <= 1.3 * b) if a and b else None)
    lost = R.med("log_lost", RM)
    target("log capture: no line lost", fmt(lost, "", 0) if lost is not None else "–",
           (lost == 0) if lost is not None else None)
    for server in ("gunicorn", "uvicorn"):
        a = R.med(f"http_ratio:{server}", RM)
        target(f"HTTP req/s ≥ 0.98× self-bound ({server})", f"{a:.3f}×" if a else "–",
               (a >= 0.98) if a else None)
    a = R.med("http_ratio:uvicorn", RM_NODELAY_OFF)
    if a:
        target("… uvicorn, like for like (`nodelay = false`)", f"{a:.3f}×", a >= 0.98)
    L.append("")
    if R.notes:
        L.append("Notes from this run:")
        L.append("")
        for n in R.notes:
            L.append(f"- {n}")
        L.append("")
    return "\n".join(L)


BEGIN = "<!-- bench:begin (generated by bench/run --full; edits inside are overwritten) -->"
END = "<!-- bench:end -->"


SCALE_BEGIN = "<!-- bench-scale:begin (generated by bench/run --scale or --full; edits inside are overwritten) -->"
SCALE_END = "<!-- bench-scale:end -->"


def scale_text(ctx, R, elapsed, mode):
    L = [f"Mode: `bench/run {mode}`, scale item {R.meta.get('item_seconds', {}).get('scale', elapsed):.0f} s. "
         "Medians; in parentheses the ratio to Ringmaster.", "", "| machine | |", "|---|---|"]
    L += [f"| {k} | {v} |" for k, v in machine(ctx)]
    L.append(f"| open files (hard limit) | {ctx.nofile:,} |")
    L.append(f"| load average (1 min) at start / end | {ctx.load0} / {os.getloadavg()[0]:.1f} |")
    L.append("")
    scale.report(R, L, ctx.quick)
    return "\n".join(L)


def write_docs(path, text, begin=BEGIN, end=END):
    block = f"{begin}\n{text}\n{end}"
    if os.path.exists(path):
        with open(path) as f:
            old = f.read()
        if begin in old and end in old:
            new = old[: old.index(begin)] + block + old[old.index(end) + len(end):]
        else:
            new = old.rstrip() + "\n\n" + block + "\n"
    else:
        new = "# Benchmarks\n\nGenerated by `bench/run --full`.\n\n" + block + "\n"
    with open(path, "w") as f:
        f.write(new)


# --------------------------------------------------------------------------


class Ctx:
    pass


def compile_helpers():
    os.makedirs(BIN, exist_ok=True)
    out = {}
    for name, static in (("stamp", True), ("spawn_loop", False), ("logwriter", False)):
        src = os.path.join(BENCH, f"{name}.c")
        dst = os.path.join(BIN, name)
        base = ["cc", "-O2", "-Wall", "-o", dst, src]
        # stamp is linked statically when the toolchain can, so its exec is
        # not dominated by the dynamic loader.
        r = subprocess.run(base + (["-static"] if static else []), capture_output=True)
        if r.returncode != 0 and static:
            r = subprocess.run(base, capture_output=True)
        if r.returncode != 0:
            sys.exit(f"cc failed for {src}:\n{r.stderr.decode()}")
        out[name] = dst
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="short windows, fewer samples, no 10,000-process test")
    g.add_argument("--full", action="store_true", help="every item at full size; writes docs/benchmarks.md")
    ap.add_argument("--scale", action="store_true",
                    help="only the scale item (up to 10,000 processes; with --quick up to 1,000, a few minutes)")
    ap.add_argument("--output", help="markdown file to write the results into (default: docs/benchmarks.md "
                    "for --full, bench/.work/results-quick.md for --quick)")
    ap.add_argument("--only", help="comma-separated items to run: idle,spawn,respawn,logs,http,scale")
    args = ap.parse_args()
    if not (args.quick or args.full or args.scale):
        ap.error("one of --quick, --full, --scale is required")
    if args.scale and args.only:
        ap.error("--scale is --only scale")
    if args.scale:
        args.only = "scale"

    if zmq is None:
        sys.exit("pyzmq is missing: run bench/run (it installs the virtualenv) or set BENCH_VENV")
    ctx = Ctx()
    ctx.quick = args.quick
    ctx.rm_bin = os.environ.get("RINGMASTER_BIN") or os.path.join(ROOT, "target", "release", "ringmaster")
    if not os.access(ctx.rm_bin, os.X_OK):
        sys.exit(f"no ringmaster binary at {ctx.rm_bin}: run `cargo build --release` or set RINGMASTER_BIN")
    for tool in ("circusd", "circusctl", "supervisord", "supervisorctl", "uvicorn", "gunicorn"):
        if not os.access(os.path.join(VBIN, tool), os.X_OK):
            sys.exit(f"{VBIN}/{tool} is missing: run bench/run, which installs the virtualenv")
    os.makedirs(WORK, exist_ok=True)
    shutil.rmtree(RUN, ignore_errors=True)
    os.makedirs(RUN)
    helpers = compile_helpers()
    ctx.stamp, ctx.spawn_loop, ctx.logwriter = helpers["stamp"], helpers["spawn_loop"], helpers["logwriter"]
    ctx.stamps = Stamps()
    # 10,000 processes need more descriptors than the usual soft limit of
    # 1,024, in every daemon (which inherit this one's limits).
    import resource

    # Two pipes per process (stdout, stderr) in every daemon: 10,000 processes
    # need more than 20,000; root may raise the hard limit too.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(hard, 65536),) * 2)
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ctx.nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    ctx.load0 = f"{os.getloadavg()[0]:.1f}"  # a shared machine: say how busy it was

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    items = {
        "idle": bench_idle_and_status,
        "spawn": bench_spawn,
        "respawn": bench_respawn,
        "logs": bench_logs,
        "http": bench_http,
        "scale": scale.bench_scale,
    }
    # --quick skips the scale item (bench/run --scale --quick is its short form).
    chosen = args.only.split(",") if args.only else [k for k in items if not (ctx.quick and k == "scale")]
    R = Results()
    t0 = time.monotonic()
    try:
        for name in chosen:
            t_item = time.monotonic()
            try:
                items[name](ctx, R)
            except KeyboardInterrupt:
                raise
            except Exception as e:
                R.note(f"{name}: failed: {type(e).__name__}: {e}")
            finally:
                cleanup_all()
                R.meta.setdefault("item_seconds", {})[name] = round(time.monotonic() - t_item, 1)
                log(f"  ({name}: {time.monotonic() - t_item:.1f} s)")
    except KeyboardInterrupt:
        log("interrupted: stopping every process this run started")
        cleanup_all()
        sys.exit(130)
    finally:
        cleanup_all()
    elapsed = time.monotonic() - t0
    mode = ("scale-" if args.scale else "") + ("quick" if ctx.quick else "full")
    flag = " ".join(f for f, on in (("--scale", args.scale), ("--quick", ctx.quick), ("--full", args.full)) if on)
    with open(os.path.join(WORK, f"results-{mode}.json"), "w") as f:
        json.dump({"data": R.data, "notes": R.notes, "meta": R.meta}, f, indent=1)
    docs = os.path.join(ROOT, "docs", "benchmarks.md")
    written = []
    ran_scale = any(k.startswith("scale_") for k in R.data)
    if ran_scale:
        png = os.path.join(WORK, "scale-quick.png") if ctx.quick else os.path.join(ROOT, "docs", "scale.png")
        if scale.plot(R, png, ctx.quick):
            written.append(png)
        stext = scale_text(ctx, R, elapsed, flag)
        sout = args.output or (os.path.join(WORK, f"results-{mode}.md") if ctx.quick else docs)
        if sout == docs or os.path.exists(sout) and SCALE_BEGIN in open(sout).read():
            write_docs(sout, stext, SCALE_BEGIN, SCALE_END)
        else:
            with open(sout, "w") as f:
                f.write(stext + "\n")
        written.append(sout)
        print(stext)
    if not args.scale:
        text = report(ctx, R, elapsed)
        out = args.output or (docs if args.full else os.path.join(WORK, f"results-{mode}.md"))
        if out == docs or os.path.exists(out) and BEGIN in open(out).read():
            write_docs(out, text)
        else:
            mode_ = "a" if out in written else "w"
            with open(out, mode_) as f:
                f.write(text + "\n")
        written.append(out)
        print(text)
    log(f"\nwritten to {', '.join(written)} (raw samples: {WORK}/results-{mode}.json); {elapsed:.0f} s")


if __name__ == "__main__":
    main()
