//! Nothing survives a stop: descendants that left the process group
//! (`setsid`, a double fork) die with their process, in both kill modes.
//! Each test asserts that the mode it asked for is the one running
//! (start-up log and `dstats`), so cgroup mode cannot silently become tree.

mod common;
use common::*;
use serde_json::json;
use std::path::Path;

/// Waits for a pid file written by a grandchild (no event exists for it).
fn pid_file(path: &Path) -> i32 {
    let mut pid = 0;
    eventually(&format!("{} written", path.display()), secs(10), || {
        pid = std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.lines().last().and_then(|l| l.trim().parse().ok()))
            .unwrap_or(0);
        pid > 0 && alive(pid)
    });
    pid
}

fn start(mode: &str, watchers: &str) -> (Daemon, serde_json::Value) {
    let config = format!("[ringmaster]\nkill_mode = \"{mode}\"\n{watchers}");
    let mut d = Daemon::start(&config);
    let v = d.wait_msg("process containment", None, secs(10));
    assert_eq!(v["kill_mode"], mode, "start-up: {v}");
    if mode == "tree" {
        // Without fork events (not root) the double-forked orphan is not attributable.
        assert_eq!(
            v["fork_events"], true,
            "tree mode runs with fork events here: {v}"
        );
    }
    d.wait_msg("control channel ready", None, secs(10));
    let r = call(&d, "dstats", json!({}));
    assert_eq!(r["info"]["kill_mode"], mode, "dstats: {r}");
    (d, v)
}

// The setsid'd grandchild stays a child of its shell; the double-forked one
// is an orphan in its own session (re-parented to the daemon) that ignores
// SIGTERM, so only the kill after graceful_timeout can end it.
const STOP_CONFIG: &str = r#"
[watchers.setsid]
cmd = '''sh -c 'setsid sh -c "echo \$\$ > {dir}/setsid.pid; exec sleep 1000" & wait' '''
graceful_timeout = 1
[watchers.daemonized]
cmd = '''sh -c '(setsid sh -c "trap \"\" TERM; echo \$\$ > {dir}/daemon.pid; exec sleep 1000" &); exec sleep 1000' '''
graceful_timeout = 1
"#;

fn stop_kills_every_descendant(mode: &str) {
    let (mut d, _) = start(mode, STOP_CONFIG);
    d.wait_spawned("setsid", 1, secs(10));
    d.wait_spawned("daemonized", 1, secs(10));
    let a = pid_file(&d.path("setsid.pid"));
    let b = pid_file(&d.path("daemon.pid"));
    let _strays = Strays(vec![a, b]);
    for name in ["setsid", "daemonized"] {
        let r = call(&d, "stop", json!({"name": name, "waiting": true}));
        assert_eq!(r["status"], "ok", "{r}");
    }
    for pid in [a, b] {
        eventually(
            &format!("{mode}: grandchild {pid} is gone after stop"),
            secs(10),
            || !alive(pid),
        );
    }
}

#[test]
fn stop_kills_setsid_and_double_forked_descendants_cgroup() {
    stop_kills_every_descendant("cgroup");
}

#[test]
fn stop_kills_setsid_and_double_forked_descendants_tree() {
    stop_kills_every_descendant("tree");
}

const RESPAWN_CONFIG: &str = r#"
[watchers.crashy]
cmd = '''sh -c 'setsid sh -c "echo \$\$ >> {dir}/gc.pid; exec sleep 1000" & wait' '''
[watchers.crashy.restart]
initial_delay = "10ms"
jitter = 0.0
"#;

fn respawn_kills_old_grandchild(mode: &str) {
    let (mut d, _) = start(mode, RESPAWN_CONFIG);
    let leader = d.wait_spawned("crashy", 1, secs(10))[0];
    let old = pid_file(&d.path("gc.pid"));
    let mut strays = Strays(vec![old]);
    unsafe { libc::kill(leader, libc::SIGKILL) };
    let next = d.wait_spawned("crashy", 1, secs(10))[0];
    assert_ne!(next, leader);
    eventually(
        &format!("{mode}: old grandchild {old} is gone after the respawn"),
        secs(10),
        || !alive(old),
    );
    // The new process's grandchild is the slot's now, and alive.
    let mut newer = old;
    eventually("the new grandchild", secs(10), || {
        newer = std::fs::read_to_string(d.path("gc.pid"))
            .ok()
            .and_then(|s| s.lines().last()?.trim().parse().ok())
            .unwrap_or(old);
        newer != old && alive(newer)
    });
    strays.0.push(newer);
    let r = call(&d, "stop", json!({"name": "crashy", "waiting": true}));
    assert_eq!(r["status"], "ok", "{r}");
    eventually(
        &format!("{mode}: grandchild {newer} is gone after stop"),
        secs(10),
        || !alive(newer),
    );
}

#[test]
fn respawn_after_sigkill_kills_the_old_setsid_grandchild_cgroup() {
    respawn_kills_old_grandchild("cgroup");
}

#[test]
fn respawn_after_sigkill_kills_the_old_setsid_grandchild_tree() {
    respawn_kills_old_grandchild("tree");
}

/// The daemon's exit removes every cgroup it created.
#[test]
fn cgroups_are_removed_at_exit() {
    let (mut d, v) = start("cgroup", STOP_CONFIG);
    let root = std::path::PathBuf::from(v["cgroup"].as_str().expect("cgroup path"));
    d.wait_spawned("setsid", 1, secs(10));
    d.wait_spawned("daemonized", 1, secs(10));
    let a = pid_file(&d.path("setsid.pid"));
    let b = pid_file(&d.path("daemon.pid"));
    let _strays = Strays(vec![a, b]);
    assert!(root.is_dir(), "{}", root.display());
    let slots = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .count();
    assert_eq!(slots, 2, "one cgroup per slot");
    assert_eq!(d.stop(secs(20)), 0);
    assert!(!root.exists(), "{} left behind", root.display());
    for pid in [a, b] {
        assert!(!alive(pid), "{pid} survived the daemon");
    }
}
