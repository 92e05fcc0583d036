//! cgroup v2 containment: one cgroup per process slot, under a subtree of
//! the daemon's own cgroup (`<own>/ringmaster.<daemon pid>/`).
//!
//! The child joins its slot's cgroup itself, before `execve`, by writing "0"
//! to a `cgroup.procs` fd the parent opened: nothing it forks can start
//! outside. A stop signals every member (`cgroup.procs`), the kill is one
//! write to `cgroup.kill`, and "empty" is `populated 0` in `cgroup.events`.
//!
//! The slot cgroups enable no controller, so the daemon may stay in its own
//! cgroup (the no-internal-process rule only forbids processes next to
//! children that have controllers enabled). If the daemon's cgroup already
//! delegates controllers to its children (only possible at the root, or when
//! its `cgroup.subtree_control` is set), the daemon moves itself into a leaf
//! `ringmaster.<pid>/daemon` so the rule still holds.

use std::ffi::CString;
use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// The daemon's writable cgroup v2 subtree.
#[derive(Debug)]
pub(crate) struct Hierarchy {
    /// `<mount><own>/ringmaster.<pid>`: every slot cgroup lives here.
    pub(crate) root: PathBuf,
    /// Set when the daemon moved itself into a leaf of `root`.
    daemon_leaf: Option<PathBuf>,
    /// Slot cgroups that were still populated when their slot ended.
    leftovers: Mutex<Vec<PathBuf>>,
}

/// The mount point of the cgroup2 (unified) hierarchy, from mountinfo.
pub(crate) fn unified_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        if right.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        left.split_whitespace().nth(4).map(|p| PathBuf::from(unescape(p)))
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// This process's cgroup in the unified hierarchy (the `0::` line).
fn own_cgroup(proc_cgroup: &str) -> Option<String> {
    proc_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| p.trim_end_matches(" (deleted)").to_string())
}

impl Hierarchy {
    /// Creates the daemon's subtree, or says why cgroup mode is not possible here.
    pub(crate) fn setup() -> Result<Hierarchy, String> {
        let mountinfo =
            fs::read_to_string("/proc/self/mountinfo").map_err(|e| format!("cannot read mountinfo: {e}"))?;
        let mount = unified_mount(&mountinfo).ok_or("no cgroup2 hierarchy is mounted")?;
        let cg = fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
        let own = own_cgroup(&cg).ok_or("this process has no cgroup v2 (no 0:: line)")?;
        let base = mount.join(own.trim_start_matches('/'));
        let root = base.join(subtree_name());
        match fs::create_dir(&root) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("cannot create {}: {e}", root.display())),
        }
        let h = Hierarchy {
            root: root.clone(),
            daemon_leaf: None,
            leftovers: Mutex::new(Vec::new()),
        };
        if !root.join("cgroup.kill").exists() {
            h.remove_root();
            return Err(format!("{} has no cgroup.kill (Linux < 5.14)", root.display()));
        }
        if let Err(e) = probe_join(&root) {
            h.remove_root();
            return Err(format!(
                "a child cannot join a cgroup under {}: {e}",
                root.display()
            ));
        }
        remove_stale(&base);
        let delegated = fs::read_to_string(base.join("cgroup.subtree_control"))
            .map(|s| !s.trim().is_empty())
            .unwrap_or(false);
        if own != "/" && delegated {
            let leaf = root.join("daemon");
            let moved = fs::create_dir(&leaf)
                .or_else(|e| {
                    if e.kind() == io::ErrorKind::AlreadyExists {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })
                .and_then(|()| fs::write(leaf.join("cgroup.procs"), b"0"));
            if let Err(e) = moved {
                h.remove_root();
                return Err(format!("cannot move the daemon into {}: {e}", leaf.display()));
            }
            return Ok(Hierarchy {
                daemon_leaf: Some(leaf),
                ..h
            });
        }
        Ok(h)
    }

    /// Creates the cgroup for one slot.
    pub(crate) fn slot(&self, name: &str) -> io::Result<SlotCgroup> {
        let dir = self.root.join(name);
        // A cgroup that existed already may have been killed (by a previous
        // image of the daemon, before an upgrade): see `SlotCgroup::killed`.
        let existed = match fs::create_dir(&dir) {
            Ok(()) => false,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => true,
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot create {}: {e}", dir.display()),
                ))
            }
        };
        let cg = SlotCgroup {
            dir,
            killed: AtomicBool::new(existed),
        };
        if let Err(e) = cg.open_join() {
            let _ = fs::remove_dir(&cg.dir);
            return Err(e);
        }
        Ok(cg)
    }

    /// Queues a slot cgroup for removal once its last process is gone.
    pub(crate) fn retire(&self, dir: PathBuf) {
        if fs::remove_dir(&dir).is_err() && dir.exists() {
            self.leftovers.lock().unwrap_or_else(|e| e.into_inner()).push(dir);
        }
    }

    /// Removes the retired cgroups that have emptied (after each reap).
    pub(crate) fn sweep(&self) {
        let mut l = self.leftovers.lock().unwrap_or_else(|e| e.into_inner());
        l.retain(|d| fs::remove_dir(d).is_err() && d.exists());
    }

    /// At daemon exit: kill what is left in every slot cgroup and remove the subtree.
    pub(crate) fn teardown(&self) {
        let Ok(entries) = fs::read_dir(&self.root) else {
            return;
        };
        let slots: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir() && Some(p.as_path()) != self.daemon_leaf.as_deref())
            .collect();
        for d in &slots {
            if populated(d) {
                tracing::warn!(cgroup = %d.display(), "killing what is left in a slot cgroup at exit");
                let _ = fs::write(d.join("cgroup.kill"), b"1");
            }
        }
        // cgroup.kill is asynchronous: give the kernel a bounded moment.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        for d in &slots {
            while populated(d) && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            if let Err(e) = fs::remove_dir(d) {
                tracing::warn!(cgroup = %d.display(), "cannot remove cgroup at exit: {e}");
            }
        }
        self.remove_root();
    }

    fn remove_root(&self) {
        if self.daemon_leaf.is_none() {
            let _ = fs::remove_dir(&self.root);
        }
    }
}

/// Starts a child in a test cgroup as spawned children will join theirs, so
/// that `auto` does not pick a mode in which every spawn would fail (e.g. in
/// a container whose cgroup files are visible but not writable).
/// Called before the daemon starts any thread.
fn probe_join(root: &Path) -> io::Result<()> {
    let probe = root.join("probe");
    fs::create_dir(&probe).or_else(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            Ok(())
        } else {
            Err(e)
        }
    })?;
    // A child born in the cgroup passes the kernel's permission checks for
    // joining it (write access to its cgroup.procs and to the common
    // ancestor's) without a migration, whose `cgroup_threadgroup_rwsem`
    // write lock waits for an RCU grace period: 10–100 ms of start-up on a
    // busy machine. Where clone3 is unavailable (kernel, seccomp) or refuses,
    // the child writes to cgroup.procs as before, which decides.
    let res = born_in(&probe).or_else(|_| join_by_write(&probe));
    let _ = fs::remove_dir(&probe);
    res
}

/// `struct clone_args` up to `cgroup` (CLONE_ARGS_SIZE_VER2).
#[repr(C)]
#[derive(Default)]
pub(crate) struct CloneArgs {
    pub(crate) flags: u64,
    pub(crate) pidfd: u64,
    pub(crate) child_tid: u64,
    pub(crate) parent_tid: u64,
    pub(crate) exit_signal: u64,
    pub(crate) stack: u64,
    pub(crate) stack_size: u64,
    pub(crate) tls: u64,
    pub(crate) set_tid: u64,
    pub(crate) set_tid_size: u64,
    pub(crate) cgroup: u64,
}

pub(crate) const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// A fork-like `clone3(CLONE_INTO_CGROUP)` whose child exits at once.
fn born_in(dir: &Path) -> io::Result<()> {
    let d = fs::File::open(dir)?;
    let args = CloneArgs {
        flags: CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: d.as_raw_fd() as u64,
        ..CloneArgs::default()
    };
    // SAFETY: no CLONE_VM: the child runs on a copy of this (single-threaded)
    // process and makes one async-signal-safe call, _exit.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: as above.
        unsafe { libc::_exit(0) }
    }
    match wait_exit(pid as i32)? {
        0 => Ok(()),
        code => Err(io::Error::other(format!("probe exited with {code}"))),
    }
}

/// Forks a child that writes "0" to the cgroup's `cgroup.procs`.
fn join_by_write(probe: &Path) -> io::Result<()> {
    let f = fs::OpenOptions::new()
        .write(true)
        .open(probe.join("cgroup.procs"))?;
    let fd = f.as_raw_fd();
    // SAFETY: the child makes only async-signal-safe calls (write, _exit).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: as above.
        unsafe {
            let ok = libc::write(fd, b"0".as_ptr().cast(), 1) == 1;
            libc::_exit(if ok { 0 } else { *libc::__errno_location() & 0x7f });
        }
    }
    match wait_exit(pid)? {
        0 => Ok(()),
        errno => Err(io::Error::from_raw_os_error(errno)),
    }
}

/// Reaps the probe child; its exit code.
fn wait_exit(pid: i32) -> io::Result<i32> {
    let status = loop {
        match nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => break other.map_err(io::Error::from)?,
        }
    };
    match status {
        nix::sys::wait::WaitStatus::Exited(_, code) => Ok(code),
        other => Err(io::Error::other(format!("probe ended with {other:?}"))),
    }
}

/// The initial PID namespace's inode number (`PROC_PID_INIT_INO`).
const INITIAL_PID_NS: u64 = 0xEFFF_FFFC;

/// `ringmaster.<pid>`; in another PID namespace (a container, `unshare`) pids
/// repeat — every init is pid 1 — so the namespace is part of the name, or
/// two daemons would share (and kill) each other's slot cgroups.
fn subtree_name() -> String {
    use std::os::unix::fs::MetadataExt;
    let pid = std::process::id();
    match fs::metadata("/proc/self/ns/pid").map(|m| m.ino()) {
        Ok(ino) if ino != INITIAL_PID_NS => format!("ringmaster.{pid}.ns{ino}"),
        _ => format!("ringmaster.{pid}"),
    }
}

/// Removes the empty subtrees that daemons which died without cleaning up
/// left next to ours (never touching one whose daemon still runs).
fn remove_stale(base: &Path) {
    let Ok(entries) = fs::read_dir(base) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("ringmaster."))
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() as i32 || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if let Ok(slots) = fs::read_dir(e.path()) {
            for s in slots.flatten().filter(|s| s.path().is_dir()) {
                let _ = fs::remove_dir(s.path());
            }
        }
        let _ = fs::remove_dir(e.path());
    }
}

/// True while any process is in the cgroup (or its children).
pub(crate) fn populated(dir: &Path) -> bool {
    match fs::read_to_string(dir.join("cgroup.events")) {
        Ok(s) => s.lines().any(|l| l == "populated 1"),
        Err(_) => false,
    }
}

/// A slot cgroup's directory and `cgroup.procs`, for one spawn.
#[derive(Debug)]
pub(crate) struct Join {
    /// None when the child must join by writing (see `SlotCgroup::killed`).
    pub(crate) dir: Option<OwnedFd>,
    pub(crate) procs: OwnedFd,
}

/// One slot's cgroup.
#[derive(Debug)]
pub(crate) struct SlotCgroup {
    pub(crate) dir: PathBuf,
    /// Once `cgroup.kill` was written, a child must not be born in this
    /// cgroup with `clone3(CLONE_INTO_CGROUP)`: the kernel (6.18 here)
    /// compares the cgroup's kill count with the *parent's* cgroup's and
    /// SIGKILLs such a child at once. Later children join by writing to
    /// `cgroup.procs`.
    killed: AtomicBool,
}

impl SlotCgroup {
    /// What a new child needs to start in this cgroup, opened for one spawn
    /// only, so a slot holds no fd between spawns: the directory, which
    /// `clone3(CLONE_INTO_CGROUP)` creates the child in, and its
    /// `cgroup.procs`, which the child writes "0" to where clone3 cannot.
    pub(crate) fn open_join(&self) -> io::Result<Join> {
        let path = CString::new(self.dir.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "cgroup path contains a NUL byte"))?;
        let opened = |what: &str, fd: libc::c_int| {
            if fd < 0 {
                let e = io::Error::last_os_error();
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot open {}{what}: {e}", self.dir.display()),
                ));
            }
            // SAFETY: fd was just returned by open/openat.
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        };
        // SAFETY: open on a valid C string; the fd is owned by `opened`.
        let dir = opened("", unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        })?;
        // SAFETY: openat on an open directory fd and a literal C string.
        let procs = opened("/cgroup.procs", unsafe {
            libc::openat(
                dir.as_raw_fd(),
                c"cgroup.procs".as_ptr(),
                libc::O_WRONLY | libc::O_CLOEXEC,
            )
        })?;
        let dir = (!self.killed.load(Ordering::Relaxed)).then_some(dir);
        Ok(Join { dir, procs })
    }

    pub(crate) fn populated(&self) -> bool {
        populated(&self.dir)
    }

    /// The pids in the cgroup now. A member outside our PID namespace reads
    /// as 0: it is not ours, and kill(0) would signal our own process group.
    pub(crate) fn pids(&self) -> Vec<i32> {
        fs::read_to_string(self.dir.join("cgroup.procs"))
            .map(|s| {
                s.lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .filter(|&p: &i32| p > 0)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Sends `sig` to every process in the cgroup.
    pub(crate) fn signal(&self, sig: i32) {
        for pid in self.pids() {
            // SAFETY: plain syscall.
            unsafe { libc::kill(pid, sig) };
        }
    }

    /// SIGKILLs every process in the cgroup, including ones forked meanwhile.
    pub(crate) fn kill(&self) {
        self.killed.store(true, Ordering::Relaxed);
        let r = fs::OpenOptions::new()
            .write(true)
            .open(self.dir.join("cgroup.kill"))
            .and_then(|mut f| f.write_all(b"1"));
        if let Err(e) = r {
            tracing::warn!(cgroup = %self.dir.display(), "cannot write cgroup.kill: {e}");
            self.signal(libc::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_unified_mount_and_own_cgroup() {
        let mi = "30 1 0:26 / /sys/fs/cgroup ro - tmpfs tmpfs ro\n\
                  41 31 0:38 / /sys/fs/cgroup/un\\040ified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(unified_mount(mi), Some(PathBuf::from("/sys/fs/cgroup/un ified")));
        assert_eq!(unified_mount("30 1 0:26 / /x ro - tmpfs tmpfs ro\n"), None);
        assert_eq!(
            own_cgroup("9:pids:/\n0::/user.slice/a.scope\n").as_deref(),
            Some("/user.slice/a.scope")
        );
        assert_eq!(own_cgroup("9:pids:/\n"), None);
    }
}
