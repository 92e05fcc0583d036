//! `ringmaster check` prints the resolved plan: what would be bound and run.

use super::{Config, SockType, SocketAddrSpec};
use std::fmt::{self, Write as _};

pub struct Plan<'a>(pub &'a Config);

impl fmt::Display for Plan<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.0;
        writeln!(f, "config: {}", c.path.display())?;
        writeln!(f, "sockets ({}):", c.sockets.len())?;
        for s in &c.sockets {
            let kind = match s.socktype {
                SockType::Stream => "stream",
                SockType::Dgram => "dgram",
            };
            let addr = match &s.addr {
                SocketAddrSpec::Inet { host, port, v6 } => {
                    if *v6 {
                        format!("tcp6/udp6 [{host}]:{port}")
                    } else {
                        format!("{host}:{port}")
                    }
                }
                SocketAddrSpec::Unix { path, umask, replace } => {
                    let mut a = format!("unix {}", path.display());
                    if let Some(u) = umask {
                        let _ = write!(a, " umask={u:03o}");
                    }
                    if *replace {
                        a.push_str(" replace");
                    }
                    a
                }
            };
            writeln!(f, "  {:<12} {kind:<6} {addr} backlog={}", s.name, s.backlog)?;
        }
        writeln!(f, "watchers ({}, in start order):", c.watchers.len())?;
        for w in &c.watchers {
            writeln!(
                f,
                "  {:<12} x{} priority={} {}{}",
                w.name,
                w.numprocesses,
                w.priority,
                if w.autostart { "" } else { "autostart=false " },
                w.cmd
            )?;
            if !w.sockets.is_empty() {
                let fds: Vec<String> = w
                    .sockets
                    .iter()
                    .enumerate()
                    .map(|(i, s)| format!("{s}=fd{}", 3 + i))
                    .collect();
                writeln!(f, "      sockets: {}", fds.join(" "))?;
            }
            let r = &w.restart;
            writeln!(
                f,
                "      stop: {} then SIGKILL after {:?}; restart: min_uptime={:?} delay={:?}..{:?} x{} max_retry={}",
                w.stop_signal, w.graceful_timeout, r.min_uptime, r.initial_delay, r.max_delay, r.multiplier, r.max_retry
            )?;
        }
        for warn in &c.warnings {
            writeln!(f, "warning: {warn}")?;
        }
        Ok(())
    }
}
