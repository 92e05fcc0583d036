//! Listening sockets bound by the daemon and inherited by children.
//!
//! A socket is bound once at start and its fd stays open for the daemon's
//! whole life, so restarting workers never refuses a client.

mod actor;
mod bind;

pub use actor::{SocketActor, SocketInfo, StopSocket};
pub use bind::{adopt, bind, BoundSocket};
