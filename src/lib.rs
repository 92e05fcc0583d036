//! Ringmaster: a process and socket supervisor, the successor to Circus.
//!
//! The daemon is a tree of actix actors: the root [`arbiter`] owns the
//! [`sockets`] and one actor per [`watchers`] group, which owns one actor per
//! process slot ([`processes`]). One central [`reaper`] collects every exit.

pub mod cli;
pub mod config;
pub mod containment;
pub mod control;
pub mod daemon;
pub mod events;
pub mod fnmatch;
pub mod hooks;
pub mod processes;
pub mod readiness;
pub mod reaper;
pub mod sockets;
pub mod streams;
pub mod supervisor;
pub mod watchers;
