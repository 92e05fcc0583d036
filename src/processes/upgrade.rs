//! A slot across an upgrade: its snapshot (taken while the slot is frozen)
//! and its restoration in the next image, adopting the running process
//! instead of spawning one.

use super::actor::{ProcessActor, NEXT_SLOT_ID};
use super::messages::SlotReport;
use super::spawn::InheritedSocket;
use super::state::{backoff_delay, Action, Event, State};
use crate::config::model::ReadyKind;
use crate::config::WatcherSpec;
use crate::containment::SlotContainment;
use crate::events::Events;
use crate::readiness::notify::NotifyRouter;
use crate::readiness::state::{Event as Ready, Phase};
use crate::reaper::Reaper;
use crate::streams::{StreamKind, WatcherLogs};
use crate::upgrade::snapshot::{pid_start, time_left, SlotCarry, SlotMode, SlotSnap};
use actix::prelude::*;
use futures::future::Shared;
use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::oneshot;

/// Resolves when an upgrade that froze the daemon is abandoned.
pub(crate) type Thaw = Shared<oneshot::Receiver<()>>;

/// Upgrade: answer the slot's state, then do nothing (no timer, no message)
/// until `thaw` resolves — or the exec ends this image. A slot spawning
/// answers once the spawn's outcome is in.
#[derive(Message)]
#[rtype(result = "SlotSnap")]
pub(crate) struct FreezeSlot {
    pub thaw: Thaw,
}

impl Handler<FreezeSlot> for ProcessActor {
    type Result = ResponseActFuture<Self, SlotSnap>;

    fn handle(&mut self, m: FreezeSlot, _: &mut Self::Context) -> Self::Result {
        let spawning = (self.life.state == State::Spawning).then(|| {
            let (tx, rx) = oneshot::channel();
            self.spawn_waiters.push(tx);
            rx
        });
        Box::pin(
            async move {
                if let Some(rx) = spawning {
                    let _ = rx.await;
                }
            }
            .into_actor(self)
            .map(move |(), act, ctx| {
                let snap = act.snapshot();
                let thaw = m.thaw;
                ctx.wait(
                    async move {
                        let _ = thaw.await;
                    }
                    .into_actor(act),
                );
                snap
            }),
        )
    }
}

impl ProcessActor {
    fn snapshot(&self) -> SlotSnap {
        let (mode, pid) = match self.life.state {
            State::Running { pid } => (SlotMode::Running, Some(pid)),
            State::Stopping { pid } => (SlotMode::Stopping, Some(pid)),
            State::Draining { pgid } => (SlotMode::Draining, Some(pgid)),
            State::Backoff => (SlotMode::Backoff, None),
            State::Failed => (SlotMode::Failed, None),
            // Spawning is waited out before the snapshot.
            State::Idle => (SlotMode::Idle, None),
            State::Stopped | State::Spawning => (SlotMode::Stopped, None),
        };
        let live = matches!(mode, SlotMode::Running | SlotMode::Stopping);
        let armed = |timer: &Option<SpawnHandle>, at: Option<Instant>| {
            timer.as_ref().and(at).map(crate::upgrade::snapshot::deadline_ns)
        };
        SlotSnap {
            wid: self.wid,
            slot_id: self.slot_id,
            mode,
            pid,
            pid_start: pid.filter(|_| live).and_then(pid_start),
            spawns: self.spawns,
            failures: self.life.failures,
            ready: self.readiness.is_ready(),
            started_wall: self
                .started_wall
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map(|d| d.as_secs_f64()),
            uptime_ms: self.started_at.map_or(0, |t| t.elapsed().as_millis() as u64),
            argv: self.argv.clone(),
            // Filled in once the captures parked their pipes (see `captures`).
            stdout_fd: None,
            stderr_fd: None,
            status_text: self.status_text.clone(),
            captures: if live { self.captures } else { [None, None] },
            carry: SlotCarry {
                tails: Default::default(),
                max_age_at: armed(&self.age_timer, self.age_at),
                watchdog_at: armed(&self.watchdog_timer, self.watchdog_at),
            },
        }
    }

    /// The slot of `snap` in the next image, started in `ctx`: its process
    /// adopted (registered with the reaper, output captured from the
    /// inherited pipes), its timers armed again.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn restored(
        snap: &SlotSnap,
        pipes: [Option<OwnedFd>; 2],
        spec: Arc<WatcherSpec>,
        sockets: Arc<Vec<InheritedSocket>>,
        watcher: Recipient<SlotReport>,
        events: Events,
        logs: WatcherLogs,
        ctx: &mut Context<ProcessActor>,
    ) -> ProcessActor {
        NEXT_SLOT_ID.fetch_max(snap.slot_id + 1, Ordering::Relaxed);
        let mut a = ProcessActor::new(snap.wid, spec, sockets, watcher, events, logs);
        a.slot_id = snap.slot_id;
        a.containment = SlotContainment::new(&a.spec.name, snap.wid, snap.slot_id);
        a.spawns = snap.spawns;
        a.life.failures = snap.failures;
        a.argv = snap.argv.clone();
        a.status_text = snap.status_text.clone();
        a.started_wall = snap
            .started_wall
            .map(|t| SystemTime::UNIX_EPOCH + Duration::from_secs_f64(t));
        // Ours: reaped since the exec (its exit is delivered now), or still
        // the same process. A pid reused by another process is not adopted.
        let pid = snap.pid.filter(|&p| {
            Reaper::global().is_unclaimed(p) || (snap.pid_start.is_some() && pid_start(p) == snap.pid_start)
        });
        if let Err(e) = a.containment.prepare() {
            tracing::warn!(watcher = %a.spec.name, wid = a.wid, "upgrade: {e}");
        }
        match (snap.mode, pid) {
            (SlotMode::Running, Some(pid)) | (SlotMode::Stopping, Some(pid)) => {
                a.adopt(pid, snap, pipes, ctx);
                if snap.mode == SlotMode::Stopping {
                    a.life.state = State::Stopping { pid };
                    // The stop signal was sent by the previous image; the grace period starts over.
                    a.perform(Action::ArmGraceTimer, None, ctx);
                }
            }
            (SlotMode::Backoff, _) => {
                a.life.state = State::Backoff;
                let delay = backoff_delay(&a.spec.restart, snap.failures.max(1), fastrand::f64());
                a.retry_timer = Some(ctx.run_later(delay, |act, ctx| {
                    act.retry_timer = None;
                    act.feed(Event::RetryDue, ctx);
                }));
            }
            (SlotMode::Failed, _) => a.life.state = State::Failed,
            (SlotMode::Draining, Some(pgid)) => {
                // The leader is gone; what is left of its group is being stopped: finish it.
                a.containment.kill(None);
                // SAFETY: plain syscall; a group with live members keeps its id.
                unsafe { libc::killpg(pgid, libc::SIGKILL) };
                a.life.state = State::Stopped;
            }
            (SlotMode::Running | SlotMode::Stopping, None) => {
                // It ended during the exec and its zombie was already gone
                // (or its pid was reused): respawn as after an exit.
                tracing::warn!(watcher = %a.spec.name, wid = a.wid, pid = ?snap.pid, "upgrade: process not found; spawning again");
                a.life.state = State::Stopped;
                if snap.mode == SlotMode::Running {
                    ctx.notify(super::StartSlot);
                }
            }
            _ => a.life.state = State::Stopped,
        }
        a
    }

    fn adopt(&mut self, pid: i32, snap: &SlotSnap, pipes: [Option<OwnedFd>; 2], ctx: &mut Context<Self>) {
        self.life.state = State::Running { pid };
        self.containment.spawned(pid);
        Reaper::global().adopt(pid, ctx.address().recipient());
        self.started_at = Instant::now().checked_sub(Duration::from_millis(snap.uptime_ms));
        let ready_match = if snap.ready { None } else { self.log_ready_match() };
        let [out, err] = pipes;
        let kinds = [StreamKind::Stdout, StreamKind::Stderr];
        for (i, fd) in [out, err].into_iter().enumerate() {
            self.captures[i] = fd.map(|fd| {
                let tail = &snap.carry.tails[i];
                self.logs
                    .capture_carried(fd, pid as u32, self.wid, kinds[i], ready_match.clone(), tail)
                    .id()
            });
        }
        // The timers go on to the deadlines the previous image set.
        if let Some(at) = snap.carry.max_age_at {
            self.arm_age(pid, time_left(at), ctx);
        } else if !self.spec.max_age.is_zero() {
            // A snapshot without deadlines: counted from the process's start.
            let age = self
                .spec
                .max_age
                .saturating_sub(Duration::from_millis(snap.uptime_ms));
            self.arm_age(pid, age, ctx);
        }
        if self.spec.ready.kind == ReadyKind::Notify {
            // Readiness and watchdog pings keep coming to the same address.
            match NotifyRouter::start() {
                Ok(r) => r.register(pid, ctx.address().recipient()),
                Err(e) => {
                    tracing::error!(watcher = %self.spec.name, "upgrade: cannot open the notify socket again: {e:#}")
                }
            }
        }
        if snap.ready {
            self.readiness.phase = Phase::Ready { pid };
            let watchdog = self.spec.ready.watchdog_timeout;
            match (snap.carry.watchdog_at, watchdog) {
                (Some(at), Some(_)) => self.arm_watchdog_in(pid, time_left(at), ctx),
                (None, Some(t)) => self.arm_watchdog_in(pid, t, ctx),
                _ => {}
            }
        } else {
            self.ready_step(Ready::Spawned { pid }, ctx);
        }
    }
}
