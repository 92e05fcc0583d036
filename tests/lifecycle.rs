//! Commands racing on one watcher, against the real daemon: they take effect
//! in arrival order and the later one wins, and nothing a cancelled
//! operation started is left behind.

mod common;
use common::*;
use serde_json::json;
use std::collections::HashSet;

fn pids(d: &Daemon, name: &str) -> Vec<i32> {
    let r = call(d, "list", json!({ "name": name }));
    r["pids"]
        .as_array()
        .unwrap_or_else(|| panic!("list {name}: {r}"))
        .iter()
        .map(|p| p.as_i64().unwrap() as i32)
        .collect()
}

fn status(d: &Daemon, name: &str) -> String {
    call(d, "status", json!({ "name": name }))["status"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Every process that is the daemon's child or a descendant of one.
fn descendants(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
                for c in s.split_whitespace().filter_map(|x| x.parse::<i32>().ok()) {
                    out.push(c);
                    todo.push(c);
                }
            }
        }
    }
    out
}

#[test]
fn start_sent_during_a_waiting_stop_ends_running() {
    // The process ignores SIGTERM, so the stop lasts graceful_timeout.
    let mut d = Daemon::start(
        r#"
[watchers.stubborn]
cmd = "python3 -c 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(1000)'"
graceful_timeout = 1
"#,
    );
    d.wait_msg("control channel ready", None, secs(10));
    let old = d.wait_spawned("stubborn", 1, secs(10))[0];
    let ep = endpoint(&d);
    let stopper = std::thread::spawn(move || {
        rt().block_on(async move {
            let mut c = ringmaster::control::client::Client::connect(&ep, secs(30))
                .await
                .expect("connect");
            c.call("stop", props(json!({"name": "stubborn", "waiting": true})))
                .await
                .expect("stop")
        })
    });
    d.wait_msg("stopping process", Some("stubborn"), secs(10));
    let started = call(&d, "start", json!({"name": "stubborn", "waiting": true}));
    let stopped = stopper.join().expect("stop thread");
    assert_eq!(stopped["status"], "ok", "{stopped}");
    assert_eq!(started["status"], "ok", "{started}");
    assert_eq!(status(&d, "stubborn"), "active");
    let now = pids(&d, "stubborn");
    assert_eq!(now.len(), 1, "{now:?}");
    assert_ne!(now[0], old);
    assert!(alive(now[0]));
    assert!(!alive(old));
}

#[test]
fn stop_during_a_start_cancels_it_and_ends_stopped() {
    let mut d = Daemon::start(
        r#"
[watchers.slow]
cmd = "sh -c 'sleep 2; echo READY; exec sleep 1000'"
numprocesses = 2
autostart = false
[watchers.slow.ready]
type = "log"
pattern = "READY"
start_timeout = "20s"
"#,
    );
    d.wait_msg("control channel ready", None, secs(10));
    let ep = endpoint(&d);
    let starter = std::thread::spawn(move || {
        rt().block_on(async move {
            let mut c = ringmaster::control::client::Client::connect(&ep, secs(30))
                .await
                .expect("connect");
            c.call("start", props(json!({"name": "slow", "waiting": true})))
                .await
                .expect("start")
        })
    });
    let spawned = d.wait_spawned("slow", 2, secs(10));
    let stopped = call(&d, "stop", json!({"name": "slow", "waiting": true}));
    assert_eq!(stopped["status"], "ok", "{stopped}");
    let started = starter.join().expect("start thread");
    assert_eq!(started["status"], "error", "{started}");
    assert!(
        started["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("canceled"),
        "{started}"
    );
    assert_eq!(status(&d, "slow"), "stopped");
    assert!(pids(&d, "slow").is_empty());
    for p in spawned {
        assert!(!alive(p), "{p} survived the stop");
    }
}

#[test]
fn rm_during_a_rollout_leaves_no_process() {
    let mut d = Daemon::start(
        r#"
[watchers.web]
cmd = "sh -c 'sleep 0.3; echo READY; exec sleep 1000'"
numprocesses = 3
[watchers.web.ready]
type = "log"
pattern = "READY"
start_timeout = "20s"
"#,
    );
    d.wait_msg("control channel ready", None, secs(10));
    let old: HashSet<i32> = d.wait_spawned("web", 3, secs(10)).into_iter().collect();
    for _ in 0..3 {
        d.wait_msg("ready", Some("web"), secs(10));
    }
    let r = call(&d, "restart", json!({"name": "web"}));
    assert_eq!(r["status"], "ok", "{r}");
    // The rollout has started its first new process.
    let first_new = d.wait_spawned("web", 1, secs(10))[0];
    assert!(!old.contains(&first_new));
    let r = call(&d, "rm", json!({"name": "web", "waiting": true}));
    assert_eq!(r["status"], "ok", "{r}");
    let names = call(&d, "list", json!({}));
    assert_eq!(names["watchers"], json!([]), "{names}");
    // Nothing the rollout started survives.
    eventually("every process gone", secs(10), || descendants(d.pid()).is_empty());
    let r = call(&d, "status", json!({}));
    assert_eq!(r["status"], "ok", "{r}");
    assert_eq!(descendants(d.pid()), Vec::<i32>::new());
}

#[test]
fn rm_right_after_a_fast_rollout_began_leaves_no_process() {
    // No readiness wait: the rollout adds a process every few milliseconds,
    // so the rm lands between two of its steps.
    let mut d = Daemon::start(
        r#"
[watchers.many]
cmd = "sleep 1000"
numprocesses = 20
"#,
    );
    d.wait_msg("control channel ready", None, secs(10));
    d.wait_spawned("many", 20, secs(20));
    let r = call(&d, "restart", json!({"name": "many"}));
    assert_eq!(r["status"], "ok", "{r}");
    d.wait_spawned("many", 2, secs(10));
    let r = call(&d, "rm", json!({"name": "many", "waiting": true}));
    assert_eq!(r["status"], "ok", "{r}");
    eventually("every process gone", secs(10), || descendants(d.pid()).is_empty());
    let r = call(&d, "status", json!({}));
    assert_eq!(r["status"], "ok", "{r}");
    assert_eq!(descendants(d.pid()), Vec::<i32>::new());
}

#[test]
fn a_failed_rollout_keeps_the_previous_spec() {
    let good = "sh -c 'echo READY; exec sleep 1000'";
    let mut d = Daemon::start(&format!(
        r#"
[watchers.app]
cmd = "{good}"
[watchers.app.ready]
type = "log"
pattern = "READY"
start_timeout = "700ms"
"#
    ));
    d.wait_msg("control channel ready", None, secs(10));
    let first = d.wait_spawned("app", 1, secs(10))[0];
    d.wait_msg("ready", Some("app"), secs(10));
    let r = call(
        &d,
        "set",
        json!({"name": "app", "options": {"cmd": "sh -c 'exec sleep 1000'"}, "waiting": true}),
    );
    assert_eq!(r["status"], "error", "{r}");
    assert!(
        r["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("old processes kept"),
        "{r}"
    );
    let got = call(&d, "get", json!({"name": "app", "keys": ["cmd"]}));
    assert_eq!(got["options"]["cmd"], json!(good), "{got}");
    // The next process of the slot runs the previous command and becomes ready.
    let cur = pids(&d, "app");
    assert_eq!(cur, vec![first]);
    // SAFETY: plain syscall on a process this test's daemon started.
    unsafe { libc::kill(first, libc::SIGKILL) };
    let again = d.wait_spawned("app", 1, secs(10))[0];
    assert_ne!(again, first);
    d.wait_msg("ready", Some("app"), secs(10));
}
