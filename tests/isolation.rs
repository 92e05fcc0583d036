//! What a child or a hook must not get from the daemon: gid 0 and the
//! daemon's groups for a uid without a passwd entry, the daemon's inherited
//! fds, signals its parent left ignored.

mod common;
use common::*;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;

#[test]
fn numeric_uid_without_passwd_entry_needs_a_gid() {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test changes ids: run it as root"
    );
    assert!(
        nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(54321))
            .unwrap()
            .is_none(),
        "uid 54321 must have no passwd entry here"
    );
    let mut d = Daemon::start(
        r#"
[watchers.nogid]
cmd = "sleep 1000"
uid = 54321
[watchers.nogid.restart]
max_retry = 1
[watchers.withgid]
cmd = "sleep 1000"
uid = 54321
gid = 54321
"#,
    );
    let v = d.wait_for("spawn failed for nogid", secs(10), |v| {
        v["watcher"] == "nogid"
            && v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("spawn failed"))
    });
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("uid 54321 has no passwd entry: set gid too"),
        "{v}"
    );
    let pid = d.wait_spawned("withgid", 1, secs(10))[0];
    eventually("exec done", secs(5), || {
        std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sleep")
    });
    assert_eq!(proc_status(pid, "Uid:").split_whitespace().next(), Some("54321"));
    assert_eq!(proc_status(pid, "Gid:").split_whitespace().next(), Some("54321"));
    assert_eq!(
        proc_status(pid, "Groups:"),
        "54321",
        "only the given gid, not the daemon's groups"
    );
}

#[test]
fn hooks_get_no_inherited_fd_and_no_ignored_or_blocked_signal() {
    let devnull = std::fs::File::open("/dev/null").unwrap();
    let src = devnull.as_raw_fd();
    let mut d = Daemon::start_customized(
        r#"
[watchers.hooked]
cmd = "sleep 1000"
[watchers.hooked.hooks]
before_start = "ls /proc/self/fd > {dir}/fds.tmp && mv {dir}/fds.tmp {dir}/fds && grep SigIgn /proc/self/status > {dir}/sigign && grep SigBlk /proc/self/status > {dir}/sigblk"
"#,
        "toml",
        &[],
        |cmd| unsafe {
            // As `sh -c 'trap "" USR2; exec 7</dev/null; exec ringmaster run …'`.
            cmd.pre_exec(move || {
                if libc::dup2(src, 7) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::signal(libc::SIGUSR2, libc::SIG_IGN);
                Ok(())
            });
        },
    );
    d.wait_spawned("hooked", 1, secs(10));
    let fds = std::fs::read_to_string(d.path("fds")).expect("the hook wrote its fds");
    let fds: Vec<&str> = fds.lines().collect();
    assert!(!fds.contains(&"7"), "fd 7 reached the hook: {fds:?}");
    let ign = std::fs::read_to_string(d.path("sigign")).expect("the hook wrote SigIgn");
    let mask = u64::from_str_radix(ign.trim().trim_start_matches("SigIgn:").trim(), 16).unwrap();
    assert_eq!(
        mask & (1 << (libc::SIGUSR2 - 1)),
        0,
        "SIGUSR2 still ignored in the hook: {ign}"
    );
    // The daemon's threads block the signals it handles (one thread takes
    // them); a hook must start with none blocked.
    let blk = std::fs::read_to_string(d.path("sigblk")).expect("the hook wrote SigBlk");
    assert_eq!(
        blk.trim().trim_start_matches("SigBlk:").trim(),
        "0000000000000000",
        "{blk}"
    );
    drop(devnull);
}
