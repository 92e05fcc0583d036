use super::spawn::{self, InheritedSocket, Output};
use super::state::{backoff_delay, Action, Event, Lifecycle, Policy, State};
use crate::config::{Signum, WatcherSpec};
use crate::reaper::{self, ExitStatus, Exited, GroupGone, Reaper};
use actix::prelude::*;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::oneshot;

/// What a slot tells its watcher.
#[derive(Debug, Clone)]
pub enum SlotEvent {
    Spawned {
        pid: i32,
    },
    Exited {
        pid: i32,
        status: ExitStatus,
        uptime: Duration,
    },
    SpawnFailed {
        reason: String,
    },
    Backoff {
        delay: Duration,
        failures: u32,
    },
    Failed {
        failures: u32,
    },
    Killed {
        pid: i32,
        signal: Signum,
    },
    Stopped,
}

#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct SlotReport {
    pub wid: u32,
    pub event: SlotEvent,
}

/// Start the slot; answers with the pid once the first spawn attempt is done.
#[derive(Message)]
#[rtype(result = "Option<i32>")]
pub struct StartSlot;

/// Replace the process gracefully (kill/reload/max_age), optionally with
/// another signal and timeout; answers with the new pid once spawned.
#[derive(Message)]
#[rtype(result = "Option<i32>")]
pub struct ReplaceSlot {
    pub signal: Option<Signum>,
    pub timeout: Option<Duration>,
}

/// Forget the process without stopping it (`rm --nostop`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct DetachSlot;

/// Use a new spec for the next spawns.
#[derive(Message)]
#[rtype(result = "()")]
pub struct UpdateSlotSpec(pub Arc<WatcherSpec>);

/// Stop gracefully; resolves once the process and its whole group are gone.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopSlot;

/// SIGKILL the group now.
#[derive(Message)]
#[rtype(result = "()")]
pub struct KillSlot;

#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct SignalSlot {
    pub signal: Signum,
    /// Signal the whole process group rather than only the process.
    pub group: bool,
}

#[derive(Debug, Clone)]
pub struct ProcInfo {
    pub wid: u32,
    pub pid: Option<i32>,
    pub state: &'static str,
    pub started: Option<SystemTime>,
    pub restarts: u32,
    pub argv: Vec<String>,
}

#[derive(Message)]
#[rtype(result = "ProcInfo")]
pub struct GetProcInfo;

pub struct ProcessActor {
    wid: u32,
    spec: Arc<WatcherSpec>,
    sockets: Arc<Vec<InheritedSocket>>,
    watcher: Recipient<SlotReport>,
    life: Lifecycle,
    started_at: Option<Instant>,
    started_wall: Option<SystemTime>,
    spawns: u32,
    argv: Vec<String>,
    retry_timer: Option<SpawnHandle>,
    grace_timer: Option<SpawnHandle>,
    age_timer: Option<SpawnHandle>,
    stop_waiters: Vec<oneshot::Sender<()>>,
    spawn_waiters: Vec<oneshot::Sender<Option<i32>>>,
    /// Signal and timeout for the stop in progress, when a command chose them.
    stop_override: Option<(Option<Signum>, Option<Duration>)>,
    detached: bool,
}

impl ProcessActor {
    pub fn new(
        wid: u32,
        spec: Arc<WatcherSpec>,
        sockets: Arc<Vec<InheritedSocket>>,
        watcher: Recipient<SlotReport>,
    ) -> Self {
        ProcessActor {
            wid,
            spec,
            sockets,
            watcher,
            life: Lifecycle::default(),
            started_at: None,
            started_wall: None,
            spawns: 0,
            argv: Vec::new(),
            retry_timer: None,
            grace_timer: None,
            age_timer: None,
            stop_waiters: Vec::new(),
            spawn_waiters: Vec::new(),
            stop_override: None,
            detached: false,
        }
    }

    fn policy(&self) -> Policy {
        Policy {
            respawn: self.spec.respawn,
            min_uptime: self.spec.restart.min_uptime,
            max_retry: self.spec.restart.max_retry,
            stop_signal: self
                .stop_override
                .and_then(|o| o.0)
                .unwrap_or(self.spec.stop_signal),
        }
    }

    fn report(&self, event: SlotEvent) {
        self.watcher.do_send(SlotReport { wid: self.wid, event });
    }

    fn pgid(&self) -> Option<i32> {
        match self.life.state {
            State::Running { pid } | State::Stopping { pid } => Some(pid),
            State::Draining { pgid } => Some(pgid),
            _ => None,
        }
    }

    /// Feeds an event to the state machine and performs what it decides.
    fn feed(&mut self, ev: Event, ctx: &mut Context<Self>) {
        let mut queue = vec![ev];
        while let Some(ev) = queue.pop() {
            let pgid_before = self.pgid();
            let actions = self.life.step(ev, &self.policy());
            for a in actions {
                if let Some(next) = self.perform(a, pgid_before, ctx) {
                    queue.push(next);
                }
            }
        }
    }

    fn perform(&mut self, a: Action, pgid_before: Option<i32>, ctx: &mut Context<Self>) -> Option<Event> {
        let name = &self.spec.name;
        let wid = self.wid;
        match a {
            Action::Spawn => {
                self.stop_override = None;
                return Some(self.spawn(ctx));
            }
            Action::Backoff { failures } => {
                let delay = backoff_delay(&self.spec.restart, failures, fastrand::f64());
                tracing::warn!(watcher = %name, wid, failures, delay_ms = delay.as_millis() as u64, "process failed quickly; backing off");
                self.report(SlotEvent::Backoff { delay, failures });
                self.retry_timer = Some(ctx.run_later(delay, |act, ctx| {
                    act.retry_timer = None;
                    act.feed(Event::RetryDue, ctx);
                }));
            }
            Action::SignalGroup(sig) => {
                if let Some(pgid) = self.pgid() {
                    tracing::info!(watcher = %name, wid, pid = pgid, signal = %sig, "stopping process");
                    send_group(pgid, sig);
                    self.report(SlotEvent::Killed {
                        pid: pgid,
                        signal: sig,
                    });
                }
            }
            Action::KillGroup => {
                if let Some(pgid) = self.pgid().or(pgid_before) {
                    if !reaper::group_empty(pgid) {
                        tracing::info!(watcher = %name, wid, pgid, "sending SIGKILL to process group");
                        send_group(pgid, Signum::KILL);
                        self.report(SlotEvent::Killed {
                            pid: pgid,
                            signal: Signum::KILL,
                        });
                    }
                }
            }
            Action::ArmGraceTimer => {
                let t = self
                    .stop_override
                    .and_then(|o| o.1)
                    .unwrap_or(self.spec.graceful_timeout);
                self.grace_timer = Some(ctx.run_later(t, |act, ctx| {
                    act.grace_timer = None;
                    tracing::warn!(watcher = %act.spec.name, wid = act.wid, "graceful_timeout expired");
                    act.feed(Event::GraceExpired, ctx);
                }));
            }
            Action::CancelTimers => {
                for h in [
                    self.retry_timer.take(),
                    self.grace_timer.take(),
                    self.age_timer.take(),
                ]
                .into_iter()
                .flatten()
                {
                    ctx.cancel_future(h);
                }
            }
            Action::WatchGroup { pgid } => {
                Reaper::global().watch_group(pgid, ctx.address().recipient());
            }
            Action::Stopped => {
                self.started_at = None;
                self.stop_override = None;
                for w in self.spawn_waiters.drain(..) {
                    let _ = w.send(None);
                }
                for w in self.stop_waiters.drain(..) {
                    let _ = w.send(());
                }
                self.report(SlotEvent::Stopped);
            }
            Action::Failed { failures } => {
                tracing::error!(watcher = %name, wid, failures, "process keeps failing; giving up (max_retry reached)");
                self.started_at = None;
                for w in self.stop_waiters.drain(..) {
                    let _ = w.send(());
                }
                for w in self.spawn_waiters.drain(..) {
                    let _ = w.send(None);
                }
                self.report(SlotEvent::Failed { failures });
            }
        }
        None
    }

    fn spawn(&mut self, ctx: &mut Context<Self>) -> Event {
        let out = if self.spec.close_child_stdout {
            Output::Null
        } else {
            Output::Inherit
        };
        let err = if self.spec.close_child_stderr {
            Output::Null
        } else {
            Output::Inherit
        };
        let owner = ctx.address().recipient::<Exited>();
        match spawn::spawn(&self.spec, self.wid, &self.sockets, out, err, owner) {
            Ok(sp) => {
                self.spawns += 1;
                self.started_at = Some(Instant::now());
                self.started_wall = Some(SystemTime::now());
                self.argv = sp.argv;
                tracing::info!(watcher = %self.spec.name, wid = self.wid, pid = sp.pid, "spawned");
                self.report(SlotEvent::Spawned { pid: sp.pid });
                if !self.spec.max_age.is_zero() {
                    let var = self.spec.max_age_variance.as_secs_f64() * fastrand::f64();
                    let age = self.spec.max_age + Duration::from_secs_f64(var);
                    self.age_timer = Some(ctx.run_later(age, |act, ctx| {
                        act.age_timer = None;
                        tracing::info!(watcher = %act.spec.name, wid = act.wid, "max_age reached; replacing process");
                        act.feed(Event::Replace, ctx);
                    }));
                }
                for w in self.spawn_waiters.drain(..) {
                    let _ = w.send(Some(sp.pid));
                }
                Event::Spawned { pid: sp.pid }
            }
            Err(e) => {
                tracing::error!(watcher = %self.spec.name, wid = self.wid, "spawn failed: {e}");
                self.report(SlotEvent::SpawnFailed {
                    reason: e.to_string(),
                });
                Event::SpawnFailed
            }
        }
    }
}

fn send_group(pgid: i32, sig: Signum) {
    let Ok(s) = Signal::try_from(sig.0) else {
        // Real-time signals have no nix::Signal; use libc directly.
        // SAFETY: killpg with a valid signal number has no memory effects.
        unsafe { libc::killpg(pgid, sig.0) };
        return;
    };
    if let Err(e) = killpg(Pid::from_raw(pgid), s) {
        if e != nix::errno::Errno::ESRCH {
            tracing::warn!(pgid, "killpg({sig}) failed: {e}");
        }
    }
}

impl Actor for ProcessActor {
    type Context = Context<Self>;

    fn stopped(&mut self, _: &mut Self::Context) {
        // Never leave a process behind when a slot goes away (unless told to forget it).
        if self.detached {
            return;
        }
        if let Some(pgid) = self.pgid() {
            send_group(pgid, Signum::KILL);
        }
    }
}

impl Handler<StartSlot> for ProcessActor {
    type Result = ResponseFuture<Option<i32>>;
    fn handle(&mut self, _: StartSlot, ctx: &mut Self::Context) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.spawn_waiters.push(tx);
        self.feed(Event::Start, ctx);
        if let Some(pid) = self.life.state.pid() {
            // Already running: nothing was spawned.
            for w in self.spawn_waiters.drain(..) {
                let _ = w.send(Some(pid));
            }
        }
        Box::pin(async move { rx.await.ok().flatten() })
    }
}

impl Handler<ReplaceSlot> for ProcessActor {
    type Result = ResponseFuture<Option<i32>>;
    fn handle(&mut self, m: ReplaceSlot, ctx: &mut Self::Context) -> Self::Result {
        if self.life.state.pid().is_none() {
            return Box::pin(async { None });
        }
        let (tx, rx) = oneshot::channel();
        self.spawn_waiters.push(tx);
        self.stop_override = Some((m.signal, m.timeout));
        self.feed(Event::Replace, ctx);
        Box::pin(async move { rx.await.ok().flatten() })
    }
}

impl Handler<DetachSlot> for ProcessActor {
    type Result = ();
    fn handle(&mut self, _: DetachSlot, ctx: &mut Self::Context) {
        self.detached = true;
        ctx.stop();
    }
}

impl Handler<UpdateSlotSpec> for ProcessActor {
    type Result = ();
    fn handle(&mut self, m: UpdateSlotSpec, _: &mut Self::Context) {
        self.spec = m.0;
    }
}

impl Handler<StopSlot> for ProcessActor {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, _: StopSlot, ctx: &mut Self::Context) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.stop_waiters.push(tx);
        self.feed(Event::Stop, ctx);
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}

impl Handler<KillSlot> for ProcessActor {
    type Result = ();
    fn handle(&mut self, _: KillSlot, ctx: &mut Self::Context) {
        self.feed(Event::Kill, ctx);
    }
}

impl Handler<SignalSlot> for ProcessActor {
    type Result = Result<(), String>;
    fn handle(&mut self, m: SignalSlot, _: &mut Self::Context) -> Self::Result {
        let pid = self
            .life
            .state
            .pid()
            .ok_or_else(|| "process is not running".to_string())?;
        let rc = if m.group {
            // SAFETY: plain syscalls.
            unsafe { libc::killpg(pid, m.signal.0) }
        } else {
            unsafe { libc::kill(pid, m.signal.0) }
        };
        if rc != 0 {
            return Err(format!(
                "cannot signal {pid}: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(())
    }
}

impl Handler<Exited> for ProcessActor {
    type Result = ();
    fn handle(&mut self, m: Exited, ctx: &mut Self::Context) {
        let uptime = self.started_at.map_or(Duration::ZERO, |t| t.elapsed());
        if self.life.state.pid() != Some(m.pid) {
            return; // a process whose exec failed, already accounted for
        }
        tracing::info!(watcher = %self.spec.name, wid = self.wid, pid = m.pid, status = %m.status, uptime_ms = uptime.as_millis() as u64, "exited");
        self.report(SlotEvent::Exited {
            pid: m.pid,
            status: m.status,
            uptime,
        });
        let group_alive = !reaper::group_empty(m.pid);
        self.feed(
            Event::Exited {
                pid: m.pid,
                uptime,
                group_alive,
            },
            ctx,
        );
    }
}

impl Handler<GroupGone> for ProcessActor {
    type Result = ();
    fn handle(&mut self, _: GroupGone, ctx: &mut Self::Context) {
        self.feed(Event::GroupEmpty, ctx);
    }
}

impl Handler<GetProcInfo> for ProcessActor {
    type Result = MessageResult<GetProcInfo>;
    fn handle(&mut self, _: GetProcInfo, _: &mut Self::Context) -> Self::Result {
        MessageResult(ProcInfo {
            wid: self.wid,
            pid: self.life.state.pid(),
            state: self.life.state.name(),
            started: self.started_wall.filter(|_| self.life.state.pid().is_some()),
            restarts: self.spawns.saturating_sub(1),
            argv: self.argv.clone(),
        })
    }
}
