use super::BoundSocket;
use crate::config::SocketAddrSpec;
use actix::prelude::*;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

/// Holds one bound socket for the daemon's life; unlinks its UNIX path when stopped.
pub struct SocketActor {
    socket: BoundSocket,
}

impl SocketActor {
    pub fn new(socket: BoundSocket) -> Self {
        SocketActor { socket }
    }
}

impl Actor for SocketActor {
    type Context = Context<Self>;

    fn stopped(&mut self, _: &mut Self::Context) {
        if let Some(p) = &self.socket.created_path {
            if let Err(e) = std::fs::remove_file(p) {
                tracing::warn!(socket = %self.socket.spec.name, path = %p.display(), "cannot unlink socket file: {e}");
            }
        }
        tracing::debug!(socket = %self.socket.spec.name, "socket closed");
    }
}

/// What `listsockets` reports about a socket, and the fd to hand to watchers.
#[derive(Debug, Clone)]
pub struct SocketInfo {
    pub name: String,
    pub fd: Arc<OwnedFd>,
    pub raw_fd: i32,
    pub backlog: u32,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub path: Option<String>,
    pub local: String,
}

#[derive(Message)]
#[rtype(result = "SocketInfo")]
pub struct GetSocketInfo;

impl Handler<GetSocketInfo> for SocketActor {
    type Result = MessageResult<GetSocketInfo>;

    fn handle(&mut self, _: GetSocketInfo, _: &mut Self::Context) -> Self::Result {
        let s = &self.socket;
        let (host, path) = match &s.spec.addr {
            SocketAddrSpec::Inet { host, .. } => (Some(host.clone()), None),
            SocketAddrSpec::Unix { path, .. } => (None, Some(path.display().to_string())),
        };
        MessageResult(SocketInfo {
            name: s.spec.name.clone(),
            fd: s.fd.clone(),
            raw_fd: s.fd.as_raw_fd(),
            backlog: s.spec.backlog,
            host,
            port: s.port,
            path,
            local: s.local.clone(),
        })
    }
}
