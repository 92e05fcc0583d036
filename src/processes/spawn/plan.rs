//! Everything a child needs, built by the parent before the clone: the
//! program, argv and envp as C arrays, the descriptors it gets (and where),
//! ids, groups, limits, umask, working dir, plus the scratch space the child
//! writes into. The child (see `child.rs`) shares this memory and only reads
//! it, fills its scratch fields and makes raw system calls.

use super::{cstring, resolve_ids, Output, SpawnError};
use crate::config::WatcherSpec;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;

/// The failed step a child reports, by number; `STEPS[n]` names it.
pub(super) const STEP_NONE: u32 = 0;
pub(super) const STEP_SETPGID: u32 = 1;
pub(super) const STEP_SIGNALS: u32 = 2;
pub(super) const STEP_UNSHARE: u32 = 3;
pub(super) const STEP_RECEIVE: u32 = 4;
pub(super) const STEP_PLACE: u32 = 5;
pub(super) const STEP_RLIMIT: u32 = 6;
pub(super) const STEP_SETGROUPS: u32 = 7;
pub(super) const STEP_SETGID: u32 = 8;
pub(super) const STEP_SETUID: u32 = 9;
pub(super) const STEP_CHDIR: u32 = 10;
pub(super) const STEP_EXECVE: u32 = 11;
pub(super) const STEP_CGROUP: u32 = 12;

pub(super) const STEPS: [&str; 13] = [
    "unknown step",
    "setpgid",
    "signal reset",
    "own descriptor table",
    "receive descriptors",
    "place descriptors",
    "setrlimit",
    "setgroups",
    "setgid",
    "setuid",
    "chdir",
    "execve",
    "join cgroup",
];

/// What the child writes back (it shares the parent's memory; the parent
/// reads it once the clone has returned, i.e. after execve or exit).
#[derive(Default)]
#[repr(C)]
pub(super) struct Report {
    pub step: u32,
    pub errno: i32,
    /// The child has taken its descriptors off the channel.
    pub received: u32,
}

pub(crate) struct Plan {
    pub program: CString,
    _argv: Vec<CString>,
    pub argv_ptrs: Vec<*const libc::c_char>,
    _env: Vec<Vec<u8>>,
    pub envp: Vec<*const libc::c_char>,
    /// 12 writable bytes and a NUL after `LISTEN_PID=`, or null.
    pub listen_pid_digits: *mut u8,
    /// The daemon's descriptors the child gets: `fds[i]` becomes fd `i` for
    /// `i < targets` (stdin, stdout, stderr, then the sockets from 3); the
    /// rest are only used before exec (cgroup.procs).
    pub fds: Vec<RawFd>,
    pub targets: usize,
    /// Index in `fds` of the slot's `cgroup.procs`, the child writes "0" to
    /// it unless it was born in the cgroup.
    pub cgroup: Option<usize>,
    /// The slot cgroup's directory, for `clone3(CLONE_INTO_CGROUP)`.
    pub cgroup_dir: Option<RawFd>,
    /// Set by the parent before the clone: the child starts in its cgroup
    /// already (clone3), so it does not write to `cgroup.procs`.
    pub born_in_cgroup: bool,
    pub rlimits: Vec<(u32, libc::rlimit64)>,
    pub groups: Option<Vec<libc::gid_t>>,
    pub gid: Option<libc::gid_t>,
    pub uid: Option<libc::uid_t>,
    pub umask: Option<libc::mode_t>,
    pub cwd: Option<CString>,
    /// For the close loop when close_range is missing (Linux < 5.9).
    pub max_fd: RawFd,
    /// The channel's receiving end the child takes `fds` from (see child.rs).
    pub channel: RawFd,
    // Scratch the child fills: where the received fds landed, their
    // temporary copies above every target, and the control-message buffer.
    pub received: Vec<RawFd>,
    pub tmp: Vec<RawFd>,
    pub cmsg: Vec<u64>,
    pub report: Report,
    /// Pipe ends and fds that must stay open until the child has its copies.
    _keep: Vec<OwnedFd>,
}

// The raw pointers point into buffers owned by the same struct.
unsafe impl Send for Plan {}

/// Read ends of the child's stdout/stderr pipes.
pub(crate) struct Pipes {
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

/// One /dev/null for every child's closed stdio (the child gets a copy).
fn dev_null() -> Result<RawFd, SpawnError> {
    static NULL: OnceLock<io::Result<OwnedFd>> = OnceLock::new();
    match NULL.get_or_init(|| {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
            .map(OwnedFd::from)
    }) {
        Ok(fd) => Ok(fd.as_raw_fd()),
        Err(e) => Err(SpawnError::Prepare(format!("cannot open /dev/null: {e}"))),
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), SpawnError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| SpawnError::Prepare(format!("pipe: {e}")))
}

pub(crate) struct PlanInput<'a> {
    pub spec: &'a WatcherSpec,
    pub program: CString,
    pub argv: &'a [String],
    /// "KEY=value" entries, without NULs (checked by the caller).
    pub env: Vec<Vec<u8>>,
    pub listen_pid: bool,
    pub sockets: &'a [RawFd],
    pub outputs: (Output, Output),
    pub cgroup: Option<super::CgroupFds>,
}

impl Plan {
    pub(crate) fn build(input: PlanInput<'_>) -> Result<(Plan, Pipes), SpawnError> {
        let PlanInput {
            spec,
            program,
            argv,
            mut env,
            listen_pid,
            sockets,
            outputs,
            cgroup: cgroup_fds,
        } = input;
        let mut listen_pid_index = None;
        if listen_pid {
            let mut b = b"LISTEN_PID=".to_vec();
            b.extend_from_slice(&[b'0'; 12]);
            b.push(0);
            listen_pid_index = Some(env.len());
            env.push(b);
        }
        let mut envp: Vec<*const libc::c_char> = env.iter().map(|b| b.as_ptr().cast()).collect();
        envp.push(std::ptr::null());
        let listen_pid_digits = match listen_pid_index {
            // SAFETY: the buffer holds "LISTEN_PID=" then 12 writable bytes and a NUL.
            Some(i) => unsafe { env[i].as_mut_ptr().add("LISTEN_PID=".len()) },
            None => std::ptr::null_mut(),
        };
        let c_argv: Vec<CString> = argv
            .iter()
            .map(|a| cstring("argument", a.as_bytes()))
            .collect::<Result<_, _>>()?;
        let mut argv_ptrs: Vec<*const libc::c_char> = c_argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());

        let ids = resolve_ids(spec)?;

        let mut keep = Vec::new();
        let stdin = if spec.close_child_stdin || !fd_open(0) {
            dev_null()?
        } else {
            0
        };
        let mut output = |o: Output| -> Result<(RawFd, Option<OwnedFd>), SpawnError> {
            match o {
                Output::Null => Ok((dev_null()?, None)),
                Output::Pipe => {
                    let (r, w) = pipe()?;
                    let raw = w.as_raw_fd();
                    keep.push(w);
                    Ok((raw, Some(r)))
                }
            }
        };
        let (out_w, out_r) = output(outputs.0)?;
        let (err_w, err_r) = output(outputs.1)?;
        let mut fds = vec![stdin, out_w, err_w];
        fds.extend_from_slice(sockets);
        let targets = fds.len();
        let cgroup = cgroup_fds.map(|c| {
            fds.push(c.procs);
            fds.len() - 1
        });
        // SAFETY: CMSG_SPACE is arithmetic.
        let space = unsafe { libc::CMSG_SPACE((fds.len() * std::mem::size_of::<RawFd>()) as u32) } as usize;
        let max_fd = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map(|(soft, _)| soft.min(65536) as RawFd)
            .unwrap_or(1024);

        let plan = Plan {
            program,
            _argv: c_argv,
            argv_ptrs,
            _env: env,
            envp,
            listen_pid_digits,
            received: vec![-1; fds.len()],
            tmp: vec![-1; targets],
            cmsg: vec![0u64; space.div_ceil(8)],
            fds,
            targets,
            cgroup,
            cgroup_dir: cgroup_fds.and_then(|c| c.dir),
            born_in_cgroup: false,
            rlimits: rlimits(spec),
            groups: ids.groups,
            gid: ids.gid,
            uid: ids.uid,
            umask: spec.umask.map(|u| u as libc::mode_t),
            cwd: match &spec.working_dir {
                Some(d) => Some(cstring(
                    "working_dir",
                    std::os::unix::ffi::OsStrExt::as_bytes(d.as_os_str()),
                )?),
                None => None,
            },
            max_fd,
            channel: -1,
            report: Report::default(),
            _keep: keep,
        };
        Ok((
            plan,
            Pipes {
                stdout: out_r,
                stderr: err_r,
            },
        ))
    }
}

fn fd_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD on any number only queries.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

fn rlimits(spec: &WatcherSpec) -> Vec<(u32, libc::rlimit64)> {
    spec.rlimits
        .iter()
        .map(|l| {
            let v = match l.value {
                Some(v) => v as libc::rlim64_t,
                None if l.resource == libc::RLIMIT_NOFILE as i32 => {
                    // RLIM_INFINITY is refused for NOFILE; use the hard limit (as Circus).
                    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
                        .map(|(_, hard)| hard as libc::rlim64_t)
                        .unwrap_or(libc::RLIM64_INFINITY)
                }
                None => libc::RLIM64_INFINITY,
            };
            (
                l.resource as u32,
                libc::rlimit64 {
                    rlim_cur: v,
                    rlim_max: v,
                },
            )
        })
        .collect()
}
