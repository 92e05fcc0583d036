//! Starting one process: everything is prepared in the parent ([`plan`]:
//! argv, envp, ids, limits, the descriptors and where they go), then a
//! vfork-style child ([`child`]) runs only raw system calls and `execve`s the
//! program itself.
//!
//! In the child, in order: a private descriptor table with only the daemon's
//! lowest fds; every signal disposition back to default (all signals stay
//! blocked until just before execve); its descriptors received from the
//! parent; join the slot's cgroup (cgroup kill mode: born in it by
//! `clone3(CLONE_INTO_CGROUP)`, or else by writing "0" to a `cgroup.procs`
//! fd opened by the parent; either way nothing it starts is ever outside); new process group; stdin/stdout/stderr and the watcher's sockets
//! placed at 0, 1, 2, 3, … and every other fd closed; rlimits; supplementary
//! groups; gid; uid; umask; working_dir; `LISTEN_PID` filled with the child's
//! own pid; empty signal mask; execve. A failure at any step is written
//! (step and errno) into the plan, which the child shares with the parent,
//! so "no such file" or "permission denied" reaches the log instead of a
//! bare exit code.

mod child;
mod plan;

pub(crate) use child::reserve_channels;

use crate::config::model::{Args, Ident};
use crate::config::WatcherSpec;
use crate::processes::substitute::{substitute, Vars};
use crate::reaper::{Exited, Reaper};
use actix::Recipient;
use plan::{Plan, PlanInput};
use std::collections::BTreeMap;
use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The slot cgroup a child starts in (cgroup kill mode): its directory, for
/// `clone3(CLONE_INTO_CGROUP)`, and its `cgroup.procs`, which the child
/// writes "0" to where clone3 cannot be used.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CgroupFds {
    /// None: join by writing only.
    pub(crate) dir: Option<RawFd>,
    pub(crate) procs: RawFd,
}

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

/// Spawns one process of `spec` in slot `wid`, registered with the reaper for `owner`.
pub fn spawn(
    spec: &WatcherSpec,
    wid: u32,
    sockets: &[InheritedSocket],
    outputs: (Output, Output),
    extra_env: &[(String, String)],
    owner: Recipient<Exited>,
    cgroup: Option<CgroupFds>,
) -> Result<Spawned, SpawnError> {
    let Prepared {
        mut plan,
        pipes,
        argv,
        prog,
    } = prepare(spec, wid, sockets, outputs, extra_env, cgroup)?;
    Reaper::global()
        .spawn_with(owner, || child::launch(&mut plan))
        .map_err(|e| launch_error(prog, e))
        .map(|pid| Spawned {
            pid,
            stdout: pipes.stdout,
            stderr: pipes.stderr,
            argv,
        })
}

fn launch_error(program: String, e: child::LaunchError) -> SpawnError {
    match e {
        child::LaunchError::Setup(s) => SpawnError::Prepare(s),
        child::LaunchError::Clone(e) => SpawnError::Fork(e),
        child::LaunchError::Child { step, err } => SpawnError::Child { program, step, err },
    }
}

/// A spawn ready to launch.
struct Prepared {
    plan: Plan,
    pipes: plan::Pipes,
    argv: Vec<String>,
    /// The program as configured, for messages.
    prog: String,
}

fn prepare(
    spec: &WatcherSpec,
    wid: u32,
    sockets: &[InheritedSocket],
    (stdout, stderr): (Output, Output),
    extra_env: &[(String, String)],
    cgroup: Option<CgroupFds>,
) -> Result<Prepared, SpawnError> {
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
    let src: Vec<RawFd> = sockets.iter().map(|s| s.fd).collect();
    let (plan, pipes) = Plan::build(PlanInput {
        spec,
        program: cstring("program path", program.as_os_str().as_bytes())?,
        argv: &argv,
        env: env_bufs,
        listen_pid: !sockets.is_empty(),
        sockets: &src,
        outputs: (stdout, stderr),
        cgroup,
    })?;
    Ok(Prepared {
        plan,
        pipes,
        argv,
        prog,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(cmd: &str) -> WatcherSpec {
        let text =
            format!("[watchers.t]\ncmd = \"{cmd}\"\nclose_child_stdout = true\nclose_child_stderr = true\n");
        let cfg = crate::config::load_toml_str(Path::new("t.toml"), &text).expect("config");
        cfg.watchers.into_iter().next().expect("one watcher")
    }

    /// The property behind the spawn design (docs/benchmarks.md; its cost is
    /// measured by bench/spawn_scale, not here): a fork or a plain vfork
    /// gives the child a copy of the daemon's whole descriptor table, which
    /// execve then walks, so each spawn costs O(daemon's fds). Here the child
    /// copies only the daemon's lowest fds. The kernel shows the size of a
    /// process's table as `FDSize` in /proc/PID/status: with 4,096 more fds
    /// open in the daemon, a copied table would be at least that big.
    #[test]
    fn a_child_does_not_get_a_copy_of_the_daemons_descriptor_table() {
        use nix::sys::resource::{getrlimit, setrlimit, Resource};
        reserve_channels().expect("channels");
        let want = 4_096u64;
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
        assert!(
            hard >= want + 256,
            "this test needs RLIMIT_NOFILE >= {} (hard limit {hard})",
            want + 256
        );
        if soft < want + 256 {
            setrlimit(Resource::RLIMIT_NOFILE, want + 256, hard).expect("raise RLIMIT_NOFILE");
        }
        let mut held = Vec::new();
        while (held.len() as u64) < want {
            let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
            held.push(r);
            held.push(w);
        }
        let spec = spec("/bin/sleep 30");
        let mut p = prepare(&spec, 1, &[], (Output::Null, Output::Null), &[], None).expect("prepare");
        let pid = child::launch(&mut p.plan).unwrap_or_else(|_| panic!("launch failed"));
        drop(held);
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        // ECHILD: another test's waitpid(-1) reaped it.
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        let fd_size: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("FDSize:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no FDSize in /proc/{pid}/status:\n{status}"));
        assert!(
            fd_size < 1024,
            "the child's descriptor table has {fd_size} slots: it was copied from the daemon's {want}+"
        );
    }

    /// A child is created directly in its slot cgroup (clone3
    /// `CLONE_INTO_CGROUP`), not moved there: given a `cgroup.procs` it
    /// cannot write to, the spawn still succeeds and the child is in the
    /// cgroup. Joining by writing would fail at the "join cgroup" step.
    #[test]
    fn a_child_is_born_in_its_cgroup() {
        use std::os::fd::AsRawFd;
        reserve_channels().expect("channels");
        let own = std::fs::read_to_string("/proc/self/cgroup").expect("/proc/self/cgroup");
        let own = own
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .expect("a cgroup v2 hierarchy (this test needs one, writable)");
        let rel = format!("{}/rm-born-{}", own.trim_end_matches('/'), std::process::id());
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        let mount = crate::containment::cgroup::unified_mount(&mountinfo).expect("a cgroup2 mount");
        let dir = mount.join(rel.trim_start_matches('/'));
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let dir_fd = std::fs::File::open(&dir).expect("open the cgroup dir");
        let unwritable = std::fs::File::open("/dev/null").expect("/dev/null");
        let spec = spec("/bin/sleep 30");
        let fds = CgroupFds {
            dir: Some(dir_fd.as_raw_fd()),
            procs: unwritable.as_raw_fd(),
        };
        let mut p = prepare(&spec, 1, &[], (Output::Null, Output::Null), &[], Some(fds)).expect("prepare");
        let launched = child::launch(&mut p.plan);
        let cgroup = match &launched {
            Ok(pid) => std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default(),
            Err(_) => String::new(),
        };
        if let Ok(pid) = launched {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        }
        // Empty once its member is reaped (above, or by another test's waitpid(-1)).
        let removed = std::fs::remove_dir(&dir);
        if let Err(e) = &launched {
            let why = match e {
                child::LaunchError::Setup(s) => s.clone(),
                child::LaunchError::Clone(e) => format!("clone: {e}"),
                child::LaunchError::Child { step, err } => format!("{step}: {err}"),
            };
            panic!("the spawn failed ({why}): the child was not born in its cgroup");
        }
        let unified = cgroup.lines().find(|l| l.starts_with("0::")).unwrap_or_default();
        assert_eq!(
            unified,
            format!("0::{rel}"),
            "the child is not in its cgroup:\n{cgroup}"
        );
        removed.unwrap_or_else(|e| panic!("cannot remove {}: {e}", dir.display()));
    }

    #[test]
    fn env_dollar_expansion() {
        std::env::set_var("RM_TEST_X", "abc");
        assert_eq!(expand_env_value("$RM_TEST_X:/bin:$lower"), "abc:/bin:$lower");
    }
}
