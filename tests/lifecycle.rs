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

/// Sends one request from another thread (on its own connection); join
/// the handle for the reply.
fn call_in_background(
    d: &Daemon,
    cmd: &'static str,
    p: serde_json::Value,
) -> std::thread::JoinHandle<serde_json::Value> {
    let ep = endpoint(d);
    std::thread::spawn(move || {
        rt().block_on(async move {
            let mut c = ringmaster::control::client::Client::connect(&ep, secs(30))
                .await
                .expect("connect");
            c.call(cmd, props(p)).await.expect("reply")
        })
    })
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
    let stopper = call_in_background(&d, "stop", json!({"name": "stubborn", "waiting": true}));
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
    let starter = call_in_background(&d, "start", json!({"name": "slow", "waiting": true}));
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

fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

#[test]
fn a_decr_while_stopped_applies_at_the_next_start() {
    let mut d = Daemon::start(
        r#"
[watchers.w]
cmd = "sleep 1000"
numprocesses = 3
"#,
    );
    d.wait_msg("control channel ready", None, secs(10));
    d.wait_spawned("w", 3, secs(10));
    assert_eq!(
        call(&d, "stop", json!({"name": "w", "waiting": true}))["status"],
        "ok"
    );
    let r = call(&d, "decr", json!({"name": "w", "nb": 2, "waiting": true}));
    assert_eq!(r["numprocesses"], 1, "{r}");
    assert_eq!(
        call(&d, "start", json!({"name": "w", "waiting": true}))["status"],
        "ok"
    );
    assert_eq!(pids(&d, "w").len(), 1);
    eventually("one process", secs(10), || descendants(d.pid()).len() == 1);
}

#[test]
fn a_scale_during_a_rollout_neither_fails_nor_undoes_it() {
    let mut d = Daemon::start(
        r#"
[watchers.w]
cmd = "sh -c 'sleep 0.5; echo READY; exec sleep 1001'"
numprocesses = 2
[watchers.w.ready]
type = "log"
pattern = "READY"
start_timeout = "20s"
"#,
    );
    d.wait_msg("control channel ready", None, secs(10));
    d.wait_spawned("w", 2, secs(10));
    for _ in 0..2 {
        d.wait_msg("ready", Some("w"), secs(10));
    }
    let v2 = "sh -c 'sleep 0.5; echo READY; exec sleep 1002'";
    let setter = call_in_background(
        &d,
        "set",
        json!({"name": "w", "options": {"cmd": v2}, "waiting": true}),
    );
    // The rollout's first new process is up: scale down under it.
    d.wait_spawned("w", 1, secs(10));
    let r = call(&d, "decr", json!({"name": "w", "waiting": true}));
    assert_eq!(r["numprocesses"], 1, "{r}");
    let set = setter.join().expect("set thread");
    assert_eq!(set["status"], "ok", "{set}");
    let got = call(&d, "get", json!({"name": "w", "keys": ["cmd"]}));
    assert_eq!(got["options"]["cmd"], json!(v2), "{got}");
    eventually("one v2 process", secs(20), || {
        let p = pids(&d, "w");
        p.len() == 1 && cmdline(p[0]).contains("1002") && descendants(d.pid()).len() == 1
    });
}

#[test]
fn a_second_set_during_a_failing_rollout_wins() {
    let mut d = Daemon::start(
        r#"
[watchers.w]
cmd = "sh -c 'echo READY; exec sleep 1001'"
[watchers.w.ready]
type = "log"
pattern = "READY"
start_timeout = "1s"
"#,
    );
    d.wait_msg("control channel ready", None, secs(10));
    d.wait_spawned("w", 1, secs(10));
    d.wait_msg("ready", Some("w"), secs(10));
    // v2 never becomes ready; v3 does.
    let r = call(
        &d,
        "set",
        json!({"name": "w", "options": {"cmd": "sh -c 'exec sleep 1002'"}}),
    );
    assert_eq!(r["status"], "ok", "{r}");
    let v3 = "sh -c 'echo READY; exec sleep 1003'";
    let r = call(
        &d,
        "set",
        json!({"name": "w", "options": {"cmd": v3}, "waiting": true}),
    );
    assert_eq!(r["status"], "ok", "{r}");
    let got = call(&d, "get", json!({"name": "w", "keys": ["cmd"]}));
    assert_eq!(got["options"]["cmd"], json!(v3), "{got}");
    eventually("the v3 process", secs(20), || {
        let p = pids(&d, "w");
        p.len() == 1 && cmdline(p[0]).contains("1003")
    });
}

#[test]
fn reloadconfig_takes_over_a_watcher_added_at_run_time() {
    let mut d = Daemon::start(
        r#"
[watchers.a]
cmd = "sleep 1000"
"#,
    );
    d.wait_msg("control channel ready", None, secs(10));
    d.wait_spawned("a", 1, secs(10));
    let r = call(
        &d,
        "add",
        json!({"name": "b", "cmd": "sleep 1004", "start": true, "waiting": true}),
    );
    assert_eq!(r["status"], "ok", "{r}");
    let mut text = std::fs::read_to_string(&d.config).expect("config");
    text.push_str("\n[watchers.b]\ncmd = \"sleep 1005\"\n");
    std::fs::write(&d.config, text).expect("write config");
    let r = call(&d, "reloadconfig", json!({}));
    assert_eq!(r["status"], "ok", "{r}");
    eventually("b runs the file's command", secs(10), || {
        let p = pids(&d, "b");
        p.len() == 1 && cmdline(p[0]).contains("1005")
    });
    assert_eq!(
        call(&d, "stop", json!({"name": "b", "waiting": true}))["status"],
        "ok"
    );
    // Neither b's first process nor its successor is left.
    eventually("b's processes gone", secs(10), || {
        descendants(d.pid())
            .iter()
            .all(|p| !cmdline(*p).contains("1004") && !cmdline(*p).contains("1005"))
    });
}

#[test]
fn restart_of_all_stops_low_priority_first_and_starts_high_priority_first() {
    let mut d = Daemon::start(
        r#"
[watchers.db]
cmd = "python3 -c 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(1000)'"
priority = 10
graceful_timeout = 1
[watchers.app]
cmd = "sleep 1000"
priority = 1
"#,
    );
    d.wait_msg("control channel ready", None, secs(10));
    d.wait_spawned("db", 1, secs(10));
    d.wait_spawned("app", 1, secs(10));
    let r = call(&d, "restart", json!({"waiting": true}));
    assert_eq!(r["status"], "ok", "{r}");
    let first = d.wait_for("a respawn", secs(10), |v| v["message"] == "spawned");
    assert_eq!(first["watcher"], "db", "db (priority 10) starts first: {first}");
    d.wait_spawned("app", 1, secs(10));
}

#[test]
fn a_cancelled_start_runs_no_after_start_hook() {
    let mut d = Daemon::start(
        r#"
[watchers.w]
cmd = "sh -c 'sleep 3; echo READY; exec sleep 1000'"
autostart = false
[watchers.w.ready]
type = "log"
pattern = "READY"
start_timeout = "20s"
[watchers.w.hooks]
after_start = "echo after_start >> {dir}/hooks"
after_stop = "echo after_stop >> {dir}/hooks"
"#,
    );
    d.wait_msg("control channel ready", None, secs(10));
    let r = call(&d, "start", json!({"name": "w"}));
    assert_eq!(r["status"], "ok", "{r}");
    d.wait_spawned("w", 1, secs(10));
    let r = call(&d, "stop", json!({"name": "w", "waiting": true}));
    assert_eq!(r["status"], "ok", "{r}");
    let hooks = d.path("hooks");
    eventually("after_stop ran", secs(10), || {
        std::fs::read_to_string(&hooks).is_ok_and(|s| s.contains("after_stop"))
    });
    // A cancelled start's after_start would have been launched before
    // after_stop (when its process was gone, before the stop completed).
    let text = std::fs::read_to_string(&hooks).unwrap_or_default();
    assert!(!text.contains("after_start"), "{text}");
}

#[test]
fn nothing_new_starts_while_the_daemon_shuts_down() {
    let mut d = Daemon::start(
        r#"
[watchers.slow]
cmd = "python3 -c 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(\"armed\", flush=True); time.sleep(1000)'"
graceful_timeout = 5
[watchers.slow.ready]
type = "log"
pattern = "armed"
[watchers.idle]
cmd = "sleep 1000"
autostart = false
"#,
    );
    d.wait_msg("control channel ready", None, secs(10));
    d.wait_spawned("slow", 1, secs(10));
    // It ignores SIGTERM from now on: the shutdown lasts graceful_timeout.
    d.wait_msg("ready", Some("slow"), secs(10));
    let ep = endpoint(&d);
    let runtime = rt();
    // Connected before the shutdown begins.
    let mut c = runtime
        .block_on(ringmaster::control::client::Client::connect(&ep, secs(10)))
        .expect("connect");
    d.signal(libc::SIGTERM);
    d.wait_msg("stopping all watchers", None, secs(10));
    let start = runtime
        .block_on(c.call("start", props(json!({"name": "idle"}))))
        .expect("start reply");
    assert_eq!(start["status"], "error", "{start}");
    let add = runtime
        .block_on(c.call(
            "add",
            props(json!({"name": "late", "cmd": "sleep 1000", "start": true})),
        ))
        .expect("add reply");
    assert_eq!(add["status"], "error", "{add}");
    assert_eq!(d.wait_exit(secs(20)), 0);
}

#[test]
fn a_delayed_autostart_leaves_a_watcher_an_operator_stopped() {
    // warmup_delay starts a at 0 s, b at 1 s, c at 2 s.
    let mut d = Daemon::start(
        r#"
[ringmaster]
warmup_delay = 1
[watchers.a]
cmd = "sleep 1000"
priority = 3
[watchers.b]
cmd = "sleep 1000"
priority = 2
[watchers.c]
cmd = "sleep 1000"
priority = 1
"#,
    );
    d.wait_msg("control channel ready", None, secs(10));
    d.wait_spawned("a", 1, secs(10));
    let r = call(&d, "stop", json!({"name": "b", "waiting": true}));
    assert_eq!(r["status"], "ok", "{r}");
    // c's turn comes after b's would have.
    d.wait_spawned("c", 1, secs(10));
    assert_eq!(status(&d, "b"), "stopped");
    assert!(pids(&d, "b").is_empty());
}

#[test]
fn set_priority_moves_a_watcher_in_the_start_order() {
    let mut d = Daemon::start(
        r#"
[watchers.a]
cmd = "sleep 1000"
priority = 1
[watchers.b]
cmd = "sleep 1000"
priority = 2
"#,
    );
    d.wait_msg("control channel ready", None, secs(10));
    d.wait_spawned("a", 1, secs(10));
    d.wait_spawned("b", 1, secs(10));
    let r = call(
        &d,
        "set",
        json!({"name": "a", "options": {"priority": 3}, "waiting": true}),
    );
    assert_eq!(r["status"], "ok", "{r}");
    let r = call(&d, "restart", json!({"waiting": true}));
    assert_eq!(r["status"], "ok", "{r}");
    let first = d.wait_for("a respawn", secs(10), |v| v["message"] == "spawned");
    assert_eq!(first["watcher"], "a", "a (now priority 3) starts first: {first}");
}
