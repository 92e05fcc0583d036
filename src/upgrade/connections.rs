//! The control connections an upgrade keeps open across the exec, in the
//! snapshot: each connection's fd and routing id, and the requests still
//! waiting for their reply (see `crate::control::carry`).

use crate::control::carry::Awaiting;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ControlCarry {
    pub connections: Vec<CarriedConn>,
    pub requests: Vec<CarriedRequest>,
}

/// An established connection of the control ROUTER, handshake done.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CarriedConn {
    pub fd: i32,
    /// A Unix (ipc) stream, else tcp.
    pub unix: bool,
    /// The peer's routing id.
    pub identity: Vec<u8>,
}

/// A request without its reply yet: its frames as received (routing id
/// first, then the envelope and the JSON body) and how far it got.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CarriedRequest {
    pub frames: Vec<Vec<u8>>,
    pub awaiting: Awaiting,
}

impl ControlCarry {
    pub(crate) fn fds(&self) -> impl Iterator<Item = i32> + '_ {
        self.connections.iter().map(|c| c.fd)
    }
}
