//! Upgrade in place (`upgrade`, SIGUSR2): the real daemon executes another
//! binary in its own process. The "other binary" is a copy of the test
//! binary in the test's temp dir: the binary id is the executable file's
//! (device, inode, size, mtime), so the copy reports a different one without
//! any test-only code. Failure paths use a wrapper script as the new binary
//! (it `exec`s the copy, so the daemon's pid is kept): one that fails its
//! pre-flight, one whose restore aborts (`RINGMASTER_UPGRADE_TEST_FAIL`).

mod common;
use common::*;
use ringmaster::control::client::{Client, Subscriber};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A copy of the ringmaster binary in the daemon's temp dir.
fn copy_binary(d: &Daemon, name: &str) -> PathBuf {
    let p = d.path(name);
    std::fs::copy(BIN, &p).expect("copy the binary");
    p
}

/// An executable shell script in the daemon's temp dir.
fn script(d: &Daemon, name: &str, body: &str) -> PathBuf {
    let p = d.path(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("write script");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    p
}

fn binary_id(d: &Daemon) -> String {
    let r = call(d, "globaloptions", json!({}));
    assert_eq!(r["options"]["pid"], d.pid(), "{r}");
    r["options"]["binary_id"].as_str().expect("binary_id").to_string()
}

fn pids(d: &Daemon, watcher: &str) -> BTreeSet<i64> {
    let r = call(d, "list", json!({ "name": watcher }));
    r["pids"]
        .as_array()
        .unwrap_or_else(|| panic!("list {watcher}: {r}"))
        .iter()
        .map(|p| p.as_i64().unwrap())
        .collect()
}

/// `upgrade` to `binary`; the reply, then (on success) the new image's "restored" event.
fn upgrade(d: &mut Daemon, binary: &Path) -> Value {
    let r = call(d, "upgrade", json!({ "binary": binary.display().to_string() }));
    if r["status"] == "ok" {
        d.wait_msg("upgrade: restored", None, secs(30));
    }
    r
}

fn web_config(extra: &str) -> String {
    format!(
        r#"
[sockets.web]
port = 0
[watchers.web]
cmd = "python3 {w} --fd $(circus.sockets.web)"
numprocesses = 3
{extra}
[watchers.job]
cmd = "sh -c 'while true; do echo tick; sleep 0.05; done'"
"#,
        w = worker_script()
    )
}

#[test]
fn upgrade_keeps_every_pid_and_changes_the_binary() {
    let mut d = Daemon::start(&web_config(""));
    let addr = d.wait_listening("web");
    d.wait_spawned("web", 3, secs(10));
    d.wait_spawned("job", 1, secs(10));
    let (web, job, before) = (pids(&d, "web"), pids(&d, "job"), binary_id(&d));
    let new = copy_binary(&d, "ringmaster-new");
    let seen = || d.stdout_text().matches("tick").count();
    eventually("job output", secs(10), || seen() >= 3);
    let upgraded_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();

    let r = upgrade(&mut d, &new);
    assert_eq!(r["status"], "ok", "{r}");
    assert_eq!(r["pid"], d.pid());
    // The `logs` history came along.
    let h = call(&d, "logs", json!({"name": "job", "lines": 10000}));
    let lines = h["lines"].as_array().unwrap_or_else(|| panic!("{h}"));
    assert!(
        lines
            .iter()
            .any(|l| l["time"].as_f64().unwrap() < upgraded_at && l["line"] == "tick"),
        "{h}"
    );
    assert_eq!(r["from"]["binary_id"], before.as_str());
    assert_ne!(r["to"]["binary_id"], before.as_str());

    // Same daemon, new binary, same processes (none spawned by the new image).
    assert_eq!(binary_id(&d), r["to"]["binary_id"].as_str().unwrap());
    assert_eq!(pids(&d, "web"), web);
    assert_eq!(pids(&d, "job"), job);
    let status = call(&d, "status", json!({"verbose": true}));
    assert_eq!(status["daemon"]["binary_id"], r["to"]["binary_id"], "{status}");
    assert!(http_get(&addr).unwrap().contains("hello from pid"));

    // Output capture goes on from the inherited pipes.
    let ticks = || d.stdout_text().matches("tick").count();
    let n = ticks();
    eventually("job output after the upgrade", secs(10), || ticks() >= n + 5);

    // Control and pubsub work: a subscriber sees the events of a scale-up.
    rt().block_on(async {
        let mut sub = Subscriber::connect(&pubsub(&d), &["watcher.job.".to_string()])
            .await
            .expect("subscribe");
        let mut c = Client::connect(&endpoint(&d), secs(5)).await.expect("connect");
        let deadline = Instant::now() + secs(10);
        let mut n = 1;
        loop {
            n += 1;
            let r = c
                .call(
                    "set",
                    props(json!({"name": "job", "options": {"numprocesses": n}})),
                )
                .await
                .expect("set");
            assert_eq!(r["status"], "ok", "{r}");
            match tokio::time::timeout(Duration::from_millis(300), sub.next()).await {
                Ok(Ok((t, _))) if t.starts_with("watcher.job.") => break,
                _ if Instant::now() > deadline => panic!("no pubsub event after the upgrade"),
                _ => continue,
            }
        }
    });
    // The processes spawned before the upgrade are still the same ones.
    assert!(pids(&d, "web") == web);
    assert!(d.stop(secs(10)) == 0);
}

/// A bounded HTTP load: one request per connection until stopped (at most
/// 60 s and 200,000 requests); counts answers and records failures.
struct Load {
    stop: Arc<AtomicBool>,
    answers: Arc<Mutex<u64>>,
    failures: Arc<Mutex<Vec<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(addr: &str, threads: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let answers = Arc::new(Mutex::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..threads)
            .map(|_| {
                let (s, a, f, addr) = (stop.clone(), answers.clone(), failures.clone(), addr.to_string());
                std::thread::spawn(move || {
                    let t0 = Instant::now();
                    let mut n = 0;
                    while !s.load(Ordering::Relaxed) && t0.elapsed() < secs(60) && n < 200_000 {
                        n += 1;
                        match http_get(&addr) {
                            Ok(body) if body.contains("hello from pid") => *a.lock().unwrap() += 1,
                            Ok(body) => f.lock().unwrap().push(format!("bad body {body:?}")),
                            Err(e) => f.lock().unwrap().push(e.to_string()),
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            answers,
            failures,
            threads,
        }
    }

    fn count(&self) -> u64 {
        *self.answers.lock().unwrap()
    }

    fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        let n = *self.answers.lock().unwrap();
        (n, self.failures.lock().unwrap().clone())
    }
}

#[test]
fn upgrade_under_http_load_fails_no_request() {
    let mut d = Daemon::start(&web_config(""));
    let addr = d.wait_listening("web");
    d.wait_spawned("web", 3, secs(10));
    let (web, daemon) = (pids(&d, "web"), d.pid());
    let new = copy_binary(&d, "ringmaster-new");
    let load = Load::start(&addr, 4);
    eventually("load running", secs(20), || load.count() >= 200);
    // There and back: the copy, then the original binary again.
    for binary in [new.as_path(), Path::new(BIN)] {
        let n = load.count();
        let r = upgrade(&mut d, binary);
        assert_eq!(r["status"], "ok", "{r}");
        eventually("requests after the upgrade", secs(20), || load.count() >= n + 200);
    }
    let (answers, failures) = load.finish();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {:?}",
        failures.len(),
        answers + failures.len() as u64,
        &failures[..failures.len().min(5)]
    );
    assert_eq!(d.pid(), daemon);
    assert_eq!(pids(&d, "web"), web);
    eprintln!("two upgrades under load: {answers} requests, 0 failed");
}

/// The same measured by wrk (Debian's `wrk`, installed by tests/run.sh):
/// two upgrades while wrk keeps 8 connections busy on the daemon-held
/// socket; wrk must report neither a socket error nor a non-2xx answer.
#[test]
fn upgrade_under_wrk_fails_no_request() {
    let run = Duration::from_secs(10);
    let mut d = Daemon::start(&web_config(""));
    let addr = d.wait_listening("web");
    d.wait_spawned("web", 3, secs(10));
    let (web, daemon) = (pids(&d, "web"), d.pid());
    http_get(&addr).expect("a worker answers before the load starts");
    let new = copy_binary(&d, "ringmaster-new");
    let started = Instant::now();
    let wrk = std::process::Command::new("wrk")
        .args(["-t2", "-c8", "--timeout", "5s", &format!("-d{}s", run.as_secs())])
        .arg(format!("http://{addr}/"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("wrk (Debian package wrk) is required: `bash tests/run.sh` installs it");
    let wrk_pid = wrk.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(wrk.wait_with_output());
    });
    for binary in [new.as_path(), Path::new(BIN)] {
        let r = upgrade(&mut d, binary);
        assert_eq!(r["status"], "ok", "{r}");
    }
    let upgraded_at = started.elapsed();
    let out = match rx.recv_timeout(run + secs(30)) {
        Ok(out) => out.expect("wait for wrk"),
        Err(_) => {
            // SAFETY: plain syscall on the wrk we started.
            unsafe { libc::kill(wrk_pid, libc::SIGKILL) };
            panic!("wrk did not end within its run + 30 s");
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "wrk failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        upgraded_at + secs(1) < run,
        "both upgrades must end while wrk still runs (they took {upgraded_at:?} of its {run:?})"
    );
    let requests: u64 = text
        .lines()
        .find_map(|l| l.trim().split_once(" requests in ").map(|(n, _)| n.to_string()))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no request count in wrk's report:\n{text}"));
    assert!(requests >= 100, "wrk made only {requests} requests:\n{text}");
    assert!(
        !text.contains("Socket errors") && !text.contains("Non-2xx"),
        "wrk saw failed requests across the upgrades:\n{text}"
    );
    assert_eq!(d.pid(), daemon);
    assert_eq!(pids(&d, "web"), web);
    eprintln!("two upgrades under wrk: {requests} requests, 0 errors, 0 non-2xx");
}

#[test]
fn a_binary_that_fails_its_preflight_changes_nothing() {
    let mut d = Daemon::start(&web_config(""));
    d.wait_spawned("web", 3, secs(10));
    let (web, before) = (pids(&d, "web"), binary_id(&d));
    let broken = script(&d, "broken", "echo 'this build is broken' >&2; exit 3");
    let r = upgrade(&mut d, &broken);
    assert_eq!(r["status"], "error", "{r}");
    let why = r["reason"].as_str().unwrap();
    assert!(
        why.contains("pre-flight") && why.contains("this build is broken"),
        "{why}"
    );

    let missing = d.path("no-such-binary");
    let r = upgrade(&mut d, &missing);
    assert_eq!(r["status"], "error", "{r}");

    // A config file the new binary cannot load: refused by its pre-flight.
    let cfg = std::fs::read_to_string(&d.config).unwrap();
    std::fs::write(&d.config, "[watchers.x\n").unwrap();
    let new = copy_binary(&d, "ringmaster-new");
    let r = upgrade(&mut d, &new);
    assert_eq!(r["status"], "error", "{r}");
    assert!(r["reason"].as_str().unwrap().contains("cannot load"), "{r}");
    std::fs::write(&d.config, cfg).unwrap();

    // Nothing changed, and the daemon still acts on requests.
    assert_eq!(binary_id(&d), before);
    assert_eq!(pids(&d, "web"), web);
    let r = call(&d, "incr", json!({"name": "web", "waiting": true}));
    assert_eq!(r["status"], "ok", "{r}");
    assert_eq!(pids(&d, "web").len(), 4);
}

#[test]
fn a_running_spec_that_differs_from_the_file_is_refused() {
    let mut d = Daemon::start(&web_config(""));
    d.wait_spawned("web", 3, secs(10));
    let before = binary_id(&d);
    let r = call(
        &d,
        "set",
        json!({"name": "job", "options": {"graceful_timeout": 7}}),
    );
    assert_eq!(r["status"], "ok", "{r}");
    let new = copy_binary(&d, "ringmaster-new");
    let r = upgrade(&mut d, &new);
    assert_eq!(r["status"], "error", "{r}");
    assert!(
        r["reason"]
            .as_str()
            .unwrap()
            .contains("job (changed since loaded)"),
        "{r}"
    );
    assert_eq!(binary_id(&d), before);
}

#[test]
fn a_restore_that_crashes_falls_back_to_the_old_binary() {
    let mut d = Daemon::start(&web_config(""));
    let addr = d.wait_listening("web");
    d.wait_spawned("web", 3, secs(10));
    d.wait_spawned("job", 1, secs(10));
    let (web, job, before) = (pids(&d, "web"), pids(&d, "job"), binary_id(&d));
    let copy = copy_binary(&d, "ringmaster-new");
    for how in ["abort", "error"] {
        let crashing = script(
            &d,
            &format!("crashing-{how}"),
            &format!(
                "RINGMASTER_UPGRADE_TEST_FAIL={how} exec {} \"$@\"",
                copy.display()
            ),
        );
        let r = call(&d, "upgrade", json!({ "binary": crashing.display().to_string() }));
        assert_eq!(r["status"], "ok", "{r}");
        // The reply comes from the image that restored: the old binary again.
        assert_eq!(r["fallback"], true, "{r}");
        assert_eq!(r["to"]["binary_id"], before.as_str(), "{r}");
        // The new image restores, fails, and the old binary restores the same state.
        d.wait_for("the fallback restoring", secs(30), |v| {
            v["message"] == "upgrade: restoring" && v["fallback"] == true
        });
        d.wait_msg("upgrade: restored", None, secs(30));
        assert_eq!(binary_id(&d), before, "{how}: the old binary runs again");
        assert_eq!(pids(&d, "web"), web, "{how}");
        assert_eq!(pids(&d, "job"), job, "{how}");
        assert!(http_get(&addr).unwrap().contains("hello from pid"));
    }
    // The fallback image can itself be upgraded.
    let r = upgrade(&mut d, &copy);
    assert_eq!(r["status"], "ok", "{r}");
    assert_ne!(binary_id(&d), before);
}

#[test]
fn an_exit_during_the_exec_is_reaped_and_respawned_by_the_new_image() {
    let mut d = Daemon::start(&web_config(""));
    d.wait_spawned("web", 3, secs(10));
    let web = pids(&d, "web");
    let victim = *web.iter().next().unwrap();
    let copy = copy_binary(&d, "ringmaster-new");
    // Run as the daemon's pid, after the snapshot and before the new image:
    // the victim dies and stays a zombie until the new image reaps it
    // (Python, unlike a shell, never waits for children it did not start).
    let killer = d.path("killer");
    std::fs::write(
        &killer,
        format!(
            r#"#!/usr/bin/env python3
import os, sys, time
if sys.argv[1:2] == ["run"]:
    os.kill({victim}, 9)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open("/proc/{victim}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                break
os.execv("{copy}", ["{copy}"] + sys.argv[1:])
"#,
            copy = copy.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&killer, std::fs::Permissions::from_mode(0o755)).unwrap();
    let r = upgrade(&mut d, &killer);
    assert_eq!(r["status"], "ok", "{r}");
    let v = d.wait_for("the victim's exit", secs(10), |v| {
        v["message"] == "exited" && v["pid"] == victim
    });
    assert_eq!(v["watcher"], "web");
    let respawned = d.wait_spawned("web", 1, secs(10))[0] as i64;
    eventually("the victim reaped", secs(10), || {
        !Path::new(&format!("/proc/{victim}")).exists()
    });
    let now = pids(&d, "web");
    let expected: BTreeSet<i64> = web
        .iter()
        .copied()
        .filter(|&p| p != victim)
        .chain([respawned])
        .collect();
    assert_eq!(now, expected);
}

#[test]
fn a_slot_backing_off_during_the_upgrade_is_respawned_by_the_new_image() {
    let mut d = Daemon::start(
        r#"
[watchers.crash]
cmd = "sh -c 'exit 3'"
[watchers.crash.restart]
min_uptime = "1s"
initial_delay = "1500ms"
jitter = 0.0
max_retry = -1
"#,
    );
    d.wait_spawned("crash", 1, secs(10));
    d.wait_msg("process failed quickly; backing off", Some("crash"), secs(10));
    let new = copy_binary(&d, "ringmaster-new");
    let r = upgrade(&mut d, &new);
    assert_eq!(r["status"], "ok", "{r}");
    // Still backing off in the new image: it spawns again when the delay is over.
    d.wait_spawned("crash", 1, secs(10));
    d.wait_msg("process failed quickly; backing off", Some("crash"), secs(10));
}

#[test]
fn a_rollout_in_progress_is_resumed_by_the_new_image() {
    let mut d = Daemon::start(&format!(
        r#"
[sockets.web]
port = 0
[watchers.web]
cmd = "python3 {w} --fd $(circus.sockets.web) --ready-after 400 --notify"
numprocesses = 3
graceful_timeout = 10
[watchers.web.ready]
type = "notify"
start_timeout = "20s"
"#,
        w = worker_script()
    ));
    let addr = d.wait_listening("web");
    d.wait_spawned("web", 3, secs(10));
    for _ in 0..3 {
        d.wait_msg("ready", Some("web"), secs(10));
    }
    let old = pids(&d, "web");
    let load = Load::start(&addr, 2);
    eventually("load running", secs(20), || load.count() >= 50);
    let r = call(&d, "restart", json!({"name": "web", "waiting": false}));
    assert_eq!(r["status"], "ok", "{r}");
    // Mid-rollout: one new process spawned, not ready yet.
    d.wait_spawned("web", 1, secs(10));
    let new = copy_binary(&d, "ringmaster-new");
    let r = upgrade(&mut d, &new);
    assert_eq!(r["status"], "ok", "{r}");
    d.wait_msg("upgrade: resuming the rollout", Some("web"), secs(10));
    // The rollout ends with 3 ready processes, none of them an old one.
    eventually("the rollout finished", secs(60), || {
        let st = call(&d, "status", json!({"name": "web", "verbose": true}));
        let procs = st["details"][0]["processes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let now: BTreeSet<i64> = procs.iter().filter_map(|p| p["pid"].as_i64()).collect();
        procs.len() == 3 && procs.iter().all(|p| p["ready"] == true) && now.is_disjoint(&old)
    });
    let (answers, failures) = load.finish();
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    for p in old {
        eventually("old process gone", secs(20), || !alive(p as i32));
    }
    eprintln!("rollout across an upgrade: {answers} requests, 0 failed");
}

#[test]
fn sigusr2_upgrades_to_the_binary_at_the_running_path() {
    let mut d = Daemon::start(&web_config(""));
    d.wait_spawned("web", 3, secs(10));
    let (web, before) = (pids(&d, "web"), binary_id(&d));
    d.signal(libc::SIGUSR2);
    d.wait_msg("upgrade: restored", None, secs(30));
    // Same file, so the same binary id; every process kept.
    assert_eq!(binary_id(&d), before);
    assert_eq!(pids(&d, "web"), web);
}

#[test]
fn systemd_sees_reloading_then_ready_with_the_same_mainpid() {
    let mut m = common::notify::FakeManager::new();
    let mut d = Daemon::start_with(
        "[watchers.sleeper]\ncmd = \"sleep 1000\"\n",
        "toml",
        &[("NOTIFY_SOCKET", &m.path), ("WATCHDOG_USEC", "400000")],
    );
    let ready = m.expect(&["READY=1"], secs(10));
    assert!(ready.contains(&format!("MAINPID={}", d.pid())), "{ready}");
    let new = copy_binary(&d, "ringmaster-new");
    let r = upgrade(&mut d, &new);
    assert_eq!(r["status"], "ok", "{r}");
    m.expect(&["RELOADING=1"], secs(10));
    let ready = m.expect(&["READY=1"], secs(10));
    assert!(ready.contains(&format!("MAINPID={}", d.pid())), "{ready}");
    // The new image keeps the watchdog going, and hides the variables from children.
    m.expect(&["WATCHDOG=1"], secs(5));
    let before = pids(&d, "sleeper");
    let r = call(&d, "incr", json!({"name": "sleeper", "waiting": true}));
    assert_eq!(r["status"], "ok", "{r}");
    let newest = *pids(&d, "sleeper")
        .difference(&before)
        .next()
        .expect("a new process") as i32;
    let env = environ(newest);
    assert!(
        !env.iter().any(|(k, _)| k == "NOTIFY_SOCKET"
            || k.starts_with("WATCHDOG_")
            || k.starts_with("RINGMASTER_UPGRADE")),
        "{env:?}"
    );
}

#[test]
fn slots_not_started_yet_by_warmup_delay_are_started_by_the_new_image() {
    let mut d =
        Daemon::start("[watchers.slow]\ncmd = \"sleep 1000\"\nnumprocesses = 3\nwarmup_delay = \"1500ms\"\n");
    let first = d.wait_spawned("slow", 1, secs(10))[0] as i64;
    let new = copy_binary(&d, "ringmaster-new");
    let r = upgrade(&mut d, &new);
    assert_eq!(r["status"], "ok", "{r}");
    d.wait_spawned("slow", 2, secs(10));
    let now = pids(&d, "slow");
    assert_eq!(now.len(), 3, "{now:?}");
    assert!(now.contains(&first));
}

#[test]
fn a_sigterm_during_the_exec_waits_for_the_new_image_and_stops_gracefully() {
    let mut d = Daemon::start("[watchers.sleeper]\ncmd = \"sleep 1000\"\n");
    d.wait_spawned("sleeper", 1, secs(10));
    let copy = copy_binary(&d, "ringmaster-new");
    // Run as the daemon's pid between the images: the SIGTERM must stay
    // pending (blocked across the exec) until the new image handles it.
    let term = script(
        &d,
        "term",
        &format!(
            "[ \"$1\" = run ] && kill -TERM $$\nexec {} \"$@\"",
            copy.display()
        ),
    );
    let r = call(&d, "upgrade", json!({ "binary": term.display().to_string() }));
    assert_eq!(r["status"], "ok", "{r}");
    assert_eq!(
        d.wait_exit(secs(30)),
        0,
        "a graceful stop, not a death by SIGTERM"
    );
    assert!(d.log.iter().any(|v| v["message"] == "upgrade: restored"));
    assert!(d.log.iter().any(|v| v["message"] == "all watchers stopped"));
}
