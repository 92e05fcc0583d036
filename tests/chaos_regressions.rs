//! Deterministic reproductions of what `tests/chaos.rs` found: two commands
//! on one watcher, sent back to back on one connection, must take effect in
//! arrival order (the later one wins). Each race is tried a few times, since
//! whether the earlier command is still running when the later one arrives
//! depends on timing.

mod common;
#[path = "common/procinfo.rs"]
mod procinfo;

use common::*;
use ringmaster::control::client::Client;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const CONFIG: &str = r#"
[watchers.w]
cmd = "sleep 1000"
numprocesses = 1
graceful_timeout = 2
"#;
const ROUNDS: usize = 5;
const SETTLE: Duration = Duration::from_secs(20);

async fn ok(c: &mut Client, cmd: &str, p: Value) -> Value {
    let r = c
        .call(cmd, props(p.clone()))
        .await
        .unwrap_or_else(|e| panic!("{cmd} {p}: no reply: {e}"));
    assert_ne!(r["status"], "error", "{cmd} {p}: {r}");
    r
}

/// Sends `pre` without waiting for its reply, then `finals` (awaited), all
/// on one connection, so the daemon receives them in this order.
async fn race(c: &mut Client, pre: (&str, Value), finals: &[(&str, Value)]) {
    let body = json!({"command": pre.0, "properties": pre.1, "id": "earlier"}).to_string();
    c.send_raw(body.into_bytes()).await.expect("send");
    for (cmd, p) in finals {
        ok(c, cmd, p.clone()).await;
    }
}

/// Polls until `w` is `state` with `n` live child pids and numprocesses `n`
/// (for "stopped", numprocesses is not checked), and the daemon has no other
/// child process. Returns what it last saw on failure.
async fn settled(c: &mut Client, daemon: i32, state: &str, n: usize) -> Result<(), String> {
    let deadline = Instant::now() + SETTLE;
    loop {
        let status = ok(c, "status", json!({"name": "w"})).await["status"].clone();
        let pids: Vec<i64> = ok(c, "list", json!({"name": "w"})).await["pids"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_i64).collect())
            .unwrap_or_default();
        let np = ok(c, "numprocesses", json!({"name": "w"})).await["numprocesses"].clone();
        let children: Vec<i64> = procinfo::descendants(daemon)
            .values()
            .filter(|(p, _)| p.ppid == daemon)
            .map(|(p, _)| i64::from(p.pid))
            .collect();
        let mut sorted = pids.clone();
        sorted.sort();
        let mut kids = children.clone();
        kids.sort();
        let good =
            status == state && pids.len() == n && (state == "stopped" || np == json!(n)) && sorted == kids;
        if good {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "expected {state} with {n} processes; seen {status}, numprocesses {np}, pids {pids:?}, daemon children {children:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `round` ROUNDS times on one daemon; each returns the state to expect.
fn check(
    what: &str,
    round: impl Fn(
        usize,
    ) -> (
        (&'static str, Value),
        Vec<(&'static str, Value)>,
        &'static str,
        usize,
    ),
) {
    let mut d = Daemon::start(CONFIG);
    d.wait_spawned("w", 1, secs(10));
    let daemon = d.pid();
    let ep = endpoint(&d);
    rt().block_on(async {
        let mut c = Client::connect(&ep, secs(30)).await.expect("connect");
        for i in 0..ROUNDS {
            let (pre, finals, state, n) = round(i);
            let shown = format!(
                "{} {} then {:?}",
                pre.0,
                pre.1,
                finals.iter().map(|(c, p)| format!("{c} {p}")).collect::<Vec<_>>()
            );
            race(&mut c, pre, &finals).await;
            if let Err(e) = settled(&mut c, daemon, state, n).await {
                panic!("{what}, round {i}: {shown}: {e}");
            }
        }
    });
}

#[test]
fn incr_then_set_numprocesses_the_set_wins() {
    check("incr then set", |_| {
        (
            ("incr", json!({"name": "w", "nb": 2, "waiting": true})),
            vec![(
                "set",
                json!({"name": "w", "options": {"numprocesses": 2}, "waiting": true}),
            )],
            "active",
            2,
        )
    });
}

#[test]
fn reload_then_set_numprocesses_the_set_wins() {
    check("reload then set", |i| {
        (
            ("reload", json!({"name": "w", "waiting": i % 2 == 0})),
            vec![(
                "set",
                json!({"name": "w", "options": {"numprocesses": 3 + i % 2}, "waiting": true}),
            )],
            "active",
            3 + i % 2,
        )
    });
}

#[test]
fn restart_then_set_numprocesses_the_set_wins() {
    check("restart then set", |i| {
        (
            ("restart", json!({"name": "w", "waiting": i % 2 == 0})),
            vec![(
                "set",
                json!({"name": "w", "options": {"numprocesses": 3 - i % 2}, "waiting": true}),
            )],
            "active",
            3 - i % 2,
        )
    });
}

#[test]
fn stop_then_start_the_start_wins() {
    check("stop then start", |i| {
        (
            ("stop", json!({"name": "w", "waiting": i % 2 == 0})),
            vec![
                (
                    "set",
                    json!({"name": "w", "options": {"numprocesses": 2}, "waiting": true}),
                ),
                ("start", json!({"name": "w", "waiting": true})),
            ],
            "active",
            2,
        )
    });
}

#[test]
fn start_then_stop_the_stop_wins() {
    check("start then stop", |i| {
        let pre = if i % 2 == 0 {
            ("start", json!({"name": "w", "waiting": false}))
        } else {
            ("restart", json!({"name": "w", "waiting": false}))
        };
        (
            pre,
            vec![("stop", json!({"name": "w", "waiting": true}))],
            "stopped",
            0,
        )
    });
}

/// `rm` after a restart/incr/reload of an added watcher leaves no process.
#[test]
fn restart_then_rm_leaves_no_process() {
    rm_race(|i| match i % 3 {
        0 => ("restart", json!({"name": "x", "waiting": i % 2 == 0})),
        1 => ("incr", json!({"name": "x", "nb": 2, "waiting": i % 2 == 0})),
        _ => ("reload", json!({"name": "x", "waiting": i % 2 == 0})),
    });
}

/// `rm` right after `add --start` (not yet answered) leaves no process.
#[test]
fn add_start_then_rm_leaves_no_process() {
    rm_race(|i| ("add", add_x(i % 2 == 1)));
}

fn add_x(waiting: bool) -> Value {
    json!({"name": "x", "cmd": "sleep", "args": "1000", "start": true, "waiting": waiting,
           "options": {"numprocesses": 2, "graceful_timeout": 2}})
}

/// Adds watcher `x` (unless `pre` is the add), races `pre` with `rm --waiting`,
/// and checks that nothing but `w`'s processes is left under the daemon.
fn rm_race(pre_of: impl Fn(usize) -> (&'static str, Value)) {
    let mut d = Daemon::start(CONFIG);
    d.wait_spawned("w", 1, secs(10));
    let daemon = d.pid();
    let ep = endpoint(&d);
    let d = &mut d;
    rt().block_on(async {
        let mut c = Client::connect(&ep, secs(30)).await.expect("connect");
        for i in 0..ROUNDS * 2 {
            let pre = pre_of(i);
            if pre.0 != "add" {
                ok(&mut c, "add", add_x(true)).await;
            }
            let shown = format!("{} {}", pre.0, pre.1);
            race(&mut c, pre, &[("rm", json!({"name": "x", "waiting": true}))]).await;
            assert_eq!(ok(&mut c, "list", json!({})).await["watchers"], json!(["w"]));
            let w: Vec<i64> = ok(&mut c, "list", json!({"name": "w"})).await["pids"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_i64).collect())
                .unwrap_or_default();
            let deadline = Instant::now() + SETTLE;
            loop {
                let stray: Vec<(i32, String)> = procinfo::descendants(daemon)
                    .into_keys()
                    .filter(|p| !w.contains(&i64::from(*p)))
                    .map(|p| (p, procinfo::cmdline(p)))
                    .collect();
                if stray.is_empty() {
                    break;
                }
                if Instant::now() > deadline {
                    // Does a clean daemon stop at least end them?
                    let code = d.stop(secs(20));
                    let survivors: Vec<i32> = stray.iter().map(|s| s.0).filter(|p| alive(*p)).collect();
                    for p in &survivors {
                        // Ours (started through the daemon): end them before failing.
                        unsafe { libc::kill(*p, libc::SIGKILL) };
                    }
                    panic!(
                        "round {i}: {shown} then rm --waiting: processes left behind: {stray:?}; \
                         then SIGTERM: the daemon exited {code}, and of those {survivors:?} were still running"
                    );
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
}
