//! Ringmaster: a process and socket supervisor, the successor to Circus.
//!
//! The daemon is a tree of actix actors: the root ([`supervisor`]) owns the
//! [`sockets`] and one actor per [`watchers`] group, which owns one actor per
//! process slot ([`processes`]). One central [`reaper`] collects every exit.
//! Modules the tests and the binary do not use are `pub(crate)`, so the
//! compiler reports what nothing calls.

pub mod cli;
pub mod config;
pub(crate) mod containment;
pub mod control;
pub mod daemon;
pub(crate) mod events;
pub(crate) mod fnmatch;
pub(crate) mod hooks;
pub(crate) mod http;
pub(crate) mod init;
pub(crate) mod processes;
pub(crate) mod readiness;
pub mod reaper;
pub(crate) mod sockets;
pub mod streams;
pub(crate) mod supervisor;
pub(crate) mod systemd;
pub mod upgrade;
pub(crate) mod watchers;
