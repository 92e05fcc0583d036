//! One actor per watcher: a named group of N identical processes. It owns
//! one [`ProcessActor`](crate::processes::ProcessActor) per slot, scales,
//! starts and stops them, following the lifecycle table in [`state`], and
//! turns their reports into the watcher's state and events.
//!
//! - `state.rs` — the lifecycle table (pure, unit-tested);
//! - `actor.rs` — the actor: table actions performed;
//! - `commands.rs` — the messages that change a watcher;
//! - `ops.rs` — the long operations: start, stop, rolling replacement;
//! - `slots.rs` — slot bookkeeping and wid numbering;
//! - `grow.rs` — many slots added and started a few at a time;
//! - `reports.rs` — slot reports in, events out;
//! - `queries.rs` — status, state, spec;
//! - `signal.rs` — `signal`: to processes, children or descendants, with hooks.

mod actor;
mod commands;
mod grow;
mod ops;
mod queries;
mod reports;
mod signal;
mod slots;
pub mod state;
mod upgrade;

pub use actor::*;
pub use commands::*;
pub use queries::{GetSpec, GetState, GetStatus, WatcherStatus};
pub(crate) use signal::children;
pub use signal::SignalWatcher;
pub use state::{Outcome, RestartHow, WatcherState};
pub(crate) use upgrade::{FreezeWatcher, JoinResumed, SlotFds};

/// The most processes one watcher may run (`incr`, `decr`, `set`): beyond it a
/// typo such as numprocesses = 1e9 would freeze the daemon spawning.
pub const MAX_PROCESSES: u32 = 10_000;

/// Pids started, stopped and kept by a start/restart/reload (Circus's
/// `info`), and why it stopped short, if it did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StartInfo {
    pub started: Vec<i32>,
    pub kept: Vec<i32>,
    pub stopped: Vec<i32>,
    pub errors: Vec<String>,
}

impl Outcome {
    /// The outcome as Circus's `info`; a cancelled command is an error.
    pub fn into_info(self) -> StartInfo {
        match self {
            Outcome::Done(i) => i,
            Outcome::Canceled(why) => StartInfo {
                errors: vec![why.to_string()],
                ..Default::default()
            },
        }
    }
}
