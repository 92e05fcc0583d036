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
    /// Starts the actor that keeps `socket` open; returns it with the socket's info.
    pub fn launch(socket: BoundSocket) -> (Addr<SocketActor>, SocketInfo) {
        let info = SocketInfo::of(&socket);
        (SocketActor { socket }.start(), info)
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

impl SocketInfo {
    pub fn of(s: &BoundSocket) -> SocketInfo {
        let (host, path) = match &s.spec.addr {
            SocketAddrSpec::Inet { host, .. } => (Some(host.clone()), None),
            SocketAddrSpec::Unix { path, .. } => (None, Some(path.display().to_string())),
        };
        SocketInfo {
            name: s.spec.name.clone(),
            fd: s.fd.clone(),
            raw_fd: s.fd.as_raw_fd(),
            backlog: s.spec.backlog,
            host,
            port: s.port,
            path,
            local: s.local.clone(),
        }
    }
}

/// Closes the socket (unlinking its UNIX path).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopSocket;

impl Handler<StopSocket> for SocketActor {
    type Result = ();
    fn handle(&mut self, _: StopSocket, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
