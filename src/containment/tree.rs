//! Tree containment, when no cgroup v2 subtree is writable: a slot's
//! processes are found in /proc and identified by (pid, start time), so a
//! reused pid is never mistaken for one of them.
//!
//! The rule: a slot owns
//! 1. its leader, and every process in the leader's process group, while the
//!    leader has not been reaped (after that the group id may be reused);
//! 2. every process the kernel's fork events show descending from one of
//!    the slot's leaders, even after an intermediate parent died and the
//!    orphan was re-parented to the daemon (the daemon is a child subreaper),
//!    and whatever `setsid` it ran;
//! 3. every child, in /proc, of a process it owns (closure).
//!
//! Each costs what the slot owns, never what the machine runs: children are
//! read from /proc/PID/task/TID/children, fork events from an indexed log
//! ([`super::forks`]), and the leader's group is signalled with one
//! `killpg` instead of being looked for. The reaper's snapshot of a group
//! (rule 1 after the leader is reaped) needs nothing when the fork log is
//! complete (its members descend from the leader); otherwise it looks only
//! at the daemon's own children, where the leader's orphans went (the
//! daemon is a child subreaper; if not, all of /proc is read). Without
//! the children files (a kernel without CONFIG_PROC_CHILDREN) all of /proc is
//! read instead.
//!
//! Fork events come from the kernel's process connector (netlink), which
//! needs CAP_NET_ADMIN in the initial namespaces. Without it only 1 and 3
//! hold: a process that both left the group (setsid, setpgid) and lost its
//! parent before the stop cannot be attributed, and is killed only when the
//! daemon exits (as a leftover child of the subreaper). A process forked
//! before its leader was registered (in the microseconds between exec and
//! registration) whose parent exits in that window is also lost to rule 2.

use super::forks::forks;
use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// What /proc/<pid>/stat says about one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat {
    pub(crate) pid: i32,
    pub(crate) ppid: i32,
    pub(crate) pgid: i32,
    pub(crate) start: u64,
    pub(crate) zombie: bool,
    pub(crate) threads: u32,
}

pub(crate) fn parse_stat(pid: i32, s: &str) -> Option<Stat> {
    let rest = s.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state(3) ppid(4) pgrp(5) … num_threads(20) … starttime(22).
    Some(Stat {
        pid,
        zombie: matches!(*f.first()?, "Z" | "X"),
        ppid: f.get(1)?.parse().ok()?,
        pgid: f.get(2)?.parse().ok()?,
        threads: f.get(17)?.parse().ok()?,
        start: f.get(19)?.parse().ok()?,
    })
}

pub(crate) fn stat(pid: i32) -> Option<Stat> {
    parse_stat(pid, &std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Every process in /proc now.
fn all() -> Vec<Stat> {
    let Ok(d) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    d.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(stat)
        .collect()
}

/// Whether this kernel has /proc/PID/task/TID/children.
fn children_files() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        let me = std::process::id();
        std::path::Path::new(&format!("/proc/{me}/task/{me}/children")).exists()
    })
}

fn parse_pids(s: &str, out: &mut Vec<i32>) {
    out.extend(s.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
}

/// The children of process `s` (of each of its threads).
fn children(s: &Stat) -> Vec<i32> {
    let mut out = Vec::new();
    let pid = s.pid;
    if s.threads <= 1 {
        if let Ok(t) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) {
            parse_pids(&t, &mut out);
        }
        return out;
    }
    let Ok(d) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for e in d.flatten() {
        if let Ok(t) = std::fs::read_to_string(e.path().join("children")) {
            parse_pids(&t, &mut out);
        }
    }
    out
}

/// The live members of `pgid` other than its leader that a slot could not
/// find otherwise, read while the leader is a zombie (it still holds the
/// number, so the group cannot be a reused one). `is_leader` tells the
/// daemon's children that are slot leaders (the reaper knows them).
pub(crate) fn group_members(pgid: i32, is_leader: &dyn Fn(i32) -> bool) -> Vec<(i32, u64)> {
    let member = |s: &Stat| s.pgid == pgid && s.pid != pgid && !s.zombie;
    if forks().is_some_and(|f| f.complete()) {
        // Every member descends from the leader: the fork log has them.
        return Vec::new();
    }
    if !children_files() || !subreaper() {
        return all()
            .into_iter()
            .filter(member)
            .map(|s| (s.pid, s.start))
            .collect();
    }
    // The leader's children came to the daemon (the subreaper) when it
    // exited; the members among them lead to the rest (closure, in the
    // slot's refresh).
    let Some(me) = stat(std::process::id() as i32) else {
        return Vec::new();
    };
    children(&me)
        .into_iter()
        .filter(|&p| !is_leader(p))
        .filter_map(stat)
        .filter(member)
        .map(|s| (s.pid, s.start))
        .collect()
}

/// Whether orphans come to this process (see `reaper::become_subreaper`).
fn subreaper() -> bool {
    let mut on: libc::c_int = 0;
    // SAFETY: PR_GET_CHILD_SUBREAPER writes one int through the pointer.
    let rc = unsafe { libc::prctl(libc::PR_GET_CHILD_SUBREAPER, &mut on as *mut libc::c_int) };
    rc == 0 && on != 0
}

/// One slot's processes, as (pid, start time).
#[derive(Debug, Default, Clone)]
pub(crate) struct TreeSlot {
    procs: HashMap<i32, u64>,
    /// Leaders this slot spawned whose fork-event descendants may still live.
    anchors: Vec<i32>,
}

impl TreeSlot {
    pub(crate) fn spawned(&mut self, pid: i32) {
        if let Some(f) = forks() {
            f.anchor(pid);
        }
        self.anchors.push(pid);
    }

    /// Adds processes known to belong to the slot (the reaper's snapshot).
    pub(crate) fn add(&mut self, procs: &[(i32, u64)]) {
        self.procs.extend(procs.iter().copied());
    }

    /// Recomputes the slot's live processes; `leader` is the current leader
    /// if it has not been reaped yet. Its group's other members are not
    /// looked for: [`TreeSlot::signal`] reaches them with `killpg`.
    pub(crate) fn refresh(&mut self, leader: Option<i32>) {
        if !children_files() {
            self.refresh_by_scan(leader);
            return;
        }
        let mut known: HashMap<i32, Stat> = HashMap::new();
        self.procs.retain(|&p, &mut start| match stat(p) {
            Some(s) if s.start == start && !s.zombie => {
                known.insert(p, s);
                true
            }
            _ => false,
        });
        let mut todo: Vec<i32> = self.procs.keys().copied().collect();
        let mut found = Found {
            procs: &mut self.procs,
            known: &mut known,
            todo: &mut todo,
        };
        if let Some(l) = leader {
            found.add(l);
        }
        if let Some(f) = forks() {
            for pid in f.descendants(&self.anchors) {
                found.add(pid);
            }
        }
        while let Some(p) = found.todo.pop() {
            let Some(s) = found.known.get(&p).copied() else {
                continue;
            };
            for c in children(&s) {
                found.add(c);
            }
        }
        self.forget_anchors(leader);
    }

    /// As [`TreeSlot::refresh`], from one read of all of /proc, the group's
    /// members included.
    fn refresh_by_scan(&mut self, leader: Option<i32>) {
        let table = all();
        let by_pid: HashMap<i32, Stat> = table.iter().map(|s| (s.pid, *s)).collect();
        let live = |pid: &i32, start: &u64| by_pid.get(pid).is_some_and(|s| s.start == *start && !s.zombie);
        self.procs.retain(|p, s| live(p, s));
        let add = |pid: i32, procs: &mut HashMap<i32, u64>| {
            if let Some(s) = by_pid.get(&pid).filter(|s| !s.zombie) {
                procs.insert(pid, s.start);
            }
        };
        if let Some(l) = leader {
            add(l, &mut self.procs);
            for s in table.iter().filter(|s| s.pgid == l) {
                add(s.pid, &mut self.procs);
            }
        }
        if let Some(f) = forks() {
            for pid in f.descendants(&self.anchors) {
                add(pid, &mut self.procs);
            }
        }
        let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
        for s in table.iter().filter(|s| !s.zombie) {
            children.entry(s.ppid).or_default().push(s.pid);
        }
        let mut todo: Vec<i32> = self.procs.keys().copied().collect();
        while let Some(p) = todo.pop() {
            for &c in children.get(&p).map(Vec::as_slice).unwrap_or_default() {
                if !self.procs.contains_key(&c) {
                    add(c, &mut self.procs);
                    todo.push(c);
                }
            }
        }
        self.forget_anchors(leader);
    }

    /// A dead leader whose fork-event subtree is empty needs no anchor any more.
    fn forget_anchors(&mut self, leader: Option<i32>) {
        let f = forks();
        self.anchors.retain(|&a| {
            let keep = Some(a) == leader || f.is_some_and(|f| f.has_descendants(a));
            if !keep {
                if let Some(f) = f {
                    f.release(a);
                }
            }
            keep
        });
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.procs.is_empty()
    }

    /// Whether `pid` is, or was, one of the slot's processes or leaders.
    pub(crate) fn knows(&self, pid: i32) -> bool {
        self.procs.contains_key(&pid) || self.anchors.contains(&pid)
    }

    pub(crate) fn signal(&mut self, leader: Option<i32>, sig: i32) {
        self.refresh(leader);
        for &pid in self.procs.keys() {
            // SAFETY: plain syscall; the pid was checked against its start time just now.
            unsafe { libc::kill(pid, sig) };
        }
        if let Some(l) = leader {
            // The rest of its group: an unreaped leader keeps the group's number ours.
            // SAFETY: plain syscall.
            unsafe { libc::killpg(l, sig) };
        }
    }

    /// Forgets every anchor (the slot is going away).
    pub(crate) fn release(&mut self) {
        if let Some(f) = forks() {
            for a in self.anchors.drain(..) {
                f.release(a);
            }
        }
    }

    /// The reaper's emptiness check: true once the slot is empty. It reads
    /// /proc only when something the slot knows was reaped (the last process
    /// of a slot always is: orphans come to the daemon), and otherwise at
    /// most every [`RECHECK`], so thousands of draining slots cost nothing
    /// per unrelated exit.
    pub(crate) fn emptiness(&self) -> crate::reaper::EmptyCheck {
        let mut t = self.clone();
        let mut last = Instant::now();
        Box::new(move |reaped: &[i32]| {
            let ours = reaped.is_empty() || reaped.iter().any(|&p| t.knows(p));
            if !ours && last.elapsed() < RECHECK {
                return false;
            }
            last = Instant::now();
            t.refresh(None);
            t.is_empty()
        })
    }
}

/// A refresh in progress: the slot's processes, their stats, and those
/// whose children are still to be read.
struct Found<'a> {
    procs: &'a mut HashMap<i32, u64>,
    known: &'a mut HashMap<i32, Stat>,
    todo: &'a mut Vec<i32>,
}

impl Found<'_> {
    fn add(&mut self, pid: i32) {
        if self.procs.contains_key(&pid) {
            return;
        }
        if let Some(s) = stat(pid).filter(|s| !s.zombie) {
            self.procs.insert(pid, s.start);
            self.known.insert(pid, s);
            self.todo.push(pid);
        }
    }
}

/// How often a draining slot is re-read regardless of what was reaped.
const RECHECK: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_spaces_and_parens_in_comm() {
        let s = "42 (a b) c) S 1 42 42 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 12345 0 0";
        let st = parse_stat(42, s).unwrap();
        assert_eq!(
            (st.ppid, st.pgid, st.start, st.zombie, st.threads),
            (1, 42, 12345, false, 1)
        );
    }

    /// A pid recorded for the slot that now belongs to another process (same
    /// number, other start time) is dropped, never signalled.
    #[test]
    fn a_reused_pid_is_not_a_member() {
        let me = std::process::id() as i32;
        let start = stat(me).unwrap().start;
        let mut slot = TreeSlot::default();
        slot.add(&[(me, start + 1)]);
        slot.refresh(None);
        assert!(slot.is_empty());
        slot.add(&[(me, start)]);
        slot.refresh(None);
        assert!(!slot.is_empty());
    }
}
