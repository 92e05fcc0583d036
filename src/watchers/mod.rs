//! One actor per watcher: a named group of N identical processes. It owns
//! one [`ProcessActor`](crate::processes::ProcessActor) per slot, scales,
//! starts and stops them, and turns their reports into the watcher's state
//! (`active`, `stopped`, `failed`, …) and events.

mod actor;

pub use actor::*;
