//! One actor per watcher: a named group of N identical processes. It owns
//! one [`ProcessActor`](crate::processes::ProcessActor) per slot, scales,
//! starts and stops them, and turns their reports into the watcher's state
//! (`active`, `stopped`, `failed`, …) and events.

mod actor;

pub use actor::*;

/// The most processes one watcher may run (`incr`, `decr`, `set`): beyond it a
/// typo such as numprocesses = 1e9 would freeze the daemon spawning.
pub const MAX_PROCESSES: u32 = 10_000;
