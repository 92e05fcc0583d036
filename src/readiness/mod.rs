//! When a new process counts as ready to serve: after `warmup_delay`
//! (Circus's behaviour), when a TCP connect or an HTTP GET succeeds, when a
//! command exits 0, or when it says `READY=1` over systemd's notify protocol.
//! Rolling restarts wait for readiness before stopping an old process.

pub mod notify;
pub mod probe;
pub(crate) mod state;
