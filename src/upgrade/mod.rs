//! Upgrade in place (`ringmaster upgrade`, SIGUSR2): the daemon executes a
//! new binary in its own process, so every supervised process stays its
//! child and keeps running.
//!
//! 1. Pre-flight (`preflight.rs`): the new binary must start, load the
//!    config file and accept the snapshot format; else nothing changes.
//! 2. Freeze: the reaper stops reaping (exits stay zombies), every watcher
//!    and slot answers its state and then stands still; the output captures
//!    park their pipes (`crate::streams`' handover).
//! 3. Snapshot (`snapshot.rs`) into a memfd; the control socket hands over
//!    its established connections and the requests they wait on, added to
//!    the snapshot (`connections.rs`); the control and pubsub sockets close
//!    (their listeners stay open), the log files are flushed; the signal
//!    thread stops taking signals (`signals.rs`); close-on-exec is cleared
//!    on what must survive, and the new binary is executed (`exec.rs`).
//! 4. The new image (`restore.rs`) adopts the sockets, listeners, pipes,
//!    control connections and processes, reaps and matches the zombies, and
//!    answers the pending requests (the `upgrade` among them). If it cannot,
//!    it executes the previous binary, kept open since start-up, with the
//!    same state.

pub(crate) mod connections;
pub(crate) mod exec;
pub(crate) mod listeners;
pub mod preflight;
pub(crate) mod restore;
pub(crate) mod signals;
pub(crate) mod snapshot;

pub use exec::{binary_id, VERSION};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

/// Unix time the daemon first started, kept across upgrades.
static STARTED: OnceLock<f64> = OnceLock::new();
static IN_PROGRESS: AtomicBool = AtomicBool::new(false);

pub(crate) fn set_started(t: f64) {
    let _ = STARTED.set(t);
}

pub(crate) fn started() -> f64 {
    *STARTED.get_or_init(crate::watchers::now_f64)
}

/// Claims the one upgrade that may run at a time.
pub(crate) fn begin() -> bool {
    !IN_PROGRESS.swap(true, Ordering::SeqCst)
}

static FELL_BACK: AtomicBool = AtomicBool::new(false);

/// This image is the previous binary run again after a failed upgrade.
pub(crate) fn set_fell_back() {
    FELL_BACK.store(true, Ordering::SeqCst);
}

pub(crate) fn fell_back() -> bool {
    FELL_BACK.load(Ordering::SeqCst)
}

pub(crate) fn abandoned() {
    IN_PROGRESS.store(false, Ordering::SeqCst);
}
