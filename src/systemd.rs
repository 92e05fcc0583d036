//! The daemon's own side of the service manager protocol: what systemd (or
//! any manager speaking its protocol) hands us in the environment —
//! `NOTIFY_SOCKET`, `WATCHDOG_USEC`/`WATCHDOG_PID`, `LISTEN_FDS`/`LISTEN_PID`/
//! `LISTEN_FDNAMES` — and the notify messages we send back (`READY=1`,
//! `RELOADING=1`, `STOPPING=1`, `STATUS=`, `WATCHDOG=1`).
//!
//! The variables are read once and removed from the environment at start-up,
//! before any thread exists, so that no child, hook or probe sees them (a
//! `ready.type = "notify"` child gets its own `NOTIFY_SOCKET` from the
//! readiness code).

use std::collections::BTreeMap;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Arc;
use std::time::Duration;

/// The first fd passed by socket activation (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: i32 = 3;
/// More than any sane `.socket` unit passes: a bogus LISTEN_FDS must not
/// make us adopt thousands of fd numbers.
const MAX_LISTEN_FDS: i32 = 1024;

const VARS: [&str; 6] = [
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
];

/// What the service manager gave this process.
#[derive(Default)]
pub(crate) struct Handoff {
    pub notifier: Option<Notifier>,
    /// Send `WATCHDOG=1` at this period (half of `WATCHDOG_USEC`).
    pub watchdog: Option<Duration>,
    /// Sockets passed by name (`LISTEN_FDNAMES`, "unknown" when unnamed).
    pub listen: BTreeMap<String, OwnedFd>,
    /// Problems met reading the variables, to log once logging is up.
    pub warnings: Vec<String>,
}

/// Reads the variables and removes them from the environment. Call it
/// before any thread exists (it changes the environment) and before the
/// inherited fds are touched.
pub(crate) fn take_handoff() -> Handoff {
    let vars: BTreeMap<&str, String> = VARS
        .iter()
        .filter_map(|k| Some((*k, std::env::var(k).ok()?)))
        .collect();
    for k in VARS {
        std::env::remove_var(k);
    }
    let mut h = Handoff::default();
    let me = std::process::id();
    let for_us = |key: &str| match vars.get(key) {
        None => true,
        Some(p) => p.trim().parse::<u32>().ok() == Some(me),
    };
    if let Some(path) = vars.get("NOTIFY_SOCKET") {
        match Notifier::new(path) {
            Ok(n) => h.notifier = Some(n),
            Err(e) => h.warnings.push(format!("NOTIFY_SOCKET={path:?} unusable: {e}")),
        }
    }
    if let Some(usec) = vars.get("WATCHDOG_USEC") {
        match usec.trim().parse::<u64>() {
            Ok(u) if u > 0 && for_us("WATCHDOG_PID") => h.watchdog = Some(Duration::from_micros(u) / 2),
            Ok(_) => {}
            Err(_) => h
                .warnings
                .push(format!("WATCHDOG_USEC={usec:?} is not a number: ignored")),
        }
    }
    if let Some(n) = vars.get("LISTEN_FDS") {
        if !vars.contains_key("LISTEN_PID") || !for_us("LISTEN_PID") {
            h.warnings
                .push("LISTEN_FDS is set for another process (LISTEN_PID): ignored".into());
        } else {
            match n.trim().parse::<i32>() {
                Ok(n) if (0..=MAX_LISTEN_FDS).contains(&n) => {
                    let names: Vec<&str> = vars
                        .get("LISTEN_FDNAMES")
                        .map(|s| s.split(':').collect())
                        .unwrap_or_default();
                    for i in 0..n {
                        let fd = LISTEN_FDS_START + i;
                        // SAFETY: F_GETFD only checks that the fd is open.
                        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
                            h.warnings.push(format!("LISTEN_FDS: fd {fd} is not open"));
                            continue;
                        }
                        let name = names.get(i as usize).copied().unwrap_or("unknown").to_lowercase();
                        // SAFETY: the manager passed this open fd to us (LISTEN_PID
                        // is our pid) and nothing else in the process owns it.
                        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                        if h.listen.insert(name.clone(), owned).is_some() {
                            h.warnings.push(format!(
                                "LISTEN_FDNAMES: {name:?} passed twice; the last one is used"
                            ));
                        }
                    }
                }
                _ => h
                    .warnings
                    .push(format!("LISTEN_FDS={n:?} is not a valid count: ignored")),
            }
        }
    }
    h
}

/// Sends notify messages to the manager's socket; best effort (a manager
/// that went away must not stop the daemon).
#[derive(Clone)]
pub(crate) struct Notifier(Arc<(UnixDatagram, SocketAddr)>);

impl Notifier {
    /// `@name` is an abstract address, anything else a path.
    fn new(target: &str) -> std::io::Result<Notifier> {
        let addr = match target.strip_prefix('@') {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(name.as_bytes())?
            }
            None => SocketAddr::from_pathname(target)?,
        };
        let sock = UnixDatagram::unbound()?;
        // A full receive queue drops the message instead of blocking the daemon.
        sock.set_nonblocking(true)?;
        Ok(Notifier(Arc::new((sock, addr))))
    }

    pub fn send(&self, msg: &str) {
        let (sock, addr) = &*self.0;
        if let Err(e) = sock.send_to_addr(msg.as_bytes(), addr) {
            tracing::debug!("cannot notify the service manager ({msg:?}): {e}");
        }
    }

    /// `READY=1` with our pid and a status line.
    pub fn ready(&self, status: &str) {
        self.send(&format!(
            "READY=1\nMAINPID={}\nSTATUS={}",
            std::process::id(),
            one_line(status)
        ));
    }

    /// A fresh one-line summary (`STATUS=`), as the watchers change.
    pub fn status(&self, status: &str) {
        self.send(&format!("STATUS={}", one_line(status)));
    }

    pub fn reloading(&self) {
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()));
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=stopping");
    }

    pub fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }
}

fn one_line(s: &str) -> String {
    s.replace('\n', " ")
}

/// CLOCK_MONOTONIC in µs, as systemd wants with RELOADING=1.
fn monotonic_usec() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) } != 0 {
        return 0;
    }
    t.tv_sec as u64 * 1_000_000 + t.tv_nsec as u64 / 1_000
}
