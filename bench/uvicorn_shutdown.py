#!/usr/bin/env python3
"""Does a SIGTERM'd uvicorn lose requests under load, with no supervisor at all?

Hypothesis: asyncio accepts connections in batches (up to `backlog` per event
loop tick); on SIGTERM uvicorn closes its listener and calls
`connection.shutdown()` on every open connection, and the HTTP protocol closes
at once each connection that has no request cycle yet. A connection whose
request is already in its socket's receive buffer but not yet read is closed
with unread data, so Linux sends a RST and the client sees a read error,
whoever sent the signal.

This script binds a listening socket itself (127.0.0.1:0, backlog 2048),
hands it to single-process uvicorns with `--fd N` (what a supervisor does) and
runs wrk (-t2 -c50, `Connection: close`, loopback) while doing, by hand:

  baseline     two uvicorns on the socket, no action;
  sigterm      SIGTERM one of the two (no replacement), wait for it to exit;
  rolling      for each old uvicorn: start a new one on the same fd, wait until
               its pid answers a request, SIGTERM the old one, wait for it to exit;
  hup          `uvicorn --workers 2 --port P` binding itself, SIGHUP to its
               master (uvicorn's own rolling worker restart), wait until both
               worker pids have changed;
  hup-none     the same multi-worker uvicorn, no action.

With --mitigate, also the `sigterm`, `rolling` and `hup` variants with
`--http uvicorn_graceful:GracefulH11Protocol` (config/uvicorn_graceful.py),
which serves an accepted-but-unread connection's request instead of closing it.

With --evidence, runs one extra `sigterm` with strace attached to the victim
(accept4/recvfrom/close/shutdown) and tcpdump on lo (RST segments only) and
saves the raw captures and a short summary under /tmp/uvicorn_shutdown_evidence/.

Usage:
  bench/.work/venv/bin/python bench/uvicorn_shutdown.py [--reps 3] [--secs 5] [--at 2]
      [--variants baseline,sigterm,rolling,hup,hup-none] [--mitigate] [--evidence]

Safety: loopback only; wrk is bounded by -d and a subprocess timeout; every
poll loop is bounded in count and time; every process started gets its own
session and is ended by pid / process group (never by name), on exit too.
"""
import argparse
import atexit
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
VBIN = os.path.join(os.environ.get("BENCH_VENV", os.path.join(HERE, ".work", "venv")), "bin")
UVICORN = os.path.join(VBIN, "uvicorn")
CONFIG = os.path.join(ROOT, "config")
COMMON = ["--app-dir", CONFIG, "--no-access-log", "--log-level", "warning"]
GRACEFUL = ["--http", "uvicorn_graceful:GracefulH11Protocol"]
EVIDENCE_DIR = "/tmp/uvicorn_shutdown_evidence"

STARTED = []  # every Popen this script started (each in its own session)


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def spawn(argv, **kw):
    env = dict(os.environ)
    env["PYTHONPATH"] = CONFIG + os.pathsep + env.get("PYTHONPATH", "")  # for uvicorn_graceful
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True, env=env, **kw)
    STARTED.append(p)
    return p


def stop(p, sig=signal.SIGTERM, timeout=30.0):
    """Signal one process we started (by pid) and wait for it, SIGKILL its group on timeout."""
    if p.poll() is None:
        try:
            os.kill(p.pid, sig)
        except ProcessLookupError:
            pass
    try:
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait(timeout=10)


def cleanup():
    for p in STARTED:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
    deadline = time.monotonic() + 15
    for p in STARTED:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(timeout=5)
    STARTED.clear()


def get_pid(port, timeout=1.0):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=timeout) as r:
            return int(r.read().decode().split()[-1])
    except (OSError, ValueError):
        return None


def wait_pids(port, want, deadline_s=20.0, max_requests=4000):
    """Poll until every pid in `want` has answered; bounded in time and count."""
    seen = set()
    deadline = time.monotonic() + deadline_s
    n = 0
    while time.monotonic() < deadline and n < max_requests and not want <= seen:
        n += 1
        p = get_pid(port)
        if p is not None:
            seen.add(p)
        else:
            time.sleep(0.02)
    return want <= seen


def children(pid):
    """uvicorn --workers children of `pid` (multiprocessing spawn_main, not the resource tracker)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = [int(x) for x in f.read().split()]
    except OSError:
        return set()
    out = set()
    for k in kids:
        try:
            with open(f"/proc/{k}/cmdline", "rb") as f:
                if b"spawn_main" in f.read():
                    out.add(k)
        except OSError:
            pass
    return out


def start_load(port, args):
    """wrk in a thread; returns once the action is due (`args.at` s in)."""
    out = {}
    t = threading.Thread(target=wrk, args=(port, args.secs, out))
    t.start()
    time.sleep(args.at)
    return t, out


def wrk(port, secs, out):
    argv = ["wrk", "-H", "Connection: close", "-t2", "-c50", f"-d{secs}s", "--latency", f"http://127.0.0.1:{port}/"]
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=secs + 30)
    out["text"] = r.stdout.decode(errors="replace")


def parse(text):
    m = re.search(r"(\d+) requests in", text)
    e = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    n2 = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    lat = re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", text)
    c, r, w, t = (int(x) for x in e.groups()) if e else (0, 0, 0, 0)
    return {"requests": int(m.group(1)) if m else 0, "connect": c, "read": r, "write": w, "timeout": t,
            "non2xx": int(n2.group(1)) if n2 else 0, "max_latency": lat.group(1) if lat else "?"}


def listen_socket():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(2048)
    return s


def fd_worker(fd, extra):
    return spawn([UVICORN, "--fd", str(fd)] + COMMON + extra + ["pid_app:app"], pass_fds=(fd,))


def run_fd(action, args, extra=(), evidence=False, info=None):
    """Two `uvicorn --fd` on a socket this script holds; `action` under wrk load."""
    extra = list(extra)
    sock = listen_socket()
    port, fd = sock.getsockname()[1], sock.fileno()
    if info is not None:
        info["port"] = port
    procs = [fd_worker(fd, extra), fd_worker(fd, extra)]
    tracers = []
    try:
        if not wait_pids(port, {p.pid for p in procs}):
            return None, "workers never answered"
        if evidence:
            tracers = start_tracers(procs[0].pid, port)
        t, out = start_load(port, args)
        t0 = time.monotonic()
        note = ""
        if action == "sigterm":
            stop(procs[0])
        elif action == "rolling":
            for i in range(2):
                new = fd_worker(fd, extra)
                procs.append(new)
                if not wait_pids(port, {new.pid}, deadline_s=15):
                    note = "replacement never answered"
                    break
                stop(procs[i])
        took = time.monotonic() - t0
        t.join()
        if evidence:
            time.sleep(0.3)
            for tr in tracers:
                stop(tr, signal.SIGINT, timeout=10)
        if action != "baseline" and took > args.secs - args.at:
            note += f" action outlasted wrk ({took:.1f} s)"
        return parse(out.get("text", "")), (f"{took:.2f} s" if action != "baseline" else "-") + note
    finally:
        for tr in tracers:
            stop(tr, signal.SIGINT, timeout=10)
        for p in procs:
            stop(p, timeout=15)
        sock.close()


def run_multi(action, args, extra=()):
    """`uvicorn --workers 2 --port P` binding itself; SIGHUP to its master under wrk load."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    master = spawn([UVICORN, "--workers", "2", "--host", "127.0.0.1", "--port", str(port)] + COMMON + list(extra)
                   + ["pid_app:app"])
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(children(master.pid)) < 2:
            time.sleep(0.05)
        old = children(master.pid)
        if not wait_pids(port, old):
            return None, "workers never answered"
        t, out = start_load(port, args)
        t0 = time.monotonic()
        note = ""
        if action == "hup":
            os.kill(master.pid, signal.SIGHUP)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                now = children(master.pid)
                if len(now) == 2 and not (now & old):
                    break
                time.sleep(0.02)
            else:
                note = " workers not replaced in 30 s"
        took = time.monotonic() - t0
        t.join()
        if action == "hup" and took > args.secs - args.at:
            note += f" action outlasted wrk ({took:.1f} s)"
        return parse(out.get("text", "")), (f"{took:.2f} s" if action == "hup" else "-") + note
    finally:
        stop(master, timeout=30)


# ---------------------------------------------------------------- evidence

def start_tracers(pid, port):
    os.makedirs(EVIDENCE_DIR, exist_ok=True)
    st = spawn(["strace", "-f", "-tt", "-e", "trace=accept4,recvfrom,read,close,shutdown", "-e", "signal=SIGTERM",
                "-o", os.path.join(EVIDENCE_DIR, "strace.txt"), "-p", str(pid)],
               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    td = spawn(["tcpdump", "-i", "lo", "-nn", "-tt", "-l", "-c", "5000",
                f"tcp port {port} and (tcp[tcpflags] & tcp-rst != 0)"],
               stdout=open(os.path.join(EVIDENCE_DIR, "tcpdump_rst.txt"), "w"), stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # let strace attach and tcpdump open lo
    with open(os.path.join(EVIDENCE_DIR, "meta.txt"), "w") as f:
        f.write(f"victim pid {pid}, server port {port}\n")
    return [st, td]


def summarize_evidence(port, res):
    st = open(os.path.join(EVIDENCE_DIR, "strace.txt")).read().splitlines()
    td = open(os.path.join(EVIDENCE_DIR, "tcpdump_rst.txt")).read().splitlines()
    acc = re.compile(r"accept4\(\d+, \{sa_family=AF_INET, sin_port=htons\((\d+)\).*\) = (\d+)$")
    rcv = re.compile(r"recvfrom\((\d+),")
    cls = re.compile(r"close\((\d+)\)\s+= 0")
    open_fds = {}  # fd -> [client port, read?, accept line]
    sig_at = None
    unread = []
    for i, line in enumerate(st):
        if "--- SIGTERM" in line and sig_at is None:
            sig_at = i
        m = acc.search(line)
        if m:
            open_fds[int(m.group(2))] = [int(m.group(1)), False, line]
            continue
        m = rcv.search(line)
        if m and int(m.group(1)) in open_fds:
            open_fds[int(m.group(1))][1] = True
            continue
        m = cls.search(line)
        if m and int(m.group(1)) in open_fds:
            cport, was_read, aline = open_fds.pop(int(m.group(1)))
            if not was_read:
                unread.append((cport, aline, line))
    rst_from_server = [l for l in td if f"127.0.0.1.{port} >" in l]
    rst_ports = set()
    for l in rst_from_server:
        m = re.search(rf"127\.0\.0\.1\.{port} > 127\.0\.0\.1\.(\d+):", l)
        if m:
            rst_ports.add(int(m.group(1)))
    matched = [u for u in unread if u[0] in rst_ports]
    lines = [
        f"wrk: {res}",
        f"strace: SIGTERM at line {sig_at}; {len(unread)} fds accepted and closed with no recvfrom;"
        f" tcpdump: {len(rst_from_server)} RSTs from server port {port} (of {len(td)} RSTs);"
        f" {len(matched)} unread-closed client ports got a RST",
        "-- SIGTERM:",
    ] + ([st[sig_at]] if sig_at is not None else [])
    for cport, aline, cline in matched[:3]:
        lines += [f"-- client port {cport}:", aline, cline]
        lines += [l for l in rst_from_server if f".{cport}:" in l][:1]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(EVIDENCE_DIR, "summary.txt"), "w") as f:
        f.write(text)
    return text


def evidence(args):
    info = {}
    res, took = run_fd("sigterm", args, evidence=True, info=info)
    print(summarize_evidence(info["port"], res))


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--secs", type=int, default=5)
    ap.add_argument("--at", type=float, default=2.0)
    ap.add_argument("--variants", default="baseline,sigterm,rolling,hup,hup-none")
    ap.add_argument("--mitigate", action="store_true")
    ap.add_argument("--evidence", action="store_true")
    ap.add_argument("--evidence-only", action="store_true")
    args = ap.parse_args()
    for tool in ["wrk"] + (["strace", "tcpdump"] if args.evidence or args.evidence_only else []):
        if subprocess.run(["which", tool], stdout=subprocess.DEVNULL).returncode:
            sys.exit(f"{tool} is not installed")
    if args.evidence_only:
        evidence(args)
        return
    variants = [(v, ()) for v in args.variants.split(",") if v]
    if args.mitigate:
        variants += [(v, GRACEFUL) for v in ("sigterm", "rolling", "hup")]
    rows = []
    for rep in range(args.reps):
        for v, extra in variants:
            name = v + (" + graceful proto" if extra else "")
            log(f"uvicorn_shutdown: {name}, rep {rep + 1}/{args.reps}")
            if v.startswith("hup"):
                r, took = run_multi("hup" if v == "hup" else "none", args, extra)
            else:
                r, took = run_fd(v, args, extra)
            rows.append((name, rep + 1, r, took))
    lines = [f"uvicorn alone: wrk -t2 -c50 -H 'Connection: close', {args.secs} s, action at {args.at:g} s, loopback.",
             "", "| variant | rep | requests | connect | read | write | timeout | non-2xx | max latency | action took |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, rep, r, took in rows:
        if r is None:
            lines.append(f"| {name} | {rep} | failed: {took} | | | | | | | |")
        else:
            lines.append(f"| {name} | {rep} | {r['requests']:,} | {r['connect']} | {r['read']} | {r['write']} | "
                         f"{r['timeout']} | {r['non2xx']} | {r['max_latency']} | {took} |")
    print("\n".join(lines))
    if args.evidence:
        evidence(args)


if __name__ == "__main__":
    atexit.register(cleanup)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        main()
    finally:
        cleanup()
