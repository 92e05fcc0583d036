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
//! Fork events come from the kernel's process connector (netlink), which
//! needs CAP_NET_ADMIN in the initial namespaces. Without it only 1 and 3
//! hold: a process that both left the group (setsid, setpgid) and lost its
//! parent before the stop cannot be attributed, and is killed only when the
//! daemon exits (as a leftover child of the subreaper). A process forked
//! before its leader was registered (in the microseconds between exec and
//! registration) whose parent exits in that window is also lost to rule 2.

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Mutex, OnceLock};

/// What /proc/<pid>/stat says about one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat {
    pub(crate) pid: i32,
    pub(crate) ppid: i32,
    pub(crate) pgid: i32,
    pub(crate) start: u64,
    pub(crate) zombie: bool,
}

pub(crate) fn parse_stat(pid: i32, s: &str) -> Option<Stat> {
    let rest = s.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state(3) ppid(4) pgrp(5) … starttime(22).
    Some(Stat {
        pid,
        zombie: matches!(*f.first()?, "Z" | "X"),
        ppid: f.get(1)?.parse().ok()?,
        pgid: f.get(2)?.parse().ok()?,
        start: f.get(19)?.parse().ok()?,
    })
}

pub(crate) fn stat(pid: i32) -> Option<Stat> {
    parse_stat(pid, &std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Every process in /proc now.
pub(crate) fn all() -> Vec<Stat> {
    let Ok(d) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    d.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(stat)
        .collect()
}

/// The live members of `pgid` other than `leader`, read while the leader is
/// a zombie (it still holds the number, so the group cannot be a reused one).
pub(crate) fn group_members(pgid: i32) -> Vec<(i32, u64)> {
    all()
        .into_iter()
        .filter(|s| s.pgid == pgid && s.pid != pgid && !s.zombie)
        .map(|s| (s.pid, s.start))
        .collect()
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
    /// if it has not been reaped yet.
    pub(crate) fn refresh(&mut self, leader: Option<i32>) {
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
        // A dead leader whose fork-event subtree is empty needs no anchor any more.
        let f = forks();
        self.anchors.retain(|&a| {
            let keep = Some(a) == leader || f.is_some_and(|f| !f.descendants(&[a]).is_empty());
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

    pub(crate) fn signal(&mut self, leader: Option<i32>, sig: i32) {
        self.refresh(leader);
        for &pid in self.procs.keys() {
            // SAFETY: plain syscall; the pid was checked against its start time just now.
            unsafe { libc::kill(pid, sig) };
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
}

/// The daemon's descendants as the kernel's fork events show them: child →
/// parent, for every process that descends from the daemon.
pub(crate) struct ForkLog {
    inner: Mutex<Log>,
}

#[derive(Default)]
struct Log {
    parent: HashMap<i32, i32>,
    /// Slot leaders: kept after they exit so their orphans stay attributed.
    anchors: HashSet<i32>,
}

static FORKS: OnceLock<Option<ForkLog>> = OnceLock::new();

pub(crate) fn forks() -> Option<&'static ForkLog> {
    FORKS.get().and_then(Option::as_ref)
}

impl ForkLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, Log> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn anchor(&self, pid: i32) {
        self.lock().anchors.insert(pid);
    }

    fn release(&self, pid: i32) {
        let mut l = self.lock();
        l.anchors.remove(&pid);
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            l.exited(pid);
        }
    }

    /// Live-or-not descendants of `roots` in the log (roots excluded).
    fn descendants(&self, roots: &[i32]) -> Vec<i32> {
        let l = self.lock();
        let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
        for (&c, &p) in &l.parent {
            children.entry(p).or_default().push(c);
        }
        let mut out = Vec::new();
        let mut todo: Vec<i32> = roots.to_vec();
        let mut seen: HashSet<i32> = roots.iter().copied().collect();
        while let Some(p) = todo.pop() {
            for &c in children.get(&p).map(Vec::as_slice).unwrap_or_default() {
                if seen.insert(c) {
                    out.push(c);
                    todo.push(c);
                }
            }
        }
        out
    }

    fn fork(&self, me: i32, parent: i32, child: i32) {
        let mut l = self.lock();
        if parent == me || l.parent.contains_key(&parent) {
            l.parent.insert(child, parent);
        }
    }

    fn exit(&self, pid: i32) {
        let mut l = self.lock();
        if !l.anchors.contains(&pid) {
            l.exited(pid);
        }
    }
}

impl Log {
    /// An exited process's children now hang from its parent, as the
    /// kernel re-parents them (to us, the subreaper) but we keep their origin.
    fn exited(&mut self, pid: i32) {
        if let Some(pp) = self.parent.remove(&pid) {
            for v in self.parent.values_mut() {
                if *v == pid {
                    *v = pp;
                }
            }
        }
    }
}

const NETLINK_CONNECTOR: i32 = 11;
const CN_IDX_PROC: u32 = 1;
const CN_VAL_PROC: u32 = 1;
const PROC_CN_MCAST_LISTEN: u32 = 1;
const PROC_EVENT_FORK: u32 = 0x0000_0001;
const PROC_EVENT_EXIT: u32 = 0x8000_0000;
const NLMSG_HDR: usize = 16;
const CN_MSG: usize = 20;

/// Subscribes to the kernel's fork and exit events (root only) and keeps the
/// fork log on a thread of its own. Returns whether fork events are on.
pub(crate) fn start_fork_log() -> Result<(), String> {
    let sock = open_connector()?;
    let log = FORKS.get_or_init(|| {
        Some(ForkLog {
            inner: Mutex::new(Log::default()),
        })
    });
    if log.is_none() {
        return Err("fork log already disabled".into());
    }
    std::thread::Builder::new()
        .name("fork-events".into())
        .stack_size(128 * 1024)
        .spawn(move || read_events(sock))
        .map_err(|e| format!("cannot start the fork-events thread: {e}"))?;
    Ok(())
}

fn open_connector() -> Result<OwnedFd, String> {
    let err = |what: &str| format!("{what}: {}", std::io::Error::last_os_error());
    // SAFETY: plain syscalls on a socket this function owns; the structs are plain data.
    unsafe {
        let fd = libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            NETLINK_CONNECTOR,
        );
        if fd < 0 {
            return Err(err("netlink connector socket"));
        }
        let sock = OwnedFd::from_raw_fd(fd);
        let mut addr: libc::sockaddr_nl = std::mem::zeroed();
        addr.nl_family = libc::AF_NETLINK as u16;
        addr.nl_groups = CN_IDX_PROC;
        if libc::bind(
            fd,
            (&addr as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as u32,
        ) != 0
        {
            return Err(err("bind to the process connector"));
        }
        let rcvbuf: libc::c_int = 4 << 20;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&rcvbuf as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as u32,
        );
        let mut msg = [0u8; NLMSG_HDR + CN_MSG + 4];
        let len = msg.len() as u32;
        msg[0..4].copy_from_slice(&len.to_ne_bytes());
        msg[4..6].copy_from_slice(&(libc::NLMSG_DONE as u16).to_ne_bytes());
        msg[12..16].copy_from_slice(&0u32.to_ne_bytes());
        let c = NLMSG_HDR;
        msg[c..c + 4].copy_from_slice(&CN_IDX_PROC.to_ne_bytes());
        msg[c + 4..c + 8].copy_from_slice(&CN_VAL_PROC.to_ne_bytes());
        msg[c + 16..c + 18].copy_from_slice(&4u16.to_ne_bytes());
        msg[c + CN_MSG..].copy_from_slice(&PROC_CN_MCAST_LISTEN.to_ne_bytes());
        if libc::send(sock.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) < 0 {
            return Err(err("subscribe to fork events"));
        }
        Ok(sock)
    }
}

fn read_events(sock: OwnedFd) {
    let Some(log) = forks() else { return };
    let me = std::process::id() as i32;
    let mut buf = vec![0u8; 64 * 1024];
    let mut warned = false;
    loop {
        // SAFETY: recv into a buffer we own, bounded by its length.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ENOBUFS) => {
                    if !warned {
                        warned = true;
                        tracing::warn!("fork events were lost (too many at once); a process forked then may escape a stop until the daemon exits");
                    }
                    continue;
                }
                _ => {
                    tracing::error!("fork events stopped: {e}");
                    return;
                }
            }
        }
        let mut off = 0usize;
        let n = n as usize;
        while off + NLMSG_HDR <= n {
            let len = u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap_or_default()) as usize;
            if len < NLMSG_HDR || off + len > n {
                break;
            }
            handle(log, me, &buf[off + NLMSG_HDR..off + len]);
            off += (len + 3) & !3;
        }
    }
}

fn handle(log: &ForkLog, me: i32, cn: &[u8]) {
    let ev = match cn.get(CN_MSG..) {
        Some(e) if e.len() >= 32 => e,
        _ => return,
    };
    let word = |i: usize| u32::from_ne_bytes([ev[i], ev[i + 1], ev[i + 2], ev[i + 3]]);
    // proc_event: what(4) cpu(4) timestamp(8), then the event's data.
    match word(0) {
        PROC_EVENT_FORK => {
            let (parent_tgid, child_pid, child_tgid) = (word(20) as i32, word(24) as i32, word(28) as i32);
            if child_pid == child_tgid {
                log.fork(me, parent_tgid, child_tgid);
            }
        }
        PROC_EVENT_EXIT => {
            let (pid, tgid) = (word(16) as i32, word(20) as i32);
            if pid == tgid {
                log.exit(tgid);
            }
        }
        _ => {}
    }
}

/// Marks fork events as unavailable (so `forks()` answers at once).
pub(crate) fn no_fork_log() {
    let _ = FORKS.set(None);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_spaces_and_parens_in_comm() {
        let s = "42 (a b) c) S 1 42 42 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 12345 0 0";
        let st = parse_stat(42, s).unwrap();
        assert_eq!((st.ppid, st.pgid, st.start, st.zombie), (1, 42, 12345, false));
    }

    #[test]
    fn orphans_stay_attributed_through_dead_parents() {
        let log = ForkLog {
            inner: Mutex::new(Log::default()),
        };
        let me = 1;
        log.fork(me, me, 10); // the slot leader
        log.anchor(10);
        log.fork(me, 10, 11); // a subshell
        log.fork(me, 11, 12); // its setsid'd child
        log.fork(me, 99, 50); // not ours
        log.exit(11); // the subshell exits: 12 is re-parented, still the slot's
        log.exit(10); // the leader exits: anchored, kept
        assert_eq!(log.descendants(&[10]), vec![12]);
        assert!(!log.lock().parent.contains_key(&50));
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
