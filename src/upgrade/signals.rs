//! The signals the daemon handles, across an upgrade: none is lost between
//! the images.
//!
//! Every thread of the daemon blocks them (the main thread blocks them
//! before any other thread exists, and threads inherit its mask) except one,
//! `ringmaster-signals`, the only thread the kernel can deliver them to.
//! Just before the exec that thread blocks them too: from then on a signal
//! stays pending in the kernel, which keeps it across the exec for the next
//! image. One the handlers already took but the daemon has not acted on yet
//! (a SIGTERM whose stop has not begun, a SIGHUP whose reload has not run) is
//! sent again to the process then, so it is pending the same way.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Handled signals: counted, blocked everywhere but on the signal thread.
pub(crate) const HANDLED: [i32; 7] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGHUP,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGCHLD,
];

/// Test hook: `TERM` makes this image send itself SIGTERM, and wait until a
/// handler took it, just before the exec (ignored by the next image).
pub(crate) const ENV_TEST_SIGNAL: &str = "RINGMASTER_UPGRADE_TEST_SIGNAL";

/// Deliveries taken by a handler, and how many of them the daemon acted on.
static CAUGHT: [AtomicU32; 7] = [const { AtomicU32::new(0) }; 7];
static ACTED: [AtomicU32; 7] = [const { AtomicU32::new(0) }; 7];

enum Cmd {
    Hold(mpsc::Sender<()>),
}

static THREAD: OnceLock<Mutex<mpsc::Sender<Cmd>>> = OnceLock::new();

fn index(sig: i32) -> Option<usize> {
    HANDLED.iter().position(|&s| s == sig)
}

fn handled_set() -> libc::sigset_t {
    // SAFETY: sigset operations on a set we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in HANDLED {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

fn mask(how: libc::c_int) {
    let set = handled_set();
    // SAFETY: changes the calling thread's mask only.
    unsafe { libc::pthread_sigmask(how, &set, std::ptr::null_mut()) };
}

/// The calling thread's mask becomes exactly the handled signals (whatever
/// its parent blocked is cleared). Call in the main thread before any
/// other thread exists: every thread created later inherits it.
pub(crate) fn block_everywhere() {
    let set = handled_set();
    // SAFETY: sets the calling thread's mask.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) };
}

/// Counts each delivery, before any other handler of it is registered (so
/// a delivery is counted by the time tokio's handler reports it).
pub(crate) fn count_deliveries() -> std::io::Result<()> {
    for (i, sig) in HANDLED.into_iter().enumerate() {
        // SAFETY: the action only increments an atomic (async-signal-safe).
        unsafe {
            signal_hook_registry::register(sig, move || {
                CAUGHT[i].fetch_add(1, Ordering::SeqCst);
            })
        }?;
    }
    Ok(())
}

/// Deliveries of `sig` so far: a consumer that woke up for them passes
/// this to [`acted`] once it has done what they ask.
pub(crate) fn seen(sig: i32) -> u32 {
    index(sig).map_or(0, |i| CAUGHT[i].load(Ordering::SeqCst))
}

/// The deliveries counted by `seen` are acted on.
pub(crate) fn acted(sig: i32, seen: u32) {
    if let Some(i) = index(sig) {
        ACTED[i].fetch_max(seen, Ordering::SeqCst);
    }
}

/// Starts the thread that takes the handled signals (once the handlers
/// exist): signals left pending by the previous image are delivered now.
pub(crate) fn start_thread() -> std::io::Result<()> {
    let (tx, rx) = mpsc::channel::<Cmd>();
    std::thread::Builder::new()
        .name("ringmaster-signals".into())
        .spawn(move || {
            mask(libc::SIG_UNBLOCK);
            // Handlers run on this thread, between (or during) the waits.
            for cmd in rx {
                match cmd {
                    Cmd::Hold(ack) => {
                        mask(libc::SIG_BLOCK);
                        let _ = ack.send(());
                    }
                }
            }
        })?;
    let _ = THREAD.set(Mutex::new(tx));
    Ok(())
}

/// Just before the exec: no thread takes a handled signal any more, and
/// those taken but not acted on are pending again. After this, the process
/// takes none of them until the next image starts its signal thread.
pub(crate) fn hold_for_exec() {
    if std::env::var(ENV_TEST_SIGNAL).as_deref() == Ok("TERM") {
        raise_and_wait_taken(libc::SIGTERM);
    }
    if let Some(t) = THREAD.get() {
        let (ack, done) = mpsc::channel();
        let sent = t
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(Cmd::Hold(ack))
            .is_ok();
        if !sent || done.recv_timeout(Duration::from_secs(2)).is_err() {
            tracing::warn!("upgrade: the signal thread did not answer; a signal may be lost in the exec");
        }
    }
    for (i, sig) in HANDLED.into_iter().enumerate() {
        if CAUGHT[i].load(Ordering::SeqCst) > ACTED[i].load(Ordering::SeqCst) {
            tracing::info!(
                signal = sig,
                "upgrade: a signal not acted on yet is passed to the new binary"
            );
            // SAFETY: plain syscall; blocked in every thread, it stays pending across the exec.
            unsafe { libc::kill(libc::getpid(), sig) };
        }
    }
}

/// The test hook: `sig` taken by the handler (and so known to the daemon
/// only, no longer pending in the kernel) when the exec comes.
fn raise_and_wait_taken(sig: i32) {
    let before = seen(sig);
    // SAFETY: plain syscall on ourselves.
    unsafe { libc::kill(libc::getpid(), sig) };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while seen(sig) == before && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
}
