//! Upgrade in place, the control connections: every established
//! connection stays open across the exec and the new image answers what
//! was asked on it — the `upgrade` itself, a request in flight, a `restart`
//! whose rollout was in progress (resumed, not begun again) — and the real
//! `circusctl` keeps working. The "new binary" is a copy of the test binary
//! (its binary id differs: it is the executable file's device, inode, size
//! and mtime), or a wrapper script that `exec`s the copy.

mod common;
#[path = "common/zmtp.rs"]
mod zmtp;
use common::*;
use ringmaster::control::client::Client;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use zmtp::Raw;

fn copy_binary(d: &Daemon, name: &str) -> PathBuf {
    let p = d.path(name);
    std::fs::copy(BIN, &p).expect("copy the binary");
    p
}

fn script(d: &Daemon, name: &str, body: &str) -> PathBuf {
    let p = d.path(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("write script");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    p
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

/// Seconds since the epoch of a log record's RFC 3339 UTC `timestamp`
/// (`2026-11-30T03:45:12.123456Z`).
fn log_time(v: &Value) -> f64 {
    let t = v["timestamp"]
        .as_str()
        .unwrap_or_else(|| panic!("no timestamp: {v}"));
    let num = |r: std::ops::Range<usize>| -> i64 { t[r].parse().unwrap_or_else(|_| panic!("timestamp {t}")) };
    let (y, m, d) = (num(0..4), num(5..7), num(8..10));
    // Days from the civil date (H. Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs: f64 = t[17..t.len() - 1]
        .parse()
        .unwrap_or_else(|_| panic!("timestamp {t}"));
    (days * 86_400 + num(11..13) * 3600 + num(14..16) * 60) as f64 + secs
}

/// A ZMTP DEALER request on a raw tcp connection; returns the reply's JSON.
fn raw_call(raw: &mut Raw, command: &str, props: Value) -> Value {
    let body = json!({"command": command, "properties": props, "id": format!("raw-{command}")});
    raw.send(&[body.to_string().as_bytes()]).expect("send");
    raw_reply(raw)
}

fn raw_reply(raw: &mut Raw) -> Value {
    let frames = raw.recv().expect("reply on the same connection");
    serde_json::from_slice(frames.last().expect("a frame")).expect("json reply")
}

const JOB: &str = r#"
[watchers.job]
cmd = "sleep 1000"
graceful_timeout = 2
"#;

#[test]
fn the_connection_that_asked_gets_the_reply_from_the_new_image() {
    let mut d = Daemon::start(JOB);
    d.wait_spawned("job", 1, secs(10));
    let before = call(&d, "globaloptions", json!({}))["options"]["binary_id"].clone();
    let new = copy_binary(&d, "ringmaster-new");
    let (r, again) = rt().block_on(async {
        let mut c = Client::connect(&endpoint(&d), secs(60)).await.expect("connect");
        let r = c
            .call("upgrade", props(json!({"binary": new.display().to_string()})))
            .await
            .expect("the upgrade reply");
        // The same connection, still open, now served by the new image.
        let again = c
            .call("globaloptions", props(json!({})))
            .await
            .expect("same connection");
        (r, again)
    });
    assert_eq!(r["status"], "ok", "{r}");
    assert_eq!(r["pid"], d.pid(), "{r}");
    assert_eq!(r["fallback"], false, "{r}");
    assert_eq!(r["from"]["binary_id"], before, "{r}");
    assert_ne!(r["to"]["binary_id"], before, "{r}");
    assert_eq!(again["options"]["binary_id"], r["to"]["binary_id"], "{again}");
    // Written by the new image once it had restored.
    let restored = d.wait_msg("upgrade: restored", None, secs(30));
    assert_eq!(restored["binary_id"], r["to"]["binary_id"], "{restored}");
    let replied = r["time"].as_f64().expect("reply time");
    assert!(
        replied >= log_time(&restored),
        "the reply ({replied}) predates the restore ({restored})"
    );
}

#[test]
fn a_request_in_flight_during_the_exec_gets_its_reply() {
    let mut d = Daemon::start(&format!("[ringmaster]\nendpoint = \"tcp://127.0.0.1:0\"\n{JOB}"));
    let ready = d.wait_msg("control channel ready", None, secs(10));
    let ep = ready["endpoint"].as_str().expect("endpoint").to_string();
    let addr = ep.trim_start_matches("tcp://").to_string();
    d.wait_spawned("job", 1, secs(10));
    let copy = copy_binary(&d, "ringmaster-new");
    // A pre-flight (and an exec) that takes a second, and says when it begins.
    let began = d.path("preflight-began");
    let slow = script(
        &d,
        "slow-new",
        &format!(
            "touch {}\nsleep 1\nexec {} \"$@\"",
            began.display(),
            copy.display()
        ),
    );
    // Handshake done before the upgrade.
    let mut raw = Raw::handshake(&addr, "DEALER", secs(60)).expect("handshake");
    let asker = std::thread::spawn(move || {
        rt().block_on(async move {
            let mut c = Client::connect(&ep, secs(60)).await.expect("connect");
            c.call("upgrade", props(json!({"binary": slow.display().to_string()})))
                .await
                .expect("the upgrade reply")
        })
    });
    eventually("the pre-flight began", secs(20), || exists(&began));
    // The daemon is busy upgrading: this waits for it, across the exec.
    let r = raw_call(&mut raw, "incr", json!({"name": "job"}));
    assert_eq!(r["status"], "ok", "{r}");
    assert_eq!(r["id"], "raw-incr", "{r}");
    let up = asker.join().expect("the asking thread");
    assert_eq!(up["status"], "ok", "{up}");
    let g = raw_call(&mut raw, "globaloptions", json!({}));
    assert_eq!(g["options"]["binary_id"], up["to"]["binary_id"], "{g}");
    // Run once, by the new image: two processes, not three.
    d.wait_spawned("job", 1, secs(10));
    let l = raw_call(&mut raw, "list", json!({"name": "job"}));
    assert_eq!(l["pids"].as_array().map(Vec::len), Some(2), "{l}");
}

#[test]
fn a_restart_whose_rollout_was_in_progress_is_resumed_and_answered() {
    let mut d = Daemon::start(&format!(
        r#"
[sockets.web]
port = 0
[watchers.web]
cmd = "python3 {w} --fd $(circus.sockets.web) --ready-after 1500 --notify"
numprocesses = 3
graceful_timeout = 10
[watchers.web.ready]
type = "notify"
start_timeout = "30s"
"#,
        w = worker_script()
    ));
    d.wait_listening("web");
    d.wait_spawned("web", 3, secs(10));
    for _ in 0..3 {
        d.wait_msg("ready", Some("web"), secs(10));
    }
    let old = pids(&d, "web");
    let ep = endpoint(&d);
    let restarter = std::thread::spawn(move || {
        rt().block_on(async move {
            let mut c = Client::connect(&ep, secs(90)).await.expect("connect");
            c.call("restart", props(json!({"name": "web", "waiting": true})))
                .await
                .expect("the restart reply")
        })
    });
    // One slot rolled (its new process ready), the next one rolling.
    let first = d.wait_spawned("web", 1, secs(10))[0];
    d.wait_for("the first new process ready", secs(20), |v| {
        v["message"] == "ready" && v["pid"].as_i64() == Some(i64::from(first))
    });
    let new = copy_binary(&d, "ringmaster-new");
    let ep = endpoint(&d);
    let up = rt().block_on(async move {
        let mut c = Client::connect(&ep, secs(60)).await.expect("connect");
        c.call("upgrade", props(json!({"binary": new.display().to_string()})))
            .await
    });
    let up = up.unwrap_or_else(|e| {
        panic!(
            "upgrade: {e}; log:\n{}",
            d.drain()
                .iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    assert_eq!(up["status"], "ok", "{up}");
    let r = restarter.join().expect("the restart thread");
    assert_eq!(r["status"], "ok", "{r}");
    let now = pids(&d, "web");
    assert_eq!(now.len(), 3, "{now:?}");
    assert!(now.is_disjoint(&old), "old {old:?}, now {now:?}");
    // The slot rolled before the exec was not rolled again: its process
    // stays, and the rollout started three processes in all.
    assert!(now.contains(&i64::from(first)), "{first} replaced: {now:?}");
    let spawned: BTreeSet<i64> = d
        .drain()
        .iter()
        .filter(|v| v["message"] == "spawned" && v["watcher"] == "web")
        .filter_map(|v| v["pid"].as_i64())
        .filter(|p| !old.contains(p))
        .collect();
    assert_eq!(spawned, now, "spawned by the rollout: {spawned:?}");
    for p in old {
        eventually("old process gone", secs(20), || !alive(p as i32));
    }
}

fn venv() -> PathBuf {
    let v = std::env::var("RINGMASTER_TEST_VENV").unwrap_or_else(|_| {
        panic!("RINGMASTER_TEST_VENV is not set: run the tests with `bash tests/run.sh`, which installs circus==0.19.0")
    });
    PathBuf::from(v)
}

fn circusctl(ep: &str, args: &[&str]) -> String {
    let bin = venv().join("bin/circusctl");
    let out = Command::new(&bin)
        .arg("--endpoint")
        .arg(ep)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", bin.display()));
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    );
    assert!(out.status.success(), "circusctl {args:?}: {o} {e}");
    o
}

#[test]
fn circusctl_works_across_an_upgrade() {
    let mut d = Daemon::start(JOB);
    d.wait_spawned("job", 1, secs(10));
    let ep = endpoint(&d);
    assert_eq!(circusctl(&ep, &["list"]), "job");
    let job = pids(&d, "job");
    let new = copy_binary(&d, "ringmaster-new");
    let up = call(&d, "upgrade", json!({"binary": new.display().to_string()}));
    assert_eq!(up["status"], "ok", "{up}");
    assert_eq!(circusctl(&ep, &["list"]), "job");
    assert_eq!(circusctl(&ep, &["numprocesses", "job"]), "1");
    assert_eq!(circusctl(&ep, &["incr", "job"]), "ok");
    d.wait_spawned("job", 1, secs(10));
    assert_eq!(circusctl(&ep, &["numprocesses", "job"]), "2");
    let now = pids(&d, "job");
    assert!(now.is_superset(&job), "{job:?} -> {now:?}");
    assert_eq!(circusctl(&ep, &["quit"]), "ok");
    assert_eq!(d.wait_exit(secs(15)), 0);
}

/// `ringmaster upgrade` prints the new image's reply, and fails when the
/// new binary could not restore and the previous one runs again.
#[test]
fn the_cli_reports_the_reply_of_the_image_that_restored() {
    let mut d = Daemon::start(JOB);
    d.wait_spawned("job", 1, secs(10));
    let before = call(&d, "globaloptions", json!({}))["options"]["binary_id"]
        .as_str()
        .expect("binary_id")
        .to_string();
    let copy = copy_binary(&d, "ringmaster-new");
    let ep = endpoint(&d);
    let cli = |binary: &PathBuf| {
        let out = Command::new(BIN)
            .args(["--endpoint", &ep, "upgrade", "--wait", "60", "--binary"])
            .arg(binary)
            .output()
            .expect("run ringmaster upgrade");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let crashing = script(
        &d,
        "crashing",
        &format!(
            "RINGMASTER_UPGRADE_TEST_FAIL=abort exec {} \"$@\"",
            copy.display()
        ),
    );
    let (code, out, err) = cli(&crashing);
    assert_ne!(code, 0, "{out} {err}");
    assert!(
        err.contains("could not restore") && err.contains(&before),
        "{err}"
    );
    d.wait_msg("upgrade: restored", None, secs(30));

    let (code, out, err) = cli(&copy);
    assert_eq!(code, 0, "{out} {err}");
    assert!(out.starts_with("upgraded in place"), "{out}");
    let now = call(&d, "globaloptions", json!({}))["options"]["binary_id"]
        .as_str()
        .expect("binary_id")
        .to_string();
    assert_ne!(now, before);
    assert!(out.contains(&now), "{out}");
}
