//! Randomized chaos against the real daemon: several clients send random
//! command sequences concurrently while a killer SIGKILLs the daemon's
//! children and some children crash on their own. Then every watcher gets a
//! final deterministic command (the later command wins, so these define the
//! end state) and the test checks what must hold once the daemon settles:
//! every request answered, the process tree equal to what the daemon
//! reports, exact process counts, no zombies, fds and RSS back at baseline.
//!
//! Seeded: `RINGMASTER_CHAOS_SEED` (else random; printed). Budget:
//! `RINGMASTER_CHAOS_SECONDS` (storm length, default 12) and
//! `RINGMASTER_CHAOS_KILLS` (SIGKILLs to reach, default 200); the storm ends
//! when both are reached, or at 3× the seconds. `bench/soak` runs it long.

mod common;
#[path = "common/procinfo.rs"]
mod procinfo;
#[path = "common/chaos_storm.rs"]
mod storm;

use common::*;
use ringmaster::control::client::Client;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use storm::*;

const CLIENTS: usize = 4;
const SETTLE: Duration = Duration::from_secs(30);
/// RSS growth allowed over the whole run (allocator slack, log history).
const RSS_SLACK_KIB: u64 = 8 * 1024;

/// Quick failures back off at most 300 ms and never give up, so SIGKILLs of
/// young processes cannot leave a watcher `failed`.
const RESTART: &str =
    "[watchers.NAME.restart]\nmax_retry = -1\ninitial_delay = \"50ms\"\nmax_delay = \"300ms\"\n";

fn config(grandchildren: bool) -> String {
    let mut c = String::new();
    for (name, n) in BASE {
        let cmd = if *name == "flaky" {
            // Exits 1 after 0-0.6 s: a crash loop the restart policy absorbs.
            "cmd = \"sleep 0.$(($$ % 7)); exit 1\"\nshell = true\n".to_string()
        } else {
            "cmd = \"sleep 1000\"\n".to_string()
        };
        c += &format!("[watchers.{name}]\n{cmd}numprocesses = {n}\ngraceful_timeout = 2\n");
        c += &RESTART.replace("NAME", name);
    }
    if grandchildren {
        // Each process leaves a grandchild in its own session, which records
        // its pid and start time; stopping the watcher must end it too.
        c += "[watchers.gc]\nshell = true\nnumprocesses = 2\ngraceful_timeout = 2\n";
        // Each grandchild records its pid and start time (field 22 of its
        // stat): over a long soak the pid alone may be reused by another process.
        c += "cmd = \"setsid sh -c 'read a b c d e f g h i j k l m n o p q r s t u v rest < /proc/$$/stat; echo $$ $v >> {dir}/gc.pids; exec sleep 1000' & exec sleep 1000\"\n";
        c += &RESTART.replace("NAME", "gc");
    }
    c
}

/// The state each watcher must reach: active with N processes, or stopped.
type Target = BTreeMap<String, Option<u32>>;

async fn apply(c: &mut Client, target: &Target, stats: &Stats) {
    for (name, t) in target {
        let mut cmds = Vec::new();
        if let Some(n) = t {
            cmds.push((
                "set",
                json!({"name": name, "options": {"numprocesses": n}, "waiting": true}),
            ));
            cmds.push(("start", json!({"name": name, "waiting": true})));
        } else {
            cmds.push(("stop", json!({"name": name, "waiting": true})));
        }
        for (cmd, p) in cmds {
            stats.note(name, format!("final: {cmd} {p}"));
            let r = c
                .call(cmd, props(p.clone()))
                .await
                .unwrap_or_else(|e| panic!("final {cmd} {p}: no reply: {e}"));
            assert!(
                r["status"] != "error" || r["errno"] == 6,
                "final {cmd} {p} refused: {r}"
            );
        }
    }
}

/// Sends `pre` on `c` without waiting for its reply, then the final commands
/// on the same connection: the daemon receives `pre` first, so the final
/// commands must win. (The reply to `pre` is skipped by `Client::call`; these
/// requests are not in the sent/replied counts.)
async fn race_then_apply(c: &mut Client, pre: (&str, Value), target: &Target, stats: &Stats) {
    let (cmd, p) = pre;
    let name = p["name"].as_str().unwrap_or("?").to_string();
    stats.note(&name, format!("final race: {cmd} {p} (reply not awaited)"));
    let id = ringmaster::control::client::random_hex_id();
    let body = json!({"command": cmd, "properties": p, "id": id}).to_string();
    c.send_raw(body.into_bytes())
        .await
        .unwrap_or_else(|e| panic!("send {cmd}: {e}"));
    apply(c, target, stats).await;
}

/// A command racing the final one on a base watcher.
fn racing_command(rng: &mut fastrand::Rng, name: &str) -> (&'static str, Value) {
    let waiting = rng.bool();
    match rng.u32(0..7) {
        0 => ("stop", json!({"name": name, "waiting": waiting})),
        1 => ("restart", json!({"name": name, "waiting": waiting})),
        2 => ("reload", json!({"name": name, "waiting": waiting})),
        3 => ("start", json!({"name": name, "waiting": waiting})),
        4 => ("incr", json!({"name": name, "nb": 2, "waiting": waiting})),
        5 => ("decr", json!({"name": name, "waiting": waiting})),
        _ => (
            "set",
            json!({"name": name, "options": {"numprocesses": rng.u32(0..5)}, "waiting": waiting}),
        ),
    }
}

/// A reply, or an error reply standing for the missing one.
async fn call(c: &mut Client, cmd: &str, p: Value) -> Value {
    c.call(cmd, props(p))
        .await
        .unwrap_or_else(|e| json!({"status": "error", "reason": e.to_string()}))
}

/// Every invariant that must hold once the daemon settled on `target`.
async fn violations(c: &mut Client, daemon: i32, target: &Target) -> Vec<String> {
    let mut v = Vec::new();
    let listed = call(c, "list", json!({})).await;
    let names: Vec<String> = target.keys().cloned().collect();
    if listed["watchers"] != json!(names) {
        v.push(format!(
            "watchers: expected {names:?}, listed {}",
            listed["watchers"]
        ));
    }
    let mut owner: BTreeMap<i32, String> = BTreeMap::new();
    for (name, t) in target {
        let pids: Vec<i32> = call(c, "list", json!({"name": name})).await["pids"]
            .as_array()
            .map(|a| a.iter().filter_map(|p| p.as_i64().map(|p| p as i32)).collect())
            .unwrap_or_default();
        let status = call(c, "status", json!({"name": name})).await["status"].clone();
        let want_n = t.unwrap_or(0) as usize;
        let want_state = if t.is_some() { "active" } else { "stopped" };
        if status != want_state || pids.len() != want_n {
            v.push(format!(
                "watcher {name}: expected {want_state} with {want_n} processes, seen {status} with pids {pids:?}"
            ));
        }
        if let Some(n) = t {
            let np = call(c, "numprocesses", json!({"name": name})).await["numprocesses"].clone();
            if np != json!(n) {
                v.push(format!("watcher {name}: numprocesses {np}, expected {n}"));
            }
        }
        for p in pids {
            if let Some(other) = owner.insert(p, name.clone()) {
                v.push(format!("pid {p} listed by both {other} and {name}"));
            }
        }
    }
    let tree = procinfo::descendants(daemon);
    for (pid, (p, top)) in &tree {
        if p.ppid == daemon && p.state == 'Z' {
            v.push(format!("zombie child {pid}"));
        } else if !owner.contains_key(top) {
            v.push(format!(
                "descendant {pid} ({}) under direct child {top} belongs to no listed slot",
                procinfo::cmdline(*pid)
            ));
        }
    }
    for (pid, name) in &owner {
        if !tree
            .get(pid)
            .is_some_and(|(p, _)| p.ppid == daemon && p.state != 'Z')
        {
            v.push(format!(
                "{name} lists pid {pid}, which is not a live child of the daemon"
            ));
        }
    }
    v
}

/// Polls (no event says "everything settled") until no violation remains.
async fn settle(c: &mut Client, d: &mut Daemon, target: &Target, what: &str, ctx: &dyn Fn() -> String) {
    let daemon = d.pid();
    let deadline = Instant::now() + SETTLE;
    loop {
        let v = violations(c, daemon, target).await;
        if v.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "{what}: not settled after {SETTLE:?}; target {target:?}\nviolations:\n  {}\n{}\n{}",
                v.join("\n  "),
                ctx(),
                log_about(d, &v)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The daemon's log events about the pids and watchers a violation names.
fn log_about(d: &mut Daemon, violations: &[String]) -> String {
    let mut pids = std::collections::BTreeSet::new();
    for v in violations {
        for w in v.split(|c: char| !c.is_ascii_digit()) {
            if let Ok(p) = w.parse::<i64>() {
                if p > 300 {
                    pids.insert(p);
                }
            }
        }
    }
    let lines: Vec<String> = d
        .drain()
        .iter()
        .filter(|e| e["pid"].as_i64().is_some_and(|p| pids.contains(&p)))
        .map(|e| e.to_string())
        .collect();
    format!("daemon log about pids {pids:?}:\n  {}", lines.join("\n  "))
}

/// On a failure, ends every process still under the daemon (they are ours)
/// before the harness stops the daemon itself.
struct Reap(i32);

impl Drop for Reap {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for pid in procinfo::descendants(self.0).into_keys() {
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

fn run(grandchildren: bool) {
    let seed = procinfo::seed_from_env("RINGMASTER_CHAOS_SEED");
    let budget = Budget {
        seconds: procinfo::env_u64("RINGMASTER_CHAOS_SECONDS", 12),
        kills: procinfo::env_u64("RINGMASTER_CHAOS_KILLS", 200),
        start: Instant::now(),
    };
    eprintln!(
        "chaos: RINGMASTER_CHAOS_SEED={seed} seconds={} kills={} grandchildren={grandchildren}",
        budget.seconds, budget.kills
    );
    let mut d = Daemon::start(&config(grandchildren));
    d.wait_msg("control channel ready", None, secs(10));
    let daemon = d.pid();
    let _reap = Reap(daemon);
    let ep = endpoint(&d);
    let stats = Arc::new(Stats::default());
    let gc_file = d.path("gc.pids");
    let ctx = {
        let stats = stats.clone();
        move || {
            format!(
                "seed {seed} (rerun with RINGMASTER_CHAOS_SEED={seed})\nrecent commands per watcher:\n{}\ncounts: {}",
                stats
                    .recent
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|(w, q)| format!("  {w}:\n    {}", q.iter().cloned().collect::<Vec<_>>().join("\n    ")))
                    .collect::<Vec<_>>()
                    .join("\n"),
                stats.summary()
            )
        }
    };
    let mut initial: Target = BASE.iter().map(|(n, k)| (n.to_string(), Some(*k))).collect();
    // The baseline is taken with `flaky` stopped: its process count (and so
    // the daemon's pipe fds) changes all the time while it runs.
    initial.insert("flaky".into(), None);
    if grandchildren {
        initial.insert("gc".into(), Some(2));
    }
    let (fds0, rss0) = rt().block_on(async {
        let mut c = Client::connect(&ep, CALL_TIMEOUT).await.expect("connect");
        apply(&mut c, &initial, &stats).await;
        settle(&mut c, &mut d, &initial, "start-up", &ctx).await;
        (fds(daemon).len(), procinfo::rss_kib(daemon))
    });
    let _ = common::call(&d, "start", json!({"name": "flaky"}));

    let stop = Arc::new(AtomicBool::new(false));
    let mut threads: Vec<_> = (0..CLIENTS)
        .map(|i| {
            client_thread(
                i,
                seed.wrapping_add(i as u64 + 1),
                ep.clone(),
                stats.clone(),
                stop.clone(),
            )
        })
        .collect();
    threads.push(killer_thread(
        seed,
        ep.clone(),
        daemon,
        stats.clone(),
        stop.clone(),
        grandchildren,
    ));
    // Bounded by `Budget::over` (3× the seconds at most).
    while !budget.over(&stats) {
        std::thread::sleep(Duration::from_millis(50));
        d.drain_keep_last(20_000);
        assert!(
            procinfo::stat(daemon).is_some_and(|p| p.state != 'Z'),
            "daemon died; {}",
            ctx()
        );
    }
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join()
            .unwrap_or_else(|_| panic!("a chaos thread panicked; {}", ctx()));
    }
    let storm = budget.start.elapsed();
    // Printed now too, so a run that fails to settle still has its figures.
    eprintln!(
        "CHAOS-SUMMARY {}",
        json!({"seed": seed, "phase": "storm", "storm_secs": storm.as_secs_f64(), "stats": stats.summary(),
               "fds_before": fds0, "fds_after": fds(daemon).len(), "rss_kib_before": rss0,
               "rss_kib_after": procinfo::rss_kib(daemon)})
    );
    let unanswered = stats.unanswered.lock().unwrap().clone();
    assert!(
        unanswered.is_empty(),
        "requests without a reply:\n  {}\n{}",
        unanswered.join("\n  "),
        ctx()
    );
    assert_eq!(
        stats.sent.load(Ordering::SeqCst),
        stats.replied.load(Ordering::SeqCst)
    );

    let mut rng = fastrand::Rng::with_seed(seed ^ 0x5eed);
    let (fds1, rss1) = rt().block_on(async {
        let mut c = Client::connect(&ep, CALL_TIMEOUT).await.expect("connect");
        // Phase 1: each final command races one sent just before it (a
        // restart or add before `rm`, a stop before `start`, ...); then
        // phase 2 goes back to the baseline's state.
        for x in EXTRAS {
            let (cmd, pre) = match rng.u32(0..4) {
                0 => ("restart", json!({"name": x, "waiting": rng.bool()})),
                1 => ("start", json!({"name": x, "waiting": rng.bool()})),
                2 => ("incr", json!({"name": x, "nb": 2, "waiting": rng.bool()})),
                _ => (
                    "add",
                    json!({"name": x, "cmd": "sleep", "args": "1000", "start": true,
                                    "options": {"numprocesses": 2, "graceful_timeout": 2}}),
                ),
            };
            stats.note(x, format!("final race: {cmd} {pre} (reply not awaited)"));
            let body = json!({"command": cmd, "properties": pre, "id": "race"}).to_string();
            c.send_raw(body.into_bytes())
                .await
                .unwrap_or_else(|e| panic!("send {cmd}: {e}"));
            let p = json!({"name": x, "waiting": true});
            stats.note(x, format!("final: rm {p}"));
            c.call("rm", props(p))
                .await
                .unwrap_or_else(|e| panic!("final rm {x}: {e}; {}", ctx()));
        }
        let mut target: Target = initial.clone();
        for (name, t) in target.iter_mut() {
            if name != "flaky" {
                *t = if rng.u32(0..4) == 0 {
                    None
                } else {
                    Some(rng.u32(0..4))
                };
            }
        }
        for (name, t) in &target {
            let one: Target = [(name.clone(), *t)].into();
            race_then_apply(&mut c, racing_command(&mut rng, name), &one, &stats).await;
        }
        settle(&mut c, &mut d, &target, "after the storm", &ctx).await;
        apply(&mut c, &initial, &stats).await;
        settle(&mut c, &mut d, &initial, "back to the initial state", &ctx).await;
        drop(c);
        // The daemon closes a client's connection when it notices it is
        // gone; no event says so, so poll (bounded).
        let deadline = Instant::now() + Duration::from_secs(10);
        while fds(daemon).len() > fds0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (fds(daemon).len(), procinfo::rss_kib(daemon))
    });
    let summary = json!({
        "seed": seed, "phase": "settled", "storm_secs": storm.as_secs_f64(), "stats": stats.summary(),
        "fds_before": fds0, "fds_after": fds1, "rss_kib_before": rss0, "rss_kib_after": rss1,
    });
    eprintln!("CHAOS-SUMMARY {summary}");
    assert_eq!(
        fds1,
        fds0,
        "daemon fds: {fds0} at baseline, {fds1} after; now open: {:?}\n{}",
        procinfo::fd_targets(daemon),
        ctx()
    );
    assert!(
        rss1 <= rss0 + RSS_SLACK_KIB,
        "daemon RSS grew from {rss0} KiB to {rss1} KiB (slack {RSS_SLACK_KIB} KiB)\n{}",
        ctx()
    );
    if grandchildren {
        rt().block_on(async {
            let mut c = Client::connect(&ep, CALL_TIMEOUT).await.expect("connect");
            let mut t = initial.clone();
            t.insert("gc".into(), None);
            apply(&mut c, &t, &stats).await;
        });
        let recorded = std::fs::read_to_string(&gc_file).unwrap_or_default();
        let left: Vec<i32> = recorded
            .lines()
            .filter_map(|l| {
                let (pid, start) = l.trim().split_once(' ')?;
                Some((pid.parse::<i32>().ok()?, start.parse::<u64>().ok()?))
            })
            .filter(|(p, start)| alive(*p) && procinfo::start_time(*p) == Some(*start))
            .map(|(p, _)| p)
            .collect();
        for p in &left {
            // We started them (through the daemon): end them before failing.
            unsafe { libc::kill(*p, libc::SIGKILL) };
        }
        assert!(
            left.is_empty(),
            "setsid grandchildren survived their watcher's stop: {left:?}\n{}",
            ctx()
        );
    }
    let last: Vec<i32> = procinfo::descendants(daemon).into_keys().collect();
    assert_eq!(d.stop(secs(20)), 0, "daemon exit status; {}", ctx());
    // A clean stop ends every process it ran (they were in the tree above).
    eventually("the daemon's processes end with it", secs(5), || {
        last.iter().all(|p| !alive(*p))
    });
}

#[test]
fn chaos_storm_then_quiescence() {
    run(false);
}

/// Children that start a grandchild in its own session (setsid): every
/// grandchild must die with its slot (src/containment).
#[test]
fn chaos_storm_with_setsid_grandchildren() {
    run(true);
}
