//! The control, pubsub and stats listeners across an upgrade. In the daemon,
//! `transport::bind_socket` binds each endpoint itself and keeps a duplicate
//! of the listener here; the upgrade passes those fds on, and the next image
//! adopts them (`zeromq`'s `bind_listener`) instead of binding again, so a
//! client that connects during the exec waits in the backlog.

use super::snapshot::ListenerFd;
use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

static ENABLED: AtomicBool = AtomicBool::new(false);
static COUNT: AtomicUsize = AtomicUsize::new(0);
static HELD: Mutex<Vec<(String, OwnedFd, bool)>> = Mutex::new(Vec::new());
static INHERITED: Mutex<Option<HashMap<String, (OwnedFd, bool)>>> = Mutex::new(None);
/// Set just before the exec: closing the control socket must not unlink its
/// ipc file, which the next image listens on.
pub(crate) static KEEP_IPC_FILES: AtomicBool = AtomicBool::new(false);

/// The daemon binds its endpoints through this module (tests and clients do not).
pub(crate) fn enable() {
    ENABLED.store(true, Ordering::SeqCst);
}

/// The key of the next endpoint bound: its rank and its configured text.
pub(crate) fn next_key(endpoint: &str) -> Option<String> {
    if !ENABLED.load(Ordering::SeqCst) {
        return None;
    }
    Some(format!("{}:{endpoint}", COUNT.fetch_add(1, Ordering::SeqCst)))
}

/// Listeners the previous image passed, by key.
pub(crate) fn install_inherited(l: HashMap<String, (OwnedFd, bool)>) {
    *INHERITED.lock().unwrap_or_else(|e| e.into_inner()) = Some(l);
}

/// The listener the previous image bound for `key`: (fd, is a UNIX socket).
pub(crate) fn take(key: &str) -> Option<(OwnedFd, bool)> {
    INHERITED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_mut()?
        .remove(key)
}

/// Keeps a duplicate (close-on-exec) of a listener, to pass on at an upgrade.
pub(crate) fn hold(key: &str, listener: &impl AsFd, unix: bool) -> std::io::Result<()> {
    let dup = listener.as_fd().try_clone_to_owned()?;
    HELD.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((key.to_string(), dup, unix));
    Ok(())
}

/// The held listeners, for the snapshot.
pub(crate) fn held() -> Vec<ListenerFd> {
    HELD.lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(key, fd, unix)| ListenerFd {
            key: key.clone(),
            fd: fd.as_raw_fd(),
            unix: *unix,
        })
        .collect()
}
