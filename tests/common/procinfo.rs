//! What /proc says about a daemon: its process tree, zombies, open fds and
//! resident memory. The chaos and fuzz tests compare these with what the
//! daemon reports about itself.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

/// One entry of /proc: pid, parent pid and state letter (R, S, Z, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proc {
    pub pid: i32,
    pub ppid: i32,
    pub state: char,
}

/// Parses /proc/PID/stat; the command name may contain spaces and parens,
/// so the fields are read after the last ')'.
pub fn stat(pid: i32) -> Option<Proc> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = s.rsplit_once(')')?.1;
    let mut it = rest.split_whitespace();
    let state = it.next()?.chars().next()?;
    let ppid = it.next()?.parse().ok()?;
    Some(Proc { pid, ppid, state })
}

/// The process's start time (clock ticks after boot, field 22 of its stat):
/// with the pid, it names one process even when pids are reused.
pub fn start_time(pid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = s.rsplit_once(')')?.1;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Every process visible in /proc (processes that vanish meanwhile are skipped).
pub fn all() -> Vec<Proc> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(stat)
        .collect()
}

/// Every descendant of `root`, mapped to the direct child of `root` it
/// descends from (a direct child maps to itself).
pub fn descendants(root: i32) -> BTreeMap<i32, (Proc, i32)> {
    let procs = all();
    let mut by_parent: BTreeMap<i32, Vec<Proc>> = BTreeMap::new();
    for p in &procs {
        by_parent.entry(p.ppid).or_default().push(*p);
    }
    let mut out = BTreeMap::new();
    let mut stack: Vec<(Proc, i32)> = by_parent
        .get(&root)
        .map(|v| v.iter().map(|p| (*p, p.pid)).collect())
        .unwrap_or_default();
    // Bounded: a pid is visited once, and /proc holds finitely many.
    while let Some((p, top)) = stack.pop() {
        if out.insert(p.pid, (p, top)).is_some() {
            continue;
        }
        if let Some(kids) = by_parent.get(&p.pid) {
            stack.extend(kids.iter().map(|k| (*k, top)));
        }
    }
    out
}

/// The direct children of `root` in state Z (exited, not yet reaped).
pub fn zombie_children(root: i32) -> BTreeSet<i32> {
    all()
        .into_iter()
        .filter(|p| p.ppid == root && p.state == 'Z')
        .map(|p| p.pid)
        .collect()
}

/// Resident set size in KiB (VmRSS), 0 if the process is gone.
pub fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// What each open fd of `pid` points to (for failure messages).
pub fn fd_targets(pid: i32) -> BTreeMap<i32, String> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return BTreeMap::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let fd = e.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            Some((fd, target.display().to_string()))
        })
        .collect()
}

/// The argv of `pid`, space-joined ("" if gone).
pub fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|c| *c == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// A seed from the environment variable `var`, else a fresh random one.
pub fn seed_from_env(var: &str) -> u64 {
    match std::env::var(var) {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{var}={s:?} is not a u64 seed: {e}")),
        Err(_) => fastrand::u64(..),
    }
}

/// A number from the environment variable `var`, else `default`.
pub fn env_u64(var: &str, default: u64) -> u64 {
    match std::env::var(var) {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{var}={s:?} is not a number: {e}")),
        Err(_) => default,
    }
}
