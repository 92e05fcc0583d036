//! The daemon as a container's init: pid 1 of a real PID namespace
//! (`unshare --pid --fork --mount-proc`, as root). `--kill-child` makes the
//! namespace die with `unshare`, so a failed test leaves nothing behind.

mod common;
use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

const IN_NAMESPACE: [&str; 5] = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"];

fn start_as_init(cfg: &str) -> Daemon {
    let ok = Command::new("unshare")
        .arg("--version")
        .output()
        .expect("unshare (util-linux) is required for the PID namespace tests");
    assert!(ok.status.success(), "unshare --version failed");
    // SAFETY: plain syscall.
    assert_eq!(unsafe { libc::geteuid() }, 0, "a PID namespace needs root");
    Daemon::start_launched(&IN_NAMESPACE, cfg, "toml", &[], |_| {})
}

/// Pids (in our namespace) of `pid`'s children, every thread's.
fn children(pid: i32) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|s| {
            s.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}

/// The daemon: `unshare`'s only child, pid 1 inside.
fn daemon_pid(d: &Daemon) -> i32 {
    let mut found = None;
    eventually("unshare forked the daemon", secs(10), || {
        found = children(d.pid()).first().copied();
        found.is_some()
    });
    let pid = found.unwrap_or(-1);
    assert_eq!(ns_pid(pid), Some(1), "the daemon is pid 1 in its namespace");
    pid
}

/// `pid`'s number in the innermost namespace it belongs to.
fn ns_pid(pid: i32) -> Option<i32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("NSpid:"))?;
    line.split_whitespace().last()?.parse().ok()
}

fn read_file(d: &Daemon, name: &str) -> String {
    let p = d.path(name);
    eventually(&format!("{name} written"), secs(10), || exists(&p));
    std::fs::read_to_string(p).unwrap_or_default()
}

#[test]
fn orphans_are_reaped_by_the_daemon_as_pid_1() {
    // The inner sh leaves a background sleep behind and exits: the sleep is
    // re-parented to pid 1, the daemon.
    let mut d = start_as_init(
        r#"
[watchers.parent]
cmd = '''sh -c 'sh -c "sleep 1000 & echo \$! > {dir}/orphan.tmp && mv {dir}/orphan.tmp {dir}/orphan"; exec sleep 1000' '''
"#,
    );
    let daemon = daemon_pid(&d);
    d.wait_spawned("parent", 1, secs(10));
    let inner: i32 = read_file(&d, "orphan").trim().parse().expect("the orphan's pid");
    let mut orphan = None;
    eventually("the orphan is the daemon's child", secs(10), || {
        orphan = children(daemon).into_iter().find(|&p| ns_pid(p) == Some(inner));
        orphan.is_some()
    });
    let orphan = orphan.unwrap_or(-1);
    // SAFETY: plain syscall on a process this test started (through the daemon).
    unsafe { libc::kill(orphan, libc::SIGKILL) };
    d.wait_for("the orphan reaped", secs(10), |v| {
        v["message"] == "reaped orphan" && v["pid"] == inner
    });
    assert!(
        !exists(std::path::Path::new(&format!("/proc/{orphan}"))),
        "the orphan is still there (a zombie)"
    );
    // SAFETY: as above.
    unsafe { libc::kill(daemon, libc::SIGTERM) };
    assert_eq!(d.wait_exit(secs(20)), 0);
}

#[test]
fn sigterm_exits_zero_within_shutdown_timeout() {
    // The process ignores SIGTERM and graceful_timeout is a minute: only
    // shutdown_timeout ends the stop early.
    let mut d = start_as_init(
        r#"
[ringmaster]
shutdown_timeout = "1s"
[watchers.stubborn]
cmd = '''sh -c 'trap "" TERM; touch {dir}/trapped; exec sleep 1000' '''
graceful_timeout = 60
"#,
    );
    let daemon = daemon_pid(&d);
    d.wait_spawned("stubborn", 1, secs(10));
    read_file(&d, "trapped");
    let t0 = Instant::now();
    // SAFETY: plain syscall on the daemon this test started.
    unsafe { libc::kill(daemon, libc::SIGTERM) };
    assert_eq!(d.wait_exit(secs(20)), 0, "a requested stop exits 0");
    assert!(t0.elapsed() < Duration::from_secs(10), "took {:?}", t0.elapsed());
    d.wait_for("the timeout event", secs(1), |v| {
        v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("shutdown_timeout"))
            && v["timeout_s"] == 1.0
    });
}

#[test]
fn critical_watcher_exiting_non_zero_exits_non_zero() {
    let mut d = start_as_init(
        r#"
[watchers.app]
cmd = "sh -c 'exit 3'"
respawn = false
critical = true
[watchers.sidecar]
cmd = "sleep 1000"
"#,
    );
    assert_eq!(d.wait_exit(secs(20)), 1);
}

#[test]
fn critical_watcher_failing_exits_non_zero() {
    let mut d = start_as_init(
        r#"
[watchers.app]
cmd = "false"
critical = true
max_retry = 1
[watchers.sidecar]
cmd = "sleep 1000"
"#,
    );
    assert_eq!(d.wait_exit(secs(20)), 1);
}

#[test]
fn non_critical_exit_keeps_the_daemon_running() {
    // The same exit without `critical`: the daemon stays, a stop exits 0.
    let mut d = start_as_init(
        r#"
[watchers.app]
cmd = "sh -c 'exit 3'"
respawn = false
[watchers.sidecar]
cmd = "sleep 1000"
"#,
    );
    let daemon = daemon_pid(&d);
    d.wait_for("app stopped", secs(10), |v| {
        v["message"] == "watcher state" && v["watcher"] == "app" && v["state"] == "stopped"
    });
    assert_eq!(d.wait_spawned("sidecar", 1, secs(10)).len(), 1);
    // SAFETY: plain syscall on the daemon this test started.
    unsafe { libc::kill(daemon, libc::SIGTERM) };
    assert_eq!(d.wait_exit(secs(20)), 0);
}

#[test]
fn init_flag_outside_pid_1() {
    // `run --init` without a namespace: a subreaper, same exit codes.
    let mut d = Daemon::start_customized(
        "[watchers.app]\ncmd = \"sh -c 'exit 3'\"\nrespawn = false\ncritical = true\n",
        "toml",
        &[],
        |cmd| {
            cmd.arg("--init");
        },
    );
    d.wait_for("running as init", secs(10), |v| {
        v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("running as init"))
    });
    assert_eq!(d.wait_exit(secs(20)), 1);
}
