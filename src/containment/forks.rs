//! The kernel's fork and exit events (the process connector, over netlink):
//! which process descends from which, even after an intermediate parent died
//! and its orphans were re-parented to the daemon (a child subreaper). Tree
//! containment ([`super::tree`]) finds a slot's orphans here.
//!
//! The log is indexed both ways (child → parent, parent → children), so an
//! exit and a slot's descendants each cost what they touch, not the log's
//! size: with 10,000 slots the log holds tens of thousands of processes.

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

/// The daemon's descendants as the kernel's fork events show them: child →
/// parent, for every process that descends from the daemon.
pub(crate) struct ForkLog {
    inner: Mutex<Log>,
    /// Events were dropped (the socket overflowed): the log may miss processes.
    lost: AtomicBool,
}

#[derive(Default)]
struct Log {
    parent: HashMap<i32, i32>,
    children: HashMap<i32, HashSet<i32>>,
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

    pub(super) fn new() -> Self {
        ForkLog {
            inner: Mutex::new(Log::default()),
            lost: AtomicBool::new(false),
        }
    }

    /// No event was lost so far: every descendant forked since start-up is known.
    pub(crate) fn complete(&self) -> bool {
        !self.lost.load(Ordering::Relaxed)
    }

    pub(super) fn anchor(&self, pid: i32) {
        self.lock().anchors.insert(pid);
    }

    pub(super) fn release(&self, pid: i32) {
        let mut l = self.lock();
        l.anchors.remove(&pid);
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            l.exited(pid);
        }
    }

    /// Live-or-not descendants of `roots` in the log (roots excluded), in
    /// time proportional to their number.
    pub(super) fn descendants(&self, roots: &[i32]) -> Vec<i32> {
        let l = self.lock();
        let mut out = Vec::new();
        let mut todo: Vec<i32> = roots.to_vec();
        let mut seen: HashSet<i32> = roots.iter().copied().collect();
        while let Some(p) = todo.pop() {
            for &c in l.children.get(&p).into_iter().flatten() {
                if seen.insert(c) {
                    out.push(c);
                    todo.push(c);
                }
            }
        }
        out
    }

    /// Whether `root` has any descendant in the log.
    pub(super) fn has_descendants(&self, root: i32) -> bool {
        self.lock().children.get(&root).is_some_and(|c| !c.is_empty())
    }

    fn fork(&self, me: i32, parent: i32, child: i32) {
        let mut l = self.lock();
        if parent == me || l.parent.contains_key(&parent) {
            // A reused pid whose exit was lost: it leaves its old parent.
            if let Some(old) = l.parent.insert(child, parent) {
                if let Some(s) = l.children.get_mut(&old) {
                    s.remove(&child);
                }
            }
            l.children.entry(parent).or_default().insert(child);
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
        let Some(pp) = self.parent.remove(&pid) else {
            return;
        };
        let kids = self.children.remove(&pid).unwrap_or_default();
        let siblings = self.children.entry(pp).or_default();
        siblings.remove(&pid);
        for &k in &kids {
            siblings.insert(k);
        }
        if siblings.is_empty() {
            self.children.remove(&pp);
        }
        for k in kids {
            self.parent.insert(k, pp);
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
    let log = FORKS.get_or_init(|| Some(ForkLog::new()));
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
                    log.lost.store(true, Ordering::Relaxed);
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

    /// Fake pids above any pid_max, so `release` finds none of them in /proc.
    const P: i32 = 1 << 30;

    #[test]
    fn orphans_stay_attributed_through_dead_parents() {
        let log = ForkLog::new();
        let me = 1;
        log.fork(me, me, P + 10); // the slot leader
        log.anchor(P + 10);
        log.fork(me, P + 10, P + 11); // a subshell
        log.fork(me, P + 11, P + 12); // its setsid'd child
        log.fork(me, P + 12, P + 13);
        log.fork(me, 99, P + 50); // not ours
        log.exit(P + 11); // the subshell exits: 12 is re-parented, still the slot's
        log.exit(P + 10); // the leader exits: anchored, kept
        let mut d = log.descendants(&[P + 10]);
        d.sort();
        assert_eq!(d, vec![P + 12, P + 13]);
        assert!(log.has_descendants(P + 10));
        assert!(!log.lock().parent.contains_key(&(P + 50)));
        log.exit(P + 12);
        assert_eq!(log.descendants(&[P + 10]), vec![P + 13]);
        log.exit(P + 13);
        assert!(!log.has_descendants(P + 10));
        log.release(P + 10);
        let l = log.lock();
        assert!(l.parent.is_empty(), "{:?}", l.parent);
        assert!(l.children.values().all(HashSet::is_empty), "{:?}", l.children);
    }

    /// A pid reused while its exit event was lost takes its new place only.
    #[test]
    fn a_reused_pid_leaves_its_old_subtree() {
        let log = ForkLog::new();
        let me = 1;
        log.fork(me, me, 10);
        log.anchor(10);
        log.fork(me, 10, 11);
        log.fork(me, me, 20);
        log.anchor(20);
        log.fork(me, 20, 11); // 11 exited unseen and was reused under 20
        assert!(log.descendants(&[10]).is_empty());
        assert_eq!(log.descendants(&[20]), vec![11]);
    }
}
