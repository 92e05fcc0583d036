#!/usr/bin/env python3
"""Zero-downtime benchmark: wrk against uvicorn and gunicorn while the
supervisor restarts them (`restart web`) or reloads a changed config
(`reload-config` / `circusctl reloadconfig`), beside a steady run, for
Ringmaster and circusd 0.19 holding the socket. Reports requests, socket
errors, non-2xx responses and the maximum latency.

Servers: uvicorn as is (Ringmaster's default readiness: ready at once);
`uvicorn-ready`, the same with `ready.type = "log"` under Ringmaster;
`uvicorn-graceful`, with the worker-side fix config/uvicorn_graceful.py (and
the log readiness under Ringmaster); gunicorn.

Each scenario runs twice: with keep-alive (wrk's default) and with
`Connection: close` (one connection per request). A server that closes its
idle keep-alive connections when it stops makes a keep-alive client see
resets whatever the supervisor does; the `close` runs show the supervisor's
own share.

Usage: bench/run-rolling [SECONDS]   (default 6 s per run; writes a markdown
table to stdout and to bench/.work/rolling.md). Needs what bench/run installs.
"""
import os
import re
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as B  # noqa: E402

SECS = int(sys.argv[1]) if len(sys.argv) > 1 else 6
# Extra watcher lines for Ringmaster (e.g. a readiness rule), from ROLLING_EXTRA.
EXTRA = [l for l in os.environ.get("ROLLING_EXTRA", "").split(";") if l]
ONLY = os.environ.get("ROLLING_ONLY", "")
RM_BIN = os.environ.get("RINGMASTER_BIN") or os.path.join(B.ROOT, "target", "release", "ringmaster")

SERVERS = {
    # One single-process uvicorn per slot, 2 slots: the supervisor manages each worker.
    "uvicorn": ([os.path.join(B.VBIN, "uvicorn"), "--fd", "$(circus.sockets.web)", "--app-dir", B.CONFIG,
                 "--no-access-log", "--log-level", "warning", "pid_app:app"], 2),
    # The same with a readiness rule (Ringmaster only): ready when uvicorn logs
    # "Uvicorn running on" (needs uvicorn's log level at info).
    "uvicorn-ready": ([os.path.join(B.VBIN, "uvicorn"), "--fd", "$(circus.sockets.web)", "--app-dir", B.CONFIG,
                       "--no-access-log", "--log-level", "info", "pid_app:app"], 2),
    # The same plus the worker-side fix (config/uvicorn_graceful.py): an
    # accepted connection is served, not closed, when the worker stops.
    "uvicorn-graceful": ([os.path.join(B.VBIN, "uvicorn"), "--fd", "$(circus.sockets.web)", "--app-dir", B.CONFIG,
                          "--http", "uvicorn_graceful:GracefulH11Protocol",
                          "--no-access-log", "--log-level", "info", "pid_app:app"], 2),
    # gunicorn's own master with 2 workers; the supervisor manages the master.
    "gunicorn": ([os.path.join(B.VBIN, "gunicorn"), "--workers", "2", "--bind", "fd://$(circus.sockets.web)",
                  "--pythonpath", B.CONFIG, "pid_app:application"], 1),
}


def wrk(port, seconds, close, out):
    argv = ["wrk", "-t2", "-c50", f"-d{seconds}s", "--latency", f"http://127.0.0.1:{port}/"]
    if close:
        argv[1:1] = ["-H", "Connection: close"]
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=seconds + 60)
    out["text"] = r.stdout.decode(errors="replace")


def parse(text):
    def num(pat, default=0):
        m = re.search(pat, text)
        return int(m.group(1)) if m else default
    reqs = num(r"(\d+) requests in")
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    connect, read, write, tmo = (int(x) for x in errs.groups()) if errs else (0, 0, 0, 0)
    non2xx = num(r"Non-2xx or 3xx responses: (\d+)")
    lat = re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", text)
    return {"requests": reqs, "connect": connect, "read": read, "write": write, "timeout": tmo,
            "non2xx": non2xx, "max_latency": lat.group(1) if lat else "?"}


def trigger(system, d, action):
    if action == "steady":
        return "-"
    t0 = time.monotonic()
    if action == "reload":
        # A changed watcher: graceful_timeout 5 -> 6, then reload the file.
        with open(d.conf) as f:
            text = f.read()
        with open(d.conf, "w") as f:
            f.write(text.replace("graceful_timeout = 5", "graceful_timeout = 6"))
    if system == B.RM:
        cmd = [RM_BIN, "--endpoint", d.endpoint, "--timeout", "60"]
        cmd += ["restart", "web", "--waiting"] if action == "restart" else ["reload-config"]
    else:
        cmd = [os.path.join(B.VBIN, "circusctl"), "--endpoint", d.endpoint, "--timeout", "60"]
        cmd += ["restart", "web", "--waiting"] if action == "restart" else ["reloadconfig", "--waiting"]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=90)
    took = time.monotonic() - t0
    return f"{took:.2f} s" + ("" if r.returncode == 0 else f" (rc {r.returncode}: {r.stdout.decode()[:80]})")


def run(server, system, action, close):
    argv, n = SERVERS[server]
    port = B.free_port()
    if system == B.RM and server == "gunicorn":
        argv = [a for a in argv if a not in ("--bind", "fd://$(circus.sockets.web)")]  # LISTEN_FDS
    extra = list(EXTRA)
    if server in ("uvicorn-ready", "uvicorn-graceful") and system == B.RM:
        extra += ["", "[watchers.web.ready]", 'type = "log"', 'pattern = "Uvicorn running on"',
                  'start_timeout = "30s"']
    w = [{"name": "web", "argv": argv, "n": n, "socket": True, "extra": extra}]
    d = B.start_ringmaster(RM_BIN, w, sockets={"web": port}) if system == B.RM else \
        B.start_circus(w, sockets={"web": port}, check_delay=1)
    try:
        if not B.wait_http(port, d.proc):
            return None
        if system == B.CI:
            d.wait_circus_active(30)
        out = {}
        t = threading.Thread(target=wrk, args=(port, SECS, close, out))
        t.start()
        time.sleep(SECS / 3)
        took = trigger(system, d, action)
        t.join()
        res = parse(out.get("text", ""))
        res["took"] = took
        return res
    finally:
        d.stop()


def main():
    os.makedirs(B.RUN, exist_ok=True)
    rows = []
    for close in (True, False):
        for server in ("uvicorn", "uvicorn-ready", "uvicorn-graceful", "gunicorn"):
            for system in (B.RM, B.CI):
                if server == "uvicorn-ready" and system != B.RM:
                    continue  # Circus has no readiness rule
                for action in ("steady", "restart", "reload"):
                    key = f"{server}:{system}:{'close' if close else 'keep-alive'}"
                    if ONLY and not any(o in key for o in ONLY.split(",")):
                        continue
                    B.log(f"rolling: {server} {system} {action} {'close' if close else 'keep-alive'}")
                    r = run(server, system, action, close)
                    rows.append((close, server, system, action, r))
    lines = [
        f"wrk, 2 threads, 50 connections, {SECS} s per run on loopback; the action starts {SECS / 3:.0f} s in. "
        "Errors are wrk's socket errors (connect/read/write/timeout) plus non-2xx responses.",
        "",
        "| connections | server | supervisor | action | requests | connect | read | write | timeout | non-2xx | max latency | action took |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for close, server, system, action, r in rows:
        mode = "close" if close else "keep-alive"
        if r is None:
            lines.append(f"| {mode} | {server} | {system} | {action} | never answered | | | | | | | |")
            continue
        lines.append(f"| {mode} | {server} | {system} | {action} | {r['requests']:,} | {r['connect']} | {r['read']} | "
                     f"{r['write']} | {r['timeout']} | {r['non2xx']} | {r['max_latency']} | {r['took']} |")
    text = "\n".join(lines) + "\n"
    print(text)
    with open(os.path.join(B.WORK, "rolling.md"), "w") as f:
        f.write(text)
    B.cleanup_all()


if __name__ == "__main__":
    try:
        main()
    finally:
        B.cleanup_all()
