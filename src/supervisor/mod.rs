//! The supervisor: the root actor and the one API through which everything
//! that changes what runs passes.
//!
//! - `root.rs` — the root actor: registries, start-up order, shutdown;
//! - `registry.rs` — watchers and sockets by name (read by anyone, written here only);
//! - `api.rs` — the typed requests (start/stop/restart/reload a selection,
//!   scale, add, remove, update, signal, kill) and their completion handle;
//! - `reload.rs` — config reload: the diff and its application.

pub mod api;
pub mod registry;
pub mod reload;
mod root;
mod upgrade;

pub use api::{ApiError, Done};
pub use registry::{Match, Registry, Selection, SocketRegistry, WatcherEntry};
pub(crate) use root::CriticalEnded;
pub use root::{Closers, Shutdown, Supervisor};
pub(crate) use upgrade::Upgrade;
