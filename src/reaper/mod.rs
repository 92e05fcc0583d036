//! The one place that calls `waitpid`. Woken by SIGCHLD, it reaps every
//! child that has exited (`waitpid(-1, WNOHANG)` until nothing is left) and
//! tells the owning process actor. Pids nobody owns (grandchildren
//! re-parented to us as child subreaper) are reaped and logged.
//!
//! Spawning goes through [`Reaper::spawn`]. Several threads may fork at once
//! (see `processes::spawner`), so the lock is not held across the fork;
//! instead, while any spawn is in flight, a status reaped for a pid nobody
//! owns yet is kept, and the spawn that returns that pid delivers it. A child
//! that dies instantly is never lost.

use actix::prelude::*;
use nix::errno::Errno;
use nix::sys::signal::killpg;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::collections::HashMap;
use std::io;
use std::process::{Child, Command};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

impl ExitStatus {
    /// Circus's `exit_code`: the status, or minus the signal number.
    pub fn circus_code(self) -> i32 {
        match self {
            ExitStatus::Code(c) => c,
            ExitStatus::Signal(s) => -s,
        }
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit code {c}"),
            ExitStatus::Signal(s) => {
                let name = nix::sys::signal::Signal::try_from(*s)
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_else(|_| s.to_string());
                write!(f, "killed by {name}")
            }
        }
    }
}

/// Sent to a process's owner when it has been reaped.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct Exited {
    pub pid: i32,
    pub status: ExitStatus,
    /// In tree mode, the other live members of its process group, as
    /// (pid, start time), read before reaping: while the zombie holds the
    /// number, the group cannot be a newer one that reused it.
    pub group: Vec<(i32, u64)>,
}

/// Sent when no process is left of a slot someone waits on.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct GroupGone {
    pub key: u64,
}

/// Answers true once what it watches is gone; given the pids just reaped
/// (none for the first check), so it can skip work when none is its own.
pub type EmptyCheck = Box<dyn FnMut(&[i32]) -> bool + Send>;

#[derive(Default)]
struct Registry {
    owners: HashMap<i32, Recipient<Exited>>,
    groups: HashMap<u64, (EmptyCheck, Recipient<GroupGone>)>,
    /// Spawns between fork and registration.
    in_flight: usize,
    /// Reaped while a spawn was in flight, owner not yet known.
    unclaimed: HashMap<i32, (ExitStatus, Vec<(i32, u64)>)>,
    /// An upgrade is taking its snapshot: exits stay zombies for the next image.
    frozen: bool,
}

pub struct Reaper {
    registry: Mutex<Registry>,
}

static REAPER: OnceLock<Reaper> = OnceLock::new();

impl Reaper {
    pub fn global() -> &'static Reaper {
        REAPER.get_or_init(|| Reaper {
            registry: Mutex::new(Registry::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Spawns `cmd` and registers its pid with `owner` atomically with respect to reaping.
    pub fn spawn(&self, cmd: &mut Command, owner: Recipient<Exited>) -> io::Result<Child> {
        let mut child = None;
        self.spawn_with(owner, || {
            let c = cmd.spawn()?;
            let pid = c.id() as i32;
            child = Some(c);
            Ok::<i32, io::Error>(pid)
        })?;
        child.ok_or_else(|| io::Error::other("spawned without a child"))
    }

    /// Runs `start`, which creates a child and returns its pid, and
    /// registers that pid with `owner` atomically with respect to reaping.
    /// On error nothing is registered: a child that `start` created and that
    /// failed before exec is reaped as nobody's.
    pub(crate) fn spawn_with<E>(
        &self,
        owner: Recipient<Exited>,
        start: impl FnOnce() -> Result<i32, E>,
    ) -> Result<i32, E> {
        self.lock().in_flight += 1;
        let res = start();
        let mut reg = self.lock();
        reg.in_flight -= 1;
        if let Ok(pid) = res {
            match reg.unclaimed.remove(&pid) {
                // Reaped already, unless the status was an orphan's whose
                // pid the kernel has just reused for this child (then the
                // child is still there, in /proc, alive or a zombie).
                Some((status, group)) if !std::path::Path::new(&format!("/proc/{pid}")).exists() => {
                    owner.do_send(Exited { pid, status, group })
                }
                _ => {
                    reg.owners.insert(pid, owner);
                }
            }
        }
        if reg.in_flight == 0 {
            // Every spawn has registered: what is left was an orphan's.
            for (pid, (status, _)) in reg.unclaimed.drain() {
                tracing::debug!(pid, %status, "reaped orphan");
            }
        }
        res
    }

    /// Registers an interest in a slot becoming empty, checked after each
    /// reap: the last process of a slot to exit is always reaped by the
    /// daemon (orphans come to it as subreaper). Answers at once if empty.
    pub fn watch_empty(&self, key: u64, mut check: EmptyCheck, who: Recipient<GroupGone>) {
        let mut reg = self.lock();
        if check(&[]) {
            who.do_send(GroupGone { key });
        } else {
            reg.groups.insert(key, (check, who));
        }
    }

    pub fn unwatch(&self, key: u64) {
        self.lock().groups.remove(&key);
    }

    /// Upgrade: stop reaping, so every exit from now on stays a zombie that
    /// the next image reaps and matches ([`Reaper::adopt`]).
    pub(crate) fn freeze(&self) {
        self.lock().frozen = true;
    }

    /// The upgrade did not happen: reap what exited meanwhile.
    pub(crate) fn thaw(&self) {
        self.lock().frozen = false;
        self.reap_all();
    }

    /// After an upgrade, before the first reap: keep the statuses of pids
    /// nobody owns yet, until [`Reaper::release`], for [`Reaper::adopt`].
    pub(crate) fn hold(&self) {
        self.lock().in_flight += 1;
    }

    /// Registers `owner` for a child the previous image spawned; an exit
    /// reaped since [`Reaper::hold`] is delivered at once.
    pub(crate) fn adopt(&self, pid: i32, owner: Recipient<Exited>) {
        let mut reg = self.lock();
        match reg.unclaimed.remove(&pid) {
            Some((status, group)) => owner.do_send(Exited { pid, status, group }),
            None => {
                reg.owners.insert(pid, owner);
            }
        }
    }

    /// Reaped since [`Reaper::hold`] and not adopted yet.
    pub(crate) fn is_unclaimed(&self, pid: i32) -> bool {
        self.lock().unclaimed.contains_key(&pid)
    }

    /// Every adopted child is registered: what is left unclaimed was an orphan's.
    pub(crate) fn release(&self) {
        let mut reg = self.lock();
        reg.in_flight = reg.in_flight.saturating_sub(1);
        if reg.in_flight == 0 {
            for (pid, (status, _)) in reg.unclaimed.drain() {
                tracing::debug!(pid, %status, "reaped orphan");
            }
        }
    }

    pub fn owned_pids(&self) -> Vec<i32> {
        self.lock().owners.keys().copied().collect()
    }

    /// Reaps everything that has exited. Returns how many were reaped.
    ///
    /// Each exit is first looked at without reaping (`WNOWAIT`): while the
    /// zombie exists its pid, and so its process group id, cannot be reused,
    /// so an owned process's group is read then, and only then reaped.
    pub fn reap_all(&self) -> usize {
        let mut reg = self.lock();
        if reg.frozen {
            return 0;
        }
        let mut reaped = Vec::new();
        while let Some(pid) = peek_exited() {
            let group = if reg.owners.contains_key(&pid) || reg.in_flight > 0 {
                let owners = &reg.owners;
                crate::containment::snapshot_before_reap(pid, &|p| owners.contains_key(&p))
            } else {
                Vec::new()
            };
            match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(p, code)) => {
                    reaped.push(p.as_raw());
                    deliver(&mut reg, p.as_raw(), ExitStatus::Code(code), group);
                }
                Ok(WaitStatus::Signaled(p, sig, _)) => {
                    reaped.push(p.as_raw());
                    deliver(&mut reg, p.as_raw(), ExitStatus::Signal(sig as i32), group);
                }
                Ok(WaitStatus::StillAlive) => break,
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(e) => {
                    tracing::error!(pid, "waitpid failed: {e}");
                    break;
                }
            }
        }
        let n = reaped.len();
        if n > 0 && !reg.groups.is_empty() {
            reg.groups.retain(|&key, (check, who)| {
                if check(&reaped) {
                    who.do_send(GroupGone { key });
                    false
                } else {
                    true
                }
            });
        }
        if n > 0 {
            crate::containment::sweep();
        }
        n
    }

    /// Starts the SIGCHLD listener on the current actix/tokio runtime.
    /// Must run before the first spawn.
    pub fn start(&'static self) -> io::Result<()> {
        let mut sigchld = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child())?;
        // Children that exited before the handler existed.
        self.reap_all();
        actix::spawn(async move {
            while sigchld.recv().await.is_some() {
                let seen = crate::upgrade::signals::seen(libc::SIGCHLD);
                self.reap_all();
                crate::upgrade::signals::acted(libc::SIGCHLD, seen);
            }
        });
        Ok(())
    }
}

/// The pid of a child that has exited, left unreaped; None when there is none.
fn peek_exited() -> Option<i32> {
    loop {
        // SAFETY: waitid fills the zeroed siginfo; WNOWAIT leaves the child waitable.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let r = unsafe {
            libc::waitid(
                libc::P_ALL,
                0,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        if r != 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ECHILD) => return None,
                _ => {
                    tracing::error!("waitid failed: {e}");
                    return None;
                }
            }
        }
        // SAFETY: waitid succeeded, so si_pid is the field it filled (0: none waitable).
        let pid = unsafe { info.si_pid() };
        return (pid != 0).then_some(pid);
    }
}

fn deliver(reg: &mut Registry, pid: i32, status: ExitStatus, group: Vec<(i32, u64)>) {
    match reg.owners.remove(&pid) {
        Some(owner) => owner.do_send(Exited { pid, status, group }),
        None if reg.in_flight > 0 => {
            reg.unclaimed.insert(pid, (status, group));
        }
        None => tracing::debug!(pid, %status, "reaped orphan"),
    }
}

/// Marks this process as a child subreaper so orphaned grandchildren come to us.
pub fn become_subreaper() {
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        tracing::warn!("cannot become child subreaper ({e}); orphaned grandchildren will go to init");
    }
}

/// Pids of our direct children, from /proc (used at exit to leave nothing behind).
pub fn direct_children() -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for t in tasks.flatten() {
        if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
            out.extend(s.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
        }
    }
    out
}

/// Receives the exit of one helper command (hooks, probes).
struct ExitWaiter(Option<tokio::sync::oneshot::Sender<ExitStatus>>);

impl Actor for ExitWaiter {
    type Context = Context<Self>;
}

impl Handler<Exited> for ExitWaiter {
    type Result = ();
    fn handle(&mut self, m: Exited, ctx: &mut Self::Context) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(m.status);
        }
        ctx.stop();
    }
}

/// Runs a helper command (in its own process group) through the reaper and
/// waits for it; past `timeout` its group is killed.
pub async fn run_command(cmd: &mut Command, timeout: std::time::Duration) -> Result<ExitStatus, String> {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
    // Signals the daemon's parent left ignored would stay ignored in the
    // command (std already empties the mask; do both, as for children).
    let ignored = crate::processes::spawn::ignored_signals();
    // SAFETY: reset_signals makes only raw, async-signal-safe syscalls.
    unsafe {
        cmd.pre_exec(move || {
            if crate::processes::spawn::reset_signals(ignored) {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        });
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let waiter = ExitWaiter(Some(tx)).start();
    let child = Reaper::global()
        .spawn(cmd, waiter.recipient())
        .map_err(|e| format!("cannot run: {e}"))?;
    let pid = child.id() as i32;
    drop(child);
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(st)) => Ok(st),
        Ok(Err(_)) => Err("lost track of the command".into()),
        Err(_) => {
            let _ = killpg(Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            Err(format!("timed out after {timeout:?}"))
        }
    }
}
