//! What a spawned child gets, exactly: its descriptors in place and nothing
//! else (even when the daemon's socket fds cross their targets), its stdio,
//! a named user's supplementary groups, and, when a spawn fails, which step
//! failed with which errno.

mod common;
use common::*;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;

/// Sets LISTEN_PID to the pid the daemon will have: the shell's, kept by exec.
const LISTEN_PID_LAUNCHER: [&str; 4] = ["sh", "-c", "LISTEN_PID=$$ exec \"$@\"", "sh"];

/// The `sleep` child has exec'd (its environment is readable) and reached
/// its nanosleep (see `wait_asleep`).
fn wait_exec(pid: i32) {
    wait_asleep(pid);
    assert!(!environ(pid).is_empty(), "pid {pid} has no environment");
}

fn link(pid: i32, fd: i32) -> String {
    std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/fd/{fd}: {e}"))
        .to_string_lossy()
        .into_owned()
}

/// The daemon holds socket "one" at fd 3 and "two" at fd 4 (passed by a
/// service manager); a watcher asking for ["two", "one"] must get two at 3
/// and one at 4: each source sits on the other's target.
#[test]
fn crossed_socket_fds_are_swapped_into_place() {
    let one = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let two = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let me = std::process::id() as i32;
    let (one_link, two_link) = (link(me, one.as_raw_fd()), link(me, two.as_raw_fd()));
    let (a, b) = (one.as_raw_fd(), two.as_raw_fd());
    let mut d = Daemon::start_launched(
        &LISTEN_PID_LAUNCHER,
        r#"
[sockets.one]
host = "127.0.0.1"
port = 0
[sockets.two]
host = "127.0.0.1"
port = 0
[watchers.s]
cmd = "sleep 1000"
sockets = ["two", "one"]
"#,
        "toml",
        &[("LISTEN_FDS", "2"), ("LISTEN_FDNAMES", "one:two")],
        |cmd| unsafe {
            cmd.pre_exec(move || {
                // Through fds above both, so neither source is clobbered.
                let ha = libc::fcntl(a, libc::F_DUPFD, 100);
                let hb = libc::fcntl(b, libc::F_DUPFD, 100);
                if ha < 0 || hb < 0 || libc::dup2(ha, 3) < 0 || libc::dup2(hb, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(ha);
                libc::close(hb);
                Ok(())
            });
        },
    );
    let pid = d.wait_spawned("s", 1, secs(10))[0];
    wait_exec(pid);
    assert_eq!(link(d.pid(), 3), one_link, "the daemon holds one at 3");
    assert_eq!(link(d.pid(), 4), two_link, "the daemon holds two at 4");
    assert_eq!(
        fds(pid),
        vec![0, 1, 2, 3, 4],
        "stdio and the two sockets, nothing else"
    );
    assert_eq!(link(pid, 3), two_link, "two goes to 3");
    assert_eq!(link(pid, 4), one_link, "one goes to 4");
    let env = environ(pid);
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(get("LISTEN_FDS").as_deref(), Some("2"));
    assert_eq!(get("LISTEN_FDNAMES").as_deref(), Some("two:one"));
    assert_eq!(get("LISTEN_PID"), Some(pid.to_string()));
    assert_eq!(d.stop(secs(15)), 0);
}

#[test]
fn stdio_is_the_daemons_stdin_or_dev_null_and_pipes_or_dev_null() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("daemon-stdin");
    std::fs::write(&input, b"").unwrap();
    let stdin = std::fs::File::open(&input).unwrap();
    let mut d = Daemon::start_customized(
        r#"
[watchers.open]
cmd = "sleep 1000"
close_child_stdin = false
[watchers.closed]
cmd = "sleep 1000"
close_child_stdin = true
close_child_stdout = true
close_child_stderr = true
"#,
        "toml",
        &[],
        |cmd| {
            cmd.stdin(stdin);
        },
    );
    let open = d.wait_spawned("open", 1, secs(10))[0];
    let closed = d.wait_spawned("closed", 1, secs(10))[0];
    wait_exec(open);
    wait_exec(closed);
    assert_eq!(fds(open), vec![0, 1, 2]);
    assert_eq!(fds(closed), vec![0, 1, 2]);
    assert_eq!(link(open, 0), input.to_string_lossy(), "the daemon's stdin");
    let (out, err) = (link(open, 1), link(open, 2));
    assert!(
        out.starts_with("pipe:") && err.starts_with("pipe:"),
        "{out} {err}"
    );
    assert_ne!(out, err, "stdout and stderr are separate pipes");
    for fd in 0..3 {
        assert_eq!(link(closed, fd), "/dev/null", "fd {fd}");
    }
}

/// A user with a supplementary group from /etc/group: (name, `id -G name`).
fn user_with_supplementary_group() -> (String, Vec<u32>) {
    let groups = std::fs::read_to_string("/etc/group").expect("/etc/group");
    for line in groups.lines() {
        let members = line.split(':').nth(3).unwrap_or("");
        for user in members.split(',').filter(|u| !u.is_empty()) {
            let Ok(out) = std::process::Command::new("id").args(["-G", user]).output() else {
                continue;
            };
            if !out.status.success() {
                continue;
            }
            let ids: Vec<u32> = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter_map(|g| g.parse().ok())
                .collect();
            if ids.len() > 1 {
                return (user.to_string(), ids);
            }
        }
    }
    panic!("this test needs a user with a supplementary group in /etc/group");
}

#[test]
fn a_named_user_gets_its_uid_primary_gid_and_supplementary_groups() {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test changes ids: run it as root"
    );
    let (user, mut want) = user_with_supplementary_group();
    let uid = nix::unistd::User::from_name(&user)
        .unwrap()
        .expect("passwd entry")
        .uid;
    let mut d = Daemon::start(&format!("[watchers.u]\ncmd = \"sleep 1000\"\nuid = \"{user}\"\n"));
    let pid = d.wait_spawned("u", 1, secs(10))[0];
    wait_exec(pid);
    let ids = |key: &str| -> Vec<u32> {
        proc_status(pid, key)
            .split_whitespace()
            .map(|v| v.parse().unwrap())
            .collect()
    };
    assert_eq!(ids("Uid:"), vec![uid.as_raw(); 4]);
    assert_eq!(ids("Gid:"), vec![want[0]; 4], "the primary group of {user}");
    let mut got = ids("Groups:");
    got.sort();
    want.sort();
    assert_eq!(got, want, "the groups of {user}, not the daemon's");
}

/// Each failure is reported with the step that failed and its errno, and
/// goes through the restart policy (the daemon keeps running). An unknown
/// user is a config error, and a uid without passwd entry nor gid is refused
/// before the spawn (tests/isolation.rs).
#[test]
fn failed_spawns_name_the_step_and_the_errno() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("not-executable");
    std::fs::write(&script, b"#!/bin/sh\n").unwrap();
    let cfg = format!(
        r#"
[watchers.nodir]
cmd = "sleep 1000"
working_dir = "{gone}"
max_retry = 0
[watchers.noexec]
cmd = "{script}"
max_retry = 0
[watchers.nolimit]
cmd = "sleep 1000"
rlimits = {{ nofile = 2000000000 }}
max_retry = 0
[watchers.fine]
cmd = "sleep 1000"
"#,
        gone = dir.path().join("gone").display(),
        script = script.display(),
    );
    let mut d = Daemon::start(&cfg);
    let expect = [
        (
            "nodir",
            "cannot start sleep: chdir: No such file or directory (os error 2)",
        ),
        (
            "noexec",
            &format!(
                "cannot start {}: execve: Permission denied (os error 13)",
                script.display()
            ),
        ),
        (
            "nolimit",
            "cannot start sleep: setrlimit: Operation not permitted (os error 1)",
        ),
    ];
    for (w, reason) in expect {
        let v = d.wait_for(&format!("spawn failure of {w}"), secs(10), |v| {
            v["watcher"] == w
                && v["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("spawn failed"))
        });
        assert_eq!(v["message"], format!("spawn failed: {reason}"), "{w}");
    }
    let pid = d.wait_spawned("fine", 1, secs(10))[0];
    wait_exec(pid);
    assert_eq!(d.stop(secs(15)), 0);
}

/// The cgroup directory under `dir` whose cgroup.procs lists `pid`.
fn cgroup_of(dir: &std::path::Path, pid: i32) -> Option<std::path::PathBuf> {
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    if procs.lines().any(|l| l.trim() == pid.to_string()) {
        return Some(dir.to_path_buf());
    }
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .find_map(|e| cgroup_of(&e.path(), pid))
}

/// In cgroup mode the child joins its slot's cgroup before exec, so what it
/// runs is contained from its first instruction.
#[test]
fn a_child_runs_in_its_slots_cgroup() {
    let mut d = Daemon::start("[ringmaster]\nkill_mode = \"cgroup\"\n[watchers.c]\ncmd = \"sleep 1000\"\n");
    let v = d.wait_msg("process containment", None, secs(10));
    assert_eq!(v["kill_mode"], "cgroup", "{v}");
    let root = std::path::PathBuf::from(v["cgroup"].as_str().expect("the cgroup root in the log"));
    let pid = d.wait_spawned("c", 1, secs(10))[0];
    wait_exec(pid);
    let dir =
        cgroup_of(&root, pid).unwrap_or_else(|| panic!("{pid} is in no cgroup under {}", root.display()));
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("c.1."),
        "the slot's cgroup (watcher c, wid 1): {}",
        dir.display()
    );
    assert_eq!(d.stop(secs(15)), 0);
}
