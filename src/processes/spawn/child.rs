//! The clone and the child's side of a spawn.
//!
//! The child is created with `clone(CLONE_VM | CLONE_VFORK | CLONE_FILES)` on
//! a small stack of its own, as glibc's posix_spawn does: no page table is
//! copied and no page is copy-on-write, and the calling thread sleeps until
//! the child has exec'd or exited. The child shares the parent's memory, so
//! it makes only raw system calls (no allocation, no lock, no glibc wrapper
//! that keeps state: glibc's setuid would try to signal the daemon's other
//! threads), reads the [`Plan`] and writes its failure, if any, into
//! `plan.report`. In cgroup kill mode the same clone is made with `clone3`
//! and `CLONE_INTO_CGROUP` where the kernel allows it (see
//! [`clone3_vfork`]), so the child is born in its slot's cgroup instead of
//! moving itself there.
//!
//! The descriptor table is not copied either. With 10,000 processes the
//! daemon holds 20,000 pipe ends; a fork or a plain vfork copies that table
//! (`dup_fd`) and execve closes every close-on-exec entry (`filp_close`), so
//! each spawn costs O(descriptors) and starting N processes O(N²):
//! `FDS=19000 fork_cost posix_spawn` runs ~10× slower than with no fds
//! (docs/benchmarks.md). Instead the child starts on the daemon's own table
//! (`CLONE_FILES`) and its first call, `close_range(rx + 1, ~0,
//! CLOSE_RANGE_UNSHARE)`, gives it a private table holding only the fds below
//! `rx + 1`: the kernel copies just that prefix. `rx` is the receiving end of
//! a socket pair reserved while the daemon had few fds; before the clone the
//! parent sends the child's descriptors (stdio, sockets, cgroup.procs) on it
//! with SCM_RIGHTS, and the child receives them into its small table. The
//! cost of a spawn is then the same with 10 fds or 20,000. (A forkserver that
//! clones with `CLONE_PARENT` does the same with one more process, its
//! memory, and a request protocol; this needs neither.)

use super::plan::*;
#[cfg(target_arch = "x86_64")]
use crate::containment::cgroup::{CloneArgs, CLONE_INTO_CGROUP};
use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// The child runs a dozen system calls and no deep code: 64 KiB is ample.
const STACK: usize = 64 * 1024;

/// Channels kept for reuse, one per concurrent spawn (the spawner pool has
/// at most 4 threads); one created later, when the daemon already holds many
/// fds, is dropped after use if its number is high.
const RESERVE: usize = 4;
const LOW_FD: RawFd = 64;

pub(super) enum LaunchError {
    Setup(String),
    Clone(io::Error),
    Child { step: &'static str, err: io::Error },
}

struct Stack {
    base: *mut libc::c_void,
    len: usize,
}

impl Stack {
    fn new() -> io::Result<Stack> {
        // SAFETY: sysconf only queries.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        let len = STACK + page;
        // SAFETY: a fresh anonymous mapping; the lowest page becomes a guard.
        unsafe {
            let base = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            );
            if base == libc::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            if libc::mprotect(base, page, libc::PROT_NONE) != 0 {
                let e = io::Error::last_os_error();
                libc::munmap(base, len);
                return Err(e);
            }
            Ok(Stack { base, len })
        }
    }

    fn top(&self) -> *mut libc::c_void {
        // SAFETY: one past the end of the mapping; page-aligned, so 16-aligned.
        unsafe { self.base.cast::<u8>().add(self.len).cast() }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`.
        unsafe { libc::munmap(self.base, self.len) };
    }
}

thread_local! {
    // One per spawning thread: the thread sleeps while its child uses it.
    static STACK_OF_THREAD: RefCell<Option<Stack>> = const { RefCell::new(None) };
}

struct Channel {
    rx: OwnedFd,
    tx: OwnedFd,
}

static CHANNELS: Mutex<Vec<Channel>> = Mutex::new(Vec::new());

fn new_channel() -> io::Result<Channel> {
    let mut sv = [-1; 2];
    // SAFETY: socketpair fills sv with two fresh fds on success.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            0,
            sv.as_mut_ptr(),
        )
    } != 0
    {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds are fresh and ours.
    let (rx, tx) = unsafe { (OwnedFd::from_raw_fd(sv[0]), OwnedFd::from_raw_fd(sv[1])) };
    Ok(Channel { rx, tx })
}

/// Creates the channels while the daemon holds few descriptors, so their
/// receiving ends are low numbers. Called at start-up; spawning works
/// without it (the first spawn reserves them).
pub(crate) fn reserve_channels() -> io::Result<()> {
    let mut pool = CHANNELS.lock().unwrap_or_else(|e| e.into_inner());
    while pool.len() < RESERVE {
        pool.push(new_channel()?);
    }
    Ok(())
}

fn take_channel() -> io::Result<Channel> {
    let mut pool = CHANNELS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(c) = pool.pop() {
        return Ok(c);
    }
    new_channel()
}

fn give_back(c: Channel) {
    let mut pool = CHANNELS.lock().unwrap_or_else(|e| e.into_inner());
    if pool.len() < RESERVE || c.rx.as_raw_fd() < LOW_FD {
        pool.push(c);
    }
}

fn send_fds(tx: RawFd, fds: &[RawFd], cmsg: &mut [u64]) -> io::Result<()> {
    let mut byte = 0u8;
    let mut iov = libc::iovec {
        iov_base: (&mut byte as *mut u8).cast(),
        iov_len: 1,
    };
    let bytes = std::mem::size_of_val(fds);
    // SAFETY: msghdr/cmsghdr built in `cmsg`, sized with CMSG_SPACE for
    // `fds.len()` descriptors by the plan; zeroed first.
    unsafe {
        cmsg.fill(0);
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cmsg.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(bytes as u32) as _;
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(bytes as u32) as _;
        std::ptr::copy_nonoverlapping(fds.as_ptr().cast::<u8>(), libc::CMSG_DATA(c), bytes);
        loop {
            let n = libc::sendmsg(tx, &msg, libc::MSG_NOSIGNAL);
            if n >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

/// Takes an unreceived message off the channel (the child died before
/// receiving it, or was never created) and closes its descriptors, so the
/// next child does not get them.
fn drain(rx: RawFd) {
    let mut buf = [0u64; 160];
    loop {
        let mut byte = 0u8;
        let mut iov = libc::iovec {
            iov_base: (&mut byte as *mut u8).cast(),
            iov_len: 1,
        };
        // SAFETY: a msghdr over local buffers; received fds are closed below.
        unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = buf.as_mut_ptr().cast();
            msg.msg_controllen = std::mem::size_of_val(&buf) as _;
            if libc::recvmsg(rx, &mut msg, libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC) < 0 {
                return;
            }
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                    let n = ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / 4;
                    let data = libc::CMSG_DATA(c).cast::<RawFd>();
                    for i in 0..n {
                        libc::close(std::ptr::read_unaligned(data.add(i)));
                    }
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
    }
}

/// Starts the child of `plan`; returns its pid once it has exec'd.
pub(super) fn launch(plan: &mut Plan) -> Result<i32, LaunchError> {
    let chan = take_channel().map_err(|e| LaunchError::Setup(format!("spawn channel: {e}")))?;
    let res = launch_on(&chan, plan);
    give_back(chan);
    res
}

// Not inlined: the code that runs with every signal blocked stays in this
// module's symbols, which bench/link-order's page tracer keeps executable.
#[inline(never)]
fn launch_on(chan: &Channel, plan: &mut Plan) -> Result<i32, LaunchError> {
    let stack = STACK_OF_THREAD.with(|s| {
        let mut s = s.borrow_mut();
        if s.is_none() {
            *s = Some(Stack::new()?);
        }
        Ok::<_, io::Error>(s.as_ref().map(|s| (s.base, s.top())))
    });
    let (base, top) = match stack {
        Ok(Some(t)) => t,
        Ok(None) => return Err(LaunchError::Setup("no stack for the child".into())),
        Err(e) => return Err(LaunchError::Setup(format!("child stack: {e}"))),
    };
    send_fds(chan.tx.as_raw_fd(), &plan.fds, &mut plan.cmsg)
        .map_err(|e| LaunchError::Setup(format!("sending the child its descriptors: {e}")))?;
    plan.channel = chan.rx.as_raw_fd();
    plan.report = Report::default();
    let all: u64 = !0;
    let mut old: u64 = 0;
    // SAFETY: every signal is blocked around the clone so that no handler
    // of the daemon (tokio's, the runtime's) runs in the child, which shares
    // our memory, before it has put every disposition back to default. The
    // child only touches `plan` (see `child`), and this thread sleeps until
    // it has exec'd or exited (CLONE_VFORK), so `plan` and the stack stay put.
    let (pid, clone_err) = unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &all as *const u64,
            &mut old as *mut u64,
            8usize,
        );
        let mut born = None;
        if let (Some(dir), true) = (plan.cgroup_dir, CLONE3.load(Ordering::Relaxed)) {
            plan.born_in_cgroup = true;
            let r = clone3_vfork(dir, base, top, (plan as *mut Plan).cast());
            if r >= 0 {
                born = Some((r as i32, io::Error::from_raw_os_error(0)));
            } else {
                // Not available here (old kernel, seccomp): never again.
                // Any other refusal: this spawn joins by writing, which
                // reports the step and errno if joining fails.
                if matches!(-r as i32, libc::ENOSYS | libc::E2BIG | libc::EPERM) {
                    CLONE3.store(false, Ordering::Relaxed);
                }
                plan.born_in_cgroup = false;
            }
        }
        let (pid, e) = match born {
            Some(b) => b,
            None => {
                let pid = libc::clone(
                    child_main,
                    top,
                    libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_FILES | libc::SIGCHLD,
                    (plan as *mut Plan).cast(),
                );
                (pid, io::Error::last_os_error())
            }
        };
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &old as *const u64,
            std::ptr::null_mut::<u64>(),
            8usize,
        );
        (pid, e)
    };
    // SAFETY: the child is past exec or gone: nothing writes `report` now.
    let (step, errno, received) = unsafe {
        (
            std::ptr::read_volatile(&plan.report.step),
            std::ptr::read_volatile(&plan.report.errno),
            std::ptr::read_volatile(&plan.report.received),
        )
    };
    if received == 0 {
        drain(chan.rx.as_raw_fd());
    }
    if pid < 0 {
        return Err(LaunchError::Clone(clone_err));
    }
    if step != STEP_NONE {
        return Err(LaunchError::Child {
            step: STEPS.get(step as usize).copied().unwrap_or(STEPS[0]),
            err: io::Error::from_raw_os_error(errno),
        });
    }
    Ok(pid)
}

/// Whether `clone3(CLONE_INTO_CGROUP)` may be tried; cleared for good when
/// the kernel or a seccomp filter refuses clone3 itself.
static CLONE3: AtomicBool = AtomicBool::new(cfg!(target_arch = "x86_64"));

/// The vfork-style clone of `launch_on`, with the child created directly in
/// the cgroup `dir` (the pid, or -errno): moving a process into a cgroup takes the kernel's
/// `cgroup_threadgroup_rwsem` for writing, which waits for an RCU grace
/// period, once per spawn; a child born there never moves (glibc's
/// `posix_spawnattr_setcgroup_np` does the same). glibc has no clone3
/// wrapper, so the system call is made here: the child returns from it on
/// its own stack (`base`..`top`) and calls `child_main(arg)` there, never
/// returning into this frame.
///
/// # Safety
/// As for `libc::clone` in `launch_on`: every signal blocked, `arg` and the
/// stack alive until the child has exec'd or exited (CLONE_VFORK).
#[cfg(target_arch = "x86_64")]
#[inline(never)]
unsafe fn clone3_vfork(
    dir: RawFd,
    base: *mut libc::c_void,
    top: *mut libc::c_void,
    arg: *mut libc::c_void,
) -> i64 {
    // Spelled out, not `..Default::default()`: nothing outside this module
    // may run with every signal blocked (bench/link-order's page tracer
    // faults on the first execution of every other page).
    let args = CloneArgs {
        flags: (libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_FILES) as u64 | CLONE_INTO_CGROUP,
        pidfd: 0,
        child_tid: 0,
        parent_tid: 0,
        exit_signal: libc::SIGCHLD as u64,
        stack: base as u64,
        stack_size: (top as u64).wrapping_sub(base as u64),
        tls: 0,
        set_tid: 0,
        set_tid_size: 0,
        cgroup: dir as u64,
    };
    let f: extern "C" fn(*mut libc::c_void) -> libc::c_int = child_main;
    let ret: i64;
    // The child starts after `syscall` with rax = 0 and rsp = top (16-byte
    // aligned: page-aligned), calls `f(arg)`, and exits with its result if
    // it ever returned. r12 and r13 carry `f` and `arg` over the syscall,
    // which clobbers only rcx and r11. The parent goes on at 2 with the pid
    // or -errno.
    std::arch::asm!(
        "syscall",
        "test rax, rax",
        "jnz 2f",
        "xor ebp, ebp",
        "and rsp, -16",
        "mov rdi, r13",
        "call r12",
        "mov edi, eax",
        "mov eax, {exit_group}",
        "syscall",
        "ud2",
        "2:",
        exit_group = const libc::SYS_exit_group,
        inlateout("rax") libc::SYS_clone3 => ret,
        in("rdi") &args as *const CloneArgs,
        in("rsi") std::mem::size_of::<CloneArgs>(),
        in("r12") f,
        in("r13") arg,
        lateout("rcx") _,
        lateout("r11") _,
        options(nostack),
    );
    ret
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn clone3_vfork(
    _dir: RawFd,
    _base: *mut libc::c_void,
    _top: *mut libc::c_void,
    _arg: *mut libc::c_void,
) -> i64 {
    -(libc::ENOSYS as i64)
}

extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the plan `launch_on` passed, alive while it sleeps.
    unsafe { child(&mut *arg.cast::<Plan>()) }
}

#[inline(always)]
unsafe fn sys(n: libc::c_long, a: libc::c_long, b: libc::c_long, c: libc::c_long) -> libc::c_long {
    libc::syscall(n, a, b, c)
}

unsafe fn fail(p: &mut Plan, step: u32) -> ! {
    let errno = *libc::__errno_location();
    std::ptr::write_volatile(&mut p.report.errno, errno);
    std::ptr::write_volatile(&mut p.report.step, step);
    libc::syscall(libc::SYS_exit_group, 127);
    libc::_exit(127)
}

/// The kernel's `struct sigaction`, zeroed: SIG_DFL, no flags, empty mask.
/// Raw because glibc's `sigaction` refuses its internal signals 32 and 33.
type KernelSigaction = [libc::c_ulong; 4];

/// Runs in the child, on its own stack, in the parent's memory, with every
/// signal blocked. Raw system calls only; every buffer was made by the parent.
unsafe fn child(p: &mut Plan) -> ! {
    let rx = p.channel;
    // A private descriptor table holding only fds 0..=rx (see the module doc);
    // on kernels without close_range (< 5.9) a full copy.
    if sys(
        libc::SYS_close_range,
        (rx + 1) as libc::c_long,
        libc::c_long::from(u32::MAX),
        libc::CLOSE_RANGE_UNSHARE as libc::c_long,
    ) != 0
        && sys(libc::SYS_unshare, libc::CLONE_FILES as libc::c_long, 0, 0) != 0
    {
        fail(p, STEP_UNSHARE);
    }
    // Every disposition back to default while nothing can be delivered:
    // a daemon handler must never run here, and ignored signals would stay
    // ignored across execve.
    let dfl: KernelSigaction = [0; 4];
    for sig in 1..=64 {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                dfl.as_ptr(),
                std::ptr::null_mut::<KernelSigaction>(),
                8usize,
            );
        }
    }

    let want = p.fds.len();
    let mut byte = 0u8;
    let mut iov = libc::iovec {
        iov_base: (&mut byte as *mut u8).cast(),
        iov_len: 1,
    };
    let mut msg: libc::msghdr = std::mem::zeroed();
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = p.cmsg.as_mut_ptr().cast();
    msg.msg_controllen = p.cmsg.len() * 8;
    if sys(
        libc::SYS_recvmsg,
        rx as libc::c_long,
        (&mut msg as *mut libc::msghdr) as libc::c_long,
        libc::MSG_CMSG_CLOEXEC as libc::c_long,
    ) < 0
    {
        fail(p, STEP_RECEIVE);
    }
    std::ptr::write_volatile(&mut p.report.received, 1);
    let c = libc::CMSG_FIRSTHDR(&msg);
    if c.is_null()
        || msg.msg_flags & libc::MSG_CTRUNC != 0
        || (*c).cmsg_level != libc::SOL_SOCKET
        || (*c).cmsg_type != libc::SCM_RIGHTS
        || (*c).cmsg_len as usize != libc::CMSG_LEN((want * 4) as u32) as usize
    {
        *libc::__errno_location() = libc::EBADMSG;
        fail(p, STEP_RECEIVE);
    }
    let data = libc::CMSG_DATA(c).cast::<RawFd>();
    let received = p.received.as_mut_ptr();
    let mut top = p.targets as RawFd;
    for i in 0..want {
        let fd = std::ptr::read_unaligned(data.add(i));
        *received.add(i) = fd;
        top = top.max(fd);
    }

    if let (Some(i), false) = (p.cgroup, p.born_in_cgroup) {
        if i < want
            && sys(
                libc::SYS_write,
                *received.add(i) as libc::c_long,
                b"0".as_ptr() as libc::c_long,
                1,
            ) != 1
        {
            fail(p, STEP_CGROUP);
        }
    }
    if sys(libc::SYS_setpgid, 0, 0, 0) != 0 {
        fail(p, STEP_SETPGID);
    }

    // Two passes through fds above every source and target, so that a
    // source already sitting on another one's target (3 ↔ 4) is not lost.
    let tmp = p.tmp.as_mut_ptr();
    for i in 0..p.targets {
        let t = sys(
            libc::SYS_fcntl,
            *received.add(i) as libc::c_long,
            libc::F_DUPFD_CLOEXEC as libc::c_long,
            (top + 1) as libc::c_long,
        );
        if t < 0 {
            fail(p, STEP_PLACE);
        }
        *tmp.add(i) = t as RawFd;
    }
    for i in 0..p.targets {
        // dup3 with no flags leaves the target without close-on-exec; the
        // source (above `top`) is never the target itself.
        if sys(libc::SYS_dup3, *tmp.add(i) as libc::c_long, i as libc::c_long, 0) < 0 {
            fail(p, STEP_PLACE);
        }
    }
    // Nothing else reaches the program: not the received copies, not the
    // daemon's low fds, not what the daemon's own parent left open.
    if sys(
        libc::SYS_close_range,
        p.targets as libc::c_long,
        libc::c_long::from(u32::MAX),
        0,
    ) != 0
    {
        for fd in p.targets as RawFd..p.max_fd {
            sys(libc::SYS_close, fd as libc::c_long, 0, 0);
        }
    }

    for (res, lim) in &p.rlimits {
        if libc::syscall(
            libc::SYS_prlimit64,
            0,
            *res as libc::c_long,
            lim as *const libc::rlimit64,
            std::ptr::null_mut::<libc::rlimit64>(),
        ) != 0
        {
            fail(p, STEP_RLIMIT);
        }
    }
    if let Some(groups) = &p.groups {
        if sys(
            libc::SYS_setgroups,
            groups.len() as libc::c_long,
            groups.as_ptr() as libc::c_long,
            0,
        ) != 0
        {
            fail(p, STEP_SETGROUPS);
        }
    }
    if let Some(gid) = p.gid {
        if sys(libc::SYS_setgid, gid as libc::c_long, 0, 0) != 0 {
            fail(p, STEP_SETGID);
        }
    }
    if let Some(uid) = p.uid {
        if sys(libc::SYS_setuid, uid as libc::c_long, 0, 0) != 0 {
            fail(p, STEP_SETUID);
        }
    }
    if let Some(mask) = p.umask {
        sys(libc::SYS_umask, mask as libc::c_long, 0, 0);
    }
    if let Some(cwd) = &p.cwd {
        if sys(libc::SYS_chdir, cwd.as_ptr() as libc::c_long, 0, 0) != 0 {
            fail(p, STEP_CHDIR);
        }
    }
    if !p.listen_pid_digits.is_null() {
        let mut pid = sys(libc::SYS_getpid, 0, 0, 0) as u32;
        let mut buf = [0u8; 12];
        let mut n = 0;
        while n < buf.len() {
            buf[n] = b'0' + (pid % 10) as u8;
            n += 1;
            pid /= 10;
            if pid == 0 {
                break;
            }
        }
        let digits = p.listen_pid_digits;
        for i in 0..n {
            *digits.add(i) = buf[n - 1 - i];
        }
        *digits.add(n) = 0;
    }
    let empty: u64 = 0;
    if libc::syscall(
        libc::SYS_rt_sigprocmask,
        libc::SIG_SETMASK,
        &empty as *const u64,
        std::ptr::null_mut::<u64>(),
        8usize,
    ) != 0
    {
        fail(p, STEP_SIGNALS);
    }
    sys(
        libc::SYS_execve,
        p.program.as_ptr() as libc::c_long,
        p.argv_ptrs.as_ptr() as libc::c_long,
        p.envp.as_ptr() as libc::c_long,
    );
    fail(p, STEP_EXECVE)
}
