//! systemd's notify protocol: one datagram socket for all children
//! (`NOTIFY_SOCKET`, an abstract address, so children running as another user
//! can reach it), with SO_PASSCRED so the kernel tells us the sender's pid.
//! A message is routed to the process whose pid — or process group — sent it;
//! anything else is dropped.

use actix::prelude::*;
use nix::sys::socket::{
    bind, recvmsg, setsockopt, socket, sockopt, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag,
    SockType, UnixAddr,
};
use std::collections::HashMap;
use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Mutex, OnceLock};
use tokio::io::unix::AsyncFd;

/// One notify datagram, parsed.
#[derive(Message, Debug, Clone, Default, PartialEq)]
#[rtype(result = "()")]
pub struct Notify {
    pub pid: i32,
    pub ready: bool,
    pub stopping: bool,
    pub reloading: bool,
    pub watchdog: bool,
    pub status: Option<String>,
}

pub fn parse(pid: i32, data: &[u8]) -> Notify {
    let mut n = Notify {
        pid,
        ..Default::default()
    };
    for line in String::from_utf8_lossy(data).lines() {
        match line.split_once('=') {
            Some(("READY", "1")) => n.ready = true,
            Some(("STOPPING", "1")) => n.stopping = true,
            Some(("RELOADING", "1")) => n.reloading = true,
            Some(("WATCHDOG", "1")) => n.watchdog = true,
            Some(("STATUS", s)) => n.status = Some(s.to_string()),
            _ => {}
        }
    }
    n
}

pub struct NotifyRouter {
    /// The `NOTIFY_SOCKET` value children get (`@name`).
    pub address: String,
    owners: Mutex<Owners>,
}

/// Who gets each pid's messages, and messages that arrived before their
/// process was registered (the spawner thread registers a pid just after
/// exec, so a fast child can speak first). Bounded: the oldest go first.
#[derive(Default)]
struct Owners {
    by_pid: HashMap<i32, Recipient<Notify>>,
    early: std::collections::VecDeque<(Notify, Option<i32>)>,
}

const EARLY_MAX: usize = 64;

static ROUTER: OnceLock<NotifyRouter> = OnceLock::new();
/// The address an upgrade asked to bind again (`NotifyRouter::reuse_address`).
static REUSE: OnceLock<String> = OnceLock::new();

impl NotifyRouter {
    /// The router, once started (None before `start`, or if it could not bind).
    pub fn get() -> Option<&'static NotifyRouter> {
        ROUTER.get()
    }

    /// After an upgrade: bind the previous image's address, which the
    /// running children have in their NOTIFY_SOCKET (the previous image's
    /// socket closed at the exec).
    pub(crate) fn reuse_address(address: &str) {
        let _ = REUSE.set(address.trim_start_matches('@').to_string());
    }

    /// Binds the socket and starts receiving on the current runtime.
    pub fn start() -> anyhow::Result<&'static NotifyRouter> {
        if let Some(r) = ROUTER.get() {
            return Ok(r);
        }
        let name = REUSE
            .get()
            .cloned()
            .unwrap_or_else(|| format!("ringmaster-notify-{}-{}", std::process::id(), fastrand::u64(..)));
        let fd: OwnedFd = socket(
            AddressFamily::Unix,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )?;
        setsockopt(&fd, sockopt::PassCred, &true)?;
        bind(fd.as_raw_fd(), &UnixAddr::new_abstract(name.as_bytes())?)?;
        let router = ROUTER.get_or_init(|| NotifyRouter {
            address: format!("@{name}"),
            owners: Mutex::new(Owners::default()),
        });
        // SAFETY: the fd is owned by the AsyncFd from here on and is not
        // registered with another reactor.
        let afd = unsafe { AsyncFd::register(fd) }.map_err(|e| anyhow::anyhow!("notify socket: {e}"))?;
        actix::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok(mut guard) = afd.readable().await else {
                    break;
                };
                loop {
                    let mut cmsg = nix::cmsg_space!(nix::sys::socket::UnixCredentials);
                    let mut iov = [IoSliceMut::new(&mut buf)];
                    let res = recvmsg::<()>(
                        afd.get_ref().as_raw_fd(),
                        &mut iov,
                        Some(&mut cmsg),
                        MsgFlags::MSG_DONTWAIT,
                    );
                    let (n, pid) = match res {
                        Ok(m) => {
                            let pid = m.cmsgs().ok().and_then(|mut c| {
                                c.find_map(|c| match c {
                                    ControlMessageOwned::ScmCredentials(cred) => Some(cred.pid()),
                                    _ => None,
                                })
                            });
                            (m.bytes, pid)
                        }
                        Err(nix::errno::Errno::EAGAIN) => {
                            guard.clear_ready();
                            break;
                        }
                        Err(e) => {
                            tracing::warn!("notify socket: {e}");
                            guard.clear_ready();
                            break;
                        }
                    };
                    if let Some(pid) = pid {
                        router.route(parse(pid, &buf[..n]));
                    }
                }
            }
        });
        Ok(router)
    }

    pub fn register(&self, pid: i32, who: Recipient<Notify>) {
        if let Ok(mut o) = self.owners.lock() {
            let early = std::mem::take(&mut o.early);
            for (msg, pgid) in early {
                if msg.pid == pid || pgid == Some(pid) {
                    who.do_send(msg);
                } else {
                    o.early.push_back((msg, pgid));
                }
            }
            o.by_pid.insert(pid, who);
        }
    }

    pub fn unregister(&self, pid: i32) {
        if let Ok(mut o) = self.owners.lock() {
            o.by_pid.remove(&pid);
        }
    }

    fn route(&self, msg: Notify) {
        let Ok(mut owners) = self.owners.lock() else {
            return;
        };
        // From the process itself, or from a member of its process group (a
        // wrapper script's child): the group leader is the process we know.
        if let Some(o) = owners.by_pid.get(&msg.pid) {
            o.do_send(msg);
            return;
        }
        let pgid = pgid_of(msg.pid);
        if let Some(o) = pgid.and_then(|g| owners.by_pid.get(&g)) {
            o.do_send(msg);
            return;
        }
        if owners.early.len() >= EARLY_MAX {
            if let Some((old, _)) = owners.early.pop_front() {
                tracing::debug!(pid = old.pid, "notify message from an unknown process dropped");
            }
        }
        owners.early.push_back((msg, pgid));
    }
}

fn pgid_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(2)?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_fields() {
        let n = super::parse(7, b"READY=1\nSTATUS=serving 4 workers\nWATCHDOG=1\n");
        assert!(n.ready && n.watchdog && !n.stopping);
        assert_eq!(n.status.as_deref(), Some("serving 4 workers"));
    }
}
