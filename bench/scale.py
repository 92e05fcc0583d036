"""Scale: up to 10,000 processes under Ringmaster, circusd and supervisord.

Run through bench/run (`--scale`, `--scale --quick`, or as part of `--full`).
Each system runs alone at each size (never side by side: 30,000 processes at
once would measure the machine, not the supervisor), sizes in increasing
order; a system that does not bring a size up within the time bound is not
tried at the larger sizes of that shape.

Every child is `stamp PORT <watcher>:<wid>`: it sends its own exec time and
its slot to the bench (no polling), then sleeps. So the bench knows, for
every killed pid, when its slot got a new process.

Safety: loopback only; every loop is bounded in count and time; the daemons
are started by bench.Proc (own session) and ended with their descendants,
by pid, when their size is done.
"""

import json
import os
import random
import signal
import socket
import time

import bench as B

RM, CI, SV = B.RM, B.CI, B.SV


def plan(quick):
    """(shape label, watchers, processes per watcher) in increasing size; the
    curve is the `× 10` shape, the 100 × n shape its own line."""
    if quick:
        return dict(
            sizes=[(10, 10), (100, 10), (10, 100)],
            start_timeout=60, storm_s=10, fanout_kills=10, tput_s=3, idle_s=3,
            n_rtt=50, n_cli=3, incr_n=200,
        )
    return dict(
        sizes=[(10, 10), (100, 10), (1000, 10), (100, 100)],
        start_timeout=240, storm_s=60, fanout_kills=20, tput_s=10, idle_s=10,
        n_rtt=100, n_cli=5, incr_n=1000,
    )


def storm_sizes(sizes):
    """The kill storm, fan-out and throughput run at the largest size of each shape."""
    big = {}
    for w, n in sizes:
        shape = "x10" if n == 10 else f"{w}x"
        if shape not in big or w * n > big[shape][0] * big[shape][1]:
            big[shape] = (w, n)
    return set(big.values())


class TaggedStamps:
    """The stamps of one run: slot -> (pid, ns), read without blocking."""

    def __init__(self, stamps):
        self.sock = stamps.sock
        self.port = stamps.port
        self.slots = {}

    def pump(self, timeout=0.0):
        """Read every datagram that is there (waiting at most `timeout` for the
        first); returns the (slot, pid, ns) read."""
        out = []
        if timeout > 0:
            self.sock.settimeout(timeout)
        else:
            self.sock.setblocking(False)
        try:
            while True:
                data = self.sock.recv(128)
                f = data.split()
                if len(f) < 3:
                    continue
                pid, ns, tag = int(f[0]), int(f[1]), f[2].decode()
                self.slots[tag] = (pid, ns)
                out.append((tag, pid, ns))
                self.sock.setblocking(False)
        except (BlockingIOError, socket.timeout):
            pass
        finally:
            self.sock.setblocking(True)
            self.sock.settimeout(None)
        return out

    def wait_all(self, n, timeout, alive):
        """Until n slots have a process (or timeout, or the daemon exits):
        (monotonic ns of the last first-stamp, slots seen)."""
        deadline = time.monotonic() + timeout
        last = None
        while len(self.slots) < n and time.monotonic() < deadline and alive():
            for tag, _, ns in self.pump(0.2):
                last = ns if last is None or ns > last else last
        return last, len(self.slots)


def watchers_for(system, stamp, port, W, N):
    wid = {RM: "$(circus.wid)", CI: "$(circus.wid)", SV: "%(process_num)d"}[system]
    # The children's output is discarded without a pipe where the supervisor
    # can (`stamp` writes nothing): two pipes per process would put 10,000
    # processes past a 20,000-descriptor limit before anything is measured.
    return [{"name": f"s{i}", "argv": [stamp, str(port), f"s{i}:{wid}"], "n": N,
             "extra": ["close_child_stdout = true", "close_child_stderr = true"],
             "circus_extra": ["close_child_stdout = True", "close_child_stderr = True"],
             "supervisor_extra": ["redirect_stderr = true", "stdout_logfile = NONE"]}
            for i in range(W)]


def start(system, ctx, watchers):
    if system == SV:
        # supervisord refuses to start under `minfds` (default 1024) descriptors
        # and opens 3 pipes per process; ask for what the hard limit allows.
        return B.start_supervisor(watchers, tag="sv-scale", minfds=ctx.nofile)
    return B.start_system(system, ctx, watchers)


def list_once(c, d, watcher):
    if isinstance(c, B.SupervisorClient):
        c.proxy.supervisor.getProcessInfo(f"{watcher}:{watcher}_0")
    else:
        r = c.call("list", name=watcher)
        assert r.get("status") == "ok", r


def rtts(d, n, budget, fn):
    c = B.client_for(d)
    if not isinstance(c, B.SupervisorClient):
        c.timeout_ms = 60_000
    try:
        fn(c)
        out = []
        t_end = time.monotonic() + budget
        for _ in range(n):
            if len(out) >= 5 and time.monotonic() > t_end:
                break
            t = time.perf_counter_ns()
            fn(c)
            out.append((time.perf_counter_ns() - t) / 1e6)
        return out
    finally:
        c.close()


def incr_latency(d, watcher, probe, n, budget):
    """`list` of watcher `probe` over and over while `incr` (waiting) adds `n`
    processes to `watcher`: the round trips (ms), and the incr's error if any.
    Bounded by `budget` seconds and 100,000 calls."""
    import threading

    done, err = threading.Event(), []

    def grow():
        c = B.client_for(d)
        c.timeout_ms = int(budget * 1000)
        try:
            r = c.call("incr", name=watcher, nb=n, waiting=True)
            if r.get("status") != "ok":
                err.append(r)
        except Exception as e:
            err.append(e)
        finally:
            c.close()
            done.set()

    t = threading.Thread(target=grow, daemon=True)
    t.start()
    c = B.client_for(d)
    c.timeout_ms = 60_000
    out = []
    t_end = time.monotonic() + budget
    try:
        while not done.is_set() and time.monotonic() < t_end and len(out) < 100_000:
            t0 = time.perf_counter_ns()
            list_once(c, d, probe)
            out.append((time.perf_counter_ns() - t0) / 1e6)
    finally:
        c.close()
    t.join(timeout=budget)
    return out, err


def throughput(d, watchers, clients, seconds):
    """`list` of one watcher (supervisord: getProcessInfo of one process)
    from `clients` forked client processes for `seconds`: calls per second."""
    import zmq

    kids = []
    for k in range(clients):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the client: its own zmq context, ends with os._exit
            code = 1
            try:
                os.close(r)
                done = 0
                if d.system == SV:
                    c = B.SupervisorClient(d.sock)
                else:
                    c = B.ZmqClient.__new__(B.ZmqClient)
                    c.ctx = zmq.Context()
                    c.s = c.ctx.socket(zmq.DEALER)
                    c.s.setsockopt(zmq.LINGER, 0)
                    c.s.connect(d.endpoint)
                    c.timeout_ms = 30_000
                t_end = time.monotonic() + seconds
                i = k
                while time.monotonic() < t_end:
                    list_once(c, d, watchers[i % len(watchers)]["name"])
                    done += 1
                    i += 7
                os.write(w, str(done).encode())
                code = 0
            finally:
                os._exit(code)
        os.close(w)
        kids.append((pid, r))
    total, failed = 0, 0
    for pid, r in kids:
        data = b""
        deadline = time.monotonic() + seconds + 60
        while time.monotonic() < deadline:
            chunk = os.read(r, 64)
            if not chunk:
                break
            data += chunk
        os.close(r)
        _, st = os.waitpid(pid, 0)
        if st != 0 or not data:
            failed += 1
        else:
            total += int(data)
    return total / seconds, failed


def fanout(d, ts, kills, subscribers=100):
    """`subscribers` SUB sockets on the daemon's pubsub; `kills` processes
    killed 50 ms apart; per (victim, subscriber): kill -> its `reap` event."""
    import zmq

    ctx = zmq.Context()
    subs = []
    try:
        pub = _pubsub_endpoint(d)
        for _ in range(subscribers):
            s = ctx.socket(zmq.SUB)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.RCVHWM, 100_000)
            s.setsockopt(zmq.SUBSCRIBE, b"watcher.")
            s.connect(pub)
            subs.append(s)
        time.sleep(1.0)  # zmq subscriptions propagate asynchronously
        poller = zmq.Poller()
        for s in subs:
            poller.register(s, zmq.POLLIN)
        ts.pump()
        victims = {}
        slots = list(ts.slots.items())
        random.Random(7).shuffle(slots)
        for tag, (pid, _) in slots[:kills]:
            victims[pid] = time.monotonic_ns()
            os.kill(pid, signal.SIGKILL)
            _drain_subs(poller, subs, victims, 0.05)
        lat = _drain_subs(poller, subs, victims, 15.0, want=kills * subscribers)
        return lat, kills * subscribers, set(victims)
    finally:
        for s in subs:
            s.close(0)
        ctx.term()


_got = {}


def _drain_subs(poller, subs, victims, seconds, want=None):
    """Reads events for `seconds` (or until `want` deliveries); returns every
    kill -> reap latency (ms) delivered so far."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if want is not None and len(_got) >= want:
            break
        ev = dict(poller.poll(max(1, int((deadline - time.monotonic()) * 1000))))
        now = time.monotonic_ns()
        for i, s in enumerate(subs):
            if s not in ev:
                continue
            while True:
                try:
                    topic, body = s.recv_multipart(flags=1)  # NOBLOCK
                except Exception:
                    break
                if not topic.endswith(b".reap"):
                    continue
                try:
                    pid = int(json.loads(body).get("process_pid"))
                except (ValueError, TypeError):
                    continue
                if pid in victims:
                    _got.setdefault((pid, i), (now - victims[pid]) / 1e6)
    return list(_got.values())


def _pubsub_endpoint(d):
    with open(d.conf) as f:
        for line in f:
            if line.startswith("pubsub_endpoint"):
                return line.split("=", 1)[1].strip().strip('"')
    raise RuntimeError("no pubsub_endpoint in " + d.conf)


def stamp_procs(stamp, port):
    """{tag: [pid, ...]} of the live `stamp PORT TAG` processes of this run
    (by executable path and port: nobody else's)."""
    out = {}
    want = [os.fsencode(stamp), str(port).encode()]
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            with open(f"/proc/{d}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
        except OSError:
            continue
        if len(argv) >= 3 and argv[:2] == want:
            out.setdefault(argv[2].decode(), []).append(int(d))
    return out


def sweep(stamp, port):
    """SIGKILL what a stopped daemon left of this run's processes (a daemon
    stopped mid-start can fork after the bench listed its children)."""
    left = [p for ps in stamp_procs(stamp, port).values() for p in ps]
    for p in left:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return len(left)


def kill_storm(ts, rate, seconds, alive, min_up=2.0, grace=20.0):
    """`rate` random SIGKILLs per second for `seconds`, each to a slot whose
    process has been up for `min_up` s and is not already being replaced.
    Returns (latencies ms, kills, missed slots)."""
    rng = random.Random(11)
    pending = {}  # slot -> (old pid, kill ns)
    lat = []
    kills = 0
    period = 1.0 / rate
    t0 = time.monotonic()
    n_max = int(rate * seconds)

    def absorb():
        for tag, pid, ns in ts.pump():
            p = pending.get(tag)
            if p and pid != p[0]:
                lat.append((ns - p[1]) / 1e6)
                del pending[tag]

    tags = list(ts.slots)
    while kills < n_max and time.monotonic() - t0 < seconds + 5 and alive():
        target = t0 + kills * period
        dt = target - time.monotonic()
        if dt > 0:
            time.sleep(dt)
        absorb()
        now = time.monotonic_ns()
        for _ in range(50):  # a few tries for an eligible slot
            tag = tags[rng.randrange(len(tags))]
            pid, ns = ts.slots[tag]
            if tag not in pending and now - ns >= min_up * 1e9:
                break
        else:
            continue
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
        pending[tag] = (pid, time.monotonic_ns())
        kills += 1
    deadline = time.monotonic() + grace
    while pending and time.monotonic() < deadline:
        ts.pump(0.2)
        absorb()
    return lat, kills, pending


def one(ctx, R, P, system, W, N, heavy):
    key = f"{W}x{N}"
    total = W * N
    ctx.stamps.drain()
    ts = TaggedStamps(ctx.stamps)
    watchers = watchers_for(system, ctx.stamp, ts.port, W, N)
    B.log(f"[7] scale {W} watchers x {N} = {total} processes under {system}")
    t0 = B.now_ns()
    d = start(system, ctx, watchers)
    try:
        last, seen = ts.wait_all(total, P["start_timeout"], d.proc.alive)
        if seen < total:
            why = "exited" if not d.proc.alive() else f"only {seen:,}/{total:,} running after {P['start_timeout']} s"
            R.note(f"scale {W}×{N}: {system} {why} (see its log); not tried at larger sizes of this shape")
            R.add(f"scale_fail:{key}", system, seen)
            return False
        R.add(f"scale_start_s:{key}", system, (last - t0) / 1e9)
        R.add(f"scale_start_cpu_s:{key}", system, sum(B.cpu_ns(p)[0] or 0 for p in d.pids()) / 1e9)
        B.wait_control(d, timeout=60)
        time.sleep(2.0)
        pids = d.pids()
        c0 = [B.cpu_ns(p) for p in pids]
        time.sleep(P["idle_s"])
        c1 = [B.cpu_ns(p) for p in pids]
        R.add(f"scale_cpu_pct:{key}", system,
              100.0 * sum(B.cpu_delta(a, b) or 0 for a, b in zip(c0, c1)) / (P["idle_s"] * 1e9))
        mem = [B.mem_kib(p) for p in pids]
        for i, k in enumerate(("rss", "pss", "uss")):
            R.add(f"scale_{k}_mib:{key}", system, sum(m[i] or 0 for m in mem) / 1024.0)
        R.extend(f"scale_status_ms:{key}", system, rtts(d, P["n_rtt"], 20, B.status_once))
        mid = watchers[len(watchers) // 2]["name"]
        R.extend(f"scale_list_ms:{key}", system, rtts(d, P["n_rtt"], 20, lambda c: list_once(c, d, mid)))
        for _ in range(P["n_cli"]):
            ms, code, out = B.cli_once(B.cli_status_argv(ctx, d))
            if code != 0:
                R.note(f"scale {W}×{N}: CLI status of {system} exited {code}: {out.strip()[:160]}")
            R.add(f"scale_cli_ms:{key}", system, ms)
        if heavy:
            if system != SV:
                _got.clear()
                lat, want, victims = fanout(d, ts, P["fanout_kills"])
                R.extend(f"scale_fanout_ms:{key}", system, lat)
                R.add(f"scale_fanout_lost:{key}", system, want - len(lat))
                # The victims' replacements, before the storm (bounded).
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and any(p in victims for p, _ in ts.slots.values()):
                    ts.pump(0.2)
                time.sleep(2.5)  # every slot up for min_up before the storm picks it
                ts.pump()
            rate, secs = 100, P["storm_s"]
            B.log(f"    kill storm: {rate}/s for {secs} s")
            lat, kills, pending = kill_storm(ts, rate, secs, d.proc.alive)
            # A slot with no stamp yet may still have a new process (its
            # datagram lost, or still in exec): look for one, by its tag.
            live = stamp_procs(ctx.stamp, ts.port)
            missed = [t for t, (old, _) in pending.items() if not [p for p in live.get(t, []) if p != old]]
            if len(pending) > len(missed):
                R.note(f"scale {W}×{N}: {system}: {len(pending) - len(missed)} replacement(s) running "
                       "but not stamped within 20 s of the storm's end")
            if missed:
                R.note(f"scale {W}×{N}: {system}: slots with no process 20 s after the storm: "
                       + ", ".join(sorted(missed)[:10]))
            R.extend(f"scale_storm_ms:{key}", system, lat)
            R.add(f"scale_storm_kills:{key}", system, kills)
            R.add(f"scale_storm_missed:{key}", system, len(missed))
            B.log(f"    throughput: 20 clients for {P['tput_s']} s")
            rps, failed = throughput(d, watchers, 20, P["tput_s"])
            R.add(f"scale_tput:{key}", system, rps)
            if failed:
                R.note(f"scale {W}×{N}: {failed} of 20 clients of {system} failed")
        if system != SV:
            # Last: the added processes change what the figures above measure.
            lat, err = incr_latency(d, watchers[0]["name"], mid, P["incr_n"], P["start_timeout"])
            if err:
                R.note(f"scale {W}×{N}: incr {P['incr_n']} of {system}: {err[0]}")
            elif lat:
                R.add(f"scale_incr_list_max_ms:{key}", system, max(lat))
        return True
    finally:
        d.stop()
        n = sweep(ctx.stamp, ts.port)
        if n:
            R.note(f"scale {W}×{N}: {n} process(es) of {system} outlived it and were killed by the bench")


def bench_scale(ctx, R):
    P = plan(ctx.quick)
    R.meta["scale_plan"] = {k: v for k, v in P.items()}
    heavy = storm_sizes(P["sizes"])
    for system in B.SYSTEMS:
        failed_shapes = set()
        for W, N in P["sizes"]:
            shape = "x10" if N == 10 else f"{W}x"
            if shape in failed_shapes:
                R.add(f"scale_fail:{W}x{N}", system, None)
                continue
            try:
                ok = one(ctx, R, P, system, W, N, (W, N) in heavy)
            except Exception as e:
                R.note(f"scale {W}×{N}: {system}: {type(e).__name__}: {e}")
                ok = False
            B.cleanup_all()
            if not ok:
                failed_shapes.add(shape)


# --------------------------------------------------------------------------
# Report and plot.


def report(R, L, quick):
    P = plan(quick)
    sizes = P["sizes"]
    fmt, ratio = B.fmt, B.ratio
    L.append("### 7. Scale: up to " + f"{max(w * n for w, n in sizes):,} processes")
    L.append("")
    if not any(k.startswith("scale_") for k in R.data):
        L.append("Not run (`bench/run --scale`, or `--full`).")
        L.append("")
        return

    def cell(key, s, digits=None, ref_sys=RM):
        v = R.med(key, s)
        if v is None:
            got = R.data.get("scale_fail:" + key.split(":", 1)[1], {}).get(s)
            if got:
                return "failed" if got[0] is None else f"failed ({got[0]:,} up)"
            return "–"
        ref = R.med(key, ref_sys)
        return fmt(v, "", digits) + (ratio(v, ref) if s != ref_sys else "")

    L.append("Start, memory and control at each size (each system alone; failed = not all processes "
             f"running within {P['start_timeout']} s, the larger sizes of that shape not tried):")
    L.append("")
    L.append("| watchers × processes | figure | " + " | ".join(B.SYSTEMS) + " |")
    L.append("|---|---|" + "---|" * len(B.SYSTEMS))
    rows = [
        ("launch → all running (s)", "scale_start_s", 2),
        ("daemon CPU during start (s)", "scale_start_cpu_s", 2),
        ("RSS (MiB)", "scale_rss_mib", 1),
        ("PSS (MiB)", "scale_pss_mib", 1),
        ("USS (MiB)", "scale_uss_mib", 1),
        (f"idle CPU over {P['idle_s']} s (% of a core)", "scale_cpu_pct", 3),
        ("`status` round trip, median (ms)", "scale_status_ms", 2),
        ("`list` of one watcher, median (ms)", "scale_list_ms", 2),
        ("CLI `status` wall time (ms)", "scale_cli_ms", 0),
        (f"slowest `list` of one watcher while `incr` adds {P['incr_n']:,} to another (ms)",
         "scale_incr_list_max_ms", 1),
    ]
    for w, n in sizes:
        for title, k, dg in rows:
            L.append(f"| {w:,} × {n} | {title} | " + " | ".join(cell(f"{k}:{w}x{n}", s, dg) for s in B.SYSTEMS) + " |")
    L.append("")
    heavy = sorted(storm_sizes(sizes), key=lambda x: (x[1], x[0]))
    L.append(f"Under load at the largest sizes: a kill storm (100 random SIGKILLs/s for {P['storm_s']} s, each "
             "victim up ≥ 2 s; latency = SIGKILL → the slot's new process exec'd), event fan-out to 100 pubsub "
             f"subscribers ({P['fanout_kills']} kills 50 ms apart; latency = SIGKILL → each subscriber has the "
             f"`reap` event), and 20 concurrent clients calling `list` of one watcher for {P['tput_s']} s "
             "(supervisord: XML-RPC `getProcessInfo` of one process):")
    L.append("")
    L.append("| watchers × processes | figure | " + " | ".join(B.SYSTEMS) + " |")
    L.append("|---|---|" + "---|" * len(B.SYSTEMS))
    for w, n in heavy:
        key = f"{w}x{n}"

        def storm(s, q):
            v = R.data.get(f"scale_storm_ms:{key}", {}).get(s)
            return fmt(B.pctl(v, q) if q != 50 else B.median(v), "", 1) if v else cell(f"scale_storm_ms:{key}", s)

        def plain(k, s, dg=0):
            v = R.med(f"{k}:{key}", s)
            return fmt(v, "", dg) if v is not None else ("n/a" if s == SV and "fanout" in k else "–")

        L.append(f"| {w:,} × {n} | respawn under storm, median (ms) | " + " | ".join(storm(s, 50) for s in B.SYSTEMS) + " |")
        L.append(f"| {w:,} × {n} | respawn under storm, p99 (ms) | " + " | ".join(storm(s, 99) for s in B.SYSTEMS) + " |")
        L.append(f"| {w:,} × {n} | kills / slots not respawned | " + " | ".join(
            (f"{int(R.med(f'scale_storm_kills:{key}', s)):,} / {int(R.med(f'scale_storm_missed:{key}', s))}"
             if R.med(f"scale_storm_kills:{key}", s) is not None else "–") for s in B.SYSTEMS) + " |")

        def fan(s, q):
            v = R.data.get(f"scale_fanout_ms:{key}", {}).get(s)
            if s == SV:
                return "n/a"
            return fmt(B.pctl(v, q) if q != 50 else B.median(v), "", 1) if v else "–"

        L.append(f"| {w:,} × {n} | event to 100 subscribers, median (ms) | " + " | ".join(fan(s, 50) for s in B.SYSTEMS) + " |")
        L.append(f"| {w:,} × {n} | event to 100 subscribers, p99 (ms) | " + " | ".join(fan(s, 99) for s in B.SYSTEMS) + " |")
        L.append(f"| {w:,} × {n} | events not delivered | " + " | ".join(plain("scale_fanout_lost", s) for s in B.SYSTEMS) + " |")
        L.append(f"| {w:,} × {n} | control calls/s, 20 clients | " + " | ".join(plain("scale_tput", s) for s in B.SYSTEMS) + " |")
    L.append("")
    L.append("circusd replaces processes and reaps them at its `check_delay` tick (5 s by default), which "
             "its respawn and `reap` event latencies show; supervisord has no pubsub channel (n/a). The "
             "bench raises its soft RLIMIT_NOFILE to the hard limit (65,536 if it may), which every daemon "
             "inherits; supervisord gets `minfds` at that limit. The children's output is discarded "
             "without a pipe (`close_child_stdout`/`close_child_stderr` for Ringmaster and circusd; "
             "supervisord cannot, it gets `redirect_stderr` and `stdout_logfile = NONE`): with two pipes "
             "per process, 10,000 processes need more than 20,000 descriptors.")
    L.append("")
    mc = marginal(R)
    if mc:
        L.append("Marginal memory, from the sizes above: " + mc)
        L.append("")
    L.append("![cost against size](scale.png)")
    L.append("")


def marginal(R):
    """Per process: (100×100 − 100×10) / 9,000; per watcher: (1000×10 − 100×10
    − 9,000 × per process) / 900. RSS and USS, KiB."""
    out = []
    for k in ("rss", "uss"):
        a = R.med(f"scale_{k}_mib:100x10", RM)
        b = R.med(f"scale_{k}_mib:100x100", RM)
        c = R.med(f"scale_{k}_mib:1000x10", RM)
        if a is None or b is None:
            continue
        per_p = (b - a) * 1024 / 9000
        txt = f"{k.upper()} {per_p:.1f} KiB per process"
        if c is not None:
            per_w = ((c - a) * 1024 - 9000 * per_p) / 900
            txt += f", {per_w:.1f} KiB per watcher"
        out.append(txt)
    return "; ".join(out) + " (Ringmaster)." if out else ""


def plot(R, path, quick):
    """Time to start, RSS and `status` round trip against the number of
    processes, for the `W × 10` sizes (lines) and the deeper watchers
    (dashed; 100 × 100 in the full plan)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        B.log("  matplotlib missing: no plot (bench/run installs it)")
        return False
    sizes = plan(quick)["sizes"]
    figs = [("scale_start_s", "launch → all running (s)"), ("scale_rss_mib", "daemon RSS (MiB)"),
            ("scale_status_ms", "`status` round trip, median (ms)")]
    colors = {RM: "tab:red", CI: "tab:blue", SV: "tab:green"}
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    for ax, (k, title) in zip(axes, figs):
        for s in B.SYSTEMS:
            deep = [(w, n) for w, n in sizes if n != 10]
            for shape, style in (("x10", "-o"), ("deep", "--s")):
                pts = [(w * n, R.med(f"{k}:{w}x{n}", s)) for w, n in sizes
                       if (n == 10) == (shape == "x10")]
                pts = [(x, y) for x, y in pts if y is not None]
                if not pts:
                    continue
                label = f"{s}, W × 10" if shape == "x10" else f"{s}, {deep[0][0]} × n"
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style, color=colors[s], label=label,
                        alpha=1.0 if shape == "x10" else 0.6)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("supervised processes")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Cost against size (bench/run --scale; failed sizes are absent)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True
