//! The next image's side: read the snapshot the previous image left, take
//! duplicates of the inherited fds (the originals stay untouched until the
//! restore is done, so the fallback can hand them on again), and, when
//! anything fails, execute the previous binary with the same state.

use super::exec::{self, Prepared, Target, ENV_FALLBACK, ENV_OLD_EXE, ENV_STATE, ENV_TEST_FAIL};
use super::snapshot::{SlotSnap, Snapshot, STATE_VERSION};
use std::collections::HashMap;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};

/// An upgrade in progress in this image.
pub(crate) struct Restoring {
    pub snap: Snapshot,
    state_fd: RawFd,
    /// This image is the previous binary run again: no further fallback.
    pub fallback: bool,
}

/// Reads the upgrade's variables (and removes them from the environment);
/// None when this start is not an upgrade. Call before any thread exists.
/// On a bad snapshot, executes the previous binary (does not return).
pub(crate) fn from_env() -> Option<Restoring> {
    let state = std::env::var(ENV_STATE).ok()?;
    let old = std::env::var(ENV_OLD_EXE).ok();
    let fallback = std::env::var_os(ENV_FALLBACK).is_some();
    let test_fail = std::env::var(ENV_TEST_FAIL).ok().filter(|_| !fallback);
    for k in [
        ENV_STATE,
        ENV_OLD_EXE,
        ENV_FALLBACK,
        ENV_TEST_FAIL,
        super::signals::ENV_TEST_SIGNAL,
    ] {
        std::env::remove_var(k);
    }
    if let Some(fd) = old.and_then(|o| o.parse::<RawFd>().ok()) {
        exec::adopt_old_exe(fd);
    }
    let state_fd = match state.parse::<RawFd>() {
        Ok(fd) => fd,
        Err(_) => fail_early(-1, fallback, &format!("{ENV_STATE}={state:?} is not an fd")),
    };
    let snap = match read(state_fd) {
        Ok(s) => s,
        Err(e) => fail_early(state_fd, fallback, &e),
    };
    if let Some(a) = &snap.notify_address {
        crate::readiness::notify::NotifyRouter::reuse_address(a);
    }
    if fallback {
        super::set_fell_back();
    }
    let r = Restoring {
        snap,
        state_fd,
        fallback,
    };
    if !fallback {
        match Prepared::new(state_fd, r.snap.fds(), true) {
            Ok(p) => exec::arm_crash_fallback(p),
            Err(e) => tracing::warn!("upgrade: no crash fallback: {e}"),
        }
    }
    match test_fail.as_deref() {
        Some("abort") => std::process::abort(),
        Some("error") => r.fail("test hook: restore refused"),
        _ => {}
    }
    if let Some(fd) = r.snap.fds().into_iter().find(|&fd| !is_open(fd)) {
        r.fail(&format!("fd {fd} of the snapshot is not open"));
    }
    tracing::info!(from = %r.snap.from_version, from_binary = %r.snap.from_binary, watchers = r.snap.watchers.len(), fallback, "upgrade: restoring");
    Some(r)
}

fn read(fd: RawFd) -> Result<Snapshot, String> {
    let data = exec::read_memfd(fd).map_err(|e| format!("cannot read the snapshot (fd {fd}): {e}"))?;
    let v: serde_json::Value =
        serde_json::from_slice(&data).map_err(|e| format!("the snapshot is not JSON: {e}"))?;
    let version = v["state_version"].as_u64().unwrap_or(0);
    if version != u64::from(STATE_VERSION) {
        return Err(format!(
            "snapshot state version {version}, this binary reads {STATE_VERSION}"
        ));
    }
    serde_json::from_value(v).map_err(|e| format!("bad snapshot: {e}"))
}

fn is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only checks that the fd is open.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

fn dup(fd: RawFd) -> std::io::Result<OwnedFd> {
    // SAFETY: fd is open (checked at start-up) and stays open while borrowed.
    unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned()
}

/// Before any state was taken: execute the previous binary, or give up.
fn fail_early(state_fd: RawFd, fallback: bool, why: &str) -> ! {
    if !fallback && state_fd >= 0 {
        tracing::error!("upgrade: cannot restore ({why}); executing the previous binary again");
        if let Ok(p) = Prepared::new(state_fd, Vec::new(), true) {
            let e = p.exec(&Target::Kept);
            tracing::error!("upgrade: cannot execute the previous binary: {e}");
        }
    }
    tracing::error!(
        "upgrade: cannot restore ({why}); the supervised processes are left running, unsupervised"
    );
    std::process::exit(1)
}

impl Restoring {
    /// This image cannot restore: execute the previous binary with the same state.
    pub(crate) fn fail(&self, why: &str) -> ! {
        if self.fallback {
            tracing::error!("upgrade: the previous binary cannot restore either ({why}); the supervised processes are left running, unsupervised");
            std::process::exit(1);
        }
        tracing::error!("upgrade: cannot restore ({why}); executing the previous binary again");
        match Prepared::new(self.state_fd, self.snap.fds(), true) {
            Ok(p) => {
                let e = p.exec(&Target::Kept);
                tracing::error!("upgrade: cannot execute the previous binary: {e}");
            }
            Err(e) => tracing::error!("upgrade: cannot prepare the fallback: {e}"),
        }
        std::process::exit(1)
    }

    /// A duplicate of the socket `[sockets.NAME]` and the file it created.
    pub(crate) fn socket(
        &self,
        name: &str,
    ) -> Option<(std::io::Result<OwnedFd>, Option<std::path::PathBuf>)> {
        let s = self.snap.sockets.iter().find(|s| s.name == name)?;
        Some((dup(s.fd), s.created_path.clone()))
    }

    /// Duplicates of the control/pubsub/stats listeners, for `transport`.
    pub(crate) fn install_listeners(&self) -> std::io::Result<()> {
        let mut m = HashMap::new();
        for l in &self.snap.listeners {
            m.insert(l.key.clone(), (dup(l.fd)?, l.unix));
        }
        super::listeners::install_inherited(m);
        Ok(())
    }

    /// A duplicate of a control connection the previous image kept open.
    pub(crate) fn control_conn(&self, c: &super::connections::CarriedConn) -> std::io::Result<OwnedFd> {
        dup(c.fd)
    }

    /// Duplicates of a slot's stdout/stderr pipes.
    pub(crate) fn slot_fds(&self, s: &SlotSnap) -> [Option<OwnedFd>; 2] {
        let d = |fd: Option<RawFd>| fd.and_then(|f| dup(f).ok());
        [d(s.stdout_fd), d(s.stderr_fd)]
    }

    /// Everything is adopted: close the originals, crashes are crashes
    /// again, and this image's own binary becomes the next fallback.
    pub(crate) fn finish(self) {
        exec::disarm_crash_fallback();
        for fd in self.snap.fds().into_iter().chain([self.state_fd]) {
            // SAFETY: these originals were duplicated; nothing else uses the numbers.
            unsafe { libc::close(fd) };
        }
        exec::keep_self_exe();
        let took_ms = ((crate::watchers::now_f64() - self.snap.written) * 1000.0).max(0.0);
        tracing::info!(binary_id = %exec::binary_id(), version = exec::VERSION, since_snapshot_ms = took_ms as u64, "upgrade: restored");
    }
}
