#!/usr/bin/env python3
"""Where the daemon's memory goes: RSS, PSS and USS of `ringmaster run` with
W watchers x N `sleep` processes, and its mappings grouped by what they are.

    python3 bench/mem.py [--bin target/release/ringmaster] [--sizes 10x10,100x10,100x100,1000x10]

Each size runs alone; the marginal costs per process and per watcher come
from the differences between sizes (see docs/benchmarks.md). Only loopback;
the daemon is started in its own session and ended (with its children) by
pid; every wait is bounded.
"""

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    s = f.read()
                if int(s[s.rindex(")") + 2:].split()[1]) == pid:
                    out.append(int(d))
            except (OSError, ValueError):
                pass
    return out


def rollup(pid):
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            k, _, v = line.partition(":")
            if v.strip().endswith("kB"):
                out[k] = int(v.split()[0])
    return out["Rss"], out["Pss"], out.get("Private_Clean", 0) + out.get("Private_Dirty", 0)


def mappings(pid, binary):
    """Rss (KiB) per kind of mapping."""
    groups = {}
    cur = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            first = line.split()[0]
            if "-" in first and not first.endswith(":"):
                parts = line.split()
                path = parts[5] if len(parts) > 5 else ""
                perms = parts[1]
                if path == os.path.realpath(binary) or path.endswith("/ringmaster"):
                    cur = "binary " + ("text" if "x" in perms else "data" if "w" in perms else "rodata")
                elif "libc" in path or "ld-linux" in path or path.endswith(".so") or ".so." in path:
                    cur = "shared libraries"
                elif path == "[heap]":
                    cur = "heap (brk)"
                elif path.startswith("[stack"):
                    cur = "main stack"
                elif path.startswith("["):
                    cur = path
                elif path:
                    cur = "other files"
                else:
                    cur = "anonymous (malloc arenas, thread stacks)"
            elif first == "Rss:" and cur:
                groups[cur] = groups.get(cur, 0) + int(line.split()[1])
    return groups


def run(bin_, W, N, settle):
    d = tempfile.mkdtemp(prefix="rm-mem-")
    conf = os.path.join(d, "rm.toml")
    lines = ["[ringmaster]", f'endpoint = "tcp://127.0.0.1:{free_port()}"',
             f'pubsub_endpoint = "tcp://127.0.0.1:{free_port()}"', ""]
    for i in range(W):
        lines += [f"[watchers.w{i}]", 'cmd = "/bin/sleep 3600"', f"numprocesses = {N}", ""]
    with open(conf, "w") as f:
        f.write("\n".join(lines))
    p = subprocess.Popen([bin_, "run", conf], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=open(os.path.join(d, "daemon.log"), "wb"), start_new_session=True,
                         env=dict(os.environ, XDG_RUNTIME_DIR=d))
    try:
        deadline = time.monotonic() + 300
        while len(children(p.pid)) < W * N:
            if time.monotonic() > deadline or p.poll() is not None:
                raise RuntimeError(f"{W}x{N}: only {len(children(p.pid))} children (see {d}/daemon.log)")
            time.sleep(0.2)
        time.sleep(settle)
        r = rollup(p.pid)
        g = mappings(p.pid, bin_)
        threads = len(os.listdir(f"/proc/{p.pid}/task"))
        return r, g, threads
    finally:
        kids = children(p.pid)
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)
        for k in kids:  # any left (they were the daemon's, so same session)
            try:
                os.kill(k, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(d, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "ringmaster"))
    ap.add_argument("--sizes", default="10x10,10x100,100x10")
    ap.add_argument("--settle", type=float, default=3.0)
    a = ap.parse_args()
    res = {}
    for s in a.sizes.split(","):
        W, N = map(int, s.split("x"))
        (rss, pss, uss), g, th = run(a.bin, W, N, a.settle)
        res[(W, N)] = (rss, pss, uss)
        print(f"{W:>5} x {N:<4} RSS {rss / 1024:7.2f} MiB  PSS {pss / 1024:7.2f} MiB  USS {uss / 1024:7.2f} MiB"
              f"  threads {th}", flush=True)
        for k, v in sorted(g.items(), key=lambda kv: -kv[1]):
            if v >= 64:
                print(f"      {k:<42} {v / 1024:7.2f} MiB")
    # Per process: two sizes with the same watchers; per watcher: two sizes
    # with the same processes per watcher, less their processes' share.
    for i, name in enumerate(("RSS", "PSS", "USS")):
        per_p = next(((res[b][i] - res[a][i]) / ((b[1] - a[1]) * a[0])
                      for a in res for b in res if a[0] == b[0] and b[1] > a[1]), None)
        if per_p is None:
            continue
        per_w = next((((res[b][i] - res[a][i]) - per_p * (b[0] - a[0]) * a[1]) / (b[0] - a[0])
                      for a in res for b in res if a[1] == b[1] and b[0] > a[0]), None)
        print(f"{name}: {per_p:.2f} KiB per process" + (f", {per_w:.2f} KiB per watcher" if per_w is not None else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
