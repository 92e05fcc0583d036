//! What a slot's actor is told (start, stop, replace, signal, …) and what it
//! tells its watcher ([`SlotReport`]).

use super::spawn::InheritedSocket;
use crate::config::{Signum, WatcherSpec};
use crate::reaper::ExitStatus;
use crate::streams::WatcherLogs;
use actix::prelude::*;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// What a slot tells its watcher.
#[derive(Debug, Clone)]
pub enum SlotEvent {
    Spawned {
        pid: i32,
    },
    Ready {
        pid: i32,
    },
    ReadyFailed {
        pid: i32,
        reason: String,
    },
    Exited {
        pid: i32,
        status: ExitStatus,
        uptime: Duration,
        /// It exited while running, not because it was told to stop.
        on_its_own: bool,
    },
    SpawnFailed {
        reason: String,
    },
    Backoff {
        delay: Duration,
        failures: u32,
    },
    Failed {
        failures: u32,
    },
    Killed {
        pid: i32,
        signal: Signum,
    },
    /// max_age reached: the watcher replaces this process (rolling).
    Aged {
        pid: i32,
    },
    Stopped,
}

#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct SlotReport {
    pub wid: u32,
    /// Unique per slot actor: a wid can be reused while its old actor still reports.
    pub slot_id: u64,
    pub event: SlotEvent,
}

/// Start the slot; answers with the pid once the first spawn attempt is done.
#[derive(Message)]
#[rtype(result = "Option<i32>")]
pub struct StartSlot;

/// Answers with the pid once the process is ready, or why it will not be.
#[derive(Message)]
#[rtype(result = "Result<i32, String>")]
pub struct WaitReady;

/// Replace the process in place (stop, then spawn), optionally with another
/// signal and timeout; answers with the new pid once spawned.
#[derive(Message)]
#[rtype(result = "Option<i32>")]
pub struct ReplaceSlot {
    pub signal: Option<Signum>,
    pub timeout: Option<Duration>,
}

/// Forget the process without stopping it (`rm --nostop`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct DetachSlot;

/// Use a new spec (and sockets) for the next spawns.
#[derive(Message)]
#[rtype(result = "()")]
pub struct UpdateSlotSpec(
    pub Arc<WatcherSpec>,
    pub Arc<Vec<InheritedSocket>>,
    pub WatcherLogs,
);

/// Stop gracefully; resolves once the process and its whole group are gone.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopSlot;

/// SIGKILL the group now.
#[derive(Message)]
#[rtype(result = "()")]
pub struct KillSlot;

#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct SignalSlot {
    pub signal: Signum,
    /// Signal the whole process group rather than only the process.
    pub group: bool,
}

#[derive(Debug, Clone)]
pub struct ProcInfo {
    pub wid: u32,
    pub pid: Option<i32>,
    pub state: &'static str,
    pub ready: bool,
    pub status_text: Option<String>,
    pub started: Option<SystemTime>,
    pub restarts: u32,
    pub argv: Vec<String>,
}

#[derive(Message)]
#[rtype(result = "ProcInfo")]
pub struct GetProcInfo;
