//! The exec itself: the memfd that carries the snapshot, the fds that
//! survive it, the old binary kept open since start-up, and the fallback
//! that executes it again when the next image cannot restore.

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStringExt;
use std::sync::{Mutex, OnceLock};

/// fd number of the snapshot memfd in the next image.
pub(crate) const ENV_STATE: &str = "RINGMASTER_UPGRADE_STATE";
/// fd number of the previous image's binary, for the fallback.
pub(crate) const ENV_OLD_EXE: &str = "RINGMASTER_UPGRADE_OLD_EXE";
/// Set when the previous image is executed again because the next one could not restore.
pub(crate) const ENV_FALLBACK: &str = "RINGMASTER_UPGRADE_FALLBACK";
/// Test hook: `abort` or `error` makes the restore fail (ignored in a fallback).
pub(crate) const ENV_TEST_FAIL: &str = "RINGMASTER_UPGRADE_TEST_FAIL";

/// The service manager's variables, as the daemon got them: systemd's
/// module removes them from the environment, the next image needs them.
const MANAGER_VARS: [&str; 2] = ["NOTIFY_SOCKET", "WATCHDOG_USEC"];

/// The binary this image runs, open since start-up (O_CLOEXEC).
static SELF_EXE: OnceLock<Mutex<Option<(OwnedFd, String)>>> = OnceLock::new();
static MANAGER_ENV: OnceLock<Vec<(String, String)>> = OnceLock::new();

fn self_exe() -> &'static Mutex<Option<(OwnedFd, String)>> {
    SELF_EXE.get_or_init(|| Mutex::new(None))
}

/// Remembers the service manager's variables; call before systemd's
/// module takes them out of the environment.
pub(crate) fn remember_manager_env() {
    let v = MANAGER_VARS
        .iter()
        .filter_map(|k| Some((k.to_string(), std::env::var(k).ok()?)))
        .collect();
    let _ = MANAGER_ENV.set(v);
}

/// Opens /proc/self/exe (O_CLOEXEC) and keeps it: the binary to execute
/// again if the next image cannot restore, even once its path is replaced.
pub(crate) fn keep_self_exe() {
    // SAFETY: open on a constant C string; the fd is owned below.
    let fd = unsafe { libc::open(c"/proc/self/exe".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        tracing::warn!(
            "cannot open /proc/self/exe ({}): an upgrade has no binary to fall back to",
            io::Error::last_os_error()
        );
        return;
    }
    // SAFETY: fd was just returned by open.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let id = binary_id_of(fd.as_raw_fd()).unwrap_or_else(|| "unknown".into());
    *self_exe().lock().unwrap_or_else(|e| e.into_inner()) = Some((fd, id));
}

/// Adopts the previous image's binary fd (inherited across the exec) as the
/// fallback while this image restores.
pub(crate) fn adopt_old_exe(fd: RawFd) {
    // SAFETY: F_SETFD on an fd number; it was left open for us by the previous image.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    // SAFETY: the previous image passed this fd for us and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let id = binary_id_of(fd.as_raw_fd()).unwrap_or_else(|| "unknown".into());
    *self_exe().lock().unwrap_or_else(|e| e.into_inner()) = Some((fd, id));
}

/// The raw fd of the kept binary.
pub(crate) fn self_exe_fd() -> Option<RawFd> {
    self_exe()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .map(|(f, _)| f.as_raw_fd())
}

/// The binary this image runs: device, inode, size and mtime of the
/// executable file, so two builds (or a copy) differ even at the same version.
pub fn binary_id() -> String {
    if let Some((_, id)) = &*self_exe().lock().unwrap_or_else(|e| e.into_inner()) {
        return id.clone();
    }
    std::fs::File::open("/proc/self/exe")
        .ok()
        .and_then(|f| binary_id_of(f.as_raw_fd()))
        .unwrap_or_else(|| "unknown".into())
}

fn binary_id_of(fd: RawFd) -> Option<String> {
    // SAFETY: fstat fills the zeroed struct we own.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return None;
    }
    Some(format!(
        "{:x}-{:x}-{:x}-{}.{:09}",
        st.st_dev, st.st_ino, st.st_size, st.st_mtime, st.st_mtime_nsec
    ))
}

/// The running version, for `globaloptions`, `status` and the pre-flight.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A memfd (close-on-exec) holding `data`, positioned at its start.
pub(crate) fn write_memfd(data: &[u8]) -> io::Result<OwnedFd> {
    // SAFETY: memfd_create on a constant name; the fd is owned below.
    let fd = unsafe { libc::memfd_create(c"ringmaster-upgrade".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by memfd_create.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut off = 0usize;
    while off < data.len() {
        // SAFETY: writes from a live slice into our fd.
        let n = unsafe {
            libc::pwrite(
                fd.as_raw_fd(),
                data[off..].as_ptr().cast(),
                data.len() - off,
                off as i64,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        off += n as usize;
    }
    Ok(fd)
}

/// The whole content of the memfd `fd`, read from offset 0 (the fd is not consumed).
pub(crate) fn read_memfd(fd: RawFd) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        // SAFETY: reads into a live buffer.
        let n = unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), out.len() as i64) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
}

/// What to execute.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// The new binary, by path (checked by its pre-flight just before).
    Path(std::path::PathBuf),
    /// The binary kept open since start-up (the fallback).
    Kept,
}

/// argv and envp, ready before the point where only raw syscalls are allowed.
pub(crate) struct Prepared {
    argv: Vec<CString>,
    envp: Vec<CString>,
    /// fds whose close-on-exec flag is cleared just before the exec.
    keep: Vec<RawFd>,
}

impl Prepared {
    /// This process's own argv, its environment plus the manager's variables
    /// and the upgrade's, and the fds to keep.
    pub(crate) fn new(state_fd: RawFd, mut keep: Vec<RawFd>, fallback: bool) -> io::Result<Prepared> {
        let cstr = |v: Vec<u8>| CString::new(v).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e));
        let argv = std::env::args_os()
            .map(|a| cstr(a.into_vec()))
            .collect::<io::Result<Vec<_>>>()?;
        let ours = [ENV_STATE, ENV_OLD_EXE, ENV_FALLBACK, "WATCHDOG_PID"];
        let mut env: Vec<(OsString, OsString)> = std::env::vars_os()
            .filter(|(k, _)| !ours.iter().any(|o| k == o) && !MANAGER_VARS.iter().any(|m| k == m))
            .collect();
        for (k, v) in MANAGER_ENV.get().into_iter().flatten() {
            env.push((k.into(), v.into()));
            if k == "WATCHDOG_USEC" {
                env.push(("WATCHDOG_PID".into(), std::process::id().to_string().into()));
            }
        }
        env.push((ENV_STATE.into(), state_fd.to_string().into()));
        keep.push(state_fd);
        if let Some(old) = self_exe_fd() {
            env.push((ENV_OLD_EXE.into(), old.to_string().into()));
            keep.push(old);
        }
        if fallback {
            env.push((ENV_FALLBACK.into(), "1".into()));
        }
        let envp = env
            .into_iter()
            .map(|(mut k, v)| {
                k.push("=");
                k.push(v);
                cstr(k.into_vec())
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Prepared { argv, envp, keep })
    }

    /// Clears close-on-exec on the kept fds and executes `target`. Returns
    /// only on failure. Makes only raw syscalls (also used from a signal handler).
    pub(crate) fn exec(&self, target: &Target) -> io::Error {
        let old = hold_signals();
        let e = self.exec_held(target);
        // Still this image: the kept fds must not leak into its children.
        for &fd in &self.keep {
            // SAFETY: fcntl on fd numbers; async-signal-safe.
            unsafe {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags >= 0 {
                    libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
                }
            }
        }
        // SAFETY: restores the mask saved above.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
        e
    }

    fn exec_held(&self, target: &Target) -> io::Error {
        for &fd in &self.keep {
            // SAFETY: fcntl on fd numbers; async-signal-safe.
            unsafe {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags >= 0 {
                    libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
                }
            }
        }
        let argv: Vec<*const libc::c_char> = self
            .argv
            .iter()
            .map(|a| a.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        let envp: Vec<*const libc::c_char> = self
            .envp
            .iter()
            .map(|a| a.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        self.exec_raw(target, &argv, &envp)
    }

    fn exec_raw(
        &self,
        target: &Target,
        argv: &[*const libc::c_char],
        envp: &[*const libc::c_char],
    ) -> io::Error {
        match target {
            Target::Path(p) => {
                let Ok(path) = CString::new(p.as_os_str().to_os_string().into_vec()) else {
                    return io::Error::new(io::ErrorKind::InvalidInput, "binary path contains a NUL byte");
                };
                // SAFETY: NUL-terminated arrays of pointers to live C strings.
                unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
            }
            Target::Kept => match self_exe_fd() {
                None => return io::Error::other("no binary was kept open since start-up"),
                Some(fd) => {
                    // SAFETY: as above; AT_EMPTY_PATH executes the file `fd` refers to.
                    unsafe {
                        libc::syscall(
                            libc::SYS_execveat,
                            fd,
                            c"".as_ptr(),
                            argv.as_ptr(),
                            envp.as_ptr(),
                            libc::AT_EMPTY_PATH,
                        )
                    };
                }
            },
        }
        io::Error::last_os_error()
    }
}

/// Signals the daemon handles: blocked across the exec (the mask is
/// inherited, pending ones stay pending) until the next image has its
/// handlers, so a SIGTERM or a second SIGUSR2 meanwhile does not kill it.
const HELD_SIGNALS: [i32; 7] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGHUP,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGCHLD,
];

/// Blocks [`HELD_SIGNALS`] in this thread; returns the previous mask.
/// Async-signal-safe.
fn hold_signals() -> libc::sigset_t {
    // SAFETY: sigset operations on sets we own; pthread_sigmask on this thread.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in HELD_SIGNALS {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
        old
    }
}

/// The fallback armed while this image restores: a crash (SIGSEGV, SIGBUS,
/// SIGILL, SIGFPE, SIGABRT — a panic that aborts) executes the previous
/// binary with the same state, from the signal handler.
struct Armed {
    prepared: Prepared,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    fd: RawFd,
}

static mut ARMED: *const Armed = std::ptr::null();
const CRASH_SIGNALS: [i32; 5] = [
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGILL,
    libc::SIGFPE,
    libc::SIGABRT,
];

extern "C" fn on_crash(_: libc::c_int) {
    // SAFETY: ARMED is set before the handler is installed and never freed
    // while it is; only raw syscalls follow.
    unsafe {
        let a = ARMED;
        if a.is_null() {
            return;
        }
        let a = &*a;
        hold_signals();
        for &fd in &a.prepared.keep {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 {
                libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
            }
        }
        libc::syscall(
            libc::SYS_execveat,
            a.fd,
            c"".as_ptr(),
            a.argv.as_ptr(),
            a.envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        );
    }
    // The exec failed: SA_RESETHAND restored the default action, which the
    // re-raised signal now takes.
}

/// Arms the crash fallback (call before any thread exists).
pub(crate) fn arm_crash_fallback(prepared: Prepared) {
    let Some(fd) = self_exe_fd() else { return };
    let ptrs = |v: &[CString]| -> Vec<*const libc::c_char> {
        v.iter()
            .map(|a| a.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect()
    };
    let argv = ptrs(&prepared.argv);
    let envp = ptrs(&prepared.envp);
    let armed = Box::leak(Box::new(Armed {
        prepared,
        argv,
        envp,
        fd,
    }));
    // SAFETY: written before the handlers exist; read only by them.
    unsafe { ARMED = armed };
    for sig in CRASH_SIGNALS {
        // SAFETY: installing a handler that makes only raw syscalls.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_crash as *const () as usize;
            sa.sa_flags = libc::SA_RESETHAND | libc::SA_NODEFER;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// The restore is done: crashes are crashes again.
pub(crate) fn disarm_crash_fallback() {
    for sig in CRASH_SIGNALS {
        // SAFETY: restores the default disposition.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    // The Armed block stays leaked (a few KB, once per upgrade): a handler
    // running on another thread right now may still read it.
}
