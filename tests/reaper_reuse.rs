//! The reaper decides whether an exited leader's process group still has
//! members before it reaps the leader: while the zombie exists its pid (and
//! so the group id) cannot be reused. Checked after reaping, as before, a
//! new process that got the same pid and leads its own group made an empty
//! group look alive (and a later SIGKILL to it hit a stranger).
//!
//! The pid reuse is forced with /proc/sys/kernel/ns_last_pid (root).

use actix::prelude::*;
use ringmaster::reaper::{Exited, Reaper};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

struct Collect(mpsc::UnboundedSender<Exited>);
impl Actor for Collect {
    type Context = Context<Self>;
}
impl Handler<Exited> for Collect {
    type Result = ();
    fn handle(&mut self, m: Exited, _: &mut Self::Context) {
        let _ = self.0.send(m);
    }
}

/// The tests share one reaper, which reaps every child: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

struct KillOnDrop(i32);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        unsafe { libc::kill(self.0, libc::SIGKILL) };
    }
}

fn zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit(')').next().and_then(|r| r.split_whitespace().next()) == Some("Z"))
        .unwrap_or(false)
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Starts a group leader with exactly `pid`, or None if other processes on
/// the machine kept taking that pid.
fn leader_with_pid(pid: i32) -> Option<std::process::Child> {
    for _ in 0..200 {
        std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string())
            .expect("write ns_last_pid (run as root)");
        let mut c = Command::new("sleep")
            .arg("1000")
            .process_group(0)
            .spawn()
            .expect("spawn sleep");
        if c.id() as i32 == pid {
            return Some(c);
        }
        let _ = c.kill();
        let _ = c.wait();
    }
    None
}

#[test]
// The reaper, not the Child, reaps these.
#[allow(clippy::zombie_processes)]
fn group_membership_is_read_before_the_pid_is_released() {
    assert_eq!(unsafe { libc::geteuid() }, 0, "forcing pid reuse needs root");
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let sys = System::new();
    sys.block_on(async {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let who = Collect(tx).start().recipient();

        // A leader with a member left in its group: the snapshot names it.
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 1000 >/dev/null & echo $!"])
            .process_group(0)
            .stdout(std::process::Stdio::piped());
        let mut child = Reaper::global().spawn(&mut cmd, who.clone()).expect("spawn");
        let mut out = String::new();
        std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
        let member: i32 = out.trim().parse().unwrap();
        let _guard = KillOnDrop(member);
        let leader = child.id() as i32;
        wait_until("leader is a zombie", || zombie(leader));
        Reaper::global().reap_all();
        let m = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("Exited in time")
            .expect("Exited");
        assert_eq!(m.pid, leader);
        assert_eq!(m.group.iter().map(|g| g.0).collect::<Vec<_>>(), vec![member]);
        unsafe { libc::kill(member, libc::SIGKILL) };
        wait_until("member reaped", || {
            Reaper::global().reap_all();
            !std::path::Path::new(&format!("/proc/{member}")).exists()
        });

        // A leader alone in its group, whose pid a new group leader takes
        // right after the reap: the decision made before says "empty",
        // although the number now names a live group.
        let mut cmd = Command::new("true");
        cmd.process_group(0);
        let child = Reaper::global().spawn(&mut cmd, who.clone()).expect("spawn");
        let leader = child.id() as i32;
        wait_until("leader is a zombie", || zombie(leader));
        Reaper::global().reap_all();
        let m = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("Exited in time")
            .expect("Exited");
        assert_eq!(m.pid, leader);
        let mut stranger = leader_with_pid(leader).expect("could not reuse the pid");
        assert_eq!(
            unsafe { libc::killpg(leader, 0) },
            0,
            "the reused number names a live group"
        );
        assert!(
            m.group.is_empty(),
            "the exited leader's group was empty: {:?}",
            m.group
        );
        let _ = stranger.kill();
        let _ = stranger.wait();
    });
}

/// Without fork events, a subreaper finds an exited leader's group among its
/// own children (where the leader's orphans went) instead of reading all of
/// /proc. This binary starts no fork log, so that is the path taken here.
#[test]
#[allow(clippy::zombie_processes)]
fn a_subreaper_finds_the_group_among_its_children() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    ringmaster::reaper::become_subreaper();
    let sys = System::new();
    sys.block_on(async {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let who = Collect(tx).start().recipient();
        // Two members: one stays in the group, one leaves it (not a member).
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "sleep 1000 >/dev/null & echo $!; setsid sleep 1000 >/dev/null & echo $!",
        ])
        .process_group(0)
        .stdout(std::process::Stdio::piped());
        let mut child = Reaper::global().spawn(&mut cmd, who.clone()).expect("spawn");
        let mut out = String::new();
        std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
        let pids: Vec<i32> = out.lines().map(|l| l.trim().parse().unwrap()).collect();
        let _guards: Vec<KillOnDrop> = pids.iter().map(|p| KillOnDrop(*p)).collect();
        let leader = child.id() as i32;
        wait_until("leader is a zombie", || zombie(leader));
        // (ppid, pgid) of a process.
        let field = |p: i32, n: usize| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit(')')
                        .next()?
                        .split_whitespace()
                        .nth(n)?
                        .parse::<u32>()
                        .ok()
                })
        };
        let parent = |p: i32| field(p, 1);
        wait_until("the second one left the group", || {
            field(pids[1], 2) == Some(pids[1] as u32)
        });
        for &p in &pids {
            assert_eq!(
                parent(p),
                Some(std::process::id()),
                "orphan {p} came to the subreaper"
            );
        }
        Reaper::global().reap_all();
        let m = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("Exited in time")
            .expect("Exited");
        assert_eq!(m.pid, leader);
        assert_eq!(m.group.iter().map(|g| g.0).collect::<Vec<_>>(), vec![pids[0]]);
        for &p in &pids {
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
        wait_until("orphans reaped", || {
            Reaper::global().reap_all();
            pids.iter()
                .all(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
        });
    });
}
