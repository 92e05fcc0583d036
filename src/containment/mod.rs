//! What a stop kills: every descendant of a supervised process, including
//! ones that left its process group (`setsid`, double fork, daemonizing).
//!
//! Two modes, chosen once at start-up (`[ringmaster] kill_mode`, or the
//! `RINGMASTER_KILL_MODE` environment variable, which wins):
//! - `cgroup` ([`cgroup`]): one cgroup v2 per process slot, joined by the
//!   child before exec; the kernel keeps every descendant in it.
//! - `tree` ([`tree`]): the slot's processes are found in /proc and in the
//!   kernel's fork events.
//!
//! `auto` (the default) uses `cgroup` when the daemon can create cgroups
//! under its own cgroup v2, `tree` otherwise.

pub(crate) mod cgroup;
pub(crate) mod forks;
pub(crate) mod tree;

use crate::config::model::KillModeSetting;
use std::sync::{Arc, OnceLock};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KillMode {
    Cgroup,
    Tree,
}

impl KillMode {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            KillMode::Cgroup => "cgroup",
            KillMode::Tree => "tree",
        }
    }
}

struct Active {
    mode: KillMode,
    cgroups: Option<cgroup::Hierarchy>,
}

static ACTIVE: OnceLock<Active> = OnceLock::new();

/// The environment variable that overrides `[ringmaster] kill_mode`.
pub(crate) const ENV: &str = "RINGMASTER_KILL_MODE";

fn requested(config: Option<KillModeSetting>) -> Result<KillModeSetting, String> {
    match std::env::var(ENV) {
        Ok(v) => match v.as_str() {
            "auto" => Ok(KillModeSetting::Auto),
            "cgroup" => Ok(KillModeSetting::Cgroup),
            "tree" => Ok(KillModeSetting::Tree),
            other => Err(format!(
                "{ENV}={other:?}: expected \"auto\", \"cgroup\" or \"tree\""
            )),
        },
        Err(_) => Ok(config.unwrap_or(KillModeSetting::Auto)),
    }
}

/// Chooses the mode, once, before the first spawn. Fails when `cgroup` was
/// asked for and cannot be had.
pub(crate) fn init(config: Option<KillModeSetting>) -> Result<KillMode, String> {
    let want = requested(config)?;
    let cgroups = match want {
        KillModeSetting::Tree => None,
        KillModeSetting::Cgroup => {
            Some(cgroup::Hierarchy::setup().map_err(|e| format!("kill_mode = \"cgroup\": {e}"))?)
        }
        KillModeSetting::Auto => match cgroup::Hierarchy::setup() {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::info!("no writable cgroup v2 ({e}); using the process tree");
                None
            }
        },
    };
    let mode = if cgroups.is_some() {
        KillMode::Cgroup
    } else {
        KillMode::Tree
    };
    if mode == KillMode::Tree {
        if let Err(e) = forks::start_fork_log() {
            forks::no_fork_log();
            tracing::warn!("no fork events ({e}): a process that leaves its group and loses its parent before a stop survives it, until the daemon exits");
        }
    }
    let active = ACTIVE.get_or_init(|| Active { mode, cgroups });
    match &active.cgroups {
        Some(h) => {
            tracing::info!(kill_mode = active.mode.as_str(), cgroup = %h.root.display(), "process containment")
        }
        None => tracing::info!(
            kill_mode = active.mode.as_str(),
            fork_events = forks::forks().is_some(),
            "process containment"
        ),
    }
    Ok(active.mode)
}

/// The active mode (`tree` before `init`).
pub(crate) fn mode() -> KillMode {
    ACTIVE.get().map_or(KillMode::Tree, |a| a.mode)
}

fn hierarchy() -> Option<&'static cgroup::Hierarchy> {
    ACTIVE.get().and_then(|a| a.cgroups.as_ref())
}

/// After each reap: remove slot cgroups that have emptied.
pub(crate) fn sweep() {
    if let Some(h) = hierarchy() {
        h.sweep();
    }
}

/// At daemon exit: kill and remove whatever cgroup is left.
pub(crate) fn teardown() {
    if let Some(h) = hierarchy() {
        h.teardown();
    }
}

/// The live members of the group `pgid` leads, read before the leader is
/// reaped (tree mode; cgroup mode needs no snapshot). `is_leader` tells which
/// of the daemon's children are slot leaders.
pub(crate) fn snapshot_before_reap(pgid: i32, is_leader: &dyn Fn(i32) -> bool) -> Vec<(i32, u64)> {
    match mode() {
        KillMode::Tree => tree::group_members(pgid, is_leader),
        KillMode::Cgroup => Vec::new(),
    }
}

/// Everything one process slot has started, across its respawns.
#[derive(Debug)]
pub(crate) struct SlotContainment {
    name: String,
    cgroup: Option<Arc<cgroup::SlotCgroup>>,
    tree: tree::TreeSlot,
}

impl SlotContainment {
    pub(crate) fn new(watcher: &str, wid: u32, slot_id: u64) -> Self {
        SlotContainment {
            name: format!("{watcher}.{wid}.{slot_id}"),
            cgroup: None,
            tree: tree::TreeSlot::default(),
        }
    }

    /// Before a spawn: the cgroup the child must join (cgroup mode).
    pub(crate) fn prepare(&mut self) -> Result<Option<Arc<cgroup::SlotCgroup>>, String> {
        let Some(h) = hierarchy() else {
            return Ok(None);
        };
        if self.cgroup.is_none() {
            let cg = h
                .slot(&self.name)
                .map_err(|e| format!("cannot create the slot's cgroup: {e}"))?;
            self.cgroup = Some(Arc::new(cg));
        }
        Ok(self.cgroup.clone())
    }

    pub(crate) fn spawned(&mut self, pid: i32) {
        if self.cgroup.is_none() {
            self.tree.spawned(pid);
        }
    }

    /// Sends `sig` to every process of the slot; `leader` is the current
    /// process while it has not been reaped.
    pub(crate) fn signal(&mut self, leader: Option<i32>, sig: i32) {
        match &self.cgroup {
            Some(cg) => cg.signal(sig),
            None => self.tree.signal(leader, sig),
        }
    }

    /// SIGKILLs every process of the slot; false when there was none.
    pub(crate) fn kill(&mut self, leader: Option<i32>) -> bool {
        match &self.cgroup {
            Some(cg) => {
                let any = cg.populated();
                if any {
                    cg.kill();
                }
                any
            }
            None => {
                self.tree.signal(leader, libc::SIGKILL);
                !self.tree.is_empty()
            }
        }
    }

    /// After the leader was reaped: is anything of the slot still running?
    /// `snapshot` is its group as the reaper saw it before reaping.
    pub(crate) fn alive_after_exit(&mut self, snapshot: &[(i32, u64)]) -> bool {
        match &self.cgroup {
            Some(cg) => cg.populated(),
            None => {
                self.tree.add(snapshot);
                self.tree.refresh(None);
                !self.tree.is_empty()
            }
        }
    }

    /// A check the reaper runs after each reap, given the pids it reaped:
    /// true once the slot is empty.
    pub(crate) fn emptiness(&self) -> crate::reaper::EmptyCheck {
        match &self.cgroup {
            Some(cg) => {
                let cg = Arc::clone(cg);
                Box::new(move |_: &[i32]| !cg.populated())
            }
            None => self.tree.emptiness(),
        }
    }

    /// The slot forgets its processes without stopping them (`rm --nostop`);
    /// its cgroup is removed once they are gone.
    pub(crate) fn detach(&mut self) {
        self.tree.release();
        if let (Some(cg), Some(h)) = (self.cgroup.take(), hierarchy()) {
            h.retire(cg.dir.clone());
        }
    }

    /// The slot is going away: kill what is left and remove its cgroup.
    pub(crate) fn end(&mut self, leader: Option<i32>) {
        self.kill(leader);
        self.tree.release();
        if let (Some(cg), Some(h)) = (self.cgroup.take(), hierarchy()) {
            h.retire(cg.dir.clone());
        }
    }
}
