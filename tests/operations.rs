//! Zero-downtime operations: readiness, rolling restarts, config reload by
//! diff, exec hooks — against the real daemon, with real HTTP clients on
//! loopback.

mod common;
use common::*;

use serde_json::json;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Sends one request per connection, as fast as it can, until stopped
/// (bounded: at most 60 s and 200,000 requests); records answers and failures.
struct Load {
    stop: Arc<AtomicBool>,
    answers: Arc<Mutex<Vec<(Instant, i32)>>>,
    failures: Arc<Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(addr: String) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let answers = Arc::new(Mutex::new(Vec::new()));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let (s, a, f) = (stop.clone(), answers.clone(), failures.clone());
        let thread = std::thread::spawn(move || {
            let t0 = Instant::now();
            let mut n = 0;
            while !s.load(Ordering::Relaxed) && t0.elapsed() < secs(60) && n < 200_000 {
                n += 1;
                match http_get(&addr) {
                    Ok(body) => match body.trim().rsplit(' ').next().and_then(|p| p.parse::<i32>().ok()) {
                        Some(pid) => a.lock().unwrap().push((Instant::now(), pid)),
                        None => f.lock().unwrap().push(format!("bad body {body:?}")),
                    },
                    Err(e) => f.lock().unwrap().push(e.to_string()),
                }
            }
        });
        Load {
            stop,
            answers,
            failures,
            thread: Some(thread),
        }
    }

    fn count(&self) -> usize {
        self.answers.lock().unwrap().len()
    }

    fn finish(mut self) -> (Vec<(Instant, i32)>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        (
            self.answers.lock().unwrap().clone(),
            self.failures.lock().unwrap().clone(),
        )
    }
}

fn wait_answers(load: &Load, n: usize) {
    eventually("load running", secs(20), || load.count() >= n);
}

#[test]
fn rolling_restart_under_load_has_zero_failed_requests() {
    let mut d = Daemon::start(&format!(
        r#"
[sockets.web]
port = 0
[watchers.web]
cmd = "python3 {w} --fd $(circus.sockets.web) --ready-after 300 --notify"
numprocesses = 4
graceful_timeout = 10
[watchers.web.ready]
type = "notify"
start_timeout = "10s"
"#,
        w = worker_script()
    ));
    let addr = d.wait_listening("web");
    let old: HashSet<i32> = d.wait_spawned("web", 4, secs(10)).into_iter().collect();
    for _ in 0..4 {
        d.wait_msg("ready", Some("web"), secs(10));
    }
    let load = Load::start(addr);
    wait_answers(&load, 50);
    let t0 = Instant::now();
    let r = call(&d, "restart", json!({"name": "web", "waiting": true}));
    let took = t0.elapsed();
    assert_eq!(r["status"], "ok", "{r}");
    let started: HashSet<i32> = r["info"]["started"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_i64().unwrap() as i32)
        .collect();
    let stopped: HashSet<i32> = r["info"]["stopped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_i64().unwrap() as i32)
        .collect();
    assert_eq!(stopped, old, "every old process replaced");
    assert_eq!(started.len(), 4);
    assert!(started.is_disjoint(&old));
    let n = load.count();
    eventually("requests after the restart", secs(10), || load.count() >= n + 50);
    let (answers, failures) = load.finish();
    assert!(
        failures.is_empty(),
        "{} failed requests: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    let after: HashSet<i32> = answers.iter().rev().take(40).map(|(_, p)| *p).collect();
    assert!(
        after.is_subset(&started),
        "answers after the restart came from {after:?}, not {started:?}"
    );
    // Readiness took 300 ms per batch of one: the rollout waited for it.
    assert!(took >= Duration::from_millis(4 * 300), "restart took {took:?}");
    eprintln!(
        "rolling restart of 4 workers: {took:?}, {} requests, 0 failed",
        answers.len()
    );
}

#[test]
fn a_slow_starting_worker_gets_no_traffic_before_it_is_ready() {
    let mut d = Daemon::start(&format!(
        r#"
[sockets.web]
port = 0
[watchers.web]
cmd = "python3 {w} --fd $(circus.sockets.web) --ready-after 800 --notify"
numprocesses = 1
[watchers.web.ready]
type = "notify"
"#,
        w = worker_script()
    ));
    let addr = d.wait_listening("web");
    let old = d.wait_spawned("web", 1, secs(10))[0];
    d.wait_msg("ready", Some("web"), secs(10));
    let load = Load::start(addr);
    wait_answers(&load, 20);
    let r = call(&d, "restart", json!({"name": "web", "waiting": true}));
    let new = r["info"]["started"][0].as_i64().unwrap() as i32;
    let ready_at = {
        let v = d.wait_for("new process ready", secs(10), |v| {
            v["message"] == "ready" && v["pid"] == new
        });
        v["timestamp"].as_str().unwrap().to_string()
    };
    let n = load.count();
    eventually("requests after the restart", secs(10), || load.count() >= n + 20);
    let (answers, failures) = load.finish();
    assert!(failures.is_empty(), "{failures:?}");
    // While the new worker warmed up (800 ms), the old one answered.
    let first_new = answers
        .iter()
        .position(|(_, p)| *p == new)
        .expect("new worker answered");
    let old_before = answers[..first_new].iter().filter(|(_, p)| *p == old).count();
    assert!(old_before >= 20, "old worker served during warmup: {old_before}");
    assert!(!ready_at.is_empty());
}

#[test]
fn a_release_that_fails_readiness_leaves_the_old_processes_serving() {
    let mut d = Daemon::start(&format!(
        r#"
[sockets.web]
port = 0
[watchers.web]
cmd = "python3 {w} --fd $(circus.sockets.web) --notify"
numprocesses = 2
[watchers.web.ready]
type = "notify"
# Long enough for a Python worker to start on a loaded machine (700 ms was
# missed there by the good processes too); the bad release never says READY.
start_timeout = "3s"
[watchers.web.restart]
max_retry = 1
"#,
        w = worker_script()
    ));
    let addr = d.wait_listening("web");
    let old: HashSet<i32> = d.wait_spawned("web", 2, secs(10)).into_iter().collect();
    for _ in 0..2 {
        d.wait_msg("ready", Some("web"), secs(10));
    }
    let load = Load::start(addr);
    wait_answers(&load, 20);
    let bad = format!(
        "python3 {} --fd $(circus.sockets.web) --never-ready",
        worker_script()
    );
    let r = call(
        &d,
        "set",
        json!({"name": "web", "options": {"cmd": bad}, "waiting": true}),
    );
    assert_eq!(r["status"], "error", "{r}");
    assert_eq!(r["errno"], 6);
    assert!(
        r["reason"].as_str().unwrap().contains("old processes kept"),
        "{r}"
    );
    assert!(r["reason"].as_str().unwrap().contains("no READY=1 within"), "{r}");
    let n = load.count();
    eventually("still serving", secs(10), || load.count() >= n + 20);
    let (answers, failures) = load.finish();
    assert!(failures.is_empty(), "{failures:?}");
    let recent: HashSet<i32> = answers.iter().rev().take(20).map(|(_, p)| *p).collect();
    assert!(recent.is_subset(&old), "{recent:?} vs {old:?}");
    let pids: HashSet<i32> = call(&d, "list", json!({"name": "web"}))["pids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_i64().unwrap() as i32)
        .collect();
    assert_eq!(pids, old);
}

#[test]
fn start_waiting_replies_when_ready_and_command_probe_works() {
    let mut d = Daemon::start(
        r#"
[watchers.slow]
cmd = "sh -c 'sleep 0.4; touch {dir}/ready.$$; exec sleep 1000'"
autostart = false
[watchers.slow.ready]
type = "command"
command = "test -f {dir}/ready.$RINGMASTER_PID"
interval = "50ms"
"#,
    );
    d.wait_msg("control channel ready", None, secs(10));
    let t0 = Instant::now();
    let r = call(&d, "start", json!({"name": "slow", "waiting": true}));
    assert_eq!(r["status"], "ok", "{r}");
    assert!(
        t0.elapsed() >= Duration::from_millis(400),
        "replied before ready: {:?}",
        t0.elapsed()
    );
    let pid = r["info"]["started"][0].as_i64().unwrap();
    assert!(d.path(&format!("ready.{pid}")).exists());
}

/// `ready.type = "log"`: ready when a line of the process's own output
/// matches (uvicorn has no readiness signal but logs "Uvicorn running on …"
/// once it accepts); a process whose output never matches fails readiness.
#[test]
fn log_line_readiness() {
    let mut d = Daemon::start(
        r#"
[watchers.talker]
cmd = "sh -c 'echo booting; sleep 0.4; echo INFO: Uvicorn running on socket 3 >&2; exec sleep 1000'"
autostart = false
[watchers.talker.ready]
type = "log"
pattern = "Uvicorn running on"
[watchers.mute]
cmd = "sh -c 'echo still booting; exec sleep 1000'"
autostart = false
[watchers.mute.ready]
type = "log"
pattern = "^ready$"
start_timeout = "500ms"
"#,
    );
    d.wait_msg("control channel ready", None, secs(10));
    let t0 = Instant::now();
    let r = call(&d, "start", json!({"name": "talker", "waiting": true}));
    assert_eq!(r["status"], "ok", "{r}");
    assert!(
        t0.elapsed() >= Duration::from_millis(400),
        "replied before the line: {:?}",
        t0.elapsed()
    );
    let r = call(&d, "start", json!({"name": "mute", "waiting": true}));
    assert_eq!(r["status"], "error", "{r}");
    let reason = r["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("no output line matched"), "{r}");
}

#[test]
fn watchdog_restarts_a_hung_process() {
    let mut d = Daemon::start(&format!(
        r#"
[sockets.web]
port = 0
[watchers.web]
cmd = "python3 {w} --fd $(circus.sockets.web) --notify --watchdog --hang-after 600"
graceful_timeout = 1
[watchers.web.ready]
type = "notify"
watchdog_timeout = "400ms"
"#,
        w = worker_script()
    ));
    let first = d.wait_spawned("web", 1, secs(10))[0];
    d.wait_msg("ready", Some("web"), secs(10));
    let v = d.wait_msg(
        "watchdog: no WATCHDOG=1 within 400ms; restarting the process",
        Some("web"),
        secs(10),
    );
    assert_eq!(v["pid"], first);
    let second = d.wait_spawned("web", 1, secs(10))[0];
    assert_ne!(first, second);
    d.wait_for("hung process gone", secs(10), |v| {
        v["message"] == "exited" && v["pid"] == first
    });
}

#[test]
fn reload_config_scales_adds_removes_and_rebinds_without_touching_the_rest() {
    let w = worker_script();
    let v1 = format!(
        r#"
[sockets.web]
port = 0
[sockets.old]
port = 0
[watchers.web]
cmd = "python3 {w} --fd $(circus.sockets.web)"
numprocesses = 2
[watchers.steady]
cmd = "sleep 1000"
[watchers.scaled]
cmd = "sleep 1000"
numprocesses = 1
[watchers.removed]
cmd = "sleep 1000"
[watchers.old_user]
cmd = "sleep 1000 $(circus.sockets.old)"
"#
    );
    let mut d = Daemon::start(&v1);
    d.wait_listening("web");
    let web_old: HashSet<i32> = d.wait_spawned("web", 2, secs(10)).into_iter().collect();
    let steady = d.wait_spawned("steady", 1, secs(10))[0];
    let removed = d.wait_spawned("removed", 1, secs(10))[0];
    d.wait_spawned("scaled", 1, secs(10));
    d.wait_spawned("old_user", 1, secs(10));
    // v2: web moves to a new port (rebind + roll), scaled 1→3, removed gone,
    // added new, socket "old" and its user removed, steady unchanged.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let v2 = format!(
        r#"
[sockets.web]
port = {port}
[watchers.web]
cmd = "python3 {w} --fd $(circus.sockets.web)"
numprocesses = 2
[watchers.steady]
cmd = "sleep 1000"
[watchers.scaled]
cmd = "sleep 1000"
numprocesses = 3
[watchers.added]
cmd = "sleep 1000"
"#
    );
    std::fs::write(&d.config, v2).unwrap();
    // The dry run prints the plan and changes nothing.
    let out = std::process::Command::new(BIN)
        .args(["reload-config", "--dry-run", "--endpoint", &endpoint(&d)])
        .output()
        .unwrap();
    let plan = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{plan} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for part in [
        "sockets removed: old",
        "sockets rebound: web",
        "watchers added: added",
        "watchers removed: old_user, removed",
        "watchers rolled: web",
        "watchers scaled: scaled 1→3",
        "unchanged: steady",
    ] {
        assert!(plan.contains(part), "{part:?} not in {plan}");
    }
    assert!(alive(removed));
    // Apply.
    let r = call(&d, "reloadconfig", json!({"waiting": true}));
    assert_eq!(r["status"], "ok", "{r}");
    let web_new: HashSet<i32> = call(&d, "list", json!({"name": "web"}))["pids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_i64().unwrap() as i32)
        .collect();
    assert_eq!(web_new.len(), 2);
    assert!(
        web_new.is_disjoint(&web_old),
        "web was rolled onto the new socket"
    );
    let body = http_get(&format!("127.0.0.1:{port}")).expect("the new port answers");
    let pid: i32 = body.trim().rsplit(' ').next().unwrap().parse().unwrap();
    assert!(web_new.contains(&pid));
    assert_eq!(
        call(&d, "list", json!({"name": "steady"}))["pids"],
        json!([steady]),
        "unchanged watcher untouched"
    );
    assert_eq!(
        call(&d, "list", json!({"name": "scaled"}))["pids"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        call(&d, "list", json!({}))["watchers"],
        json!(["added", "scaled", "steady", "web"])
    );
    eventually("removed watcher's process stopped", secs(10), || !alive(removed));
    let socks = call(&d, "listsockets", json!({}));
    assert_eq!(socks["sockets"].as_array().unwrap().len(), 1);
    assert_eq!(socks["sockets"][0]["port"], port);
    // An invalid config changes nothing and says where it is wrong.
    std::fs::write(
        &d.config,
        "[watchers.steady]\ncmd = \"sleep 1000\"\nnumprocesses = \"x\"\n",
    )
    .unwrap();
    let r = call(&d, "reloadconfig", json!({}));
    assert_eq!(r["status"], "error");
    assert!(
        r["reason"].as_str().unwrap().contains("ringmaster.toml:3:16"),
        "{r}"
    );
    assert_eq!(
        call(&d, "list", json!({}))["watchers"],
        json!(["added", "scaled", "steady", "web"])
    );
}

#[test]
fn sighup_reloads_the_config() {
    let mut d = Daemon::start("[watchers.a]\ncmd = \"sleep 1000\"\n");
    let a = d.wait_spawned("a", 1, secs(10))[0];
    std::fs::write(
        &d.config,
        "[watchers.a]\ncmd = \"sleep 1000\"\n[watchers.b]\ncmd = \"sleep 1000\"\n",
    )
    .unwrap();
    d.signal(libc::SIGHUP);
    d.wait_spawned("b", 1, secs(10));
    d.wait_msg(
        "configuration reloaded: watchers added: b; unchanged: a",
        None,
        secs(10),
    );
    assert!(alive(a));
}

#[test]
fn hooks_run_in_order_and_a_failing_before_hook_aborts() {
    let mut d = Daemon::start(
        r#"
[watchers.hooked]
cmd = "sleep 1000"
graceful_timeout = 2
[watchers.hooked.hooks]
before_start = "echo before_start >> {dir}/hooks"
after_start = "echo after_start >> {dir}/hooks"
before_spawn = "echo before_spawn $RINGMASTER_WID >> {dir}/hooks"
after_spawn = "echo after_spawn $RINGMASTER_PID >> {dir}/hooks"
before_stop = "echo before_stop >> {dir}/hooks"
after_stop = "echo after_stop >> {dir}/hooks"
after_reap = { cmd = "echo after_reap $RINGMASTER_PID >> {dir}/hooks", timeout = "5s" }
[watchers.vetoed]
cmd = "sleep 1000"
autostart = false
[watchers.vetoed.hooks]
before_start = "exit 1"
[watchers.guarded]
cmd = "sleep 1000"
[watchers.guarded.hooks]
before_signal = "test $RINGMASTER_PID -lt 0"
"#,
    );
    let pid = d.wait_spawned("hooked", 1, secs(10))[0];
    d.wait_for("after_start", secs(10), |v| {
        v["message"] == "hook succeeded" && v["hook"] == "after_start"
    });
    let r = call(&d, "stop", json!({"name": "hooked", "waiting": true}));
    assert_eq!(r["status"], "ok");
    d.wait_for("after_reap", secs(10), |v| {
        v["message"] == "hook succeeded" && v["hook"] == "after_reap"
    });
    let text = std::fs::read_to_string(d.path("hooks")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let pos = |p: &str| {
        lines
            .iter()
            .position(|l| l.starts_with(p))
            .unwrap_or_else(|| panic!("{p} missing: {text}"))
    };
    assert!(pos("before_start") < pos("before_spawn 1"));
    assert!(pos("before_spawn") < pos(&format!("after_spawn {pid}")));
    assert!(pos("after_spawn") < pos("after_start"));
    assert!(pos("after_start") < pos("before_stop"));
    assert!(pos("before_stop") < pos("after_stop"));
    assert!(lines.contains(&format!("after_reap {pid}").as_str()), "{text}");
    // A failing before_start aborts the start.
    let r = call(&d, "start", json!({"name": "vetoed", "waiting": true}));
    assert_eq!(r["status"], "error", "{r}");
    assert!(
        r["reason"].as_str().unwrap().contains("before_start hook failed"),
        "{r}"
    );
    assert_eq!(call(&d, "status", json!({"name": "vetoed"}))["status"], "stopped");
    d.wait_for("hook_failure logged", secs(5), |v| {
        v["message"] == "hook failed" && v["hook"] == "before_start"
    });
}
