//! Starting one process: everything is prepared in the parent (argv, envp,
//! ids, limits, fd lists), then the forked child runs only async-signal-safe
//! system calls and `execve`s the program itself.
//!
//! In the child, in order: join the slot's cgroup (cgroup kill mode, by
//! writing "0" to a `cgroup.procs` fd opened by the parent, so nothing it
//! starts is ever outside); new process group; empty signal mask and default
//! dispositions; every fd ≥ 3 close-on-exec (close_range); the watcher's
//! sockets dup'ed to 3, 4, … with close-on-exec cleared; rlimits;
//! supplementary groups; gid; uid; umask; working_dir; `LISTEN_PID` patched
//! to the child's own pid; execve. A failure at any step is written (errno and
//! step) to a close-on-exec pipe that the parent reads, so "no such file" or
//! "permission denied" reaches the log instead of a bare exit code.

use crate::config::model::{Args, Ident};
use crate::config::WatcherSpec;
use crate::processes::substitute::{substitute, Vars};
use crate::reaper::{Exited, Reaper};
use actix::Recipient;
use std::collections::BTreeMap;
use std::ffi::{CString, OsStr, OsString};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// A socket handed to a child: its name and the daemon's fd.
#[derive(Clone, Debug)]
pub struct InheritedSocket {
    pub name: String,
    pub fd: RawFd,
}

pub struct Spawned {
    pub pid: i32,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    pub argv: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("{0}")]
    Prepare(String),
    #[error("cannot start {program}: {step}: {err}")]
    Child {
        program: String,
        step: &'static str,
        err: io::Error,
    },
    #[error("fork failed: {0}")]
    Fork(io::Error),
}

/// How the child's stdout/stderr are connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Null,
    Pipe,
}

const STEPS: [&str; 13] = [
    "unknown step",
    "setpgid",
    "signal reset",
    "close-on-exec",
    "dup socket",
    "place socket",
    "setrlimit",
    "setgroups",
    "setgid",
    "setuid",
    "chdir",
    "execve",
    "join cgroup",
];

/// Everything the child needs, allocated before fork.
struct Prepared {
    program: CString,
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    _env: Vec<Vec<u8>>,
    envp: Vec<*const libc::c_char>,
    listen_pid_digits: Option<*mut u8>,
    sockets: Vec<RawFd>,
    tmp: Vec<RawFd>,
    dup_base: RawFd,
    rlimits: Vec<(i32, libc::rlimit)>,
    groups: Option<Vec<libc::gid_t>>,
    gid: Option<libc::gid_t>,
    uid: Option<libc::uid_t>,
    umask: Option<libc::mode_t>,
    cwd: Option<CString>,
    err_w: RawFd,
    /// `cgroup.procs` of the slot's cgroup, or -1.
    cgroup_procs: RawFd,
    max_fd: RawFd,
    ignored: &'static [i32],
}

// The raw pointers point into buffers owned by the same struct; the child
// gets its own copy of the whole address space.
unsafe impl Send for Prepared {}
unsafe impl Sync for Prepared {}

unsafe fn report(err_w: RawFd, step: u32) -> ! {
    let errno = *libc::__errno_location();
    let mut buf = [0u8; 8];
    buf[..4].copy_from_slice(&errno.to_ne_bytes());
    buf[4..].copy_from_slice(&step.to_ne_bytes());
    libc::write(err_w, buf.as_ptr().cast(), buf.len());
    libc::_exit(127);
}

impl Prepared {
    /// Runs in the forked child. Only async-signal-safe calls.
    unsafe fn exec(&mut self) -> ! {
        let w = self.err_w;
        if self.cgroup_procs >= 0 && libc::write(self.cgroup_procs, b"0".as_ptr().cast(), 1) != 1 {
            report(w, 12);
        }
        if libc::setpgid(0, 0) != 0 {
            report(w, 1);
        }
        if !reset_signals(self.ignored) {
            report(w, 2);
        }
        if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) != 0 {
            for fd in 3..self.max_fd {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags >= 0 {
                    libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
                }
            }
        }
        // Two passes, through fds above every source and target, so that a
        // socket already sitting on another socket's target is not clobbered.
        for i in 0..self.sockets.len() {
            let t = libc::fcntl(self.sockets[i], libc::F_DUPFD_CLOEXEC, self.dup_base);
            if t < 0 {
                report(w, 4);
            }
            self.tmp[i] = t;
        }
        for i in 0..self.tmp.len() {
            let target = 3 + i as RawFd;
            if libc::dup2(self.tmp[i], target) < 0 {
                report(w, 5);
            }
            // dup2 clears FD_CLOEXEC, but clear it explicitly: the fd numbers may match.
            if libc::fcntl(target, libc::F_SETFD, 0) != 0 {
                report(w, 5);
            }
        }
        for (res, lim) in &self.rlimits {
            if libc::setrlimit(*res as _, lim) != 0 {
                report(w, 6);
            }
        }
        if let Some(groups) = &self.groups {
            if libc::setgroups(groups.len(), groups.as_ptr()) != 0 {
                report(w, 7);
            }
        }
        if let Some(gid) = self.gid {
            if libc::setgid(gid) != 0 {
                report(w, 8);
            }
        }
        if let Some(uid) = self.uid {
            if libc::setuid(uid) != 0 {
                report(w, 9);
            }
        }
        if let Some(mask) = self.umask {
            libc::umask(mask);
        }
        if let Some(cwd) = &self.cwd {
            if libc::chdir(cwd.as_ptr()) != 0 {
                report(w, 10);
            }
        }
        if let Some(digits) = self.listen_pid_digits {
            let mut pid = libc::getpid() as u32;
            let mut buf = [0u8; 12];
            let mut n = 0;
            loop {
                buf[n] = b'0' + (pid % 10) as u8;
                n += 1;
                pid /= 10;
                if pid == 0 {
                    break;
                }
            }
            for i in 0..n {
                *digits.add(i) = buf[n - 1 - i];
            }
            *digits.add(n) = 0;
        }
        libc::execve(self.program.as_ptr(), self.argv_ptrs.as_ptr(), self.envp.as_ptr());
        report(w, 11);
    }
}

/// Empties the signal mask and puts `ignored` back to their default action.
/// Caught signals go back to default at execve by themselves; only ignored
/// ones would stay ignored in the program. Async-signal-safe (raw syscalls).
pub(crate) unsafe fn reset_signals(ignored: &[i32]) -> bool {
    let mut set: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut set);
    if libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) != 0 {
        return false;
    }
    for &sig in ignored {
        set_default(sig);
    }
    true
}

/// The kernel's `struct sigaction` on Linux: handler, flags, restorer, mask
/// (zeroed = SIG_DFL, no flags). Used through the raw syscall because glibc's
/// `sigaction` refuses its two internal real-time signals (32 and 33), which
/// a parent can still leave ignored.
type KernelSigaction = [libc::c_ulong; 4];

/// Async-signal-safe: one raw syscall.
unsafe fn set_default(sig: i32) {
    let act: KernelSigaction = [0; 4];
    libc::syscall(
        libc::SYS_rt_sigaction,
        sig,
        act.as_ptr(),
        std::ptr::null_mut::<KernelSigaction>(),
        8usize,
    );
}

/// The signals this daemon ignores: SIGPIPE (the Rust runtime sets SIG_IGN
/// before `main`) and whatever its own parent left ignored. Caught signals
/// go back to default at execve by themselves; ignored ones would stay
/// ignored in the program, so the child resets these. Read once, at the
/// first spawn (the daemon never sets SIG_IGN itself).
pub(crate) fn ignored_signals() -> &'static [i32] {
    static IGNORED: OnceLock<Vec<i32>> = OnceLock::new();
    IGNORED.get_or_init(|| {
        (1..=libc::SIGRTMAX())
            .filter(|&sig| sig != libc::SIGKILL && sig != libc::SIGSTOP)
            .filter(|&sig| {
                let mut old: KernelSigaction = [0; 4];
                // SAFETY: a query only (no new action); `old` is large enough
                // for the kernel's struct sigaction.
                let r = unsafe {
                    libc::syscall(
                        libc::SYS_rt_sigaction,
                        sig,
                        std::ptr::null::<KernelSigaction>(),
                        old.as_mut_ptr(),
                        8usize,
                    )
                };
                r == 0 && old[0] == libc::SIG_IGN as libc::c_ulong
            })
            .collect()
    })
}

fn cstring(what: &str, bytes: impl Into<Vec<u8>>) -> Result<CString, SpawnError> {
    CString::new(bytes).map_err(|_| SpawnError::Prepare(format!("{what} contains a NUL byte")))
}

/// The child's environment, before the LISTEN_* variables.
pub fn child_env(spec: &WatcherSpec) -> BTreeMap<OsString, OsString> {
    let mut env: BTreeMap<OsString, OsString> = BTreeMap::new();
    if spec.copy_env {
        env.extend(std::env::vars_os());
    } else if spec.copy_path {
        if let Some(p) = std::env::var_os("PATH") {
            env.insert("PATH".into(), p);
        }
    }
    for (k, v) in &spec.env {
        env.insert(k.into(), expand_env_value(v).into());
    }
    env
}

/// `$NAME` (uppercase, as Circus) in env values expands to the daemon's value.
fn expand_env_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let b = v.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' && i + 1 < b.len() && b[i + 1].is_ascii_uppercase() {
            let start = i + 1;
            let mut j = start;
            while j < b.len() && (b[j].is_ascii_uppercase() || b[j].is_ascii_digit() || b[j] == b'_') {
                j += 1;
            }
            out.push_str(&std::env::var(&v[start..j]).unwrap_or_default());
            i = j;
        } else {
            let ch = v[i..].chars().next().unwrap_or('\u{fffd}');
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// The argv for one process of `spec` (after substitution).
pub fn build_argv(spec: &WatcherSpec, vars: &Vars<'_>) -> Result<Vec<String>, SpawnError> {
    let cmd = substitute(&spec.cmd, vars);
    if spec.shell {
        let mut line = cmd;
        match &spec.args {
            Some(Args::Line(a)) => {
                line.push(' ');
                line.push_str(&substitute(a, vars));
            }
            Some(Args::List(list)) => {
                for a in list {
                    line.push(' ');
                    line.push_str(
                        &shlex::try_quote(&substitute(a, vars))
                            .map_err(|e| SpawnError::Prepare(e.to_string()))?,
                    );
                }
            }
            None => {}
        }
        let mut argv = vec!["/bin/sh".to_string(), "-c".to_string(), line];
        if let Some(sa) = &spec.shell_args {
            argv.extend(shlex::split(&substitute(sa, vars)).unwrap_or_default());
        }
        return Ok(argv);
    }
    let mut argv = shlex::split(&cmd).ok_or_else(|| {
        SpawnError::Prepare(format!("cannot split command line {cmd:?} (unbalanced quotes)"))
    })?;
    match &spec.args {
        Some(Args::Line(a)) => argv.extend(
            shlex::split(&substitute(a, vars))
                .ok_or_else(|| SpawnError::Prepare(format!("cannot split args {a:?}")))?,
        ),
        Some(Args::List(list)) => argv.extend(list.iter().map(|a| substitute(a, vars))),
        None => {}
    }
    if argv.is_empty() {
        return Err(SpawnError::Prepare("empty command".into()));
    }
    Ok(argv)
}

/// Finds `prog` as execvp would, in the child's PATH, relative to its working dir.
fn resolve_program(prog: &str, path: Option<&OsStr>, cwd: Option<&Path>) -> Result<PathBuf, SpawnError> {
    let rel = |p: PathBuf| match cwd {
        Some(c) if p.is_relative() => c.join(p),
        _ => p,
    };
    if prog.contains('/') {
        return Ok(PathBuf::from(prog));
    }
    let default = OsString::from("/usr/local/bin:/usr/bin:/bin");
    let search = path.unwrap_or(&default);
    for dir in std::env::split_paths(search) {
        let cand = dir.join(prog);
        let full = rel(cand.clone());
        if let Ok(c) = CString::new(full.as_os_str().as_bytes()) {
            // SAFETY: c is a valid NUL-terminated string.
            if unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0 && full.is_file() {
                return Ok(cand);
            }
        }
    }
    Err(SpawnError::Child {
        program: prog.to_string(),
        step: "lookup in PATH",
        err: io::Error::from_raw_os_error(libc::ENOENT),
    })
}

struct Ids {
    uid: Option<libc::uid_t>,
    gid: Option<libc::gid_t>,
    groups: Option<Vec<libc::gid_t>>,
}

fn resolve_ids(spec: &WatcherSpec) -> Result<Ids, SpawnError> {
    use nix::unistd::{getgrouplist, Group, Uid, User};
    let user = match &spec.uid {
        None => None,
        Some(Ident::Id(n)) => {
            let u = User::from_uid(Uid::from_raw(*n))
                .map_err(|e| SpawnError::Prepare(format!("cannot look up uid {n}: {e}")))?;
            if u.is_none() && spec.gid.is_none() {
                // Without a passwd entry there is no primary group to take:
                // the child would keep gid 0 and the daemon's groups.
                return Err(SpawnError::Prepare(format!(
                    "uid {n} has no passwd entry: set gid too"
                )));
            }
            Some((*n, u))
        }
        Some(Ident::Name(n)) => {
            let u = User::from_name(n)
                .map_err(|e| SpawnError::Prepare(format!("cannot look up user {n:?}: {e}")))?
                .ok_or_else(|| SpawnError::Prepare(format!("no such user {n:?}")))?;
            Some((u.uid.as_raw(), Some(u)))
        }
    };
    let gid = match &spec.gid {
        Some(Ident::Id(n)) => Some(*n),
        Some(Ident::Name(n)) => Some(
            Group::from_name(n)
                .map_err(|e| SpawnError::Prepare(format!("cannot look up group {n:?}: {e}")))?
                .ok_or_else(|| SpawnError::Prepare(format!("no such group {n:?}")))?
                .gid
                .as_raw(),
        ),
        None => user
            .as_ref()
            .and_then(|(_, u)| u.as_ref().map(|u| u.gid.as_raw())),
    };
    // As root, changing ids always sets the supplementary groups too, so
    // the daemon's own groups never leak into the child.
    let root = nix::unistd::geteuid().is_root();
    let groups = match (&user, gid) {
        (Some((_, Some(u))), Some(g)) if root => {
            let name = cstring("user name", u.name.as_bytes())?;
            Some(
                getgrouplist(&name, nix::unistd::Gid::from_raw(g))
                    .map(|v| v.into_iter().map(|g| g.as_raw()).collect())
                    .unwrap_or_else(|_| vec![g]),
            )
        }
        (_, Some(g)) if root => Some(vec![g]),
        _ => None,
    };
    Ok(Ids {
        uid: user.map(|(u, _)| u),
        gid,
        groups,
    })
}

fn rlimits(spec: &WatcherSpec) -> Vec<(i32, libc::rlimit)> {
    spec.rlimits
        .iter()
        .map(|l| {
            let v = match l.value {
                Some(v) => v as libc::rlim_t,
                None if l.resource == libc::RLIMIT_NOFILE as i32 => {
                    // RLIM_INFINITY is refused for NOFILE; use the hard limit (as Circus).
                    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
                        .map(|(_, hard)| hard as libc::rlim_t)
                        .unwrap_or(libc::RLIM_INFINITY)
                }
                None => libc::RLIM_INFINITY,
            };
            (
                l.resource,
                libc::rlimit {
                    rlim_cur: v,
                    rlim_max: v,
                },
            )
        })
        .collect()
}

fn pipe_high(min_fd: RawFd) -> Result<(OwnedFd, OwnedFd), SpawnError> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| SpawnError::Prepare(format!("pipe: {e}")))?;
    // SAFETY: fcntl on a valid fd; the result is a new fd we own.
    let hw = unsafe { libc::fcntl(w.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min_fd) };
    if hw < 0 {
        return Err(SpawnError::Prepare(format!(
            "fcntl: {}",
            io::Error::last_os_error()
        )));
    }
    // SAFETY: hw is a fresh fd returned by fcntl.
    Ok((r, unsafe { OwnedFd::from_raw_fd(hw) }))
}

/// Spawns one process of `spec` in slot `wid`, registered with the reaper for `owner`.
pub fn spawn(
    spec: &WatcherSpec,
    wid: u32,
    sockets: &[InheritedSocket],
    (stdout, stderr): (Output, Output),
    extra_env: &[(String, String)],
    owner: Recipient<Exited>,
    cgroup_procs: Option<RawFd>,
) -> Result<Spawned, SpawnError> {
    let child_fds: Vec<(String, i32)> = sockets
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.clone(), 3 + i as i32))
        .collect();
    let working_dir = spec.working_dir.as_ref().map(|p| p.display().to_string());
    let vars = Vars {
        wid,
        name: &spec.name,
        numprocesses: spec.numprocesses,
        sockets: &child_fds,
        env: &spec.env,
        working_dir: working_dir.as_deref(),
    };
    let argv = build_argv(spec, &vars)?;
    let mut env = child_env(spec);
    for (k, v) in extra_env {
        env.insert(k.into(), v.into());
    }
    let mut listen_pid_index = None;
    if !sockets.is_empty() {
        env.insert("LISTEN_FDS".into(), sockets.len().to_string().into());
        let names: Vec<&str> = sockets.iter().map(|s| s.name.as_str()).collect();
        env.insert("LISTEN_FDNAMES".into(), names.join(":").into());
        env.remove(OsStr::new("LISTEN_PID"));
    }
    let prog = spec.executable.clone().unwrap_or_else(|| argv[0].clone());
    let program = resolve_program(
        &prog,
        env.get(OsStr::new("PATH")).map(|s| s.as_os_str()),
        spec.working_dir.as_deref(),
    )?;

    let mut env_bufs: Vec<Vec<u8>> = Vec::with_capacity(env.len() + 1);
    for (k, v) in &env {
        let mut b = k.clone().into_vec();
        b.push(b'=');
        b.extend_from_slice(v.as_bytes());
        if b.contains(&0) {
            return Err(SpawnError::Prepare(format!(
                "environment variable {k:?} contains a NUL byte"
            )));
        }
        b.push(0);
        env_bufs.push(b);
    }
    if !sockets.is_empty() {
        let mut b = b"LISTEN_PID=".to_vec();
        b.extend_from_slice(&[b'0'; 12]);
        b.push(0);
        listen_pid_index = Some(env_bufs.len());
        env_bufs.push(b);
    }
    let mut envp: Vec<*const libc::c_char> = env_bufs.iter().map(|b| b.as_ptr().cast()).collect();
    envp.push(std::ptr::null());
    let listen_pid_digits = listen_pid_index.map(|i| {
        // SAFETY: the buffer holds "LISTEN_PID=" followed by 12 writable bytes and a NUL.
        unsafe { env_bufs[i].as_mut_ptr().add("LISTEN_PID=".len()) }
    });

    let c_argv: Vec<CString> = argv
        .iter()
        .map(|a| cstring("argument", a.as_bytes()))
        .collect::<Result<_, _>>()?;
    let mut argv_ptrs: Vec<*const libc::c_char> = c_argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());

    let ids = resolve_ids(spec)?;
    let src: Vec<RawFd> = sockets.iter().map(|s| s.fd).collect();
    let top = src.iter().copied().max().unwrap_or(0).max(3 + src.len() as RawFd);
    let (err_r, err_w) = pipe_high(top + 1)?;
    let max_fd = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(soft, _)| soft.min(65536) as RawFd)
        .unwrap_or(1024);

    let mut prepared = Prepared {
        program: cstring("program path", program.as_os_str().as_bytes())?,
        _argv: c_argv,
        argv_ptrs,
        _env: env_bufs,
        envp,
        listen_pid_digits,
        tmp: vec![-1; src.len()],
        sockets: src,
        dup_base: err_w.as_raw_fd() + 1,
        rlimits: rlimits(spec),
        groups: ids.groups,
        gid: ids.gid,
        uid: ids.uid,
        umask: spec.umask.map(|u| u as libc::mode_t),
        cwd: match &spec.working_dir {
            Some(d) => Some(cstring("working_dir", d.as_os_str().as_bytes())?),
            None => None,
        },
        err_w: err_w.as_raw_fd(),
        cgroup_procs: cgroup_procs.unwrap_or(-1),
        max_fd,
        ignored: ignored_signals(),
    };

    let stdio = |o: Output| match o {
        Output::Null => Stdio::null(),
        Output::Pipe => Stdio::piped(),
    };
    let mut cmd = Command::new(&program);
    cmd.stdin(if spec.close_child_stdin {
        Stdio::null()
    } else {
        Stdio::inherit()
    })
    .stdout(stdio(stdout))
    .stderr(stdio(stderr));
    // SAFETY: the closure only makes async-signal-safe calls (see Prepared::exec).
    unsafe {
        cmd.pre_exec(move || prepared.exec());
    }
    let mut child = Reaper::global()
        .spawn(&mut cmd, owner)
        .map_err(SpawnError::Fork)?;
    drop(cmd);
    drop(err_w);
    let pid = child.id() as i32;
    let out = child.stdout.take().map(OwnedFd::from);
    let err = child.stderr.take().map(OwnedFd::from);
    // Blocks only until execve (the pipe closes on exec) or a reported failure.
    let mut buf = [0u8; 8];
    let mut f = std::fs::File::from(err_r);
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    if got == buf.len() {
        let errno = i32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let step = u32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
        return Err(SpawnError::Child {
            program: prog,
            step: STEPS.get(step).copied().unwrap_or(STEPS[0]),
            err: io::Error::from_raw_os_error(errno),
        });
    }
    Ok(Spawned {
        pid,
        stdout: out,
        stderr: err,
        argv,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_dollar_expansion() {
        std::env::set_var("RM_TEST_X", "abc");
        assert_eq!(expand_env_value("$RM_TEST_X:/bin:$lower"), "abc:/bin:$lower");
    }
}
